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

    /// Every deadline, for a snapshot, earliest first (ordered, so a
    /// simulated run's snapshots are the same bytes in every process).
    pub fn all(&self) -> Vec<(String, u64)> {
        self.by_time.iter().map(|(deadline, key)| (key.clone(), *deadline)).collect()
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
            self.apply_change(0, 0, Change::expiry(key), store, effects);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{NodeConfig, WriteOp};
    use crate::check::sim::server::SimStore;

    fn head() -> ChainNode {
        ChainNode::new(NodeConfig {
            chain_path: "/chain".into(),
            standalone: true,
            client_records_max: 100,
            bug: None,
            server_id: 1,
            memory_bytes_max: None,
        })
    }

    #[test]
    fn the_head_deletes_due_keys_in_deadline_order_and_not_before() {
        let mut node = head();
        let (mut store, mut effects) = (SimStore::new(), Vec::new());
        let expiring =
            |key: &str, deadline_ms| WriteOp::Expiring { key: key.into(), value: b"v".to_vec(), deadline_ms };
        for (request, (key, deadline)) in [("c", 300), ("a", 200), ("b", 100)].into_iter().enumerate() {
            node.client_write(1, request as u64 + 1, expiring(key, deadline), 0, &mut store, &mut effects)
                .unwrap();
        }
        let plain = WriteOp::Set { key: "d".into(), value: Some(b"v".to_vec()) };
        node.client_write(1, 4, plain, 0, &mut store, &mut effects).unwrap();
        node.client_write(1, 5, WriteOp::Persist { key: "c".into() }, 0, &mut store, &mut effects).unwrap();
        assert_eq!(node.deadline_of("a"), Some(200));
        assert_eq!(node.deadline_of("c"), None, "persist removed it");

        assert_eq!(node.expire_due(99, 0, &mut store, &mut effects), 0, "nothing is due before its deadline");
        assert_eq!(store.key_count(), 4);
        assert_eq!(node.expire_due(150, 0, &mut store, &mut effects), 1, "the earliest deadline first");
        assert_eq!((store.value_of("a").is_some(), store.value_of("b")), (true, None));
        assert_eq!(node.expire_due(199, 0, &mut store, &mut effects), 0, "not a millisecond early");
        assert_eq!(node.expire_due(1000, 0, &mut store, &mut effects), 1);
        assert_eq!(store.value_of("a"), None);
        assert!(store.value_of("c").is_some() && store.value_of("d").is_some(), "no deadline, never expired");
        assert!(!node.has_deadlines());
        assert_eq!(node.progress().applied, 7, "each expiry is one write of its own");
        let plain = WriteOp::Set { key: "c".into(), value: Some(b"w".to_vec()) };
        node.client_write(1, 6, expiring("c", 5), 0, &mut store, &mut effects).unwrap();
        node.client_write(1, 7, plain, 0, &mut store, &mut effects).unwrap();
        assert_eq!(node.deadline_of("c"), None, "a put without a time to live removes the deadline");
    }

    #[test]
    fn due_keys_come_earliest_first_and_a_new_deadline_replaces_the_old() {
        let mut deadlines = Deadlines::default();
        deadlines.set("late", Some(30));
        deadlines.set("early", Some(10));
        deadlines.set("moved", Some(5));
        deadlines.set("moved", Some(20));
        deadlines.set("gone", Some(1));
        deadlines.set("gone", None);
        assert_eq!(deadlines.due(9, 10), Vec::<String>::new());
        assert_eq!(deadlines.due(25, 10), vec!["early".to_owned(), "moved".to_owned()]);
        assert_eq!(deadlines.due(100, 1), vec!["early".to_owned()], "at most the limit");
        assert_eq!(deadlines.len(), 3);
        let all = [("early".to_owned(), 10), ("moved".to_owned(), 20), ("late".to_owned(), 30)];
        assert_eq!(deadlines.all(), all, "a snapshot's deadlines, in one order");
        assert_eq!(
            deadlines.used_memory(),
            2 * ("late".len() + "early".len() + "moved".len()) as u64 + 3 * DEADLINE_OVERHEAD_BYTES
        );
        deadlines.clear();
        assert_eq!(deadlines.used_memory(), 0);
    }
}
