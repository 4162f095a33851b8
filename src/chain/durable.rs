//! The durable side of [`ChainNode`] (`--data-dir`): what goes to the log,
//! when a write counts as on disk, and recovery from the log.
//!
//! The rule (DESIGN.md, "Durability"): nothing is acknowledged to a client
//! before every member holds it on disk. A durable node logs every write it
//! applies and every snapshot chunk it installs ([`Effects::persist`]), and
//! its commit point never passes what its disk reported synced
//! ([`ChainNode::synced_to`]). The commit point is what a member acks
//! upstream, so the head's commit point, which answers clients, is at most
//! what the slowest disk of the chain holds.
//!
//! Recovery replays what the log holds through the same code that applied
//! it ([`ChainNode::replay`]), then [`ChainNode::recovered`] makes the table
//! a history that can restart a chain (see `bootstrap`).

use super::effects::{Action, Effects, Store};
use super::injected::Check;
use super::node::{ChainNode, Refusal, SnapshotPoint};
use super::uncommitted::ReadKeys;
use crate::proto::{ErrorCode, SnapshotChunk, Write};

/// One thing a durable node logs.
#[derive(Clone, Debug, PartialEq)]
pub enum Durable {
    /// A write applied, with the chain generation it was applied in.
    Write { generation: u64, write: Write },
    /// Part of a state transfer (or of a snapshot file).
    Chunk(SnapshotChunk),
    /// The table's history starts over (it was cleared).
    Reset,
}

/// What a frame tells the successor about the disks before it: in view
/// `epoch`, every member from the head to the sender holds the writes up
/// to `sequence` on disk.
///
/// Why the tail waits for it: a member that crashes and restarts on its
/// disk comes back with only what it synced, and the commit record may
/// still name it (the tail that would write a newer record can be cut off
/// from ZooKeeper). If the tail had committed a write that member never
/// synced, the member could restart the chain without it (found by
/// `table-check sim --durable`, seed 8338124441377712905). So the tail
/// commits only what every member before it synced, and every member
/// named in the record holds every committed write.
///
/// A report counts only in the view it was made in: a member of a newer
/// view has fewer members before it, so its report does not speak for
/// the members an older view still puts before the receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncedReport {
    pub epoch: u64,
    pub sequence: u64,
}

/// A durable node's table at one point, for a snapshot file: the client
/// records and deadlines at `point.sequence`, copied with it under the
/// node's lock; the table itself is copied afterwards.
#[derive(Clone, Debug, PartialEq)]
pub struct DurablePoint {
    pub history: u64,
    /// Its sequence number, generation, client records and deadlines.
    pub point: SnapshotPoint,
}

impl ChainNode {
    /// Turns durability on (before the first event), as the server
    /// `server_id` that its data directory records: the commit record names
    /// it, so it must survive a restart.
    pub fn set_durable(&mut self, server_id: u64) {
        self.durable = true;
        self.config.server_id = server_id;
    }

    /// Whether we log to a disk (`--data-dir`).
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// The current history (see the field).
    pub fn history(&self) -> u64 {
        self.history
    }

    /// Our table was cleared: a new history begins, none of it on disk.
    pub(super) fn history_cleared(&mut self, effects: &mut impl Effects) {
        self.history += 1;
        self.synced = 0;
        self.forget_written();
        effects.act(Action::HistoryCleared);
        if self.durable {
            self.log_durable(Durable::Reset, effects);
        }
    }

    /// The disk holds everything logged in `history` up to write
    /// `sequence`: the commit point may move up to it. A report of an
    /// older history is ignored.
    pub fn synced_to(&mut self, history: u64, sequence: u64, effects: &mut impl Effects) {
        if history != self.history || sequence <= self.synced {
            return;
        }
        self.synced = sequence.min(self.last_applied);
        self.publish_commit(effects);
    }

    /// The last write on disk (durable), or applied (not durable).
    pub fn synced(&self) -> u64 {
        if self.durable { self.synced } else { self.last_applied }
    }

    /// Logs `item` in the current history, noting the keys it leaves
    /// uncommitted for reads.
    pub(super) fn log_durable(&mut self, item: Durable, effects: &mut impl Effects) {
        self.uncommitted.note(&item);
        effects.persist(self.history, item);
    }

    /// The commit point a read of `keys` must wait for before it answers:
    /// the newest write it may show that may not be committed (durable; 0
    /// otherwise, or when there is none).
    pub fn read_waits_for(&self, keys: ReadKeys<'_>) -> u64 {
        if !self.durable {
            return 0;
        }
        self.uncommitted.newest(keys, self.last_applied)
    }

    /// What to tell our successor of the disks up to ours. A member without
    /// a disk counts what it applied: it never restarts a chain from a table
    /// a crash emptied, and a durable tail behind it (a chain turning
    /// durable one server at a time) still commits.
    pub fn synced_report(&self) -> SyncedReport {
        SyncedReport { epoch: self.view_epoch, sequence: self.synced().min(self.upstream_synced_now()) }
    }

    /// The last write on disk at every member before us in our view, as
    /// its report says (none before the head; 0 until a report of our
    /// view arrived).
    pub(super) fn upstream_synced_now(&self) -> u64 {
        if self.standalone() || self.position.as_ref().is_some_and(|position| position.is_head) {
            u64::MAX
        } else if self.upstream_synced.epoch == self.view_epoch {
            self.upstream_synced.sequence
        } else {
            0
        }
    }

    /// Our predecessor reported its disks (in a frame that passed the link
    /// checks): the commit point may move up to it.
    pub fn upstream_synced(&mut self, report: SyncedReport, effects: &mut impl Effects) {
        self.upstream_synced = report;
        self.publish_commit(effects);
    }

    /// Where a snapshot file is taken now (see [`DurablePoint`]).
    pub fn durable_point(&self) -> DurablePoint {
        DurablePoint { history: self.history, point: self.point_now() }
    }

    /// Applies one logged item while recovering, before any other event.
    /// A write that does not follow the last one is refused: the log lost
    /// a record.
    pub fn replay(&mut self, item: Durable, store: &mut impl Store) -> Result<(), Refusal> {
        let mut ignored = Vec::new();
        match item {
            Durable::Reset => {
                store.clear();
                self.deadlines.clear();
                self.clients.clear();
                self.last_applied = 0;
                self.applied_epoch = 0;
                self.generation = 0;
                self.forget_written();
            }
            Durable::Chunk(chunk) => {
                // Logged before it was installed, so its history is ours.
                let durable = std::mem::replace(&mut self.durable, false);
                self.install_chunk(chunk, store, &mut ignored);
                self.durable = durable;
            }
            Durable::Write { generation, write } => {
                if write.sequence != self.last_applied + 1 {
                    return Err(Refusal::new(
                        ErrorCode::ERR_INTERNAL,
                        format!(
                            "the log skips from write {} to write {}: a record is missing",
                            self.last_applied, write.sequence
                        ),
                    ));
                }
                self.generation = generation;
                self.note_written(&write);
                if !self.enforces(Check::ReplayWhole) && write.sequence % 4 == 0 {
                    // The injected bug: counted, not applied.
                    self.last_applied = write.sequence;
                    return Ok(());
                }
                let durable = std::mem::replace(&mut self.durable, false);
                self.apply_replicated(write, false, store, &mut ignored);
                self.durable = durable;
            }
        }
        Ok(())
    }

    /// Recovery is done: what was replayed is on disk, and our table is a
    /// history that may restart a chain (as a member fenced by a lost
    /// session keeps its table; see `bootstrap`).
    pub fn recovered(&mut self, effects: &mut impl Effects) {
        self.synced = self.last_applied;
        self.recoverable = !self.standalone() && self.last_applied > 0;
        self.publish_commit(effects);
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::chain::{NodeConfig, WriteOp};
    use crate::check::sim::server::SimStore;

    /// Actions and logged items, in order.
    #[derive(Default)]
    struct Recorder {
        actions: Vec<Action>,
        logged: Vec<(u64, Durable)>,
    }

    impl Effects for Recorder {
        fn act(&mut self, action: Action) {
            self.actions.push(action);
        }
        fn persist(&mut self, history: u64, item: Durable) {
            self.logged.push((history, item));
        }
    }

    fn standalone() -> ChainNode {
        with_bug(None)
    }

    fn with_bug(bug: Option<Check>) -> ChainNode {
        let mut node = ChainNode::new(NodeConfig {
            standalone: true,
            chain_path: String::new(),
            client_records_max: 100,
            bug,
            server_id: 1,
            memory_bytes_max: None,
        });
        node.set_durable(1);
        node
    }

    fn put(node: &mut ChainNode, store: &mut SimStore, effects: &mut Recorder, key: &str) -> u64 {
        let op = WriteOp::Set { key: key.into(), value: Some(b"v".to_vec()) };
        node.client_write(1, node.last_applied + 1, op, 0, store, effects).expect("a put").sequence
    }

    /// The rule: a durable node commits nothing its disk has not reported.
    #[test]
    fn a_write_commits_only_once_its_disk_reports_it_synced() {
        let (mut node, mut store, mut effects) = (standalone(), SimStore::new(), Recorder::default());
        put(&mut node, &mut store, &mut effects, "a");
        put(&mut node, &mut store, &mut effects, "b");
        assert_eq!(node.progress().committed, 0, "nothing on disk yet");
        assert_eq!(effects.logged.len(), 2, "both writes logged");
        node.synced_to(node.history(), 1, &mut effects);
        assert_eq!(node.progress().committed, 1);
        assert_eq!(effects.actions.last(), Some(&Action::Committed(1)));
        node.synced_to(node.history() + 1, 2, &mut effects);
        assert_eq!(node.progress().committed, 1, "another history's report counts for nothing");
        node.synced_to(node.history(), 2, &mut effects);
        assert_eq!(node.progress().committed, 2);
    }

    /// `ack-before-fsync`: without the check, a write counts committed
    /// (and would be answered) while only the page cache holds it.
    #[test]
    fn ack_before_fsync_commits_what_the_disk_has_not_synced() {
        for (bug, committed) in [(None, 0), (Some(Check::SyncedCommit), 1)] {
            let (mut node, mut store, mut effects) = (with_bug(bug), SimStore::new(), Recorder::default());
            put(&mut node, &mut store, &mut effects, "a");
            assert_eq!(node.progress().committed, committed, "{bug:?}");
        }
    }

    /// `replay-skips-record`: without the check, recovery counts the
    /// fourth write applied while the table lacks it, and no gap is seen.
    #[test]
    fn replay_skips_record_loses_a_logged_write_unnoticed() {
        let (mut node, mut store, mut effects) = (standalone(), SimStore::new(), Recorder::default());
        for key in ["a", "b", "c", "d"] {
            put(&mut node, &mut store, &mut effects, key);
        }
        for (bug, holds_d) in [(None, true), (Some(Check::ReplayWhole), false)] {
            let (mut copy, mut copied) = (with_bug(bug), SimStore::new());
            for (_, item) in effects.logged.clone() {
                copy.replay(item, &mut copied).expect("no gap is seen");
            }
            assert_eq!(copy.progress().applied, 4, "{bug:?}");
            assert_eq!(copied.contains_key("d"), holds_d, "{bug:?}");
        }
    }

    /// What was logged, replayed into a new node, gives the same table and
    /// client records; a missing record is refused.
    #[test]
    fn replaying_the_log_rebuilds_the_table_and_refuses_a_gap() {
        let (mut node, mut store, mut effects) = (standalone(), SimStore::new(), Recorder::default());
        for key in ["a", "b"] {
            put(&mut node, &mut store, &mut effects, key);
        }
        // A declined cas is a write of its own, and logged as one.
        let cas = WriteOp::Cas { key: "a".into(), expected: None, value: b"x".to_vec() };
        node.client_write(2, 1, cas, 0, &mut store, &mut effects).expect("declined");
        put(&mut node, &mut store, &mut effects, "c");
        let (mut copy, mut copied) = (standalone(), SimStore::new());
        for (_, item) in effects.logged.clone() {
            copy.replay(item, &mut copied).expect("replays");
        }
        let mut recovered = Recorder::default();
        copy.recovered(&mut recovered);
        assert_eq!(copied, store);
        assert_eq!(copy.progress().applied, 4);
        assert_eq!(copy.progress().committed, 4, "what was replayed is on disk");
        assert_eq!(copy.client_records(), node.client_records());

        let (mut gapped, mut table) = (standalone(), SimStore::new());
        gapped.replay(effects.logged[0].1.clone(), &mut table).unwrap();
        let error = gapped.replay(effects.logged[2].1.clone(), &mut table).unwrap_err();
        assert!(error.message.contains("a record is missing"), "{}", error.message);
    }
}
