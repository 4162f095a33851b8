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
//! (then [`Replica::await_commit`]) and [`Replica::read_guard`]; the
//! replication receiver calls [`Replica::apply_replicated`] and the install
//! methods; the replication sender drains [`Replica::outbox`] and reports
//! the successor's progress; the membership thread publishes views, leases
//! and fences.

pub mod commits;
pub mod outbox;
pub mod transfers;

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::warn;
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::chain::bootstrap::Holding;
use crate::chain::{Action, ChainNode, Check, Effects, NodeConfig, Progress, Refusal, Role, Store, Welcome};
use crate::coord::membership::{Member, MembershipRequests};
use crate::proto::{ClientRecord, ErrorCode, ReplicaHello, SnapshotChunk, Write};
use crate::store::table::Table;
use crate::view::{ChainView, Position, Readiness};
use commits::{CommitOutcome, Commits, OnSettled, Settlements};
use outbox::Outbox;
use transfers::StateTransfers;

/// A client write applied at the head: where it is in the history, and the
/// answer its client gets once it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReceipt {
    pub sequence: u64,
    /// The commit generation it was applied in (see [`Commits::generation`]).
    pub generation: u64,
    /// The key existed before.
    pub found: bool,
}

/// What a write's client is told when the wait for its commit ends.
pub fn commit_result(sequence: u64, outcome: CommitOutcome) -> Result<(), Refusal> {
    let message = match outcome {
        CommitOutcome::Committed => return Ok(()),
        CommitOutcome::Abandoned | CommitOutcome::LeaseLost => {
            format!("lost the ZooKeeper session before write {sequence} was confirmed; retry")
        }
        CommitOutcome::TimedOut => format!("write {sequence} not confirmed by the tail in time; retry"),
    };
    Err(Refusal::new(ErrorCode::ERR_UNAVAILABLE, message))
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
        }
    }
}

/// The full state of the table at one sequence number, for a joining server.
pub struct Snapshot {
    pub sequence: u64,
    /// The newest `Write.epoch` among the writes it holds.
    pub write_epoch: u64,
    /// The run of forwarded writes it was taken in (see [`ChainNode::stream`]).
    pub stream: u64,
    pub entries: Vec<(String, Vec<u8>)>,
    pub clients: Vec<ClientRecord>,
}

/// The table as the node's [`Store`].
struct TableStore<'a>(&'a Table);

impl Store for TableStore<'_> {
    fn apply(&mut self, key: &str, value: Option<Vec<u8>>) -> bool {
        match value {
            Some(value) => self.0.put(key, value),
            None => self.0.delete(key),
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn key_count(&self) -> u64 {
        self.0.len()
    }

    fn bytes_stored(&self) -> u64 {
        self.0.bytes_stored()
    }

    fn value_len(&self, key: &str) -> Option<usize> {
        self.0.value_len(key)
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
    /// Bumped whenever reads may have been revoked; a read checks it
    /// before and after touching the table.
    read_epoch: AtomicU64,
    /// The node's lease, as milliseconds since `started` (0 = none).
    lease_until_ms: AtomicU64,
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
        Replica::with_bug(stripes, standalone, limits, membership_wake, None)
    }

    /// A replica whose protocol has `bug` switched on (testing the checkers).
    pub fn with_bug(
        stripes: usize,
        standalone: bool,
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
        let config = NodeConfig {
            standalone,
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
            read_epoch: AtomicU64::new(0),
            lease_until_ms: AtomicU64::new(0),
            started: Instant::now(),
            sent_list_len: AtomicU64::new(0),
            membership_requests: Mutex::new(MembershipRequests::default()),
            membership_wake,
            transfers: StateTransfers::default(),
            server_id,
            limits,
        }
    }

    fn request_membership(&self, request: impl FnOnce(&mut MembershipRequests)) {
        request(&mut self.membership_requests.lock());
        // One pending wake-up is enough: the thread takes every request.
        let _ = self.membership_wake.try_send(());
    }

    /// Milliseconds on the node's clock.
    fn now_ms(&self) -> u64 {
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
        let mut carry = Carry { replica: self, settlements: None, more: Vec::new(), committed: None };
        let mut node = self.node.lock();
        let result = event(&mut node, &mut TableStore(&self.table), &mut carry);
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
        let node_progress = node.progress();
        let mut progress = self.progress.lock();
        let moved = node_progress.committed != progress.committed;
        *progress = node_progress;
        if moved && ack_writer == AckWriter::Wake {
            self.commit_changed.notify_all();
        }
        if let Some(committed) = carry.committed.take() {
            carry.settle(self.commits.advance(committed));
        }
    }

    // ---- client requests ----

    /// Executes a client's put (`value` given) or delete at the head. The
    /// client may be answered once the write is committed (see
    /// [`Replica::await_commit`]). A retry (same client and request id) is
    /// not applied again: it gets the original write's receipt.
    pub fn client_write(
        &self,
        client_id: u64,
        request_id: u64,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<WriteReceipt, Refusal> {
        self.wait_for_queue_room(1)?;
        let now_ms = self.now_ms();
        self.step(AckWriter::Wake, |node, store, carry| {
            let generation = self.commits.generation();
            let receipt = node.client_write(client_id, request_id, key, value, now_ms, store, carry)?;
            Ok(WriteReceipt { sequence: receipt.sequence, generation, found: receipt.found })
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

    /// Runs `read` if this server may answer reads, re-checking afterwards
    /// that the permission held throughout (a hand-over or fencing in
    /// between voids the answer).
    pub fn read_guard<T>(&self, read: impl FnOnce(&Table) -> T) -> Result<T, Refusal> {
        let epoch = self.read_epoch.load(Ordering::SeqCst);
        self.check_may_read()?;
        let answer = read(&self.table);
        if self.read_epoch.load(Ordering::SeqCst) != epoch {
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                "the chain changed during the read; look again",
            ));
        }
        self.check_may_read()?;
        Ok(answer)
    }

    /// The lock-free check of what the node last published; only a refusal
    /// takes the node's lock, to say why in the node's words.
    fn check_may_read(&self) -> Result<(), Refusal> {
        if self.standalone || (self.readable.load(Ordering::SeqCst) && self.lease_valid()) {
            return Ok(());
        }
        let now_ms = self.now_ms();
        match self.node.lock().check_may_read(now_ms) {
            // Published state said no a moment ago; the node may have moved
            // since, but the read epoch was taken before: refuse to be safe.
            Ok(()) => {
                Err(Refusal::new(ErrorCode::ERR_WRONG_ROLE, "the chain changed during the read; look again"))
            }
            Err(refusal) => Err(refusal),
        }
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

    // ---- replication receiver ----

    /// Applies writes from our predecessor `sender`, in order. A commit
    /// point this moves (we are the tail) is not announced to the ack
    /// writer: the caller reports it to `sender` itself.
    pub fn apply_replicated(&self, sender: &str, link: u64, writes: Vec<Write>) -> Result<(), Refusal> {
        self.wait_for_queue_room(writes.len())?;
        self.step(AckWriter::CallerAcks, |node, store, carry| {
            node.replicated_batch(sender, link, writes, store, carry)
        })
    }

    /// Our progress, to acknowledge to `sender`; `None` once `sender` is not
    /// our predecessor any more (see [`ChainNode::progress_for`]).
    pub fn progress_for_predecessor(&self, sender: &str, link: u64) -> Option<Progress> {
        self.node.lock().progress_for(sender, link)
    }

    /// Whether frames from `sender` on `link` are accepted (see
    /// [`ChainNode::check_link`]).
    pub fn accepts_from(&self, sender: &str, link: u64) -> Result<(), Refusal> {
        self.node.lock().check_link(sender, link)
    }

    /// Answers a predecessor's hello (see [`ChainNode::link_hello`]).
    pub fn welcome(&self, hello: &ReplicaHello) -> Result<Welcome, Refusal> {
        self.node.lock().link_hello(hello)
    }

    /// Installs one chunk of a snapshot from `sender`. The first chunk
    /// empties the table; the last sets our sequence number.
    pub fn install_chunk(
        &self,
        sender: &str,
        link: u64,
        chunk: SnapshotChunk,
        first: bool,
    ) -> Result<(), Refusal> {
        self.step(AckWriter::Wake, |node, store, carry| {
            node.snapshot_chunk(sender, link, chunk, first, store, carry)
        })
    }

    /// Hand-over, joining side: our predecessor stopped committing on its
    /// own; we become ready once we have applied `sequence`.
    pub fn set_promote_at(&self, sender: &str, link: u64, sequence: u64) -> Result<(), Refusal> {
        self.step(AckWriter::Wake, |node, _, carry| node.hand_over_mark(sender, link, sequence, carry))
    }

    // ---- replication sender ----

    /// A snapshot for a successor, taken atomically with its sequence number;
    /// from here on every applied write is queued for the successor. `None`
    /// while our own table is not the chain's state.
    pub fn snapshot(&self) -> Option<Snapshot> {
        let node = self.node.lock();
        let point = node.snapshot_point()?;
        Some(Snapshot {
            sequence: point.sequence,
            write_epoch: point.write_epoch,
            stream: node.stream(),
            entries: self.table.entries(),
            clients: point.clients,
        })
    }

    /// Hand-over, tail side (see [`ChainNode::try_hand_over`]).
    pub fn try_hand_over(&self, successor: &str, successor_applied: u64) -> Option<u64> {
        self.step(AckWriter::Wake, |node, _, carry| node.try_hand_over(successor, successor_applied, carry))
    }

    /// The successor reports its commit point (cumulative). An error means
    /// the successor acknowledged writes never applied here: the link is
    /// dropped.
    pub fn on_successor_progress(&self, successor: &str, committed: u64) -> Result<(), Refusal> {
        let now_ms = self.now_ms();
        self.step(AckWriter::Wake, |node, _, carry| node.successor_ack(successor, committed, now_ms, carry))
    }

    /// The memory the replica holds, as `--max-memory` counts it (see
    /// [`ChainNode::used_memory`]).
    pub fn used_memory(&self) -> u64 {
        self.node.lock().used_memory(&TableStore(&self.table))
    }

    /// Current progress.
    pub fn progress(&self) -> Progress {
        *self.progress.lock()
    }

    /// Waits up to `timeout` for a commit point other than `seen`, and
    /// returns the progress then.
    pub fn wait_commit_change(&self, seen: u64, timeout: Duration) -> Progress {
        let mut progress = self.progress.lock();
        if progress.committed == seen {
            self.commit_changed.wait_for(&mut progress, timeout);
        }
        *progress
    }

    /// The replication queue, drained by the sender thread.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Whether applied writes are being queued for a successor.
    pub fn is_forwarding(&self) -> bool {
        self.forwarding.load(Ordering::SeqCst)
    }

    /// Whether we may replicate to a successor: we are a member whose table
    /// is the live chain's state.
    pub fn may_replicate(&self) -> bool {
        self.node.lock().may_replicate()
    }

    /// Whether `name` is our successor.
    pub fn has_successor(&self, name: &str) -> bool {
        self.node.lock().successor().is_some_and(|member| member.name == name)
    }

    pub fn set_sent_list_len(&self, length: usize) {
        self.sent_list_len.store(length as u64, Ordering::Relaxed);
    }

    pub fn sent_list_len(&self) -> u64 {
        self.sent_list_len.load(Ordering::Relaxed)
    }

    /// The view epoch we act on.
    pub fn view_epoch(&self) -> u64 {
        self.node.lock().view_epoch()
    }

    // ---- membership ----

    /// Our place in the chain, if we are a member.
    pub fn position(&self) -> Option<Position> {
        self.node.lock().position().cloned()
    }

    pub fn role(&self) -> Role {
        self.node.lock().role()
    }

    /// The chain generation of our table (see [`ChainNode::generation`]).
    pub fn generation(&self) -> u64 {
        self.node.lock().generation()
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

    /// Extends the lease: the session is alive until `until`.
    fn renew_lease(&self, until: Instant) {
        let millis = until.saturating_duration_since(self.started).as_millis() as u64;
        let mut node = self.node.lock();
        node.lease_confirmed(millis);
        self.lease_until_ms.store(node.lease_until_ms(), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{CommitRecord, test_member as member};
    use std::sync::Arc;
    use std::thread;

    impl Replica {
        /// A client write and its wait for the commit, as a server's
        /// connection does it, with the commit-expiry thread's periodic
        /// check. Returns whether the key existed.
        fn write_and_wait(
            &self,
            client_id: u64,
            request_id: u64,
            key: &str,
            value: Option<Vec<u8>>,
        ) -> Result<bool, Refusal> {
            let receipt = self.client_write(client_id, request_id, key, value)?;
            let (settle, settled) = crossbeam_channel::bounded(1);
            self.await_commit(
                &receipt,
                Box::new(move |outcome| {
                    let _ = settle.send(outcome);
                }),
            );
            loop {
                match settled.recv_timeout(Duration::from_millis(10)) {
                    Ok(outcome) => return commit_result(receipt.sequence, outcome).map(|()| receipt.found),
                    Err(_) => self.expire_overdue_writes(),
                }
            }
        }
    }

    /// `view` with the commit record of its own epoch, as the tail writes
    /// it before committing.
    fn recorded(view: ChainView) -> ChainView {
        let epoch = view.epoch;
        view.with_record(CommitRecord { epoch, ..CommitRecord::default() })
    }

    fn name(sequence: u64) -> String {
        format!("node{sequence:010}")
    }

    fn replica() -> Arc<Replica> {
        replica_leased_for(Duration::from_secs(60))
    }

    fn replica_leased_for(lease: Duration) -> Arc<Replica> {
        let (ready_sender, _) = crossbeam_channel::bounded(1);
        let limits =
            ReplicationLimits { commit_timeout: Duration::from_secs(2), ..ReplicationLimits::default() };
        let replica = Replica::new(8, false, limits, ready_sender);
        replica.renew_lease(Instant::now() + lease);
        Arc::new(replica)
    }

    /// Replicas for the members of `view`, each told the view.
    fn chain(view: &ChainView) -> Vec<Arc<Replica>> {
        view.members
            .iter()
            .map(|member| {
                let replica = replica();
                if let Some(predecessor) =
                    view.position_of(&member.name).and_then(|position| position.predecessor)
                {
                    replica.node.lock().assume_handed_over_by(&predecessor.name);
                }
                replica.set_view(view, &member.name);
                replica
            })
            .collect()
    }

    /// Moves every queued write from `from` to `to`, then `to`'s commit
    /// point back to `from`: one round of the replication threads' work.
    fn forward(from: &Replica, from_name: &str, to: &Replica, to_name: &str) {
        let writes: Vec<Write> = from.outbox().try_iter().map(|(_, write)| write).collect();
        to.apply_replicated(from_name, 0, writes).unwrap();
        from.on_successor_progress(to_name, to.progress().committed).unwrap();
    }

    fn ready_view(sequences: &[u64]) -> ChainView {
        recorded(ChainView::new(
            sequences.iter().map(|&sequence| member(sequence, Readiness::Ready)).collect(),
            1,
        ))
    }

    #[test]
    fn a_write_commits_only_when_the_tail_has_it() {
        let view = ready_view(&[1, 2, 3]);
        let replicas = chain(&view);
        let head = Arc::clone(&replicas[0]);
        let writer = thread::spawn(move || head.write_and_wait(7, 1, "k", Some(b"v".to_vec())));
        // Wait until the head applied it.
        while replicas[0].progress().applied < 1 {
            thread::yield_now();
        }
        assert_eq!(replicas[0].progress().committed, 0, "not committed before the tail has it");
        forward(&replicas[1], &name(2), &replicas[2], &name(3)); // nothing yet
        forward(&replicas[0], &name(1), &replicas[1], &name(2));
        assert_eq!(replicas[1].progress(), Progress { applied: 1, committed: 0 });
        forward(&replicas[1], &name(2), &replicas[2], &name(3));
        assert_eq!(replicas[2].progress(), Progress { applied: 1, committed: 1 });
        forward(&replicas[0], &name(1), &replicas[1], &name(2));
        assert_eq!(writer.join().unwrap(), Ok(false));
        for replica in &replicas {
            assert_eq!(replica.table.get("k"), Some(b"v".to_vec()));
        }
    }

    #[test]
    fn roles_decide_who_reads_and_writes() {
        let replicas = chain(&ready_view(&[1, 2]));
        assert_eq!(replicas[0].role(), Role::Head);
        assert_eq!(replicas[1].role(), Role::Tail);
        assert_eq!(replicas[0].read_guard(|table| table.len()).unwrap_err().code, ErrorCode::ERR_WRONG_ROLE);
        assert_eq!(replicas[1].read_guard(|table| table.len()), Ok(0));
        let refusal = replicas[1].write_and_wait(1, 1, "k", None).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::ERR_WRONG_ROLE);
        assert!(refusal.message.contains("127.0.0.1:7001"), "names the head: {}", refusal.message);
    }

    #[test]
    fn writes_only_from_the_current_predecessor_in_order() {
        let replicas = chain(&ready_view(&[1, 2, 3]));
        let mut write = Write::new();
        write.sequence = 1;
        write.key = "k".into();
        write.value = Some(b"v".to_vec());
        let refusal = replicas[2].apply_replicated(&name(1), 0, vec![write.clone()]).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::ERR_WRONG_ROLE);
        replicas[2].apply_replicated(&name(2), 0, vec![write.clone()]).unwrap();
        // A resend of what it has is skipped; a gap is refused.
        replicas[2].apply_replicated(&name(2), 0, vec![write.clone()]).unwrap();
        write.sequence = 3;
        assert!(replicas[2].apply_replicated(&name(2), 0, vec![write]).is_err());
        assert_eq!(replicas[2].progress().applied, 1);
    }

    #[test]
    fn retried_write_after_head_failure_is_applied_once() {
        let replicas = chain(&ready_view(&[1, 2]));
        replicas[0].table.put("k", b"old");
        // The head applies and forwards a delete, then dies before answering.
        let head = Arc::clone(&replicas[0]);
        let writer = thread::spawn(move || head.write_and_wait(42, 7, "k", None));
        while replicas[0].progress().applied < 1 {
            thread::yield_now();
        }
        let writes: Vec<Write> = replicas[0].outbox().try_iter().map(|(_, write)| write).collect();
        replicas[1].table.put("k", b"old");
        replicas[1].apply_replicated(&name(1), 0, writes).unwrap();
        replicas[0].fence("killed in the test");
        assert!(writer.join().unwrap().is_err(), "the old head never answered");
        // The successor becomes the head; the client retries there.
        replicas[1].set_view(&ready_view(&[2]), &name(2));
        assert_eq!(replicas[1].role(), Role::HeadAndTail);
        assert_eq!(
            replicas[1].write_and_wait(42, 7, "k", None),
            Ok(true),
            "original answer: the key existed"
        );
        assert_eq!(replicas[1].progress().applied, 1, "not applied twice");
        // A newer request from the same client is applied.
        assert_eq!(replicas[1].write_and_wait(42, 8, "k", None), Ok(false));
        let stale = replicas[1].write_and_wait(42, 7, "k", None).unwrap_err();
        assert_eq!(stale.code, ErrorCode::ERR_STALE_REQUEST);
    }

    /// A head is paused after applying a delete and before forwarding it;
    /// ZooKeeper drops it, its successor becomes the head and commits a write
    /// of its own under the same sequence number. When the old head resumes,
    /// no ack may tell it that its delete committed.
    #[test]
    fn acks_never_cover_writes_the_old_predecessor_did_not_send() {
        let view = ready_view(&[1, 2]);
        let old_head = replica_leased_for(Duration::from_millis(300));
        old_head.set_view(&view, &name(1));
        let successor = replica();
        successor.set_view(&view, &name(2));
        let head = Arc::clone(&old_head);
        let writer = thread::spawn(move || head.write_and_wait(1, 1, "k", None));
        while old_head.progress().applied < 1 {
            thread::yield_now();
        }
        successor.set_view(&ready_view(&[2]), &name(2));
        assert_eq!(successor.write_and_wait(2, 1, "other", Some(b"v".to_vec())), Ok(false));
        assert_eq!(successor.progress().committed, 1, "its own write, sequence 1");
        assert_eq!(successor.progress_for_predecessor(&name(1), 0), None, "no ack to a former predecessor");
        // An ack sent before the check, read once the old head's lease is over.
        thread::sleep(Duration::from_millis(400));
        old_head.on_successor_progress(&name(2), 1).unwrap();
        assert_eq!(old_head.progress().committed, 0);
        let refusal = writer.join().unwrap().unwrap_err();
        assert_eq!(refusal.code, ErrorCode::ERR_UNAVAILABLE, "{refusal:?}");
    }

    #[test]
    fn tail_failure_makes_the_predecessor_commit() {
        let replicas = chain(&ready_view(&[1, 2]));
        let head = Arc::clone(&replicas[0]);
        let writer = thread::spawn(move || head.write_and_wait(1, 1, "k", Some(b"v".to_vec())));
        while replicas[0].progress().applied < 1 {
            thread::yield_now();
        }
        replicas[0].set_view(&ready_view(&[1]), &name(1));
        assert_eq!(writer.join().unwrap(), Ok(false));
        assert_eq!(replicas[0].read_guard(|table| table.get("k")), Ok(Some(b"v".to_vec())));
    }

    #[test]
    fn join_with_snapshot_and_hand_over() {
        let tail = replica();
        let ready = ready_view(&[1]);
        tail.set_view(&ready, &name(1));
        tail.write_and_wait(1, 1, "a", Some(b"1".to_vec())).unwrap();
        let joining_view =
            recorded(ChainView::new(vec![member(1, Readiness::Ready), member(2, Readiness::Joining)], 2));
        tail.set_view(&joining_view, &name(1));
        let (ready_sender, ready_requests) = crossbeam_channel::bounded(1);
        let joiner = Replica::new(8, false, ReplicationLimits::default(), ready_sender);
        joiner.renew_lease(Instant::now() + Duration::from_secs(60));
        joiner.set_view(&joining_view, &name(2));
        assert_eq!(joiner.role(), Role::Joining);
        let mut hello = ReplicaHello::new();
        hello.sender = name(1);
        hello.receiver = name(2);
        hello.epoch = 2;
        let welcome = joiner.welcome(&hello).unwrap();
        assert_eq!((welcome.last_applied, welcome.wants_snapshot), (0, true));
        let link = welcome.link;
        hello.epoch = 1;
        assert!(joiner.welcome(&hello).is_err(), "a predecessor with an older view is refused");
        hello.epoch = 2;
        hello.receiver = name(3);
        assert!(joiner.welcome(&hello).is_err(), "a link meant for another node is refused");

        // The tail keeps committing on its own while the joiner catches up.
        let snapshot = tail.snapshot().unwrap();
        assert_eq!(tail.write_and_wait(1, 2, "b", Some(b"2".to_vec())), Ok(false));
        let mut chunk = SnapshotChunk::new();
        chunk.sequence = snapshot.sequence;
        chunk.last = true;
        for (key, value) in snapshot.entries {
            let mut entry = crate::proto::Entry::new();
            entry.key = key;
            entry.value = value;
            chunk.entries.push(entry);
        }
        joiner.install_chunk(&name(1), link, chunk, true).unwrap();
        assert!(tail.try_hand_over(&name(2), joiner.progress().applied).is_none(), "not caught up yet");
        let writes: Vec<Write> = tail.outbox().try_iter().map(|(_, write)| write).collect();
        assert_eq!(writes.len(), 1, "only the write after the snapshot is streamed");
        assert!(joiner.apply_replicated(&name(1), 0, writes.clone()).is_err(), "an older link is refused");
        joiner.apply_replicated(&name(1), link, writes).unwrap();
        assert_eq!(joiner.read_guard(|table| table.len()).unwrap_err().code, ErrorCode::ERR_WRONG_ROLE);

        let promote_at = tail.try_hand_over(&name(2), joiner.progress().applied).unwrap();
        assert_eq!(promote_at, 2);
        assert!(tail.read_guard(|table| table.len()).is_err(), "the old tail stops answering reads at once");
        joiner.set_promote_at(&name(1), link, promote_at).unwrap();
        assert!(ready_requests.try_recv().is_ok(), "the joiner asks to be announced ready");
        let promoted =
            recorded(ChainView::new(vec![member(1, Readiness::Ready), member(2, Readiness::Ready)], 2));
        joiner.set_view(&promoted, &name(2));
        tail.set_view(&promoted, &name(1));
        assert_eq!(joiner.read_guard(|table| table.keys()), Ok(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(tail.role(), Role::Head);
    }

    /// Seed 16806427444564262854 of `table-check sim`: a joiner handed the
    /// tail role by a predecessor that then left must not serve as tail
    /// behind a new predecessor that never handed over to it.
    #[test]
    fn ready_only_by_the_current_predecessors_hand_over() {
        let joiner = replica();
        joiner.node.lock().assume_handed_over_by(&name(2));
        let after_old_tail_left =
            recorded(ChainView::new(vec![member(1, Readiness::Ready), member(3, Readiness::Ready)], 4));
        joiner.set_view(&after_old_tail_left, &name(3));
        assert_eq!(joiner.read_guard(|table| table.len()).unwrap_err().code, ErrorCode::ERR_WRONG_ROLE);
        assert!(joiner.take_membership_requests().reregister.is_some(), "it registers again");
        let rightful = replica();
        rightful.node.lock().assume_handed_over_by(&name(1));
        rightful.set_view(&after_old_tail_left, &name(3));
        assert_eq!(rightful.read_guard(|table| table.len()), Ok(0));
        assert!(rightful.take_membership_requests().reregister.is_none());
    }

    #[test]
    fn client_records_are_bounded() {
        let (ready_sender, _) = crossbeam_channel::bounded(1);
        let limits = ReplicationLimits { client_records_max: 20, ..ReplicationLimits::default() };
        let replica = Replica::new(4, true, limits, ready_sender);
        for client in 1..=100 {
            replica.write_and_wait(client, 1, "k", Some(vec![1])).unwrap();
        }
        let clients = replica.node.lock().client_records();
        assert!(clients <= 20, "{clients} records kept");
        // The most recent clients are still recognised.
        assert_eq!(replica.write_and_wait(100, 1, "k", None), Ok(true));
        assert_eq!(replica.progress().applied, 100, "the retry was not applied again");
    }

    #[test]
    fn only_a_replica_holding_the_chains_state_replicates() {
        // A joining replica (fresh or reset) may not replicate or snapshot:
        // its table is not the chain's state.
        let joining_view = recorded(ChainView::new(
            vec![member(1, Readiness::Joining), member(2, Readiness::Recovering { last_applied: 9 })],
            1,
        ));
        let joiner = replica();
        joiner.set_view(&joining_view, &name(1));
        assert!(!joiner.may_replicate());
        assert!(joiner.snapshot().is_none(), "an empty joiner must not overwrite its successor");
        // Once it completed a transfer from the chain, it may.
        let mut chunk = SnapshotChunk::new();
        chunk.sequence = 3;
        chunk.last = true;
        let ready_then_joining =
            recorded(ChainView::new(vec![member(0, Readiness::Ready), member(1, Readiness::Joining)], 2));
        joiner.set_view(&ready_then_joining, &name(1));
        joiner.install_chunk(&name(0), 0, chunk, true).unwrap();
        assert!(joiner.may_replicate());
        // Fencing takes the right away again.
        joiner.fence("test");
        assert!(!joiner.may_replicate());
        // A ready member may.
        let ready = chain(&ready_view(&[1]));
        assert!(ready[0].may_replicate() && ready[0].snapshot().is_some());
    }

    #[test]
    fn fenced_replica_serves_nothing() {
        let replicas = chain(&ready_view(&[1]));
        replicas[0].fence("test");
        assert_eq!(replicas[0].role(), Role::Fenced);
        assert!(replicas[0].read_guard(|table| table.len()).is_err());
        assert!(replicas[0].write_and_wait(1, 1, "k", None).is_err());
        // An expired lease alone also stops service.
        let unleased = replica_leased_for(Duration::from_millis(1));
        unleased.set_view(&ready_view(&[1]), &name(1));
        thread::sleep(Duration::from_millis(5));
        assert_eq!(unleased.read_guard(|table| table.len()).unwrap_err().code, ErrorCode::ERR_UNAVAILABLE);
    }
}
