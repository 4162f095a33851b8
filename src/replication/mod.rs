//! The replication path between neighbours in the chain.
//!
//! A predecessor's [`sender`] thread connects to its successor's client port
//! and sends `Request{OP_REPLICATE, replica_hello}`; the successor's
//! connection thread hands the socket to the [`receiver`], which answers with
//! `replica_welcome` (its last applied sequence number, or a request for a
//! snapshot) — with a peer secret only after both ends have proved it (see
//! [`handshake`]). From then on `Downstream` frames (write batches, snapshot
//! chunks, the hand-over mark, heartbeats) flow down and cumulative
//! `Upstream` acks flow back up. A [`migration`] stream between two
//! chains' heads opens the same way.

mod error;
pub mod handshake;
pub mod migration;
pub mod probe;
pub mod receiver;
pub mod sender;

pub use error::LinkError;

use crate::limits::Limits;
use crate::secure::ServerSecurity;

/// How this server's links are opened and checked, both ways: the chain's
/// path and the peer secret (both part of what a link proves), TLS, and
/// the limits replicated writes are held to (a client's).
#[derive(Debug, Default)]
pub struct LinkSettings {
    pub chain_path: String,
    pub security: ServerSecurity,
    pub limits: Limits,
}
