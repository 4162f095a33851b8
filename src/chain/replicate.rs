//! The replication side of [`ChainNode`]: a predecessor's links, writes
//! and snapshots coming in, the hand-over, and acks from the successor.

use log::info;

use super::clients;
use super::durable::Durable;
use super::effects::{Action, AppliedWrite, Effects, Store};
use super::injected::Check;
use super::lifecycle::{HandOver, Lifecycle};
use super::node::{ChainNode, Progress, Refusal, SnapshotPoint, Welcome};
use super::writes::apply_state;
use crate::proto::{ErrorCode, ReplicaHello, SnapshotChunk, Write};

impl ChainNode {
    /// Applies writes from `sender`, in order. Writes we already have are
    /// skipped (resends after a reconnection); a gap is refused. A commit
    /// point this moves (we are the tail) comes out as [`Action::Committed`].
    pub fn replicated_batch(
        &mut self,
        sender: &str,
        link: u64,
        writes: Vec<Write>,
        store: &mut impl Store,
        effects: &mut impl Effects,
    ) -> Result<(), Refusal> {
        self.check_link(sender, link)?;
        if self.enforces(Check::SnapshotAcceptance) && self.installing {
            return Err(Refusal::new(ErrorCode::ERR_INTERNAL, "writes during a state transfer"));
        }
        let forward = self.forwards();
        let mut result = Ok(());
        for write in writes {
            if write.sequence <= self.last_applied {
                continue;
            }
            if write.sequence != self.last_applied + 1 {
                result = Err(Refusal::new(
                    ErrorCode::ERR_INTERNAL,
                    format!(
                        "gap in the write stream: expected {} got {}",
                        self.last_applied + 1,
                        write.sequence
                    ),
                ));
                break;
            }
            self.apply_replicated(write, forward, store, effects);
        }
        self.maybe_announce_ready(effects);
        self.publish_commit(effects);
        result
    }

    /// Applies one replicated (or replayed) write, the next in sequence, and
    /// forwards it if `forward`.
    pub(super) fn apply_replicated(
        &mut self,
        mut write: Write,
        forward: bool,
        store: &mut impl Store,
        effects: &mut impl Effects,
    ) {
        // The table keeps the value; a copy goes on only if we forward or
        // log it.
        let keep = forward || self.durable;
        let value = if keep { write.value.clone() } else { write.value.take() };
        // Forwarded in our view, the write goes down that view's chain,
        // which may leave out a member that an older view (and its
        // commit record) names: a successor still in the older view
        // must not commit it there (swarm testing found a tail cut off
        // from ZooKeeper committing writes that went around a removed
        // member its record named, which then restarted the chain).
        write.epoch = write.epoch.max(self.view_epoch);
        self.applied_epoch = self.applied_epoch.max(write.epoch);
        effects.applied(AppliedWrite {
            sequence: write.sequence,
            key: &write.key,
            value: value.as_deref(),
            more: &write.more,
            expired: write.expired,
            declined: write.declined,
        });
        if !write.declined {
            let deadline = write.deadline_ms.filter(|_| value.is_some());
            self.note_deadlines(&write.key, deadline, &write.more);
            apply_state(store, &write.key, value, &write.more);
        }
        let mut record =
            clients::record(write.client_id, write.request_id, write.sequence, write.found, write.number);
        record.declined = write.declined;
        self.record_applied(write.sequence, record, keep.then_some(write), effects);
    }

    /// Whether frames on `link` from `sender` are accepted: it is our
    /// current predecessor, and this is the latest link it opened. A link
    /// that a newer one replaced may still deliver frames it carried (the
    /// simulator found an old link's snapshot, delayed, wiping the newer
    /// state transfer from the same predecessor).
    pub fn check_link(&self, sender: &str, link: u64) -> Result<(), Refusal> {
        self.check_predecessor(sender)?;
        if self.enforces(Check::LatestLink) && link != self.current_link {
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!("link {link} from {sender} was replaced by link {}", self.current_link),
            ));
        }
        Ok(())
    }

    /// Whether `sender` is our current predecessor (writes from anyone else
    /// are refused).
    pub(super) fn check_predecessor(&self, sender: &str) -> Result<(), Refusal> {
        let predecessor = self.position.as_ref().and_then(|position| position.predecessor.as_ref());
        match predecessor {
            Some(predecessor) if predecessor.name == sender => Ok(()),
            _ if !self.enforces(Check::Predecessor) && self.position.is_some() => Ok(()),
            _ => Err(Refusal::new(ErrorCode::ERR_WRONG_ROLE, format!("{sender} is not my predecessor"))),
        }
    }

    /// Our progress, to acknowledge to `sender`; `None` once `sender` is not
    /// our predecessor any more: after a view change we may commit writes of
    /// our own (as the new head) under sequence numbers that the old
    /// predecessor gave to writes we never received, and an ack carrying
    /// those would tell it they were committed. (table-check found this: a
    /// paused head, on resuming, acknowledged a delete no other server had.)
    pub fn progress_for(&self, sender: &str, link: u64) -> Option<Progress> {
        self.check_link(sender, link).ok()?;
        Some(self.progress())
    }

    /// Answers a predecessor's hello. Accepted only when it is meant for us,
    /// comes from our current predecessor, and its view is not older than
    /// ours (a predecessor acting on an old view may be one that ZooKeeper
    /// has since dropped). A node that is still joining, or in the middle of
    /// a state transfer, always starts over from a fresh snapshot.
    pub fn link_hello(&mut self, hello: &ReplicaHello) -> Result<Welcome, Refusal> {
        let me = self.name.as_deref().unwrap_or_default();
        if self.enforces(Check::Predecessor) && hello.receiver != me {
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!("this link is meant for {}, I am {me}", hello.receiver),
            ));
        }
        self.check_predecessor(&hello.sender)?;
        if self.enforces(Check::ChainState) && self.ready_servers.is_empty() {
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                "no ready member: there is no chain to replicate",
            ));
        }
        if self.enforces(Check::ViewEpoch) && hello.epoch < self.view_epoch {
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!(
                    "{}'s view (epoch {}) is older than mine ({})",
                    hello.sender, hello.epoch, self.view_epoch
                ),
            ));
        }
        let joining = self.enforces(Check::ChainState) && !self.lifecycle.holds_chain_state();
        self.current_link += 1;
        Ok(Welcome {
            link: self.current_link,
            last_applied: self.last_applied,
            wants_snapshot: joining || self.installing,
            rejoin: self.rejoin_offer(),
        })
    }

    // ---- state transfer ----

    /// The point to snapshot our table at for a successor, with the client
    /// records; the caller copies the table before giving the node its next
    /// event, and from here on every applied write is forwarded. `None`
    /// while our table is not the chain's state.
    pub fn snapshot_point(&self) -> Option<SnapshotPoint> {
        self.may_replicate().then(|| self.point_now())
    }

    /// Our table's point now: what a snapshot of it taken under the same
    /// lock holds besides the entries.
    pub(super) fn point_now(&self) -> SnapshotPoint {
        SnapshotPoint {
            sequence: self.last_applied,
            write_epoch: self.applied_epoch,
            clients: self.clients.all(),
            deadlines: self.deadlines.all(),
            generation: self.generation,
            last: self.last_written(),
        }
    }

    /// Installs one chunk of a snapshot from `sender`. The first chunk
    /// empties the table; the last sets our sequence number.
    pub fn snapshot_chunk(
        &mut self,
        sender: &str,
        link: u64,
        chunk: SnapshotChunk,
        first: bool,
        store: &mut impl Store,
        effects: &mut impl Effects,
    ) -> Result<(), Refusal> {
        self.check_link(sender, link)?;
        let too_old = first && self.lifecycle.holds_chain_state() && chunk.sequence < self.committed;
        if self.enforces(Check::SnapshotAcceptance) && too_old {
            // Our history is a prefix of our predecessor's, and committed
            // writes are in every member's.
            return Err(Refusal::new(
                ErrorCode::ERR_INTERNAL,
                format!(
                    "a snapshot at write {} is older than our commit point {}",
                    chunk.sequence, self.committed
                ),
            ));
        }
        if first && self.enforces(Check::KeepRecoverable) {
            self.check_snapshot_covers_ours(&chunk)?;
        }
        if first {
            self.installing = true;
            self.stream += 1;
            // The new history's generation comes with the last chunk.
            self.generation = 0;
            // The commit point is recomputed for the new history (a joiner's
            // old one would be acked upstream beyond what was sent).
            self.committed = 0;
            self.applied_epoch = 0;
            if !self.lifecycle.holds_chain_state() {
                self.successor_committed = 0;
            }
            effects.act(Action::ReadsRevoked);
            self.history_cleared(effects);
            store.clear();
            self.deadlines.clear();
            self.clients.clear();
            self.last_applied = 0;
        } else if self.enforces(Check::SnapshotAcceptance) && !self.installing {
            return Err(Refusal::new(ErrorCode::ERR_INTERNAL, "a snapshot chunk without its start"));
        }
        let last = chunk.last;
        self.install_chunk(chunk, store, effects);
        if last {
            self.installing = false;
            if self.lifecycle == Lifecycle::Joining {
                self.lifecycle = Lifecycle::caught_up();
            }
            self.maybe_announce_ready(effects);
            self.publish_commit(effects);
        }
        Ok(())
    }

    /// A snapshot from a predecessor that is not ready itself (a joiner
    /// still catching up) must not replace a recoverable table it does not
    /// cover: ours may be the only copy of committed writes (a member that
    /// restarted on its disk, or was fenced, behind a joiner that has not
    /// caught up from a ready member since gone; found by `table-check sim
    /// --durable`, seed 8799617115756069180). A ready predecessor holds
    /// every committed write, and a newer generation means the chain was
    /// restarted without ours: either snapshot is taken.
    fn check_snapshot_covers_ours(&self, chunk: &SnapshotChunk) -> Result<(), Refusal> {
        let Some(ours) = self.recoverable_history() else { return Ok(()) };
        let from_ready = self
            .position
            .as_ref()
            .and_then(|position| position.predecessor.as_ref())
            .is_some_and(|predecessor| predecessor.readiness.is_ready());
        if from_ready || chunk.generation > self.generation || chunk.sequence >= ours {
            return Ok(());
        }
        Err(Refusal::new(
            ErrorCode::ERR_UNAVAILABLE,
            format!(
                "a snapshot at write {} from a joining predecessor would replace our table of {ours} writes; \
                 waiting until it has caught up",
                chunk.sequence
            ),
        ))
    }

    /// Puts a snapshot chunk's contents into our table (and logs it first,
    /// if durable); the last chunk sets our sequence number.
    pub(super) fn install_chunk(
        &mut self,
        chunk: SnapshotChunk,
        store: &mut impl Store,
        effects: &mut impl Effects,
    ) {
        if self.durable {
            self.log_durable(Durable::Chunk(chunk.clone()), effects);
        }
        self.applied_epoch = self.applied_epoch.max(chunk.write_epoch);
        if chunk.last {
            self.note_installed(&chunk);
        }
        for entry in chunk.entries {
            store.apply(&entry.key, Some(entry.value));
        }
        for deadline in chunk.deadlines {
            self.deadlines.set(&deadline.key, Some(deadline.deadline_ms));
        }
        for record in chunk.clients {
            self.clients.remember(record);
        }
        if chunk.last {
            self.last_applied = chunk.sequence;
            self.generation = chunk.generation;
        }
    }

    /// Hand-over, joining side: our predecessor stopped committing on its
    /// own; we become ready once we have applied `sequence`.
    pub fn hand_over_mark(
        &mut self,
        sender: &str,
        link: u64,
        sequence: u64,
        effects: &mut impl Effects,
    ) -> Result<(), Refusal> {
        self.check_link(sender, link)?;
        let identity = self.identity();
        let epoch = self.view_epoch;
        match &mut self.lifecycle {
            Lifecycle::CatchingUp { promote_at, handed_over } => {
                *handed_over = Some(HandOver { giver: sender.to_owned(), epoch });
                info!("{identity}: hand-over from {sender}: ready once write {sequence} is applied");
                *promote_at = Some(sequence);
            }
            _ => {
                return Err(Refusal::new(
                    ErrorCode::ERR_INTERNAL,
                    "a hand-over mark before the state transfer",
                ));
            }
        }
        self.maybe_announce_ready(effects);
        Ok(())
    }

    /// Once a joining node has applied everything up to the hand-over mark,
    /// asks (once) to be announced ready.
    pub(super) fn maybe_announce_ready(&mut self, effects: &mut impl Effects) {
        let wait_for_mark = self.enforces(Check::HandOver);
        if let Lifecycle::CatchingUp { promote_at, .. } = &mut self.lifecycle
            && let Some(sequence) = *promote_at
            && !self.installing
            && (self.last_applied >= sequence || !wait_for_mark)
        {
            *promote_at = None;
            effects.act(Action::AnnounceReady);
        }
    }

    /// Hand-over, tail side: if our joining successor `successor` has applied
    /// everything we have, stop committing on our own and return the
    /// sequence number it must reach before it may announce itself ready.
    pub fn try_hand_over(
        &mut self,
        successor: &str,
        successor_applied: u64,
        effects: &mut impl Effects,
    ) -> Option<u64> {
        let caught_up = self.requires(Check::HandOverCaughtUp, successor_applied >= self.last_applied);
        let position = self.position.as_ref()?;
        // Only to a joiner after us by sequence: ready members are ordered
        // by sequence, so one before us would become ready ahead of us.
        let joining_successor = position.successor.as_ref().is_some_and(|member| {
            member.name == successor && !member.readiness.is_ready() && member.sequence > position.me.sequence
        });
        let identity = self.identity();
        let Lifecycle::Ready { handed_over_to } = &mut self.lifecycle else {
            return None;
        };
        if !position.is_tail
            || !joining_successor
            || handed_over_to.as_deref() == Some(successor)
            || !caught_up
        {
            return None;
        }
        info!(
            "{identity}: {successor} has caught up at write {}; handing the tail role over",
            self.last_applied
        );
        *handed_over_to = Some(successor.to_owned());
        effects.act(Action::ReadsRevoked);
        // The commit point as the tail role leaves us.
        self.request_record(true, effects);
        Some(self.last_applied)
    }

    /// The successor `successor` reports its commit point (cumulative).
    /// Ignored without a valid lease (an ack read after a pause may come
    /// from a successor that has since gone on in a chain without us) and
    /// from anyone but the current successor. An ack beyond what we applied
    /// is refused: no successor following our history can send one.
    pub fn successor_ack(
        &mut self,
        successor: &str,
        committed: u64,
        now_ms: u64,
        effects: &mut impl Effects,
    ) -> Result<(), Refusal> {
        self.successor_heard(successor, now_ms);
        if !self.standalone() && !self.lease_valid(now_ms) {
            return Ok(());
        }
        if self.enforces(Check::Successor) && self.successor().is_none_or(|member| member.name != successor) {
            return Ok(());
        }
        if self.enforces(Check::Successor) && committed > self.last_applied {
            return Err(Refusal::new(
                ErrorCode::ERR_INTERNAL,
                format!(
                    "{successor} acknowledged write {committed}; only {} were applied here",
                    self.last_applied
                ),
            ));
        }
        self.successor_committed = self.successor_committed.max(committed);
        self.publish_commit(effects);
        Ok(())
    }
}
