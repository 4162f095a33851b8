//! The replication path between neighbours in the chain.
//!
//! A predecessor's [`sender`] thread connects to its successor's client port
//! and sends `Request{OP_REPLICATE, replica_hello}`; the successor's
//! connection thread hands the socket to the [`receiver`], which answers with
//! `replica_welcome` (its last applied sequence number, or a request for a
//! snapshot). From then on `Downstream` frames (write batches, snapshot
//! chunks, the hand-over mark, heartbeats) flow down and cumulative
//! `Upstream` acks flow back up.

mod error;
pub mod receiver;
pub mod sender;

pub use error::LinkError;
