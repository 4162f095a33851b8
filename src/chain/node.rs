//! [`ChainNode`]: one server's side of the chain protocol.
//!
//! What must hold (DESIGN.md, "The chain protocol"): the head gives every
//! write the next sequence number and every server applies writes in that
//! order, so a server's history is a prefix of its predecessor's; a write is
//! committed when the tail has applied it, and its client is answered only
//! then; a server accepts writes, snapshot chunks and the hand-over mark
//! only from its current predecessor, and acks only from its current
//! successor; a server that is not the committing tail, or not sure of its
//! ZooKeeper session, answers no read.
//!
//! Paired assertions (TigerBeetle's style) guard what we produce: the head
//! asserts each write's sequence number follows the last when it applies and
//! forwards it, and every server asserts the same again when it applies a
//! replicated write (after checking the network's input, which is refused
//! with an error, never asserted). The commit point never passes what was
//! applied here.

use log::{info, warn};

use super::clients::{self, ClientRecords, Seen};
use super::effects::{Action, Effects, Store};
use super::lifecycle::Lifecycle;
use crate::proto::{ClientRecord, ErrorCode, ReplicaHello, SnapshotChunk, Write};
use crate::view::{ChainView, CommitRecord, Member, Position, Readiness};

/// How a request was refused: the error code and a message for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }

    fn unavailable() -> Refusal {
        Refusal::new(ErrorCode::ERR_UNAVAILABLE, "no confirmed ZooKeeper session; not serving")
    }
}

/// A protocol bug switched on deliberately, so the simulator and
/// `table-check` can show that they catch it. Never set in a real chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// The head counts a write committed as soon as it applied it.
    CommitEarly,
    /// Links and frames are accepted from any sender: no predecessor,
    /// view-epoch or latest-link check.
    SkipPredecessorCheck,
    /// Any member with a lease answers reads, not only the committing tail.
    StaleRead,
}

impl InjectedBug {
    pub const ALL: [InjectedBug; 3] =
        [InjectedBug::CommitEarly, InjectedBug::SkipPredecessorCheck, InjectedBug::StaleRead];

    pub fn name(self) -> &'static str {
        match self {
            InjectedBug::CommitEarly => "commit-early",
            InjectedBug::SkipPredecessorCheck => "skip-predecessor-check",
            InjectedBug::StaleRead => "stale-read",
        }
    }

    pub fn from_name(name: &str) -> Option<InjectedBug> {
        InjectedBug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// No chain: every write commits at once and every read is allowed.
    pub standalone: bool,
    /// Clients whose latest write is remembered for exactly-once retries.
    pub client_records_max: usize,
    /// A deliberate protocol bug (testing the checkers only).
    pub bug: Option<InjectedBug>,
    /// This server's id in member data and commit records (not 0).
    pub server_id: u64,
}

/// A client write applied at the head: where it is in the history and the
/// answer its client gets once it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReceipt {
    pub sequence: u64,
    /// The key existed before.
    pub found: bool,
}

/// A node's progress: what it applied, and what the tail applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub applied: u64,
    pub committed: u64,
}

/// The answer to a predecessor's hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The link's number: frames are accepted only on the latest link
    /// accepted (see [`ChainNode::check_link`]).
    pub link: u64,
    /// Last write applied here: the predecessor resumes after it.
    pub last_applied: u64,
    /// Our table is not (yet) the chain's: send a snapshot first.
    pub wants_snapshot: bool,
}

/// Where a snapshot for a successor is taken (see
/// [`ChainNode::snapshot_point`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotPoint {
    pub sequence: u64,
    /// The newest `Write.epoch` among the writes it holds.
    pub write_epoch: u64,
    pub clients: Vec<ClientRecord>,
}

/// Chain role, derived from the view and the lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Standalone,
    Head,
    Middle,
    Tail,
    HeadAndTail,
    Joining,
    /// Not (or no longer) a member: session lost, or not registered yet.
    Fenced,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Head => "head",
            Role::Middle => "middle",
            Role::Tail => "tail",
            Role::HeadAndTail => "head+tail",
            Role::Joining => "joining",
            Role::Fenced => "fenced",
        }
    }
}

/// One server's protocol state. See the module doc.
pub struct ChainNode {
    config: NodeConfig,
    /// Last sequence number applied to the table.
    last_applied: u64,
    /// The newest view epoch in which a write applied here was accepted by
    /// its head (`Write.epoch`). We commit on our own only once our view is
    /// at least that new: a head with a newer view may have left out a
    /// member that our older view (and the commit record written in it)
    /// still names (the simulator found a tail cut off from ZooKeeper
    /// committing writes of a new head, and the old head, still named,
    /// restarting the chain without them).
    applied_epoch: u64,
    /// Highest sequence number known applied by the tail (0 after a reset).
    committed: u64,
    /// Highest commit point our successor reported.
    successor_committed: u64,
    clients: ClientRecords,
    lifecycle: Lifecycle,
    /// Our node name in ZooKeeper, once registered.
    name: Option<String>,
    /// Our place in the latest view; `None` when we are not a member.
    position: Option<Position>,
    /// Epoch of the latest view we acted on; older views are ignored, and a
    /// link from a predecessor with an older view is refused.
    view_epoch: u64,
    /// The latest link accepted from a predecessor; frames on any other
    /// link are refused.
    current_link: u64,
    /// The chain node's commit record in the latest view.
    record: CommitRecord,
    /// The server ids of the ready members in the latest view (empty: no
    /// live chain).
    ready_servers: Vec<u64>,
    /// Addresses of the head and tail in the latest view, named in
    /// refusals so a client can see where to go.
    head_address: Option<String>,
    tail_address: Option<String>,
    /// A state transfer into our table is under way: it holds part of a
    /// history. Any member may be sent one (a new predecessor whose Sent
    /// list cannot cover us), so this is not part of the lifecycle.
    installing: bool,
    /// Our table is a former ready member's complete history up to
    /// `last_applied`: kept through fencing, so a chain whose members all
    /// lost their sessions can restart from the longest one.
    recoverable: bool,
    /// The ZooKeeper session is known alive until this time (ms on the
    /// caller's clock); 0 = no lease.
    lease_until_ms: u64,
    /// Numbers the unbroken runs of forwarded writes: a new one begins
    /// when we start forwarding again after a time without a successor
    /// (writes applied meanwhile were not forwarded) and when our table's
    /// history is replaced (a state transfer began, or a reset). Forwarded
    /// writes carry it, so the sender can tell a new run, which only a
    /// snapshot can bridge, from a gap within one (a bug of ours).
    stream: u64,
}

impl ChainNode {
    pub fn new(config: NodeConfig) -> ChainNode {
        let lifecycle = if config.standalone { Lifecycle::Standalone } else { Lifecycle::Outside };
        ChainNode {
            clients: ClientRecords::new(config.client_records_max),
            config,
            last_applied: 0,
            applied_epoch: 0,
            committed: 0,
            successor_committed: 0,
            lifecycle,
            name: None,
            position: None,
            view_epoch: 0,
            current_link: 0,
            record: CommitRecord::default(),
            ready_servers: Vec::new(),
            head_address: None,
            tail_address: None,
            installing: false,
            recoverable: false,
            lease_until_ms: 0,
            stream: 0,
        }
    }

    // ---- client requests ----

    /// A client's put (`value` given) or delete, at the head. A retry (same
    /// client and request id) is not applied again: it gets the original
    /// write's receipt.
    #[allow(clippy::too_many_arguments)]
    pub fn client_write(
        &mut self,
        client_id: u64,
        request_id: u64,
        key: &str,
        value: Option<Vec<u8>>,
        now_ms: u64,
        store: &mut impl Store,
        effects: &mut impl Effects,
    ) -> Result<WriteReceipt, Refusal> {
        self.check_may_write(now_ms)?;
        match self.clients.seen(client_id, request_id) {
            Seen::Retry { sequence, found } => return Ok(WriteReceipt { sequence, found }),
            Seen::Stale { latest } => {
                return Err(Refusal::new(
                    ErrorCode::ERR_STALE_REQUEST,
                    format!("request {request_id} is older than this client's latest write {latest}"),
                ));
            }
            Seen::New => {}
        }
        let sequence = self.last_applied + 1;
        let forward = self.forwards();
        let mut write = forward.then(|| {
            let mut write = Write::new();
            write.key = key.to_owned();
            write.value = value.clone();
            write.client_id = client_id;
            write.request_id = request_id;
            write.sequence = sequence;
            write.epoch = self.view_epoch;
            write
        });
        self.applied_epoch = self.applied_epoch.max(self.view_epoch);
        let found = store.apply(key, value);
        if let Some(write) = &mut write {
            write.found = found;
        }
        self.record_applied(
            sequence,
            clients::record(client_id, request_id, sequence, found),
            write,
            effects,
        );
        self.publish_commit(effects);
        Ok(WriteReceipt { sequence, found })
    }

    fn check_may_write(&self, now_ms: u64) -> Result<(), Refusal> {
        if self.config.standalone {
            return Ok(());
        }
        if !self.lease_valid(now_ms) {
            return Err(Refusal::unavailable());
        }
        match &self.position {
            Some(position) if position.is_head => Ok(()),
            _ => Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!(
                    "not the head; writes go to the head ({})",
                    self.head_address.as_deref().unwrap_or("unknown")
                ),
            )),
        }
    }

    /// Whether a read may be answered here now: we are the committing tail
    /// (or standalone), no state transfer is under way, and the lease holds.
    pub fn check_may_read(&self, now_ms: u64) -> Result<(), Refusal> {
        if self.config.standalone {
            return Ok(());
        }
        if !self.lease_valid(now_ms) {
            return Err(Refusal::unavailable());
        }
        if !self.readable() {
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!(
                    "not the tail; reads go to the tail ({})",
                    self.tail_address.as_deref().unwrap_or("unknown")
                ),
            ));
        }
        Ok(())
    }

    /// Reads are ours to answer (lease aside): we are the tail, we still
    /// commit on our own (no hand-over), and our table is complete.
    pub fn readable(&self) -> bool {
        if self.config.standalone {
            return true;
        }
        if self.config.bug == Some(InjectedBug::StaleRead) && self.position.is_some() {
            return !self.installing;
        }
        // A tail waiting for its commit record holds writes it applied and
        // did not commit: it may not show them (the simulator found such a
        // tail answering a read with a write that was then lost).
        !self.installing
            && self.position.as_ref().is_some_and(|position| position.is_tail)
            && self.commits_locally()
            && self.recorded()
    }

    // ---- applying writes ----

    /// Book-keeping after a write was applied to the table: sequence, client
    /// record, and the copy for the successor.
    fn record_applied(
        &mut self,
        sequence: u64,
        record: ClientRecord,
        forward: Option<Write>,
        effects: &mut impl Effects,
    ) {
        assert_eq!(sequence, self.last_applied + 1, "writes are applied in sequence order");
        self.last_applied = sequence;
        self.clients.remember(record);
        if let Some(write) = forward {
            assert_eq!(write.sequence, sequence, "a write is forwarded as it was applied");
            effects.act(Action::Forward { stream: self.stream, write });
        }
    }

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
        if self.installing {
            return Err(Refusal::new(ErrorCode::ERR_INTERNAL, "writes during a state transfer"));
        }
        let forward = self.forwards();
        let mut result = Ok(());
        for mut write in writes {
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
            // The table keeps the value; a copy goes on only if we forward.
            let value = if forward { write.value.clone() } else { write.value.take() };
            self.applied_epoch = self.applied_epoch.max(write.epoch);
            store.apply(&write.key, value);
            let record = clients::record(write.client_id, write.request_id, write.sequence, write.found);
            self.record_applied(write.sequence, record, forward.then_some(write), effects);
        }
        self.maybe_announce_ready(effects);
        self.publish_commit(effects);
        result
    }

    /// Whether frames on `link` from `sender` are accepted: it is our
    /// current predecessor, and this is the latest link it opened. A link
    /// that a newer one replaced may still deliver frames it carried (the
    /// simulator found an old link's snapshot, delayed, wiping the newer
    /// state transfer from the same predecessor).
    pub fn check_link(&self, sender: &str, link: u64) -> Result<(), Refusal> {
        if self.config.bug == Some(InjectedBug::SkipPredecessorCheck) && self.position.is_some() {
            return Ok(());
        }
        self.check_predecessor(sender)?;
        if link != self.current_link {
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!("link {link} from {sender} was replaced by link {}", self.current_link),
            ));
        }
        Ok(())
    }

    /// Whether `sender` is our current predecessor (writes from anyone else
    /// are refused).
    fn check_predecessor(&self, sender: &str) -> Result<(), Refusal> {
        if self.config.bug == Some(InjectedBug::SkipPredecessorCheck) && self.position.is_some() {
            return Ok(());
        }
        let predecessor = self.position.as_ref().and_then(|position| position.predecessor.as_ref());
        match predecessor {
            Some(predecessor) if predecessor.name == sender => Ok(()),
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
        if hello.receiver != me {
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!("this link is meant for {}, I am {me}", hello.receiver),
            ));
        }
        self.check_predecessor(&hello.sender)?;
        if self.ready_servers.is_empty() {
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                "no ready member: there is no chain to replicate",
            ));
        }
        let skip_checks = self.config.bug == Some(InjectedBug::SkipPredecessorCheck);
        if hello.epoch < self.view_epoch && !skip_checks {
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!(
                    "{}'s view (epoch {}) is older than mine ({})",
                    hello.sender, hello.epoch, self.view_epoch
                ),
            ));
        }
        let joining = !self.lifecycle.holds_chain_state();
        self.current_link += 1;
        Ok(Welcome {
            link: self.current_link,
            last_applied: self.last_applied,
            wants_snapshot: joining || self.installing,
        })
    }

    // ---- state transfer ----

    /// The point to snapshot our table at for a successor, with the client
    /// records; the caller copies the table before giving the node its next
    /// event, and from here on every applied write is forwarded. `None`
    /// while our table is not the chain's state.
    pub fn snapshot_point(&self) -> Option<SnapshotPoint> {
        self.may_replicate().then(|| SnapshotPoint {
            sequence: self.last_applied,
            write_epoch: self.applied_epoch,
            clients: self.clients.all(),
        })
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
        if first && self.lifecycle.holds_chain_state() && chunk.sequence < self.committed {
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
        if first {
            self.installing = true;
            self.stream += 1;
            // The commit point is recomputed for the new history (a joiner's
            // old one would be acked upstream beyond what was sent).
            self.committed = 0;
            self.applied_epoch = 0;
            if !self.lifecycle.holds_chain_state() {
                self.successor_committed = 0;
            }
            effects.act(Action::ReadsRevoked);
            effects.act(Action::HistoryCleared);
            store.clear();
            self.clients.clear();
            self.last_applied = 0;
        } else if !self.installing {
            return Err(Refusal::new(ErrorCode::ERR_INTERNAL, "a snapshot chunk without its start"));
        }
        self.applied_epoch = self.applied_epoch.max(chunk.write_epoch);
        for entry in chunk.entries {
            store.apply(&entry.key, Some(entry.value));
        }
        for record in chunk.clients {
            self.clients.remember(record);
        }
        if chunk.last {
            self.last_applied = chunk.sequence;
            self.installing = false;
            if self.lifecycle == Lifecycle::Joining {
                self.lifecycle = Lifecycle::CatchingUp { promote_at: None };
            }
            self.maybe_announce_ready(effects);
            self.publish_commit(effects);
        }
        Ok(())
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
        match &mut self.lifecycle {
            Lifecycle::CatchingUp { promote_at } => {
                info!("hand-over from {sender}: ready once write {sequence} is applied");
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
    fn maybe_announce_ready(&mut self, effects: &mut impl Effects) {
        if let Lifecycle::CatchingUp { promote_at: Some(sequence) } = self.lifecycle
            && !self.installing
            && self.last_applied >= sequence
        {
            self.lifecycle = Lifecycle::CatchingUp { promote_at: None };
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
        let position = self.position.as_ref()?;
        // Only to a joiner after us by sequence: ready members are ordered
        // by sequence, so one before us would become ready ahead of us.
        let joining_successor = position.successor.as_ref().is_some_and(|member| {
            member.name == successor && !member.readiness.is_ready() && member.sequence > position.me.sequence
        });
        let Lifecycle::Ready { handed_over_to } = &mut self.lifecycle else {
            return None;
        };
        if !position.is_tail
            || !joining_successor
            || handed_over_to.as_deref() == Some(successor)
            || successor_applied < self.last_applied
        {
            return None;
        }
        info!("{successor} has caught up at write {}; handing the tail role over", self.last_applied);
        *handed_over_to = Some(successor.to_owned());
        effects.act(Action::ReadsRevoked);
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
        if !self.config.standalone && !self.lease_valid(now_ms) {
            return Ok(());
        }
        if self.successor().is_none_or(|member| member.name != successor) {
            return Ok(());
        }
        if committed > self.last_applied {
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

    /// Whether writes applied here are committed at once: we are the end of
    /// the chain, or the tail with a joining successor not yet handed over.
    fn commits_locally(&self) -> bool {
        if self.config.standalone {
            return true;
        }
        match self.position.as_ref().and_then(|position| position.successor.as_ref()) {
            None => true,
            Some(successor) => {
                !successor.readiness.is_ready()
                    && self.lifecycle.handed_over_to() != Some(successor.name.as_str())
            }
        }
    }

    /// Raises the commit point to what is now known committed, and says so.
    /// Writes are committed here on our own only in the epoch the chain
    /// node records (see [`CommitRecord`]); until then they wait.
    fn publish_commit(&mut self, effects: &mut impl Effects) {
        let early = self.config.bug == Some(InjectedBug::CommitEarly)
            && self.position.as_ref().is_some_and(|position| position.is_head);
        let committed = if early {
            self.last_applied
        } else if self.commits_locally() {
            if self.recorded() { self.last_applied } else { self.committed }
        } else {
            self.successor_committed.min(self.last_applied)
        };
        if committed > self.committed {
            assert!(committed <= self.last_applied, "the commit point never passes what was applied");
            self.committed = committed;
            effects.act(Action::Committed(committed));
        }
    }

    /// Whether the chain node records the epoch we commit in (always so
    /// standalone).
    fn recorded(&self) -> bool {
        self.config.standalone
            || (self.record.epoch == self.view_epoch && self.applied_epoch <= self.view_epoch)
    }

    /// The record the chain node should hold, if we are the one to write
    /// it: the tail (the last ready member, which commits, or handed the
    /// tail role to a joiner that commits in the same epoch). It names our
    /// view's epoch and its ready members. Nobody else writes it: a joining
    /// or recovering server's table is not the chain's, and naming it would
    /// let it restart the chain from that table (the simulator found a
    /// recovering server recording itself and then restarting the chain
    /// from its old table).
    fn wanted_record(&self) -> Option<CommitRecord> {
        let is_tail = self.position.as_ref().is_some_and(|position| position.is_tail);
        if !is_tail || !matches!(self.lifecycle, Lifecycle::Ready { .. }) || self.installing {
            return None;
        }
        let wanted = CommitRecord { epoch: self.view_epoch, servers: self.ready_servers.clone() };
        (wanted != self.record).then_some(wanted)
    }

    /// Asks for the chain node's record to be written, when it is not what
    /// we commit under (again at every tick until it is).
    fn request_record(&self, effects: &mut impl Effects) {
        if let Some(record) = self.wanted_record() {
            effects.act(Action::RecordCommit(record));
        }
    }

    // ---- membership ----

    /// A new view of the chain from ZooKeeper (`me`: our node name). Views
    /// older than the one we act on are ignored.
    pub fn view_changed(&mut self, view: &ChainView, me: &str, effects: &mut impl Effects) {
        if self.config.standalone || view.epoch < self.view_epoch {
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
        self.lifecycle = match (&self.position, std::mem::replace(&mut self.lifecycle, Lifecycle::Outside)) {
            (None, _) => Lifecycle::Outside,
            (Some(position), Lifecycle::Ready { handed_over_to }) if position.me.readiness.is_ready() => {
                // A hand-over stands only while that joiner is our successor.
                let successor = position.successor.as_ref().map(|member| member.name.as_str());
                Lifecycle::Ready {
                    handed_over_to: handed_over_to.filter(|name| Some(name.as_str()) == successor),
                }
            }
            (Some(position), _) if position.me.readiness.is_ready() => {
                Lifecycle::Ready { handed_over_to: None }
            }
            (Some(_), Lifecycle::Outside) => Lifecycle::Joining,
            (Some(_), Lifecycle::Ready { .. }) => Lifecycle::CatchingUp { promote_at: None },
            (Some(_), other) => other,
        };
        if matches!(self.lifecycle, Lifecycle::Ready { .. }) {
            self.recoverable = true;
        }
        if self.forwards() && !was_forwarding {
            self.stream += 1;
        }
        let successor = self.successor().map(|member| member.name.clone());
        if successor != old_successor {
            match self.successor() {
                Some(member) => info!("successor is now {member}"),
                None => info!("no successor now"),
            }
        }
        let role = self.role();
        if role != old_role {
            match &self.position {
                Some(position) if position.me.readiness.is_ready() => {
                    info!(
                        "chain role: {} (position {} of {})",
                        role.name(),
                        position.index + 1,
                        position.chain_length
                    )
                }
                _ => info!("chain role: {}", role.name()),
            }
        }
        if was_readable && !self.readable() {
            effects.act(Action::ReadsRevoked);
        }
        self.request_record(effects);
        self.publish_commit(effects);
    }

    /// The session is confirmed alive until `until_ms`.
    pub fn lease_confirmed(&mut self, until_ms: u64) {
        self.lease_until_ms = self.lease_until_ms.max(until_ms);
    }

    /// The time is `now_ms`: a lease that ran out ends the commit waits; a
    /// commit record not written yet is asked for again.
    pub fn tick(&mut self, now_ms: u64, effects: &mut impl Effects) {
        if !self.config.standalone && self.lease_until_ms != 0 && !self.lease_valid(now_ms) {
            self.lease_until_ms = 0;
            warn!("the lease on the ZooKeeper session ran out; not serving until it is confirmed");
            effects.act(Action::LeaseLost);
        }
        self.request_record(effects);
    }

    pub fn lease_valid(&self, now_ms: u64) -> bool {
        self.config.standalone || now_ms < self.lease_until_ms
    }

    pub fn lease_until_ms(&self) -> u64 {
        self.lease_until_ms
    }

    /// Stop serving at once: our session is gone or unconfirmed.
    pub fn fence(&mut self, reason: &str, effects: &mut impl Effects) {
        if self.position.is_some() {
            warn!("fenced: {reason}");
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
        self.clients.clear();
        self.recoverable = false;
        self.installing = false;
        self.last_applied = 0;
        self.applied_epoch = 0;
        self.committed = 0;
        self.successor_committed = 0;
        self.view_epoch = 0;
        self.stream += 1;
        effects.act(Action::HistoryCleared);
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

    // ---- queries ----

    /// Applied writes are forwarded: we have a successor.
    pub fn forwards(&self) -> bool {
        self.successor().is_some()
    }

    /// We may replicate to a successor: a member whose table is the live
    /// chain's state. A joiner that caught up holds a prefix of the chain's
    /// history only while a chain lives: once no member is ready, a
    /// recovering successor may hold more, and a snapshot from us would wipe
    /// it (the simulator found a caught-up joiner overwriting the one server
    /// named in the commit record after the chain's last member expired).
    pub fn may_replicate(&self) -> bool {
        self.position.is_some()
            && self.lifecycle.holds_chain_state()
            && !self.installing
            && (!self.ready_servers.is_empty() || self.config.standalone)
    }

    pub fn successor(&self) -> Option<&Member> {
        self.position.as_ref().and_then(|position| position.successor.as_ref())
    }

    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// The current run of forwarded writes (see the field).
    pub fn stream(&self) -> u64 {
        self.stream
    }

    pub fn view_epoch(&self) -> u64 {
        self.view_epoch
    }

    pub fn progress(&self) -> Progress {
        Progress { applied: self.last_applied, committed: self.committed }
    }

    pub fn client_records(&self) -> usize {
        self.clients.len()
    }

    pub fn role(&self) -> Role {
        if self.config.standalone {
            return Role::Standalone;
        }
        match &self.position {
            None => Role::Fenced,
            Some(position) if !position.me.readiness.is_ready() => Role::Joining,
            Some(position) => match (position.is_head, position.is_tail) {
                (true, true) => Role::HeadAndTail,
                (true, false) => Role::Head,
                (false, true) => Role::Tail,
                (false, false) => Role::Middle,
            },
        }
    }
}
