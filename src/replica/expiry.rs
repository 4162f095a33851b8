//! Expiry on the host: the wall clock the node's deadlines are read
//! against, the head's periodic deletes of due keys, and reads that treat
//! a key past its deadline as absent (see `chain::expiry`).

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{AckWriter, Replica};

/// Ms since the Unix epoch on this machine's wall clock: what deadlines
/// are (the head's when it sets one; each reader's own when it checks one).
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl Replica {
    /// At the head, deletes the keys whose deadline passed (each an
    /// ordinary replicated write); elsewhere nothing. Called periodically;
    /// returns how many keys it deleted.
    pub fn expire_due(&self) -> usize {
        if !self.expiring.load(Ordering::SeqCst) {
            return 0;
        }
        let (now_ms, lease_now_ms) = (wall_ms(), self.now_ms());
        self.step(AckWriter::Wake, |node, store, carry| node.expire_due(now_ms, lease_now_ms, store, carry))
    }

    /// Whether `key`'s deadline passed on our clock (its delete may not
    /// have arrived yet): a read answers as if it were absent.
    pub fn expired(&self, key: &str) -> bool {
        self.deadline_of(key).is_some_and(|deadline| deadline <= wall_ms())
    }

    /// `key`'s deadline (ms since the epoch), if it has one.
    pub fn deadline_of(&self, key: &str) -> Option<u64> {
        if !self.expiring.load(Ordering::SeqCst) {
            return None;
        }
        self.node.lock().deadline_of(key)
    }
}
