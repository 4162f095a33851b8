//! The log's writer thread: group commit.
//!
//! Writers never touch the disk. Under the node's lock each applied write is
//! queued here (in sequence order, since the lock orders them); this thread
//! takes everything queued at once, appends it with one `write`, syncs once
//! (`--fsync batch`), and reports the last write synced, which lets the
//! commit point move. Writes that arrive while a sync runs form the next
//! batch, so the number of syncs adapts to the disk, not to the load (the
//! group commit of databases since IMS FastPath).
//!
//! `--fsync always` syncs after every record; `everysec` reports a write as
//! soon as it is written to the kernel and syncs once a second, so a power
//! loss can lose up to a second of acknowledged writes (Redis's trade-off).
//!
//! A failed write or sync: the segment is cut back to the last sync and
//! abandoned, everything since is written again into a new one, and until
//! that works the error is published (the head refuses new writes, reads
//! go on) and retried with a pause.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{info, warn};
use parking_lot::Mutex;

use super::codec;
use super::log::LogWriter;
use crate::chain::Durable;
use crate::limits::{WAL_BATCH_MAX, WAL_RETRY_PAUSE, WAL_SEGMENT_BYTES};

/// `--fsync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// A sync per record.
    Always,
    /// A sync per batch of records that arrived together (the default).
    Batch,
    /// A sync per second; writes count as on disk once written to the kernel.
    EverySec,
}

impl FsyncPolicy {
    pub fn parse(text: &str) -> Option<FsyncPolicy> {
        match text {
            "always" => Some(FsyncPolicy::Always),
            "batch" => Some(FsyncPolicy::Batch),
            "everysec" => Some(FsyncPolicy::EverySec),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Batch => "batch",
            FsyncPolicy::EverySec => "everysec",
        }
    }
}

/// What the thread is given.
pub enum Entry {
    /// Log this (see [`Effects::persist`](crate::chain::Effects::persist)).
    Item { history: u64, item: Durable },
    /// A snapshot begins here: sync, begin a new segment, and send back its
    /// number.
    Mark(Sender<io::Result<u64>>),
}

/// What the thread shares with the server.
#[derive(Default)]
pub struct DiskState {
    /// The last failure to write or sync, while it lasts.
    pub error: Mutex<Option<String>>,
    /// Quick check of `error`.
    pub failing: AtomicBool,
    /// Bytes logged since the last snapshot began.
    pub log_bytes: AtomicU64,
    /// Syncs done, for `stats`.
    pub syncs: AtomicU64,
}

/// Called with (history, last write synced) after each sync.
pub type OnSynced = Box<dyn Fn(u64, u64) + Send>;

pub struct Syncer {
    writer: LogWriter,
    policy: FsyncPolicy,
    state: Arc<DiskState>,
    on_synced: OnSynced,
    /// Bytes appended since the last successful sync (written again after
    /// a failure).
    unsynced: Vec<u8>,
    /// The last (history, write) appended and not yet reported.
    report: Option<(u64, u64)>,
    /// An append failed: the segment may end in part of a record, so
    /// nothing more goes into it (see [`LogWriter::abandon`]).
    broken: bool,
    last_sync: Instant,
}

impl Syncer {
    pub fn new(writer: LogWriter, policy: FsyncPolicy, state: Arc<DiskState>, on_synced: OnSynced) -> Syncer {
        Syncer {
            writer,
            policy,
            state,
            on_synced,
            unsynced: Vec::new(),
            report: None,
            broken: false,
            last_sync: Instant::now(),
        }
    }

    /// Runs until `stopping` is set and the queue is empty.
    pub fn run(mut self, queue: &Receiver<Entry>, stopping: &AtomicBool) {
        loop {
            let first = match queue.recv_timeout(Duration::from_millis(100)) {
                Ok(entry) => Some(entry),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let batch: Vec<Entry> = first.into_iter().chain(queue.try_iter().take(WAL_BATCH_MAX)).collect();
            if batch.is_empty() && stopping.load(Ordering::SeqCst) {
                break;
            }
            for entry in batch {
                self.take(entry, stopping);
            }
            let due =
                self.policy != FsyncPolicy::EverySec || self.last_sync.elapsed() >= Duration::from_secs(1);
            if !self.unsynced.is_empty() && due {
                self.sync(stopping);
            }
            if self.writer.length() >= WAL_SEGMENT_BYTES {
                // A failure is logged; the segment grows until a roll works.
                let _ = self.roll(stopping);
            }
        }
        if !self.unsynced.is_empty() {
            self.sync(stopping);
        }
    }

    fn take(&mut self, entry: Entry, stopping: &AtomicBool) {
        match entry {
            Entry::Item { history, item } => {
                let start = self.unsynced.len();
                let sequence = codec::encode(&item, &mut self.unsynced);
                let bytes = &self.unsynced[start..];
                self.state.log_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if !self.broken && self.writer.append(bytes).is_err() {
                    self.broken = true;
                }
                self.report = match (sequence, self.report) {
                    (Some(sequence), _) => Some((history, sequence)),
                    (None, Some((reported, sequence))) if reported == history => Some((history, sequence)),
                    (None, _) => None,
                };
                if self.broken || self.policy == FsyncPolicy::Always {
                    self.sync(stopping);
                } else if self.policy == FsyncPolicy::EverySec {
                    self.publish();
                }
            }
            Entry::Mark(reply) => {
                let _ = reply.send(self.roll(stopping));
            }
        }
    }

    /// Closes the segment and begins the next; returns its number.
    fn roll(&mut self, stopping: &AtomicBool) -> io::Result<u64> {
        if !self.unsynced.is_empty() {
            self.sync(stopping);
        }
        let rolled = self.writer.roll();
        if let Err(error) = &rolled {
            warn!("cannot begin log segment {}: {error}", self.writer.number() + 1);
        }
        rolled
    }

    /// Syncs what was appended, retrying (in new segments) until it works
    /// or the server stops; then reports it.
    fn sync(&mut self, stopping: &AtomicBool) {
        let mut attempt = 0u32;
        loop {
            let result = if self.broken { self.rewrite() } else { Ok(()) };
            match result.and_then(|()| self.writer.sync()) {
                Ok(()) => break,
                Err(error) => {
                    self.broken = true;
                    if attempt == 0 {
                        warn!("the log cannot be written ({error}): refusing writes until it can");
                    }
                    *self.state.error.lock() = Some(error.to_string());
                    self.state.failing.store(true, Ordering::SeqCst);
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(WAL_RETRY_PAUSE);
                    attempt += 1;
                }
            }
        }
        if self.state.failing.swap(false, Ordering::SeqCst) {
            *self.state.error.lock() = None;
            info!("the log is written again");
        }
        self.unsynced.clear();
        self.last_sync = Instant::now();
        self.state.syncs.fetch_add(1, Ordering::Relaxed);
        self.publish();
    }

    /// Abandons the segment and appends everything unsynced to a new one.
    fn rewrite(&mut self) -> io::Result<()> {
        self.writer.abandon()?;
        self.writer.append(&self.unsynced)?;
        self.broken = false;
        Ok(())
    }

    fn publish(&mut self) {
        if let Some((history, sequence)) = self.report.take() {
            (self.on_synced)(history, sequence);
        }
    }
}
