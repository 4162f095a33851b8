//! One server's replica of the chain: the table plus the chain protocol's
//! state (sequence numbers, commit point, client records for exactly-once,
//! role). Every write, from a client at the head or from the predecessor,
//! goes through here under one lock, which fixes the order in which writes
//! are applied and queued for the successor (the C original forwarded
//! outside its lock and could reorder replicas).
//!
//! Threads around it: connection threads call [`Replica::client_write`]
//! (then [`Replica::await_commit`]) and [`Replica::read_guard`]; the replication receiver calls
//! [`Replica::apply_replicated`] and the install methods; the replication
//! sender drains [`Replica::outbox`] and reports the successor's progress;
//! the membership thread publishes views and fences.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{info, warn};
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::commits::{CommitOutcome, Commits, OnSettled};
use crate::outbox::Outbox;
use crate::proto::{ClientRecord, ErrorCode, SnapshotChunk, Write};
use crate::store::table::Table;
use crate::view::{ChainView, Position};

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
}

/// What the book-keeping needs to know about a write just applied.
#[derive(Clone, Copy)]
struct AppliedWrite {
    sequence: u64,
    client_id: u64,
    request_id: u64,
    /// The key existed before (the answer the client gets).
    found: bool,
}

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

/// Whether a commit point moved by `publish_progress` wakes the ack writer
/// (the thread that reports commits to our predecessor).
#[derive(Clone, Copy, PartialEq, Eq)]
enum AckWriter {
    Wake,
    /// The caller is the replication receiver, which reports the commit
    /// itself right away: at the tail every applied batch commits, and
    /// waking another thread to send each ack cost a context switch per
    /// batch.
    CallerAcks,
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

/// A client write as sent down the chain (sequence and answer filled in
/// once applied).
fn outgoing_write(key: &str, value: &Option<Vec<u8>>, client_id: u64, request_id: u64) -> Write {
    let mut write = Write::new();
    write.key = key.to_owned();
    write.value = value.clone();
    write.client_id = client_id;
    write.request_id = request_id;
    write
}

/// Limits of the replication path.
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
}

/// Most writes the sender puts in one frame, and the receiver applies under
/// one lock acquisition.
pub const REPLICATION_BATCH_MAX: usize = 1024;

impl Default for ReplicationLimits {
    fn default() -> Self {
        ReplicationLimits {
            queue_max: 65_536,
            sent_max: 262_144,
            commit_timeout: Duration::from_secs(5),
            client_records_max: 100_000,
            writers_max: crate::limits::CLIENTS_MAX_DEFAULT + 1,
        }
    }
}

/// The replica's published progress, for threads that wait on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Last sequence number applied here.
    pub applied: u64,
    /// Last sequence number applied by the tail.
    pub committed: u64,
}

/// The full state of the table at one sequence number, for a joining server.
pub struct Snapshot {
    pub sequence: u64,
    pub entries: Vec<(String, Vec<u8>)>,
    pub clients: Vec<ClientRecord>,
}

/// Chain role, derived from the view and the hand-over state.
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

struct ReplicaState {
    last_applied: u64,
    /// Latest write per client, for exactly-once retries; replicated with
    /// the writes and in snapshots.
    clients: HashMap<u64, ClientRecord>,
    /// Our place in the chain; `None` in chain mode when we are not a
    /// member (not registered yet, or fenced). Unused in standalone mode.
    position: Option<Position>,
    view_epoch: u64,
    /// Addresses of the head and tail in the latest view, named in refusals
    /// so a client can see where to go.
    head_address: Option<String>,
    tail_address: Option<String>,
    /// The table holds a complete history prefix (false while a snapshot is
    /// being installed); only then may we snapshot it for a successor.
    installed: bool,
    /// The joining successor we handed the tail role to.
    handed_over_to: Option<String>,
    /// Joining: become ready once this sequence number is applied.
    promote_at: Option<u64>,
    /// Highest commit point the successor reported.
    successor_committed: u64,
    /// We were a ready member and our table is the chain's history up to
    /// `last_applied` (kept through fencing, so a chain whose members all
    /// lost their sessions can restart from it).
    was_ready: bool,
    /// Our table is the live chain's state: we are ready, or we completed a
    /// state transfer in this registration. Only then may we replicate to a
    /// successor: a reset or recovering server must never overwrite anyone
    /// (table-check found a joining server with an empty table wiping a
    /// recovering one that held the only copy of the data).
    synced: bool,
}

impl ReplicaState {
    /// Whether writes applied here are committed at once: we are the end of
    /// the chain, or the tail with a joining successor not yet handed over.
    fn commits_locally(&self, standalone: bool) -> bool {
        if standalone {
            return true;
        }
        match self.position.as_ref().and_then(|position| position.successor.as_ref()) {
            None => true,
            Some(successor) => {
                !successor.readiness.is_ready()
                    && self.handed_over_to.as_deref() != Some(successor.name.as_str())
            }
        }
    }

    fn role(&self, standalone: bool) -> Role {
        if standalone {
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

pub struct Replica {
    /// The data.
    pub table: Table,
    /// No chain: every write commits at once and every read is allowed.
    standalone: bool,
    state: Mutex<ReplicaState>,
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
    /// sender thread. Enqueued under `state`'s lock, never blocking.
    outbox: Outbox,
    /// A successor exists, so applied writes are queued. Read without the
    /// lock by writers waiting for room in the queue.
    forwarding: AtomicBool,
    /// Reads are allowed (we are the committing tail, or standalone).
    readable: AtomicBool,
    /// Bumped whenever `readable` may have been revoked; a read checks it
    /// before and after touching the table.
    read_epoch: AtomicU64,
    /// Our ZooKeeper session is known to be alive until this instant (as
    /// milliseconds since `started`); 0 = no lease. Standalone ignores it.
    lease_until_ms: AtomicU64,
    started: Instant,
    /// Writes forwarded and not yet committed (reported by the sender).
    sent_list_len: AtomicU64,
    /// Test-only fault (`--unsafe-read-anywhere`): answer reads whatever our
    /// role, breaking linearizability on purpose so `table-check` can show
    /// it notices.
    unsafe_read_anywhere: AtomicBool,
    /// Tells the membership thread to announce us ready (after hand-over).
    ready_requests: Sender<()>,
    pub limits: ReplicationLimits,
}

impl Replica {
    /// A replica with `stripes` table stripes. `ready_requests` receives a
    /// message when a joining replica has caught up after a hand-over.
    pub fn new(
        stripes: usize,
        standalone: bool,
        limits: ReplicationLimits,
        ready_requests: Sender<()>,
    ) -> Replica {
        // The queue has room beyond `queue_max` for writers that passed the
        // admission check at the same time (one write per connection thread,
        // one batch for the receiver), so enqueueing under the lock never
        // blocks.
        let capacity = limits.queue_max + limits.writers_max + REPLICATION_BATCH_MAX;
        Replica {
            table: Table::new(stripes),
            standalone,
            state: Mutex::new(ReplicaState {
                last_applied: 0,
                clients: HashMap::new(),
                position: None,
                view_epoch: 0,
                head_address: None,
                tail_address: None,
                installed: true,
                handed_over_to: None,
                promote_at: None,
                successor_committed: 0,
                was_ready: false,
                synced: false,
            }),
            progress: Mutex::new(Progress::default()),
            commit_changed: Condvar::new(),
            commits: Commits::default(),
            outbox: Outbox::new(capacity),
            forwarding: AtomicBool::new(false),
            readable: AtomicBool::new(standalone),
            read_epoch: AtomicU64::new(0),
            lease_until_ms: AtomicU64::new(0),
            started: Instant::now(),
            sent_list_len: AtomicU64::new(0),
            unsafe_read_anywhere: AtomicBool::new(false),
            ready_requests,
            limits,
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
        // The copy for the successor is made before taking the lock (a
        // successor appearing meanwhile is caught under the lock).
        let mut outgoing = self
            .forwarding
            .load(Ordering::Relaxed)
            .then(|| outgoing_write(key, &value, client_id, request_id));
        let receipt = {
            let mut state = self.state.lock();
            self.check_may_write(&state)?;
            let generation = self.commits.generation();
            match state.clients.get(&client_id) {
                Some(record) if client_id != 0 && record.request_id == request_id => {
                    WriteReceipt { sequence: record.sequence, generation, found: record.found }
                }
                Some(record) if client_id != 0 && record.request_id > request_id => {
                    return Err(Refusal::new(
                        ErrorCode::ERR_STALE_REQUEST,
                        format!(
                            "request {request_id} is older than this client's latest write {}",
                            record.request_id
                        ),
                    ));
                }
                _ => {
                    let sequence = state.last_applied + 1;
                    let mut queued = self.forwarding.load(Ordering::Relaxed).then(|| {
                        outgoing.take().unwrap_or_else(|| outgoing_write(key, &value, client_id, request_id))
                    });
                    let found = self.apply_to_table(key, value);
                    if let Some(write) = &mut queued {
                        write.sequence = sequence;
                        write.found = found;
                    }
                    let applied = AppliedWrite { sequence, client_id, request_id, found };
                    self.record_applied(&mut state, applied, queued);
                    self.publish_progress(state, AckWriter::Wake);
                    WriteReceipt { sequence, generation, found }
                }
            }
        };
        Ok(receipt)
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
        self.commits.expire(Instant::now(), self.standalone || self.lease_valid()).deliver();
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

    fn check_may_read(&self) -> Result<(), Refusal> {
        if self.standalone || self.unsafe_read_anywhere.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !self.lease_valid() {
            return Err(Refusal::new(
                ErrorCode::ERR_UNAVAILABLE,
                "no confirmed ZooKeeper session; not serving",
            ));
        }
        if !self.readable.load(Ordering::SeqCst) {
            let tail = self.state.lock().tail_address.clone();
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!("not the tail; reads go to the tail ({})", tail.as_deref().unwrap_or("unknown")),
            ));
        }
        Ok(())
    }

    fn check_may_write(&self, state: &ReplicaState) -> Result<(), Refusal> {
        if self.standalone {
            return Ok(());
        }
        if !self.lease_valid() {
            return Err(Refusal::new(
                ErrorCode::ERR_UNAVAILABLE,
                "no confirmed ZooKeeper session; not serving",
            ));
        }
        match &state.position {
            Some(position) if position.is_head => Ok(()),
            _ => Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!(
                    "not the head; writes go to the head ({})",
                    state.head_address.as_deref().unwrap_or("unknown")
                ),
            )),
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

    // ---- applying writes (head and replication receiver) ----

    /// Puts `value` (or deletes, if `None`); returns whether the key existed.
    fn apply_to_table(&self, key: &str, value: Option<Vec<u8>>) -> bool {
        match value {
            Some(value) => self.table.put(key, value),
            None => self.table.delete(key),
        }
    }

    /// Book-keeping after a write was applied to the table, under the lock:
    /// sequence, client record, and the queue for the successor (`queued`,
    /// given when we forward). The caller publishes the progress, once per
    /// batch, so the ack writer is woken once per batch, not per write.
    fn record_applied(&self, state: &mut ReplicaState, applied: AppliedWrite, queued: Option<Write>) {
        assert_eq!(applied.sequence, state.last_applied + 1, "writes are applied in sequence order");
        state.last_applied = applied.sequence;
        if applied.client_id != 0 {
            let mut record = ClientRecord::new();
            record.client_id = applied.client_id;
            record.request_id = applied.request_id;
            record.sequence = applied.sequence;
            record.found = applied.found;
            self.remember_client(state, record);
        }
        if let Some(write) = queued {
            self.outbox.push(write);
        }
    }

    /// Records a client's latest write. Over the limit, forgets the oldest
    /// tenth by sequence number: every replica applies the same writes in the
    /// same order, so they all forget the same clients.
    fn remember_client(&self, state: &mut ReplicaState, record: ClientRecord) {
        state.clients.insert(record.client_id, record);
        let limit = self.limits.client_records_max;
        if state.clients.len() > limit {
            let mut sequences: Vec<u64> = state.clients.values().map(|record| record.sequence).collect();
            let forget = (limit / 10).max(1);
            let (_, threshold, _) = sequences.select_nth_unstable(forget - 1);
            let threshold = *threshold;
            state.clients.retain(|_, record| record.sequence > threshold);
        }
    }

    /// Applies writes from our predecessor `sender`, in order. Writes we
    /// already have are skipped (resends after a reconnection). A commit
    /// point this moves (we are the tail) is not announced to the ack
    /// writer: the caller reports it to `sender` itself.
    pub fn apply_replicated(&self, sender: &str, writes: Vec<Write>) -> Result<(), Refusal> {
        self.wait_for_queue_room(writes.len())?;
        let mut state = self.state.lock();
        self.check_predecessor(&state, sender)?;
        let forwarding = self.forwarding.load(Ordering::Relaxed);
        let mut result = Ok(());
        for mut write in writes {
            if write.sequence <= state.last_applied {
                continue;
            }
            if write.sequence != state.last_applied + 1 {
                result = Err(Refusal::new(
                    ErrorCode::ERR_INTERNAL,
                    format!(
                        "gap in the write stream: expected {} got {}",
                        state.last_applied + 1,
                        write.sequence
                    ),
                ));
                break;
            }
            // The table keeps the value; a copy goes on only if we forward.
            let value = if forwarding { write.value.clone() } else { write.value.take() };
            self.apply_to_table(&write.key, value);
            let applied = AppliedWrite {
                sequence: write.sequence,
                client_id: write.client_id,
                request_id: write.request_id,
                found: write.found,
            };
            self.record_applied(&mut state, applied, forwarding.then_some(write));
        }
        self.maybe_request_ready(&mut state);
        self.publish_progress(state, AckWriter::CallerAcks);
        result
    }

    /// Our progress, to acknowledge to `sender`; `None` once `sender` is not
    /// our predecessor any more. Checked and read under the ordering lock,
    /// because after a view change we may commit writes of our own (as the
    /// new head) under sequence numbers that the old predecessor gave to
    /// writes we never received: an ack carrying those would tell it they
    /// were committed. (table-check found this: a paused head, on resuming,
    /// acknowledged a delete that no other server had.)
    pub fn progress_for_predecessor(&self, sender: &str) -> Option<Progress> {
        let state = self.state.lock();
        self.check_predecessor(&state, sender).ok()?;
        Some(*self.progress.lock())
    }

    /// Whether `sender` is our current predecessor (writes from anyone else
    /// are refused).
    pub fn accepts_from(&self, sender: &str) -> Result<(), Refusal> {
        self.check_predecessor(&self.state.lock(), sender)
    }

    fn check_predecessor(&self, state: &ReplicaState, sender: &str) -> Result<(), Refusal> {
        let predecessor = state.position.as_ref().and_then(|position| position.predecessor.as_ref());
        match predecessor {
            Some(predecessor) if predecessor.name == sender => Ok(()),
            _ => Err(Refusal::new(ErrorCode::ERR_WRONG_ROLE, format!("{sender} is not my predecessor"))),
        }
    }

    /// Answers a predecessor's hello: accepted only from our current
    /// predecessor. Returns (last applied, wants snapshot). A joining
    /// replica always starts over from a fresh snapshot.
    pub fn welcome(&self, sender: &str) -> Result<(u64, bool), Refusal> {
        let state = self.state.lock();
        self.check_predecessor(&state, sender)?;
        let joining = state.position.as_ref().is_some_and(|position| !position.me.readiness.is_ready());
        Ok((state.last_applied, joining || !state.installed))
    }

    // ---- state transfer ----

    /// A snapshot for a successor, taken atomically with its sequence number;
    /// from here on every applied write is queued for the successor. `None`
    /// while our own table is incomplete (we are still joining).
    pub fn snapshot(&self) -> Option<Snapshot> {
        let state = self.state.lock();
        if !state.installed || !state.synced {
            return None;
        }
        self.forwarding.store(true, Ordering::SeqCst);
        Some(Snapshot {
            sequence: state.last_applied,
            entries: self.table.entries(),
            clients: state.clients.values().cloned().collect(),
        })
    }

    /// Installs one chunk of a snapshot from `sender`. The first chunk
    /// empties the table; the last sets our sequence number.
    pub fn install_chunk(&self, sender: &str, chunk: SnapshotChunk, first: bool) -> Result<(), Refusal> {
        let mut state = self.state.lock();
        self.check_predecessor(&state, sender)?;
        if first {
            state.installed = false;
            self.update_readable(&state);
            self.table.clear();
            state.clients.clear();
            state.last_applied = 0;
        }
        for entry in chunk.entries {
            self.table.put(&entry.key, entry.value);
        }
        for record in chunk.clients {
            self.remember_client(&mut state, record);
        }
        if chunk.last {
            state.last_applied = chunk.sequence;
            state.installed = true;
            state.synced = true;
            self.update_readable(&state);
            self.maybe_request_ready(&mut state);
            self.publish_progress(state, AckWriter::Wake);
        }
        Ok(())
    }

    /// Hand-over, joining side: our predecessor stopped committing on its
    /// own; we become ready once we have applied `sequence`.
    pub fn set_promote_at(&self, sender: &str, sequence: u64) -> Result<(), Refusal> {
        let mut state = self.state.lock();
        self.check_predecessor(&state, sender)?;
        info!("hand-over from {sender}: ready once write {sequence} is applied");
        state.promote_at = Some(sequence);
        self.maybe_request_ready(&mut state);
        Ok(())
    }

    /// Once a joining replica has applied everything up to the hand-over
    /// mark, asks (once) to be announced ready.
    fn maybe_request_ready(&self, state: &mut ReplicaState) {
        if let Some(sequence) = state.promote_at
            && state.installed
            && state.last_applied >= sequence
        {
            state.promote_at = None;
            // The membership thread may be busy; one pending request is enough.
            let _ = self.ready_requests.try_send(());
        }
    }

    /// Hand-over, tail side: if our joining successor `successor` has applied
    /// everything we have, stop committing on our own and return the
    /// sequence number it must reach before it may announce itself ready.
    pub fn try_hand_over(&self, successor: &str, successor_applied: u64) -> Option<u64> {
        let mut state = self.state.lock();
        let position = state.position.as_ref()?;
        let joining_successor = position
            .successor
            .as_ref()
            .is_some_and(|member| member.name == successor && !member.readiness.is_ready());
        if !position.is_tail
            || !joining_successor
            || state.handed_over_to.as_deref() == Some(successor)
            || successor_applied < state.last_applied
        {
            return None;
        }
        info!("{successor} has caught up at write {}; handing the tail role over", state.last_applied);
        state.handed_over_to = Some(successor.to_owned());
        self.update_readable(&state);
        Some(state.last_applied)
    }

    /// The successor reports its progress (cumulative). Ignored without a
    /// valid lease: an ack read after a pause may come from a successor that
    /// has since gone on in a chain without us (see
    /// [`Replica::progress_for_predecessor`]).
    pub fn on_successor_progress(&self, successor: &str, committed: u64) {
        if !self.standalone && !self.lease_valid() {
            return;
        }
        let mut state = self.state.lock();
        let current = state.position.as_ref().and_then(|position| position.successor.as_ref());
        if current.is_none_or(|member| member.name != successor) {
            return;
        }
        state.successor_committed = state.successor_committed.max(committed.min(state.last_applied));
        self.publish_progress(state, AckWriter::Wake);
    }

    /// Publishes applied/committed for the replication threads, releases
    /// the state lock, then settles the client writes now committed (their
    /// replies are sent holding no lock).
    fn publish_progress(&self, state: MutexGuard<'_, ReplicaState>, ack_writer: AckWriter) {
        let committed = if state.commits_locally(self.standalone) {
            state.last_applied
        } else {
            state.successor_committed
        };
        let settlements = {
            let mut progress = self.progress.lock();
            let next = Progress { applied: state.last_applied, committed: progress.committed.max(committed) };
            if next.committed != progress.committed && ack_writer == AckWriter::Wake {
                self.commit_changed.notify_all();
            }
            *progress = next;
            self.commits.advance(next.committed)
        };
        drop(state);
        settlements.deliver();
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

    // ---- membership ----

    /// Installs a new view of the chain (`me` is our node name).
    pub fn set_view(&self, view: &ChainView, me: &str) {
        let mut state = self.state.lock();
        if view.epoch < state.view_epoch {
            return;
        }
        state.view_epoch = view.epoch;
        state.head_address = view.head().map(|member| member.address.clone());
        state.tail_address = view.tail().map(|member| member.address.clone());
        let position = view.position_of(me);
        let old_role = state.role(self.standalone);
        let old_successor = state.position.as_ref().and_then(|position| position.successor.clone());
        state.position = position;
        if state.position.as_ref().is_some_and(|position| position.me.readiness.is_ready()) {
            state.was_ready = true;
            state.synced = true;
        }
        let successor = state.position.as_ref().and_then(|position| position.successor.clone());
        if successor.as_ref().map(|member| &member.name) != old_successor.as_ref().map(|member| &member.name)
        {
            match &successor {
                Some(member) => info!("successor is now {member}"),
                None => info!("no successor now"),
            }
        }
        if successor.as_ref().map(|member| &member.name) != state.handed_over_to.as_ref() {
            state.handed_over_to = None;
        }
        self.forwarding.store(successor.is_some(), Ordering::SeqCst);
        let role = state.role(self.standalone);
        if role != old_role {
            let (index, length) =
                state.position.as_ref().map_or((0, 0), |position| (position.index, position.chain_length));
            info!("chain role: {} (position {index} of {length})", role.name());
        }
        self.update_readable(&state);
        self.publish_progress(state, AckWriter::Wake);
    }

    /// Whether `name` is our successor (cheaper than [`Replica::position`]
    /// for the sender's check before every batch).
    pub fn has_successor(&self, name: &str) -> bool {
        let state = self.state.lock();
        state
            .position
            .as_ref()
            .and_then(|position| position.successor.as_ref())
            .is_some_and(|member| member.name == name)
    }

    /// Our place in the chain, if we are a member.
    pub fn position(&self) -> Option<Position> {
        self.state.lock().position.clone()
    }

    pub fn role(&self) -> Role {
        self.state.lock().role(self.standalone)
    }

    fn update_readable(&self, state: &ReplicaState) {
        let readable = self.standalone
            || (state.installed
                && state.position.as_ref().is_some_and(|position| position.is_tail)
                && state.commits_locally(false));
        if !readable {
            self.read_epoch.fetch_add(1, Ordering::SeqCst);
        }
        self.readable.store(readable, Ordering::SeqCst);
    }

    /// Stop serving at once: our session is gone or unconfirmed.
    pub fn fence(&self, reason: &str) {
        let mut state = self.state.lock();
        if state.position.is_some() {
            warn!("fenced: {reason}");
        }
        state.position = None;
        state.handed_over_to = None;
        state.promote_at = None;
        state.synced = false;
        self.lease_until_ms.store(0, Ordering::SeqCst);
        self.forwarding.store(false, Ordering::SeqCst);
        self.update_readable(&state);
        // Writes waiting for commits are answered now.
        let settlements = self.commits.abandon_all();
        drop(state);
        settlements.deliver();
    }

    /// The last write applied, if our table is a complete history that can
    /// restart a chain (we were a ready member); `None` otherwise.
    pub fn recoverable_history(&self) -> Option<u64> {
        let state = self.state.lock();
        (state.was_ready && state.installed).then_some(state.last_applied)
    }

    /// Forget everything, to rejoin as a new, empty server.
    pub fn reset(&self) {
        let mut state = self.state.lock();
        state.was_ready = false;
        self.table.clear();
        state.clients.clear();
        state.last_applied = 0;
        state.successor_committed = 0;
        state.installed = true;
        state.view_epoch = 0;
        *self.progress.lock() = Progress::default();
        let settlements = self.commits.reset();
        self.outbox.clear();
        drop(state);
        settlements.deliver();
    }

    /// Breaks read safety on purpose, for testing the checker (see the field).
    pub fn allow_unsafe_reads_anywhere(&self) {
        warn!("--unsafe-read-anywhere: answering reads in any role; NOT linearizable (testing only)");
        self.unsafe_read_anywhere.store(true, Ordering::Relaxed);
    }

    /// Extends the lease: the session is alive until `until`.
    pub fn renew_lease(&self, until: Instant) {
        let millis = until.saturating_duration_since(self.started).as_millis() as u64;
        self.lease_until_ms.fetch_max(millis, Ordering::SeqCst);
    }

    fn lease_valid(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        now < self.lease_until_ms.load(Ordering::SeqCst)
    }

    // ---- replication sender ----

    /// The replication queue, drained by the sender thread.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Whether we may replicate to a successor: we are a member whose table
    /// is the live chain's state (see `synced`).
    pub fn may_replicate(&self) -> bool {
        let state = self.state.lock();
        state.position.is_some() && state.synced
    }

    /// The sequence number we have applied up to, if the table holds a
    /// complete state (not in the middle of a state transfer).
    pub fn installed_history(&self) -> Option<u64> {
        let state = self.state.lock();
        state.installed.then_some(state.last_applied)
    }

    /// Whether applied writes are being queued for a successor.
    pub fn is_forwarding(&self) -> bool {
        self.forwarding.load(Ordering::SeqCst)
    }

    pub fn set_sent_list_len(&self, length: usize) {
        self.sent_list_len.store(length as u64, Ordering::Relaxed);
    }

    pub fn sent_list_len(&self) -> u64 {
        self.sent_list_len.load(Ordering::Relaxed)
    }

    /// The view epoch we act on.
    pub fn view_epoch(&self) -> u64 {
        self.state.lock().view_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{Readiness, test_member as member};
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
                replica.set_view(view, &member.name);
                replica
            })
            .collect()
    }

    /// Moves every queued write from `from` to `to`, then `to`'s commit
    /// point back to `from`: one round of the replication threads' work.
    fn forward(from: &Replica, from_name: &str, to: &Replica, to_name: &str) {
        let writes: Vec<Write> = from.outbox().try_iter().collect();
        to.apply_replicated(from_name, writes).unwrap();
        from.on_successor_progress(to_name, to.progress().committed);
    }

    fn ready_view(sequences: &[u64]) -> ChainView {
        ChainView::new(sequences.iter().map(|&sequence| member(sequence, Readiness::Ready)).collect(), 1)
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
        let refusal = replicas[2].apply_replicated(&name(1), vec![write.clone()]).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::ERR_WRONG_ROLE);
        replicas[2].apply_replicated(&name(2), vec![write.clone()]).unwrap();
        // A resend of what it has is skipped; a gap is refused.
        replicas[2].apply_replicated(&name(2), vec![write.clone()]).unwrap();
        write.sequence = 3;
        assert!(replicas[2].apply_replicated(&name(2), vec![write]).is_err());
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
        let writes: Vec<Write> = replicas[0].outbox().try_iter().collect();
        replicas[1].table.put("k", b"old");
        replicas[1].apply_replicated(&name(1), writes).unwrap();
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
        assert_eq!(successor.progress_for_predecessor(&name(1)), None, "no ack to a former predecessor");
        // An ack sent before the check, read once the old head's lease is over.
        thread::sleep(Duration::from_millis(400));
        old_head.on_successor_progress(&name(2), 1);
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
            ChainView::new(vec![member(1, Readiness::Ready), member(2, Readiness::Joining)], 2);
        tail.set_view(&joining_view, &name(1));
        let (ready_sender, ready_requests) = crossbeam_channel::bounded(1);
        let joiner = Replica::new(8, false, ReplicationLimits::default(), ready_sender);
        joiner.renew_lease(Instant::now() + Duration::from_secs(60));
        joiner.set_view(&joining_view, &name(2));
        assert_eq!(joiner.role(), Role::Joining);
        assert_eq!(joiner.welcome(&name(1)), Ok((0, true)));

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
        joiner.install_chunk(&name(1), chunk, true).unwrap();
        assert!(tail.try_hand_over(&name(2), joiner.progress().applied).is_none(), "not caught up yet");
        let writes: Vec<Write> = tail.outbox().try_iter().collect();
        assert_eq!(writes.len(), 1, "only the write after the snapshot is streamed");
        joiner.apply_replicated(&name(1), writes).unwrap();
        assert_eq!(joiner.read_guard(|table| table.len()).unwrap_err().code, ErrorCode::ERR_WRONG_ROLE);

        let promote_at = tail.try_hand_over(&name(2), joiner.progress().applied).unwrap();
        assert_eq!(promote_at, 2);
        assert!(tail.read_guard(|table| table.len()).is_err(), "the old tail stops answering reads at once");
        joiner.set_promote_at(&name(1), promote_at).unwrap();
        assert!(ready_requests.try_recv().is_ok(), "the joiner asks to be announced ready");
        let promoted = ChainView::new(vec![member(1, Readiness::Ready), member(2, Readiness::Ready)], 2);
        joiner.set_view(&promoted, &name(2));
        tail.set_view(&promoted, &name(1));
        assert_eq!(joiner.read_guard(|table| table.keys()), Ok(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(tail.role(), Role::Head);
    }

    #[test]
    fn client_records_are_bounded() {
        let (ready_sender, _) = crossbeam_channel::bounded(1);
        let limits = ReplicationLimits { client_records_max: 20, ..ReplicationLimits::default() };
        let replica = Replica::new(4, true, limits, ready_sender);
        for client in 1..=100 {
            replica.write_and_wait(client, 1, "k", Some(vec![1])).unwrap();
        }
        let clients = replica.state.lock().clients.len();
        assert!(clients <= 20, "{clients} records kept");
        // The most recent clients are still recognised.
        assert_eq!(replica.write_and_wait(100, 1, "k", None), Ok(true));
        assert_eq!(replica.progress().applied, 100, "the retry was not applied again");
    }

    #[test]
    fn only_a_replica_holding_the_chains_state_replicates() {
        // A joining replica (fresh or reset) may not replicate or snapshot:
        // its table is not the chain's state.
        let joining_view = ChainView::new(
            vec![member(1, Readiness::Joining), member(2, Readiness::Recovering { last_applied: 9 })],
            1,
        );
        let joiner = replica();
        joiner.set_view(&joining_view, &name(1));
        assert!(!joiner.may_replicate());
        assert!(joiner.snapshot().is_none(), "an empty joiner must not overwrite its successor");
        // Once it completed a transfer from the chain, it may.
        let mut chunk = SnapshotChunk::new();
        chunk.sequence = 3;
        chunk.last = true;
        let ready_then_joining =
            ChainView::new(vec![member(0, Readiness::Ready), member(1, Readiness::Joining)], 2);
        joiner.set_view(&ready_then_joining, &name(1));
        joiner.install_chunk(&name(0), chunk, true).unwrap();
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
        let unleased = replica();
        unleased.set_view(&ready_view(&[1]), &name(1));
        unleased.lease_until_ms.store(0, Ordering::SeqCst);
        assert_eq!(unleased.read_guard(|table| table.len()).unwrap_err().code, ErrorCode::ERR_UNAVAILABLE);
    }
}
