//! `table-check failover`: failover measured as users see it (issue 19).
//!
//! A chain of 3 real servers on a ZooKeeper of its own, under steady reads
//! and writes from the `table-check` clients plus a ledger writer of
//! unique keys. It kills (-9) the head, the middle and the tail in turn,
//! `rounds` times each, then the tail right after the head (once the head's
//! removal shows in the survivors' roles: two removals in a row by the same
//! neighbour); a fresh server joins after each kill. Then it SIGSTOPs the
//! tail for each pause length and resumes it. Gaps are computed afterwards
//! from the recorded history (see [`super::failover_report`]). At the end
//! every acknowledged ledger write must be on every server (asked of each),
//! the servers must hold identical tables, and the history must be
//! linearizable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use log::info;

use super::cluster::{Cluster, ServerProcess};
use super::failover_report::{self, Disruption, Row};
use super::history::{Clock, Fault, History, OpKind, Record};
use super::run::{check_convergence, final_reads, local_table};
use super::verify::{self, Report};
use super::workload::{self, Workload};
use crate::cli::args::CHAIN_PATH_DEFAULT;
use crate::client::Client;
use crate::limits::CHECK_HEAL_TIMEOUT;

/// What `table-check failover` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverConfig {
    /// Kills per victim (head, middle, tail, tail after head).
    pub rounds: usize,
    /// SIGSTOP lengths of the tail, one pause each.
    pub pauses_ms: Vec<u64>,
    /// Clients of the shared keys (the ledger writer comes on top).
    pub clients: u64,
    pub keys: u64,
    pub seed: u64,
    /// The servers' ZooKeeper session timeout (their default: 5 s).
    pub session_timeout: Duration,
    pub server_binary: PathBuf,
    pub log_dir: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    pub json: bool,
}

/// What a failover run found.
pub struct FailoverOutcome {
    pub rows: Vec<Row>,
    pub history: History,
    pub report: Report,
    /// Lost or diverged writes, clients that never recovered: each a failure.
    pub problems: Vec<String>,
}

impl FailoverOutcome {
    pub fn passed(&self) -> bool {
        self.report.passed() && self.problems.is_empty()
    }
}

/// The victims, in order, by the role `stats` reports.
const VICTIMS: [&str; 3] = ["head", "middle", "tail"];
/// Quiet time before the first fault and after each recovery, so every
/// client is back at work before the next fault.
const QUIET: Duration = Duration::from_millis(300);
/// How long the chain may take to show a removal in its roles.
const REMOVAL_SEEN_WITHIN: Duration = Duration::from_secs(30);
/// Ledger keys begin with this (the workload's keys with `k`).
const LEDGER_PREFIX: &str = "ledger";

/// Runs the whole measurement. An error: the cluster could not be set up
/// or healed (no verdict).
pub fn run(config: &FailoverConfig, interrupted: &AtomicBool) -> Result<FailoverOutcome, String> {
    let clock = Clock::new();
    let server_args = vec!["--zk-timeout-ms".to_owned(), config.session_timeout.as_millis().to_string()];
    info!("starting ZooKeeper and a chain of 3 servers");
    let mut cluster =
        Cluster::start(&config.server_binary, (3, 1), &server_args, config.log_dir.clone(), None, false)
            .map_err(|error| format!("cannot start the cluster: {error}"))?;
    let timeout = (config.session_timeout * 8).max(Duration::from_secs(5));
    let workload = Workload {
        zk_hosts: cluster.zookeeper.address(),
        chain_path: CHAIN_PATH_DEFAULT.to_owned(),
        keys: config.keys,
        think_max: Duration::from_millis(2),
        client: cluster.client_options(timeout).map_err(|error| error.to_string())?,
        read_anywhere: None,
    };
    let stop = AtomicBool::new(false);
    let mut faults = Vec::new();
    let mut disruptions = Vec::new();
    let (records, faulted) = thread::scope(|scope| {
        let clients = workload::spawn_clients(scope, config.clients, &workload, (config.seed, clock), &stop);
        let ledger = scope.spawn(|| ledger_writer(config.clients + 1, &workload, clock, &stop));
        let mut phases = Phases { cluster: &mut cluster, clock, faults: &mut faults, interrupted };
        let faulted =
            phases.kills(config, &mut disruptions).and_then(|()| phases.pauses(config, &mut disruptions));
        thread::sleep(QUIET);
        stop.store(true, Ordering::SeqCst);
        let mut records: Vec<Record> =
            clients.into_iter().flat_map(|client| client.join().unwrap_or_default()).collect();
        records.extend(ledger.join().unwrap_or_default());
        (records, faulted)
    });
    faulted?;
    // Before the final reads, whose reader would count as a client that
    // read nothing until the end.
    let rows = failover_report::rows(&records, &disruptions);
    let mut history = History { seed: config.seed, records, faults };
    final_reads(&workload, &clock, &mut history);
    let mut problems = failover_report::missing(&rows);
    problems.extend(ledger_problem(&cluster, &history.records, &workload));
    problems.extend(check_convergence(&cluster.addresses(), &workload.client));
    let report = verify::verify(&history);
    Ok(FailoverOutcome { rows, history, report, problems })
}

/// The fault phases, on the cluster they change.
struct Phases<'a> {
    cluster: &'a mut Cluster,
    clock: Clock,
    faults: &'a mut Vec<Fault>,
    interrupted: &'a AtomicBool,
}

impl Phases<'_> {
    /// Every victim `rounds` times, then the tail right after the head.
    fn kills(&mut self, config: &FailoverConfig, disruptions: &mut Vec<Disruption>) -> Result<(), String> {
        thread::sleep(QUIET);
        for victim in VICTIMS {
            for _ in 0..config.rounds {
                if self.interrupted.load(Ordering::SeqCst) {
                    return Ok(());
                }
                disruptions.push(self.kill(victim)?);
                self.replace(1)?;
            }
        }
        for _ in 0..config.rounds {
            if self.interrupted.load(Ordering::SeqCst) {
                return Ok(());
            }
            let middle = self.cluster.servers[self.index_of("middle")?].address.clone();
            self.kill("head")?;
            self.await_role(&middle, "head")?;
            disruptions.push(Disruption { label: "tail after head".into(), ..self.kill("tail")? });
            self.replace(2)?;
        }
        Ok(())
    }

    /// Kills the server whose role is `role` (`head`, `middle`, `tail`).
    fn kill(&mut self, role: &str) -> Result<Disruption, String> {
        let index = self.index_of(role)?;
        let mut victim = self.cluster.servers.remove(index);
        let start_us = self.clock.now_us();
        victim.kill();
        let description = format!("kill -9 {} ({role})", victim.address);
        info!("{description}");
        self.faults.push(Fault { start_us, end_us: None, description });
        Ok(Disruption { label: role.to_owned(), start_us, removed: None })
    }

    /// The index of the live server that says it is the `role`.
    fn index_of(&self, role: &str) -> Result<usize, String> {
        let roles = self.cluster.roles();
        let found = roles.iter().position(|found| found.as_deref() == Some(role));
        found.ok_or_else(|| format!("no server is the {role}: roles {roles:?}"))
    }

    /// Waits until the server at `address` says it is the `role`.
    fn await_role(&self, address: &str, role: &str) -> Result<(), String> {
        let server = self.cluster.servers.iter().find(|server| server.address == address);
        let server: &ServerProcess = server.ok_or_else(|| format!("{address} is not running"))?;
        let deadline = Instant::now() + REMOVAL_SEEN_WITHIN;
        while Instant::now() < deadline {
            if server.stats().is_ok_and(|statistics| statistics.role == role) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(2));
        }
        Err(format!("{} did not become the {role} within {REMOVAL_SEEN_WITHIN:?}", server.address))
    }

    /// `count` fresh servers join, each waited for until ready (asked of
    /// it), then the whole chain is ready again.
    fn replace(&mut self, count: usize) -> Result<(), String> {
        for _ in 0..count {
            let start_us = self.clock.now_us();
            let address = self.cluster.add_server(0).map_err(|error| error.to_string())?.address.clone();
            let description = format!("{address} joined");
            self.faults.push(Fault { start_us, end_us: Some(self.clock.now_us()), description });
        }
        self.healed()
    }

    fn healed(&self) -> Result<(), String> {
        if !self.cluster.wait_all_ready(CHECK_HEAL_TIMEOUT) {
            return Err(format!("the chain did not heal: roles {:?}", self.cluster.roles()));
        }
        thread::sleep(QUIET);
        Ok(())
    }

    /// SIGSTOPs the tail for each length, then resumes it; whether it was
    /// removed is asked of the other servers (their removal counts).
    fn pauses(&mut self, config: &FailoverConfig, disruptions: &mut Vec<Disruption>) -> Result<(), String> {
        for &length_ms in &config.pauses_ms {
            if self.interrupted.load(Ordering::SeqCst) {
                return Ok(());
            }
            let tail = self.index_of("tail")?;
            let before = self.removals_by_others(tail)?;
            let server = &self.cluster.servers[tail];
            // From when `kill -STOP` has returned: the signal is delivered.
            server.signal("STOP").map_err(|error| error.to_string())?;
            let start_us = self.clock.now_us();
            thread::sleep(Duration::from_millis(length_ms));
            server.signal("CONT").map_err(|error| error.to_string())?;
            let description = format!("pause {} (tail) for {length_ms} ms", server.address);
            info!("{description}");
            self.faults.push(Fault { start_us, end_us: Some(self.clock.now_us()), description });
            self.healed()?;
            let removed = Some(self.removals_by_others(tail)? > before);
            disruptions.push(Disruption { label: format!("sigstop {length_ms} ms"), start_us, removed });
        }
        Ok(())
    }

    /// Removals asked by every server but `except`, by proof or by lease.
    fn removals_by_others(&self, except: usize) -> Result<u64, String> {
        let others = self.cluster.servers.iter().enumerate().filter(|(index, _)| *index != except);
        others
            .map(|(_, server)| {
                let statistics =
                    server.stats().map_err(|error| format!("{}: stats: {error}", server.address))?;
                Ok(statistics.removals_by_proof + statistics.removals_by_lease)
            })
            .sum()
    }
}

/// Client `number` puts `ledger<n>` = `n` for n = 1, 2, ... until `stop`:
/// keys written once each, so every acknowledged one must be on every
/// server at the end.
fn ledger_writer(number: u64, workload: &Workload, clock: Clock, stop: &AtomicBool) -> Vec<Record> {
    let mut records = Vec::new();
    let Ok(mut client) = Client::chain(&workload.zk_hosts, &workload.chain_path, workload.client.clone())
    else {
        return records;
    };
    let mut count = 0u64;
    while !stop.load(Ordering::SeqCst) {
        count += 1;
        let mut record =
            Record::called(number, format!("{LEDGER_PREFIX}{count}"), OpKind::Put, clock.now_us());
        record.value = Some(count);
        if client.put(&record.key, count.to_string()).is_ok() {
            record.return_us = Some(clock.now_us());
        }
        records.push(record);
        thread::sleep(Duration::from_millis(1));
    }
    records
}

/// The first acknowledged ledger write some server lacks, if any.
fn ledger_problem(cluster: &Cluster, records: &[Record], workload: &Workload) -> Option<String> {
    let acknowledged: Vec<&Record> = records
        .iter()
        .filter(|record| record.key.starts_with(LEDGER_PREFIX) && record.return_us.is_some())
        .collect();
    for server in &cluster.servers {
        let table = match local_table(&server.address, &workload.client) {
            Ok(table) => table,
            Err(error) => return Some(format!("cannot read {}'s table: {error}", server.address)),
        };
        let lost = acknowledged.iter().filter(|record| {
            let value = record.value.unwrap_or_default().to_string().into_bytes();
            table.get(&record.key) != Some(&value)
        });
        let lost: Vec<&str> = lost.map(|record| record.key.as_str()).collect();
        if let Some(first) = lost.first() {
            return Some(format!(
                "{} lacks {} of {} acknowledged ledger writes (first: {first})",
                server.address,
                lost.len(),
                acknowledged.len()
            ));
        }
    }
    info!("all {} acknowledged ledger writes are on every server", acknowledged.len());
    None
}
