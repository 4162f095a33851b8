//! The membership side of [`ChainNode`]: views from ZooKeeper, the lease,
//! fencing, registering again, and the commit record.

use log::{info, warn};

use super::effects::{Action, Effects, Store};
use super::injected::Check;
use super::lifecycle::Lifecycle;
use super::node::ChainNode;
use crate::limits::RECORD_PROGRESS_INTERVAL_MS;
use crate::view::{ChainView, CommitRecord, Readiness};

impl ChainNode {
    /// The record the chain node should hold, if we are the one to write
    /// it: the tail (the last ready member, which commits, or handed the
    /// tail role to a joiner that commits in the same epoch). It names our
    /// view's epoch, its ready members and our generation, and is due when
    /// any of them differs from the record; with `progress_due`, also when
    /// our commit point passed the recorded one. Nobody else writes it: a
    /// joining or recovering server's table is not the chain's, and naming
    /// it would let it restart the chain from that table (the simulator
    /// found a recovering server recording itself and then restarting the
    /// chain from its old table).
    pub(super) fn wanted_record(&self, progress_due: bool) -> Option<CommitRecord> {
        let is_tail = self.position.as_ref().is_some_and(|position| position.is_tail);
        let ready_tail = is_tail && matches!(self.lifecycle, Lifecycle::Ready { .. }) && !self.installing;
        if !self.requires(Check::RecordAtTail, ready_tail) {
            return None;
        }
        let current = &self.record;
        let same_generation = current.generation == self.generation;
        let committed = if same_generation { self.committed.max(current.committed) } else { self.committed };
        let wanted = CommitRecord {
            epoch: self.view_epoch,
            servers: self.ready_servers.clone(),
            generation: self.generation,
            committed,
        };
        let membership_changed =
            current.epoch != wanted.epoch || current.servers != wanted.servers || !same_generation;
        let progressed = progress_due && committed > current.committed;
        (membership_changed || progressed).then_some(wanted)
    }

    /// Asks for the chain node's record to be written, when it is not what
    /// we commit under (again at every tick until it is) or, with
    /// `progress_due`, to record our commit point. Returns whether it asked.
    pub(super) fn request_record(&self, progress_due: bool, effects: &mut impl Effects) -> bool {
        if self.record_held() {
            return false;
        }
        let wanted = self.wanted_record(progress_due);
        let asked = wanted.is_some();
        if let Some(record) = wanted {
            effects.act(Action::RecordCommit(record));
        }
        asked
    }

    /// We are about to announce ourselves ready as the first member of a
    /// chain of `generation` (see [`Bootstrap::generation`]); the
    /// generation is ours once the view shows it.
    ///
    /// [`Bootstrap::generation`]: super::bootstrap::Bootstrap::generation
    pub fn starting_chain(&mut self, generation: u64) {
        self.starting_generation = Some(generation);
    }

    // ---- membership ----

    /// A new view of the chain from ZooKeeper (`me`: our node name). Views
    /// older than the one we act on are ignored.
    pub fn view_changed(&mut self, view: &ChainView, me: &str, effects: &mut impl Effects) {
        if self.standalone() || (self.enforces(Check::ViewEpoch) && view.epoch < self.view_epoch) {
            return;
        }
        let old_role = self.role();
        let was_forwarding = self.forwards();
        let old_successor = self.successor().map(|member| member.name.clone());
        let was_readable = self.readable();
        self.view_epoch = view.epoch;
        self.record = view.record.clone();
        self.ready_servers = view.ready().map(|member| member.server_id).collect();
        self.ready_servers.sort_unstable();
        self.name = Some(me.to_owned());
        self.head_address = view.head().map(|member| member.address.clone());
        self.tail_address = view.tail().map(|member| member.address.clone());
        self.position = view.position_of(me);
        self.successor_left(old_successor.as_deref());
        self.lifecycle = self.next_lifecycle(effects);
        if matches!(self.lifecycle, Lifecycle::Ready { .. }) {
            self.recoverable = true;
        }
        if self.lifecycle.holds_chain_state() && !self.installing {
            // Our table is the live chain's: so is its generation.
            self.generation = self.generation.max(view.record.generation);
        }
        if self.forwards() && !was_forwarding {
            self.stream += 1;
        }
        self.log_view_change(old_role, old_successor);
        if was_readable && !self.readable() {
            effects.act(Action::ReadsRevoked);
        }
        self.request_record(false, effects);
        self.publish_commit(effects);
    }

    /// Our lifecycle under the view just taken (position already set):
    /// ready by a hand-over from the predecessor we still have, or by
    /// starting the chain; a ready mark in ZooKeeper without either makes
    /// us register again.
    fn next_lifecycle(&mut self, effects: &mut impl Effects) -> Lifecycle {
        self.renew_hand_over();
        match (&self.position, std::mem::replace(&mut self.lifecycle, Lifecycle::Outside)) {
            (None, _) => Lifecycle::Outside,
            (Some(position), Lifecycle::Ready { handed_over_to }) if position.me.readiness.is_ready() => {
                // A hand-over stands only while that joiner is our successor.
                let successor = position.successor.as_ref().map(|member| member.name.as_str());
                Lifecycle::Ready {
                    handed_over_to: handed_over_to
                        .filter(|name| self.requires(Check::HandOver, Some(name.as_str()) == successor)),
                }
            }
            // Ready by the hand-over of the predecessor we still have, or
            // by starting the chain (no predecessor). Anything else means
            // our predecessor changed between its hand-over and our
            // announcement: it may have committed writes we lack (the
            // simulator found such a joiner answering reads as the new tail
            // without a write its new predecessor had committed alone).
            (Some(position), Lifecycle::CatchingUp { handed_over: Some(hand_over), .. })
                if position.me.readiness.is_ready()
                    && self.requires(
                        Check::HandOver,
                        position.predecessor.as_ref().is_some_and(|member| member.name == hand_over.giver),
                    ) =>
            {
                Lifecycle::Ready { handed_over_to: None }
            }
            (Some(position), old)
                if position.me.readiness.is_ready()
                    && position.predecessor.is_none()
                    && self.first_by_hand_over_is_safe(&old) =>
            {
                // Not caught up by a hand-over: we started the chain.
                if !matches!(old, Lifecycle::CatchingUp { .. })
                    && let Some(generation) = self.starting_generation.take()
                {
                    self.generation = self.generation.max(generation);
                }
                Lifecycle::Ready { handed_over_to: None }
            }
            (Some(position), other) if position.me.readiness.is_ready() => {
                effects
                    .act(Action::Reregister("ready in ZooKeeper without a hand-over from our predecessor"));
                match other {
                    Lifecycle::Outside => Lifecycle::Joining,
                    other => other,
                }
            }
            (Some(_), Lifecycle::Outside) => Lifecycle::Joining,
            (Some(_), Lifecycle::Ready { .. }) => Lifecycle::caught_up(),
            (Some(_), other) => other,
        }
    }

    /// A view in which the predecessor that handed over to us is still our
    /// predecessor: its hand-over stands in this epoch too.
    fn renew_hand_over(&mut self) {
        let predecessor = self.position.as_ref().and_then(|position| position.predecessor.as_ref());
        if let Lifecycle::CatchingUp { handed_over: Some(hand_over), .. } = &mut self.lifecycle
            && predecessor.is_some_and(|member| member.name == hand_over.giver)
        {
            hand_over.epoch = self.view_epoch;
        }
    }

    /// Whether we may become the first member in a view that shows us ready
    /// (`lifecycle`: ours before the view). Always, unless a predecessor
    /// that has left since handed over to us: then only if no later epoch
    /// than the last one in which it was our predecessor was recorded (a
    /// member that commits on its own records its epoch first; see
    /// [`HandOver::epoch`](super::lifecycle::HandOver::epoch)).
    fn first_by_hand_over_is_safe(&self, lifecycle: &Lifecycle) -> bool {
        match lifecycle {
            Lifecycle::CatchingUp { handed_over: Some(hand_over), .. } => {
                self.requires(Check::StaleHandOver, self.record.epoch <= hand_over.epoch)
            }
            _ => true,
        }
    }

    /// Says when our successor or our role changed.
    fn log_view_change(&self, old_role: super::node::Role, old_successor: Option<String>) {
        let successor = self.successor().map(|member| member.name.clone());
        if successor != old_successor {
            match self.successor() {
                Some(member) => info!("{}: successor is now {member}", self.identity()),
                None => info!("{}: no successor now", self.identity()),
            }
        }
        let role = self.role();
        if role != old_role {
            match &self.position {
                Some(position) if position.me.readiness.is_ready() => {
                    // Counted from 0, as `stats` and the metrics count it.
                    info!(
                        "{}: chain role: {} (chain_position {} of chain_length {})",
                        self.identity(),
                        role.name(),
                        position.index,
                        position.chain_length
                    )
                }
                _ => info!("{}: chain role: {}", self.identity(), role.name()),
            }
        }
    }

    /// The session is confirmed alive until `until_ms`.
    pub fn lease_confirmed(&mut self, until_ms: u64) {
        self.lease_until_ms = self.lease_until_ms.max(until_ms);
    }

    /// The time is `now_ms`: a lease that ran out ends the commit waits; a
    /// successor silent past its read lease is asked to be removed (see
    /// `eviction`); a commit record not written yet is asked for again, and the tail's
    /// commit point is recorded at most every [`RECORD_PROGRESS_INTERVAL_MS`].
    pub fn tick(&mut self, now_ms: u64, effects: &mut impl Effects) {
        if !self.standalone() && self.lease_until_ms != 0 && !self.lease_valid(now_ms) {
            self.lease_until_ms = 0;
            warn!(
                "{}: the lease on the ZooKeeper session ran out; not serving until it is confirmed",
                self.identity()
            );
            effects.act(Action::LeaseLost);
        }
        self.watch_successor(now_ms, effects);
        let progress_due = now_ms >= self.record_progress_due_ms;
        if self.request_record(progress_due, effects) && progress_due {
            self.record_progress_due_ms = now_ms + RECORD_PROGRESS_INTERVAL_MS;
        }
    }

    pub fn lease_valid(&self, now_ms: u64) -> bool {
        self.standalone() || self.requires(Check::Lease, now_ms < self.lease_until_ms)
    }

    pub fn lease_until_ms(&self) -> u64 {
        self.lease_until_ms
    }

    /// Stop serving at once: our session is gone or unconfirmed.
    pub fn fence(&mut self, reason: &str, effects: &mut impl Effects) {
        assert!(!self.standalone(), "a standalone server has no session to lose");
        if self.position.is_some() {
            warn!("{}: fenced: {reason}", self.identity());
            self.fencings += 1;
        }
        self.position = None;
        self.lifecycle = Lifecycle::Outside;
        self.lease_until_ms = 0;
        effects.act(Action::ReadsRevoked);
        effects.act(Action::AbandonWaits);
    }

    /// What to register as in a new session: a former ready member with a
    /// complete table offers it (`Recovering`: it may restart a chain that
    /// lost every member); anyone else forgets everything and joins empty.
    pub fn registration(&mut self, store: &mut impl Store, effects: &mut impl Effects) -> Readiness {
        self.starting_generation = None;
        match self.recoverable_history() {
            Some(last_applied) => Readiness::Recovering { last_applied },
            None => {
                self.reset(store, effects);
                Readiness::Joining
            }
        }
    }

    /// Forget everything, to rejoin as a new, empty server.
    pub fn reset(&mut self, store: &mut impl Store, effects: &mut impl Effects) {
        store.clear();
        self.deadlines.clear();
        self.clients.clear();
        self.recoverable = false;
        self.installing = false;
        self.last_applied = 0;
        self.applied_epoch = 0;
        self.committed = 0;
        self.successor_committed = 0;
        self.view_epoch = 0;
        self.generation = 0;
        self.starting_generation = None;
        self.stream += 1;
        self.history_cleared(effects);
    }

    /// The last write applied, if our table is a complete history that can
    /// restart a chain (we were a ready member); `None` otherwise.
    pub fn recoverable_history(&self) -> Option<u64> {
        (self.recoverable && !self.installing).then_some(self.last_applied)
    }

    /// The last write applied, if our table is a complete, empty-or-not
    /// history (not in the middle of a state transfer).
    pub fn installed_history(&self) -> Option<u64> {
        (!self.installing).then_some(self.last_applied)
    }
}
