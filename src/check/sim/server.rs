//! A simulated server process: the real protocol ([`ChainNode`] and the
//! link ends of `chain::link`) with the simulated counterparts of the
//! threads around it in `table-server`: the replication links (`links.rs`,
//! transports only), the membership thread (register, lease, views,
//! bootstrap) and the service (client writes wait for their commit).

use std::collections::{BTreeMap, VecDeque};

use super::SimConfig;
use super::client::{Reply, Request};
use super::disk::{Carry, SimDisk};
use super::links::DownConnection;
use super::migrate::{Driving, Importing, gate_of};
use super::world::{Event, SESSION_TIMEOUT_MS, TICK_MS, World, chain_path};
use crate::chain::bootstrap::Holding;
use crate::chain::link::{Downlink, Uplink};
use crate::chain::registration::{Duty, Registration, SessionTiming, ViewVerdict};
use crate::chain::slot_gate::Admission;
use crate::chain::{Action, ChainNode, NodeConfig, Outcome, Progress, ReadKeys, Store, Welcome, WriteOp};
use crate::proto::{Downstream, ErrorCode, ReplicaHello, Write};
use crate::shard::map::ShardMap;
use crate::shard::slot::slot_of;
use crate::view::{ChainView, Readiness};

/// A client write waits this long for its commit (ms), as `--commit-timeout`.
const COMMIT_TIMEOUT_MS: u64 = 2000;
/// Pause before registering again after losing the session (ms).
const RETRY_PAUSE_MS: u64 = 500;
/// A simulated server confirms its session every fifth of the timeout and
/// holds its lease for nine tenths of it from the confirmation.
const SESSION_TIMING: SessionTiming = SessionTiming {
    timeout_ms: SESSION_TIMEOUT_MS,
    confirm_interval_ms: SESSION_TIMEOUT_MS / 5,
    lease_ms: SESSION_TIMEOUT_MS * 9 / 10,
    retry_ms: TICK_MS,
};

/// A frame on a replication link.
#[derive(Debug)]
pub enum LinkMessage {
    Hello(ReplicaHello),
    Welcome(Result<Welcome, String>),
    Frame(Downstream),
    /// An ack, stamped with its sender's clock (the read lease's stamp).
    Ack(Progress, u64),
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

    fn put_many(&mut self, pairs: &[(&str, &[u8])]) {
        for (key, value) in pairs {
            self.insert((*key).to_owned(), value.to_vec());
        }
    }

    fn value_of(&self, key: &str) -> Option<Vec<u8>> {
        self.get(key).cloned()
    }
}

/// A client write waiting for its commit.
pub(super) struct Pending {
    sequence: u64,
    client: usize,
    attempt: u64,
    outcome: Outcome,
    deadline_ms: u64,
}

pub struct Server {
    /// The chain it is a member of (its index; see `world::chain_path`).
    pub chain: usize,
    pub node: ChainNode,
    pub store: SimStore,
    pub alive: bool,
    /// Paused (SIGSTOP) until then: it handles nothing meanwhile.
    pub paused_until_ms: Option<u64>,
    /// The replication queue.
    pub(super) outbox: VecDeque<(u64, Write)>,
    /// The predecessor's end of the link to the successor (the core's).
    pub(super) link: Downlink,
    /// The connection it runs on.
    pub(super) down: Option<DownConnection>,
    /// Accepted links from predecessors, by connection.
    pub(super) uplinks: BTreeMap<usize, Uplink>,
    pub(super) pending: Vec<Pending>,
    /// ZooKeeper session, while registered.
    pub session: Option<u64>,
    /// Our registration in it (the core's membership decisions).
    pub(super) registration: Option<Registration>,
    pub(super) register_at_ms: u64,
    /// A wake-up of the sender is scheduled.
    pub(super) sender_woken: bool,
    /// The node asked to register again, for this reason.
    pub(super) reregister: Option<&'static str>,
    /// Pause for this long right after the next client write is applied,
    /// before the sender forwards it.
    pub pause_after_write: Option<u64>,
    /// The disk, in a durable run (see `disk.rs`).
    pub(super) disk: Option<SimDisk>,
    /// Connections numbered below this were made before this process
    /// started (a crashed process's): what arrives on them is lost.
    pub(super) first_connection: usize,
    /// The shard map as this server last read it (several chains only).
    pub(super) known_map: Option<ShardMap>,
    /// Driving a migration of its chain's slots (as the head).
    pub(super) driving: Option<Driving>,
    /// Taking a migration stream (as the target's head).
    pub(super) importing: Option<Importing>,
}

impl Server {
    pub fn new(index: usize, chain: usize, config: &SimConfig) -> Server {
        let server_id = index as u64 + 1;
        let node_config = NodeConfig {
            standalone: false,
            chain_path: chain_path(chain),
            client_records_max: 1000,
            bug: config.bug,
            server_id,
            memory_bytes_max: None,
        };
        let durable = config.durable;
        let mut node = ChainNode::new(node_config);
        if durable {
            node.set_durable(server_id);
        }
        Server {
            chain,
            node,
            store: SimStore::new(),
            alive: true,
            paused_until_ms: None,
            outbox: VecDeque::new(),
            link: Downlink::with_bug(config.bug),
            down: None,
            uplinks: BTreeMap::new(),
            pending: Vec::new(),
            session: None,
            registration: None,
            register_at_ms: 0,
            sender_woken: false,
            reregister: None,
            pause_after_write: None,
            disk: durable.then(SimDisk::default),
            first_connection: 0,
            known_map: None,
            driving: None,
            importing: None,
        }
    }
}

/// The key a simulated client's write is about.
fn write_key(op: &WriteOp) -> &str {
    match op {
        WriteOp::Set { key, .. } | WriteOp::Cas { key, .. } | WriteOp::Incr { key, .. } => key,
        other => unreachable!("simulated clients do not send {other:?}"),
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
                    self.check_durability(index, sequence);
                    let server = &mut self.servers[index];
                    let (chain, generation) = (server.chain, server.node.generation());
                    let (done, waiting) = std::mem::take(&mut server.pending)
                        .into_iter()
                        .partition::<Vec<_>, _>(|pending| pending.sequence <= sequence);
                    server.pending = waiting;
                    for pending in done {
                        self.generations[chain].acknowledged(index, generation, pending.sequence);
                        self.reply(index, pending.client, pending.attempt, Reply::Written(pending.outcome));
                    }
                }
                Action::ReadsRevoked => {}
                Action::AbandonWaits | Action::LeaseLost => self.abandon_waits(index),
                Action::HistoryCleared => {
                    self.servers[index].outbox.clear();
                    self.abandon_waits(index);
                }
                Action::AnnounceReady => {
                    if let Some(registration) = &mut server.registration {
                        registration.announce_requested();
                    }
                }
                Action::Reregister(reason) => server.reregister = Some(reason),
                Action::RemoveMember { name, .. } => {
                    // One ZooKeeper call, which a server cut off from
                    // ZooKeeper cannot make.
                    let chain = self.servers[index].chain;
                    if !self.zk_cut.contains(&index) && self.zk.remove_member(chain, &name) {
                        self.trace(|| format!("zk: s{index} removed {name}"));
                        self.notify_watchers();
                    }
                }
                Action::RecordCommit(record) => {
                    if let Some(registration) = &mut server.registration {
                        registration.record_requested(record);
                    }
                }
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
        let now = self.clock(index);
        let mut actions = Carry::default();
        self.servers[index].node.tick(now, &mut actions);
        self.carry(index, actions);
        let (overdue, waiting) = std::mem::take(&mut self.servers[index].pending)
            .into_iter()
            .partition::<Vec<_>, _>(|pending| pending.deadline_ms <= now);
        self.servers[index].pending = waiting;
        for pending in overdue {
            self.reply(index, pending.client, pending.attempt, Reply::Refused(ErrorCode::ERR_UNAVAILABLE));
        }
        self.membership_work(index);
        if self.map.is_some() {
            self.migration_tick(index);
        }
        self.after_step(index);
        self.schedule(TICK_MS, Event::Tick(index));
    }

    /// Carries out what the registration owes ZooKeeper.
    fn membership_work(&mut self, index: usize) {
        let now = self.clock(index);
        let reachable = !self.zk_cut.contains(&index);
        let Some(session) = self.servers[index].session else {
            if reachable && now >= self.servers[index].register_at_ms {
                self.register(index);
            }
            return;
        };
        let Some(registration) = &self.servers[index].registration else { return };
        if !reachable {
            return;
        }
        for duty in registration.duties(now) {
            match duty {
                Duty::Confirm if self.zk.session_alive(session) => {
                    self.zk.ping(session, self.now_ms);
                    let registration = self.servers[index].registration.as_mut().expect("registered");
                    let until = registration.confirmed(now);
                    self.servers[index].node.lease_confirmed(until);
                    self.deliver_view(index);
                }
                Duty::Confirm => {
                    self.leave(index, "session expired");
                    return;
                }
                Duty::WriteRecord(record) => {
                    self.trace(|| format!("s{index}: commit record {record:?}"));
                    let chain = self.servers[index].chain;
                    if self.zk.set_record(chain, record.clone()) {
                        self.generations[chain].recorded(&record);
                    }
                    if let Some(registration) = &mut self.servers[index].registration {
                        registration.record_written(&record);
                    }
                    self.notify_watchers();
                }
                Duty::Announce => self.announce(index, session),
            }
        }
    }

    /// Announces server `index` ready. A request can be lost across a
    /// reconnect; the registration asks again until it sees it done.
    fn announce(&mut self, index: usize, session: u64) {
        match self.rng.below(20) {
            0 => self.trace(|| format!("s{index}: announce lost")),
            applied => {
                let Some(registration) = &mut self.servers[index].registration else { return };
                let name = registration.name().to_owned();
                if self.zk.set_readiness(self.servers[index].chain, session, &name, Readiness::Ready) {
                    self.trace(|| format!("s{index}: readiness written"));
                    self.notify_watchers();
                }
                // Applied, but the reply was lost: announced again later.
                if applied != 1
                    && let Some(registration) = &mut self.servers[index].registration
                {
                    registration.announced();
                }
            }
        }
    }

    /// Registers in a new session: as `Recovering` with a former ready
    /// member's table, else empty as `Joining`.
    fn register(&mut self, index: usize) {
        let now = self.clock(index);
        let session = self.zk.open_session(index, self.now_ms);
        let mut actions = Carry::default();
        let server = &mut self.servers[index];
        let readiness = server.node.registration(&mut server.store, &mut actions);
        self.carry(index, actions);
        let chain = self.servers[index].chain;
        let Some(name) =
            self.zk.create_member(chain, session, &format!("s{index}"), readiness, index as u64 + 1)
        else {
            return;
        };
        self.trace(|| format!("s{index} registered as {name} ({readiness})"));
        let server = &mut self.servers[index];
        server.session = Some(session);
        server.registration = Some(Registration::new(name, SESSION_TIMING, now));
        self.notify_watchers();
    }

    /// Our session is over (expired, or our node is gone): fence, close it,
    /// register again after a pause.
    fn leave(&mut self, index: usize, reason: &str) {
        self.trace(|| format!("s{index} leaves: {reason}"));
        let mut actions = Carry::default();
        self.servers[index].node.fence(reason, &mut actions);
        self.carry(index, actions);
        self.servers[index].registration = None;
        if let Some(session) = self.servers[index].session.take()
            && self.zk.close_session(session).is_some()
        {
            self.notify_watchers();
        }
        self.servers[index].register_at_ms = self.clock(index) + RETRY_PAUSE_MS;
        self.after_step(index);
    }

    pub fn server_view(&mut self, index: usize, session: u64, view: ChainView) {
        if self.servers[index].session != Some(session) || !self.servers[index].alive {
            return;
        }
        let Some(registration) = &self.servers[index].registration else { return };
        let name = registration.name().to_owned();
        if let Err(reason) = registration.listed_in(&view) {
            // A view delivered late may predate our node: believe it only
            // if ZooKeeper agrees now.
            let now_listed = registration.listed_in(&self.zk.view(self.servers[index].chain));
            if !self.zk.session_alive(session) || now_listed.is_err() {
                self.leave(index, reason);
            }
            return;
        }
        let mut actions = Carry::default();
        self.servers[index].node.view_changed(&view, &name, &mut actions);
        self.trace_view(index, &view);
        self.carry(index, actions);
        if let Some(reason) = self.servers[index].reregister.take() {
            self.leave(index, reason);
            return;
        }
        let now = self.clock(index);
        let server = &mut self.servers[index];
        let holding = Holding {
            recoverable_history: server.node.recoverable_history(),
            installed_history: server.node.installed_history(),
            table_empty: server.store.is_empty(),
        };
        let registration = server.registration.as_mut().expect("registered");
        match registration.bootstrap(&view, holding, now) {
            ViewVerdict::Follow | ViewVerdict::AwaitingNamedMember => {}
            ViewVerdict::Start { decision, generation } => {
                self.servers[index].node.starting_chain(generation);
                let chain = self.servers[index].chain;
                if !self.zk_cut.contains(&index)
                    && self.zk.set_readiness(chain, session, &name, Readiness::Ready)
                {
                    self.trace(|| {
                        format!("s{index} starts the chain as generation {generation} ({decision:?})")
                    });
                    let node = &self.servers[index].node;
                    let (held, applied) = (node.generation(), node.progress().applied);
                    self.generations[self.servers[index].chain]
                        .chain_started(index, held, applied, generation);
                    self.notify_watchers();
                }
            }
            ViewVerdict::Leave(reason) => self.leave(index, reason),
        }
        self.after_step(index);
    }

    fn trace_view(&mut self, index: usize, view: &ChainView) {
        if !self.tracing() {
            return;
        }
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

    // ---- client requests ----

    /// Why server `index` may not answer `request`'s key now, as the real
    /// server refuses it: another chain owns its slot (ERR_MOVED), or a
    /// migration paused it (retryable). Never with one chain (no map).
    fn slot_refusal(&self, index: usize, request: &Request) -> Option<ErrorCode> {
        self.map.as_ref()?;
        let key = match request {
            Request::Read { key } => key,
            Request::Write { op, .. } => write_key(op),
        };
        let server = &self.servers[index];
        let Some(map) = &server.known_map else { return Some(ErrorCode::ERR_UNAVAILABLE) };
        let gate = gate_of(&server.store, self.config.bug);
        match gate.admit(Some(map), &chain_path(server.chain), slot_of(key)) {
            Admission::Serve => None,
            Admission::Paused => Some(ErrorCode::ERR_UNAVAILABLE),
            Admission::Moved { .. } => Some(ErrorCode::ERR_MOVED),
        }
    }

    pub fn server_request(&mut self, index: usize, client: usize, attempt: u64, request: Request) {
        if let Some(code) = self.slot_refusal(index, &request) {
            self.reply(index, client, attempt, Reply::Refused(code));
            return;
        }
        let now = self.clock(index);
        let mut actions = Carry::default();
        let server = &mut self.servers[index];
        let applied_before = server.node.progress().applied;
        let mut new_write = None;
        let reply = match request {
            Request::Write { client_id, request_id, op } => {
                let key = write_key(&op).to_owned();
                match server.node.client_write(
                    client_id,
                    request_id,
                    op,
                    now,
                    &mut server.store,
                    &mut actions,
                ) {
                    Ok(receipt) => {
                        if receipt.sequence > applied_before {
                            let outcome = receipt.outcome.clone();
                            new_write = Some((client_id, request_id, key, receipt.sequence, outcome));
                        }
                        if receipt.sequence <= server.node.progress().committed {
                            let generation = server.node.generation();
                            self.generations[server.chain].acknowledged(index, generation, receipt.sequence);
                            Some(Reply::Written(receipt.outcome))
                        } else {
                            let deadline_ms = now + COMMIT_TIMEOUT_MS;
                            let (sequence, outcome) = (receipt.sequence, receipt.outcome);
                            server.pending.push(Pending { sequence, client, attempt, outcome, deadline_ms });
                            None
                        }
                    }
                    Err(refusal) => Some(Reply::Refused(refusal.code)),
                }
            }
            Request::Read { key } => match server.node.check_may_read(now) {
                // The server waits for the write this read would show to
                // commit; here the client is told to retry.
                Ok(())
                    if server.node.read_waits_for(ReadKeys::One(&key)) > server.node.progress().committed =>
                {
                    Some(Reply::Refused(ErrorCode::ERR_UNAVAILABLE))
                }
                Ok(()) => Some(Reply::Read(server.store.get(&key).cloned())),
                Err(refusal) => Some(Reply::Refused(refusal.code)),
            },
        };
        self.carry(index, actions);
        if let Some((client_id, request_id, key, sequence, outcome)) = new_write {
            self.applied_write(index, (client_id, request_id), &key, sequence, &outcome);
        }
        if let Some(reply) = reply {
            self.reply(index, client, attempt, reply);
        }
        self.after_step(index);
        // A pause meant to land between applying a write and forwarding it.
        if let Some(duration) = self.servers[index].pause_after_write.take()
            && self.servers[index].node.progress().applied > applied_before
        {
            self.servers[index].paused_until_ms = Some(self.now_ms + duration);
        }
    }
}
