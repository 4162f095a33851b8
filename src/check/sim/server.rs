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
use crate::proto::{Entry, ErrorCode, ReplicaHello, SnapshotChunk, Write};
use crate::view::{ChainView, CommitRecord, Readiness};

/// A client write waits this long for its commit (ms), as `--commit-timeout`.
const COMMIT_TIMEOUT_MS: u64 = 2000;
/// Pause before registering again after losing the session (ms).
const RETRY_PAUSE_MS: u64 = 500;
/// Entries per snapshot chunk: small, so transfers take several chunks.
const CHUNK_ENTRIES: usize = 2;

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

    fn is_empty(&self) -> bool {
        BTreeMap::is_empty(self)
    }
}

/// The sending side of our link to the successor.
struct Downlink {
    connection: usize,
    successor: String,
    /// The welcome came and the stream started.
    streaming: bool,
    /// The successor's latest cumulative ack.
    acked: Progress,
}

/// The receiving side of a link from a predecessor.
struct Uplink {
    sender: String,
    /// The link's number, from our welcome.
    link: u64,
    /// No snapshot chunk received yet on this link.
    first_chunk: bool,
    /// Progress last acknowledged on it.
    reported: Progress,
}

/// A client write waiting for its commit.
struct Pending {
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
    outbox: VecDeque<(u64, Write)>,
    sent: SentList,
    downlink: Option<Downlink>,
    uplinks: BTreeMap<usize, Uplink>,
    pending: Vec<Pending>,
    /// ZooKeeper session, while registered.
    pub session: Option<u64>,
    name: String,
    registered_ms: u64,
    register_at_ms: u64,
    next_confirm_ms: u64,
    /// The node asked to be announced ready.
    ready_pending: bool,
    /// The node asked for this commit record to be written.
    record_pending: Option<CommitRecord>,
    /// A wake-up of the sender is scheduled.
    sender_woken: bool,
    /// Pause for this long right after the next client write is applied,
    /// before the sender forwards it.
    pub pause_after_write: Option<u64>,
}

impl Server {
    pub fn new(index: usize, config: &SimConfig) -> Server {
        let server_id = index as u64 + 1;
        let node_config =
            NodeConfig { standalone: false, client_records_max: 1000, bug: config.bug, server_id };
        Server {
            node: ChainNode::new(node_config),
            store: SimStore::new(),
            alive: true,
            paused_until_ms: None,
            outbox: VecDeque::new(),
            sent: SentList::default(),
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
    fn carry_out(&mut self, index: usize, actions: Vec<Action>) {
        for action in actions {
            let server = &mut self.servers[index];
            match action {
                Action::Forward { stream, write } => server.outbox.push_back((stream, write)),
                Action::Committed(sequence) => {
                    let (done, waiting) = std::mem::take(&mut server.pending)
                        .into_iter()
                        .partition::<Vec<_>, _>(|pending| pending.sequence <= sequence);
                    server.pending = waiting;
                    for pending in done {
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
    fn after_step(&mut self, index: usize) {
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
            self.zk.set_record(record);
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
        server.ready_pending = false;
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
                "s{index} view {} {members:?} record {:?}: {} {:?}",
                view.epoch,
                view.record,
                node.role().name(),
                node.progress()
            );
            self.trace(|| line);
        }
        self.carry_out(index, actions);
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
                if !self.zk_cut.contains(&index) && self.zk.set_readiness(session, &name, Readiness::Ready) {
                    self.trace(|| format!("s{index} starts the chain ({decision:?})"));
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

    // ---- replication: sending side ----

    /// The replication sender's work: (re)connect to the successor, stream
    /// the queue through the Sent list, hand the tail role over.
    fn sender_work(&mut self, index: usize) {
        let server = &self.servers[index];
        let successor = server.node.successor().filter(|_| server.node.may_replicate()).cloned();
        let Some(successor) = successor else {
            let server = &mut self.servers[index];
            if !server.node.forwards() || !server.node.may_replicate() {
                // Nobody to forward to: what was queued will never be sent.
                server.outbox.clear();
                server.sent.forget();
            }
            if let Some(downlink) = server.downlink.take() {
                self.close(downlink.connection);
            }
            return;
        };
        if let Some(downlink) = &self.servers[index].downlink
            && downlink.successor != successor.name
        {
            let connection = downlink.connection;
            self.servers[index].downlink = None;
            self.close(connection);
        }
        let Some(downlink) = &self.servers[index].downlink else {
            let Some(target) = server_of(&successor.address) else { return };
            let Some(connection) = self.connect(index, target) else { return };
            let server = &mut self.servers[index];
            let mut hello = ReplicaHello::new();
            hello.sender = server.name.clone();
            hello.receiver = successor.name.clone();
            hello.epoch = server.node.view_epoch();
            server.downlink = Some(Downlink {
                connection,
                successor: successor.name,
                streaming: false,
                acked: Progress::default(),
            });
            self.send(connection, true, LinkMessage::Hello(hello));
            return;
        };
        if !downlink.streaming {
            return;
        }
        let (connection, acked) = (downlink.connection, downlink.acked);
        if self.servers[index].sent.trim(acked.committed).is_err() {
            self.drop_downlink(index);
            return;
        }
        let mut actions = Vec::new();
        let promote_at = self.servers[index].node.try_hand_over(&successor.name, acked.applied, &mut actions);
        self.carry_out(index, actions);
        let server = &mut self.servers[index];
        let before = server.sent.len();
        let mut continuous = true;
        while let Some((stream, write)) = server.outbox.pop_front() {
            continuous &= server.sent.push(stream, write);
        }
        if !continuous {
            self.drop_downlink(index);
            return;
        }
        let writes: Vec<Write> = server.sent.after(0).skip(before).cloned().collect();
        if !writes.is_empty() || promote_at.is_some() {
            self.send(connection, true, LinkMessage::Batch { writes, promote_at });
        }
    }

    fn drop_downlink(&mut self, index: usize) {
        if let Some(downlink) = self.servers[index].downlink.take() {
            self.close(downlink.connection);
        }
    }

    /// The successor answered our hello: resume from the Sent list, or
    /// stream a snapshot first.
    fn on_welcome(&mut self, index: usize, connection: usize, welcome: Result<Welcome, String>) {
        let Ok(welcome) = welcome else {
            self.drop_downlink(index);
            return;
        };
        let server = &mut self.servers[index];
        let mut continuous = true;
        while let Some((stream, write)) = server.outbox.pop_front() {
            continuous &= server.sent.push(stream, write);
        }
        if welcome.wants_snapshot || !continuous || !server.sent.can_resume_after(welcome.last_applied) {
            let Some(point) = server.node.snapshot_point() else {
                self.drop_downlink(index);
                return;
            };
            let (sequence, write_epoch) = (point.sequence, point.write_epoch);
            server.sent.restart_at(server.node.stream(), sequence);
            let entries: Vec<Entry> = server
                .store
                .iter()
                .map(|(key, value)| Entry::from_pair((key.clone(), value.clone())))
                .collect();
            let total_keys = entries.len() as u64;
            let mut chunks: Vec<SnapshotChunk> = entries
                .chunks(CHUNK_ENTRIES)
                .map(|part| {
                    let mut chunk = SnapshotChunk::new();
                    chunk.sequence = sequence;
                    chunk.write_epoch = write_epoch;
                    chunk.total_keys = total_keys;
                    chunk.entries = part.to_vec();
                    chunk
                })
                .collect();
            if chunks.is_empty() {
                chunks.push(SnapshotChunk { sequence, write_epoch, ..SnapshotChunk::new() });
            }
            chunks[0].clients = point.clients;
            if let Some(last) = chunks.last_mut() {
                last.last = true;
            }
            for chunk in chunks {
                self.send(connection, true, LinkMessage::Chunk(chunk));
            }
        } else {
            let writes: Vec<Write> = server.sent.after(welcome.last_applied).cloned().collect();
            if !writes.is_empty() {
                self.send(connection, true, LinkMessage::Batch { writes, promote_at: None });
            }
        }
        if let Some(downlink) = &mut self.servers[index].downlink {
            downlink.streaming = true;
        }
        self.after_step(index);
    }

    fn on_ack(&mut self, index: usize, progress: Progress) {
        let Some(downlink) = &mut self.servers[index].downlink else { return };
        downlink.acked.applied = downlink.acked.applied.max(progress.applied);
        downlink.acked.committed = downlink.acked.committed.max(progress.committed);
        let successor = downlink.successor.clone();
        let now = self.now_ms;
        let mut actions = Vec::new();
        let result =
            self.servers[index].node.successor_ack(&successor, progress.committed, now, &mut actions);
        self.carry_out(index, actions);
        if result.is_err() {
            self.drop_downlink(index);
        }
        self.after_step(index);
    }

    // ---- replication: receiving side ----

    pub fn server_message(&mut self, connection: usize, to_successor: bool, message: LinkMessage) {
        let index = self.end(connection, to_successor);
        if !self.servers[index].alive {
            return;
        }
        if !to_successor {
            let ours =
                self.servers[index].downlink.as_ref().is_some_and(|link| link.connection == connection);
            match message {
                LinkMessage::Welcome(welcome) if ours => self.on_welcome(index, connection, welcome),
                LinkMessage::Ack(progress) if ours => self.on_ack(index, progress),
                _ => {}
            }
            return;
        }
        let result = match message {
            LinkMessage::Hello(hello) => {
                match self.servers[index].node.link_hello(&hello) {
                    Ok(welcome) => {
                        let (sender, link, reported) = (hello.sender, welcome.link, Progress::default());
                        let uplink = Uplink { sender, link, first_chunk: true, reported };
                        self.servers[index].uplinks.insert(connection, uplink);
                        self.send(connection, false, LinkMessage::Welcome(Ok(welcome)));
                    }
                    Err(refusal) => {
                        self.send(connection, false, LinkMessage::Welcome(Err(refusal.message)));
                        self.close(connection);
                    }
                }
                Ok(())
            }
            message => self.receive(index, connection, message),
        };
        if result.is_err() {
            self.servers[index].uplinks.remove(&connection);
            self.close(connection);
        }
        self.after_step(index);
    }

    /// A frame on an accepted link from a predecessor.
    fn receive(&mut self, index: usize, connection: usize, message: LinkMessage) -> Result<(), ()> {
        let Some(uplink) = self.servers[index].uplinks.get_mut(&connection) else { return Err(()) };
        let (sender, link) = (uplink.sender.clone(), uplink.link);
        let first =
            matches!(message, LinkMessage::Chunk(_)) && std::mem::replace(&mut uplink.first_chunk, false);
        let server = &mut self.servers[index];
        server.node.check_link(&sender, link).map_err(|_| ())?;
        let mut actions = Vec::new();
        let result = match message {
            LinkMessage::Batch { writes, promote_at } => {
                let mut result =
                    server.node.replicated_batch(&sender, link, writes, &mut server.store, &mut actions);
                if let (Ok(()), Some(sequence)) = (&result, promote_at) {
                    result = server.node.hand_over_mark(&sender, link, sequence, &mut actions);
                }
                result
            }
            LinkMessage::Chunk(chunk) => {
                server.node.snapshot_chunk(&sender, link, chunk, first, &mut server.store, &mut actions)
            }
            _ => Ok(()),
        };
        self.carry_out(index, actions);
        result.map_err(|_| ())
    }

    /// The ack writer's work: report progress up every link whose sender
    /// is still our predecessor; cut the others.
    fn ack_work(&mut self, index: usize) {
        let connections: Vec<usize> = self.servers[index].uplinks.keys().copied().collect();
        for connection in connections {
            let server = &mut self.servers[index];
            let Some(uplink) = server.uplinks.get_mut(&connection) else { continue };
            match server.node.progress_for(&uplink.sender, uplink.link) {
                None => {
                    server.uplinks.remove(&connection);
                    self.close(connection);
                }
                Some(progress) if progress != uplink.reported => {
                    uplink.reported = progress;
                    self.send(connection, false, LinkMessage::Ack(progress));
                }
                Some(_) => {}
            }
        }
    }

    pub fn server_link_closed(&mut self, connection: usize, to_successor: bool) {
        let index = self.end(connection, to_successor);
        let server = &mut self.servers[index];
        if to_successor {
            server.uplinks.remove(&connection);
        } else if server.downlink.as_ref().is_some_and(|link| link.connection == connection) {
            server.downlink = None;
        }
    }
}
