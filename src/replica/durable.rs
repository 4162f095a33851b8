//! The replica's disk (`--data-dir`): recovery at start, the queue to the
//! log's group-commit thread, its reports back into the node, and the
//! snapshot thread that keeps the log short.
//!
//! Every item the node asks to log is queued under the node's lock, so the
//! log holds writes in sequence order; a snapshot's marks are queued under
//! the same lock, so each lands exactly between two writes.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{info, warn};
use parking_lot::Mutex;

use super::{AckWriter, Replica};
use crate::chain::{Durable, DurablePoint, ReadKeys, Refusal};
use crate::limits::{SNAPSHOT_CHECK_PERIOD, SNAPSHOT_CHUNK_KEYS};
use crate::proto::{Deadline, Entry as KeyValue, ErrorCode};
use crate::storage::dir::DataDir;
use crate::storage::log::{LogWriter, delete_before};
use crate::storage::recovery::recover;
use crate::storage::snapshot::{Header, SnapshotWriter};
use crate::storage::syncer::{DiskState, Entry, FsyncPolicy, Syncer};

/// How long a read waiting for its writes' commit sleeps between looks.
const READ_WAIT_SLICE: Duration = Duration::from_millis(5);

/// `--data-dir` and its options.
#[derive(Clone, Debug)]
pub struct DurableOptions {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// `--snapshot-log-bytes`: take a snapshot once the log since the last
    /// one is this long.
    pub snapshot_log_bytes: u64,
}

/// A durable replica's disk.
pub struct Disk {
    dir: DataDir,
    options: DurableOptions,
    queue: Sender<Entry>,
    state: Arc<DiskState>,
    /// The writer and the queue's end, until the threads start.
    unstarted: Mutex<Option<(LogWriter, Receiver<Entry>)>>,
}

impl Disk {
    pub(super) fn log(&self, history: u64, item: Durable) {
        // The receiver lives as long as the replica: sending cannot fail.
        let _ = self.queue.send(Entry::Item { history, item });
    }

    /// The disk's last failure, while it lasts.
    pub(super) fn failure(&self) -> Option<String> {
        if !self.state.failing.load(Ordering::SeqCst) {
            return None;
        }
        self.state.error.lock().clone()
    }

    /// Syncs done so far.
    pub fn syncs(&self) -> u64 {
        self.state.syncs.load(Ordering::Relaxed)
    }
}

impl Replica {
    /// Makes this replica durable in `options.dir`, before it serves:
    /// locks the directory, replays what it holds, and opens the next log
    /// segment. An unusable directory is an error that names it, and
    /// nothing in it is changed (a torn last record aside, which is cut).
    pub fn open_durable(&mut self, options: DurableOptions, chain: &str) -> io::Result<()> {
        let dir = DataDir::open(&options.dir, chain, self.server_id)?;
        self.server_id = dir.server_id;
        let started = Instant::now();
        let recovered = {
            let mut node = self.node.lock();
            node.set_durable(dir.server_id);
            let mut store = self.store();
            recover(dir.path(), |item| {
                self.history.replaying(&item);
                node.replay(item, &mut store).map_err(|refusal| refusal.message)
            })
        };
        let recovered = recovered.map_err(|why| {
            io::Error::other(format!("cannot recover from {}: {why}", options.dir.display()))
        })?;
        self.step(AckWriter::Wake, |node, _, carry| node.recovered(carry));
        info!(
            "data directory {}: recovered {} records up to write {} ({} keys) in {} ms; --fsync {}",
            options.dir.display(),
            recovered.records,
            recovered.last_write,
            self.table.len(),
            started.elapsed().as_millis(),
            options.fsync.name()
        );
        let writer = LogWriter::create(dir.path(), recovered.next_segment)?;
        let (queue, receiver) = crossbeam_channel::unbounded();
        self.disk = Some(Disk {
            dir,
            options,
            queue,
            state: Arc::default(),
            unstarted: Mutex::new(Some((writer, receiver))),
        });
        Ok(())
    }

    /// Starts the log's syncer and the snapshot thread, if durable; they
    /// end once `stopping` is set (the syncer after writing what is queued).
    pub fn start_disk_threads(
        self: &Arc<Replica>,
        stopping: &Arc<AtomicBool>,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        let Some(disk) = &self.disk else { return Ok(Vec::new()) };
        let Some((writer, receiver)) = disk.unstarted.lock().take() else { return Ok(Vec::new()) };
        let replica = Arc::clone(self);
        let on_synced = Box::new(move |history, sequence| replica.disk_synced(history, sequence));
        let syncer = Syncer::new(writer, disk.options.fsync, Arc::clone(&disk.state), on_synced);
        let log_stopping = Arc::clone(stopping);
        let log_thread = thread::Builder::new()
            .name("log-syncer".into())
            .spawn(move || syncer.run(&receiver, &log_stopping))?;
        let replica = Arc::clone(self);
        let snapshot_stopping = Arc::clone(stopping);
        let snapshot_thread = thread::Builder::new().name("snapshots".into()).spawn(move || {
            while !snapshot_stopping.load(Ordering::SeqCst) {
                thread::sleep(SNAPSHOT_CHECK_PERIOD);
                replica.snapshot_if_due();
            }
        })?;
        Ok(vec![log_thread, snapshot_thread])
    }

    /// The disk reports everything of `history` up to `sequence` on disk.
    pub(super) fn disk_synced(&self, history: u64, sequence: u64) {
        self.step(AckWriter::Wake, |node, _, carry| node.synced_to(history, sequence, carry));
        // The successor's commit waits for our report of it.
        self.outbox().wake();
    }

    /// Writes are refused while the disk cannot be written (reads go on).
    pub(super) fn check_disk(&self) -> Result<(), Refusal> {
        match self.disk.as_ref().and_then(Disk::failure) {
            None => Ok(()),
            Some(failure) => Err(Refusal::new(
                ErrorCode::ERR_UNAVAILABLE,
                format!("the data directory cannot be written ({failure}); writes are refused until it can"),
            )),
        }
    }

    /// Durable: a read just made of `keys` may show the writes applied here
    /// to them, so it is answered only once those are committed (on disk
    /// at every member that must hold them), never a write a power loss
    /// could still take back. Without a disk, or with nothing pending, at once.
    pub(super) fn await_durable_read(&self, keys: ReadKeys<'_>) -> Result<(), Refusal> {
        if self.disk.is_none() {
            return Ok(());
        }
        // Under the node's lock: a write being applied now is counted (the
        // table may show it before its event has ended).
        let applied = self.node.lock().read_waits_for(keys);
        let deadline = Instant::now() + self.limits.commit_timeout;
        let mut progress = self.progress.lock();
        while progress.committed < applied {
            if Instant::now() >= deadline {
                return Err(Refusal::new(
                    ErrorCode::ERR_UNAVAILABLE,
                    "the writes this read would show are not on disk yet; retry",
                ));
            }
            // Not every commit notifies (see `AckWriter::CallerAcks`): a short wait, again.
            self.commit_changed.wait_for(&mut progress, READ_WAIT_SLICE);
        }
        Ok(())
    }

    /// The last write on disk (durable), or applied.
    pub fn synced(&self) -> u64 {
        self.node.lock().synced()
    }

    /// The disk, if durable.
    pub fn disk(&self) -> Option<&Disk> {
        self.disk.as_ref()
    }

    fn snapshot_if_due(&self) {
        let Some(disk) = &self.disk else { return };
        if disk.state.log_bytes.load(Ordering::Relaxed) < disk.options.snapshot_log_bytes {
            return;
        }
        let started = Instant::now();
        match self.write_snapshot(disk) {
            Ok(Some((header, deleted))) => info!(
                "snapshot at write {} ({} keys) in {} ms; {deleted} log segments deleted",
                header.sequence,
                self.table.len(),
                started.elapsed().as_millis()
            ),
            Ok(None) => info!("snapshot abandoned: the table's history started over meanwhile"),
            Err(error) => warn!("cannot write a snapshot: {error}"),
        }
    }

    /// Queues a mark (under the node's lock, so it falls between two writes)
    /// and waits until the syncer has synced everything before it and begun
    /// a new segment; returns that segment's number.
    fn mark(&self, disk: &Disk, history: u64) -> io::Result<Option<(DurablePoint, u64)>> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let point = {
            let node = self.node.lock();
            if node.history() != history && history != u64::MAX {
                return Ok(None);
            }
            let _ = disk.queue.send(Entry::Mark(reply));
            node.durable_point()
        };
        let segment = answer.recv().map_err(|_| io::Error::other("the log thread stopped"))??;
        Ok(Some((point, segment)))
    }

    /// Writes a snapshot and deletes the log behind it; `None` if the
    /// table's history started over while it was copied.
    fn write_snapshot(&self, disk: &Disk) -> io::Result<Option<(Header, usize)>> {
        let Some((start, first_segment)) = self.mark(disk, u64::MAX)? else { return Ok(None) };
        disk.state.log_bytes.store(0, Ordering::Relaxed);
        let mut writer = SnapshotWriter::begin(disk.dir.path(), first_segment)?;
        let copied = self.copy_table(&start, &mut writer);
        // The copy may hold writes past `start`: they are synced before
        // the snapshot is in place (a second mark syncs everything before it).
        let end = match copied.and_then(|()| self.mark(disk, start.history)) {
            Ok(Some((end, _))) => end,
            Ok(None) => {
                writer.discard();
                return Ok(None);
            }
            Err(error) => {
                writer.discard();
                return Err(error);
            }
        };
        let header = Header {
            sequence: start.point.sequence,
            generation: start.point.generation,
            end: end.point.sequence,
            first_segment,
        };
        writer.finish(header)?;
        let deleted = delete_before(disk.dir.path(), first_segment, "wal")?;
        delete_before(disk.dir.path(), first_segment, "snap")?;
        Ok(Some((header, deleted)))
    }

    /// The table into `writer`, one stripe at a time, in chunks; the client
    /// records and deadlines as of `start`.
    fn copy_table(&self, start: &DurablePoint, writer: &mut SnapshotWriter) -> io::Result<()> {
        // The header names the table's generation and last write, so a
        // restart from this file alone can rejoin without a state transfer.
        let mut chunk = start.point.chunk_header(self.table.len());
        chunk.clients = start.point.clients.clone();
        chunk.deadlines = start
            .point
            .deadlines
            .iter()
            .map(|(key, deadline_ms)| {
                let mut deadline = Deadline::new();
                deadline.key = key.clone();
                deadline.deadline_ms = *deadline_ms;
                deadline
            })
            .collect();
        for index in 0..self.table.stripe_count() {
            for (key, value) in self.table.stripe_entries(index) {
                let mut entry = KeyValue::new();
                entry.key = key;
                entry.value = value;
                chunk.entries.push(entry);
                if chunk.entries.len() >= SNAPSHOT_CHUNK_KEYS {
                    writer.chunk(&chunk)?;
                    chunk.entries.clear();
                    chunk.clients.clear();
                    chunk.deadlines.clear();
                }
            }
        }
        chunk.last = true;
        writer.chunk(&chunk)
    }
}
