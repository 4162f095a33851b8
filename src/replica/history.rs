//! The watch history: every replica keeps its most recent applied writes in
//! a bounded ring, and the commit point, so the tail can stream committed
//! changes to watchers, and so a server that becomes the tail after a
//! failover can resume a watcher from the last sequence it printed (as
//! etcd's watch resumes from a revision, until that is compacted).
//!
//! The node tells the host of each write it applies
//! ([`Effects::applied`](crate::chain::Effects::applied)); the host copies
//! it into a batch while it holds the node's lock and hands the batch over
//! here once per step ([`History::record`]), with the commit point. Watchers
//! only read the ring: a slow watcher never holds up a commit, and their
//! number costs the write path one atomic load (whether to wake anyone).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::chain::{AppliedWrite, Durable};
use crate::limits::WATCH_HISTORY_ENTRY_OVERHEAD_BYTES;
use crate::proto::watch_event::Kind;
use crate::proto::{Entry, WatchEvent, Write};

/// How much history a replica keeps (`--watch-history-writes`,
/// `--watch-history`); 0 writes: none, and nothing is copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    pub writes_max: usize,
    pub bytes_max: u64,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            writes_max: crate::limits::WATCH_HISTORY_WRITES_DEFAULT,
            bytes_max: crate::limits::WATCH_HISTORY_BYTES_DEFAULT,
        }
    }
}

/// One applied write, as watchers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    sequence: u64,
    key: String,
    value: Option<Vec<u8>>,
    more: Vec<Entry>,
    expired: bool,
    /// A declined write: no event, but its place in the sequence.
    declined: bool,
}

impl Recorded {
    pub fn new(write: &AppliedWrite<'_>) -> Recorded {
        Recorded {
            sequence: write.sequence,
            key: write.key.to_owned(),
            value: write.value.map(<[u8]>::to_vec),
            more: write.more.to_vec(),
            expired: write.expired,
            declined: write.declined,
        }
    }

    /// A write a state transfer carried or the log holds (see [`History::extend`]).
    pub fn of_write(write: &Write) -> Recorded {
        Recorded::new(&AppliedWrite {
            sequence: write.sequence,
            key: &write.key,
            value: write.value.as_deref(),
            more: &write.more,
            expired: write.expired,
            declined: write.declined,
        })
    }

    /// As a state transfer carries it: only what watchers are told.
    pub fn to_write(&self) -> Write {
        Write {
            sequence: self.sequence,
            key: self.key.clone(),
            value: self.value.clone(),
            more: self.more.clone(),
            expired: self.expired,
            declined: self.declined,
            ..Write::new()
        }
    }

    /// What it holds, as the ring's byte limit counts it.
    fn bytes(&self) -> u64 {
        let more: usize = self.more.iter().map(|entry| entry.key.len() + entry.value.len()).sum();
        (self.key.len() + self.value.as_ref().map_or(0, Vec::len) + more) as u64
            + (1 + self.more.len() as u64) * WATCH_HISTORY_ENTRY_OVERHEAD_BYTES
    }

    /// Its events for keys that `wanted` accepts: `key` first, then the
    /// further keys of an `mset`.
    fn events(&self, wanted: &dyn Fn(&str) -> bool, events: &mut Vec<WatchEvent>) {
        let event = |key: &str, kind: Kind, value: &[u8]| WatchEvent {
            sequence: self.sequence,
            key: key.to_owned(),
            kind: kind.into(),
            value: value.to_vec(),
            ..WatchEvent::new()
        };
        if self.declined {
            return;
        }
        if wanted(&self.key) {
            events.push(match (&self.value, self.expired) {
                (Some(value), _) => event(&self.key, Kind::PUT, value),
                (None, false) => event(&self.key, Kind::DELETE, &[]),
                (None, true) => event(&self.key, Kind::EXPIRED, &[]),
            });
        }
        for entry in self.more.iter().filter(|entry| wanted(&entry.key)) {
            events.push(event(&entry.key, Kind::PUT, &entry.value));
        }
    }
}

/// The ring and the commit point, under one lock.
#[derive(Default)]
struct Ring {
    /// Consecutive sequence numbers, oldest first.
    writes: VecDeque<Recorded>,
    bytes: u64,
    /// The newest sequence applied, and the commit point, as last recorded.
    applied: u64,
    committed: u64,
    /// Raised whenever the history starts over (the node reset, or a state
    /// transfer replaced its table): a watcher of an older era must stop.
    era: u64,
}

impl Ring {
    /// The oldest sequence a watcher may still start from: the ring's
    /// first write, or (nothing kept) the first after what was applied or
    /// committed (a snapshot's writes are never in the ring).
    fn oldest(&self) -> u64 {
        match self.writes.front() {
            Some(first) => first.sequence,
            None => self.applied.max(self.committed) + 1,
        }
    }

    fn push(&mut self, write: Recorded, limits: HistoryLimits) {
        if self.writes.back().is_some_and(|last| last.sequence.checked_add(1) != Some(write.sequence)) {
            // Not the next write: a history we did not see began (cannot
            // happen without a `clear` first; kept safe rather than gapped).
            self.writes.clear();
            self.bytes = 0;
        }
        self.applied = write.sequence;
        self.bytes += write.bytes();
        self.writes.push_back(write);
        while self.writes.len() > 1
            && (self.writes.len() > limits.writes_max || self.bytes > limits.bytes_max)
        {
            let evicted = self.writes.pop_front().expect("more than one write");
            self.bytes -= evicted.bytes();
        }
    }
}

/// What a watcher read from the history.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// The events of the committed writes from the asked sequence through
    /// `through` (perhaps none; `through` is one before the asked
    /// sequence when nothing new is committed).
    Events { events: Vec<WatchEvent>, through: u64 },
    /// The asked sequence is older than the oldest write kept.
    Compacted { oldest: u64 },
    /// The history started over since the watcher began (its era).
    StartedOver,
}

/// A point of the history as a watcher starts: its era, the commit point
/// and the oldest sequence it may start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub era: u64,
    pub committed: u64,
    pub oldest: u64,
}

/// The replica's watch history and the watchers waiting on it.
pub struct History {
    ring: Mutex<Ring>,
    /// Notified when the commit point moves or the history starts over,
    /// if anyone watches.
    moved: Condvar,
    /// Watch streams open: nobody is woken while it is 0.
    watchers: AtomicUsize,
    limits: HistoryLimits,
}

/// A watcher counted in [`History::watchers`] while this lives.
pub struct Watching<'a>(&'a History);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl History {
    pub fn new(limits: HistoryLimits) -> History {
        History { ring: Mutex::default(), moved: Condvar::new(), watchers: AtomicUsize::new(0), limits }
    }

    /// Whether applied writes are kept at all (the one check the write
    /// path makes before copying one).
    pub fn keeps_writes(&self) -> bool {
        self.limits.writes_max > 0
    }

    /// Adds the writes a step applied (consecutive, oldest first) and the
    /// commit point it left, and wakes the watchers if it moved.
    pub fn record(&self, writes: Vec<Recorded>, committed: Option<u64>) {
        let mut ring = self.ring.lock();
        for write in writes {
            ring.push(write, self.limits);
        }
        let moved = committed.is_some_and(|committed| committed > ring.committed);
        if let Some(committed) = committed {
            ring.committed = ring.committed.max(committed);
        }
        drop(ring);
        if moved && self.watchers.load(Ordering::SeqCst) > 0 {
            self.moved.notify_all();
        }
    }

    /// The writes kept, for a state transfer of a snapshot at `sequence`
    /// (taken under the node's lock, so the ring is at the same point):
    /// none unless the newest is `sequence`, as the receiver's ring must
    /// run on, without a gap, into the writes it applies next.
    pub fn through(&self, sequence: u64) -> Vec<Write> {
        let ring = self.ring.lock();
        if ring.writes.back().is_none_or(|newest| newest.sequence != sequence) {
            return Vec::new();
        }
        ring.writes.iter().map(Recorded::to_write).collect()
    }

    /// Adds writes that continue the ring, oldest first: a chunk's part of
    /// the history a state transfer carried (after the transfer's first
    /// chunk cleared the ring), or what recovery replays. `through`, with a
    /// transfer's last chunk: the snapshot's sequence. A history that does
    /// not end there (a sender that kept none, or a broken one from the
    /// network) is dropped rather than kept with a gap: watchers then start
    /// after the snapshot, as they would without it. They still read only
    /// what the node says is committed.
    pub fn extend(&self, writes: Vec<Recorded>, through: Option<u64>) {
        if !self.keeps_writes() {
            return;
        }
        let mut ring = self.ring.lock();
        for write in writes {
            ring.push(write, self.limits);
        }
        if let Some(through) = through
            && ring.applied != through
        {
            ring.writes.clear();
            ring.bytes = 0;
            ring.applied = through;
        }
    }

    /// Recovery replays the log through the node; the history follows it,
    /// item by item, as it followed the node when the items were logged,
    /// so a member restarted on its disk keeps for watchers the writes its
    /// log holds since its last snapshot file (as far as the limits allow)
    /// rather than beginning after them: a transfer's chunks were logged
    /// with the history they carried, and a reset starts it over.
    pub fn replaying(&self, item: &Durable) {
        match item {
            Durable::Write { write, .. } => self.extend(vec![Recorded::of_write(write)], None),
            Durable::Chunk(chunk) => {
                let carried = chunk.history.iter().map(Recorded::of_write).collect();
                self.extend(carried, chunk.last.then_some(chunk.sequence));
            }
            Durable::Reset => self.clear(),
        }
    }

    /// The history starts over: nothing kept, commit point 0, a new era.
    pub fn clear(&self) {
        let mut ring = self.ring.lock();
        let era = ring.era + 1;
        *ring = Ring { era, ..Ring::default() };
        drop(ring);
        self.moved.notify_all();
    }

    /// Counts a watcher until the guard is dropped.
    pub fn watch(&self) -> Watching<'_> {
        self.watchers.fetch_add(1, Ordering::SeqCst);
        Watching(self)
    }

    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::SeqCst)
    }

    pub fn position(&self) -> Position {
        let ring = self.ring.lock();
        Position { era: ring.era, committed: ring.committed, oldest: ring.oldest() }
    }

    /// Writes kept now.
    pub fn len(&self) -> usize {
        self.ring.lock().writes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits at most `timeout` until something past `after` is committed or
    /// the era is no longer `era`.
    pub fn wait(&self, era: u64, after: u64, timeout: Duration) {
        let mut ring = self.ring.lock();
        if ring.era == era && ring.committed <= after {
            self.moved.wait_for(&mut ring, timeout);
        }
    }

    /// The events of committed writes from `from` on for the keys `wanted`
    /// accepts: whole writes, at most `writes_max` of them, and no more
    /// once the events pass `bytes_max`.
    pub fn read(
        &self,
        era: u64,
        from: u64,
        wanted: &dyn Fn(&str) -> bool,
        writes_max: usize,
        bytes_max: usize,
    ) -> Read {
        let ring = self.ring.lock();
        if ring.era != era {
            return Read::StartedOver;
        }
        let mut events = Vec::new();
        let mut through = from.saturating_sub(1);
        if ring.committed < from {
            return Read::Events { events, through };
        }
        let oldest = ring.oldest();
        if from < oldest {
            return Read::Compacted { oldest };
        }
        let mut bytes = 0;
        let first = (from - oldest) as usize;
        for write in ring.writes.range(first..).take(writes_max) {
            if write.sequence > ring.committed || bytes > bytes_max {
                break;
            }
            let before = events.len();
            write.events(wanted, &mut events);
            bytes += events[before..].iter().map(|event| event.key.len() + event.value.len()).sum::<usize>();
            through = write.sequence;
        }
        Read::Events { events, through }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::SnapshotChunk;

    fn put(sequence: u64, key: &str, value: &str) -> Recorded {
        let write = AppliedWrite {
            sequence,
            key,
            value: Some(value.as_bytes()),
            more: &[],
            expired: false,
            declined: false,
        };
        Recorded::new(&write)
    }

    fn delete(sequence: u64, key: &str, expired: bool) -> Recorded {
        Recorded::new(&AppliedWrite { sequence, key, value: None, more: &[], expired, declined: false })
    }

    fn all(_: &str) -> bool {
        true
    }

    fn seen(read: Read) -> (Vec<(u64, String, Kind)>, u64) {
        match read {
            Read::Events { events, through } => (
                events
                    .into_iter()
                    .map(|event| (event.sequence, event.key, event.kind.enum_value().unwrap()))
                    .collect(),
                through,
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_committed_writes_are_read_in_order_with_their_kind() {
        let history = History::new(HistoryLimits::default());
        history.record(vec![put(1, "a", "1"), delete(2, "a", false), delete(3, "b", true)], Some(2));
        let era = history.position().era;
        let (events, through) = seen(history.read(era, 1, &all, 100, 1 << 20));
        assert_eq!(events, vec![(1, "a".to_owned(), Kind::PUT), (2, "a".to_owned(), Kind::DELETE)]);
        assert_eq!(through, 2, "write 3 is applied, not committed");
        history.record(Vec::new(), Some(3));
        let (events, through) = seen(history.read(era, 3, &|key| key == "b", 100, 1 << 20));
        assert_eq!((events, through), (vec![(3, "b".to_owned(), Kind::EXPIRED)], 3));
        let (events, through) = seen(history.read(era, 4, &all, 100, 1 << 20));
        assert_eq!((events.len(), through), (0, 3), "nothing past the commit point");
    }

    #[test]
    fn the_ring_is_bounded_and_says_what_is_gone() {
        let history = History::new(HistoryLimits { writes_max: 3, bytes_max: 1 << 20 });
        history.record((1..=5).map(|sequence| put(sequence, "k", "v")).collect(), Some(5));
        let position = history.position();
        assert_eq!((position.oldest, history.len()), (3, 3));
        assert_eq!(history.read(position.era, 2, &all, 100, 1 << 20), Read::Compacted { oldest: 3 });
        let (events, through) = seen(history.read(position.era, 3, &all, 2, 1 << 20));
        assert_eq!((events.len(), through), (2, 4), "at most writes_max writes per read");
        let bytes = History::new(HistoryLimits { writes_max: 100, bytes_max: 1 });
        bytes.record(vec![put(1, "k", "v"), put(2, "k", "v")], Some(2));
        assert_eq!(bytes.len(), 1, "over the byte limit only the newest write stays");
    }

    #[test]
    fn a_history_that_starts_over_ends_its_watchers_and_begins_after_the_snapshot() {
        let history = History::new(HistoryLimits::default());
        history.record(vec![put(1, "k", "v")], Some(1));
        let era = history.position().era;
        history.clear();
        assert_eq!(history.read(era, 2, &all, 100, 1 << 20), Read::StartedOver);
        // A snapshot at 10 installed, then committed: nothing before 11.
        history.record(Vec::new(), Some(10));
        let position = history.position();
        assert_eq!(position.oldest, 11);
        assert_eq!(history.read(position.era, 5, &all, 100, 1 << 20), Read::Compacted { oldest: 11 });
    }

    /// Issue 22: what a state transfer carries, chunk by chunk, continues
    /// the receiver's history into the writes it applies next, so a
    /// watcher resumes there from before the snapshot.
    #[test]
    fn a_transferred_history_runs_on_into_the_next_writes() {
        let sender = History::new(HistoryLimits::default());
        sender.record((1..=4).map(|sequence| put(sequence, "k", "v")).collect(), Some(3));
        sender.record(vec![delete(5, "k", true)], Some(3));
        assert!(sender.through(4).is_empty(), "not at the snapshot's point: nothing");
        let carried: Vec<Recorded> = sender.through(5).iter().map(Recorded::of_write).collect();
        assert_eq!(carried.len(), 5);
        let receiver = History::new(HistoryLimits::default());
        receiver.clear();
        let era = receiver.position().era;
        let mut carried = carried.into_iter();
        receiver.extend(carried.by_ref().take(2).collect(), None);
        receiver.extend(carried.collect(), Some(5));
        receiver.record(vec![put(6, "k", "w")], Some(5));
        let (events, through) = seen(receiver.read(era, 1, &all, 100, 1 << 20));
        assert_eq!((events.len(), through), (5, 5), "only the committed writes, the carried ones too");
        assert_eq!(events[4], (5, "k".to_owned(), Kind::EXPIRED), "carried with its kind");
        receiver.record(Vec::new(), Some(6));
        let (events, _) = seen(receiver.read(era, 6, &all, 100, 1 << 20));
        assert_eq!(events, vec![(6, "k".to_owned(), Kind::PUT)]);
    }

    #[test]
    fn a_transferred_history_that_stops_short_of_the_snapshot_is_dropped() {
        let receiver = History::new(HistoryLimits::default());
        receiver.extend(vec![put(1, "k", "v"), put(2, "k", "v")], None);
        receiver.extend(vec![put(3, "k", "v")], Some(5));
        receiver.record(Vec::new(), Some(5));
        assert_eq!((receiver.len(), receiver.position().oldest), (0, 6), "no gap before write 6");
        let none = History::new(HistoryLimits { writes_max: 0, bytes_max: 0 });
        none.extend(vec![put(1, "k", "v")], Some(1));
        assert!(none.is_empty(), "a replica that keeps no history keeps none transferred");
    }

    /// A member restarted on its disk keeps, for watchers, the writes its
    /// log replays since the last reset: those a logged state transfer
    /// carried, then those logged after it.
    #[test]
    fn a_replayed_log_fills_the_history_from_its_last_reset_on() {
        let history = History::new(HistoryLimits::default());
        let write = |sequence| put(sequence, "k", "v").to_write();
        let logged = |sequence| Durable::Write { generation: 1, write: write(sequence) };
        let chunk = |history: Vec<Write>, last| {
            Durable::Chunk(SnapshotChunk { sequence: 3, last, history, ..SnapshotChunk::new() })
        };
        let items = [
            logged(1),
            logged(2),
            Durable::Reset,
            chunk(vec![write(2)], false),
            chunk(vec![write(3)], true),
            logged(4),
            logged(5),
        ];
        for item in &items {
            history.replaying(item);
        }
        history.record(Vec::new(), Some(5));
        let position = history.position();
        assert_eq!((position.oldest, history.len()), (2, 4), "carried by the transfer at 3, and after");
        let (events, through) = seen(history.read(position.era, 2, &all, 100, 1 << 20));
        assert_eq!((events.len(), through), (4, 5));
        let snapshot_file = SnapshotChunk { sequence: 9, last: true, ..SnapshotChunk::new() };
        history.replaying(&Durable::Reset);
        history.replaying(&Durable::Chunk(snapshot_file));
        assert_eq!((history.len(), history.position().oldest), (0, 10), "a table alone: nothing before it");
    }

    #[test]
    fn mset_keys_share_their_sequence() {
        let history = History::new(HistoryLimits::default());
        let more = [Entry { key: "p/b".into(), value: b"2".to_vec(), ..Entry::new() }];
        let write = AppliedWrite {
            sequence: 1,
            key: "x",
            value: Some(b"1"),
            more: &more,
            expired: false,
            declined: false,
        };
        history.record(vec![Recorded::new(&write)], Some(1));
        let (events, _) =
            seen(history.read(history.position().era, 1, &|key| key.starts_with("p/"), 10, 100));
        assert_eq!(events, vec![(1, "p/b".to_owned(), Kind::PUT)]);
    }
}
