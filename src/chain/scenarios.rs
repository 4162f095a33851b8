//! Scenario tests: every protocol bug the simulator found (the seeds in
//! `check::sim`'s `FOUND`), replayed as an explicit schedule of events into
//! real [`ChainNode`]s. A seed guards its fix only loosely: it replays a
//! different run as soon as the simulator changes. These schedules do not
//! change, and each fails when its fix is removed (the doc comment of each
//! test names the check it pins). The tests after them kill mutants that
//! `scripts/mutants.sh` found no test noticed.
//!
//! The harness below ([`Chain`], [`Server`]) plays the world around the
//! nodes: ZooKeeper's views and commit record, links, the replication
//! sender's frames, acks and clients; tests read like the schedule. Only
//! the harness calls the node's methods, so it is the one place to edit when
//! their names change.

use std::collections::BTreeMap;

use super::bootstrap::{self, Bootstrap, Holding};
use super::eviction::{Evidence, Hold};
use super::injected::Check;
use super::link::{Ack, Downlink, Start, Uplink};
use super::{
    Action, ChainNode, Decline, NodeConfig, Outcome, ReadKeys, Refusal, Role, Welcome, WriteOp, WriteReceipt,
};
use crate::check::sim::server::SimStore;
use crate::limits::{
    READ_LEASE_MS, RECORD_PROGRESS_INTERVAL_MS, REMOVAL_INTERVAL_MIN_MS, REPLICATION_HEARTBEAT_INTERVAL_MS,
    SUSPECT_REMOVAL_AFTER_MS,
};
use crate::proto::{Entry, ErrorCode, ReplicaHello, SnapshotChunk, Write};
use crate::view::Readiness::{self, Joining, Ready};
use crate::view::{ChainView, CommitRecord, Member, test_member};

/// The time of every event (ms).
const NOW_MS: u64 = 1_000;
/// Every confirmed lease runs far past [`NOW_MS`].
const LEASE_UNTIL_MS: u64 = 1_000_000;
/// The session timeout the bootstrap decisions use: the server's default.
const SESSION_TIMEOUT_MS: u64 = 5_000;
/// The client of every write.
const CLIENT: u64 = 7;

/// One server: a real node, its table, every action it decided (in order),
/// and its ZooKeeper registration.
struct Server {
    id: u64,
    /// The sequence number of its current ZooKeeper node.
    sequence: u64,
    node: ChainNode,
    store: SimStore,
    actions: Vec<Action>,
    /// Actions before this index were looked at for forwarded writes.
    forwarded_up_to: usize,
    /// The latest link accepted from each predecessor (by server id).
    links: BTreeMap<u64, u64>,
}

/// How a scenario's servers are made.
#[derive(Clone, Copy, Default)]
struct Setup {
    /// The injected bug of every server.
    bug: Option<Check>,
    /// Every server logs to a (scripted) disk: see [`Server::syncs`].
    durable: bool,
}

impl Server {
    fn new(id: u64, setup: Setup) -> Server {
        let config = NodeConfig {
            chain_path: "/chain".into(),
            standalone: false,
            client_records_max: 100,
            bug: setup.bug,
            server_id: id,
            memory_bytes_max: None,
        };
        let mut node = ChainNode::new(config);
        if setup.durable {
            node.set_durable(id);
        }
        Server {
            id,
            sequence: id,
            node,
            store: SimStore::new(),
            actions: Vec::new(),
            forwarded_up_to: 0,
            links: BTreeMap::new(),
        }
    }

    /// Its ZooKeeper node's name.
    fn name(&self) -> String {
        self.member(Readiness::Joining).name
    }

    fn member(&self, readiness: Readiness) -> Member {
        Member { server_id: self.id, ..test_member(self.sequence, readiness) }
    }

    fn sees(&mut self, view: &ChainView) {
        let name = self.name();
        self.node.view_changed(view, &name, &mut self.actions);
    }

    fn tick(&mut self) {
        self.tick_at(NOW_MS);
    }

    fn tick_at(&mut self, now_ms: u64) {
        self.node.tick(now_ms, &mut self.actions);
    }

    /// The session is lost: fenced at once.
    fn loses_session(&mut self) {
        self.node.fence("session lost", &mut self.actions);
    }

    /// Registers again, as a new ZooKeeper node `sequence`, with a fresh
    /// lease; returns what it registers as.
    fn registers(&mut self, sequence: u64) -> Readiness {
        self.sequence = sequence;
        self.links.clear();
        self.node.lease_confirmed(LEASE_UNTIL_MS);
        self.node.registration(&mut self.store, &mut self.actions)
    }

    /// What it decides on `view`, `registered_ms` after registering.
    fn decides(&self, view: &ChainView, registered_ms: u64) -> Bootstrap {
        let holding = Holding {
            recoverable_history: self.node.recoverable_history(),
            installed_history: self.node.installed_history(),
            table_empty: self.store.is_empty(),
        };
        bootstrap::decide(view, &self.name(), holding, registered_ms, SESSION_TIMEOUT_MS)
    }

    /// It announces itself ready as the first member of a chain of
    /// `generation` (its bootstrap decision was to start it).
    fn starts_chain(&mut self, generation: u64) {
        self.node.starting_chain(generation);
    }

    fn generation(&self) -> u64 {
        self.node.generation()
    }

    /// Its table's and client records' memory, as `--max-memory` counts it.
    fn used_memory(&self) -> u64 {
        self.node.used_memory(&self.store)
    }

    fn applied(&self) -> u64 {
        self.node.progress().applied
    }

    fn committed(&self) -> u64 {
        self.node.progress().committed
    }

    /// Every commit point it published, in order.
    fn commits(&self) -> Vec<u64> {
        self.actions
            .iter()
            .filter_map(|action| match action {
                Action::Committed(sequence) => Some(*sequence),
                _ => None,
            })
            .collect()
    }

    fn serves_reads(&self) -> bool {
        self.serves_reads_at(NOW_MS)
    }

    fn serves_reads_at(&self, now_ms: u64) -> bool {
        self.node.check_may_read(now_ms).is_ok()
    }

    /// Durable: its disk reports everything up to `sequence` synced.
    fn syncs(&mut self, sequence: u64) {
        let history = self.node.history();
        self.node.synced_to(history, sequence, &mut self.actions);
    }

    /// Durable: whether a read of `key` now would wait for a write to
    /// commit before it answers.
    fn read_of_waits(&self, key: &str) -> bool {
        self.node.read_waits_for(ReadKeys::One(key)) > self.committed()
    }

    /// The number of its current run of forwarded writes.
    fn stream(&self) -> u64 {
        self.node.stream()
    }

    fn lease_until_ms(&self) -> u64 {
        self.node.lease_until_ms()
    }

    /// How many times it stopped the reads in progress.
    fn reads_revoked(&self) -> usize {
        self.actions.iter().filter(|action| **action == Action::ReadsRevoked).count()
    }

    /// The latest commit record it asked to be written.
    fn asked_record(&self) -> Option<CommitRecord> {
        self.actions.iter().rev().find_map(|action| match action {
            Action::RecordCommit(record) => Some(record.clone()),
            _ => None,
        })
    }

    /// How many times it asked for a commit record to be written.
    fn records_asked(&self) -> usize {
        self.actions.iter().filter(|action| matches!(action, Action::RecordCommit(_))).count()
    }

    fn asked_to_reregister(&self) -> bool {
        self.actions.iter().any(|action| matches!(action, Action::Reregister(_)))
    }

    fn announced_ready(&self) -> bool {
        self.actions.contains(&Action::AnnounceReady)
    }

    /// It could not reach `peer` (a server of the scenario), with this
    /// evidence, at `now_ms`.
    fn cannot_reach(&mut self, peer: &str, evidence: Evidence, now_ms: u64) -> Result<(), Hold> {
        self.node.peer_unreachable(peer, evidence, now_ms, &mut self.actions)
    }

    /// The members it asked ZooKeeper to remove, in order.
    fn removals_asked(&self) -> Vec<String> {
        let asked = self.actions.iter().filter_map(|action| match action {
            Action::RemoveMember { name, .. } => Some(name.clone()),
            _ => None,
        });
        asked.collect()
    }

    /// The writes it forwarded since last asked.
    fn take_forwarded(&mut self) -> Vec<Write> {
        self.take_queued().into_iter().map(|(_, write)| write).collect()
    }

    /// The same with each write's stream, as the sender's queue holds them.
    fn take_queued(&mut self) -> Vec<(u64, Write)> {
        let new = &self.actions[self.forwarded_up_to..];
        let writes = new
            .iter()
            .filter_map(|action| match action {
                Action::Forward { stream, write } => Some((*stream, write.clone())),
                _ => None,
            })
            .collect();
        self.forwarded_up_to = self.actions.len();
        writes
    }

    /// Its whole table as one snapshot chunk (first and last), as the
    /// replication sender takes it; `None` when it may not replicate.
    fn snapshot(&self) -> Option<SnapshotChunk> {
        let point = self.node.snapshot_point()?;
        let mut chunk = point.chunk_header(self.store.len() as u64);
        chunk.clients = point.clients;
        chunk.entries = self
            .store
            .iter()
            .map(|(key, value)| {
                let mut entry = Entry::new();
                entry.key = key.clone();
                entry.value = value.clone();
                entry
            })
            .collect();
        chunk.last = true;
        Some(chunk)
    }
}

/// Servers by id, the chain node's commit record in ZooKeeper, and the
/// client's next request id.
struct Chain {
    servers: BTreeMap<u64, Server>,
    record: CommitRecord,
    request_id: u64,
    setup: Setup,
}

impl Chain {
    /// New, empty servers `ids` (each registered as node `id`, with a
    /// lease), made as `setup` says.
    fn with_setup(ids: &[u64], setup: Setup) -> Chain {
        let mut chain =
            Chain { servers: BTreeMap::new(), record: CommitRecord::default(), request_id: 0, setup };
        for &id in ids {
            chain.add(id);
        }
        chain
    }

    /// A new, empty server `id`, registered as node `id`, with a lease.
    fn add(&mut self, id: u64) {
        let mut server = Server::new(id, self.setup);
        server.node.lease_confirmed(LEASE_UNTIL_MS);
        self.servers.insert(id, server);
    }

    /// A live chain of `ids` in this order, all ready in view `epoch`, whose
    /// commit record (generation 1) names them all, each linked to its
    /// successor.
    fn ready(ids: &[u64], epoch: u64) -> Chain {
        Chain::ready_with(ids, epoch, Setup::default())
    }

    fn ready_with(ids: &[u64], epoch: u64, setup: Setup) -> Chain {
        let mut chain = Chain::with_setup(ids, setup);
        for (index, &id) in ids.iter().enumerate() {
            let giver = index.checked_sub(1).map(|before| chain.s(ids[before]).name());
            let node = &mut chain.s(id).node;
            match giver {
                None => node.starting_chain(1),
                Some(giver) => node.assume_handed_over_by(&giver),
            }
        }
        chain.record = CommitRecord { epoch, servers: ids.to_vec(), generation: 1, committed: 0 };
        let ready: Vec<(u64, Readiness)> = ids.iter().map(|&id| (id, Ready)).collect();
        let view = chain.view(epoch, &ready);
        chain.show(ids, &view);
        for pair in ids.windows(2) {
            chain.link(pair[0], pair[1], epoch).expect("a chain links up");
        }
        chain
    }

    fn s(&mut self, id: u64) -> &mut Server {
        self.servers.get_mut(&id).expect("a server of the scenario")
    }

    /// ZooKeeper's view `epoch`: these servers (as registered now), and the
    /// chain node's record as it is.
    fn view(&self, epoch: u64, members: &[(u64, Readiness)]) -> ChainView {
        let members = members.iter().map(|&(id, readiness)| self.servers[&id].member(readiness)).collect();
        ChainView::new(members, epoch).with_record(self.record.clone())
    }

    /// The record `tail` asked for is written into the chain node. It asks
    /// at a tick once the read lease of a successor that left its view ran
    /// out (see `eviction`), or at once.
    fn write_record(&mut self, tail: u64) {
        self.s(tail).tick_at(NOW_MS + SUSPECT_REMOVAL_AFTER_MS);
        self.record = self.s(tail).asked_record().expect("the tail asks for a record");
    }

    /// The membership changes to `members` in view `epoch`: each of them
    /// reads it, the tail's record is written, and they read it again.
    fn settle(&mut self, epoch: u64, members: &[(u64, Readiness)]) -> ChainView {
        let ids: Vec<u64> = members.iter().map(|&(id, _)| id).collect();
        let tail =
            members.iter().rev().find(|(_, readiness)| readiness.is_ready()).expect("a ready member").0;
        let view = self.view(epoch, members);
        self.show(&ids, &view);
        self.write_record(tail);
        let view = self.view(epoch, members);
        self.show(&ids, &view);
        view
    }

    /// Servers `ids` read `view`.
    fn show(&mut self, ids: &[u64], view: &ChainView) {
        for &id in ids {
            self.s(id).sees(view);
        }
    }

    /// `from` opens a link to `to`, in its view `epoch`.
    fn link(&mut self, from: u64, to: u64, epoch: u64) -> Result<Welcome, Refusal> {
        let mut hello = ReplicaHello::new();
        hello.sender = self.s(from).name();
        hello.receiver = self.s(to).name();
        hello.epoch = epoch;
        let receiver = self.s(to);
        let welcome = receiver.node.link_hello(&hello)?;
        receiver.links.insert(from, welcome.link);
        Ok(welcome)
    }

    /// A client's put at `head`: its sequence number.
    fn put(&mut self, head: u64, key: &str) -> Result<u64, Refusal> {
        self.request_id += 1;
        self.retry(head, self.request_id, key)
    }

    /// A client's delete at `head`: its sequence number.
    fn delete(&mut self, head: u64, key: &str) -> Result<u64, Refusal> {
        self.request_id += 1;
        self.write(head, self.request_id, key, None)
    }

    /// The client sends its put `request_id` of `key` (again) to `head`: the
    /// sequence number of the write that answers it.
    fn retry(&mut self, head: u64, request_id: u64, key: &str) -> Result<u64, Refusal> {
        self.write(head, request_id, key, Some(key.as_bytes().to_vec()))
    }

    fn write(
        &mut self,
        head: u64,
        request_id: u64,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<u64, Refusal> {
        let op = WriteOp::Set { key: key.to_owned(), value };
        Ok(self.write_op(head, request_id, op)?.sequence)
    }

    /// The client sends its write `request_id`, `op`, to `head`.
    fn write_op(&mut self, head: u64, request_id: u64, op: WriteOp) -> Result<WriteReceipt, Refusal> {
        let server = self.s(head);
        server.node.client_write(CLIENT, request_id, op, NOW_MS, &mut server.store, &mut server.actions)
    }

    /// `from` sends what it forwarded since last time to `to`, on `to`'s
    /// latest link from it.
    fn forward(&mut self, from: u64, to: u64) -> Result<(), Refusal> {
        let writes = self.s(from).take_forwarded();
        let link = self.s(to).links.get(&from).copied().unwrap_or_default();
        self.deliver_writes((from, to, link), writes)
    }

    /// `from`'s frame of `writes` arrives at `to` on link `link`.
    fn deliver_writes(
        &mut self,
        (from, to, link): (u64, u64, u64),
        writes: Vec<Write>,
    ) -> Result<(), Refusal> {
        let sender = self.s(from).name();
        let receiver = self.s(to);
        receiver.node.replicated_batch(&sender, link, writes, &mut receiver.store, &mut receiver.actions)
    }

    /// Durable: `from`'s next frame to `to` carries its synced report.
    fn report_synced(&mut self, from: u64, to: u64) {
        let report = self.s(from).node.synced_report();
        let receiver = self.s(to);
        receiver.node.upstream_synced(report, &mut receiver.actions);
    }

    /// `successor` acknowledges its progress to `to` on `to`'s link.
    fn ack(&mut self, successor: u64, to: u64) {
        self.ack_at(successor, to, NOW_MS);
    }

    /// The same, arriving at `now_ms`.
    fn ack_at(&mut self, successor: u64, to: u64, now_ms: u64) {
        let receiver_name = self.s(to).name();
        let server = self.s(successor);
        let link = server.links.get(&to).copied().unwrap_or_default();
        let Some(progress) = server.node.progress_for(&receiver_name, link) else { return };
        let name = server.name();
        let predecessor = self.s(to);
        let acked =
            predecessor.node.successor_ack(&name, progress.committed, now_ms, &mut predecessor.actions);
        acked.expect("an ack of what was sent");
    }

    /// `from`'s snapshot chunk `chunk` arrives at `to` on link `link`
    /// (`first`: the first on that link).
    fn deliver_snapshot(
        &mut self,
        (from, to, link): (u64, u64, u64),
        chunk: SnapshotChunk,
        first: bool,
    ) -> Result<(), Refusal> {
        let sender = self.s(from).name();
        let receiver = self.s(to);
        receiver.node.snapshot_chunk(&sender, link, chunk, first, &mut receiver.store, &mut receiver.actions)
    }

    /// `from` snapshots its table to `to` on `to`'s latest link from it.
    fn transfer_state(&mut self, from: u64, to: u64) -> Result<(), Refusal> {
        let chunk = self.s(from).snapshot().expect("a member holding the chain's state");
        let link = self.s(to).links[&from];
        self.deliver_snapshot((from, to, link), chunk, true)
    }

    /// An ack frame from `successor` reaches `to` claiming `committed`,
    /// whatever `successor` holds now: a frame delayed from an older link or
    /// view, or one from a peer that is not `to`'s successor.
    fn ack_claiming(&mut self, successor: u64, to: u64, committed: u64) -> Result<(), Refusal> {
        let name = self.s(successor).name();
        let predecessor = self.s(to);
        predecessor.node.successor_ack(&name, committed, NOW_MS, &mut predecessor.actions)
    }

    /// Whether the tail `from` would hand its role over to its joining
    /// successor `to` now (the mark's sequence number if so).
    fn offers_hand_over(&mut self, from: u64, to: u64) -> Option<u64> {
        let (name, applied) = (self.s(to).name(), self.s(to).applied());
        let server = self.s(from);
        server.node.try_hand_over(&name, applied, &mut server.actions)
    }

    /// The tail `from` hands its role over to its joining successor `to`
    /// once `to` caught up; `to` gets the mark on its link.
    fn hand_over(&mut self, from: u64, to: u64) -> Result<(), Refusal> {
        let (name, applied) = (self.s(to).name(), self.s(to).applied());
        let server = self.s(from);
        let mark = server.node.try_hand_over(&name, applied, &mut server.actions).expect("a hand-over");
        let sender = server.name();
        let receiver = self.s(to);
        let link = receiver.links[&from];
        receiver.node.hand_over_mark(&sender, link, mark, &mut receiver.actions)
    }

    /// `to` acks to its predecessor `from` at `stamp_ms`, and `from`'s next
    /// frame (a heartbeat) echoes the stamp, arriving at `now_ms`: the read
    /// lease is renewed (see `lease`), if `from` is `to`'s predecessor on
    /// its latest link.
    fn heartbeat_at(&mut self, from: u64, to: u64, stamp_ms: u64, now_ms: u64) -> Result<(), Refusal> {
        let sender = self.s(from).name();
        let receiver = self.s(to);
        let link = receiver.links.get(&from).copied().unwrap_or_default();
        receiver.node.heartbeat(&sender, link, stamp_ms, now_ms)
    }

    fn heartbeat(&mut self, from: u64, to: u64) {
        self.heartbeat_at(from, to, NOW_MS, NOW_MS).expect("a heartbeat from the predecessor");
    }

    /// `from` opens a link to `to` in view `epoch` through both ends of
    /// the core's link, and `to`'s welcome decides how it starts: a resume
    /// (its frames delivered) or a snapshot (left to the caller).
    fn open_link(&mut self, from: u64, to: u64, epoch: u64) -> Start {
        self.reopen_link(from, to, epoch, &mut Downlink::default())
    }

    /// The same through `from`'s `downlink`, whose Sent list a link held
    /// before may have filled.
    fn reopen_link(&mut self, from: u64, to: u64, epoch: u64, downlink: &mut Downlink) -> Start {
        let mut hello = ReplicaHello::new();
        (hello.sender, hello.receiver, hello.epoch) = (self.s(from).name(), self.s(to).name(), epoch);
        let receiver = self.s(to);
        let (mut uplink, welcome) =
            Uplink::accept(&mut receiver.node, &hello).expect("a link from our predecessor");
        receiver.links.insert(from, welcome.link);
        downlink.aim(&self.s(from).node);
        let start = downlink.welcomed(&welcome, true, &self.s(from).node, NOW_MS);
        if let Start::Resume { after, rejoin } = start {
            let receiver = self.s(to);
            for frame in downlink.resume_frames(after, rejoin, 1) {
                let (node, store, actions) = (&mut receiver.node, &mut receiver.store, &mut receiver.actions);
                uplink.receive(node, frame, NOW_MS, store, actions).expect("resumed frames apply");
            }
        }
        start
    }

    /// A write from `head` down the chain `path` and the acks back up.
    fn replicate(&mut self, path: &[u64]) {
        for pair in path.windows(2) {
            self.forward(pair[0], pair[1]).expect("writes in order");
        }
        for pair in path.windows(2).rev() {
            self.ack(pair[1], pair[0]);
        }
    }
}

/// A snapshot in two chunks: the first key, then the rest with the client
/// records.
fn split(mut chunk: SnapshotChunk) -> (SnapshotChunk, SnapshotChunk) {
    let mut first = SnapshotChunk::new();
    first.sequence = chunk.sequence;
    first.write_epoch = chunk.write_epoch;
    first.generation = chunk.generation;
    first.total_keys = chunk.total_keys;
    first.entries = chunk.entries.drain(..1).collect();
    (first, chunk)
}

fn recovering(last_applied: u64) -> Readiness {
    Readiness::Recovering { last_applied }
}

/// Servers 1 and 2 commit write 1 (a); then `lost` loses its session, and
/// the other one records itself alone and commits write 2 (b).
fn one_went_on_alone(lost: u64) -> Chain {
    let survivor = 3 - lost;
    let mut chain = Chain::ready(&[1, 2], 2);
    chain.put(1, "a").unwrap();
    chain.replicate(&[1, 2]);
    chain.s(lost).loses_session();
    chain.settle(3, &[(survivor, Ready)]);
    assert_eq!(chain.put(survivor, "b"), Ok(2));
    assert_eq!(chain.s(survivor).committed(), 2);
    chain
}

/// Seeds 10957441510175221598 and 2 (after a total outage): a server that
/// left while the chain went on restarted it from its old table. Pins the
/// commit record's say in `bootstrap::decide` (`candidate` only among the
/// members the record names).
#[test]
fn a_member_that_left_while_the_chain_went_on_does_not_restart_it() {
    let mut chain = Chain::ready(&[1, 2, 3], 2);
    chain.put(1, "a").unwrap();
    chain.replicate(&[1, 2, 3]);
    // 3 loses its session; the chain goes on without it.
    chain.s(3).loses_session();
    chain.settle(3, &[(1, Ready), (2, Ready)]);
    assert_eq!(chain.record.servers, vec![1, 2]);
    let b = chain.put(1, "b").unwrap();
    chain.replicate(&[1, 2]);
    assert_eq!(chain.s(1).committed(), b, "b is acknowledged");

    // A total outage; 3 comes back first, with the table it left with.
    chain.s(1).loses_session();
    chain.s(2).loses_session();
    assert_eq!(chain.s(3).registers(4), recovering(1));
    let outage = chain.view(5, &[(3, recovering(1))]);
    assert_eq!(chain.s(3).decides(&outage, SESSION_TIMEOUT_MS), Bootstrap::NotDue, "3 would lose b");

    // 2, named in the record, comes back and restarts the chain with b.
    assert_eq!(chain.s(2).registers(5), recovering(b));
    let back = chain.view(6, &[(3, recovering(1)), (2, recovering(b))]);
    assert_eq!(chain.s(2).decides(&back, SESSION_TIMEOUT_MS), Bootstrap::Start);
    assert_eq!(chain.s(3).decides(&back, 100 * SESSION_TIMEOUT_MS), Bootstrap::NotDue);
}

/// Seed 10431781820377147055: the chain restarted without a named server
/// that faults kept away for ten session timeouts. Pins the fallback wait,
/// `RESTART_FALLBACK_TIMEOUTS` (60: five minutes at the default timeout).
#[test]
fn a_named_member_kept_away_is_waited_for_five_minutes() {
    let mut chain = one_went_on_alone(2);
    // 1 is cut off for good; 2 comes back with a, not b.
    chain.s(1).loses_session();
    assert_eq!(chain.s(2).registers(3), recovering(1));
    let outage = chain.view(4, &[(2, recovering(1))]);
    for timeouts in [10, 30, 59] {
        let waited = timeouts * SESSION_TIMEOUT_MS;
        assert_eq!(chain.s(2).decides(&outage, waited), Bootstrap::NotDue, "after {timeouts} timeouts");
    }
    let decision = chain.s(2).decides(&outage, 60 * SESSION_TIMEOUT_MS);
    assert_eq!(decision, Bootstrap::StartLosingWrites);
    // It restarts the chain in a new generation, and records it.
    let generation = decision.generation(&chain.record).expect("a start");
    chain.s(2).starts_chain(generation);
    chain.show(&[2], &chain.view(5, &[(2, Ready)]));
    assert_eq!(chain.s(2).generation(), 2);
    assert_eq!(chain.s(2).asked_record().map(|record| record.generation), Some(2));
}

/// Seed 6845672590148449974: a recovering server that registered before
/// the one that restarted the chain joined behind it and, once ready,
/// became the head (ready members are ordered by sequence), ahead of writes
/// it lacked. Pins `misplaced` in `bootstrap::decide`.
#[test]
fn a_member_registered_before_a_ready_one_registers_again() {
    let mut chain = one_went_on_alone(1);
    // An outage: 1 registers first (node 4), then 2 (node 5), which the
    // record names and which restarts the chain.
    chain.s(2).loses_session();
    assert_eq!(chain.s(1).registers(4), recovering(1));
    assert_eq!(chain.s(2).registers(5), recovering(2));
    let outage = chain.view(4, &[(1, recovering(1)), (2, recovering(2))]);
    assert_eq!(chain.s(2).decides(&outage, SESSION_TIMEOUT_MS), Bootstrap::Start);
    chain.s(2).starts_chain(1);
    let restarted = chain.view(5, &[(1, recovering(1)), (2, Ready)]);
    chain.show(&[1, 2], &restarted);
    assert!(matches!(chain.s(1).decides(&restarted, SESSION_TIMEOUT_MS), Bootstrap::Reregister(_)));
}

/// Seed 2785660778863579421: a recovering server wrote itself into the
/// commit record (and then restarted the chain from its old table). Two
/// recovering servers started the chain from different views; the one that
/// is ready behind another without a hand-over must register again and
/// record nothing. Pins the `Lifecycle::Ready` condition of `wanted_record`.
#[test]
fn a_member_ready_without_a_hand_over_writes_no_commit_record() {
    let mut chain = Chain::ready(&[1, 2], 2);
    chain.put(1, "a").unwrap();
    chain.replicate(&[1, 2]);
    chain.put(1, "b").unwrap();
    chain.s(1).loses_session();
    chain.s(2).loses_session();
    assert_eq!(chain.s(2).registers(3), recovering(1));
    // 2 saw itself alone; 1, registered a moment later, saw both.
    let alone = chain.view(3, &[(2, recovering(1))]);
    chain.show(&[2], &alone);
    assert_eq!(chain.s(2).decides(&alone, SESSION_TIMEOUT_MS), Bootstrap::Start);
    assert_eq!(chain.s(1).registers(4), recovering(2));
    let both = chain.view(4, &[(2, recovering(1)), (1, recovering(2))]);
    chain.show(&[1], &both);
    assert_eq!(chain.s(1).decides(&both, SESSION_TIMEOUT_MS), Bootstrap::Start);
    chain.s(2).starts_chain(1);
    chain.s(1).starts_chain(1);

    let two_heads = chain.view(6, &[(2, Ready), (1, Ready)]);
    chain.show(&[1, 2], &two_heads);
    chain.s(1).tick();
    assert!(chain.s(1).asked_to_reregister(), "ready behind 2 without its hand-over");
    assert_eq!(chain.s(1).asked_record(), None, "1 is no tail holding the chain's state");
    assert!(!chain.s(1).serves_reads());
}

/// Seed 13197151746003925912: a joiner that had caught up sent a snapshot
/// when no chain was live, wiping the one server the commit record names
/// (it had lost its session and registered again with every committed
/// write). Pins `!self.ready_servers.is_empty()` in `may_replicate` (and
/// the successor's own refusal in `link_hello`).
#[test]
fn a_caught_up_joiner_replicates_nothing_while_no_member_is_ready() {
    let mut chain = joiner_2_with_the_table_of_1();
    let b = chain.put(1, "b").unwrap();
    chain.forward(1, 2).unwrap();
    assert_eq!((chain.s(1).committed(), chain.s(2).applied()), (b, b), "2 caught up");

    // 1, the one server named, loses its session and comes back as node 4.
    chain.s(1).loses_session();
    assert_eq!(chain.s(1).registers(4), recovering(b));
    let no_chain = chain.view(5, &[(2, Joining), (1, recovering(b))]);
    chain.show(&[1, 2], &no_chain);
    assert!(chain.s(2).snapshot().is_none(), "2 may not snapshot its table for 1");
    assert!(chain.link(2, 1, 5).is_err(), "1 takes no link while no chain lives");
    assert_eq!(chain.s(1).decides(&no_chain, SESSION_TIMEOUT_MS), Bootstrap::Start);
}

/// Seeds 13887259655004123216 and 7012144480146658090: a tail waiting for
/// its commit record answered a read with a write it had applied and not
/// committed (the write was then lost). Pins `&& self.recorded()` in
/// `ChainNode::readable`.
#[test]
fn a_tail_waiting_for_its_commit_record_answers_no_read() {
    let mut chain = Chain::ready(&[1, 2, 3], 2);
    chain.put(1, "a").unwrap();
    chain.replicate(&[1, 2, 3]);
    chain.heartbeat(2, 3);
    assert!(chain.s(3).serves_reads());
    // 1 loses its session: 2 is the head, and 3 commits nothing more until
    // the record names the new membership.
    chain.s(1).loses_session();
    let view = chain.view(3, &[(2, Ready), (3, Ready)]);
    let revoked = chain.s(3).reads_revoked();
    chain.show(&[2, 3], &view);
    assert!(chain.s(3).reads_revoked() > revoked, "reads in progress at 3 are stopped");
    let b = chain.put(2, "b").unwrap();
    chain.replicate(&[2, 3]);
    chain.heartbeat(2, 3);
    assert_eq!(chain.s(3).applied(), b);
    assert_eq!(chain.s(3).committed(), b - 1, "b waits for the record");
    assert!(!chain.s(3).serves_reads(), "a read would show b, which is not committed");

    chain.write_record(3);
    chain.show(&[2, 3], &chain.view(3, &[(2, Ready), (3, Ready)]));
    chain.ack(3, 2);
    assert_eq!((chain.s(2).committed(), chain.s(3).committed()), (b, b));
    assert!(chain.s(3).serves_reads());
    assert!(!chain.s(3).asked_to_reregister(), "a ready member stays one through view changes");
    let revoked = chain.s(3).reads_revoked();
    chain.show(&[3], &chain.view(3, &[(2, Ready), (3, Ready)]));
    assert_eq!(chain.s(3).reads_revoked(), revoked, "a tail that stays readable keeps its reads");
}

/// Seed 3841140853828032662: a tail cut off from ZooKeeper committed writes
/// of a head with a newer view, while the old head, still named in the
/// record the tail's older view showed, could restart the chain without
/// them. Pins `&& self.applied_epoch <= self.view_epoch` in
/// `ChainNode::recorded`.
#[test]
fn a_tail_with_an_older_view_commits_no_write_of_a_newer_head() {
    let mut chain = Chain::ready(&[1, 2, 3], 2);
    chain.put(1, "a").unwrap();
    chain.replicate(&[1, 2, 3]);
    // 1 loses its session; 3 is cut off from ZooKeeper (its lease holds)
    // and goes on in view 2, whose record names 1.
    chain.s(1).loses_session();
    let view = chain.view(3, &[(2, Ready), (3, Ready)]);
    chain.show(&[2], &view);
    let b = chain.put(2, "b").unwrap();
    chain.replicate(&[2, 3]);
    assert_eq!(chain.s(3).applied(), b);
    assert_eq!(chain.s(3).commits(), vec![b - 1], "3 commits nothing of view 3");
    assert_eq!(chain.s(2).committed(), b - 1, "b is not acknowledged");
    assert!(!chain.s(3).serves_reads());

    // 3 reads view 3 and has its record written: now b commits.
    chain.show(&[3], &view);
    chain.write_record(3);
    chain.show(&[2, 3], &chain.view(3, &[(2, Ready), (3, Ready)]));
    chain.ack(3, 2);
    assert_eq!((chain.s(2).committed(), chain.s(3).committed()), (b, b));
}

/// Seed 418649836348274844: a snapshot sent on a link that a newer one
/// replaced arrived late and wiped the newer state transfer from the same
/// predecessor. Pins the latest-link check in `ChainNode::check_link`
/// together with the snapshot acceptance check (each refuses it alone; see
/// `a_frame_of_a_replaced_link_is_refused` for the first).
#[test]
fn a_delayed_snapshot_on_a_replaced_link_is_refused() {
    let mut chain = Chain::ready(&[1], 2);
    chain.put(1, "a").unwrap();
    chain.put(1, "b").unwrap();
    chain.add(2);
    chain.settle(3, &[(1, Ready), (2, Joining)]);
    let old_link = chain.link(1, 2, 3).unwrap().link;
    let delayed = chain.s(1).snapshot().unwrap();
    // The link breaks with the snapshot still on the way; 1 goes on, opens a
    // new link and transfers its table again.
    chain.put(1, "c").unwrap();
    chain.s(1).take_forwarded();
    assert!(chain.link(1, 2, 3).unwrap().wants_snapshot);
    chain.transfer_state(1, 2).unwrap();
    let d = chain.put(1, "d").unwrap();
    chain.forward(1, 2).unwrap();
    assert_eq!(chain.s(2).applied(), d);

    assert!(chain.deliver_snapshot((1, 2, old_link), delayed, true).is_err());
    assert_eq!(chain.s(2).applied(), d);
    assert_eq!(chain.s(2).store.len(), 4, "a, b, c and d stay");
}

/// Server 1 alone commits write 1 (a); 2 joins (view epoch 3) and gets
/// 1's table by a state transfer.
fn joiner_2_with_the_table_of_1() -> Chain {
    let mut chain = Chain::ready(&[1], 2);
    chain.put(1, "a").unwrap();
    chain.add(2);
    chain.settle(3, &[(1, Ready), (2, Joining)]);
    assert!(chain.link(1, 2, 3).unwrap().wants_snapshot);
    chain.transfer_state(1, 2).unwrap();
    chain
}

/// Servers 1 and 2 commit write 1 (a); 3 joins behind 2, gets 2's table
/// and 2's hand-over, and announces itself ready (view epoch 3).
fn joiner_3_handed_over_by_2() -> Chain {
    let mut chain = Chain::ready(&[1, 2], 2);
    chain.put(1, "a").unwrap();
    chain.replicate(&[1, 2]);
    chain.add(3);
    chain.settle(3, &[(1, Ready), (2, Ready), (3, Joining)]);
    assert!(chain.link(2, 3, 3).unwrap().wants_snapshot);
    chain.transfer_state(2, 3).unwrap();
    chain.hand_over(2, 3).unwrap();
    assert!(chain.s(3).announced_ready());
    chain
}

/// Seed 16806427444564262854: a joiner became the tail on the hand-over of
/// a predecessor that had lost its session, and answered reads without a
/// write that its new predecessor had committed alone meanwhile. Pins the
/// `handed_over_by` condition in `ChainNode::view_changed` (a joiner is
/// ready only by the hand-over of the predecessor it still has).
#[test]
fn a_joiner_handed_over_by_a_former_predecessor_does_not_become_the_tail() {
    let mut chain = joiner_3_handed_over_by_2();

    // 2 loses its session before 3's announcement lands: 1 is the tail,
    // commits b alone (3 is still joining), and 3 never gets it.
    chain.s(2).loses_session();
    chain.settle(4, &[(1, Ready), (3, Joining)]);
    let b = chain.put(1, "b").unwrap();
    assert_eq!(chain.s(1).committed(), b, "1 commits b alone");

    // 3's announcement lands; any record the tail asks for is written.
    let announced = chain.view(5, &[(1, Ready), (3, Ready)]);
    chain.show(&[1, 3], &announced);
    if chain.s(3).asked_record().is_some() {
        chain.settle(5, &[(1, Ready), (3, Ready)]);
    }
    assert!(chain.s(3).asked_to_reregister(), "3 lacks b");
    assert!(!chain.s(3).serves_reads(), "a read at 3 would miss b");
}

/// Seed 16245538266440339728: a joiner handed over by the tail announced
/// itself ready while cut off from ZooKeeper; meanwhile the tail had been
/// removed and the head committed writes alone as the new tail. The head
/// then lost its session too, and the joiner, first and alone in the view,
/// became head and tail without those writes (a read answered a value that
/// a swapped cas had replaced). Pins `first_by_hand_over_is_safe` in
/// `ChainNode::view_changed`.
#[test]
fn a_joiner_whose_giver_left_does_not_become_the_lone_tail_after_a_later_record() {
    let mut chain = joiner_3_handed_over_by_2();

    // 2 is removed; 1, the tail now, records epoch 4 and commits b alone
    // (3 never sees this view).
    chain.s(2).loses_session();
    let view = chain.view(4, &[(1, Ready), (3, Joining)]);
    chain.show(&[1], &view);
    chain.write_record(1);
    chain.show(&[1], &chain.view(4, &[(1, Ready), (3, Joining)]));
    let b = chain.put(1, "b").unwrap();
    assert_eq!(chain.s(1).committed(), b, "1 commits b alone");

    // 3's announcement lands, and 1 loses its session: 3 is first and alone.
    chain.s(1).loses_session();
    let alone = chain.view(5, &[(3, Ready)]);
    chain.show(&[3], &alone);
    assert!(chain.s(3).asked_to_reregister(), "3 lacks b");
    assert!(!chain.s(3).serves_reads(), "a read at 3 would miss b");
}

/// The other side of the test above: when the tail that handed over is the
/// last to leave and nobody recorded a later epoch, no member committed
/// anything its joiner lacks, so the joiner becomes head and tail at once
/// (without a wait for a named member to come back).
#[test]
fn a_joiner_whose_giver_left_becomes_the_lone_tail_when_no_later_epoch_was_recorded() {
    let mut chain = joiner_2_with_the_table_of_1();
    chain.hand_over(1, 2).unwrap();
    assert!(chain.s(2).announced_ready());

    chain.s(1).loses_session();
    let alone = chain.view(4, &[(2, Ready)]);
    chain.show(&[2], &alone);
    assert!(!chain.s(2).asked_to_reregister());
    chain.write_record(2);
    chain.show(&[2], &chain.view(4, &[(2, Ready)]));
    assert!(chain.s(2).serves_reads(), "2 holds every committed write");
}

/// No write is committed in a generation the commit record does not show
/// (no found seed: issue 23 found this check removable with every test
/// green). A tail that a new predecessor sends a snapshot of a newer
/// generation than the record it read (the chain restarted, losing writes,
/// and the new record is still on its way) commits nothing until the record
/// shows that generation, so every write it acknowledges is counted in the
/// record's generation. Pins `&& self.record.generation == self.generation`
/// in `ChainNode::recorded`.
#[test]
fn a_tail_commits_nothing_before_the_record_shows_its_tables_generation() {
    let mut chain = Chain::ready(&[1, 2, 3], 2);
    let a = chain.put(1, "a").unwrap();
    chain.replicate(&[1, 2, 3]);
    chain.s(2).loses_session();
    let view = chain.settle(3, &[(1, Ready), (3, Ready)]);
    // 1, the new predecessor, sends 3 its whole table, as if of generation 2.
    assert!(!chain.link(1, 3, 3).unwrap().wants_snapshot);
    let b = chain.put(1, "b").unwrap();
    chain.s(1).take_forwarded();
    let (mut first, mut last) = split(chain.s(1).snapshot().unwrap());
    (first.generation, last.generation) = (2, 2);
    let link = chain.s(3).links[&1];
    chain.deliver_snapshot((1, 3, link), first, true).unwrap();
    // A view read halfway gives half a table no generation.
    chain.show(&[3], &view);
    assert_eq!(chain.s(3).generation(), 0);
    chain.deliver_snapshot((1, 3, link), last, false).unwrap();
    assert_eq!((chain.s(3).applied(), chain.s(3).generation()), (b, 2));
    assert_eq!(chain.s(3).commits(), vec![a], "nothing committed while the record shows generation 1");

    // The record of generation 2 arrives.
    chain.record.generation = 2;
    chain.show(&[3], &chain.view(3, &[(1, Ready), (3, Ready)]));
    assert_eq!(chain.s(3).commits(), vec![a, b]);
}

/// A table installed by a snapshot is of the sender's generation at once,
/// before any view says so: a joiner whose session ends right after its
/// state transfer must not hold a table of "no generation" (swarm testing
/// found one restarting the chain from such a table, which the generation
/// rule took for a table holding none of the chain's writes).
#[test]
fn a_table_installed_by_a_snapshot_is_of_its_senders_generation() {
    let mut chain = Chain::ready(&[1], 2);
    chain.put(1, "a").unwrap();
    chain.add(2);
    chain.settle(3, &[(1, Ready), (2, Joining)]);
    assert!(chain.link(1, 2, 3).unwrap().wants_snapshot);
    assert_eq!(chain.s(2).generation(), 0);
    chain.transfer_state(1, 2).unwrap();
    assert_eq!(chain.s(2).generation(), chain.s(1).generation());
    assert_eq!(chain.s(2).generation(), 1);
}

/// A client's write retried at a head that got its table by a state
/// transfer is answered, not applied again: the client records travel in the
/// snapshot (mutation testing found no test of `ClientRecords::all`).
#[test]
fn a_retry_at_a_head_that_joined_by_snapshot_is_applied_once() {
    let mut chain = Chain::ready(&[1], 2);
    let a = chain.put(1, "a").unwrap();
    chain.add(2);
    chain.settle(3, &[(1, Ready), (2, Joining)]);
    assert!(chain.link(1, 2, 3).unwrap().wants_snapshot);
    chain.transfer_state(1, 2).unwrap();
    chain.hand_over(1, 2).unwrap();
    chain.settle(4, &[(1, Ready), (2, Ready)]);
    // 1 fails before the client heard back; 2 heads the chain alone.
    chain.s(1).loses_session();
    chain.settle(5, &[(2, Ready)]);
    assert_eq!(chain.retry(2, 1, "a"), Ok(a), "answered as the original write");
    assert_eq!(chain.s(2).applied(), a, "and not applied again");
}

/// A joiner fenced before it became ready registers again empty: no key
/// and no client record of the history it held is left (mutation testing
/// found no test of `ClientRecords::clear`).
#[test]
fn a_joiner_registering_again_forgets_its_client_records() {
    let mut chain = Chain::ready(&[1], 2);
    chain.put(1, "a").unwrap();
    chain.add(2);
    chain.settle(3, &[(1, Ready), (2, Joining)]);
    chain.link(1, 2, 3).unwrap();
    chain.transfer_state(1, 2).unwrap();
    assert!(chain.s(2).used_memory() > 0);
    let stream = chain.s(2).stream();
    chain.s(2).loses_session();
    assert_eq!(chain.s(2).registers(4), Joining);
    assert_eq!(chain.s(2).used_memory(), 0);
    assert!(chain.s(2).stream() > stream, "a new history, a new run of writes");
}

/// A tail that handed its role over to a joiner commits only what the
/// joiner acknowledges, and answers no read meanwhile (mutation testing
/// found no test of `Lifecycle::handed_over_to`).
#[test]
fn a_tail_that_handed_over_commits_only_what_its_successor_acknowledges() {
    let mut chain = Chain::ready(&[1], 2);
    let a = chain.put(1, "a").unwrap();
    chain.add(2);
    chain.settle(3, &[(1, Ready), (2, Joining)]);
    chain.link(1, 2, 3).unwrap();
    chain.transfer_state(1, 2).unwrap();
    chain.hand_over(1, 2).unwrap();
    // The view read again changes nothing: the hand-over stands.
    chain.show(&[1], &chain.view(3, &[(1, Ready), (2, Joining)]));
    let b = chain.put(1, "b").unwrap();
    assert_eq!(chain.s(1).committed(), a, "b waits for 2");
    assert!(!chain.s(1).serves_reads());
    chain.forward(1, 2).unwrap();
    assert_eq!(chain.s(1).committed(), a, "b waits for 2's ack");
    chain.ack(2, 1);
    assert_eq!((chain.s(1).committed(), chain.s(2).committed()), (b, b));
    assert!(!chain.s(2).serves_reads(), "not before it is ready");
    chain.settle(4, &[(1, Ready), (2, Ready)]);
    chain.heartbeat(1, 2);
    assert!(chain.s(2).serves_reads());
}

/// The tail records its commit point in ZooKeeper only when it rose, at
/// most once per interval: an idle chain writes nothing (mutation testing
/// found no test of it).
#[test]
fn an_idle_tail_asks_for_no_commit_record() {
    let mut chain = Chain::ready(&[1], 2);
    let a = chain.put(1, "a").unwrap();
    chain.s(1).tick_at(NOW_MS);
    assert_eq!(chain.s(1).asked_record().map(|record| record.committed), Some(a));
    chain.write_record(1);
    chain.show(&[1], &chain.view(2, &[(1, Ready)]));
    let b = chain.put(1, "b").unwrap();
    let asked = chain.s(1).records_asked();
    chain.s(1).tick_at(NOW_MS + RECORD_PROGRESS_INTERVAL_MS - 1);
    assert_eq!(chain.s(1).records_asked(), asked, "at most once per interval");
    chain.s(1).tick_at(NOW_MS + RECORD_PROGRESS_INTERVAL_MS);
    assert_eq!(chain.s(1).asked_record().map(|record| record.committed), Some(b));
    chain.write_record(1);
    chain.show(&[1], &chain.view(2, &[(1, Ready)]));
    let asked = chain.s(1).records_asked();
    chain.s(1).tick_at(NOW_MS + 10 * RECORD_PROGRESS_INTERVAL_MS);
    assert_eq!(chain.s(1).records_asked(), asked, "nothing new to record");
    // An idle interval does not put the next record off.
    let c = chain.put(1, "c").unwrap();
    chain.s(1).tick_at(NOW_MS + 10 * RECORD_PROGRESS_INTERVAL_MS + 1);
    assert_eq!(chain.s(1).asked_record().map(|record| record.committed), Some(c));
}

/// The lease holds until its deadline and not at it; then the waits end
/// (mutation testing found no test of the boundary).
#[test]
fn the_lease_ends_at_its_deadline() {
    let mut chain = Chain::ready(&[1], 2);
    assert_eq!(chain.s(1).lease_until_ms(), LEASE_UNTIL_MS);
    assert!(chain.s(1).serves_reads_at(LEASE_UNTIL_MS - 1));
    assert!(!chain.s(1).serves_reads_at(LEASE_UNTIL_MS));
    chain.s(1).tick_at(LEASE_UNTIL_MS - 1);
    assert!(!chain.s(1).actions.contains(&Action::LeaseLost));
    chain.s(1).tick_at(LEASE_UNTIL_MS);
    assert!(chain.s(1).actions.contains(&Action::LeaseLost));
}

/// A view older than the one a member acts on (a watch read late) changes
/// nothing: the head of the newer view stays the head (mutation testing
/// found no test of it).
#[test]
fn a_late_older_view_changes_nothing() {
    let mut chain = Chain::ready(&[1, 2], 2);
    chain.s(1).loses_session();
    chain.settle(3, &[(2, Ready)]);
    let late = chain.view(2, &[(1, Ready), (2, Ready)]);
    chain.show(&[2], &late);
    assert_eq!(chain.put(2, "a"), Ok(1), "2 is still the head");
}

/// Each run of forwarded writes has a new, higher number: a head starts one
/// when it gets a successor after forwarding to none, and again after that
/// successor left and another came (its sender tells a new run, which only a
/// snapshot bridges, from a gap; mutation testing found no test of it).
#[test]
fn each_run_of_forwarded_writes_has_a_higher_stream() {
    let mut chain = Chain::ready(&[1], 2);
    let alone = chain.s(1).stream();
    chain.add(2);
    chain.settle(3, &[(1, Ready), (2, Joining)]);
    let first = chain.s(1).stream();
    assert!(first > alone);
    chain.s(2).loses_session();
    chain.settle(4, &[(1, Ready)]);
    chain.add(3);
    chain.settle(5, &[(1, Ready), (3, Joining)]);
    assert!(chain.s(1).stream() > first);
}

/// A member that lost its session serves nothing at once, and every write
/// waiting for its commit gets "outcome unknown" (mutation testing found no
/// test of `ChainNode::fence`).
#[test]
fn a_fenced_member_serves_nothing_and_abandons_its_waits() {
    let mut chain = Chain::ready(&[1, 2], 2);
    chain.put(1, "a").unwrap();
    chain.s(1).loses_session();
    chain.s(2).loses_session();
    assert!(chain.put(1, "b").is_err());
    assert!(!chain.s(2).serves_reads());
    assert!(chain.s(1).actions.contains(&Action::AbandonWaits));
}

/// A joiner that was sent part of the chain's history never starts a chain
/// as if it were empty, even when that history left its table empty
/// (mutation testing found no test of `ChainNode::installed_history`).
#[test]
fn a_joiner_with_an_empty_table_but_a_history_does_not_start_a_chain() {
    let mut chain = Chain::ready(&[1], 2);
    chain.put(1, "a").unwrap();
    chain.delete(1, "a").unwrap();
    chain.add(2);
    chain.settle(3, &[(1, Ready), (2, Joining)]);
    chain.link(1, 2, 3).unwrap();
    chain.transfer_state(1, 2).unwrap();
    assert!(chain.s(2).store.is_empty());
    chain.s(1).loses_session();
    let alone = chain.view(4, &[(2, Joining)]);
    let decision = chain.s(2).decides(&alone, 60 * SESSION_TIMEOUT_MS);
    assert!(matches!(decision, Bootstrap::Reregister(_)), "{decision:?}");
}

/// `--inject-bug` and `stats` name them: each name is its own and leads back
/// to it (mutation testing found no test of the names).
#[test]
fn injected_bugs_and_roles_go_by_their_names() {
    for check in Check::ALL {
        assert_eq!(Check::from_bug_name(check.bug_name()), Some(check));
    }
    assert_eq!(Check::from_bug_name("no-such-bug"), None);
    let roles: Vec<&str> = Role::ALL.iter().map(|role| role.name()).collect();
    assert_eq!(roles, ["standalone", "head", "middle", "tail", "head+tail", "joining", "fenced"]);
}

/// Only the head takes client writes; the others name it (mutation testing
/// found no test of it in the chain's own tests).
#[test]
fn only_the_head_takes_client_writes() {
    let mut chain = Chain::ready(&[1, 2], 2);
    let refusal = chain.put(2, "a").unwrap_err();
    assert_eq!(refusal.code, ErrorCode::ERR_WRONG_ROLE);
    assert!(refusal.message.contains(&chain.s(1).member(Ready).address), "{}", refusal.message);
    assert_eq!(chain.put(1, "a"), Ok(1));
}

/// At `--max-memory` a put needs room for what it adds: a new key its entry,
/// an overwrite the growth of its value only (mutation testing found no test
/// of either sum).
#[test]
fn a_put_at_max_memory_needs_room_for_what_it_adds() {
    let entry = "a".len() as u64 + 100 + crate::limits::ENTRY_OVERHEAD_BYTES;
    let record = crate::limits::CLIENT_RECORD_BYTES;
    let put_into = |limit, puts: &[(&str, usize)]| -> Vec<bool> {
        let config = NodeConfig {
            chain_path: "/chain".into(),
            standalone: true,
            client_records_max: 100,
            bug: None,
            server_id: 1,
            memory_bytes_max: Some(limit),
        };
        let (mut head, mut store, mut actions) = (ChainNode::new(config), SimStore::new(), Vec::new());
        let mut request_id = 0;
        let mut put = |key: &str, bytes| {
            request_id += 1;
            let value = Some(vec![1; bytes]);
            head.client_write(
                CLIENT,
                request_id,
                WriteOp::Set { key: key.to_owned(), value },
                NOW_MS,
                &mut store,
                &mut actions,
            )
            .is_ok()
        };
        puts.iter().map(|&(key, bytes)| put(key, bytes)).collect()
    };
    assert_eq!(put_into(entry + record - 1, &[("a", 100)]), [false], "one byte short");
    let puts = [("a", 100), ("b", 100), ("a", 300), ("a", 110), ("a", 111)];
    // No room for a new key, nor for 200 more bytes; 10 more fit, 11 do not.
    assert_eq!(put_into(entry + record + 10, &puts), [true, false, false, true, false]);
}

/// A declined cas is answered only once the decline, a write of its own, is
/// committed. An earlier attempt of the same request may sit applied and
/// uncommitted at a former head, which a restart of the chain could bring
/// back while the commit record still names that head; committing in the new
/// view takes a record that leaves it out (swarm testing, seed
/// 13858775439738059553: "declined, saw X", then the first attempt's value).
/// Pins `ChainNode::decline`.
#[test]
fn a_declined_cas_is_answered_only_once_the_decline_is_committed() {
    let mut chain = Chain::ready(&[1, 2, 3], 2);
    chain.put(1, "k").unwrap();
    chain.replicate(&[1, 2, 3]);
    // The head, cut off, deletes k and applies the client's cas absent -> x.
    chain.delete(1, "k").unwrap();
    chain.request_id += 1;
    let request = chain.request_id;
    let cas = || WriteOp::Cas { key: "k".into(), expected: None, value: b"x".to_vec() };
    let first = chain.write_op(1, request, cas()).unwrap();
    assert_eq!(first.outcome, Outcome::Applied { found: false, number: 0 });
    // 1 is replaced; the client's retry reaches 2, the new head, which sees k.
    chain.s(1).loses_session();
    let members = [(2, Ready), (3, Ready)];
    chain.show(&[2, 3], &chain.view(3, &members));
    chain.link(2, 3, 3).unwrap();
    let retry = chain.write_op(2, request, cas()).unwrap();
    assert_eq!(retry.outcome, Outcome::Declined(Decline::Mismatch(Some(b"k".to_vec()))));
    assert!(chain.s(2).committed() < retry.sequence, "not answered before its own commit");
    // Its commit takes the new view's record, which leaves 1 out.
    chain.forward(2, 3).unwrap();
    chain.write_record(3);
    chain.show(&[2, 3], &chain.view(3, &members));
    chain.ack(3, 2);
    assert!(chain.s(2).committed() >= retry.sequence);
    assert!(!chain.record.includes(1), "1 can no longer restart the chain from its history");
}

/// A request declined once stays declined: a copy of an earlier attempt
/// that arrives after its client saw "declined" (and after the key came to
/// match) must not swap. Swarm testing found it: seed 5825337620275552581, a
/// cas answered "declined, saw X", then a late copy of an earlier attempt
/// delivered to a resumed head swapped after a delete. Pins
/// `Seen::Declined` (`redecide-declined-retry`).
#[test]
fn a_late_copy_of_a_declined_cas_stays_declined() {
    for bug in [None, Some(Check::DeclinedStays)] {
        let mut chain = Chain::ready_with(&[1], 1, Setup { bug, durable: false });
        chain.put(1, "k").unwrap();
        chain.request_id += 1;
        let request = chain.request_id;
        let cas = || WriteOp::Cas { key: "k".into(), expected: Some(b"y".to_vec()), value: b"x".to_vec() };
        let declined = chain.write_op(1, request, cas()).unwrap();
        assert!(matches!(declined.outcome, Outcome::Declined(Decline::Mismatch(_))));
        // The client saw "declined"; then the key came to match.
        chain.s(1).store.insert("k".into(), b"y".to_vec());
        let copy = chain.write_op(1, request, cas()).unwrap();
        let value = chain.s(1).store.get("k").cloned();
        if bug.is_some() {
            assert_eq!(value.as_deref(), Some(&b"x"[..]), "the bug swaps after the client saw the decline");
            continue;
        }
        assert_eq!(copy.outcome, Outcome::Declined(Decline::Earlier));
        assert_eq!(copy.sequence, declined.sequence, "answered once the decline is committed");
        assert_eq!(value.as_deref(), Some(&b"y"[..]), "nothing swapped");
    }
}

/// A member whose ZooKeeper lease ran out serves nothing: not writes, not
/// reads, even alone in its view (where no predecessor's read lease guards
/// reads), as ZooKeeper may have given its place away meanwhile. The
/// simulator reaches this check only rarely since the read lease shadows it
/// for every tail with a predecessor. Pins `skip-lease-check`.
#[test]
fn a_member_whose_session_lease_ran_out_serves_nothing() {
    for bug in [None, Some(Check::Lease)] {
        let mut chain = Chain::ready_with(&[1], 1, Setup { bug, durable: false });
        let node = &chain.s(1).node;
        assert_eq!(node.check_may_read(NOW_MS), Ok(()));
        assert_eq!(node.check_may_write(NOW_MS), Ok(()));
        let (read, write) = (node.check_may_read(LEASE_UNTIL_MS), node.check_may_write(LEASE_UNTIL_MS));
        if bug.is_some() {
            assert_eq!((read, write), (Ok(()), Ok(())), "the bug serves on a lapsed lease");
            continue;
        }
        let codes = (read.map_err(|refusal| refusal.code), write.map_err(|refusal| refusal.code));
        assert_eq!(codes, (Err(ErrorCode::ERR_UNAVAILABLE), Err(ErrorCode::ERR_UNAVAILABLE)));
    }
}

// ---- failover (issue 19): heartbeats and proof of death ----

/// A neighbour whose connect to a dead tail's port was refused asks for its
/// removal at once; so it does for a dead head right after, a new proof of
/// death skipping the rate limit (a proof is no guess, and a storm of them
/// cannot arise: a live process accepts the connect). The same death proven
/// again within the interval is not asked about twice.
#[test]
fn a_refused_connect_asks_for_the_dead_neighbours_removal_at_once_even_right_after_another() {
    let mut chain = Chain::ready(&[1, 2, 3], 1);
    let (head, tail) = (chain.s(1).name(), chain.s(3).name());
    assert_eq!(chain.s(2).cannot_reach(&tail, Evidence::Refused, NOW_MS), Ok(()));
    assert_eq!(chain.s(2).removals_asked(), vec![tail.clone()]);
    let soon = NOW_MS + REMOVAL_INTERVAL_MIN_MS - 1;
    assert_eq!(chain.s(2).cannot_reach(&tail, Evidence::Refused, NOW_MS + 1), Err(Hold::TooSoon));
    assert_eq!(chain.s(2).cannot_reach(&head, Evidence::Refused, NOW_MS + 1), Ok(()));
    assert_eq!(chain.s(2).removals_asked(), vec![tail, head.clone()]);
    assert_eq!(chain.s(2).cannot_reach(&head, Evidence::Refused, soon), Err(Hold::TooSoon));
    let later = NOW_MS + 1 + REMOVAL_INTERVAL_MIN_MS;
    assert_eq!(chain.s(2).cannot_reach(&head, Evidence::Refused, later), Ok(()), "asked again, later");
    assert_eq!(chain.s(2).removals_asked().len(), 3);
}

/// The rate limit still holds for a removal on silence, also right after a
/// removal on proof: silence is a guess, which a slow machine can make.
#[test]
fn a_removal_on_silence_waits_out_the_rate_limit_after_a_proven_one() {
    let mut chain = Chain::ready(&[1, 2, 3], 2);
    let (head, tail) = (chain.s(1).name(), chain.s(3).name());
    chain.s(2).tick_at(NOW_MS);
    chain.ack_at(3, 2, NOW_MS);
    let due = NOW_MS + SUSPECT_REMOVAL_AFTER_MS;
    assert_eq!(chain.s(2).cannot_reach(&head, Evidence::Refused, due), Ok(()));
    let silent = Evidence::Silent { last_heard_ms: NOW_MS };
    assert_eq!(chain.s(2).cannot_reach(&tail, silent, due + 1), Err(Hold::TooSoon));
    assert_eq!(chain.s(2).cannot_reach(&tail, silent, due + REMOVAL_INTERVAL_MIN_MS), Ok(()));
    assert_eq!(chain.s(2).removals_asked(), vec![head, tail]);
}

/// A connect that timed out proves nothing (the peer may be paused, and
/// still serving reads under its lease): no removal.
#[test]
fn a_timed_out_connect_is_no_proof_of_death() {
    let mut chain = Chain::ready(&[1, 2], 1);
    let tail = chain.s(2).name();
    assert_eq!(chain.s(1).cannot_reach(&tail, Evidence::TimedOut, NOW_MS), Err(Hold::NoProof));
    assert!(chain.s(1).removals_asked().is_empty());
}

/// Only a neighbour in our view may be removed by us: a member two hops
/// away is its own neighbours' business (and one gone already is no one's).
#[test]
fn only_a_neighbour_is_removed() {
    let mut chain = Chain::ready(&[1, 2, 3], 1);
    let tail = chain.s(3).name();
    assert_eq!(chain.s(1).cannot_reach(&tail, Evidence::Refused, NOW_MS), Err(Hold::NotNeighbour));
    assert_eq!(chain.s(1).cannot_reach("node9999999999", Evidence::Refused, NOW_MS), Err(Hold::NotNeighbour));
    assert!(chain.s(1).removals_asked().is_empty());
}

/// A joining server never removes the last ready member: it holds the
/// chain's state, and the joiner does not yet.
#[test]
fn the_last_ready_member_is_never_removed() {
    let mut chain = Chain::ready(&[1], 1);
    chain.add(2);
    let view = chain.view(2, &[(1, Ready), (2, Joining)]);
    chain.show(&[1, 2], &view);
    let head = chain.s(1).name();
    assert_eq!(chain.s(2).cannot_reach(&head, Evidence::Refused, NOW_MS), Err(Hold::LastReady));
    assert!(chain.s(2).removals_asked().is_empty());
}

/// An idle successor's end of the link sends its unchanged progress once
/// a heartbeat interval, so a silent predecessor's link can tell it alive.
#[test]
fn an_idle_uplink_sends_a_heartbeat_each_interval() {
    let mut chain = Chain::ready(&[1], 1);
    chain.add(2);
    let view = chain.view(2, &[(1, Ready), (2, Joining)]);
    chain.show(&[1, 2], &view);
    let mut hello = ReplicaHello::new();
    hello.sender = chain.s(1).name();
    hello.receiver = chain.s(2).name();
    hello.epoch = 2;
    let node = &mut chain.s(2).node;
    let (mut uplink, _) = Uplink::accept(node, &hello).expect("the joiner accepts its predecessor");
    assert!(matches!(uplink.ack_due(node, NOW_MS), Ack::Send { .. }));
    assert_eq!(uplink.ack_due(node, NOW_MS + REPLICATION_HEARTBEAT_INTERVAL_MS - 1), Ack::Nothing);
    assert!(matches!(uplink.ack_due(node, NOW_MS + REPLICATION_HEARTBEAT_INTERVAL_MS), Ack::Send { .. }));
}

// ---- failover (issue 19, phase 2): the read lease and removal after it ----

/// The tail of a chain answers reads only under the lease its
/// predecessor's echo of its ack stamp grants: for [`READ_LEASE_MS`] from
/// the stamp (not from the echo's arrival: an echo that waited in a paused
/// tail's socket grants what is left of it, here nothing), in the view it
/// was granted in only. Pins `Check::ReadLease` (`lease-without-heartbeat`).
#[test]
fn a_tail_answers_reads_only_under_its_predecessors_lease() {
    let mut chain = Chain::ready(&[1, 2, 3], 2);
    assert!(!chain.s(3).serves_reads(), "no heartbeat yet");
    chain.heartbeat_at(2, 3, NOW_MS - 2 * READ_LEASE_MS, NOW_MS).unwrap();
    assert!(!chain.s(3).serves_reads(), "an old stamp echoed late grants nothing");
    chain.heartbeat_at(2, 3, NOW_MS + 50, NOW_MS).unwrap();
    assert!(!chain.s(3).serves_reads(), "a stamp from our future is none of ours");
    chain.heartbeat_at(2, 3, NOW_MS - 10, NOW_MS).unwrap();
    assert!(chain.s(3).serves_reads_at(NOW_MS - 10 + READ_LEASE_MS - 1));
    assert!(!chain.s(3).serves_reads_at(NOW_MS - 10 + READ_LEASE_MS));
    assert!(chain.heartbeat_at(1, 3, NOW_MS, NOW_MS).is_err(), "only the predecessor renews it");
    // A new view (the head left): the lease of the old one is void.
    chain.settle(3, &[(2, Ready), (3, Ready)]);
    assert!(!chain.s(3).serves_reads());
    chain.heartbeat(2, 3);
    assert!(chain.s(3).serves_reads());
}

/// A lone member has no predecessor to renew a lease: it needs none.
#[test]
fn a_lone_member_reads_without_a_data_path_lease() {
    let mut chain = Chain::ready(&[1], 2);
    assert!(chain.s(1).serves_reads_at(NOW_MS + 10 * READ_LEASE_MS));
}

/// A predecessor removes its silent successor only once the successor's
/// read lease must have run out: [`SUSPECT_REMOVAL_AFTER_MS`] after the
/// last frame heard from it, on the predecessor's clock (ticking every
/// heartbeat interval). Pins `Check::LeaseExpiry` (`evict-before-lease`).
#[test]
fn a_silent_successor_is_removed_only_after_its_lease_ran_out() {
    let mut chain = Chain::ready(&[1, 2, 3], 2);
    let tail = chain.s(3).name();
    chain.s(2).tick_at(NOW_MS);
    chain.ack_at(3, 2, NOW_MS + 10);
    let last_heard_ms = NOW_MS + 10;
    assert_eq!(chain.s(2).cannot_reach(&tail, Evidence::TimedOut, NOW_MS + 80), Err(Hold::NoProof));
    let due = last_heard_ms + SUSPECT_REMOVAL_AFTER_MS;
    let mut now = NOW_MS;
    while now + REPLICATION_HEARTBEAT_INTERVAL_MS < due {
        now += REPLICATION_HEARTBEAT_INTERVAL_MS;
        chain.s(2).tick_at(now);
    }
    assert!(chain.s(2).removals_asked().is_empty(), "not at {now} ms, before {due} ms");
    let early = Evidence::Silent { last_heard_ms };
    assert_eq!(chain.s(2).cannot_reach(&tail, early, due - 1), Err(Hold::LeaseMayHold));
    chain.s(2).tick_at(due);
    assert_eq!(chain.s(2).removals_asked(), vec![tail.clone()]);
    let asked = Action::RemoveMember { name: tail, evidence: Evidence::Silent { last_heard_ms } };
    assert!(chain.s(2).actions.contains(&asked));
}

/// A predecessor that was stalled itself (its ticks stopped, as in a
/// SIGSTOP or a starved process) does not take its successor's silence
/// meanwhile for the successor's: the count starts afresh.
#[test]
fn a_stalled_predecessor_counts_its_successors_silence_afresh() {
    let mut chain = Chain::ready(&[1, 2, 3], 2);
    let tail = chain.s(3).name();
    chain.s(2).tick_at(NOW_MS);
    chain.ack_at(3, 2, NOW_MS);
    assert_eq!(chain.s(2).cannot_reach(&tail, Evidence::TimedOut, NOW_MS + 80), Err(Hold::NoProof));
    let woke = NOW_MS + 5 * SUSPECT_REMOVAL_AFTER_MS;
    chain.s(2).tick_at(woke);
    chain.s(2).tick_at(woke + REPLICATION_HEARTBEAT_INTERVAL_MS);
    assert!(chain.s(2).removals_asked().is_empty());
}

/// Silence counts only against the successor, whose lease we grant: a
/// silent predecessor is left to its session's expiry.
#[test]
fn silence_never_removes_the_predecessor() {
    let mut chain = Chain::ready(&[1, 2, 3], 2);
    let middle = chain.s(2).name();
    let evidence = Evidence::Silent { last_heard_ms: 0 };
    assert_eq!(chain.s(3).cannot_reach(&middle, evidence, NOW_MS), Err(Hold::NotNeighbour));
}

/// A silent successor whose port still answers a probe is alive and
/// reachable (slow, or its frames late): it is not removed, however long
/// the silence; a probe that times out makes it removable again.
#[test]
fn a_silent_successor_whose_port_answers_stays() {
    let mut chain = Chain::ready(&[1, 2, 3], 2);
    let tail = chain.s(3).name();
    chain.s(2).tick_at(NOW_MS);
    chain.ack_at(3, 2, NOW_MS);
    chain.s(2).tick_at(NOW_MS + 15);
    chain.s(2).tick_at(NOW_MS + SUSPECT_REMOVAL_AFTER_MS);
    assert!(chain.s(2).removals_asked().is_empty());
    assert_eq!(chain.s(2).cannot_reach(&tail, Evidence::TimedOut, NOW_MS + 120), Err(Hold::NoProof));
    chain.s(2).tick_at(NOW_MS + 130);
    assert_eq!(chain.s(2).removals_asked(), vec![tail]);
}

/// A tail whose successor left its view without its proof of death holds
/// its commit record (so commits nothing, and answers no read) until the
/// successor's read lease must have run out; after proving it dead, it
/// asks at once. Pins `successor_left` (`evict-before-lease`).
#[test]
fn a_new_tail_waits_out_its_departed_successors_lease() {
    for proven in [false, true] {
        let mut chain = Chain::ready(&[1, 2, 3], 2);
        let tail = chain.s(3).name();
        chain.s(2).tick_at(NOW_MS);
        chain.ack_at(3, 2, NOW_MS);
        if proven {
            assert_eq!(chain.s(2).cannot_reach(&tail, Evidence::Refused, NOW_MS), Ok(()));
        }
        let asked = chain.s(2).records_asked();
        let view = chain.view(3, &[(1, Ready), (2, Ready)]);
        chain.show(&[1, 2], &view);
        chain.s(2).tick_at(NOW_MS + SUSPECT_REMOVAL_AFTER_MS - 1);
        assert_eq!(chain.s(2).records_asked() > asked, proven, "proven dead: {proven}");
        chain.s(2).tick_at(NOW_MS + SUSPECT_REMOVAL_AFTER_MS);
        assert!(chain.s(2).records_asked() > asked);
    }
}

/// A successor that never acked our link (its older view may give it
/// another predecessor, whose heartbeats renew its lease) is not removed
/// for silence, however long. Pins the first-ack rule of `watch_successor`
/// (the simulator found a head removing, as silent, a tail that another
/// predecessor still served a lease to).
#[test]
fn a_successor_that_never_acked_us_is_not_removed_for_silence() {
    let mut chain = Chain::ready(&[1, 2, 3], 2);
    let tail = chain.s(3).name();
    chain.s(2).tick_at(NOW_MS);
    assert_eq!(chain.s(2).cannot_reach(&tail, Evidence::TimedOut, NOW_MS + 80), Err(Hold::NoProof));
    let mut now = NOW_MS;
    while now < NOW_MS + 2 * SUSPECT_REMOVAL_AFTER_MS {
        now += REPLICATION_HEARTBEAT_INTERVAL_MS;
        chain.s(2).tick_at(now);
    }
    assert!(chain.s(2).removals_asked().is_empty());
}

/// A durable tail commits a write only once every member before it has
/// reported it synced, and shows it to no read before: found by `table-check
/// sim --durable` (seed 8338124441377712905), where a head crashed before
/// its sync, restarted on its disk and, still named in a stale commit
/// record, restarted the chain without a write the tail had committed.
/// Pins `commit-before-upstream-sync`.
#[test]
fn a_durable_tail_commits_only_what_every_member_before_it_synced() {
    for bug in [None, Some(Check::UpstreamSynced)] {
        let mut chain = Chain::ready_with(&[1, 2], 3, Setup { bug, durable: true });
        let sequence = chain.put(1, "k").expect("the head takes the put");
        chain.forward(1, 2).expect("in order");
        chain.s(2).syncs(sequence);
        chain.report_synced(1, 2);
        if bug.is_some() {
            assert_eq!(chain.s(2).committed(), sequence, "the bug commits what the head has not synced");
            continue;
        }
        assert_eq!(chain.s(2).committed(), 0, "the head has not synced it");
        assert!(chain.s(2).read_of_waits("k"), "a read would show a write not committed");
        assert!(!chain.s(2).read_of_waits("other"), "reads of other keys go on");
        chain.s(1).syncs(sequence);
        chain.report_synced(1, 2);
        assert_eq!(chain.s(2).committed(), sequence);
        assert!(!chain.s(2).read_of_waits("k"));
    }
}

/// A synced report counts only in the view it was made in: a member of a
/// newer view may have fewer members before it than the receiver's view
/// still puts there, so its report does not speak for them.
#[test]
fn a_synced_report_from_another_view_counts_for_nothing() {
    let mut chain = Chain::ready_with(&[1, 2], 3, Setup { bug: None, durable: true });
    let sequence = chain.put(1, "k").expect("the head takes the put");
    chain.forward(1, 2).expect("in order");
    chain.s(1).syncs(sequence);
    chain.s(2).syncs(sequence);
    chain.add(3);
    let newer = chain.view(4, &[(1, Ready), (2, Ready), (3, Joining)]);
    chain.s(1).sees(&newer);
    chain.report_synced(1, 2);
    assert_eq!(chain.s(2).committed(), 0, "the tail is still in view 3");
    chain.settle(4, &[(1, Ready), (2, Ready), (3, Joining)]);
    chain.report_synced(1, 2);
    assert_eq!(chain.s(2).committed(), sequence, "once in the same view, it counts");
}

/// A member that registers again with a recoverable table (fenced, or
/// restarted on its disk) behind a joiner that has not caught up keeps its
/// table: the joiner's older snapshot would erase writes that only it may
/// hold once the ready member before the joiner is gone (found by
/// `table-check sim --durable`, seed 8799617115756069180). Pins
/// `overwrite-recoverable-table`.
#[test]
fn a_recoverable_table_is_not_replaced_by_a_joiners_older_snapshot() {
    for bug in [None, Some(Check::KeepRecoverable)] {
        let mut chain = Chain::ready_with(&[1, 2], 3, Setup { bug, durable: false });
        chain.put(1, "a").expect("a put");
        chain.replicate(&[1, 2]);
        chain.add(3);
        chain.settle(4, &[(1, Ready), (2, Ready), (3, Joining)]);
        chain.link(2, 3, 4).expect("the joiner links up");
        chain.transfer_state(2, 3).expect("the joiner takes the state at write 1");
        let second = chain.put(1, "b").expect("a put");
        chain.forward(1, 2).expect("in order");
        chain.s(2).loses_session();
        assert_eq!(chain.s(2).registers(6), recovering(second));
        let view = chain.view(5, &[(1, Ready), (3, Joining), (2, recovering(second))]);
        chain.show(&[1, 2, 3], &view);
        chain.link(3, 2, 5).expect("a link from its new predecessor");
        let taken = chain.transfer_state(3, 2);
        if bug.is_some() {
            taken.expect("the bug takes the older snapshot");
            assert_eq!(chain.s(2).applied(), 1, "write 2 is gone from the member that held it");
            continue;
        }
        let refused = taken.expect_err("an older snapshot from a joiner is refused");
        assert_eq!(refused.code, ErrorCode::ERR_UNAVAILABLE);
        assert_eq!(chain.s(2).node.recoverable_history(), Some(second), "its table is kept");
    }
}

// ---- durability (issue 21, phase 3): rejoining without a state transfer ----

/// Durable servers 1 (head) and 2 commit write 1; then server 1 is fenced
/// (as a restart on its disk leaves it: its table, a complete history) with
/// `unsent` applied and synced but never forwarded; server 2 goes on alone
/// in view 4 and commits write 2 (b); server 1 registers again and is
/// listed behind it in view 5.
fn one_rejoins_behind(bug: Option<Check>, unsent: Option<&str>) -> Chain {
    let mut chain = Chain::ready_with(&[1, 2], 3, Setup { bug, durable: true });
    let first = chain.put(1, "a").expect("a put");
    chain.forward(1, 2).expect("in order");
    chain.s(1).syncs(first);
    chain.s(2).syncs(first);
    chain.report_synced(1, 2);
    chain.ack(2, 1);
    assert_eq!(chain.s(1).committed(), first);
    if let Some(key) = unsent {
        let sequence = chain.put(1, key).expect("the head applies it");
        chain.s(1).syncs(sequence);
        chain.s(1).take_forwarded();
    }
    chain.s(1).loses_session();
    chain.settle(4, &[(2, Ready)]);
    let second = chain.put(2, "b").expect("the new head takes a put");
    chain.s(2).syncs(second);
    assert_eq!(chain.s(2).committed(), second);
    let applied = chain.s(1).applied();
    assert_eq!(chain.s(1).registers(5), recovering(applied));
    chain.settle(5, &[(2, Ready), (1, recovering(applied))]);
    chain
}

/// A member that rejoins with its own table (restarted on its disk, or
/// fenced) behind a predecessor that kept the writes it lacks is sent only
/// those, not a snapshot, and is handed the tail role as after a state
/// transfer.
#[test]
fn a_rejoining_member_is_sent_only_the_writes_it_lacks() {
    let mut chain = one_rejoins_behind(None, None);
    assert_eq!(chain.open_link(2, 1, 5), Start::Resume { after: 1, rejoin: true });
    assert_eq!(chain.s(1).applied(), 2, "write 2 resent");
    assert_eq!(chain.s(1).store.get("b").map(Vec::as_slice), Some(&b"b"[..]));
    assert_eq!(chain.s(1).node.rejoins_resumed(), 1);
    chain.hand_over(2, 1).expect("caught up: handed over as after a state transfer");
    assert!(chain.s(1).announced_ready());
}

/// Not so when its last write was never committed and the chain gave that
/// number to another write (a head that crashed before forwarding what it
/// synced): resumed, it would keep a write no one else has and lack the
/// chain's (the names of the two writes differ: see `rejoin`). It gets a
/// snapshot. Pins `resume-past-divergence`.
#[test]
fn a_rejoining_member_whose_last_write_the_chain_replaced_gets_a_snapshot() {
    for bug in [None, Some(Check::RejoinIdentity)] {
        let mut chain = one_rejoins_behind(bug, Some("lost"));
        assert_eq!(chain.s(1).applied(), 2, "write 2 is \"lost\" here, \"b\" in the chain");
        let start = chain.open_link(2, 1, 5);
        if bug.is_some() {
            assert_eq!(
                start,
                Start::Resume { after: 2, rejoin: true },
                "the bug resumes past the divergence"
            );
            assert!(chain.s(1).store.contains_key("lost") && !chain.s(1).store.contains_key("b"));
            continue;
        }
        assert!(matches!(start, Start::Snapshot(_)), "{start:?}");
        chain.transfer_state(2, 1).expect("the snapshot replaces the diverged table");
        assert!(!chain.s(1).store.contains_key("lost") && chain.s(1).store.contains_key("b"));
        assert_eq!(chain.s(1).node.rejoins_resumed(), 0);
    }
}

/// A head commits a write only on its successor's ack: an ack from the
/// chain's tail when that is not our successor (a former successor's
/// delayed frame) commits nothing, though it names a write the successor
/// never passed on. Pins the successor-name half of `Check::Successor`
/// (`skip-successor-check`), which the simulator does not reach alone: its
/// links deliver no frame of a peer that is not the receiver's successor.
#[test]
fn an_ack_from_anyone_but_our_successor_commits_nothing() {
    for bug in [None, Some(Check::Successor)] {
        let mut chain = Chain::ready_with(&[1, 2, 3], 2, Setup { bug, ..Setup::default() });
        let a = chain.put(1, "a").unwrap();
        chain.forward(1, 2).unwrap();
        assert_eq!(chain.s(3).applied(), 0, "a has not reached 3");
        chain.ack_claiming(3, 1, a).unwrap();
        assert_eq!(chain.s(1).committed(), if bug.is_none() { 0 } else { a }, "bug: {bug:?}");
    }
}

/// An ack beyond what we applied is refused and remembered nowhere: no
/// successor that follows our history can send one, and kept, it would
/// commit our next writes before anyone acknowledged them. Pins the second
/// half of `Check::Successor`.
#[test]
fn an_ack_beyond_what_we_applied_is_refused() {
    for bug in [None, Some(Check::Successor)] {
        let mut chain = Chain::ready_with(&[1, 2], 2, Setup { bug, ..Setup::default() });
        let a = chain.put(1, "a").unwrap();
        chain.replicate(&[1, 2]);
        assert_eq!(chain.ack_claiming(2, 1, a + 5).is_err(), bug.is_none(), "bug: {bug:?}");
        assert_eq!(chain.s(1).committed(), a, "never beyond what was applied");
        let b = chain.put(1, "b").unwrap();
        assert_eq!(chain.s(1).committed(), if bug.is_none() { a } else { b }, "b waits for 2; bug: {bug:?}");
    }
}

/// A tail hands its role over only to a joiner that has applied every
/// write the tail has: handed over early, it would wait for the joiner's
/// acks with reads stopped meanwhile. Pins `Check::HandOverCaughtUp`
/// (`hand-over-early`), which the simulator does not reach alone (nothing
/// unsafe follows, only a slower hand-over).
#[test]
fn a_tail_hands_over_only_to_a_joiner_that_caught_up() {
    for bug in [None, Some(Check::HandOverCaughtUp)] {
        let mut chain = Chain::ready_with(&[1], 2, Setup { bug, ..Setup::default() });
        chain.put(1, "a").unwrap();
        chain.add(2);
        chain.settle(3, &[(1, Ready), (2, Joining)]);
        assert!(chain.link(1, 2, 3).unwrap().wants_snapshot);
        chain.transfer_state(1, 2).unwrap();
        let b = chain.put(1, "b").unwrap();
        assert_eq!(chain.offers_hand_over(1, 2).is_none(), bug.is_none(), "2 lacks b; bug: {bug:?}");
        if bug.is_none() {
            chain.forward(1, 2).unwrap();
            assert_eq!(chain.offers_hand_over(1, 2), Some(b), "caught up: handed over at b");
        }
    }
}

/// A member holding the chain's state refuses a snapshot older than its
/// commit point (a stale transfer on a new link) and keeps the committed
/// writes it holds. Pins the first refusal of `Check::SnapshotAcceptance`
/// (`accept-any-snapshot`), which the simulator does not reach alone: its
/// senders take every snapshot fresh.
#[test]
fn a_snapshot_older_than_our_commit_point_is_refused() {
    for bug in [None, Some(Check::SnapshotAcceptance)] {
        let mut chain = Chain::ready_with(&[1, 2], 2, Setup { bug, ..Setup::default() });
        chain.put(1, "a").unwrap();
        chain.replicate(&[1, 2]);
        let stale = chain.s(1).snapshot().unwrap();
        let b = chain.put(1, "b").unwrap();
        chain.replicate(&[1, 2]);
        assert_eq!(chain.s(2).committed(), b);
        let link = chain.link(1, 2, 2).unwrap().link;
        let installed = chain.deliver_snapshot((1, 2, link), stale, true);
        assert_eq!(installed.is_err(), bug.is_none(), "bug: {bug:?}");
        assert_eq!(chain.s(2).store.len(), if bug.is_none() { 2 } else { 1 }, "b is kept; bug: {bug:?}");
    }
}

/// A state transfer is taken from its start: a chunk that arrives without
/// the first one of its transfer is refused and changes nothing. Pins the
/// last refusal of `Check::SnapshotAcceptance`. (Its refusal of writes
/// amid a transfer is shadowed: the first chunk resets our sequence number,
/// so a write of the transfer's history arrives out of sequence anyway.)
#[test]
fn a_snapshot_chunk_without_its_start_is_refused() {
    for bug in [None, Some(Check::SnapshotAcceptance)] {
        let mut chain = Chain::ready_with(&[1], 2, Setup { bug, ..Setup::default() });
        chain.put(1, "a").unwrap();
        chain.put(1, "b").unwrap();
        chain.add(2);
        chain.settle(3, &[(1, Ready), (2, Joining)]);
        let link = chain.link(1, 2, 3).unwrap().link;
        let (start, rest) = split(chain.s(1).snapshot().unwrap());
        assert_eq!(chain.deliver_snapshot((1, 2, link), rest.clone(), false).is_err(), bug.is_none());
        assert_eq!(chain.s(2).store.len(), if bug.is_none() { 0 } else { 1 }, "bug: {bug:?}");
        chain.deliver_snapshot((1, 2, link), start, true).unwrap();
        chain.deliver_snapshot((1, 2, link), rest, false).unwrap();
        assert_eq!((chain.s(2).store.len(), chain.s(2).applied()), (2, 2), "a and b, whole");
    }
}

/// Frames of a link that a newer one from the same predecessor replaced
/// are refused: they were sent for a stream the new link may have started
/// over. Pins `Check::LatestLink` (`skip-link-check`) alone.
#[test]
fn a_frame_of_a_replaced_link_is_refused() {
    for bug in [None, Some(Check::LatestLink)] {
        let mut chain = Chain::ready_with(&[1, 2], 2, Setup { bug, ..Setup::default() });
        let old_link = chain.s(2).links[&1];
        chain.put(1, "a").unwrap();
        let delayed = chain.s(1).take_forwarded();
        chain.link(1, 2, 2).unwrap();
        let refused = chain.deliver_writes((1, 2, old_link), delayed).is_err();
        assert_eq!(refused, bug.is_none(), "bug: {bug:?}");
    }
}

/// Only our predecessor may open a link to us or send us writes: a head
/// that skips a member (a view the member left in, or a hello meant for
/// another) is refused. Pins `Check::Predecessor` (`skip-predecessor-check`).
#[test]
fn a_link_from_anyone_but_our_predecessor_is_refused() {
    for bug in [None, Some(Check::Predecessor)] {
        let mut chain = Chain::ready_with(&[1, 2, 3], 2, Setup { bug, ..Setup::default() });
        chain.put(1, "a").unwrap();
        let writes = chain.s(1).take_forwarded();
        let link = chain.s(3).links[&2];
        assert_eq!(chain.deliver_writes((1, 3, link), writes).is_err(), bug.is_none(), "bug: {bug:?}");
        assert_eq!(chain.s(3).applied(), if bug.is_none() { 0 } else { 1 }, "a skipped 2; bug: {bug:?}");
        assert_eq!(chain.link(1, 3, 2).is_err(), bug.is_none(), "1 is not 3's predecessor; bug: {bug:?}");
    }
}

/// A link that broke with writes in flight resumes after the last write
/// its successor applied, not after the last one sent: what the broken link
/// lost is sent again. Pins `Check::ResumePoint` (`resume-past-applied`).
#[test]
fn a_link_resumes_after_what_its_successor_applied_not_what_was_sent() {
    for bug in [None, Some(Check::ResumePoint)] {
        let mut chain = Chain::ready_with(&[1, 2], 2, Setup { bug, ..Setup::default() });
        let mut downlink = Downlink::default();
        // The first link starts with an (empty) snapshot: nothing was sent.
        assert!(matches!(chain.reopen_link(1, 2, 2, &mut downlink), Start::Snapshot(_)));
        chain.transfer_state(1, 2).unwrap();
        chain.put(1, "a").unwrap();
        let b = chain.put(1, "b").unwrap();
        let mut sent = chain.s(1).take_queued();
        assert!(downlink.take_queued(sent.clone()));
        // Only a arrives before the link breaks.
        sent.truncate(1);
        let link = chain.s(2).links[&1];
        chain.deliver_writes((1, 2, link), sent.into_iter().map(|(_, write)| write).collect()).unwrap();
        downlink.closed();
        chain.reopen_link(1, 2, 2, &mut downlink);
        assert_eq!(chain.s(2).applied(), if bug.is_none() { b } else { 1 }, "b sent again; bug: {bug:?}");
    }
}
