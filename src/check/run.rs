//! One `table-check` run: a cluster (or an existing chain), clients,
//! the nemesis, then healing, final reads, the convergence check and the
//! linearizability check.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::Duration;

use log::info;

use super::cluster::Cluster;
use super::history::{Clock, History, OpKind, Record};
use super::nemesis::{FaultKind, Nemesis};
use super::netns::TestNetwork;
use super::verify::{self, Report};
use super::watcher::{self, Watcher};
use super::workload::{self, Workload};
use crate::client::Client;
use crate::client::connection::{ClientOptions, Connection};
use crate::coord::shard_watch::{MapReading, read_map_once};
use crate::coord::view_reader::read_view_once;
use crate::limits::{CHECK_FINAL_HEAL_TIMEOUT, CHECK_SETTLE, CHECK_UNHEALED_LOG_LINES, SHARDS_PATH_DEFAULT};
use crate::proto::{Opcode, Request};
use crate::shard::slot::slot_of;

/// What a run does.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    pub duration: Duration,
    pub clients: u64,
    pub keys: u64,
    pub nodes: usize,
    /// `--chains`: chains of `nodes` servers each, sharing the key space
    /// through a shard map (1: one chain, no map).
    pub chains: usize,
    pub seed: u64,
    pub nemesis: Vec<FaultKind>,
    pub session_timeout: Duration,
    /// The `table-server` to start (ignored with `attach`).
    pub server_binary: PathBuf,
    /// Use an existing chain at these ZooKeeper hosts; no faults.
    pub attach: Option<String>,
    pub chain_path: String,
    /// Start servers with `--unsafe-read-anywhere` and read from any server:
    /// the run must fail.
    pub broken_reads: bool,
    pub think_max: Duration,
    /// Save every server's log here when it stops.
    pub log_dir: Option<PathBuf>,
    /// `--durable`: every server has a data directory (see `disks`).
    pub durable: bool,
    /// With `attach`: the client secret and TLS of that chain
    /// (`--secret-file`, `--tls-ca`). A chain table-check starts has
    /// secrets of its own.
    pub client: ClientOptions,
}

/// How a run ended.
pub struct Outcome {
    pub history: History,
    pub report: Report,
    /// `None` if every live server holds the same table as the others of
    /// its chain, and (several chains) only keys the shard map gives its
    /// chain; else why not.
    pub divergence: Option<String>,
    /// `None` if the run's watcher saw exactly the committed changes in
    /// order (or none ran: `attach`); else what it got wrong.
    pub watch: Option<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.report.passed() && self.divergence.is_none() && self.watch.is_none()
    }
}

/// Client id of the final reads.
const FINAL_READER: u64 = 0;

/// Runs a check. `interrupted` (set on SIGINT/SIGTERM) ends the timed phase
/// early; the run still heals, checks what it has and stops every process.
pub fn run(config: &CheckConfig, interrupted: &AtomicBool) -> Result<Outcome, String> {
    let clock = Clock::new();
    let operation_timeout = (config.session_timeout * 8).max(Duration::from_secs(5));
    let (cluster, zk_hosts, client) = match &config.attach {
        Some(hosts) => {
            (None, hosts.clone(), ClientOptions { timeout: operation_timeout, ..config.client.clone() })
        }
        None => {
            let mut server_args =
                vec!["--zk-timeout-ms".to_owned(), config.session_timeout.as_millis().to_string()];
            if config.broken_reads {
                server_args.push("--unsafe-read-anywhere".into());
            }
            let network = match config.nemesis.contains(&FaultKind::Partition) {
                true => Some(TestNetwork::create().map_err(|error| error.to_string())?),
                false => None,
            };
            info!("starting ZooKeeper and {} chain(s) of {} servers", config.chains, config.nodes);
            let cluster = Cluster::start(
                &config.server_binary,
                (config.nodes, config.chains),
                &server_args,
                config.log_dir.clone(),
                network,
                config.durable,
            )
            .map_err(|error| format!("cannot start the cluster: {error}"))?;
            let hosts = cluster.zookeeper.address();
            let client = cluster.client_options(operation_timeout).map_err(|error| error.to_string())?;
            (Some(Arc::new(Mutex::new(cluster))), hosts, client)
        }
    };
    let addresses = Arc::new(RwLock::new(match &cluster {
        Some(cluster) => cluster.lock().map_err(|_| "cluster lock poisoned")?.addresses(),
        None => Vec::new(),
    }));
    let workload = Workload {
        zk_hosts: zk_hosts.clone(),
        chain_path: config.chain_path.clone(),
        keys: config.keys,
        think_max: config.think_max,
        client,
        read_anywhere: config.broken_reads.then(|| Arc::clone(&addresses)),
    };

    // A chain of our own starts empty, so its watcher can start at 1. Its
    // watch is of a prefix, which one chain of several cannot answer.
    let watching = (config.attach.is_none() && config.chains <= 1).then(|| Watcher::start(&workload));
    let stop_clients = AtomicBool::new(false);
    let stop_nemesis = AtomicBool::new(false);
    let (records, faults) = thread::scope(|scope| {
        let clients =
            workload::spawn_clients(scope, config.clients, &workload, (config.seed, clock), &stop_clients);
        let nemesis = cluster.as_ref().map(|cluster| {
            let nemesis = Nemesis {
                cluster: Arc::clone(cluster),
                addresses: Arc::clone(&addresses),
                kinds: config.nemesis.clone(),
                nodes: config.nodes,
                session_timeout: config.session_timeout,
                clock,
            };
            let stop = &stop_nemesis;
            scope.spawn(move || nemesis.run(config.seed, stop))
        });
        let deadline = std::time::Instant::now() + config.duration;
        while std::time::Instant::now() < deadline && !interrupted.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(50));
        }
        stop_nemesis.store(true, Ordering::SeqCst);
        let faults = nemesis.map(|nemesis| nemesis.join().unwrap_or_default()).unwrap_or_default();
        if let Some(cluster) = &cluster {
            let cluster = cluster.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if !cluster.wait_all_ready(CHECK_FINAL_HEAL_TIMEOUT) {
                log::warn!("the chain did not heal after the faults: roles {:?}", cluster.roles());
                for (server, role) in cluster.servers.iter().zip(cluster.roles()) {
                    let log = server.log();
                    let tail: Vec<&str> = log.lines().rev().take(CHECK_UNHEALED_LOG_LINES).collect();
                    let lines: Vec<&str> = tail.into_iter().rev().collect();
                    log::warn!("{} ({role:?}), last log lines:\n{}", server.address, lines.join("\n"));
                }
            }
        }
        thread::sleep(CHECK_SETTLE);
        stop_clients.store(true, Ordering::SeqCst);
        let records: Vec<Record> =
            clients.into_iter().flat_map(|client| client.join().unwrap_or_default()).collect();
        (records, faults)
    });

    let mut history = History { seed: config.seed, records, faults };
    final_reads(&workload, &clock, &mut history);
    let watch = watching.and_then(|watching| match watching.finish(&workload) {
        Ok(Some(events)) => {
            info!("the watcher saw {} changes", events.len());
            watcher::check(&events, &history.records, config.keys)
        }
        Ok(None) => None,
        Err(problem) => Some(problem),
    });
    let chains = match &cluster {
        Some(cluster) => cluster.lock().map_err(|_| "cluster lock poisoned")?.addresses_by_chain(),
        None => vec![(None, chain_members(&zk_hosts, &config.chain_path)?)],
    };
    let divergence = chains
        .iter()
        .find_map(|(_, members)| check_convergence(members, &workload.client))
        .or_else(|| check_placement(&zk_hosts, &chains, &workload.client));
    let report = verify::verify(&history);
    Ok(Outcome { history, report, divergence, watch })
}

/// After the run: one read of every key through the chain, part of the
/// history, so a write lost at the very end is caught too.
pub(super) fn final_reads(workload: &Workload, clock: &Clock, history: &mut History) {
    let Ok(mut client) = Client::chain(&workload.zk_hosts, &workload.chain_path, workload.client.clone())
    else {
        return;
    };
    for key in 0..workload.keys {
        let key = format!("k{key}");
        let call_us = clock.now_us();
        if let Ok(value) = client.get(&key) {
            history.records.push(Record {
                observed: value.map(|bytes| workload::decode_value(&bytes)),
                return_us: Some(clock.now_us()),
                ..Record::called(FINAL_READER, key, OpKind::Get, call_us)
            });
        }
    }
}

/// Addresses of an existing chain's members.
fn chain_members(zk_hosts: &str, chain_path: &str) -> Result<Vec<String>, String> {
    let view = read_view_once(zk_hosts, chain_path, Duration::from_secs(5))?;
    Ok(view.members.iter().map(|member| member.address.clone()).collect())
}

/// Every server's own table, compared; waits a little for stragglers.
pub(super) fn check_convergence(addresses: &[String], options: &ClientOptions) -> Option<String> {
    let mut last_problem = None;
    for _ in 0..50 {
        let tables: Vec<Result<BTreeMap<String, Vec<u8>>, String>> =
            addresses.iter().map(|address| local_table(address, options)).collect();
        last_problem = match tables.iter().find_map(|table| table.as_ref().err()) {
            Some(error) => Some(error.clone()),
            None => {
                let tables: Vec<_> = tables.into_iter().flatten().collect();
                let differing = tables.windows(2).position(|pair| pair[0] != pair[1]);
                differing.map(|index| {
                    format!(
                        "{} ({} keys) and {} ({} keys) hold different tables",
                        addresses[index],
                        tables[index].len(),
                        addresses[index + 1],
                        tables[index + 1].len()
                    )
                })
            }
        };
        last_problem.as_ref()?;
        thread::sleep(Duration::from_millis(200));
    }
    last_problem
}

/// Several chains: every key a server holds must be of a slot the shard
/// map gives its chain (a key elsewhere was routed or admitted wrongly).
fn check_placement(
    zk_hosts: &str,
    chains: &[(Option<String>, Vec<String>)],
    options: &ClientOptions,
) -> Option<String> {
    if chains.len() < 2 {
        return None;
    }
    let map = match read_map_once(zk_hosts, SHARDS_PATH_DEFAULT, Duration::from_secs(5)) {
        Ok(MapReading::Map(map)) => map,
        Ok(other) => return Some(format!("the shard map is gone: {other:?}")),
        Err(error) => return Some(format!("cannot read the shard map: {error}")),
    };
    for (chain, members) in chains {
        let chain = chain.as_deref().unwrap_or_default();
        for address in members {
            let table = match local_table(address, options) {
                Ok(table) => table,
                Err(error) => return Some(error),
            };
            if let Some(key) = table.keys().find(|key| map.owner(slot_of(key)) != chain) {
                let owner = map.owner(slot_of(key));
                return Some(format!("{address} of chain {chain} holds {key}, which is chain {owner}'s"));
            }
        }
    }
    None
}

/// One server's own table (`local_read` gettable), whatever its role.
pub fn local_table(address: &str, options: &ClientOptions) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut connection = Connection::open(address, options).map_err(|error| error.to_string())?;
    let mut request = Request::new();
    request.opcode = Opcode::OP_GETTABLE.into();
    request.local_read = true;
    let response = connection.call(&request).map_err(|error| error.to_string())?;
    if response.opcode.enum_value() != Ok(Opcode::OP_GETTABLE) {
        return Err(format!("{address}: {}", response.error_message));
    }
    Ok(response.entries.into_iter().map(|entry| (entry.key, entry.value)).collect())
}
