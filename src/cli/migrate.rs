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
    /// What the source chain's head sent since the command started
    /// following, when it could be asked.
    pub progress: Option<Progress>,
}

/// A migration's progress as the source chain's head counts it (`stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    pub keys: u64,
    pub bytes: u64,
    /// Keys per second since the command started following.
    pub rate: f64,
    /// How long the last pause of writes to the moving slots lasted.
    pub pause_ms: u64,
}

/// Keys and bytes the source head had sent when the command started
/// following (its counters add up every migration it drove).
#[derive(Clone, Copy, Debug, Default)]
struct Baseline {
    keys: u64,
    bytes: u64,
}

impl Baseline {
    fn of(statistics: &Statistics) -> Baseline {
        Baseline { keys: statistics.migration_keys_sent, bytes: statistics.migration_bytes_sent }
    }

    /// The progress `statistics` shows since the baseline, `seconds` in.
    fn progress(self, statistics: &Statistics, seconds: f64) -> Progress {
        let keys = statistics.migration_keys_sent.saturating_sub(self.keys);
        Progress {
            keys,
            bytes: statistics.migration_bytes_sent.saturating_sub(self.bytes),
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
    match client.migrate(request, *abort)? {
        MigrateStarted::Aborted(map) => {
            printer.print(&Record::Migration(&report("aborted", map.version)))?;
            return Ok(Outcome::Done);
        }
        MigrateStarted::Done(map) => {
            printer.print(&Record::Migration(&report("moved", map.version)))?;
            return Ok(Outcome::Done);
        }
        MigrateStarted::Marked(map) => printer.print(&Record::Migration(&report("started", map.version)))?,
        MigrateStarted::Running(map) => printer.print(&Record::Migration(&report("running", map.version)))?,
    }
    printer.flush()?;
    follow(client, request, started, printer)
}

/// Follows the migration until the map shows it finished (or aborted).
fn follow(
    client: &mut Client,
    request: &MoveRequest,
    started: Instant,
    printer: &mut Printer<'_>,
) -> Result<Outcome, CommandError> {
    let mut printed = Instant::now();
    let mut source: Option<Source> = None;
    while started.elapsed() < MIGRATE_FOLLOW_MAX {
        let map = client
            .shard_map()?
            .ok_or_else(|| ClientError::NoChainEver("the shard map node is gone".into()))?;
        if let MoveState::Migrating { source: chain } = request.state_in(&map)
            && source.as_ref().is_none_or(|(known, _)| *known != chain)
        {
            source = Some((chain, None));
        }
        let seconds = started.elapsed().as_secs_f64();
        if source.as_ref().is_some_and(|(_, baseline)| baseline.is_none()) {
            progress_of(client, &mut source, seconds);
        }
        let report = |state, progress| MigrateReport {
            state,
            request,
            version: map.version,
            seconds: started.elapsed().as_secs_f64(),
            progress,
        };
        match request.state_in(&map) {
            MoveState::Moved => {
                printer
                    .print(&Record::Migration(&report("moved", progress_of(client, &mut source, seconds))))?;
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
                let progress = progress_of(client, &mut source, seconds);
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

/// The source chain, and its head (named by its node) with what it had
/// sent when we began following it: a head that takes over counts from 0,
/// so the baseline goes with the head.
type Source = (String, Option<(String, Baseline)>);

/// What the source's head sent since the baseline (taken on the first
/// call with that head), `seconds` in; `None` if it cannot be asked.
fn progress_of(client: &mut Client, source: &mut Option<Source>, seconds: f64) -> Option<Progress> {
    let (chain, baseline) = source.as_mut()?;
    let statistics = client.head_stats(chain).ok()?;
    let baseline = match baseline {
        Some((node, baseline)) if *node == statistics.node => *baseline,
        _ => baseline.insert((statistics.node.clone(), Baseline::of(&statistics))).1,
    };
    Some(baseline.progress(&statistics, seconds))
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
        let before = Statistics { migration_keys_sent: 100, migration_bytes_sent: 5000, ..Statistics::new() };
        let now = Statistics {
            migration_keys_sent: 350,
            migration_bytes_sent: 7048,
            migration_pause_ms: 3,
            ..before.clone()
        };
        let progress = Some(Baseline::of(&before).progress(&now, 2.0));
        let report = MigrateReport { progress, ..report };
        assert_eq!(
            report_text(&report),
            "moved: slots 10-20 to /b (map version 4, 1.2 s): 250 keys, 2 KiB sent (125 keys/s), last pause 3 ms\n"
        );
        assert_eq!(report_json(&report)["keys_sent"], 250);
    }
}
