//! Following a ZooKeeper node from outside, for clients (and for servers
//! following the shard map): a thread that owns a ZooKeeper session,
//! watches the node and reads it on request. [`ChainWatch`] follows a
//! chain's members; `shard_watch` follows the shard map the same way.
//!
//! The `zookeeper` crate (0.8) blocks on every call with no time limit and
//! retries connections on its own, so a client that asked it directly would
//! hang while ZooKeeper is down or stuck. All ZooKeeper work therefore runs
//! on the watch's thread, and [`NodeWatch::read`] waits for it only as long
//! as the caller allows.
//!
//! The node is marked changed when the persistent watch on it fires and
//! when the connection changes state (watches can be lost on a
//! reconnection).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use zookeeper::{AddWatchMode, WatchedEvent, ZkError, ZkState, ZooKeeper};

use super::view_reader::read_view;
use super::zk::{self, CoordError};
use crate::limits::{CHAIN_WATCH_REQUESTS_QUEUED_MAX, CHAIN_WATCH_SESSION_TIMEOUT};
use crate::view::ChainView;

/// Where the worker sends one reading, or why ZooKeeper could not be read.
type ReplyTo<T> = Sender<Result<T, CoordError>>;

/// Reads what is watched at a path; `NoNode` means the path does not exist
/// (a permanent error: a reader for which absence is an answer says so in
/// its `T`).
pub type NodeReader<T> = fn(&ZooKeeper, &str) -> Result<T, ZkError>;

/// One chain's members in one ZooKeeper ensemble, through a session of its own.
pub type ChainWatch = NodeWatch<ChainView>;

/// What a watch follows: where, how and what for.
pub struct Watched<T> {
    /// The node's path.
    pub path: String,
    /// The node alone, or the node and everything under it (a chain's members).
    pub mode: AddWatchMode,
    pub reader: NodeReader<T>,
    /// For messages: "the chain path", "the shard map".
    pub what: &'static str,
    /// The worker thread's name.
    pub thread_name: &'static str,
}

/// One node in one ZooKeeper ensemble, through a session of its own.
pub struct NodeWatch<T> {
    /// Asks the worker for a fresh reading; dropping it stops the worker.
    requests: Sender<ReplyTo<T>>,
    /// Set when the node may have changed since it was last read.
    changed: Arc<Changes>,
    /// Why the worker's last reading failed (cleared by one that did not):
    /// an asker that stops waiting says it, not only that it waited.
    last_failure: Arc<Mutex<Option<String>>>,
}

/// The mark that the node may have changed, and a way to wait for it: a
/// client retrying after a failure retries as soon as the watch fires
/// (the new view is there), not after a blind pause.
pub struct Changes {
    marked: Mutex<bool>,
    marked_now: Condvar,
}

impl Changes {
    fn marked() -> Changes {
        Changes { marked: Mutex::new(true), marked_now: Condvar::new() }
    }

    pub fn mark(&self) {
        *self.marked.lock() = true;
        self.marked_now.notify_all();
    }

    /// Whether it was marked; clears the mark.
    pub fn take(&self) -> bool {
        std::mem::replace(&mut *self.marked.lock(), false)
    }

    /// Waits until it is marked, at most `timeout`; whether it is (the mark
    /// stays for [`Changes::take`]).
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut marked = self.marked.lock();
        if !*marked {
            self.marked_now.wait_for(&mut marked, timeout);
        }
        *marked
    }
}

impl ChainWatch {
    /// Starts the worker for the chain at `chain_path` in the ZooKeeper
    /// ensemble `hosts` (`host:port,...`). Connects on the first reading.
    pub fn start(hosts: &str, chain_path: &str) -> std::io::Result<ChainWatch> {
        NodeWatch::follow(
            hosts,
            Watched {
                path: chain_path.to_owned(),
                mode: AddWatchMode::PersistentRecursive,
                reader: read_view,
                what: "the chain path",
                thread_name: "chain-locator",
            },
        )
    }
}

impl<T: Clone + Send + 'static> NodeWatch<T> {
    /// Starts the worker for `watched` in the ZooKeeper ensemble `hosts`
    /// (`host:port,...`). Connects on the first reading.
    pub fn follow(hosts: &str, watched: Watched<T>) -> std::io::Result<NodeWatch<T>> {
        let (requests, worker_requests) = crossbeam_channel::bounded(CHAIN_WATCH_REQUESTS_QUEUED_MAX);
        let changed = Arc::new(Changes::marked());
        let last_failure = Arc::new(Mutex::new(None));
        let thread_name = watched.thread_name;
        let worker = Worker {
            hosts: hosts.to_owned(),
            watched,
            changed: Arc::clone(&changed),
            last_failure: Arc::clone(&last_failure),
            broken: Arc::new(AtomicBool::new(false)),
            zk: None,
            lost_since: None,
        };
        std::thread::Builder::new().name(thread_name.into()).spawn(move || worker.serve(&worker_requests))?;
        Ok(NodeWatch { requests, changed, last_failure })
    }

    /// Whether the node may have changed since this was last asked (true
    /// the first time). Clears the mark, so ask before reading: a change
    /// during the reading marks it again.
    pub fn take_changed(&self) -> bool {
        self.changed.take()
    }

    /// Waits at most `timeout` for the node to change (returns at once if
    /// it changed since last asked); whether it did.
    pub fn wait_changed(&self, timeout: Duration) -> bool {
        self.changed.wait(timeout)
    }

    /// Says the node may have changed: the next [`NodeWatch::take_changed`]
    /// is true (a reading failed, or someone learned of a change elsewhere).
    pub fn mark_changed(&self) {
        self.changed.mark();
    }

    /// Reads the node afresh, waiting for ZooKeeper at most `wait` (a full
    /// queue of requests included); an error says why there is no reading,
    /// and whether another try can help.
    pub fn read(&self, wait: Duration) -> Result<T, CoordError> {
        let started = Instant::now();
        let (reply_to, reply) = crossbeam_channel::bounded(1);
        let gone = || CoordError::Permanent("the ZooKeeper thread ended".to_owned());
        let no_answer = || {
            let last = match &*self.last_failure.lock() {
                Some(reason) => format!("; before that: {reason}"),
                None => String::new(),
            };
            CoordError::Transient(format!("ZooKeeper did not answer within {} ms{last}", wait.as_millis()))
        };
        match self.requests.send_timeout(reply_to, wait) {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) => return Err(no_answer()),
            Err(SendTimeoutError::Disconnected(_)) => return Err(gone()),
        }
        match reply.recv_timeout(wait.saturating_sub(started.elapsed())) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(no_answer()),
            Err(RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }
}

/// The thread that owns the ZooKeeper session.
struct Worker<T> {
    hosts: String,
    watched: Watched<T>,
    changed: Arc<Changes>,
    last_failure: Arc<Mutex<Option<String>>>,
    /// Set when the session ended: the next reading opens a new one.
    broken: Arc<AtomicBool>,
    zk: Option<ZooKeeper>,
    /// Since when every reading has failed for want of a connection.
    lost_since: Option<Instant>,
}

impl<T: Clone> Worker<T> {
    /// Answers requests until the [`NodeWatch`] is dropped. Requests that
    /// queued up while ZooKeeper was slow share one reading.
    fn serve(mut self, requests: &Receiver<ReplyTo<T>>) {
        while let Ok(first) = requests.recv() {
            let waiting: Vec<ReplyTo<T>> = std::iter::once(first).chain(requests.try_iter()).collect();
            let result = self.read();
            *self.last_failure.lock() = result.as_ref().err().map(ToString::to_string);
            for reply_to in waiting {
                // The asker may have given up waiting.
                let _ = reply_to.send(result.clone());
            }
        }
    }

    fn read(&mut self) -> Result<T, CoordError> {
        if self.broken.swap(false, Ordering::SeqCst) {
            self.zk = None;
        }
        let zk = match &mut self.zk {
            Some(zk) => zk,
            None => self.zk.insert(self.connect()?),
        };
        let result = (self.watched.reader)(zk, &self.watched.path);
        if !matches!(result, Err(ZkError::ConnectionLoss)) {
            self.lost_since = None;
        }
        match result {
            Ok(view) => Ok(view),
            // No chain node: no server ever started this chain (a typo in
            // the path, most likely); waiting would not make one.
            Err(ZkError::NoNode) => Err(CoordError::Permanent(format!(
                "{} {} does not exist in ZooKeeper",
                self.watched.what, self.watched.path
            ))),
            // The session lives on while the crate reconnects, unless it has
            // been lost for longer than a session can last.
            Err(ZkError::ConnectionLoss) => {
                if self.lost_since.get_or_insert_with(Instant::now).elapsed() > CHAIN_WATCH_SESSION_TIMEOUT {
                    self.zk = None;
                    self.lost_since = None;
                }
                Err(CoordError::Transient("lost the connection to ZooKeeper".into()))
            }
            Err(error) => {
                // Start with a new session next time.
                self.zk = None;
                Err(CoordError::Transient(format!("ZooKeeper: {error:?}")))
            }
        }
    }

    /// Opens a session and sets the watch.
    fn connect(&self) -> Result<ZooKeeper, CoordError> {
        let zookeeper_error = |error: ZkError| CoordError::Transient(format!("ZooKeeper: {error:?}"));
        let changed = Arc::clone(&self.changed);
        let zk = zk::connect(&self.hosts, CHAIN_WATCH_SESSION_TIMEOUT, move |_: WatchedEvent| {
            changed.mark();
        })?;
        let changed = Arc::clone(&self.changed);
        let broken = Arc::clone(&self.broken);
        zk.add_listener(move |state| {
            changed.mark();
            if matches!(state, ZkState::Closed | ZkState::AuthFailed) {
                broken.store(true, Ordering::SeqCst);
            }
        });
        let changed = Arc::clone(&self.changed);
        zk.add_watch(&self.watched.path, self.watched.mode, move |_: WatchedEvent| {
            changed.mark();
        })
        .map_err(zookeeper_error)?;
        Ok(zk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waiter is woken by the mark at once, not at its timeout; a mark
    /// made before the wait is not missed, and stays until taken.
    #[test]
    fn a_change_ends_the_wait_at_once() {
        let changes = Arc::new(Changes::marked());
        assert!(changes.take());
        assert!(!changes.wait(Duration::from_millis(1)));
        let marker = Arc::clone(&changes);
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            marker.mark();
        });
        assert!(changes.wait(Duration::from_secs(10)));
        assert!(started.elapsed() < Duration::from_secs(5), "woken by the mark, not the timeout");
        thread.join().expect("the marking thread");
        assert!(changes.wait(Duration::ZERO) && changes.take() && !changes.take());
    }
}
