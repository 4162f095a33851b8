//! Coordination: all I/O with ZooKeeper. The only module that uses the
//! `zookeeper` crate, so its traps (see DESIGN.md) are handled in one place.
//!
//! - [`acl`]: the chain's digest identity and the ACL of its nodes.
//! - [`zk`]: workarounds for the `zookeeper` crate: guarded connect, time-bounded calls.
//! - [`handshake`]: probes a host with a real ZooKeeper handshake before the crate sees it.
//! - [`log_pace`]: the process's logger: paces the crate's reconnections, limits repeated lines.
//! - [`view_reader`]: reads a chain's members and epoch out of ZooKeeper.
//! - [`chain_watch`]: a client's ZooKeeper session on a node (a chain): watches it, reads it on
//!   request.
//! - [`shard_watch`]: the shard map: following it, reading it once, creating it.
//! - [`membership`]: a server's registration, views, session lease, fencing and commit record.

pub mod acl;
pub mod chain_watch;
pub mod handshake;
pub mod log_pace;
pub mod membership;
pub mod shard_watch;
pub mod view_reader;
pub mod zk;
