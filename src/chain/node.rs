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

use std::collections::VecDeque;

use super::clients::ClientRecords;
use super::durable::{Durable, SyncedReport};
use super::effects::{Action, Effects, Store};
use super::eviction::Evictions;
use super::expiry::Deadlines;
use super::injected::{self, Check};
use super::lease::ReadLease;
use super::lifecycle::Lifecycle;
use super::rejoin::{Recent, RejoinOffer, WriteId};
use super::uncommitted::Uncommitted;
use crate::limits::{CLIENT_RECORD_BYTES, ENTRY_OVERHEAD_BYTES};
use crate::proto::{ClientRecord, ErrorCode, SnapshotChunk, Write};
use crate::view::{CommitRecord, Member, Position};

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

    pub(super) fn unavailable() -> Refusal {
        Refusal::new(ErrorCode::ERR_UNAVAILABLE, "no confirmed ZooKeeper session; not serving")
    }
}

/// Bug `cas-at-tail` only: a write applied as head, as (sequence, key,
/// the key's value before it).
pub(super) type Undo = (u64, String, Option<Vec<u8>>);

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// No chain: every write commits at once and every read is allowed.
    pub standalone: bool,
    /// The chain's path in ZooKeeper (empty standalone): with our node
    /// name, it opens every log line of the node.
    pub chain_path: String,
    /// Clients whose latest write is remembered for exactly-once retries.
    pub client_records_max: usize,
    /// A safety check switched off, a deliberate bug (testing the
    /// checkers only; see [`Check`]).
    pub bug: Option<Check>,
    /// This server's id in member data and commit records (not 0).
    pub server_id: u64,
    /// `--max-memory`: as the head, refuse a put that would take
    /// [`ChainNode::used_memory`] past it (`None`: no limit). Only the head
    /// decides, before it sequences the write; every replica applies what it
    /// is sent, whatever its own limit, so the replicas stay identical.
    pub memory_bytes_max: Option<u64>,
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
    /// Unless our history can be resumed (see `rejoin`).
    pub rejoin: Option<RejoinOffer>,
}

/// Where a snapshot for a successor is taken (see
/// [`ChainNode::snapshot_point`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotPoint {
    pub sequence: u64,
    /// The newest `Write.epoch` among the writes it holds.
    pub write_epoch: u64,
    pub clients: Vec<ClientRecord>,
    /// Every expiring key's deadline (see `expiry`).
    pub deadlines: Vec<(String, u64)>,
    /// The generation of the table (see [`ChainNode::generation`]): a
    /// snapshot carries its history's generation, so a table installed by
    /// one is never without one (swarm testing found a joiner whose session
    /// ended right after its snapshot restart the chain from a table of
    /// "generation 0", as if it held none of the chain's writes).
    pub generation: u64,
    /// The name of the write at `sequence`, if known (see `rejoin`).
    pub last: Option<WriteId>,
}

impl SnapshotPoint {
    /// A chunk of this snapshot, without its entries, client records and
    /// deadlines (which the sender spreads over its chunks).
    pub fn chunk_header(&self, total_keys: u64) -> SnapshotChunk {
        let mut chunk = SnapshotChunk::new();
        chunk.sequence = self.sequence;
        chunk.write_epoch = self.write_epoch;
        chunk.generation = self.generation;
        chunk.total_keys = total_keys;
        if let Some(last) = self.last {
            (chunk.last_origin_epoch, chunk.last_digest) = (last.origin, last.digest);
        }
        chunk
    }
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
    pub const ALL: [Role; 7] = [
        Role::Standalone,
        Role::Head,
        Role::Middle,
        Role::Tail,
        Role::HeadAndTail,
        Role::Joining,
        Role::Fenced,
    ];

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
    pub(super) config: NodeConfig,
    /// Last sequence number applied to the table.
    pub(super) last_applied: u64,
    /// The newest view epoch in which a write applied here was accepted by
    /// its head (`Write.epoch`). We commit on our own only once our view is
    /// at least that new: a head with a newer view may have left out a
    /// member that our older view (and the commit record written in it)
    /// still names (the simulator found a tail cut off from ZooKeeper
    /// committing writes of a new head, and the old head, still named,
    /// restarting the chain without them).
    pub(super) applied_epoch: u64,
    /// Highest sequence number known applied by the tail (0 after a reset).
    pub(super) committed: u64,
    /// Highest commit point our successor reported.
    pub(super) successor_committed: u64,
    pub(super) clients: ClientRecords,
    pub(super) lifecycle: Lifecycle,
    /// Our node name in ZooKeeper, once registered.
    pub(super) name: Option<String>,
    /// Our place in the latest view; `None` when we are not a member.
    pub(super) position: Option<Position>,
    /// Epoch of the latest view we acted on; older views are ignored, and a
    /// link from a predecessor with an older view is refused.
    pub(super) view_epoch: u64,
    /// The latest link accepted from a predecessor; frames on any other
    /// link are refused.
    pub(super) current_link: u64,
    /// The chain node's commit record in the latest view.
    pub(super) record: CommitRecord,
    /// The server ids of the ready members in the latest view (empty: no
    /// live chain).
    pub(super) ready_servers: Vec<u64>,
    /// Addresses of the head and tail in the latest view, named in
    /// refusals so a client can see where to go.
    pub(super) head_address: Option<String>,
    pub(super) tail_address: Option<String>,
    /// A state transfer into our table is under way: it holds part of a
    /// history. Any member may be sent one (a new predecessor whose Sent
    /// list cannot cover us), so this is not part of the lifecycle.
    pub(super) installing: bool,
    /// Our table is a former ready member's complete history up to
    /// `last_applied`: kept through fencing, so a chain whose members all
    /// lost their sessions can restart from the longest one.
    pub(super) recoverable: bool,
    /// The ZooKeeper session is known alive until this time (ms on the
    /// caller's clock); 0 = no lease.
    pub(super) lease_until_ms: u64,
    /// Times this node was fenced while in a chain (`stats`' `fencings`):
    /// how tests and operators learn of a fencing without reading the log.
    pub(super) fencings: u64,
    /// Numbers the unbroken runs of forwarded writes: a new one begins
    /// when we start forwarding again after a time without a successor
    /// (writes applied meanwhile were not forwarded) and when our table's
    /// history is replaced (a state transfer began, or a reset). Forwarded
    /// writes carry it, so the sender can tell a new run, which only a
    /// snapshot can bridge, from a gap within one (a bug of ours).
    pub(super) stream: u64,
    /// The chain generation our table's history belongs to (see
    /// [`CommitRecord`]): set when we start a chain, taken from the chain
    /// node's record while our table is the live chain's, 0 after a reset.
    pub(super) generation: u64,
    /// The generation of the chain we asked to be announced ready as its
    /// first member ([`ChainNode::starting_chain`]); ours once the view
    /// shows us ready without a predecessor.
    pub(super) starting_generation: Option<u64>,
    /// Time (ms) from which the tail may write its commit point into the
    /// record again: at most every
    /// [`RECORD_PROGRESS_INTERVAL_MS`](crate::limits::RECORD_PROGRESS_INTERVAL_MS), so a busy
    /// chain does not write ZooKeeper at the rate of its writes.
    pub(super) record_progress_due_ms: u64,
    /// Bug `cas-at-tail` only: (sequence, key, value before) of the writes
    /// applied here as head, oldest first (see `writes.rs`).
    pub(super) undo: Option<VecDeque<Undo>>,
    /// Every expiring key's deadline, kept at every member (see `expiry`).
    pub(super) deadlines: Deadlines,
    /// `--data-dir`: every applied write is logged (see `durable`), and
    /// nothing counts committed here before it is on disk.
    pub(super) durable: bool,
    /// Durable only: the last write known on disk in the current history.
    pub(super) synced: u64,
    /// Durable only: what our predecessor last reported of the disks before
    /// us (see [`SyncedReport`]).
    pub(super) upstream_synced: SyncedReport,
    /// Durable only: the keys of writes applied and not yet committed.
    pub(super) uncommitted: Uncommitted,
    /// Numbers our table's histories (raised whenever it is cleared), so a
    /// disk's report of an older history is not taken for this one.
    pub(super) history: u64,
    /// When we last asked for a neighbour's removal (a guard rail), and
    /// when we last heard from our successor.
    pub(super) evictions: Evictions,
    /// The read lease our predecessor's heartbeats renew (see `lease`).
    pub(super) read_lease: ReadLease,
    /// Durable only: the name of our last write, if known, and the writes
    /// we applied last, so that a member restarting on its disk can rejoin
    /// behind us without a state transfer (see `rejoin`).
    pub(super) last_written: Option<WriteId>,
    pub(super) recent: Recent,
    /// Times we rejoined by resuming our own table (see `rejoin`).
    pub(super) rejoins_resumed: u64,
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
            fencings: 0,
            stream: 0,
            generation: 0,
            starting_generation: None,
            record_progress_due_ms: 0,
            undo: None,
            deadlines: Deadlines::default(),
            durable: false,
            synced: 0,
            upstream_synced: SyncedReport::default(),
            uncommitted: Uncommitted::default(),
            history: 0,
            evictions: Evictions::default(),
            read_lease: ReadLease::default(),
            last_written: None,
            recent: Recent::default(),
            rejoins_resumed: 0,
        }
    }

    // ---- client requests (client writes are in `writes.rs`) ----

    /// The memory our replica holds, as `--max-memory` counts it: keys and
    /// values, plus the measured overhead of each key and client record
    /// (see [`ENTRY_OVERHEAD_BYTES`] and [`CLIENT_RECORD_BYTES`]).
    pub fn used_memory(&self, store: &impl Store) -> u64 {
        store.bytes_stored()
            + store.key_count() * ENTRY_OVERHEAD_BYTES
            + self.clients.len() as u64 * CLIENT_RECORD_BYTES
            + self.deadlines.used_memory()
    }

    /// Whether a read may be answered here now: we are the committing tail
    /// (or standalone), no state transfer is under way, and both leases
    /// hold (the ZooKeeper session's, and our predecessor's read lease).
    pub fn check_may_read(&self, now_ms: u64) -> Result<(), Refusal> {
        if self.standalone() {
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
        if !self.read_lease_holds(now_ms) {
            return Err(Refusal::new(
                ErrorCode::ERR_UNAVAILABLE,
                "no read lease from our predecessor (its heartbeats stopped); not answering reads",
            ));
        }
        Ok(())
    }

    /// Reads are ours to answer (lease aside): we are the tail, we still
    /// commit on our own (no hand-over), and our table is complete.
    pub fn readable(&self) -> bool {
        if self.standalone() {
            return true;
        }
        if !self.enforces(Check::ReadAtTail) && self.position.is_some() {
            return !self.installing;
        }
        // A tail waiting for its commit record holds writes it applied and
        // did not commit: it may not show them (the simulator found such a
        // tail answering a read with a write that was then lost).
        !self.installing
            && matches!(self.lifecycle, Lifecycle::Ready { .. })
            && self.position.as_ref().is_some_and(|position| position.is_tail)
            && self.commits_locally()
            && self.requires(Check::CommitRecord, self.recorded())
    }

    // ---- applying writes ----

    /// Book-keeping after a write was applied to the table: sequence, client
    /// record, and the copies for the log (if durable) and the successor
    /// (if we forward); `write` is given when either wants it.
    pub(super) fn record_applied(
        &mut self,
        sequence: u64,
        record: ClientRecord,
        write: Option<Write>,
        effects: &mut impl Effects,
    ) {
        assert_eq!(sequence, self.last_applied + 1, "writes are applied in sequence order");
        self.last_applied = sequence;
        self.clients.remember(record);
        let Some(write) = write else { return };
        assert_eq!(write.sequence, sequence, "a write is logged and forwarded as it was applied");
        if !self.durable {
            // Given only to be forwarded: no copy on the in-memory path.
            effects.act(Action::Forward { stream: self.stream, write });
            return;
        }
        let copy = self.forwards().then(|| write.clone());
        self.note_written(&write);
        self.log_durable(Durable::Write { generation: self.generation, write }, effects);
        if let Some(write) = copy {
            effects.act(Action::Forward { stream: self.stream, write });
        }
    }

    /// Whether writes applied here are committed at once: we are the end of
    /// the chain, or the tail with a joining successor not yet handed over.
    pub(super) fn commits_locally(&self) -> bool {
        if self.standalone() {
            return true;
        }
        match self.position.as_ref().and_then(|position| position.successor.as_ref()) {
            None => true,
            Some(successor) => {
                let handed_over = self.lifecycle.handed_over_to() == Some(successor.name.as_str())
                    && self.enforces(Check::HandOverStopsCommits);
                !successor.readiness.is_ready() && !handed_over
            }
        }
    }

    /// Raises the commit point to what is now known committed, and says so.
    /// Writes are committed here on our own only in the epoch the chain
    /// node records (see [`CommitRecord`]); until then they wait.
    pub(super) fn publish_commit(&mut self, effects: &mut impl Effects) {
        let early = !self.enforces(Check::CommitAtTail)
            && self.position.as_ref().is_some_and(|position| position.is_head);
        let committed = if early {
            self.last_applied
        } else if self.commits_locally() {
            let committed = if self.recorded() { self.last_applied } else { self.committed };
            // Durable: not before every member before us holds it on disk.
            if self.durable && self.enforces(Check::UpstreamSynced) {
                committed.min(self.upstream_synced_now())
            } else {
                committed
            }
        } else {
            self.successor_committed.min(self.last_applied)
        };
        // Durable: not before it is on disk here (and, through the acks,
        // at every member after us).
        let committed = if self.durable && self.enforces(Check::SyncedCommit) {
            committed.min(self.synced)
        } else {
            committed
        };
        if committed > self.committed {
            assert!(committed <= self.last_applied, "the commit point never passes what was applied");
            self.committed = committed;
            if self.durable {
                self.uncommitted.prune(committed);
            }
            effects.act(Action::Committed(committed));
        }
    }

    /// Whether the chain node records the epoch and the generation we
    /// commit in (always so standalone): no write is committed in a
    /// generation that the record does not show yet.
    pub(super) fn recorded(&self) -> bool {
        self.standalone()
            || (self.requires(Check::CommitRecord, self.record.epoch == self.view_epoch)
                && self.requires(Check::Generation, self.record.generation == self.generation)
                && self.requires(Check::AppliedEpoch, self.applied_epoch <= self.view_epoch))
    }

    /// The one hook of the injected bugs: whether `check` is enforced (it
    /// is, unless its bug is injected; see [`Check`]).
    pub fn enforces(&self, check: Check) -> bool {
        injected::enforced(self.config.bug, check)
    }

    /// Whether a condition that `check` demands is met: `holds`, or the
    /// check is switched off.
    pub(super) fn requires(&self, check: Check, holds: bool) -> bool {
        holds || !self.enforces(check)
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
            && self.requires(Check::ChainState, self.lifecycle.holds_chain_state())
            && !self.installing
            && self.requires(Check::ChainState, !self.ready_servers.is_empty() || self.standalone())
    }

    pub fn successor(&self) -> Option<&Member> {
        self.position.as_ref().and_then(|position| position.successor.as_ref())
    }

    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    /// The current run of forwarded writes (see the field).
    pub fn stream(&self) -> u64 {
        self.stream
    }

    /// Who is speaking, for the node's log lines: our node name (once
    /// registered) and chain, as "node0000000003 in /chain".
    pub fn identity(&self) -> String {
        format!("{} in {}", self.name.as_deref().unwrap_or("(unregistered)"), self.config.chain_path)
    }

    /// No chain: every write commits at once, every read is allowed. The
    /// lifecycle says so (a standalone node never leaves that state).
    pub fn standalone(&self) -> bool {
        self.lifecycle == Lifecycle::Standalone
    }

    /// Our node name in ZooKeeper, once registered.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The commit record as our view last showed it.
    pub fn commit_record(&self) -> &CommitRecord {
        &self.record
    }

    pub fn view_epoch(&self) -> u64 {
        self.view_epoch
    }

    pub fn progress(&self) -> Progress {
        Progress { applied: self.last_applied, committed: self.committed }
    }

    /// The chain generation of our table's history (0: none yet).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Times fenced while in a chain, since the process started.
    pub fn fencings(&self) -> u64 {
        self.fencings
    }

    /// Tests build chains directly from views in which every member is
    /// ready: as if each had caught up and been handed the tail role by
    /// the predecessor `giver`.
    #[cfg(test)]
    pub fn assume_handed_over_by(&mut self, giver: &str) {
        let handed_over =
            Some(super::lifecycle::HandOver { giver: giver.to_owned(), epoch: self.view_epoch });
        self.lifecycle = Lifecycle::CatchingUp { promote_at: None, handed_over };
    }

    #[cfg(test)]
    pub fn client_records(&self) -> usize {
        self.clients.len()
    }

    pub fn role(&self) -> Role {
        if self.standalone() {
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
