//! Key expiry: each expiring key's absolute deadline, ordered by time.
//!
//! The head decides expiry with its own wall clock: a `put --ttl` or an
//! `expire` becomes an absolute deadline (ms since the Unix epoch on the
//! head's clock) carried in the replicated `Write` (and in a snapshot), so
//! every replica holds the same deadlines. Once a deadline passes, the head
//! sends the key's delete down the chain as an ordinary write
//! ([`ChainNode::expire_due`]): every replica removes it at the same point of
//! the history. Every replica keeps the index, so a new head continues
//! expiring after a failover.
//!
//! Finding the due keys looks only at the front of a deadline-ordered set,
//! never at the whole table.

use std::collections::{BTreeSet, HashMap};

use super::effects::{Effects, Store};
use super::node::ChainNode;
use super::writes::Change;
use crate::limits::DEADLINE_OVERHEAD_BYTES;
use crate::proto::Entry;

/// Most keys one [`ChainNode::expire_due`] deletes: the rest wait for the
/// next call, so one call holds the node's lock briefly.
pub const EXPIRED_PER_CALL_MAX: usize = 1000;

/// The deadline of every expiring key, by key and by time.
#[derive(Debug, Default)]
pub struct Deadlines {
    by_key: HashMap<String, u64>,
    by_time: BTreeSet<(u64, String)>,
    /// Key bytes held (each key is held twice).
    key_bytes: u64,
}

impl Deadlines {
    /// Sets `key`'s deadline (`None`: it no longer expires).
    pub fn set(&mut self, key: &str, deadline_ms: Option<u64>) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_time.remove(&(old, key.to_owned()));
            self.key_bytes -= key.len() as u64;
        }
        if let Some(deadline) = deadline_ms {
            self.by_key.insert(key.to_owned(), deadline);
            self.by_time.insert((deadline, key.to_owned()));
            self.key_bytes += key.len() as u64;
        }
    }

    /// `key`'s deadline, if it expires.
    pub fn of(&self, key: &str) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// Up to `limit` keys whose deadline is at or before `now_ms`, earliest
    /// first.
    pub fn due(&self, now_ms: u64, limit: usize) -> Vec<String> {
        self.by_time
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .take(limit)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// Every deadline, for a snapshot.
    pub fn all(&self) -> Vec<(String, u64)> {
        self.by_key.iter().map(|(key, deadline)| (key.clone(), *deadline)).collect()
    }

    pub fn clear(&mut self) {
        *self = Deadlines::default();
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// What the index holds as `--max-memory` counts it: each key twice
    /// and a measured overhead per entry.
    pub fn used_memory(&self) -> u64 {
        2 * self.key_bytes + self.len() as u64 * DEADLINE_OVERHEAD_BYTES
    }
}

impl ChainNode {
    /// The head deletes the keys whose deadline is at or before `now_ms`
    /// (wall-clock ms since the epoch), earliest first, at most
    /// [`EXPIRED_PER_CALL_MAX`], each as an ordinary replicated delete with
    /// no client. Anywhere but at a head allowed to write, nothing. Returns
    /// how many keys it deleted.
    pub fn expire_due(
        &mut self,
        now_ms: u64,
        lease_now_ms: u64,
        store: &mut impl Store,
        effects: &mut impl Effects,
    ) -> usize {
        if self.check_may_write(lease_now_ms).is_err() {
            return 0;
        }
        let due = self.deadlines.due(now_ms, EXPIRED_PER_CALL_MAX);
        let count = due.len();
        for key in due {
            self.apply_change(0, 0, Change::single(key, None, None), store, effects);
        }
        count
    }

    /// Some key has a deadline.
    pub fn has_deadlines(&self) -> bool {
        !self.deadlines.is_empty()
    }

    /// Records the deadlines a write leaves: `key`'s (`None` also for a
    /// delete), and none for the further keys of an `mset`.
    pub(super) fn note_deadlines(&mut self, key: &str, deadline: Option<u64>, more: &[Entry]) {
        self.deadlines.set(key, deadline);
        for entry in more {
            self.deadlines.set(&entry.key, None);
        }
    }

    /// `key`'s deadline (ms since the epoch), if it expires.
    pub fn deadline_of(&self, key: &str) -> Option<u64> {
        self.deadlines.of(key)
    }
}
