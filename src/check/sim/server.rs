//! A simulated server process: the real protocol ([`ChainNode`]) with the
//! simulated counterparts of the threads around it in `table-server`: the
//! replication sender (Sent list, resume or snapshot, hand-over), the
//! receiver (apply, ack), the membership thread (register, lease, views,
//! bootstrap) and the service (client writes wait for their commit).

use std::collections::{BTreeMap, VecDeque};

use super::SimConfig;
use super::client::{Reply, Request};
use super::world::{Event, SESSION_TIMEOUT_MS, TICK_MS, World};
use crate::chain::bootstrap::{self, Bootstrap, Holding};
use crate::chain::sent::SentList;
use crate::chain::{Action, ChainNode, NodeConfig, Progress, Store, Welcome};
use crate::proto::{ErrorCode, ReplicaHello, SnapshotChunk, Write};
use crate::view::{ChainView, CommitRecord, Readiness};

/// A client write waits this long for its commit (ms), as `--commit-timeout`.
const COMMIT_TIMEOUT_MS: u64 = 2000;
/// Pause before registering again after losing the session (ms).
const RETRY_PAUSE_MS: u64 = 500;

/// A frame on a replication link.
#[derive(Debug)]
pub enum LinkMessage {
    Hello(ReplicaHello),
    Welcome(Result<Welcome, String>),
    Batch { writes: Vec<Write>, promote_at: Option<u64> },
    Chunk(SnapshotChunk),
    Ack(Progress),
}

/// The table of a simulated server.
pub type SimStore = BTreeMap<String, Vec<u8>>;

impl Store for SimStore {
    fn apply(&mut self, key: &str, value: Option<Vec<u8>>) -> bool {
        match value {
            Some(value) => self.insert(key.to_owned(), value).is_some(),
            None => self.remove(key).is_some(),
        }
    }

    fn clear(&mut self) {
        BTreeMap::clear(self);
    }

    fn key_count(&self) -> u64 {
        self.len() as u64
    }

    /// Adds up every entry: the simulator's tables are small.
    fn bytes_stored(&self) -> u64 {
        self.iter().map(|(key, value)| (key.len() + value.len()) as u64).sum()
    }

    fn value_len(&self, key: &str) -> Option<usize> {
        self.get(key).map(Vec::len)
    }
}

/// The sending side of our link to the successor.
pub(super) struct Downlink {
    pub(super) connection: usize,
    pub(super) successor: String,
    /// The welcome came and the stream started.
    pub(super) streaming: bool,
    /// The successor's latest cumulative ack.
    pub(super) acked: Progress,
}

/// The receiving side of a link from a predecessor.
pub(super) struct Uplink {
    pub(super) sender: String,
    /// The link's number, from our welcome.
    pub(super) link: u64,
    /// No snapshot chunk received yet on this link.
    pub(super) first_chunk: bool,
    /// Progress last acknowledged on it.
    pub(super) reported: Progress,
}

/// A client write waiting for its commit.
pub(super) struct Pending {
    sequence: u64,
    client: usize,
    attempt: u64,
    found: bool,
    deadline_ms: u64,
}

pub struct Server {
    pub node: ChainNode,
    pub store: SimStore,
    pub alive: bool,
    /// Paused (SIGSTOP) until then: it handles nothing meanwhile.
    pub paused_until_ms: Option<u64>,
    /// The replication queue.
    pub(super) outbox: VecDeque<(u64, Write)>,
    pub(super) sent: SentList,
    pub(super) downlink: Option<Downlink>,
    pub(super) uplinks: BTreeMap<usize, Uplink>,
    pub(super) pending: Vec<Pending>,
    /// ZooKeeper session, while registered.
    pub session: Option<u64>,
    pub(super) name: String,
    pub(super) registered_ms: u64,
    pub(super) register_at_ms: u64,
    pub(super) next_confirm_ms: u64,
    /// The node asked to be announced ready.
    pub(super) ready_pending: bool,
    /// The node asked for this commit record to be written.
    pub(super) record_pending: Option<CommitRecord>,
    /// A wake-up of the sender is scheduled.
    pub(super) sender_woken: bool,
    /// The node asked to register again, for this reason.
    pub(super) reregister: Option<&'static str>,
    /// Pause for this long right after the next client write is applied,
    /// before the sender forwards it.
    pub pause_after_write: Option<u64>,
}

impl Server {
    pub fn new(index: usize, config: &SimConfig) -> Server {
        let server_id = index as u64 + 1;
        let node_config = NodeConfig {
            standalone: false,
            client_records_max: 1000,
            bug: config.bug,
            server_id,
            memory_bytes_max: None,
        };
        Server {
            node: ChainNode::new(node_config),
            store: SimStore::new(),
            alive: true,
            paused_until_ms: None,
            outbox: VecDeque::new(),
            sent: SentList::with_bug(config.bug),
            downlink: None,
            uplinks: BTreeMap::new(),
            pending: Vec::new(),
            session: None,
            name: String::new(),
            registered_ms: 0,
            register_at_ms: 0,
            next_confirm_ms: 0,
            ready_pending: false,
            record_pending: None,
            sender_woken: false,
            reregister: None,
            pause_after_write: None,
        }
    }
}

/// The server index in a member address (`s<index>`).
pub fn server_of(address: &str) -> Option<usize> {
    address.strip_prefix('s')?.parse().ok()
}

impl World {
    /// Carries out what server `index`'s node decided.
    pub(super) fn carry_out(&mut self, index: usize, actions: Vec<Action>) {
        for action in actions {
            let server = &mut self.servers[index];
            match action {
                Action::Forward { stream, write } => server.outbox.push_back((stream, write)),
                Action::Committed(sequence) => {
                    let generation = server.node.generation();
                    let (done, waiting) = std::mem::take(&mut server.pending)
                        .into_iter()
                        .partition::<Vec<_>, _>(|pending| pending.sequence <= sequence);
                    server.pending = waiting;
                    for pending in done {
                        self.generations.acknowledged(index, generation, pending.sequence);
                        self.reply(
                            index,
                            pending.client,
                            pending.attempt,
                            Reply::Written { found: pending.found },
                        );
                    }
                }
                Action::ReadsRevoked => {}
                Action::AbandonWaits | Action::LeaseLost => self.abandon_waits(index),
                Action::HistoryCleared => {
                    self.servers[index].outbox.clear();
                    self.abandon_waits(index);
                }
                Action::AnnounceReady => server.ready_pending = true,
                Action::Reregister(reason) => server.reregister = Some(reason),
                Action::RecordCommit(record) => server.record_pending = Some(record),
            }
        }
    }

    fn abandon_waits(&mut self, index: usize) {
        for pending in std::mem::take(&mut self.servers[index].pending) {
            self.reply(index, pending.client, pending.attempt, Reply::Refused(ErrorCode::ERR_UNAVAILABLE));
        }
    }

    fn reply(&mut self, index: usize, client: usize, attempt: u64, reply: Reply) {
        self.trace(|| format!("s{index} -> client {client}: {reply:?}"));
        let delay = self.rng.between(0, 3);
        self.schedule(delay, Event::Reply { client, attempt, reply });
    }

    /// After every event: the sender's and the ack writer's work.
    /// The replication sender is a thread of its own: it is woken, and
    /// runs a moment later (unless the process is paused by then, when what
    /// it had queued waits, as a stopped process's would).
    pub(super) fn after_step(&mut self, index: usize) {
        if !std::mem::replace(&mut self.servers[index].sender_woken, true) {
            let delay = self.rng.between(0, 2);
            self.schedule(delay, Event::SenderWake(index));
        }
        self.ack_work(index);
    }

    pub fn sender_wake(&mut self, index: usize) {
        self.servers[index].sender_woken = false;
        self.sender_work(index);
        self.ack_work(index);
    }

    // ---- the periodic work ----

    pub fn server_tick(&mut self, index: usize) {
        if !self.servers[index].alive {
            return;
        }
        let now = self.now_ms;
        let mut actions = Vec::new();
        self.servers[index].node.tick(now, &mut actions);
        self.carry_out(index, actions);
        let (overdue, waiting) = std::mem::take(&mut self.servers[index].pending)
            .into_iter()
            .partition::<Vec<_>, _>(|pending| pending.deadline_ms <= now);
        self.servers[index].pending = waiting;
        for pending in overdue {
            self.reply(index, pending.client, pending.attempt, Reply::Refused(ErrorCode::ERR_UNAVAILABLE));
        }
        self.membership_work(index);
        self.after_step(index);
        self.schedule(TICK_MS, Event::Tick(index));
    }

    fn membership_work(&mut self, index: usize) {
        let now = self.now_ms;
        let reachable = !self.zk_cut.contains(&index);
        let Some(session) = self.servers[index].session else {
            if reachable && now >= self.servers[index].register_at_ms {
                self.register(index);
            }
            return;
        };
        if !reachable {
            return;
        }
        if now >= self.servers[index].next_confirm_ms {
            self.servers[index].next_confirm_ms = now + SESSION_TIMEOUT_MS / 5;
            if self.zk.session_alive(session) {
                self.zk.ping(session, now);
                self.servers[index].node.lease_confirmed(now + SESSION_TIMEOUT_MS * 9 / 10);
                self.deliver_view(index);
            } else {
                self.leave(index, "session expired");
                return;
            }
        }
        if let Some(record) = self.servers[index].record_pending.take() {
            self.trace(|| format!("s{index}: commit record {record:?}"));
            if self.zk.set_record(record.clone()) {
                self.generations.recorded(&record);
            }
            self.notify_watchers();
        }
        if self.servers[index].ready_pending {
            // A request can be lost across a reconnect; the membership
            // thread tries again until it sees the announcement done.
            match self.rng.below(20) {
                0 => self.trace(|| format!("s{index}: announce lost")),
                applied => {
                    let name = self.servers[index].name.clone();
                    if self.zk.set_readiness(session, &name, Readiness::Ready) {
                        self.trace(|| format!("s{index}: announced ready"));
                        self.notify_watchers();
                    }
                    // Applied, but the reply was lost: announced again later.
                    self.servers[index].ready_pending = applied == 1;
                }
            }
        }
    }

    /// Registers in a new session: as `Recovering` with a former ready
    /// member's table, else empty as `Joining`.
    fn register(&mut self, index: usize) {
        let now = self.now_ms;
        let session = self.zk.open_session(index, now);
        let mut actions = Vec::new();
        let server = &mut self.servers[index];
        let readiness = server.node.registration(&mut server.store, &mut actions);
        self.carry_out(index, actions);
        let Some(name) = self.zk.create_member(session, &format!("s{index}"), readiness, index as u64 + 1)
        else {
            return;
        };
        self.trace(|| format!("s{index} registered as {name} ({readiness})"));
        let server = &mut self.servers[index];
        server.session = Some(session);
        server.name = name;
        server.registered_ms = now;
        server.next_confirm_ms = now;
        // Requests of the old registration are void, as in the server's
        // membership loop (swarm testing found a record from before a
        // session loss written in the next one, overwriting a newer one).
        server.ready_pending = false;
        server.record_pending = None;
        self.notify_watchers();
    }

    /// Our session is over (expired, or our node is gone): fence, close it,
    /// register again after a pause.
    fn leave(&mut self, index: usize, reason: &str) {
        self.trace(|| format!("s{index} leaves: {reason}"));
        let mut actions = Vec::new();
        self.servers[index].node.fence(reason, &mut actions);
        self.carry_out(index, actions);
        if let Some(session) = self.servers[index].session.take()
            && self.zk.close_session(session).is_some()
        {
            self.notify_watchers();
        }
        self.servers[index].register_at_ms = self.now_ms + RETRY_PAUSE_MS;
        self.after_step(index);
    }

    pub fn server_view(&mut self, index: usize, session: u64, view: ChainView) {
        if self.servers[index].session != Some(session) || !self.servers[index].alive {
            return;
        }
        let name = self.servers[index].name.clone();
        if view.position_of(&name).is_none() {
            if !self.zk.session_alive(session) || self.zk.view().position_of(&name).is_none() {
                self.leave(index, "our node is not in the chain");
            }
            return;
        }
        let mut actions = Vec::new();
        self.servers[index].node.view_changed(&view, &name, &mut actions);
        if self.tracing() {
            let members: Vec<String> = view
                .members
                .iter()
                .map(|member| format!("{}={}:{}", member.address, member.name, member.readiness))
                .collect();
            let node = &self.servers[index].node;
            let line = format!(
                "s{index} view {} {members:?} record {:?}: {} {:?} gen {}",
                view.epoch,
                view.record,
                node.role().name(),
                node.progress(),
                node.generation()
            );
            self.trace(|| line);
        }
        self.carry_out(index, actions);
        if let Some(reason) = self.servers[index].reregister.take() {
            self.leave(index, reason);
            return;
        }
        let server = &self.servers[index];
        let holding = Holding {
            recoverable_history: server.node.recoverable_history(),
            installed_history: server.node.installed_history(),
            table_empty: server.store.is_empty(),
        };
        let registered = self.now_ms - server.registered_ms;
        match bootstrap::decide(&view, &name, holding, registered, SESSION_TIMEOUT_MS) {
            Bootstrap::NotDue => {}
            decision @ (Bootstrap::Start | Bootstrap::StartLosingWrites) => {
                let generation = decision.generation(&view.record).expect("a start has a generation");
                self.servers[index].node.starting_chain(generation);
                if !self.zk_cut.contains(&index) && self.zk.set_readiness(session, &name, Readiness::Ready) {
                    self.trace(|| {
                        format!("s{index} starts the chain as generation {generation} ({decision:?})")
                    });
                    let node = &self.servers[index].node;
                    let (held, applied) = (node.generation(), node.progress().applied);
                    self.generations.chain_started(index, held, applied, generation);
                    self.notify_watchers();
                }
            }
            Bootstrap::Reregister(reason) => self.leave(index, reason),
        }
        self.after_step(index);
    }

    // ---- client requests ----

    pub fn server_request(&mut self, index: usize, client: usize, attempt: u64, request: Request) {
        let now = self.now_ms;
        let mut actions = Vec::new();
        let server = &mut self.servers[index];
        let applied_before = server.node.progress().applied;
        let reply = match request {
            Request::Write { client_id, request_id, key, value } => {
                match server.node.client_write(
                    client_id,
                    request_id,
                    &key,
                    value,
                    now,
                    &mut server.store,
                    &mut actions,
                ) {
                    Ok(receipt) if receipt.sequence <= server.node.progress().committed => {
                        self.generations.acknowledged(index, server.node.generation(), receipt.sequence);
                        Some(Reply::Written { found: receipt.found })
                    }
                    Ok(receipt) => {
                        let deadline_ms = now + COMMIT_TIMEOUT_MS;
                        let found = receipt.found;
                        server.pending.push(Pending {
                            sequence: receipt.sequence,
                            client,
                            attempt,
                            found,
                            deadline_ms,
                        });
                        None
                    }
                    Err(refusal) => Some(Reply::Refused(refusal.code)),
                }
            }
            Request::Read { key } => match server.node.check_may_read(now) {
                Ok(()) => Some(Reply::Read(server.store.get(&key).cloned())),
                Err(refusal) => Some(Reply::Refused(refusal.code)),
            },
        };
        self.carry_out(index, actions);
        if let Some(reply) = reply {
            self.reply(index, client, attempt, reply);
        }
        self.after_step(index);
        // A pause meant to land between applying a write and forwarding it.
        if let Some(duration) = self.servers[index].pause_after_write.take()
            && self.servers[index].node.progress().applied > applied_before
        {
            self.servers[index].paused_until_ms = Some(now + duration);
        }
    }
}
