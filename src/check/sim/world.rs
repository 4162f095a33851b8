//! The simulated world: a seeded scheduler of events in simulated time, the
//! network between servers (connections that are FIFO per direction, with
//! delays, slow links and partitions); the fault schedule is in `swarm.rs`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::SimConfig;
use super::client::{Client, Reply, Request};
use super::clock::SimClock;
use super::generations::GenerationCheck;
use super::migrate::StreamFrame;
use super::peer_auth::PeerAuth;
use super::server::{LinkMessage, Server};
use super::swarm::{Heal, Swarm, Trap};
use super::zk::SimZk;
use crate::check::history::History;
use crate::check::random::SplitMix64;
use crate::shard::map::ShardMap;
use crate::view::ChainView;

/// ZooKeeper session timeout of every simulated server (ms).
pub const SESSION_TIMEOUT_MS: u64 = 1000;
/// How often a server's threads look at their work (ms): lease, commit
/// timeouts, membership checks, the replication sender.
pub const TICK_MS: u64 = 20;
/// Time after the last client operation for the chain to settle, with
/// every fault healed, before the replicas are compared (ms).
const QUIET_MS: u64 = 15_000;
/// Hard bound on a run's simulated time (ms), faults or not.
const RUN_MS_MAX: u64 = 600_000;
/// Events one run may take; a run that needs more is stuck (a few hundred
/// thousand is typical).
const EVENTS_MAX: u64 = 20_000_000;

/// Something that happens at a moment of simulated time.
#[derive(Debug)]
pub enum Event {
    /// A server's periodic work.
    Tick(usize),
    /// A server's replication sender runs.
    SenderWake(usize),
    /// A message arrives at one end of a connection.
    Message { connection: usize, to_successor: bool, message: LinkMessage },
    /// The other end closed a connection (or it broke).
    Closed { connection: usize, to_successor: bool },
    /// A server reads the chain (a watch fired, or its periodic re-read).
    View { server: usize, session: u64, view: ChainView },
    /// A request from a client arrives at a server.
    Request { server: usize, client: usize, attempt: u64, request: Request },
    /// A server's reply arrives at its client.
    Reply { client: usize, attempt: u64, reply: Reply },
    /// A client gives up waiting for one attempt.
    AttemptTimeout { client: usize, attempt: u64 },
    /// A client starts its next operation, or retries the current one.
    ClientNext(usize),
    /// ZooKeeper expires the sessions it has not heard from.
    ZkExpire,
    /// The nemesis injects its next fault.
    Nemesis,
    /// The impostor's next try (see `peer_auth`).
    Impostor,
    /// A fault ends.
    Heal(Heal),
    /// A server's disk syncs what was logged (see `disk.rs`).
    DiskSync(usize),
    /// A crashed durable server starts again on its disk.
    Restart(usize),
    /// An aimed fault's later strike: `server` is cut off from ZooKeeper
    /// for `duration` ms (see `HandOverLoss::PredecessorToo`).
    CutFromZk { server: usize, duration: u64 },
    /// A server reads the shard map (its watch fired, or its re-read).
    MapRead { server: usize, map: ShardMap },
    /// A frame of a migration stream arrives at the target's head.
    MigrationFrame(StreamFrame),
    /// The target's head acks what its chain committed of the stream.
    MigrationAck { to: usize, attempt: u64, items: u64 },
    /// The migration link of `attempt` broke.
    MigrationBroken { to: usize, attempt: u64 },
    /// The nemesis of migrations starts or aborts one.
    MigrateNemesis,
}

/// The ZooKeeper path of chain `chain`: `/chain` for the first (as a run
/// of one chain always had), `/chain<n>` for the others.
pub fn chain_path(chain: usize) -> String {
    if chain == 0 { "/chain".to_owned() } else { format!("/chain{chain}") }
}

struct Scheduled {
    at_ms: u64,
    order: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.order) == (other.at_ms, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ms, self.order).cmp(&(other.at_ms, other.order))
    }
}

/// A replication connection from `predecessor` to `successor`.
pub struct Connection {
    pub predecessor: usize,
    pub successor: usize,
    pub open: bool,
    /// Latest delivery time scheduled per direction (index: to_successor),
    /// so messages on one connection stay in order.
    last_delivery_ms: [u64; 2],
}

pub struct World {
    pub now_ms: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    order: u64,
    pub rng: SplitMix64,
    pub config: SimConfig,
    pub zk: SimZk,
    pub servers: Vec<Server>,
    /// Each server's own clock (by index), drifting against the world's.
    clocks: Vec<SimClock>,
    pub clients: Vec<Client>,
    pub connections: Vec<Connection>,
    pub history: History,
    trace: Option<Vec<String>>,
    /// Pairs of servers that cannot reach each other.
    pub(super) partitions: BTreeSet<(usize, usize)>,
    /// Pairs whose open connections survive the partition: what is sent
    /// meanwhile is held and arrives when it heals (TCP retransmits), by
    /// then perhaps from a server that is no longer the predecessor.
    pub(super) held: BTreeMap<(usize, usize), u64>,
    /// Servers cut off from ZooKeeper.
    pub zk_cut: BTreeSet<usize>,
    /// Servers whose membership thread reads no view until the given time
    /// (it stalls; ZooKeeper goes on without it).
    pub(super) views_stalled_until: BTreeMap<usize, u64>,
    /// Servers whose messages are slow.
    pub(super) slow: BTreeSet<usize>,
    /// Last view delivery time per server: views reach a server in the
    /// order they were read (its membership thread reads them one by one).
    view_delivery_ms: BTreeMap<usize, u64>,
    /// Client operations started so far.
    pub operations_started: usize,
    /// The last operation ended: faults stop, the chain settles.
    pub quiet_since_ms: Option<u64>,
    /// Open faults, to end them when the run goes quiet.
    pub(super) open_faults: BTreeMap<u64, (usize, Heal)>,
    pub(super) next_fault: u64,
    /// This seed's mix of faults (swarm testing).
    pub(super) swarm: Swarm,
    /// An aimed fault waiting for its moment.
    pub(super) trap: Option<Trap>,
    /// Set when the run spent its event budget.
    livelock: Option<String>,
    /// Link handshakes and the impostor (see `peer_auth`).
    pub(super) peer_auth: PeerAuth,
    /// The generation rule over the run, by chain.
    pub(super) generations: Vec<GenerationCheck>,
    /// The first breach of the durability rule (see `disk`).
    pub(super) durability: Option<String>,
    /// The shard map of a run of several chains (`--chains`): clients
    /// route by it, servers refuse keys of other chains by it. `None` with
    /// one chain, which runs exactly as before shards.
    pub map: Option<ShardMap>,
    /// Latest delivery time per migration link (from, to): links are FIFO.
    pub(super) migration_fifo: BTreeMap<(usize, usize), u64>,
}

impl World {
    pub fn new(config: &SimConfig) -> World {
        let mut rng = SplitMix64::new(config.seed);
        let swarm = Swarm::draw(&mut rng);
        let mut world = World {
            now_ms: 0,
            queue: BinaryHeap::new(),
            order: 0,
            rng,
            config: config.clone(),
            zk: SimZk::new(SESSION_TIMEOUT_MS, config.chains),
            servers: Vec::new(),
            clocks: Vec::new(),
            clients: Vec::new(),
            connections: Vec::new(),
            history: History { seed: config.seed, ..History::default() },
            trace: config.trace.then(Vec::new),
            partitions: BTreeSet::new(),
            held: BTreeMap::new(),
            zk_cut: BTreeSet::new(),
            views_stalled_until: BTreeMap::new(),
            slow: BTreeSet::new(),
            view_delivery_ms: BTreeMap::new(),
            operations_started: 0,
            quiet_since_ms: None,
            open_faults: BTreeMap::new(),
            next_fault: 0,
            swarm,
            trap: None,
            livelock: None,
            peer_auth: PeerAuth::new(config.seed),
            generations: (0..config.chains.max(1)).map(|_| GenerationCheck::new(config.durable)).collect(),
            durability: None,
            map: (config.chains > 1).then(|| {
                let paths: Vec<String> = (0..config.chains).map(chain_path).collect();
                ShardMap::split_evenly(&paths).expect("a map of distinct chains")
            }),
            migration_fifo: BTreeMap::new(),
        };
        for chain in 0..config.chains.max(1) {
            for _ in 0..config.nodes.max(1) {
                world.start_server(chain);
            }
        }
        let clients = 3 + world.rng.below(3) as usize;
        for index in 0..clients {
            world.clients.push(Client::new(index));
            let start = 300 + world.rng.below(50);
            world.schedule(start, Event::ClientNext(index));
        }
        world.schedule(100, Event::ZkExpire);
        let first_fault = 500 + world.rng.below(1000);
        world.schedule(first_fault, Event::Nemesis);
        world.schedule(first_fault, Event::Impostor);
        if config.chains > 1 {
            let first_migration = world.rng.between(300, 1500);
            world.schedule(first_migration, Event::MigrateNemesis);
        }
        world
    }

    /// Runs until the clients are done and the chain has been quiet, or
    /// until the event budget is spent (a livelock: reported as a failure).
    pub fn run(&mut self) {
        let mut budget = EVENTS_MAX;
        while let Some(Reverse(scheduled)) = self.queue.pop() {
            budget -= 1;
            if budget == 0 {
                self.livelock =
                    Some(format!("{EVENTS_MAX} events by {} ms: the run did not settle", self.now_ms));
                break;
            }
            assert!(scheduled.at_ms >= self.now_ms, "time never goes back");
            self.now_ms = scheduled.at_ms;
            if self.quiet_since_ms.is_some_and(|since| self.now_ms > since + QUIET_MS)
                || self.now_ms > RUN_MS_MAX
            {
                break;
            }
            self.handle(scheduled.event);
        }
    }

    /// The history, the divergence found (if any) and the trace.
    pub fn finish(self) -> (History, Option<String>, Vec<String>) {
        let divergence = self
            .livelock
            .clone()
            .or_else(|| {
                let breach = self.generations.iter().find_map(GenerationCheck::violation);
                breach.map(|breach| format!("generation rule broken: {breach}"))
            })
            .or_else(|| self.durability.clone().map(|breach| format!("durability rule broken: {breach}")))
            .or_else(|| self.divergence());
        (self.history, divergence, self.trace.unwrap_or_default())
    }

    /// Schedules `event` `delay_ms` from now.
    pub fn schedule(&mut self, delay_ms: u64, event: Event) {
        self.order += 1;
        self.queue.push(Reverse(Scheduled { at_ms: self.now_ms + delay_ms, order: self.order, event }));
    }

    pub fn tracing(&self) -> bool {
        self.trace.is_some()
    }

    /// Records a line of the trace (only formatted when tracing).
    pub fn trace(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            let line = line();
            trace.push(format!("{:>8} ms  {line}", self.now_ms));
        }
    }

    fn handle(&mut self, event: Event) {
        // A paused server handles nothing until it resumes: its events wait.
        if let Some(server) = self.target(&event) {
            if !self.servers[server].alive || self.before_restart(server, &event) {
                return;
            }
            match self.servers[server].paused_until_ms {
                Some(until) if until > self.now_ms => {
                    self.schedule(until - self.now_ms, event);
                    return;
                }
                Some(_) => self.servers[server].paused_until_ms = None,
                None => {}
            }
        }
        match event {
            Event::Tick(server) => self.server_tick(server),
            Event::SenderWake(server) => self.sender_wake(server),
            Event::Message { connection, to_successor, message } => {
                self.trace(|| {
                    format!("conn {connection} {} {message:?}", if to_successor { "->" } else { "<-" })
                });
                self.server_message(connection, to_successor, message)
            }
            Event::Closed { connection, to_successor } => self.server_link_closed(connection, to_successor),
            Event::View { server, session, view } => self.server_view(server, session, view),
            Event::Request { server, client, attempt, request } => {
                self.server_request(server, client, attempt, request)
            }
            Event::Reply { client, attempt, reply } => self.client_reply(client, attempt, reply),
            Event::AttemptTimeout { client, attempt } => self.client_timeout(client, attempt),
            Event::ClientNext(client) => self.client_next(client),
            Event::ZkExpire => {
                for server in self.zk.expire(self.now_ms) {
                    self.trace(|| format!("zk: session of s{server} expired"));
                    self.notify_watchers();
                }
                self.schedule(100, Event::ZkExpire);
            }
            Event::Nemesis => self.nemesis(),
            Event::Impostor => self.impostor(),
            Event::Heal(heal) => self.heal(heal),
            Event::DiskSync(server) => self.disk_sync(server),
            Event::Restart(server) => self.restart(server),
            Event::CutFromZk { server, duration } => self.cut_from_zk(server, duration),
            Event::MapRead { server, map } => self.map_read(server, map),
            Event::MigrationFrame(frame) => {
                self.trace(|| format!("migration {frame:?}"));
                self.migration_frame(frame)
            }
            Event::MigrationAck { to, attempt, items } => self.migration_ack(to, attempt, items),
            Event::MigrationBroken { to, attempt } => self.migration_broken(to, attempt),
            Event::MigrateNemesis => self.migrate_nemesis(),
        }
    }

    /// Whether `event` came on a connection of a process that crashed
    /// before `server` restarted: lost with it.
    fn before_restart(&self, server: usize, event: &Event) -> bool {
        match event {
            Event::Message { connection, .. } | Event::Closed { connection, .. } => {
                *connection < self.servers[server].first_connection
            }
            _ => false,
        }
    }

    /// The server an event happens in, if any.
    fn target(&self, event: &Event) -> Option<usize> {
        match event {
            Event::Tick(server)
            | Event::SenderWake(server)
            | Event::DiskSync(server)
            | Event::View { server, .. }
            | Event::MapRead { server, .. }
            | Event::MigrationFrame(StreamFrame { to: server, .. })
            | Event::MigrationAck { to: server, .. }
            | Event::MigrationBroken { to: server, .. }
            | Event::Request { server, .. } => Some(*server),
            Event::Message { connection, to_successor, .. } | Event::Closed { connection, to_successor } => {
                let connection = &self.connections[*connection];
                Some(if *to_successor { connection.successor } else { connection.predecessor })
            }
            _ => None,
        }
    }

    /// Starts a new, empty server of chain `chain`; it registers at its
    /// first tick.
    pub fn start_server(&mut self, chain: usize) -> usize {
        let index = self.servers.len();
        self.servers.push(Server::new(index, chain, &self.config));
        self.servers[index].known_map = self.map.clone();
        let clock = SimClock::draw(&mut self.rng);
        self.clocks.push(clock);
        let first_tick = self.rng.below(TICK_MS);
        self.schedule(first_tick, Event::Tick(index));
        index
    }

    /// The time on server `index`'s own clock: what its node is told.
    pub(super) fn clock(&self, index: usize) -> u64 {
        self.clocks[index].at(self.now_ms)
    }

    // ---- network ----

    /// A message's delay on the network from or to `server` (ms).
    fn delay_ms(&mut self, server: usize) -> u64 {
        if self.slow.contains(&server) {
            let (low, high) = self.swarm.slow_ms;
            return self.rng.between(low, high);
        }
        let late = self.swarm.late_per_mille;
        match self.rng.below(1000) {
            drawn if drawn >= late => self.rng.between(0, 2),
            drawn if drawn >= late / 10 => self.rng.between(3, 20),
            _ => self.rng.between(20, 150),
        }
    }

    pub(super) fn reachable(&self, a: usize, b: usize) -> bool {
        !self.partitions.contains(&(a.min(b), a.max(b))) && self.servers[a].alive && self.servers[b].alive
    }

    /// Opens a connection from `predecessor` to `successor`; `None` if it
    /// cannot be made (partitioned, or the successor is dead).
    pub fn connect(&mut self, predecessor: usize, successor: usize) -> Option<usize> {
        if !self.reachable(predecessor, successor) {
            return None;
        }
        self.connections.push(Connection { predecessor, successor, open: true, last_delivery_ms: [0, 0] });
        Some(self.connections.len() - 1)
    }

    /// Sends `message` on `connection`, in order behind what was sent before.
    pub fn send(&mut self, connection: usize, to_successor: bool, message: LinkMessage) {
        if !self.connections[connection].open {
            return;
        }
        let from = self.end(connection, !to_successor);
        let to = self.end(connection, to_successor);
        let (trapped_ms, breaks) = self.trap_on_send(connection, to_successor, &message);
        let mut delay = self.delay_ms(from) + trapped_ms;
        if let Some(&heals_ms) = self.held.get(&(from.min(to), from.max(to))) {
            delay += heals_ms.saturating_sub(self.now_ms);
        }
        let at = self.fifo_time(connection, to_successor, delay);
        self.schedule(at - self.now_ms, Event::Message { connection, to_successor, message });
        if breaks {
            self.close(connection);
        }
    }

    fn fifo_time(&mut self, connection: usize, to_successor: bool, delay_ms: u64) -> u64 {
        let slot = &mut self.connections[connection].last_delivery_ms[usize::from(to_successor)];
        *slot = (*slot).max(self.now_ms + delay_ms);
        *slot
    }

    /// The server at one end of `connection`.
    pub fn end(&self, connection: usize, successor_end: bool) -> usize {
        let connection = &self.connections[connection];
        if successor_end { connection.successor } else { connection.predecessor }
    }

    /// Closes `connection` from one side; the other side hears of it after
    /// what was already sent.
    pub fn close(&mut self, connection: usize) {
        if !std::mem::replace(&mut self.connections[connection].open, false) {
            return;
        }
        for to_successor in [true, false] {
            let at = self.fifo_time(connection, to_successor, 1);
            self.order += 1;
            let event = Event::Closed { connection, to_successor };
            self.queue.push(Reverse(Scheduled { at_ms: at, order: self.order, event }));
        }
    }

    /// Breaks every open connection between `a` and `b` (or of `a` with
    /// anyone, when `b` is `None`).
    pub(super) fn break_connections(&mut self, a: usize, b: Option<usize>) {
        let broken: Vec<usize> = (0..self.connections.len())
            .filter(|&index| {
                let connection = &self.connections[index];
                let ends = [connection.predecessor, connection.successor];
                connection.open && ends.contains(&a) && b.is_none_or(|b| ends.contains(&b))
            })
            .collect();
        for connection in broken {
            self.close(connection);
        }
    }

    // ---- ZooKeeper's side ----

    /// Tells every server with a live session that the chain changed: each
    /// reads it after a while, in order; a few notifications are lost (the
    /// periodic re-read catches up).
    pub fn notify_watchers(&mut self) {
        self.trap_on_view_change();
        for server in self.zk.session_owners() {
            if self.rng.below(1000) < self.swarm.lost_watch_per_mille {
                self.trace(|| format!("zk: watch of s{server} lost"));
                continue;
            }
            self.deliver_view(server);
        }
    }

    /// `server` reads the chain now (if it can reach ZooKeeper) and acts on
    /// it a little later, after any view it read before.
    pub fn deliver_view(&mut self, server: usize) {
        let Some(session) = self.servers[server].session else { return };
        if self.zk_cut.contains(&server) || !self.servers[server].alive {
            return;
        }
        if self.views_stalled_until.get(&server).is_some_and(|&until| self.now_ms < until) {
            self.trace(|| format!("s{server} reads no view (stalled)"));
            return;
        }
        let view = self.zk.view(self.servers[server].chain);
        let delay = self.rng.between(1, 30);
        let last = self.view_delivery_ms.entry(server).or_insert(0);
        *last = (*last).max(self.now_ms + delay);
        let at = *last;
        self.schedule(at - self.now_ms, Event::View { server, session, view });
    }

    /// Once quiet: in every chain, every live ready member must hold the
    /// same table at the same sequence number.
    fn divergence(&self) -> Option<String> {
        (0..self.config.chains.max(1)).find_map(|chain| self.chain_divergence(chain))
    }

    fn chain_divergence(&self, chain: usize) -> Option<String> {
        let view = self.zk.view(chain);
        let ready: Vec<usize> = view
            .ready()
            .filter_map(|member| member.address.strip_prefix('s')?.parse::<usize>().ok())
            .filter(|&server| self.servers[server].alive)
            .collect();
        let first = *ready.first()?;
        for &other in &ready[1..] {
            let (a, b) = (&self.servers[first], &self.servers[other]);
            if a.node.progress().applied != b.node.progress().applied || a.store != b.store {
                return Some(format!(
                    "replicas diverged: s{first} applied {} ({} keys), s{other} applied {} ({} keys)",
                    a.node.progress().applied,
                    a.store.len(),
                    b.node.progress().applied,
                    b.store.len()
                ));
            }
        }
        None
    }
}
