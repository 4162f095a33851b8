//! Counts of state transfers (snapshots streamed to a joining successor or
//! received from a predecessor), for metrics: lock-free, bumped by the
//! replication threads once per chunk.

use std::sync::atomic::{AtomicU64, Ordering};

/// One direction's transfers.
#[derive(Default)]
pub struct TransferCount {
    /// Transfers begun.
    started: AtomicU64,
    /// Bytes of snapshot chunks, as encoded on the wire.
    bytes: AtomicU64,
}

impl TransferCount {
    /// A chunk of `bytes`, the first of a transfer if `first`.
    pub fn chunk(&self, bytes: u64, first: bool) {
        if first {
            self.started.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (transfers, bytes) now.
    pub fn read(&self) -> (u64, u64) {
        (self.started.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// Both directions.
#[derive(Default)]
pub struct StateTransfers {
    /// Snapshots we streamed to a successor.
    pub sent: TransferCount,
    /// Snapshots we installed from a predecessor.
    pub received: TransferCount,
}
