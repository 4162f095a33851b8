//! The fault injector of `table-check`: on a seeded schedule it kills a
//! server (and starts a fresh one that joins, or, `--durable`, restarts it
//! on its data directory), kills every server at once and restarts them on
//! their directories (`--durable`), pauses one past its session
//! timeout, adds a server (retiring the oldest), stops ZooKeeper for a
//! while, or cuts a server off from ZooKeeper (and maybe from the other
//! servers) while clients still reach it. One fault at a time, each only once every server is a ready
//! member again, so the chain never loses more members than it can survive.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use log::warn;

use super::cluster::Cluster;
use super::history::{Clock, Fault};
use super::random::SplitMix64;
use crate::limits::CHECK_HEAL_TIMEOUT;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// kill -9 a server, then a fresh server joins.
    Kill,
    /// SIGSTOP a server longer than its session timeout, then SIGCONT.
    Pause,
    /// A fresh server joins; the oldest is then killed to keep the size.
    Join,
    /// ZooKeeper itself is stopped for a while and restarted.
    Zk,
    /// A server is cut off from ZooKeeper, and half the time from the other
    /// servers too, longer than its session timeout, but clients still
    /// reach it; then the network heals. Needs network namespaces.
    Partition,
    /// kill -9 every server at once, then restart them all on their data
    /// directories (`--durable` only).
    CrashAll,
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(text: &str) -> Result<FaultKind, String> {
        match text {
            "kill" => Ok(FaultKind::Kill),
            "pause" => Ok(FaultKind::Pause),
            "join" => Ok(FaultKind::Join),
            "zk" => Ok(FaultKind::Zk),
            "partition" => Ok(FaultKind::Partition),
            "crash-all" => Ok(FaultKind::CrashAll),
            other => Err(format!("unknown fault '{other}' (kill, pause, join, zk, partition, crash-all)")),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Join => "join",
            FaultKind::Zk => "zk",
            FaultKind::Partition => "partition",
            FaultKind::CrashAll => "crash-all",
        };
        f.write_str(name)
    }
}

/// Parses `kill,pause,join,zk,partition,crash-all`.
pub fn parse_kinds(text: &str) -> Result<Vec<FaultKind>, String> {
    text.split(',').filter(|part| !part.is_empty()).map(str::parse).collect()
}

/// Everything the nemesis thread needs.
pub struct Nemesis {
    pub cluster: Arc<Mutex<Cluster>>,
    /// Live server addresses, for clients that read from any server.
    pub addresses: Arc<RwLock<Vec<String>>>,
    pub kinds: Vec<FaultKind>,
    /// The size the chain is kept at.
    pub nodes: usize,
    pub session_timeout: Duration,
    pub clock: Clock,
}

/// Quiet time between two faults, in milliseconds.
const QUIET_MS: (u64, u64) = (1000, 3000);

impl Nemesis {
    /// Injects faults until `stop`; returns what it did. Leaves every server
    /// running and ZooKeeper up.
    pub fn run(&self, seed: u64, stop: &AtomicBool) -> Vec<Fault> {
        let mut random = SplitMix64::derive(seed, u64::MAX);
        let mut faults = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            sleep_unless_stopped(Duration::from_millis(random.between(QUIET_MS.0, QUIET_MS.1)), stop);
            if stop.load(Ordering::SeqCst) || self.kinds.is_empty() {
                continue;
            }
            let mut cluster = self.cluster.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if !cluster.wait_all_ready(CHECK_HEAL_TIMEOUT) {
                warn!("the chain did not heal; no new fault");
                continue;
            }
            let kind = self.kinds[random.below(self.kinds.len() as u64) as usize];
            let victim = random.below(cluster.servers.len() as u64) as usize;
            let start_us = self.clock.now_us();
            let result = match kind {
                FaultKind::Kill if cluster.data_dirs.is_some() => {
                    let address = cluster.servers[victim].address.clone();
                    let result = cluster.restart_on_disk(victim);
                    let description = format!("kill -9 {address}, restarted on its data directory");
                    faults.push(Fault { start_us, end_us: Some(self.clock.now_us()), description });
                    result.map(drop)
                }
                FaultKind::Kill => self.kill_and_replace(&mut cluster, victim, start_us, &mut faults),
                FaultKind::CrashAll => {
                    let result = cluster.crash_all();
                    let description = "kill -9 every server at once, restarted on their data directories";
                    faults.push(Fault {
                        start_us,
                        end_us: Some(self.clock.now_us()),
                        description: description.into(),
                    });
                    result
                }
                FaultKind::Pause => {
                    let pause = self.longer_than_session(&mut random);
                    let server = &cluster.servers[victim];
                    let description = format!("pause {} for {} ms", server.address, pause.as_millis());
                    let result = server.signal("STOP").and_then(|()| {
                        thread::sleep(pause);
                        server.signal("CONT")
                    });
                    faults.push(Fault { start_us, end_us: Some(self.clock.now_us()), description });
                    result
                }
                FaultKind::Join => {
                    let chain = cluster.servers[victim].chain;
                    let joined = cluster.add_server(chain).map(|server| server.address.clone());
                    let result = joined.map(|address| {
                        faults.push(Fault {
                            start_us,
                            end_us: Some(self.clock.now_us()),
                            description: format!("{address} joined"),
                        });
                    });
                    let members = cluster.servers.iter().filter(|server| server.chain == chain).count();
                    if result.is_ok() && members > self.nodes {
                        let retire_us = self.clock.now_us();
                        let oldest = cluster.servers.iter().position(|server| server.chain == chain);
                        let retired = cluster.servers.remove(oldest.expect("the chain has members"));
                        faults.push(Fault {
                            start_us: retire_us,
                            end_us: None,
                            description: format!("kill -9 {} (oldest)", retired.address),
                        });
                        drop(retired);
                    }
                    result
                }
                FaultKind::Zk => {
                    let outage = self.session_timeout.mul_f64(0.5 + random.below(250) as f64 / 100.0);
                    cluster.zookeeper.stop();
                    thread::sleep(outage);
                    let result = cluster.zookeeper.restart();
                    let description = format!("ZooKeeper down for {} ms", outage.as_millis());
                    faults.push(Fault { start_us, end_us: Some(self.clock.now_us()), description });
                    result
                }
                FaultKind::Partition => {
                    let from_peers = random.below(2) == 1;
                    let length = self.longer_than_session(&mut random);
                    self.partition(&cluster, victim, from_peers, length, &mut faults)
                }
            };
            if let Err(error) = result {
                warn!("fault {kind} failed: {error}");
            }
            *self.addresses.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = cluster.addresses();
        }
        faults
    }

    /// 1.5 to 3 session timeouts: long enough for ZooKeeper to end the
    /// victim's session and the chain to go on without it.
    fn longer_than_session(&self, random: &mut SplitMix64) -> Duration {
        self.session_timeout.mul_f64(1.5 + random.below(150) as f64 / 100.0)
    }

    /// Cuts server `victim` off from ZooKeeper (and from the other servers if
    /// `from_peers`) for `length`, then heals the network.
    fn partition(
        &self,
        cluster: &Cluster,
        victim: usize,
        from_peers: bool,
        length: Duration,
        faults: &mut Vec<Fault>,
    ) -> std::io::Result<()> {
        let server = &cluster.servers[victim];
        let net_host =
            server.net_host().ok_or_else(|| std::io::Error::other("servers run without namespaces"))?;
        let peers: Vec<_> = cluster
            .servers
            .iter()
            .filter(|other| from_peers && other.pid() != server.pid())
            .filter_map(|other| other.net_host().map(|host| host.address))
            .collect();
        let start_us = self.clock.now_us();
        let cut = net_host.cut_off(&peers);
        if cut.is_ok() {
            thread::sleep(length);
        }
        let healed = net_host.heal();
        let from = if from_peers { "ZooKeeper and the other servers" } else { "ZooKeeper" };
        faults.push(Fault {
            start_us,
            end_us: Some(self.clock.now_us()),
            description: format!("{} cut off from {from} for {} ms", server.address, length.as_millis()),
        });
        cut.and(healed)
    }

    fn kill_and_replace(
        &self,
        cluster: &mut Cluster,
        victim: usize,
        start_us: u64,
        faults: &mut Vec<Fault>,
    ) -> std::io::Result<()> {
        let mut killed = cluster.servers.remove(victim);
        let chain = killed.chain;
        killed.kill();
        faults.push(Fault { start_us, end_us: None, description: format!("kill -9 {}", killed.address) });
        drop(killed);
        *self.addresses.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = cluster.addresses();
        let join_us = self.clock.now_us();
        let address = cluster.add_server(chain)?.address.clone();
        faults.push(Fault {
            start_us: join_us,
            end_us: Some(self.clock.now_us()),
            description: format!("{address} joined"),
        });
        Ok(())
    }
}

fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let deadline = Instant::now() + duration;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lists_parse() {
        assert_eq!(parse_kinds("kill,pause,join,zk").unwrap().len(), 4);
        assert_eq!(parse_kinds("pause").unwrap(), vec![FaultKind::Pause]);
        assert!(parse_kinds("").unwrap().is_empty());
        assert!(parse_kinds("kill,flood").is_err());
        assert_eq!(parse_kinds("partition,zk").unwrap(), vec![FaultKind::Partition, FaultKind::Zk]);
        assert_eq!(parse_kinds("crash-all").unwrap(), vec![FaultKind::CrashAll]);
    }
}
