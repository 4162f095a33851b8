//! One server's replica of the chain: the table, and the chain protocol
//! ([`ChainNode`], pure) run under one lock, with the threads' side of it:
//! the replication queue, the commit waits, and lock-free copies of what
//! the read path needs (may we read, until when is the lease good).
//!
//! Every write, from a client at the head or from the predecessor, goes
//! through the node under the lock, which fixes the order in which writes
//! are applied and queued for the successor (the C original forwarded
//! outside its lock and could reorder replicas). The node decides; this
//! shell carries out its [`Action`]s: it queues forwarded writes, settles
//! commit waits (after releasing the lock), wakes the ack writer and the
//! membership thread.
//!
//! Threads around it: connection threads call [`Replica::client_write`]
//! (then [`Replica::await_commit`]) and [`Replica::read_guard`] (in
//! `reads.rs`, with the lock-free check of both leases); the
//! replication threads run their link ends' decisions through `links.rs`
//! and the sender drains [`Replica::outbox`]; the membership thread
//! publishes views, leases and fences.

pub mod commits;
pub mod durable;
mod expiry;
pub mod history;
mod links;
pub mod migration;
pub mod outbox;
mod reads;
mod table_store;
pub mod transfers;

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::warn;
use parking_lot::{Condvar, Mutex, MutexGuard};

pub use crate::chain::ReadKeys;
use crate::chain::bootstrap::Holding;
use crate::chain::eviction::Evidence;
use crate::chain::{
    Action, AppliedWrite, ChainNode, Check, Durable, Effects, NodeConfig, Outcome, Progress, Refusal, Role,
    WriteOp,
};
use crate::coord::membership::{Member, MembershipRequests, Removal};
use crate::proto::ErrorCode;
use crate::store::table::Table;
use crate::view::{ChainView, Position, Readiness};
pub use commits::commit_result;
use commits::{Commits, OnSettled, Settlements};
pub use expiry::wall_ms;
use history::{History, HistoryLimits, Recorded};
pub use links::{LinkStart, Removals, Snapshot};
use migration::Markers;
use outbox::Outbox;
use table_store::TableStore;
use transfers::StateTransfers;

/// A client write applied at the head: where it is in the history, and the
/// answer its client gets once it is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReceipt {
    /// The write's sequence number (a declined write: the last one it saw).
    pub sequence: u64,
    /// The commit generation it was applied in (see [`Commits::generation`]).
    pub generation: u64,
    /// What its client is told once `sequence` is committed.
    pub outcome: Outcome,
}

impl WriteReceipt {
    /// The key existed before (`put`, `del`).
    pub fn found(&self) -> bool {
        matches!(self.outcome, Outcome::Applied { found: true, .. })
    }
}

/// Limits of the replica: the replication path, the client records and
/// the memory it may fill.
#[derive(Clone, Debug)]
pub struct ReplicationLimits {
    /// Applied writes waiting for the replication sender. Writers wait
    /// (without holding any lock) while it is this full.
    pub queue_max: usize,
    /// Writes forwarded and not yet committed. The sender stops draining
    /// the queue while it is this long, which pushes back on writers.
    pub sent_max: usize,
    /// How long a client write waits for its commit before the client is
    /// told to retry.
    pub commit_timeout: Duration,
    /// Clients whose latest write is remembered for exactly-once retries;
    /// past this the oldest tenth is forgotten (a retry from a client that
    /// long idle could then be applied twice).
    pub client_records_max: usize,
    /// Threads that may apply a write at the same moment (connection threads
    /// plus the replication receiver); sizes the queue's reserve.
    pub writers_max: usize,
    /// `--max-memory`: as the head, refuse puts that would take the
    /// replica's memory past it (see [`NodeConfig::memory_bytes_max`]);
    /// `None`: no limit.
    pub memory_bytes_max: Option<u64>,
    /// The watch history every replica keeps (see [`history`]).
    pub history: HistoryLimits,
}

impl Default for ReplicationLimits {
    fn default() -> Self {
        ReplicationLimits {
            queue_max: crate::limits::REPLICATION_QUEUE_MAX_DEFAULT,
            sent_max: crate::limits::SENT_LIST_MAX_DEFAULT,
            commit_timeout: Duration::from_millis(crate::limits::COMMIT_TIMEOUT_MS_DEFAULT),
            client_records_max: crate::limits::CLIENT_RECORDS_MAX_DEFAULT,
            writers_max: crate::limits::CLIENTS_MAX_DEFAULT + 1,
            memory_bytes_max: None,
            history: HistoryLimits::default(),
        }
    }
}

/// Whether a commit point moved by a step wakes the ack writer (the thread
/// that reports commits to our predecessor).
#[derive(Clone, Copy, PartialEq, Eq)]
enum AckWriter {
    Wake,
    /// The caller is the replication receiver, which reports the commit
    /// itself right away: at the tail every applied batch commits, and
    /// waking another thread to send each ack cost a context switch per
    /// batch.
    CallerAcks,
}

/// Carries out a node's actions while its lock is held; what must wait for
/// the lock to be released (running commit callbacks) is kept in
/// `settlements`.
struct Carry<'a> {
    replica: &'a Replica,
    /// The usual one (a commit), kept out of a `Vec` so a write costs no
    /// allocation for it; `more` holds the rare others (fencing, reset).
    settlements: Option<Settlements<'a>>,
    more: Vec<Settlements<'a>>,
    committed: Option<u64>,
    /// The writes applied in this step, for the watch history.
    recorded: Vec<Recorded>,
}

impl<'a> Carry<'a> {
    fn settle(&mut self, settlements: Settlements<'a>) {
        match self.settlements {
            None => self.settlements = Some(settlements),
            Some(_) => self.more.push(settlements),
        }
    }
}

impl Effects for Carry<'_> {
    fn act(&mut self, action: Action) {
        let replica = self.replica;
        match action {
            Action::Forward { stream, write } => replica.outbox.push(stream, write),
            Action::Committed(sequence) => self.committed = Some(sequence),
            Action::ReadsRevoked => {
                replica.read_epoch.fetch_add(1, Ordering::SeqCst);
            }
            Action::AbandonWaits => self.settle(replica.commits.abandon_all()),
            Action::HistoryCleared => {
                *replica.progress.lock() = Progress::default();
                self.committed = None;
                self.recorded.clear();
                replica.history.clear();
                self.settle(replica.commits.reset());
                replica.outbox.clear();
            }
            Action::AnnounceReady => replica.request_membership(|requests| requests.announce_ready = true),
            Action::RecordCommit(record) => {
                replica.request_membership(|requests| requests.record = Some(record))
            }
            Action::Reregister(reason) => {
                replica.request_membership(|requests| requests.reregister = Some(reason))
            }
            Action::LeaseLost => self.settle(replica.commits.expire(Instant::now(), false)),
            Action::RemoveMember { name, evidence } => {
                replica.request_membership(|requests| requests.remove = Some(Removal { name, evidence }))
            }
        }
    }

    fn persist(&mut self, history: u64, item: Durable) {
        if let Some(disk) = &self.replica.disk {
            disk.log(history, item);
        }
    }

    fn applied(&mut self, write: AppliedWrite<'_>) {
        if self.replica.history.keeps_writes() {
            self.recorded.push(Recorded::new(&write));
        }
    }
}

pub struct Replica {
    /// The data.
    pub table: Table,
    /// No chain: every write commits at once and every read is allowed.
    standalone: bool,
    /// The protocol. Every event goes through it under this lock.
    node: Mutex<ChainNode>,
    /// Published copy of the progress, so the replication threads that
    /// wait on it do not contend with the write path's lock.
    progress: Mutex<Progress>,
    /// Notified when the published commit point moves (not when only
    /// `applied` does: the ack writer waits on it, and a middle server's
    /// applied-only progress is worth nothing upstream but an extra frame
    /// and wake-up per batch at both ends).
    commit_changed: Condvar,
    /// The commit point and the client writes waiting for it.
    commits: Commits,
    /// The replication queue: applied writes, in sequence order, for the
    /// sender thread. Filled under the node's lock, never blocking.
    outbox: Outbox,
    /// The node forwards applied writes (it has a successor). Read without
    /// the lock by writers waiting for room in the queue.
    forwarding: AtomicBool,
    /// The node allows reads (lease aside); published after every event so
    /// reads need not take the node's lock.
    readable: AtomicBool,
    /// Some key has a deadline: reads must check it (see `expiry`).
    expiring: AtomicBool,
    /// Bumped whenever reads may have been revoked; a read checks it
    /// before and after touching the table.
    read_epoch: AtomicU64,
    /// The node's lease, as milliseconds since `started` (0 = none).
    lease_until_ms: AtomicU64,
    /// The node's read lease from its predecessor (see `chain::lease`), as
    /// milliseconds since `started`; `u64::MAX` without a predecessor.
    read_lease_until_ms: AtomicU64,
    /// Neighbours this server removed, by kind (`stats`).
    pub removals: Removals,
    started: Instant,
    /// Writes forwarded and not yet committed (reported by the sender).
    sent_list_len: AtomicU64,
    /// What the membership thread is asked to do, and its wake-up.
    membership_requests: Mutex<MembershipRequests>,
    membership_wake: Sender<()>,
    /// Our id in ZooKeeper member data and commit records: random, chosen
    /// at start, kept through fencing.
    server_id: u64,
    pub limits: ReplicationLimits,
    /// State transfers sent and received, for metrics.
    pub transfers: StateTransfers,
    /// `--data-dir`: the log and snapshots (see `durable`).
    disk: Option<durable::Disk>,
    /// Recent writes and the commit point, for watchers.
    pub history: History,
    /// Links refused or closed for a failed peer-secret proof (`stats`).
    pub peer_auth_failures: AtomicU64,
    /// The migration pause markers applied here (see `migration`).
    pub markers: std::sync::Arc<Markers>,
    /// Source head of a migration: writes to the moving slots since its
    /// snapshot; `tapping` says whether to look (one load per write).
    tap: Mutex<Option<migration::Tap>>,
    tapping: AtomicBool,
    /// Target head of a migration: the stream's attempts (one importer for
    /// every link, so a stale source's older attempt is refused).
    pub importer: Mutex<Option<crate::chain::slot_gate::Importer>>,
}

impl Replica {
    /// A replica with `stripes` table stripes. `membership_wake` receives a
    /// message when the node has asked something of the membership thread
    /// (see [`Replica::take_membership_requests`]).
    pub fn new(
        stripes: usize,
        standalone: bool,
        limits: ReplicationLimits,
        membership_wake: Sender<()>,
    ) -> Replica {
        let chain_path = if standalone { "" } else { "/chain" };
        Replica::with_bug(stripes, chain_path, limits, membership_wake, None)
    }

    /// A replica of the chain at `chain_path` (empty: standalone) whose
    /// protocol has `bug` switched on (testing the checkers), if any.
    pub fn with_bug(
        stripes: usize,
        chain_path: &str,
        limits: ReplicationLimits,
        membership_wake: Sender<()>,
        bug: Option<Check>,
    ) -> Replica {
        if let Some(bug) = bug {
            warn!("protocol bug {} switched on: NOT linearizable (testing only)", bug.bug_name());
        }
        // The queue has room beyond `queue_max` for writers that passed the
        // admission check at the same time (one write per connection thread,
        // one batch for the receiver), so enqueueing under the lock never
        // blocks.
        let capacity = limits.queue_max + limits.writers_max + crate::limits::REPLICATION_BATCH_MAX;
        let server_id = RandomState::new().hash_one(std::process::id()).max(1);
        let standalone = chain_path.is_empty();
        let config = NodeConfig {
            standalone,
            chain_path: chain_path.to_owned(),
            client_records_max: limits.client_records_max,
            bug,
            server_id,
            memory_bytes_max: limits.memory_bytes_max,
        };
        Replica {
            table: Table::new(stripes),
            standalone,
            node: Mutex::new(ChainNode::new(config)),
            progress: Mutex::new(Progress::default()),
            commit_changed: Condvar::new(),
            commits: Commits::new(limits.writers_max),
            outbox: Outbox::new(capacity),
            forwarding: AtomicBool::new(false),
            readable: AtomicBool::new(standalone),
            expiring: AtomicBool::new(false),
            read_epoch: AtomicU64::new(0),
            lease_until_ms: AtomicU64::new(0),
            read_lease_until_ms: AtomicU64::new(u64::MAX),
            removals: Removals::default(),
            started: Instant::now(),
            sent_list_len: AtomicU64::new(0),
            membership_requests: Mutex::new(MembershipRequests::default()),
            membership_wake,
            transfers: StateTransfers::default(),
            history: History::new(limits.history),
            peer_auth_failures: AtomicU64::new(0),
            markers: std::sync::Arc::default(),
            tap: Mutex::new(None),
            tapping: AtomicBool::new(false),
            importer: Mutex::new(None),
            server_id,
            limits,
            disk: None,
        }
    }

    /// The table as the node's store.
    fn store(&self) -> TableStore<'_> {
        TableStore { table: &self.table, markers: &self.markers }
    }

    fn request_membership(&self, request: impl FnOnce(&mut MembershipRequests)) {
        request(&mut self.membership_requests.lock());
        // One pending wake-up is enough: the thread takes every request.
        let _ = self.membership_wake.try_send(());
    }

    /// Milliseconds on the node's clock.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Runs `event` on the node under its lock, carries out its actions,
    /// publishes what the lock-free paths read, releases the lock, and then
    /// settles the commit waits it ended.
    fn step<T>(
        &self,
        ack_writer: AckWriter,
        event: impl FnOnce(&mut ChainNode, &mut TableStore<'_>, &mut Carry<'_>) -> T,
    ) -> T {
        let mut carry = Carry {
            replica: self,
            settlements: None,
            more: Vec::new(),
            committed: None,
            recorded: Vec::new(),
        };
        let mut node = self.node.lock();
        let result = event(&mut node, &mut self.store(), &mut carry);
        self.publish(&node, &mut carry, ack_writer);
        drop(node);
        for settlements in carry.settlements.into_iter().chain(carry.more) {
            settlements.deliver();
        }
        result
    }

    /// Publishes the node's state for the paths that do not take its lock.
    fn publish<'a>(&'a self, node: &MutexGuard<'_, ChainNode>, carry: &mut Carry<'a>, ack_writer: AckWriter) {
        // Stored only when they change: a store is a full fence, and these
        // change only with the view.
        let (forwards, readable) = (node.forwards(), node.readable());
        if self.forwarding.load(Ordering::Relaxed) != forwards {
            self.forwarding.store(forwards, Ordering::SeqCst);
        }
        if self.readable.load(Ordering::Relaxed) != readable {
            self.readable.store(readable, Ordering::SeqCst);
        }
        let read_lease_until_ms = node.read_lease_until_ms();
        if self.read_lease_until_ms.load(Ordering::Relaxed) != read_lease_until_ms {
            self.read_lease_until_ms.store(read_lease_until_ms, Ordering::SeqCst);
        }
        let expiring = node.has_deadlines();
        if self.expiring.load(Ordering::Relaxed) != expiring {
            self.expiring.store(expiring, Ordering::SeqCst);
        }
        let node_progress = node.progress();
        let mut progress = self.progress.lock();
        let moved = node_progress.committed != progress.committed;
        *progress = node_progress;
        if moved && ack_writer == AckWriter::Wake {
            self.commit_changed.notify_all();
        }
        if self.history.keeps_writes() && (carry.committed.is_some() || !carry.recorded.is_empty()) {
            self.history.record(std::mem::take(&mut carry.recorded), carry.committed);
        }
        if let Some(committed) = carry.committed.take() {
            carry.settle(self.commits.advance(committed));
        }
    }

    // ---- client requests ----

    /// Executes a client's write at the head (see [`WriteOp`]). The client
    /// may be answered once the write is committed (see
    /// [`Replica::await_commit`]). A retry (same client and request id) is
    /// not applied again: it gets the original write's receipt.
    pub fn client_write(
        &self,
        client_id: u64,
        request_id: u64,
        op: WriteOp,
    ) -> Result<WriteReceipt, Refusal> {
        self.check_disk()?;
        self.wait_for_queue_room(1)?;
        let now_ms = self.now_ms();
        self.step(AckWriter::Wake, |node, store, carry| {
            let generation = self.commits.generation();
            let receipt = self.screened_write((client_id, request_id), op, now_ms, node, (store, carry))?;
            Ok(WriteReceipt { sequence: receipt.sequence, generation, outcome: receipt.outcome })
        })
    }

    /// Whether the write is committed already (always so standalone or at
    /// the tail), so its client can be answered at once.
    pub fn is_committed(&self, receipt: &WriteReceipt) -> bool {
        self.commits.is_committed(receipt.sequence, receipt.generation)
    }

    /// Calls `on_settled` once the write is committed, or when its wait
    /// ends without a commit: we were fenced, the lease ran out, or the
    /// commit timeout passed (those two are found by
    /// [`Replica::expire_overdue_writes`]). Runs at once, on this thread, if
    /// the outcome is already known.
    pub fn await_commit(&self, receipt: &WriteReceipt, on_settled: OnSettled) {
        let deadline = Instant::now() + self.limits.commit_timeout;
        self.commits.await_commit(receipt.sequence, receipt.generation, deadline, on_settled);
    }

    /// Runs up to `limit` callbacks of settled writes that their settling
    /// thread has not run yet (see `commits`); holding no lock.
    pub fn run_settled(&self, limit: usize) {
        self.commits.run_settled(limit);
    }

    /// Ends the waits of writes past their commit timeout, and of all
    /// writes once the lease has run out. Called periodically.
    pub fn expire_overdue_writes(&self) {
        let now_ms = self.now_ms();
        self.step(AckWriter::Wake, |node, _, carry| node.tick(now_ms, carry));
        self.commits.expire(Instant::now(), self.lease_valid()).deliver();
    }

    /// Blocks (holding no lock) while the replication queue is full, so the
    /// head slows down to what the chain can absorb; gives up after the
    /// commit timeout (the successor is stuck until ZooKeeper removes it).
    fn wait_for_queue_room(&self, writes: usize) -> Result<(), Refusal> {
        let deadline = Instant::now() + self.limits.commit_timeout;
        while self.forwarding.load(Ordering::Relaxed) && self.outbox.len() + writes > self.limits.queue_max {
            if Instant::now() > deadline {
                return Err(Refusal::new(ErrorCode::ERR_UNAVAILABLE, "replication queue full; retry"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    /// The memory the replica holds, as `--max-memory` counts it (see
    /// [`ChainNode::used_memory`]).
    pub fn used_memory(&self) -> u64 {
        self.node.lock().used_memory(&self.store())
    }

    /// Current progress.
    pub fn progress(&self) -> Progress {
        *self.progress.lock()
    }

    /// The replication queue, drained by the sender thread.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    // ---- membership ----

    /// Our place in the chain, if we are a member.
    pub fn position(&self) -> Option<Position> {
        self.node.lock().position().cloned()
    }

    pub fn role(&self) -> Role {
        self.node.lock().role()
    }

    /// Whether we head the chain (and so sequence its writes).
    pub fn is_head(&self) -> bool {
        matches!(self.role(), Role::Head | Role::HeadAndTail)
    }

    /// The chain generation of our table (see [`ChainNode::generation`]).
    pub fn generation(&self) -> u64 {
        self.node.lock().generation()
    }

    pub fn fencings(&self) -> u64 {
        self.node.lock().fencings()
    }

    /// Times this replica rejoined by resuming its own table (see `chain::rejoin`).
    pub fn rejoins_resumed(&self) -> u64 {
        self.node.lock().rejoins_resumed()
    }

    /// The ZooKeeper session is confirmed (the lease holds); always so
    /// standalone.
    pub fn lease_valid(&self) -> bool {
        self.standalone || self.now_ms() < self.lease_until_ms.load(Ordering::SeqCst)
    }
}

impl Member for Replica {
    /// Our id in ZooKeeper (see the field).
    fn server_id(&self) -> u64 {
        self.server_id
    }

    /// What the node asked of the membership thread since the last call.
    fn take_membership_requests(&self) -> MembershipRequests {
        std::mem::take(&mut *self.membership_requests.lock())
    }

    /// Installs a new view of the chain (`me` is our node name).
    fn set_view(&self, view: &ChainView, me: &str) {
        self.step(AckWriter::Wake, |node, _, carry| node.view_changed(view, me, carry));
    }

    /// Stop serving at once: our session is gone or unconfirmed.
    fn fence(&self, reason: &str) {
        self.lease_until_ms.store(0, Ordering::SeqCst);
        self.step(AckWriter::Wake, |node, _, carry| node.fence(reason, carry));
    }

    /// What to register as in a new ZooKeeper session (see
    /// [`ChainNode::registration`]); forgets the table unless it can
    /// restart a chain.
    fn registration(&self) -> Readiness {
        self.step(AckWriter::Wake, |node, store, carry| node.registration(store, carry))
    }

    /// What our table holds, for the bootstrap decision.
    fn holding(&self) -> Holding {
        let node = self.node.lock();
        Holding {
            recoverable_history: node.recoverable_history(),
            installed_history: node.installed_history(),
            table_empty: self.table.is_empty(),
        }
    }

    /// The chain we start has this generation (see [`ChainNode::starting_chain`]).
    fn starting_chain(&self, generation: u64) {
        self.node.lock().starting_chain(generation);
    }

    fn removed(&self, evidence: Evidence) {
        self.removals.count(evidence);
    }

    /// Extends the lease: the session is alive until `until`.
    fn renew_lease(&self, until: Instant) {
        let millis = until.saturating_duration_since(self.started).as_millis() as u64;
        let mut node = self.node.lock();
        node.lease_confirmed(millis);
        self.lease_until_ms.store(node.lease_until_ms(), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests;
