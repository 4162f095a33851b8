//! Client writes at the head: put, delete, compare-and-set, increment and
//! multi-key set.
//!
//! Every one is a head decision (DESIGN.md, "Order"): the head evaluates it
//! under the node's lock against its own table, which holds every write
//! sequenced so far, and sends down the chain only the resulting state
//! (a key's value or tombstone, or several values for `mset`) as one
//! ordinary write with the client's ids. Replicas never re-evaluate a
//! comparison or a sum, so they cannot disagree, and a retried `incr` finds
//! its answer (the new value) in the client record that travelled with it.
//!
//! A `cas` that does not match, or an `incr` of a value that is not a
//! number, writes nothing; it saw every write applied here, some perhaps
//! not yet committed, so its answer waits for the commit of the last of
//! them (its receipt's `sequence`): the answer never shows a write that
//! could still be lost.

use std::collections::VecDeque;

use super::clients::{self, Seen};
use super::effects::{AppliedWrite, Effects, Store};
use super::injected::Check;
use super::node::{ChainNode, Refusal};
use crate::limits::{CLIENT_RECORD_BYTES, DEADLINE_OVERHEAD_BYTES, ENTRY_OVERHEAD_BYTES, display_bytes};
use crate::proto::{ClientRecord, Entry, ErrorCode, Write};

/// A client's write, as the head receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// `put` (`value` given) or `del`.
    Set { key: String, value: Option<Vec<u8>> },
    /// Set `key` to `value` if it holds `expected` (`None`: if absent).
    Cas { key: String, expected: Option<Vec<u8>>, value: Vec<u8> },
    /// Add `delta` to the signed 64-bit decimal at `key` (absent: 0).
    Incr { key: String, delta: i64 },
    /// Set every pair in one write.
    Mset { pairs: Vec<(String, Vec<u8>)> },
    /// `put --ttl`: set `key` to `value`, to expire at `deadline_ms` (ms
    /// since the epoch on the head's clock; see `expiry`).
    Expiring { key: String, value: Vec<u8>, deadline_ms: u64 },
    /// Give an existing `key` the deadline `deadline_ms`.
    Expire { key: String, deadline_ms: u64 },
    /// Remove an existing `key`'s deadline.
    Persist { key: String },
}

/// Why a write decided to change nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decline {
    /// `cas`: the value the comparison saw (`None`: absent).
    Mismatch(Option<Vec<u8>>),
    /// `incr`: the value is not a number, or the sum overflows.
    WrongType(String),
    /// A retry (or a late copy) of a request declined before: declined
    /// again, without what the first decision saw (not kept; see
    /// `Seen::Declined`).
    Earlier,
}

/// What the client is told once the receipt's sequence is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (or the retry of an applied write): whether the key (the
    /// first, for `mset`) existed before, and an `incr`'s new value.
    Applied { found: bool, number: i64 },
    /// Nothing was written.
    Declined(Decline),
}

/// A client write decided at the head: the sequence number to wait for
/// (its own, or for a declined write the last one it saw) and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReceipt {
    pub sequence: u64,
    pub outcome: Outcome,
}

impl WriteReceipt {
    /// The key existed before (`put`, `del`; false when declined).
    pub fn found(&self) -> bool {
        matches!(self.outcome, Outcome::Applied { found: true, .. })
    }
}

/// The state a write leaves: `key` set to `value` (or deleted), and for
/// `mset` `more` keys set with it; `number` is an `incr`'s answer;
/// `deadline` is when `key` expires (`None`: never; `more` never does);
/// `expired`: the head deletes `key` because its deadline passed.
pub(super) struct Change {
    key: String,
    value: Option<Vec<u8>>,
    more: Vec<Entry>,
    number: i64,
    deadline: Option<u64>,
    expired: bool,
}

impl Change {
    /// One key's new state.
    pub(super) fn single(key: String, value: Option<Vec<u8>>, deadline: Option<u64>) -> Change {
        Change { key, value, more: Vec::new(), number: 0, deadline, expired: false }
    }

    /// The delete of `key`, whose deadline passed.
    pub(super) fn expiry(key: String) -> Change {
        Change { expired: true, ..Change::single(key, None, None) }
    }
}

/// The values a write sets, first key first, for a multi-key store call.
fn pairs<'change>(
    key: &'change str,
    value: &'change [u8],
    more: &'change [Entry],
) -> Vec<(&'change str, &'change [u8])> {
    let mut pairs = Vec::with_capacity(1 + more.len());
    pairs.push((key, value));
    pairs.extend(more.iter().map(|entry| (entry.key.as_str(), entry.value.as_slice())));
    pairs
}

/// Applies a write's resulting state to `store` (the head's and every
/// replica's path): one key, or `key` and `more` at once. Returns whether
/// `key` existed before (`mset`: not asked, false).
pub(super) fn apply_state(store: &mut impl Store, key: &str, value: Option<Vec<u8>>, more: &[Entry]) -> bool {
    if more.is_empty() {
        return store.apply(key, value);
    }
    match value {
        Some(value) => store.put_many(&pairs(key, &value, more)),
        // No head sends this; applied as it says, the delete first.
        None => {
            store.apply(key, None);
            store.put_many(&pairs(&more[0].key, &more[0].value, &more[1..]));
        }
    }
    false
}

impl ChainNode {
    /// A client's write, at the head. A retry (same client and request id)
    /// is not applied again: it gets the original write's answer.
    #[allow(clippy::too_many_arguments)]
    pub fn client_write(
        &mut self,
        client_id: u64,
        request_id: u64,
        op: WriteOp,
        now_ms: u64,
        store: &mut impl Store,
        effects: &mut impl Effects,
    ) -> Result<WriteReceipt, Refusal> {
        self.check_may_write(now_ms)?;
        let seen = if self.enforces(Check::ExactlyOnce) {
            self.clients.seen(client_id, request_id)
        } else {
            Seen::New
        };
        match seen {
            Seen::Retry { sequence, found, number } => {
                return Ok(WriteReceipt { sequence, outcome: Outcome::Applied { found, number } });
            }
            Seen::Declined { sequence } if self.enforces(Check::DeclinedStays) => {
                return Ok(WriteReceipt { sequence, outcome: Outcome::Declined(Decline::Earlier) });
            }
            Seen::Declined { .. } => {}
            Seen::Stale { latest } => {
                return Err(Refusal::new(
                    ErrorCode::ERR_STALE_REQUEST,
                    format!("request {request_id} is older than this client's latest write {latest}"),
                ));
            }
            Seen::New => {}
        }
        let change = match self.decide(op, store)? {
            Ok(change) => change,
            Err(decline) if !self.enforces(Check::DeclineInOrder) => {
                return Ok(WriteReceipt { sequence: self.last_applied, outcome: Outcome::Declined(decline) });
            }
            Err(decline) => return Ok(self.decline(client_id, request_id, decline, effects)),
        };
        self.check_memory(client_id, &change, store)?;
        Ok(self.apply_change(client_id, request_id, change, store, effects))
    }

    /// The state `op` leaves, decided against our table; or why it changes
    /// nothing.
    fn decide(&mut self, op: WriteOp, store: &impl Store) -> Result<Result<Change, Decline>, Refusal> {
        let single = |key, value| Change::single(key, value, None);
        Ok(match op {
            WriteOp::Set { key, value } => Ok(single(key, value)),
            WriteOp::Expiring { key, value, deadline_ms } => {
                Ok(Change::single(key, Some(value), Some(deadline_ms)))
            }
            // Both write the key's current value again with its new
            // deadline, so a replica needs nothing but the write.
            WriteOp::Expire { key, deadline_ms } => match store.value_of(&key) {
                Some(value) => Ok(Change::single(key, Some(value), Some(deadline_ms))),
                None => Err(Decline::Mismatch(None)),
            },
            WriteOp::Persist { key } => match store.value_of(&key) {
                Some(value) => Ok(single(key, Some(value))),
                None => Err(Decline::Mismatch(None)),
            },
            WriteOp::Cas { key, expected, value } => {
                let current = if !self.enforces(Check::CasAtHead) {
                    self.committed_value(&key, store)
                } else {
                    store.value_of(&key)
                };
                if current == expected {
                    Ok(single(key, Some(value)))
                } else {
                    Err(Decline::Mismatch(current))
                }
            }
            WriteOp::Incr { key, delta } => {
                increment(store.value_of(&key).as_deref(), delta).map(|number| Change {
                    value: Some(number.to_string().into_bytes()),
                    key,
                    more: Vec::new(),
                    number,
                    deadline: None,
                    expired: false,
                })
            }
            WriteOp::Mset { pairs } => {
                let mut pairs = pairs.into_iter();
                let (key, value) = pairs.next().ok_or_else(|| {
                    Refusal::new(ErrorCode::ERR_MISSING_FIELD, "mset needs at least one pair")
                })?;
                let more = pairs.map(Entry::from_pair).collect();
                Ok(Change { key, value: Some(value), more, number: 0, deadline: None, expired: false })
            }
        })
    }

    /// Applies a decided change as the next write, remembers its client's
    /// answer, and forwards it.
    pub(super) fn apply_change(
        &mut self,
        client_id: u64,
        request_id: u64,
        change: Change,
        store: &mut impl Store,
        effects: &mut impl Effects,
    ) -> WriteReceipt {
        let sequence = self.last_applied + 1;
        if !self.enforces(Check::CasAtHead) {
            self.remember_undo(sequence, &change, store);
        }
        let mut write = self.next_write(client_id, request_id).map(|mut write| {
            write.key = change.key.clone();
            write.value = change.value.clone();
            write.more = change.more.clone();
            write.number = change.number;
            write.deadline_ms = change.deadline.filter(|_| change.value.is_some());
            write.expired = change.expired;
            write
        });
        self.note_deadlines(
            &change.key,
            change.value.is_some().then_some(change.deadline).flatten(),
            &change.more,
        );
        effects.applied(AppliedWrite {
            sequence,
            key: &change.key,
            value: change.value.as_deref(),
            more: &change.more,
            expired: change.expired,
            declined: false,
        });
        let found = apply_state(store, &change.key, change.value, &change.more);
        if let Some(write) = &mut write {
            write.found = found;
        }
        let record = clients::record(client_id, request_id, sequence, found, change.number);
        self.settle_write(sequence, record, write, effects);
        WriteReceipt { sequence, outcome: Outcome::Applied { found, number: change.number } }
    }

    /// A declined request goes down the chain as a write that changes
    /// nothing, and its answer waits for that write's commit like any
    /// write's. An earlier attempt of the same request may sit applied and
    /// uncommitted at a former head, cut off from the chain; a restart of
    /// the chain could adopt that head's history until this head commits a
    /// write in its own view (then the commit record no longer names the
    /// former head). Answered at once, a "declined" could be followed by
    /// that attempt taking effect (swarm testing found one: seed
    /// 13858775439738059553, a cas answered "declined, saw X" whose first
    /// attempt, applied at an isolated head, came back when that head
    /// restarted the chain).
    fn decline(
        &mut self,
        client_id: u64,
        request_id: u64,
        decline: Decline,
        effects: &mut impl Effects,
    ) -> WriteReceipt {
        let sequence = self.last_applied + 1;
        let write = self.next_write(client_id, request_id).map(|mut write| {
            write.declined = true;
            write
        });
        let mut record = clients::record(client_id, request_id, sequence, false, 0);
        record.declined = true;
        effects.applied(AppliedWrite {
            sequence,
            key: "",
            value: None,
            more: &[],
            expired: false,
            declined: true,
        });
        self.settle_write(sequence, record, write, effects);
        WriteReceipt { sequence, outcome: Outcome::Declined(decline) }
    }

    /// The write that carries our next sequence number down the chain and
    /// to our log; `None` when neither is there to take it.
    pub(super) fn next_write(&self, client_id: u64, request_id: u64) -> Option<Write> {
        (self.forwards() || self.durable).then(|| {
            let mut write = Write::new();
            write.client_id = client_id;
            write.request_id = request_id;
            write.sequence = self.last_applied + 1;
            write.epoch = self.view_epoch;
            write.origin_epoch = self.view_epoch;
            write
        })
    }

    /// Our next write is applied: remembers its client's answer, forwards
    /// and logs it, and commits what may be committed now.
    pub(super) fn settle_write(
        &mut self,
        sequence: u64,
        record: ClientRecord,
        write: Option<Write>,
        effects: &mut impl Effects,
    ) {
        self.applied_epoch = self.applied_epoch.max(self.view_epoch);
        self.record_applied(sequence, record, write, effects);
        self.publish_commit(effects);
    }

    pub(super) fn check_may_write(&self, now_ms: u64) -> Result<(), Refusal> {
        if self.standalone() {
            return Ok(());
        }
        if !self.lease_valid(now_ms) {
            return Err(Refusal::unavailable());
        }
        match &self.position {
            Some(position) if self.requires(Check::HeadWrites, position.is_head) => Ok(()),
            _ => Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!(
                    "not the head; writes go to the head ({})",
                    self.head_address.as_deref().unwrap_or("unknown")
                ),
            )),
        }
    }

    /// Refuses a write that would take our memory past `--max-memory`. A
    /// delete, and overwrites whose values are not longer than the old
    /// ones, always pass: they are how a full table is made room in.
    fn check_memory(&self, client_id: u64, change: &Change, store: &impl Store) -> Result<(), Refusal> {
        let (Some(max), Some(value)) = (self.config.memory_bytes_max, change.value.as_deref()) else {
            return Ok(());
        };
        let growth = |key: &str, value: &[u8]| match store.value_len(key) {
            Some(old) => value.len().saturating_sub(old) as u64,
            None => (key.len() + value.len()) as u64 + ENTRY_OVERHEAD_BYTES,
        };
        let index_growth = match (change.deadline, self.deadlines.of(&change.key)) {
            (Some(_), None) => 2 * change.key.len() as u64 + DEADLINE_OVERHEAD_BYTES,
            _ => 0,
        };
        let entry_growth: u64 = index_growth
            + pairs(&change.key, value, &change.more)
                .into_iter()
                .map(|(key, value)| growth(key, value))
                .sum::<u64>();
        if entry_growth == 0 {
            return Ok(());
        }
        let record_growth = if self.clients.adds_record(client_id) { CLIENT_RECORD_BYTES } else { 0 };
        let used = self.used_memory(store);
        if used + entry_growth + record_growth <= max {
            return Ok(());
        }
        Err(Refusal::new(
            ErrorCode::ERR_OUT_OF_MEMORY,
            format!(
                "out of memory: used {} of --max-memory {}, and this write needs {} more; \
                 deletes and overwrites that do not grow a value are still accepted",
                display_bytes(used),
                display_bytes(max),
                display_bytes(entry_growth + record_growth)
            ),
        ))
    }

    // ---- the injected bug `cas-at-tail` ----

    /// Bug `cas-at-tail`: keeps what each key held before every write
    /// applied here and not yet committed, so [`Self::committed_value`]
    /// can answer as a replica further down the chain would.
    fn remember_undo(&mut self, sequence: u64, change: &Change, store: &impl Store) {
        let committed = self.committed;
        let undo = self.undo.get_or_insert_with(VecDeque::new);
        while undo.front().is_some_and(|(written, _, _)| *written <= committed) {
            undo.pop_front();
        }
        undo.push_back((sequence, change.key.clone(), store.value_of(&change.key)));
    }

    /// Bug `cas-at-tail`: `key`'s value as of the commit point (the tail's
    /// state, which lags the head's), not the head's own.
    fn committed_value(&self, key: &str, store: &impl Store) -> Option<Vec<u8>> {
        let oldest_uncommitted = self.undo.as_ref().and_then(|undo| {
            undo.iter().find(|(sequence, written, _)| *sequence > self.committed && written == key)
        });
        match oldest_uncommitted {
            Some((_, _, before)) => before.clone(),
            None => store.value_of(key),
        }
    }
}

/// `current` (a signed 64-bit decimal; absent: 0) plus `delta`.
fn increment(current: Option<&[u8]>, delta: i64) -> Result<i64, Decline> {
    let number = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or_else(|| Decline::WrongType("the value is not a signed 64-bit decimal number".into()))?,
    };
    number
        .checked_add(delta)
        .ok_or_else(|| Decline::WrongType(format!("{number} + {delta} overflows a signed 64-bit number")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Action, NodeConfig};
    use crate::check::sim::server::SimStore;
    use crate::proto::ReplicaHello;
    use crate::view::{ChainView, Readiness, test_member};

    fn node(standalone: bool, memory_bytes_max: u64) -> ChainNode {
        ChainNode::new(NodeConfig {
            standalone,
            chain_path: "/chain".into(),
            client_records_max: 100,
            bug: None,
            server_id: 1,
            memory_bytes_max: Some(memory_bytes_max),
        })
    }

    fn put(key: &str, value: Vec<u8>) -> WriteOp {
        WriteOp::Set { key: key.into(), value: Some(value) }
    }

    fn applied(sequence: u64, found: bool, number: i64) -> Result<WriteReceipt, Refusal> {
        Ok(WriteReceipt { sequence, outcome: Outcome::Applied { found, number } })
    }

    /// What a put of a new key adds: its data and the entry's overhead.
    fn entry_bytes(key: &str, value_bytes: usize) -> u64 {
        (key.len() + value_bytes) as u64 + ENTRY_OVERHEAD_BYTES
    }

    #[test]
    fn the_head_refuses_a_put_past_max_memory_before_sequencing_it() {
        // Room for two keys of 100 bytes and one client's record.
        let limit = 2 * entry_bytes("a", 100) + CLIENT_RECORD_BYTES;
        let mut head = node(true, limit);
        let (mut store, mut effects) = (SimStore::new(), Vec::new());
        let mut write = |head: &mut ChainNode, store: &mut SimStore, client, request, op| {
            head.client_write(client, request, op, 0, store, &mut effects)
        };
        assert!(write(&mut head, &mut store, 1, 1, put("a", vec![b'v'; 100])).is_ok());
        assert!(write(&mut head, &mut store, 1, 2, put("b", vec![b'v'; 100])).is_ok(), "up to the limit");
        assert_eq!(head.used_memory(&store), limit);

        let refusal = write(&mut head, &mut store, 1, 3, put("c", Vec::new())).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::ERR_OUT_OF_MEMORY);
        assert!(
            refusal.message.contains(&format!("of --max-memory {}", display_bytes(limit))),
            "names the limit: {}",
            refusal.message
        );
        let grows = put("a", vec![b'v'; 101]);
        assert_eq!(write(&mut head, &mut store, 1, 4, grows).unwrap_err().code, ErrorCode::ERR_OUT_OF_MEMORY);
        let counter = WriteOp::Incr { key: "n".into(), delta: 1 };
        assert_eq!(
            write(&mut head, &mut store, 1, 5, counter).unwrap_err().code,
            ErrorCode::ERR_OUT_OF_MEMORY
        );
        let both = WriteOp::Mset { pairs: vec![("a".into(), vec![1; 50]), ("z".into(), vec![1])] };
        assert_eq!(write(&mut head, &mut store, 1, 6, both).unwrap_err().code, ErrorCode::ERR_OUT_OF_MEMORY);
        assert_eq!(head.progress().applied, 2, "refused writes get no sequence number");
        assert_eq!(store.len(), 2);
        // A retry of an applied put gets its answer, full or not.
        assert_eq!(write(&mut head, &mut store, 1, 2, put("b", vec![b'v'; 100])), applied(2, false, 0));
    }

    #[test]
    fn deletes_and_overwrites_that_do_not_grow_pass_a_full_head() {
        let limit = entry_bytes("a", 100) + CLIENT_RECORD_BYTES;
        let mut head = node(true, limit);
        let (mut store, mut effects) = (SimStore::new(), Vec::new());
        head.client_write(1, 1, put("a", vec![1; 100]), 0, &mut store, &mut effects).unwrap();
        // Each from a new client, whose record takes the head past the limit.
        head.client_write(2, 1, put("a", vec![2; 100]), 0, &mut store, &mut effects).unwrap();
        head.client_write(3, 1, put("a", vec![3; 10]), 0, &mut store, &mut effects).unwrap();
        assert!(head.used_memory(&store) > limit);
        let delete = WriteOp::Set { key: "a".into(), value: None };
        assert_eq!(head.client_write(4, 1, delete, 0, &mut store, &mut effects), applied(4, true, 0));
        assert!(store.is_empty());
        assert_eq!(head.used_memory(&store), 4 * CLIENT_RECORD_BYTES, "the records stay");
    }

    #[test]
    fn cas_incr_and_mset_are_decided_at_the_head_and_retried_once() {
        let mut head = node(true, u64::MAX);
        let (mut store, mut effects) = (SimStore::new(), Vec::new());
        let mut write =
            |client, request, op| head.client_write(client, request, op, 0, &mut store, &mut effects);
        let cas = |expected: Option<&[u8]>, value: &[u8]| WriteOp::Cas {
            key: "k".into(),
            expected: expected.map(<[u8]>::to_vec),
            value: value.to_vec(),
        };
        assert_eq!(write(1, 1, cas(None, b"a")), applied(1, false, 0), "absent as expected");
        let mismatch = Outcome::Declined(Decline::Mismatch(Some(b"a".to_vec())));
        // A declined write is a write of its own, answered once committed.
        assert_eq!(write(1, 2, cas(None, b"b")), Ok(WriteReceipt { sequence: 2, outcome: mismatch.clone() }));
        assert_eq!(write(1, 3, cas(Some(b"x"), b"b")), Ok(WriteReceipt { sequence: 3, outcome: mismatch }));
        assert_eq!(write(1, 4, cas(Some(b"a"), b"b")), applied(4, true, 0));

        let incr = |delta| WriteOp::Incr { key: "n".into(), delta };
        assert_eq!(write(2, 1, incr(5)), applied(5, false, 5));
        assert_eq!(write(2, 2, incr(-7)), applied(6, true, -2));
        assert_eq!(write(2, 2, incr(-7)), applied(6, true, -2), "a retry adds nothing and gets its answer");
        assert_eq!(write(2, 3, incr(i64::MAX)), applied(7, true, i64::MAX - 2));
        let overflow = write(2, 4, incr(3)).unwrap();
        assert!(matches!(overflow.outcome, Outcome::Declined(Decline::WrongType(_))), "{overflow:?}");
        let not_a_number = write(2, 5, WriteOp::Incr { key: "k".into(), delta: 1 }).unwrap();
        assert!(matches!(not_a_number.outcome, Outcome::Declined(Decline::WrongType(_))));
        assert_eq!(not_a_number.sequence, 9);

        let pairs =
            vec![("x".into(), b"1".to_vec()), ("y".into(), b"2".to_vec()), ("x".into(), b"3".to_vec())];
        assert_eq!(write(3, 1, WriteOp::Mset { pairs }), applied(10, false, 0));
        let empty = write(3, 2, WriteOp::Mset { pairs: Vec::new() }).unwrap_err();
        assert_eq!(empty.code, ErrorCode::ERR_MISSING_FIELD);
        assert_eq!(store.get("x"), Some(&b"3".to_vec()), "the last of a repeated key wins");
        assert_eq!(store.get("y"), Some(&b"2".to_vec()));
        assert_eq!(store.get("k"), Some(&b"b".to_vec()));
    }

    #[test]
    fn a_replica_applies_the_resulting_state_and_keeps_the_answer_for_a_retry() {
        let mut tail = node(false, 1);
        let (mut store, mut effects) = (SimStore::new(), Vec::new());
        let view =
            ChainView::new(vec![test_member(1, Readiness::Ready), test_member(2, Readiness::Ready)], 1);
        tail.view_changed(&view, &test_member(2, Readiness::Ready).name, &mut effects);
        let mut hello = ReplicaHello::new();
        hello.sender = test_member(1, Readiness::Ready).name;
        hello.receiver = test_member(2, Readiness::Ready).name;
        hello.epoch = 1;
        let link = tail.link_hello(&hello).unwrap().link;
        let mut write = Write::new();
        write.sequence = 1;
        write.key = "k".into();
        write.value = Some(vec![0; 1000]);
        write.client_id = 9;
        write.request_id = 1;
        let mut counter = Write::new();
        counter.sequence = 2;
        counter.key = "n".into();
        counter.value = Some(b"41".to_vec());
        counter.number = 41;
        counter.more = vec![Entry::from_pair(("m".into(), b"x".to_vec()))];
        counter.client_id = 10;
        counter.request_id = 3;
        tail.replicated_batch(&hello.sender, link, vec![write, counter], &mut store, &mut effects).unwrap();
        assert_eq!(store.get("k").map(Vec::len), Some(1000), "past its own --max-memory");
        assert_eq!(store.get("m"), Some(&b"x".to_vec()), "every key of the write");
        assert_eq!(
            tail.used_memory(&store),
            entry_bytes("k", 1000) + entry_bytes("n", 2) + entry_bytes("m", 1) + 2 * CLIENT_RECORD_BYTES
        );
        assert_eq!(tail.clients.seen(10, 3), Seen::Retry { sequence: 2, found: false, number: 41 });
    }

    /// A write forwarded by a member in a newer view than its head's goes
    /// on carrying the newer epoch, so a tail still in the older view does
    /// not commit it under the older record.
    #[test]
    fn a_middle_forwards_a_write_with_its_newer_view_epoch() {
        let mut middle = node(false, u64::MAX);
        let (mut store, mut effects) = (SimStore::new(), Vec::new());
        let members = (1..=3).map(|index| test_member(index, Readiness::Ready)).collect();
        middle.view_changed(
            &ChainView::new(members, 5),
            &test_member(2, Readiness::Ready).name,
            &mut effects,
        );
        let mut hello = ReplicaHello::new();
        hello.sender = test_member(1, Readiness::Ready).name;
        hello.receiver = test_member(2, Readiness::Ready).name;
        hello.epoch = 5;
        let link = middle.link_hello(&hello).unwrap().link;
        let mut write = Write::numbered(1);
        write.epoch = 4;
        effects.clear();
        middle.replicated_batch(&hello.sender, link, vec![write], &mut store, &mut effects).unwrap();
        let forwarded: Vec<u64> = effects
            .iter()
            .filter_map(|action| match action {
                Action::Forward { write, .. } => Some(write.epoch),
                _ => None,
            })
            .collect();
        assert_eq!(forwarded, [5]);
    }
}
