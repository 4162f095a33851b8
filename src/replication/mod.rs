//! The replication path between neighbours in the chain.
//!
//! A predecessor's [`sender`] thread connects to its successor's client port
//! and sends `Request{OP_REPLICATE, replica_hello}`; the successor's
//! connection thread hands the socket to the [`receiver`], which answers with
//! `replica_welcome` (its last applied sequence number, or a request for a
//! snapshot). From then on `Downstream` frames (write batches, snapshot
//! chunks, the hand-over mark, heartbeats) flow down and cumulative
//! `Upstream` acks flow back up.

use std::time::Duration;

pub mod receiver;
pub mod sender;

/// An idle sender sends an empty batch this often, so the receiver can tell
/// a silent predecessor from a dead one.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);

/// A receiver that hears nothing (not even a heartbeat) for this long drops
/// the link; the predecessor reconnects if it is still alive.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(5);

/// Entries per snapshot chunk: large enough to stream fast, small enough
/// that a chunk of 100-byte values stays far below the frame limit.
pub const SNAPSHOT_CHUNK_ENTRIES: usize = 8192;

/// A replication frame that cannot be written in this long means the
/// successor is stuck; the sender reconnects (or ZooKeeper removes it).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
