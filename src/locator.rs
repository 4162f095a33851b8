//! Finds the chain for a client: reads the members from ZooKeeper and keeps
//! the last reading until something says it is out of date.
//!
//! The `zookeeper` crate (0.8) blocks on every call with no time limit and
//! retries connections on its own, so a client that asked it directly would
//! hang while ZooKeeper is down or stuck. All ZooKeeper work therefore runs
//! on a worker thread, and [`Locator::view`] waits for it only as long as
//! the caller's deadline allows.
//!
//! A reading becomes stale when the persistent recursive watch on the chain
//! fires, when the connection changes state (watches can be lost on a
//! reconnection), and when the client says so after any failed request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use zookeeper::{AddWatchMode, WatchedEvent, ZkError, ZkState, ZooKeeper};

use crate::client::ClientError;
use crate::coord::view_reader::read_view;
use crate::coord::zk;
use crate::view::ChainView;

/// Session timeout asked of ZooKeeper. A client holds no ephemeral nodes, so
/// this only bounds how long the crate keeps trying to reach a ZooKeeper that
/// is down before it gives up and the worker starts afresh.
const SESSION_TIMEOUT: Duration = Duration::from_secs(4);

/// Where the worker sends one reading.
type ReplyTo = Sender<Result<ChainView, ClientError>>;

/// A client's view of one chain, through its own ZooKeeper session.
pub struct Locator {
    /// `<hosts><path>`, for messages.
    name: String,
    /// Asks the worker for a fresh reading; dropping it stops the worker.
    requests: Sender<ReplyTo>,
    /// Set when `cached` may be out of date.
    stale: Arc<AtomicBool>,
    cached: Option<ChainView>,
}

impl Locator {
    /// Starts the worker for the chain at `chain_path` in the ZooKeeper
    /// ensemble `hosts` (`host:port,...`). Connects on the first reading.
    pub fn start(hosts: &str, chain_path: &str) -> Result<Locator, ClientError> {
        let name = format!("{hosts}{chain_path}");
        let (requests, worker_requests) = crossbeam_channel::unbounded();
        let stale = Arc::new(AtomicBool::new(true));
        let worker = Worker {
            hosts: hosts.to_owned(),
            chain_path: chain_path.to_owned(),
            name: name.clone(),
            stale: Arc::clone(&stale),
            broken: Arc::new(AtomicBool::new(false)),
            zk: None,
            lost_since: None,
        };
        std::thread::Builder::new()
            .name("chain-locator".into())
            .spawn(move || worker.serve(&worker_requests))
            .map_err(|error| ClientError::NoChain(format!("cannot start the ZooKeeper thread: {error}")))?;
        Ok(Locator { name, requests, stale, cached: None })
    }

    /// `<hosts><path>` of the chain.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Says the last reading may be out of date: the next [`Locator::view`]
    /// reads the chain again.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// The chain as last read, read again first if it is stale; waits for
    /// ZooKeeper at most `wait`.
    pub fn view(&mut self, wait: Duration) -> Result<&ChainView, ClientError> {
        // Cleared before asking, so a change during the reading marks it stale again.
        let stale = self.stale.swap(false, Ordering::SeqCst);
        let view = match self.cached.take() {
            Some(view) if !stale => view,
            _ => self.read(wait).inspect_err(|_| self.mark_stale())?,
        };
        Ok(self.cached.insert(view))
    }

    fn read(&self, wait: Duration) -> Result<ChainView, ClientError> {
        let (reply_to, reply) = crossbeam_channel::bounded(1);
        let gone = || ClientError::NoChain(format!("no chain at {}: the ZooKeeper thread ended", self.name));
        self.requests.send(reply_to).map_err(|_| gone())?;
        match reply.recv_timeout(wait) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(ClientError::NoChain(format!(
                "no chain at {}: ZooKeeper did not answer within {} ms",
                self.name,
                wait.as_millis()
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }
}

/// The thread that owns the ZooKeeper session.
struct Worker {
    hosts: String,
    chain_path: String,
    name: String,
    stale: Arc<AtomicBool>,
    /// Set when the session ended: the next reading opens a new one.
    broken: Arc<AtomicBool>,
    zk: Option<ZooKeeper>,
    /// Since when every reading has failed for want of a connection.
    lost_since: Option<Instant>,
}

impl Worker {
    /// Answers requests until the [`Locator`] is dropped. Requests that
    /// queued up while ZooKeeper was slow share one reading.
    fn serve(mut self, requests: &Receiver<ReplyTo>) {
        while let Ok(first) = requests.recv() {
            let waiting: Vec<ReplyTo> = std::iter::once(first).chain(requests.try_iter()).collect();
            let result = self.read();
            for reply_to in waiting {
                // The asker may have given up waiting.
                let _ = reply_to.send(result.clone());
            }
        }
    }

    fn read(&mut self) -> Result<ChainView, ClientError> {
        if self.broken.swap(false, Ordering::SeqCst) {
            self.zk = None;
        }
        let no_chain = |reason: String| ClientError::NoChain(format!("no chain at {}: {reason}", self.name));
        let zk = match &mut self.zk {
            Some(zk) => zk,
            None => self.zk.insert(self.connect().map_err(no_chain)?),
        };
        let result = read_view(zk, &self.chain_path);
        if !matches!(result, Err(ZkError::ConnectionLoss)) {
            self.lost_since = None;
        }
        match result {
            Ok(view) => Ok(view),
            // No chain node: no server ever started this chain.
            Err(ZkError::NoNode) => Ok(ChainView::default()),
            // The session lives on while the crate reconnects, unless it has
            // been lost for longer than a session can last.
            Err(ZkError::ConnectionLoss) => {
                if self.lost_since.get_or_insert_with(Instant::now).elapsed() > SESSION_TIMEOUT {
                    self.zk = None;
                    self.lost_since = None;
                }
                Err(no_chain("lost the connection to ZooKeeper".into()))
            }
            Err(error) => {
                // Start with a new session next time.
                self.zk = None;
                Err(no_chain(format!("ZooKeeper: {error:?}")))
            }
        }
    }

    /// Opens a session and sets the watch.
    fn connect(&self) -> Result<ZooKeeper, String> {
        let zookeeper_error = |error: ZkError| format!("ZooKeeper: {error:?}");
        let stale = Arc::clone(&self.stale);
        let zk = zk::connect(&self.hosts, SESSION_TIMEOUT, move |_: WatchedEvent| {
            stale.store(true, Ordering::SeqCst);
        })?;
        let stale = Arc::clone(&self.stale);
        let broken = Arc::clone(&self.broken);
        zk.add_listener(move |state| {
            stale.store(true, Ordering::SeqCst);
            if matches!(state, ZkState::Closed | ZkState::AuthFailed) {
                broken.store(true, Ordering::SeqCst);
            }
        });
        let stale = Arc::clone(&self.stale);
        zk.add_watch(&self.chain_path, AddWatchMode::PersistentRecursive, move |_: WatchedEvent| {
            stale.store(true, Ordering::SeqCst);
        })
        .map_err(zookeeper_error)?;
        Ok(zk)
    }
}
