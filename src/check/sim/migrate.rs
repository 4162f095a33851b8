//! Migrations in the simulator (`--chains` 2 or more), around the core's
//! decisions: the nemesis starts and aborts migrations of slot ranges
//! around the clients' keys; the source chain's head drives each with the
//! core's [`Driver`]; the target's head takes the stream with the core's
//! [`Importer`] and `ChainNode::import_write`; members refuse moving slots
//! by the core's `SlotGate` over the pause markers in their tables; and
//! every server knows the map only as late as ZooKeeper's watch tells it.

use std::collections::VecDeque;

use super::crash::may_crash;
use super::server::{SimStore, server_of};
use super::world::{Event, SESSION_TIMEOUT_MS, World, chain_path};
use crate::chain::clients::record;
use crate::chain::migration::{Driver, MapSays, Phase, Span, Step, ZkAnswer};
use crate::chain::slot_gate::{Import, Importer, MARKER_PREFIX, Marker, SlotGate, marker_key, parse_marker};
use crate::chain::{Check, Outcome, Role, WriteOp};
use crate::proto::ClientRecord;
use crate::shard::map::{RangeState, ShardMap};
use crate::shard::slot::slot_of;

/// A frame of a migration stream.
#[derive(Debug)]
pub enum MigrationFrame {
    /// The slots' keys and every client record, at one sequence number.
    Snapshot { pairs: Vec<(String, Vec<u8>)>, records: Vec<ClientRecord> },
    /// A committed write to the slots, with its client's answer.
    Write { key: String, value: Option<Vec<u8>>, record: ClientRecord },
}

/// Frame `index` of attempt `attempt`'s stream from head `from` to the
/// target's head `to`.
#[derive(Debug)]
pub struct StreamFrame {
    pub(super) from: usize,
    pub(super) to: usize,
    pub(super) attempt: u64,
    pub(super) index: u64,
    pub(super) span: Span,
    pub(super) frame: MigrationFrame,
}

/// A source head driving a migration.
pub(super) struct Driving {
    driver: Driver,
    /// The target chain (index).
    target: usize,
    /// The target head the current attempt streams to, and the attempt.
    to: Option<(usize, u64)>,
    /// The attempt's snapshot, sent once our chain committed its point.
    snapshot: Option<(u64, MigrationFrame)>,
    /// Writes to the slots applied after the snapshot, not yet sent.
    queue: VecDeque<(u64, MigrationFrame)>,
    /// Every write to the slots up to here was sent.
    forwarded_through: u64,
    /// Frames sent in this attempt: each is numbered, and the target takes
    /// them only in order (a process paused twice in the simulator gets
    /// its events back in another order than a socket would).
    frames_sent: u64,
}

/// A target head taking a stream.
pub(super) struct Importing {
    importer: Importer,
    /// The source head and the attempt it streams.
    from: usize,
    attempt: u64,
    /// Frames taken in this attempt.
    items: u64,
    /// (our last import write of a frame, frames taken by then): acked
    /// once committed.
    acks: VecDeque<(u64, u64)>,
}

/// One import write: a key's state (`""`: none) and a record.
type ImportWrite = ((String, Option<Vec<u8>>), Option<ClientRecord>);

/// The gate a table's pause markers make.
pub(super) fn gate_of(store: &SimStore, bug: Option<Check>) -> SlotGate {
    let mut gate = SlotGate::new(bug);
    let markers =
        store.range(MARKER_PREFIX.to_owned()..).take_while(|(key, _)| key.starts_with(MARKER_PREFIX));
    for (key, value) in markers {
        let (span, attempt) = parse_marker(key, value).expect("markers are written well-formed");
        gate.apply(Marker::Pause { span, attempt });
    }
    gate
}

/// The client keys of `span` in `store`.
fn keys_in(store: &SimStore, span: Span) -> Vec<(String, Vec<u8>)> {
    let client_key = |key: &String| !key.starts_with('\u{0}') && span.contains(slot_of(key));
    store.iter().filter(|(key, _)| client_key(key)).map(|(key, value)| (key.clone(), value.clone())).collect()
}

impl World {
    fn is_head(&self, index: usize) -> bool {
        let server = &self.servers[index];
        server.alive && matches!(server.node.role(), Role::Head | Role::HeadAndTail)
    }

    /// Tells every server the map, each a little later (a watch; a few are
    /// lost, and some are slow: the periodic re-read catches up).
    pub(super) fn notify_map(&mut self) {
        for index in 0..self.servers.len() {
            if self.rng.below(1000) >= self.swarm.lost_watch_per_mille {
                self.deliver_map(index);
            }
        }
    }

    fn deliver_map(&mut self, index: usize) {
        let Some(map) = self.map.clone() else { return };
        if self.zk_cut.contains(&index) || !self.servers[index].alive {
            return;
        }
        let delay =
            if self.rng.below(10) == 0 { self.rng.between(100, 600) } else { self.rng.between(1, 30) };
        self.schedule(delay, Event::MapRead { server: index, map });
    }

    pub(super) fn map_read(&mut self, index: usize, map: ShardMap) {
        let known = &mut self.servers[index].known_map;
        if known.as_ref().is_none_or(|known| known.version < map.version) {
            *known = Some(map);
        }
    }

    /// One version-checked set of the map by server `index`: its content
    /// unchanged (a claim) or with `span` given to `chain`.
    fn set_map(&mut self, index: usize, base: u64, change: Option<(Span, usize)>) -> ZkAnswer {
        let Some(map) = self.map.as_ref().filter(|_| !self.zk_cut.contains(&index)) else {
            return ZkAnswer::Unknown;
        };
        if map.version != base {
            return ZkAnswer::BadVersion;
        }
        let mut next = match change {
            None => map.clone(),
            Some((span, chain)) => map
                .with_range(span.first, span.last, &chain_path(chain), RangeState::Stable)
                .expect("a flip of a valid map is valid"),
        };
        next.version = base + 1;
        self.trace(|| format!("zk: s{index} set the map at {base}: {:?}", change));
        self.map = Some(next);
        self.notify_map();
        if self.rng.below(20) == 0 { ZkAnswer::Unknown } else { ZkAnswer::Done { version: base + 1 } }
    }

    /// A server's migration work, at its tick.
    pub(super) fn migration_tick(&mut self, index: usize) {
        if self.rng.below(10) == 0 {
            self.deliver_map(index);
        }
        if !self.is_head(index) {
            self.servers[index].driving = None;
            self.servers[index].importing = None;
            return;
        }
        self.import_acks(index);
        if self.servers[index].driving.is_none() {
            self.start_driving(index);
            return;
        }
        let link_up = self.servers[index].driving.as_ref().and_then(|driving| driving.to);
        if let Some((to, attempt)) = link_up
            && (!self.reachable(index, to) || !self.is_head(to))
        {
            self.migration_broken(index, attempt);
        }
        if let Some(driving) = &self.servers[index].driving
            && let (None, Phase::Streaming { attempt }) = (driving.to, driving.driver.phase())
        {
            self.open_stream(index, attempt);
        }
        self.stream_work(index);
        let now = self.clock(index);
        let Some(driving) = &mut self.servers[index].driving else { return };
        let mut steps = driving.driver.tick(now);
        if matches!(driving.driver.phase(), Phase::Reading | Phase::Flipping { .. })
            && !self.zk_cut.contains(&index)
        {
            steps.push(Step::ReadMap);
        }
        self.carry_steps(index, steps);
    }

    /// A head whose map shows its chain's slots migrating starts driving.
    fn start_driving(&mut self, index: usize) {
        let server = &self.servers[index];
        let own = chain_path(server.chain);
        let Some(map) = &server.known_map else { return };
        let moving = map.ranges().iter().find_map(|range| match &range.state {
            RangeState::MigratingTo(target) if range.chain == own => {
                Some((Span { first: range.first, last: range.last }, target.clone()))
            }
            _ => None,
        });
        let Some((span, target)) = moving else { return };
        let target =
            (0..self.config.chains).find(|&chain| chain_path(chain) == target).expect("a simulated chain");
        let paused = gate_of(&server.store, None).paused().iter().any(|(paused, _)| *paused == span);
        let (driver, steps) = Driver::start(span, map.version, paused, self.config.bug);
        self.trace(|| format!("s{index} drives the migration of {span:?} to chain {target}"));
        let driving = Driving {
            driver,
            target,
            to: None,
            snapshot: None,
            queue: VecDeque::new(),
            forwarded_through: 0,
            frames_sent: 0,
        };
        self.servers[index].driving = Some(driving);
        self.carry_steps(index, steps);
    }

    fn carry_steps(&mut self, index: usize, steps: Vec<Step>) {
        let mut work: VecDeque<Step> = steps.into();
        let mut carried = 0;
        while let Some(step) = work.pop_front() {
            carried += 1;
            assert!(carried < 100, "s{index}: the driver's steps do not end: {step:?}");
            self.trace(|| format!("s{index} migration: {step:?}"));
            let Some(driving) = self.servers[index].driving.as_ref() else { return };
            let (span, target) = (driving.driver.span(), driving.target);
            let more = match step {
                Step::Claim { version } => {
                    let answer = self.set_map(index, version, None);
                    self.driver(index).claim_answered(answer)
                }
                Step::ReadMap if self.zk_cut.contains(&index) => Vec::new(),
                Step::ReadMap => {
                    let map = self.map.as_ref().expect("a run of chains has a map");
                    let own = chain_path(self.servers[index].chain);
                    let says = MapSays::of(map, span, &own, &chain_path(target));
                    self.driver(index).map_read(says)
                }
                Step::Stream { attempt } => self.open_stream(index, attempt),
                Step::Pause { attempt } => {
                    self.migration_fault(index, target);
                    match self.marker_write(index, span, Some(attempt.to_string().into_bytes())) {
                        Some(sequence) => self.driver(index).paused_at(sequence),
                        None => return,
                    }
                    Vec::new()
                }
                Step::Resume => {
                    if self.marker_write(index, span, None).is_none() {
                        return;
                    }
                    Vec::new()
                }
                Step::Flip { base } => {
                    self.migration_fault(index, target);
                    let answer = self.set_map(index, base, Some((span, target)));
                    self.driver(index).flip_answered(answer)
                }
                Step::Finished { .. } | Step::Abandoned => {
                    self.servers[index].driving = None;
                    return;
                }
            };
            work.extend(more);
        }
    }

    /// A fault aimed at a migration's step (its driver, head `index`, is
    /// about to pause or to flip), now and then: the driver pauses past its
    /// session (another head takes over mid-step), or the target chain's
    /// head pauses as long or crashes.
    fn migration_fault(&mut self, index: usize, target: usize) {
        if self.quiet_since_ms.is_some() || self.rng.below(6) != 0 {
            return;
        }
        let view = self.zk.view(target);
        let head = view.head().and_then(|member| server_of(&member.address));
        let head = head.filter(|&head| self.servers[head].alive);
        let duration = SESSION_TIMEOUT_MS + self.rng.between(0, 500);
        match (self.rng.below(3), head) {
            (0, _) => self.pause(index, duration),
            (1, Some(head)) => self.pause(head, duration),
            (_, Some(head)) => {
                let live: Vec<usize> =
                    (0..self.servers.len()).filter(|&server| self.servers[server].alive).collect();
                let durable = self.servers[head].disk.is_some();
                if may_crash(&view.record, &live, head, durable) {
                    self.crash(head);
                }
            }
            (_, None) => {}
        }
    }

    fn driver(&mut self, index: usize) -> &mut Driver {
        &mut self.servers[index].driving.as_mut().expect("driving").driver
    }

    /// Sequences a pause marker (`Some(attempt)`) or a resume (`None`) at
    /// head `index`; refused (no longer head, no lease), the driving ends
    /// (a driver may stop at any moment: the next one reads the map and
    /// the history).
    fn marker_write(&mut self, index: usize, span: Span, value: Option<Vec<u8>>) -> Option<u64> {
        let now = self.clock(index);
        let mut actions = super::disk::Carry::default();
        let server = &mut self.servers[index];
        let op = WriteOp::Set { key: marker_key(span), value };
        match server.node.client_write(0, 0, op, now, &mut server.store, &mut actions) {
            Ok(receipt) => {
                self.carry(index, actions);
                Some(receipt.sequence)
            }
            Err(_) => {
                self.carry(index, actions);
                self.servers[index].driving = None;
                None
            }
        }
    }

    /// A new attempt: a snapshot of the slots now, sent once committed;
    /// while the target chain has no head, tried again at each tick.
    fn open_stream(&mut self, index: usize, attempt: u64) -> Vec<Step> {
        let target = self.servers[index].driving.as_ref().expect("driving").target;
        let head = self.zk.view(target).head().and_then(|member| server_of(&member.address));
        let head = head.filter(|_| !self.zk_cut.contains(&index));
        let server = &mut self.servers[index];
        let driving = server.driving.as_mut().expect("driving");
        let span = driving.driver.span();
        let frame = MigrationFrame::Snapshot {
            pairs: keys_in(&server.store, span),
            records: server.node.client_records_all(),
        };
        driving.snapshot = Some((server.node.progress().applied, frame));
        driving.queue.clear();
        driving.frames_sent = 0;
        driving.to = head.map(|head| (head, attempt));
        Vec::new()
    }

    /// A client write to the slots applied at a driving head: queued for
    /// the stream, sent once committed.
    pub(super) fn applied_write(
        &mut self,
        index: usize,
        (client_id, request_id): (u64, u64),
        key: &str,
        sequence: u64,
        outcome: &Outcome,
    ) {
        let Outcome::Applied { found, number } = *outcome else { return };
        let server = &mut self.servers[index];
        let Some(driving) = &mut server.driving else { return };
        if driving.to.is_none() || !driving.driver.span().contains(slot_of(key)) {
            return;
        }
        let write = MigrationFrame::Write {
            key: key.to_owned(),
            value: server.store.get(key).cloned(),
            record: record(client_id, request_id, sequence, found, number),
        };
        driving.queue.push_back((sequence, write));
    }

    /// Sends what our chain committed of the stream.
    fn stream_work(&mut self, index: usize) {
        let server = &mut self.servers[index];
        let committed = server.node.progress().committed;
        let Some(driving) = &mut server.driving else { return };
        let Some((to, attempt)) = driving.to else { return };
        let mut frames = Vec::new();
        if driving.snapshot.as_ref().is_some_and(|(at, _)| *at <= committed) {
            frames.push((driving.snapshot.take().expect("there").1, true));
        }
        if driving.snapshot.is_none() {
            while driving.queue.front().is_some_and(|(sequence, _)| *sequence <= committed) {
                frames.push((driving.queue.pop_front().expect("there").1, false));
            }
            driving.forwarded_through = committed;
        }
        driving.driver.progress(driving.forwarded_through, committed);
        let span = driving.driver.span();
        for (frame, snapshot) in frames {
            let driving = self.servers[index].driving.as_mut().expect("driving");
            driving.driver.sent(attempt, 1, snapshot);
            driving.frames_sent += 1;
            let number = driving.frames_sent - 1;
            self.send_frame(StreamFrame { from: index, to, attempt, index: number, span, frame });
        }
    }

    fn send_frame(&mut self, frame: StreamFrame) {
        if !self.reachable(frame.from, frame.to) {
            self.schedule(1, Event::MigrationBroken { to: frame.from, attempt: frame.attempt });
            return;
        }
        let delay = self.migration_delay(frame.from, frame.to);
        self.schedule(delay, Event::MigrationFrame(frame));
    }

    /// A delay on the migration link from `from` to `to`, in order behind
    /// what was sent before on it.
    fn migration_delay(&mut self, from: usize, to: usize) -> u64 {
        let delay = self.rng.between(0, 5);
        let last = self.migration_fifo.entry((from, to)).or_insert(0);
        *last = (*last).max(self.now_ms + delay);
        *last - self.now_ms
    }

    pub(super) fn migration_broken(&mut self, index: usize, attempt: u64) {
        let Some(driving) = &mut self.servers[index].driving else { return };
        if driving.to.is_some_and(|(_, current)| current == attempt) {
            driving.to = None;
            let steps = driving.driver.link_broken();
            self.carry_steps(index, steps);
        }
    }

    pub(super) fn migration_ack(&mut self, index: usize, attempt: u64, items: u64) {
        if let Some(driving) = &mut self.servers[index].driving
            && driving.to.is_some_and(|(_, current)| current == attempt)
        {
            driving.driver.acked(attempt, items);
        }
    }

    /// A frame arrives at the target's head `to`.
    pub(super) fn migration_frame(&mut self, frame: StreamFrame) {
        let StreamFrame { from, to, attempt, index, span, frame } = frame;
        if !self.is_head(to) {
            self.servers[to].importing = None;
            self.schedule(1, Event::MigrationBroken { to: from, attempt });
            return;
        }
        let bug = self.config.bug;
        let server = &mut self.servers[to];
        let importing = server.importing.get_or_insert_with(|| Importing {
            importer: Importer::new(span, bug),
            from,
            attempt: 0,
            items: 0,
            acks: VecDeque::new(),
        });
        if importing.importer.span() != span {
            importing.importer = Importer::new(span, bug);
        }
        let mut writes: Vec<ImportWrite> = Vec::new();
        match importing.importer.frame(attempt) {
            Import::Refuse => return,
            Import::StartOver => {
                (importing.from, importing.attempt, importing.items) = (from, attempt, 0);
                importing.acks.clear();
                writes.extend(keys_in(&server.store, span).into_iter().map(|(key, _)| ((key, None), None)));
            }
            Import::Take => {}
        }
        if index != importing.items {
            // Out of order: this attempt ends (the driver starts another).
            server.importing = None;
            self.schedule(1, Event::MigrationBroken { to: from, attempt });
            return;
        }
        match frame {
            MigrationFrame::Snapshot { pairs, records } => {
                writes.extend(pairs.into_iter().map(|(key, value)| ((key, Some(value)), None)));
                writes.extend(records.into_iter().map(|record| ((String::new(), None), Some(record))));
            }
            MigrationFrame::Write { key, value, record } => writes.push(((key, value), Some(record))),
        }
        self.import(to, writes);
    }

    /// Sequences the writes of one frame at the target's head.
    fn import(&mut self, to: usize, writes: Vec<ImportWrite>) {
        let now = self.clock(to);
        let mut actions = super::disk::Carry::default();
        let server = &mut self.servers[to];
        let importing = server.importing.as_mut().expect("importing");
        let mut last = server.node.progress().applied;
        for ((key, value), record) in writes {
            let stores = (&mut server.store, &mut actions);
            match server.node.import_write((&key, value), record.as_ref(), &importing.importer, now, stores) {
                Ok(sequence) => last = sequence,
                Err(_) => {
                    let (from, attempt) = (importing.from, importing.attempt);
                    server.importing = None;
                    self.carry(to, actions);
                    self.schedule(1, Event::MigrationBroken { to: from, attempt });
                    return;
                }
            }
        }
        importing.items += 1;
        importing.acks.push_back((last, importing.items));
        self.carry(to, actions);
        self.import_acks(to);
        self.after_step(to);
    }

    /// Acks what the target chain committed of the stream.
    fn import_acks(&mut self, index: usize) {
        let committed = self.servers[index].node.progress().committed;
        let Some(importing) = &mut self.servers[index].importing else { return };
        let mut items = None;
        while importing.acks.front().is_some_and(|(sequence, _)| *sequence <= committed) {
            items = importing.acks.pop_front().map(|(_, items)| items);
        }
        let (from, attempt) = (importing.from, importing.attempt);
        if let Some(items) = items
            && self.reachable(index, from)
        {
            let delay = self.migration_delay(index, from);
            self.schedule(delay, Event::MigrationAck { to: from, attempt, items });
        }
    }

    /// The nemesis of migrations: starts one around a client's key, or
    /// aborts the one running.
    pub(super) fn migrate_nemesis(&mut self) {
        if self.quiet_since_ms.is_some() {
            return;
        }
        let next = self.rng.between(300, 2000);
        self.schedule(next, Event::MigrateNemesis);
        let map = self.map.clone().expect("a run of chains has a map");
        let running = map.ranges().iter().find(|range| range.state != RangeState::Stable).cloned();
        let next_map = match running {
            Some(range) if self.rng.below(6) == 0 => {
                self.fault(format!("abort the migration of {}-{}", range.first, range.last), None);
                map.with_range(range.first, range.last, &range.chain, RangeState::Stable)
            }
            Some(_) => return,
            None => {
                let keys = super::client::key_count(self.config.chains);
                let slot = slot_of(&format!("k{}", self.rng.below(keys)));
                let owner = map.owner_index(slot) as usize;
                let range = map
                    .ranges()
                    .iter()
                    .find(|range| range.first <= slot && slot <= range.last)
                    .expect("covered");
                let width = self.rng.below(64) as u16;
                let first = slot.saturating_sub(self.rng.below(u64::from(width) + 1) as u16).max(range.first);
                let last = slot.saturating_add(self.rng.below(u64::from(width) + 1) as u16).min(range.last);
                let target =
                    (owner + 1 + self.rng.below(self.config.chains as u64 - 1) as usize) % self.config.chains;
                self.fault(format!("migrate {first}-{last} from chain {owner} to chain {target}"), None);
                map.with_range(first, last, &chain_path(owner), RangeState::MigratingTo(chain_path(target)))
            }
        };
        let mut next_map = next_map.expect("a valid change");
        next_map.version = map.version + 1;
        self.map = Some(next_map);
        self.notify_map();
    }
}
