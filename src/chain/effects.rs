//! What a [`ChainNode`](super::ChainNode) needs from the world and asks of
//! it: the table it applies writes to, and the actions it decides on.

use super::durable::Durable;
use super::eviction::Evidence;
use crate::proto::{Entry, Write};
use crate::view::CommitRecord;

/// The table a node applies writes to. The server's is the striped
/// `Table`; the simulator's a plain map.
pub trait Store {
    /// Puts `value` at `key`, or deletes `key` when `value` is `None`;
    /// returns whether the key existed before.
    fn apply(&mut self, key: &str, value: Option<Vec<u8>>) -> bool;
    /// Sets every `(key, value)` at once: no reader sees some set and not
    /// the others (`mset`). A key given twice ends with its last value.
    fn put_many(&mut self, pairs: &[(&str, &[u8])]);
    /// A copy of `key`'s value, if present: what the head decides a
    /// compare-and-set or an increment against.
    fn value_of(&self, key: &str) -> Option<Vec<u8>>;
    /// Removes every key (a state transfer starts, or the node resets).
    fn clear(&mut self);
    /// Keys held: each costs [`ENTRY_OVERHEAD_BYTES`] beyond its data in the
    /// head's `--max-memory` check and in `stats`.
    ///
    /// [`ENTRY_OVERHEAD_BYTES`]: crate::limits::ENTRY_OVERHEAD_BYTES
    fn key_count(&self) -> u64;
    /// Key and value bytes held.
    fn bytes_stored(&self) -> u64;
    /// The length of `key`'s value, if the key is present: an overwrite
    /// that does not grow it is accepted at `--max-memory`.
    fn value_len(&self, key: &str) -> Option<usize>;
}

/// Something the node decided that the world must carry out. Actions come
/// out in the order they must be carried out; the caller does so before it
/// gives the node its next event (the server holds the node's lock while
/// it does).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Queue this applied write for the successor. Writes come out in
    /// strictly rising sequence order with no gap within one `stream`
    /// (see [`ChainNode::stream`](super::ChainNode::stream)).
    Forward { stream: u64, write: Write },
    /// The commit point rose to this sequence number: every client write
    /// up to it may be answered.
    Committed(u64),
    /// Reads may no longer be allowed (hand-over, fencing, a state transfer
    /// began): a read in progress must not be answered.
    ReadsRevoked,
    /// We are no longer a member (fenced): every client write waiting for
    /// its commit gets "outcome unknown", and nothing more is forwarded.
    AbandonWaits,
    /// The node's history starts over (it resets to rejoin empty, or a state
    /// transfer began replacing its table): drop every queued write and
    /// every commit wait; the commit point is back to 0.
    HistoryCleared,
    /// A joining node has caught up after the hand-over: announce it ready
    /// in ZooKeeper.
    AnnounceReady,
    /// The lease on the ZooKeeper session ran out: every client write
    /// waiting for its commit gets "outcome unknown".
    LeaseLost,
    /// Our registration is wrong for the chain as it is now: fence and
    /// register again (a new node), for this reason.
    Reregister(&'static str),
    /// Write this record into the chain node (unless a newer one is there):
    /// we commit writes of our own, and only once the chain node records
    /// our view's epoch (see [`CommitRecord`]).
    RecordCommit(CommitRecord),
    /// Ask ZooKeeper to remove this member (a neighbour proved dead; see
    /// [`eviction`](super::eviction)); log it once with its evidence.
    RemoveMember { name: String, evidence: Evidence },
}

/// A write as it is applied to the table, borrowed, for a host that keeps
/// a history of recent writes (the server's watch history). Not an
/// [`Action`]: it asks nothing of the world, and borrowing it costs a host
/// that keeps no history nothing.
#[derive(Clone, Copy, Debug)]
pub struct AppliedWrite<'a> {
    pub sequence: u64,
    pub key: &'a str,
    /// The new value; `None` for a delete.
    pub value: Option<&'a [u8]>,
    /// `mset`: further keys set by the same write.
    pub more: &'a [Entry],
    /// The head deleted `key` because its deadline passed.
    pub expired: bool,
    /// A declined write (see `ChainNode::decline`): it changes nothing and
    /// shows no change, but takes its sequence number like any write.
    pub declined: bool,
}

/// Where a node's actions go.
pub trait Effects {
    fn act(&mut self, action: Action);

    /// A durable node (see [`ChainNode::set_durable`]) asks for `item` to be
    /// appended to its log, in this order, as part of `history` (see
    /// [`ChainNode::synced_to`]). Apart from [`Action`] so that hosts
    /// without a disk (the simulator, for now) need not handle it.
    ///
    /// [`ChainNode::set_durable`]: super::ChainNode::set_durable
    /// [`ChainNode::synced_to`]: super::ChainNode::synced_to
    fn persist(&mut self, history: u64, item: Durable) {
        let _ = (history, item);
    }

    /// A write is being applied, in sequence order (after a history is
    /// cleared, the next starts after the snapshot's sequence). Only what
    /// the commit point later covers is committed. Default: nothing.
    fn applied(&mut self, _write: AppliedWrite<'_>) {}
}

/// Collects actions, for the simulator and for tests.
impl Effects for Vec<Action> {
    fn act(&mut self, action: Action) {
        self.push(action);
    }
}
