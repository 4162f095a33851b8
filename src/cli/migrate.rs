//! The client's `migrate <first>[-<last>] <chain> [--abort]`: starts moving
//! slots to a chain (one version-checked change of the shard map; the
//! source chain's head does the moving, see `chain::migration`), then
//! follows it until the map shows the slots at their new chain, printing
//! progress about every second. Run again, it follows the same migration;
//! `--abort` gives the slots back to their chain. A migration that the map
//! shows aborted while followed, or bad input, exits 2 (nothing changed).

use std::time::Instant;

use serde_json::{Value, json};

use super::command::{Command, CommandError, Outcome};
use super::output::{Printer, Record};
use crate::client::Client;
use crate::client::error::ClientError;
use crate::client::router::MigrateStarted;
use crate::limits::{MIGRATE_FOLLOW_MAX, MIGRATE_POLL, MIGRATE_PROGRESS_EVERY, display_bytes};
use crate::proto::Statistics;
use crate::shard::moves::{MoveRequest, MoveState};

pub const USAGE: &str = "usage: migrate <first-slot>[-<last-slot>] <chain> [--abort]";

/// Parses `migrate`'s argument words; `None` for any other command.
pub fn parse(name: &str, arguments: &[Vec<u8>]) -> Option<Result<Command, String>> {
    (name == "migrate").then(|| {
        let words: Vec<&str> = arguments
            .iter()
            .map(|word| std::str::from_utf8(word).map_err(|_| "migrate: arguments must be UTF-8".to_owned()))
            .collect::<Result<_, _>>()?;
        let (abort, words): (Vec<&str>, Vec<&str>) = words.into_iter().partition(|word| *word == "--abort");
        match (abort.len(), words.as_slice()) {
            (0 | 1, [slots, chain]) => MoveRequest::parse(slots, chain)
                .map(|request| Command::Migrate { request, abort: abort.len() == 1 })
                .map_err(|error| format!("migrate: {error}")),
            _ => Err(USAGE.to_owned()),
        }
    })
}

/// One line of `migrate`'s output.
#[derive(Debug)]
pub struct MigrateReport<'a> {
    /// `started`, `running`, `migrating`, `moved` or `aborted`.
    pub state: &'static str,
    pub request: &'a MoveRequest,
    /// The map version the line is about.
    pub version: u64,
    /// Seconds since the command started.
    pub seconds: f64,
    /// What the source chain's head sent in this migration (a head that
    /// took it over counts from its own start), when it could be asked.
    pub progress: Option<Progress>,
}

/// A migration's progress as the source chain's head counts it (`stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    pub keys: u64,
    pub bytes: u64,
    /// Keys per second since the command started.
    pub rate: f64,
    /// How long the last pause of writes to the moving slots lasted.
    pub pause_ms: u64,
}

impl Progress {
    /// The progress `statistics` of the source's head show, `seconds`
    /// after the command started.
    fn of(statistics: &Statistics, seconds: f64) -> Progress {
        let keys = statistics.migration_keys_sent;
        Progress {
            keys,
            bytes: statistics.migration_bytes_sent,
            rate: if seconds > 0.0 { keys as f64 / seconds } else { 0.0 },
            pause_ms: statistics.migration_pause_ms,
        }
    }
}

/// Runs `migrate`.
pub fn execute(
    client: &mut Client,
    command: &Command,
    printer: &mut Printer<'_>,
) -> Result<Outcome, CommandError> {
    let Command::Migrate { request, abort } = command else {
        unreachable!("{command:?} is not a migrate");
    };
    let started = Instant::now();
    let report = |state, version| MigrateReport { state, request, version, seconds: 0.0, progress: None };
    // The chain the slots move from, whose head counts the progress.
    let source = match client.migrate(request, *abort)? {
        MigrateStarted::Aborted(map) => {
            printer.print(&Record::Migration(&report("aborted", map.version)))?;
            return Ok(Outcome::Done);
        }
        MigrateStarted::Done(map) => {
            printer.print(&Record::Migration(&report("moved", map.version)))?;
            return Ok(Outcome::Done);
        }
        MigrateStarted::Marked(map) => {
            printer.print(&Record::Migration(&report("started", map.version)))?;
            request.source(&map).ok().map(str::to_owned)
        }
        MigrateStarted::Running(map) => {
            printer.print(&Record::Migration(&report("running", map.version)))?;
            request.source(&map).ok().map(str::to_owned)
        }
    };
    printer.flush()?;
    follow(client, request, (started, source), printer)
}

/// Follows the migration from `source` until the map shows it finished
/// (or aborted).
fn follow(
    client: &mut Client,
    request: &MoveRequest,
    (started, mut source): (Instant, Option<String>),
    printer: &mut Printer<'_>,
) -> Result<Outcome, CommandError> {
    let mut printed = Instant::now();
    while started.elapsed() < MIGRATE_FOLLOW_MAX {
        let map = client
            .shard_map()?
            .ok_or_else(|| ClientError::NoChainEver("the shard map node is gone".into()))?;
        if let MoveState::Migrating { source: chain } = request.state_in(&map) {
            source = Some(chain);
        }
        let seconds = started.elapsed().as_secs_f64();
        let report = |state, progress| MigrateReport {
            state,
            request,
            version: map.version,
            seconds: started.elapsed().as_secs_f64(),
            progress,
        };
        match request.state_in(&map) {
            MoveState::Moved => {
                printer.print(&Record::Migration(&report(
                    "moved",
                    progress_of(client, source.as_deref(), seconds),
                )))?;
                return Ok(Outcome::Done);
            }
            MoveState::NotRunning => {
                return Err(ClientError::NoChainEver(format!(
                    "the migration of slots {} to {} is no longer in the shard map (version {}): aborted",
                    request.slots(),
                    request.target,
                    map.version
                ))
                .into());
            }
            MoveState::Migrating { .. } if printed.elapsed() >= MIGRATE_PROGRESS_EVERY => {
                let progress = progress_of(client, source.as_deref(), seconds);
                printer.print(&Record::Migration(&report("migrating", progress)))?;
                printer.flush()?;
                printed = Instant::now();
            }
            MoveState::Migrating { .. } => {}
        }
        std::thread::sleep(MIGRATE_POLL);
    }
    Err(ClientError::NoChain(format!(
        "slots {} are still migrating after {} s; the source head goes on: run the command again to follow it",
        request.slots(),
        MIGRATE_FOLLOW_MAX.as_secs()
    ))
    .into())
}

/// What the head of the source chain `source` sent, `seconds` in;
/// `None` if it cannot be asked (or the map never showed the migration).
fn progress_of(client: &mut Client, source: Option<&str>, seconds: f64) -> Option<Progress> {
    let statistics = client.head_stats(source?).ok()?;
    Some(Progress::of(&statistics, seconds))
}

/// A line as text: `<state>: slots <first-last> to <chain> (map version
/// <v>, <s> s)`, then what the source head sent, when known.
pub fn report_text(report: &MigrateReport<'_>) -> String {
    let progress = report.progress.map_or(String::new(), |progress| {
        format!(
            ": {} keys, {} sent ({:.0} keys/s), last pause {} ms",
            progress.keys,
            display_bytes(progress.bytes),
            progress.rate,
            progress.pause_ms
        )
    });
    format!(
        "{}: slots {} to {} (map version {}, {:.1} s){progress}\n",
        report.state,
        report.request.slots(),
        report.request.target,
        report.version,
        report.seconds
    )
}

/// A line as JSON.
pub fn report_json(report: &MigrateReport<'_>) -> Value {
    json!({
        "state": report.state,
        "first": report.request.first,
        "last": report.request.last,
        "chain": report.request.target,
        "version": report.version,
        "seconds": report.seconds,
        "keys_sent": report.progress.map(|progress| progress.keys),
        "bytes_sent": report.progress.map(|progress| progress.bytes),
        "keys_per_second": report.progress.map(|progress| progress.rate),
        "pause_ms": report.progress.map(|progress| progress.pause_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(words: &[&str]) -> Result<Command, String> {
        let words: Vec<Vec<u8>> = words.iter().map(|word| word.as_bytes().to_vec()).collect();
        parse("migrate", &words).expect("migrate is ours")
    }

    #[test]
    fn slots_chain_and_abort() {
        let request = MoveRequest { first: 10, last: 20, target: "/b".into() };
        assert_eq!(parsed(&["10-20", "/b"]), Ok(Command::Migrate { request: request.clone(), abort: false }));
        assert_eq!(parsed(&["--abort", "10-20", "/b"]), Ok(Command::Migrate { request, abort: true }));
        assert!(parsed(&["10-20"]).unwrap_err().starts_with("usage"));
        assert!(parsed(&["10-20", "/b", "--abort", "--abort"]).unwrap_err().starts_with("usage"));
        assert!(parsed(&["99999", "/b"]).unwrap_err().contains("0 to 16383"));
        assert_eq!(parse("get", &[]), None);
        let request = MoveRequest { first: 10, last: 20, target: "/b".into() };
        let report =
            MigrateReport { state: "moved", request: &request, version: 4, seconds: 1.25, progress: None };
        assert_eq!(report_text(&report), "moved: slots 10-20 to /b (map version 4, 1.2 s)\n");
        assert_eq!(report_json(&report)["version"], 4);
        let now = Statistics {
            migration_keys_sent: 250,
            migration_bytes_sent: 2048,
            migration_pause_ms: 3,
            ..Statistics::new()
        };
        let progress = Some(Progress::of(&now, 2.0));
        let report = MigrateReport { progress, ..report };
        assert_eq!(
            report_text(&report),
            "moved: slots 10-20 to /b (map version 4, 1.2 s): 250 keys, 2 KiB sent (125 keys/s), last pause 3 ms\n"
        );
        assert_eq!(report_json(&report)["keys_sent"], 250);
    }
}
