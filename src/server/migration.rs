//! The migration thread: at the head of a source chain it drives a
//! migration of slots to another chain (see `chain::migration`) by carrying
//! out the core [`Driver`]'s steps — claims and flips of the map through
//! ZooKeeper, the stream to the target's head ([`SourceLink`]), pause and
//! resume markers as writes of our chain — and feeds it the map, the time
//! and the stream's progress. Any other member does nothing here: a member
//! that becomes head finds the migration in the map and takes it over.
//! After a flip it deletes the moved keys in batches of ordinary writes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use parking_lot::Mutex;

use super::slot_check::ShardGuard;
use crate::chain::migration::{Driver, MapSays, Phase, Span, Step, ZkAnswer};
use crate::chain::slot_gate::{Deletion, MovedAway, SlotGate, marker_key};
use crate::coord::shard_watch::{MapReading, MapSession};
use crate::limits::{MIGRATION_DELETE_BATCH, MIGRATION_FRAME_ITEMS_MAX, MIGRATION_TICK};
use crate::proto::{Entry, MigratedWrite, MigrationFrame, Statistics};
use crate::replica::Replica;
use crate::replica::migration::SlotSnapshot;
use crate::replication::LinkSettings;
use crate::replication::migration::{SourceLink, frames_of};
use crate::shard::map::{RangeState, ShardMap};
use crate::shard::slot::slot_of;

/// How often a driver waiting on the map reads it again, and how long it
/// waits before it opens a stream again after failing to.
const MAP_READ_EVERY: Duration = Duration::from_millis(20);
const REOPEN_PAUSE: Duration = Duration::from_millis(200);

/// What `stats` shows of this server's migrations (the `migrate` command
/// asks the source head for it).
#[derive(Default)]
pub struct MigrationStatus {
    keys_sent: AtomicU64,
    bytes_sent: AtomicU64,
    phase: Mutex<String>,
    pause_ms: AtomicU64,
    keys_deleted: AtomicU64,
}

impl MigrationStatus {
    pub fn fill(&self, statistics: &mut Statistics) {
        statistics.migration_keys_sent = self.keys_sent.load(Ordering::Relaxed);
        statistics.migration_bytes_sent = self.bytes_sent.load(Ordering::Relaxed);
        statistics.migration_phase = self.phase.lock().clone();
        statistics.migration_pause_ms = self.pause_ms.load(Ordering::Relaxed);
        statistics.migration_keys_deleted = self.keys_deleted.load(Ordering::Relaxed);
    }

    /// A migration is taken up: its counts start from 0 (a head shows the
    /// migration it drives now, or drove last).
    fn restart(&self) {
        self.keys_sent.store(0, Ordering::Relaxed);
        self.bytes_sent.store(0, Ordering::Relaxed);
        self.pause_ms.store(0, Ordering::Relaxed);
    }

    fn sent(&self, keys: usize, bytes: usize) {
        self.keys_sent.fetch_add(keys as u64, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Where the thread's ZooKeeper, chain and peers are.
pub struct MigrationContext {
    pub replica: Arc<Replica>,
    pub guard: Arc<ShardGuard>,
    pub status: Arc<MigrationStatus>,
    pub settings: Arc<LinkSettings>,
    pub zk: MapSession,
    /// Our chain's path, and our address (naming us to the target).
    pub chain_path: String,
    pub me: String,
}

/// One migration this head drives.
struct Driving {
    driver: Driver,
    target: String,
    link: Option<SourceLink>,
    /// The snapshot's frames not sent yet, and the sequence it was taken at
    /// (sent once our chain committed that far).
    snapshot: Option<(u64, VecDeque<MigrationFrame>)>,
    /// Every tapped write up to here was sent.
    forwarded_through: u64,
    paused_since: Option<Instant>,
    next_open: Instant,
    last_map_read: Instant,
    /// The map version the slots flipped in, once they did.
    flipped: Option<u64>,
}

/// Keys a sweep at one map version found in slots the map gives away,
/// deleted as `moved` decides.
struct Deleting {
    moved: MovedAway,
    keys: Vec<String>,
}

/// Starts the migration thread.
pub fn start(mut context: MigrationContext, stopping: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("migration".into()).spawn(move || {
        let started = Instant::now();
        let mut driving: Option<Driving> = None;
        // The keys of slots our migrations moved away, found by a sweep
        // of the table at each map version this server knows as head
        // (also what a former head left); until deleted (or ours again).
        let mut deleting: Option<Deleting> = None;
        let mut swept = None;
        let mut flipped: Option<u64> = None;
        while !stopping.load(Ordering::SeqCst) {
            std::thread::sleep(MIGRATION_TICK);
            if !context.replica.is_head() {
                if driving.take().is_some() {
                    context.replica.stop_migration_tap();
                    context.set_phase("");
                }
                (deleting, swept) = (None, None);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let Some(map) = context.guard.map() else { continue };
            match driving.as_mut() {
                Some(current) => {
                    let now_ms = started.elapsed().as_millis() as u64;
                    if context.drive(current, &map, now_ms) {
                        flipped = current.flipped.or(flipped);
                        driving = None;
                        context.replica.stop_migration_tap();
                        context.set_phase("");
                    }
                }
                None => {
                    if swept != Some(map.version) {
                        swept = Some(map.version);
                        deleting = Some(context.sweep(&map));
                    }
                    // Keys that must wait (a migration of their slots back
                    // to us) hold up no migration of ours.
                    if let Some(moved) = &mut deleting {
                        context.delete_some(moved, &map);
                    }
                    // A map older than a flip we saw still shows that
                    // migration running: nothing to take up from it.
                    if flipped.is_none_or(|flipped| map.version >= flipped) {
                        driving = context.start_driving(&map);
                    }
                }
            }
        }
        context.replica.stop_migration_tap();
    })
}

impl MigrationContext {
    fn set_phase(&self, phase: &str) {
        *self.status.phase.lock() = phase.to_owned();
    }

    /// A migration of our slots in `map`, if one runs, taken up.
    fn start_driving(&mut self, map: &ShardMap) -> Option<Driving> {
        let (span, target) = map.ranges().iter().find_map(|range| match &range.state {
            RangeState::MigratingTo(target) if range.chain == self.chain_path => {
                Some((Span { first: range.first, last: range.last }, target.clone()))
            }
            _ => None,
        })?;
        self.status.restart();
        let paused = self.replica.markers.spans().iter().any(|(paused, _)| *paused == span);
        info!(
            "driving the migration of slots {}-{} to {target} (map version {})",
            span.first, span.last, map.version
        );
        let (driver, steps) = Driver::start(span, map.version, paused, None);
        let now = Instant::now();
        let mut driving = Driving {
            driver,
            target,
            link: None,
            snapshot: None,
            forwarded_through: 0,
            paused_since: None,
            next_open: now,
            last_map_read: now,
            flipped: None,
        };
        (!self.carry(&mut driving, steps)).then_some(driving)
    }

    /// One round of a migration; true once it is over.
    fn drive(&mut self, driving: &mut Driving, map: &ShardMap, now_ms: u64) -> bool {
        let mut steps = Vec::new();
        if driving.link.as_ref().is_some_and(SourceLink::is_closed) {
            steps.extend(self.broken(driving, "the target closed the stream"));
        }
        if let (None, Phase::Streaming { attempt }) = (&driving.link, driving.driver.phase())
            && Instant::now() >= driving.next_open
        {
            self.open_stream(driving, attempt);
        }
        if let Err(error) = self.stream_work(driving) {
            steps.extend(self.broken(driving, &error));
        }
        steps.extend(driving.driver.tick(now_ms));
        let attempt = match driving.driver.phase() {
            Phase::Streaming { attempt } | Phase::Draining { attempt, .. } => Some(attempt),
            _ => None,
        };
        let waiting = matches!(driving.driver.phase(), Phase::Reading | Phase::Flipping { .. });
        let newer_map = attempt.is_some_and(|attempt| map.version > attempt);
        if (waiting || newer_map) && driving.last_map_read.elapsed() >= MAP_READ_EVERY {
            driving.last_map_read = Instant::now();
            steps.push(Step::ReadMap);
        }
        self.set_phase(phase_name(driving.driver.phase()));
        self.carry(driving, steps)
    }

    /// The stream broke: the driver starts a new attempt.
    fn broken(&self, driving: &mut Driving, why: &str) -> Vec<Step> {
        debug!("migration stream to {}: {why}", driving.target);
        driving.link = None;
        driving.snapshot = None;
        self.replica.stop_migration_tap();
        driving.driver.link_broken()
    }

    /// Opens the attempt's stream: the link to the target's head, then a
    /// snapshot of the slots (its frames sent once committed here).
    fn open_stream(&mut self, driving: &mut Driving, attempt: u64) {
        driving.next_open = Instant::now() + REOPEN_PAUSE;
        let head = match self.zk.head_of(&driving.target) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(error) => return debug!("migration: reading {}: {error}", driving.target),
        };
        let span = driving.driver.span();
        let link = match SourceLink::open(&head, &driving.target, (attempt, span), &self.me, &self.settings) {
            Ok(link) => link,
            Err(error) => return warn!("migration: cannot stream to {head}: {error}"),
        };
        let Ok(snapshot) = self.replica.migration_snapshot(span) else { return };
        driving.snapshot = Some((snapshot.applied, snapshot_frames(snapshot)));
        driving.forwarded_through = 0;
        driving.link = Some(link);
    }

    /// Sends what our chain committed of the stream, and tells the driver
    /// how far it got.
    fn stream_work(&self, driving: &mut Driving) -> Result<(), String> {
        let committed = self.replica.progress().committed;
        let Some(link) = driving.link.as_mut() else { return Ok(()) };
        let attempt = link.attempt();
        if let Some((taken_at, frames)) = driving.snapshot.as_mut()
            && *taken_at <= committed
        {
            while let Some(mut frame) = frames.pop_front() {
                frame.snapshot_done = frames.is_empty();
                let bytes: usize =
                    frame.entries.iter().map(|entry| entry.key.len() + entry.value.len()).sum();
                self.status.sent(frame.entries.len(), bytes);
                let done = frame.snapshot_done;
                link.send(frame).map_err(|error| error.to_string())?;
                driving.driver.sent(attempt, 1, done);
            }
            driving.snapshot = None;
        }
        if driving.snapshot.is_none() {
            let writes =
                self.replica.migration_tapped(committed).ok_or("too many writes waiting to be sent")?;
            for frame in write_frames(writes) {
                let bytes: usize = frame
                    .writes
                    .iter()
                    .map(|write| write.key.len() + write.value.as_ref().map_or(0, Vec::len))
                    .sum();
                self.status.sent(frame.writes.len(), bytes);
                link.send(frame).map_err(|error| error.to_string())?;
                driving.driver.sent(attempt, 1, false);
            }
            driving.forwarded_through = committed;
        }
        driving.driver.progress(driving.forwarded_through, committed);
        driving.driver.acked(attempt, link.acked());
        Ok(())
    }

    /// Carries out `steps` (and the steps they lead to); true once the
    /// migration is over here (the next sweep finds what moved away).
    fn carry(&mut self, driving: &mut Driving, steps: Vec<Step>) -> bool {
        let mut work: VecDeque<Step> = steps.into();
        let span = driving.driver.span();
        let mut carried = 0;
        while let Some(step) = work.pop_front() {
            carried += 1;
            assert!(carried < 100, "the driver's steps do not end: {step:?}");
            debug!("migration of {}-{}: {step:?}", span.first, span.last);
            let more = match step {
                Step::Claim { version } => {
                    let answer = self.set_map(version, |map| Ok(map.clone()));
                    driving.driver.claim_answered(answer)
                }
                Step::ReadMap => match self.zk.read() {
                    Ok(MapReading::Map(map)) => {
                        driving.driver.map_read(MapSays::of(&map, span, &self.chain_path, &driving.target))
                    }
                    _ => Vec::new(),
                },
                Step::Stream { .. } => {
                    driving.link = None;
                    driving.snapshot = None;
                    self.replica.stop_migration_tap();
                    driving.next_open = Instant::now();
                    Vec::new()
                }
                Step::Pause { attempt } => {
                    let marker = self
                        .replica
                        .migration_write(marker_key(span), Some(attempt.to_string().into_bytes()));
                    let Ok(sequence) = marker else { return true };
                    driving.paused_since = Some(Instant::now());
                    driving.driver.paused_at(sequence);
                    Vec::new()
                }
                Step::Resume => {
                    self.note_pause(driving);
                    if self.replica.migration_write(marker_key(span), None).is_err() {
                        return true;
                    }
                    Vec::new()
                }
                Step::Flip { base } => {
                    let target = driving.target.clone();
                    let answer = self.set_map(base, |map| {
                        map.with_range(span.first, span.last, &target, RangeState::Stable)
                            .map_err(|error| error.0)
                    });
                    driving.driver.flip_answered(answer)
                }
                Step::Finished { version } => {
                    self.note_pause(driving);
                    info!(
                        "slots {}-{} moved to {} (map version {version})",
                        span.first, span.last, driving.target
                    );
                    (driving.link, driving.flipped) = (None, Some(version));
                    return true;
                }
                Step::Abandoned => {
                    info!("the migration of slots {}-{} was aborted", span.first, span.last);
                    driving.link = None;
                    return true;
                }
            };
            work.extend(more);
        }
        false
    }

    fn note_pause(&self, driving: &mut Driving) {
        if let Some(since) = driving.paused_since.take() {
            self.status.pause_ms.store(since.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// A version-checked set of the map at `base` to what `change` makes of
    /// it as read (unknown if it cannot be read).
    fn set_map(&mut self, base: u64, change: impl FnOnce(&ShardMap) -> Result<ShardMap, String>) -> ZkAnswer {
        match self.zk.read() {
            Ok(MapReading::Map(map)) if map.version != base => ZkAnswer::BadVersion,
            Ok(MapReading::Map(map)) => match change(&map) {
                Ok(next) => self.zk.set_at(next, base),
                Err(error) => {
                    warn!("migration: {error}");
                    ZkAnswer::Unknown
                }
            },
            Ok(_) => ZkAnswer::BadVersion,
            Err(_) => ZkAnswer::Unknown,
        }
    }

    /// The keys we hold of slots that a migration paused here and `map`
    /// gives away (see `SlotGate::deletable`). A pause marker stays after
    /// its flip, in every member, so a head that took over finds what its
    /// former head left; keys the map gives away without a migration of
    /// ours (a table sharded after it was written, a chain named by
    /// mistake) stay for the operator to move or look at.
    fn sweep(&self, map: &ShardMap) -> Deleting {
        let paused: Vec<Span> = self.replica.markers.spans().into_iter().map(|(span, _)| span).collect();
        let moved = |slot| paused.iter().any(|span| span.contains(slot));
        let keys = match paused.is_empty() {
            true => Vec::new(),
            false => {
                self.replica.keys_in(|slot| moved(slot) && SlotGate::deletable(map, &self.chain_path, slot))
            }
        };
        if !keys.is_empty() {
            info!(
                "{} keys held of slots that map version {} gives away: deleting them",
                keys.len(),
                map.version
            );
        }
        Deleting { moved: MovedAway { flipped: map.version, bug: None }, keys }
    }

    /// Deletes a batch of moved keys that the core lets go now (the rest
    /// wait, or stay ours); ordinary writes of our chain, so no client
    /// waits on more than one batch. The import lock is held throughout:
    /// no import frame comes between the decision and the deletions.
    fn delete_some(&self, deleting: &mut Deleting, map: &ShardMap) {
        let importer = self.replica.importer.lock();
        let importing = importer.as_ref().map(|importer| (importer.span(), importer.attempt()));
        let mut due = Vec::new();
        deleting.keys.retain(|key| {
            match deleting.moved.deletion(map, &self.chain_path, slot_of(key), importing) {
                Deletion::Delete if due.len() < MIGRATION_DELETE_BATCH => {
                    due.push(key.clone());
                    false
                }
                Deletion::Delete | Deletion::Wait => true,
                Deletion::Keep => false,
            }
        });
        for key in due {
            if self.replica.migration_write(key, None).is_err() {
                deleting.keys.clear();
                return;
            }
            self.status.keys_deleted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The driver's phase as `stats` shows it.
fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Reading => "reading",
        Phase::Claiming { .. } => "claiming",
        Phase::Streaming { .. } => "streaming",
        Phase::Draining { .. } => "paused",
        Phase::Flipping { .. } => "flipping",
        Phase::Finished | Phase::Abandoned => "",
    }
}

/// A snapshot as frames: the keys, then every client record; at least one.
fn snapshot_frames(snapshot: SlotSnapshot) -> VecDeque<MigrationFrame> {
    let entries = frames_of(snapshot.entries, |(key, value)| key.len() + value.len());
    let mut frames: VecDeque<MigrationFrame> = entries
        .into_iter()
        .map(|entries| MigrationFrame {
            entries: entries.into_iter().map(Entry::from_pair).collect(),
            ..MigrationFrame::new()
        })
        .collect();
    for records in snapshot.records.chunks(MIGRATION_FRAME_ITEMS_MAX) {
        frames.push_back(MigrationFrame { records: records.to_vec(), ..MigrationFrame::new() });
    }
    if frames.is_empty() {
        frames.push_back(MigrationFrame::new());
    }
    frames
}

/// Tapped writes as frames.
fn write_frames(writes: Vec<MigratedWrite>) -> Vec<MigrationFrame> {
    frames_of(writes, |write| write.key.len() + write.value.as_ref().map_or(0, Vec::len))
        .into_iter()
        .map(|writes| MigrationFrame { writes, ..MigrationFrame::new() })
        .collect()
}
