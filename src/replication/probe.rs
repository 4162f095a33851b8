//! Proof of death for a neighbour: after its link closed (or it fell
//! silent), one connect to its listening port. Refused means no process
//! listens there any more; a timeout or an accepted connect proves nothing
//! (see `chain::eviction`). What the core makes of it is logged here once.

use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};

use log::{debug, info};

use crate::chain::eviction::{Evidence, Hold};
use crate::limits::REPLICATION_PROBE_TIMEOUT;
use crate::replica::Replica;
use crate::view::Member;

/// What one connect to `address` shows; `None` when the peer listens.
pub fn probe(address: &str) -> Option<Evidence> {
    let target = address.to_socket_addrs().ok()?.next()?;
    match TcpStream::connect_timeout(&target, REPLICATION_PROBE_TIMEOUT) {
        Ok(_) => None,
        Err(error) if error.kind() == ErrorKind::ConnectionRefused => Some(Evidence::Refused),
        Err(_) => Some(Evidence::TimedOut),
    }
}

/// Probes `peer` and tells the replica what it showed.
pub fn probe_and_report(replica: &Replica, peer: &Member) {
    let Some(evidence) = probe(&peer.address) else {
        return;
    };
    match replica.peer_unreachable(&peer.name, evidence) {
        Ok(()) => info!("{peer} is gone ({evidence}): asking ZooKeeper to remove it"),
        Err(Hold::NoProof) => debug!("{peer}: {evidence}; not proof of its death"),
        Err(hold) => info!("{peer} is gone ({evidence}), but it stays in the chain for now: {hold:?}"),
    }
}
