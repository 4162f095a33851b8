//! Finds the chain for a client: reads the members through ZooKeeper (see
//! [`ChainWatch`]) and keeps the last reading until something says it is
//! out of date, waiting for ZooKeeper only as long as the caller's deadline
//! allows.
//!
//! A reading becomes stale when the chain watch reports a change, and when
//! the client says so after any failed request.

use std::time::Duration;

use super::error::ClientError;
use crate::coord::chain_watch::ChainWatch;
use crate::coord::zk::CoordError;
use crate::view::ChainView;

/// A client's view of one chain, through its own ZooKeeper session.
pub struct Locator {
    /// `<hosts><path>`, for messages.
    name: String,
    /// The ZooKeeper session's thread; dropping it stops the thread.
    watch: ChainWatch,
    /// The last reading; `None` when it must be read again.
    cached: Option<ChainView>,
}

impl Locator {
    /// Starts the ZooKeeper thread for the chain at `chain_path` in the
    /// ensemble `hosts` (`host:port,...`). Connects on the first reading.
    pub fn start(hosts: &str, chain_path: &str) -> Result<Locator, ClientError> {
        let watch = ChainWatch::start(hosts, chain_path)
            .map_err(|error| ClientError::NoChain(format!("cannot start the ZooKeeper thread: {error}")))?;
        Ok(Locator { name: format!("{hosts}{chain_path}"), watch, cached: None })
    }

    /// `<hosts><path>` of the chain.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Says the last reading may be out of date: the next [`Locator::view`]
    /// reads the chain again.
    pub fn mark_stale(&mut self) {
        self.cached = None;
    }

    /// Waits at most `timeout` for ZooKeeper to say the chain changed (at
    /// once if it did since the last reading); marks the reading stale.
    pub fn wait_for_change(&mut self, timeout: Duration) {
        self.watch.wait_changed(timeout);
        self.cached = None;
    }

    /// The chain as last read, read again first if it is stale; waits for
    /// ZooKeeper at most `wait`.
    pub fn view(&mut self, wait: Duration) -> Result<&ChainView, ClientError> {
        // Taken before asking, so a change during the reading marks it stale again.
        let changed = self.watch.take_changed();
        let view = match self.cached.take() {
            Some(view) if !changed => view,
            _ => self.watch.read(wait).map_err(|error| match error {
                CoordError::Transient(reason) => {
                    ClientError::NoChain(format!("no chain at {}: {reason}", self.name))
                }
                CoordError::Permanent(reason) => {
                    ClientError::NoChainEver(format!("no chain at {}: {reason}", self.name))
                }
            })?,
        };
        Ok(self.cached.insert(view))
    }
}
