//! The chain replication protocol of one server, as a pure state machine.
//!
//! Nothing in here touches a socket, a thread, a lock, ZooKeeper or a
//! clock: events come in as method calls on [`ChainNode`] (a client write,
//! a replicated batch, a snapshot chunk, the hand-over mark, an ack from the
//! successor, a new view from ZooKeeper, a link's hello, the lease confirmed
//! or lost, the time passing), the table it changes is a [`Store`] handed
//! in, and everything else it decides comes out as an [`Action`] (forward a
//! write, the commit point moved, end the commit waits, announce readiness).
//! The server (`replica`, `replication`, `membership`) runs it under one
//! lock and carries out the actions; the simulator (`check::sim`) runs many
//! of them in one thread on a seeded schedule of faults. Both run the same
//! code, so what the simulator proves is what the server does.
//!
//! In the manner of raft-rs's `RawNode` (no I/O inside; the caller feeds
//! messages and ticks and carries out what comes back) and TigerBeetle's
//! replica (generic over storage and time so a simulator can drive it).
//!
//! - [`node`]: [`ChainNode`], the protocol: sequence numbers, commit point,
//!   exactly-once, roles, reads; its replication side (links, snapshots,
//!   hand-over, acks) and membership side (views, lease, fencing, the commit
//!   record) are in `replicate.rs` and `membership.rs`.
//! - [`lifecycle`]: the one enum of a member's join and hand-over states.
//! - [`injected`]: the safety checks by name, which `--inject-bug` switches
//!   off one at a time through one hook.
//! - [`writes`]: client writes at the head (put, del, cas, incr, mset):
//!   decided there, sent down as their resulting state.
//! - [`expiry`]: each expiring key's deadline, and the head's deletes of
//!   the keys whose deadline passed.
//! - [`clients`]: each client's latest write, for exactly-once retries.
//! - [`eviction`]: proof of death, and the guard rails on asking
//!   ZooKeeper to remove a neighbour.
//! - [`link`]: the two ends of a replication link: resume point or
//!   snapshot, Sent-list trimming, hand-over mark, heartbeats, acks.
//! - [`liveness`]: heartbeats due, and when a silent peer is suspect.
//! - [`lease`]: the tail's read lease, renewed by its predecessor's
//!   heartbeats, and why removing a silent tail after it is safe.
//! - [`sent`]: the Sent list: writes forwarded and not yet committed.
//! - [`bootstrap`]: whether a member restarts a chain that has no ready member.
//! - [`registration`]: one registration in ZooKeeper: session confirmation,
//!   announcing readiness, the commit record, leaving, starting the chain.
//! - [`durable`]: `--data-dir`: what is logged, the commit point held to
//!   what is on disk (here and, by each frame's synced report, before
//!   us), and replaying the log.
//! - [`uncommitted`]: durable: the keys a read must wait for.
//! - [`effects`]: the [`Action`]s out and the [`Store`] in.
//! - [`migration`]: online slot migration: the protocol, and the source
//!   head's decisions as it drives one (claim, stream, pause, drain, flip);
//!   the node's side (snapshot records, import writes) in `migration_node.rs`.
//! - [`slot_gate`]: a member's pause of moving slots, and the target
//!   head's side of the stream (attempts, exactly-once records).

pub mod bootstrap;
pub mod clients;
pub mod durable;
pub mod effects;
pub mod eviction;
pub mod expiry;
pub mod injected;
pub mod lease;
pub mod lifecycle;
pub mod link;
pub mod liveness;
mod membership;
pub mod migration;
mod migration_node;
pub mod node;
pub mod registration;
pub mod rejoin;
mod replicate;
#[cfg(test)]
mod scenarios;
pub mod sent;
pub mod slot_gate;
pub mod uncommitted;
pub mod writes;

pub use durable::{Durable, DurablePoint};
pub use effects::{Action, AppliedWrite, Effects, Store};
pub use injected::Check;
pub use lifecycle::Lifecycle;
pub use node::{ChainNode, NodeConfig, Progress, Refusal, Role, SnapshotPoint, Welcome};
pub use uncommitted::ReadKeys;
pub use writes::{Decline, Outcome, WriteOp, WriteReceipt};

#[cfg(test)]
mod tests {
    /// The protocol stays pure: no I/O, threads, locks or clock reads, so
    /// that the simulator runs exactly what the server runs.
    #[test]
    fn the_protocol_imports_no_io_threads_locks_or_clocks() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/chain");
        let forbidden = [
            "std::net",
            "std::thread",
            "std::sync",
            "parking_lot",
            "crossbeam",
            "zookeeper",
            "Instant",
            "SystemTime",
        ];
        let mut checked = 0;
        for entry in std::fs::read_dir(&folder).expect("src/chain is readable") {
            let path = entry.expect("a directory entry").path();
            let text = std::fs::read_to_string(&path).expect("a source file");
            // The code, without comments and tests (this list is in one).
            let code: String = text
                .lines()
                .take_while(|line| !line.starts_with("#[cfg(test)]"))
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect();
            for word in forbidden {
                assert!(!code.contains(word), "{} uses {word}", path.display());
            }
            checked += 1;
        }
        assert!(checked >= 8, "read {checked} files of src/chain");
    }

    /// Every log line of the core names its node and chain (several nodes
    /// run in one simulator, and a server's log is read beside others'):
    /// `self.identity()` in the call, or `{identity}` taken from it.
    #[test]
    fn the_core_logs_only_with_the_nodes_identity() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/chain");
        let mut lines = 0;
        for entry in std::fs::read_dir(&folder).expect("src/chain is readable") {
            let path = entry.expect("a directory entry").path();
            let text = std::fs::read_to_string(&path).expect("a source file");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (start, _) in code.match_indices('!').filter(|(at, _)| {
                ["info", "warn", "debug", "error", "trace"].iter().any(|name| code[..*at].ends_with(name))
            }) {
                let call = &code[start..code[start..].find(");").map_or(code.len(), |end| start + end)];
                let named = call.contains("self.identity()") || call.contains("{identity}");
                assert!(named, "{} logs without the node: {call}", path.display());
                lines += 1;
            }
        }
        assert!(lines >= 8, "found {lines} log calls in src/chain");
    }
}
