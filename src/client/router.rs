//! Chain mode over many chains: reads and watches the shard map, keeps one
//! [`ChainTarget`] (locator, head and tail connections, retries) per chain,
//! and sends each key to the chain that owns its slot. Without a map it is
//! exactly the one-chain client: everything goes to the chain named by
//! `--chain`.
//!
//! A request carries the map version it was routed by, so a server on an
//! older map catches up before it answers. An `ERR_MOVED` means the map
//! changed: the client reads it again (one reading per redirect, after
//! which every key is routed by the new version) and resends, at most
//! [`SHARD_REDIRECTS_MAX`] times. Table-wide requests (`size`, `scan`,
//! `stats`) go to every chain and their answers are merged (see
//! [`spanning`](super::spanning)).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use log::debug;
use parking_lot::Mutex;

use super::connection::ClientOptions;
use super::error::ClientError;
use super::locator::Locator;
use super::retry::Deadline;
use super::routing::{ChainTarget, RetryObserver};
use super::spanning::{merge_scan_pages, merge_statistics};
use crate::coord::shard_watch::{MapReading, MapWatch, change_map, create_map, follow_map};
use crate::coord::zk::CoordError;
use crate::limits::{SHARD_MAP_READ_WAIT, SHARD_REDIRECTS_MAX};
use crate::proto::{ErrorCode, Opcode, Request, Response};
use crate::shard::map::ShardMap;
use crate::shard::moves::{MoveRequest, Start};
use crate::shard::slot::slot_of;

/// The chains of one table, found through ZooKeeper.
pub struct Router {
    zk_hosts: String,
    /// The chain used while there is no shard map (`--chain`).
    default_chain: String,
    /// The shard map's node, for messages.
    map_path: String,
    map_watch: MapWatch,
    /// The map as last read; `None`: no map node.
    map: Option<Arc<ShardMap>>,
    /// Whether the map node was ever read: until then, `map` being `None`
    /// does not say there is no map.
    map_known: bool,
    /// One target per chain, opened when first needed.
    chains: HashMap<String, ChainTarget>,
    /// Told of every retry at any chain.
    observer: Option<Arc<Mutex<RetryObserver>>>,
}

impl Router {
    /// A router for the table whose map is at `map_path` (and whose one
    /// chain, while there is no map, is `chain_path`) in ZooKeeper `zk_hosts`.
    pub fn start(zk_hosts: &str, chain_path: &str, map_path: &str) -> Result<Router, ClientError> {
        let map_watch = follow_map(zk_hosts, map_path)
            .map_err(|error| ClientError::NoChain(format!("cannot start the ZooKeeper thread: {error}")))?;
        let mut router = Router {
            zk_hosts: zk_hosts.to_owned(),
            default_chain: chain_path.to_owned(),
            map_path: map_path.to_owned(),
            map_watch,
            map: None,
            map_known: false,
            chains: HashMap::new(),
            observer: None,
        };
        router.chain(chain_path)?;
        Ok(router)
    }

    /// `<hosts><path>` of the chain used without a map.
    pub fn name(&self) -> &str {
        self.chains.get(&self.default_chain).map_or(&self.default_chain, ChainTarget::name)
    }

    /// From now on, `observer` is told of every retry at every chain.
    pub fn observe_retries(&mut self, observer: RetryObserver) {
        let shared = Arc::new(Mutex::new(observer));
        for chain in self.chains.values_mut() {
            chain.observe_retries(forward_to(&shared));
        }
        self.observer = Some(shared);
    }

    /// The chain without a map (`members` looks at it).
    pub fn default_target(&mut self) -> Result<&mut ChainTarget, ClientError> {
        let chain = self.default_chain.clone();
        self.chain(&chain)
    }

    /// The chain that answers about `key`, or with `None` about every key
    /// (a prefix watch): only one chain can, so with a map of several
    /// chains that is an error.
    pub fn target_for(&mut self, key: Option<&str>, wait: Duration) -> Result<&mut ChainTarget, ClientError> {
        let Some(map) = self.current_map(wait)? else {
            return self.default_target();
        };
        let chain = match (key, map.chains()) {
            (Some(key), _) => map.owner(slot_of(key)).to_owned(),
            (None, [only]) => only.clone(),
            (None, _) => {
                return Err(ClientError::NoChainEver(format!(
                    "the table spans {} chains (shard map {}): watch keys, not prefixes",
                    map.chains().len(),
                    self.map_path
                )));
            }
        };
        self.chain(&chain)
    }

    /// Sends `request` (ids set) to the chain that owns its key, or to
    /// every chain for table-wide requests, retrying as [`ChainTarget`]
    /// does and following redirects.
    pub fn call(&mut self, request: &mut Request, options: &ClientOptions) -> Result<Response, ClientError> {
        let deadline = Deadline::starting_now(options.timeout);
        let mut redirects = 0;
        loop {
            let map = self.current_map(deadline.remaining())?;
            let chain = match (&map, routing_key(request)) {
                (Some(map), None) => {
                    request.shard_map_version = Some(map.version);
                    return self.call_every_chain(map, request, options);
                }
                (Some(map), Some(key)) => map.owner(slot_of(key)).to_owned(),
                // Unknown map, one chain's answer: a key is safe (its server
                // refuses what its chain does not own), a whole-table
                // answer would silently be part of the table.
                (None, None) if !self.map_known => {
                    return Err(ClientError::NoChain(format!(
                        "no chain at {}: cannot read the shard map {} (ZooKeeper unreachable?)",
                        self.name(),
                        self.map_path
                    )));
                }
                (None, _) => self.default_chain.clone(),
            };
            request.shard_map_version = map.as_ref().map(|map| map.version);
            let moved = match self.chain(&chain)?.call(request, options) {
                Err(error @ ClientError::Server { code: ErrorCode::ERR_MOVED, .. }) => error,
                answer => return answer,
            };
            redirects += 1;
            if redirects > SHARD_REDIRECTS_MAX {
                return Err(ClientError::Protocol(format!(
                    "gave up after {SHARD_REDIRECTS_MAX} redirects: {moved} (servers disagree with shard map {})",
                    self.map_path
                )));
            }
            // Read the map again; a server on a map newer than ZooKeeper
            // showed us gets a moment before the next reading.
            self.map_watch.mark_changed();
            let before = map.map(|map| map.version);
            if self.current_map(deadline.remaining())?.map(|map| map.version) == before {
                std::thread::sleep(Duration::from_millis(10 << redirects.min(5)));
                self.map_watch.mark_changed();
            }
        }
    }

    /// A table-wide request at every chain of `map`, the answers merged.
    fn call_every_chain(
        &mut self,
        map: &ShardMap,
        request: &Request,
        options: &ClientOptions,
    ) -> Result<Response, ClientError> {
        let mut answers = Vec::with_capacity(map.chains().len());
        for chain in map.chains() {
            answers.push(self.chain(chain)?.call(request, options)?);
        }
        let mut merged = match request.opcode.enum_value() {
            Ok(Opcode::OP_SIZE) => {
                let mut merged = Response::new();
                merged.size = answers.iter().map(|answer| answer.size).sum();
                merged
            }
            Ok(Opcode::OP_STATS) => {
                let all: Vec<_> =
                    answers.iter().filter_map(|answer| answer.statistics.clone().into_option()).collect();
                let mut merged = Response::new();
                merged.statistics = Some(merge_statistics(&all)).into();
                merged
            }
            Ok(Opcode::OP_SCAN) => merge_scan_pages(answers),
            _ => {
                return Err(ClientError::Protocol(format!(
                    "{:?} names no key and cannot span chains",
                    request.opcode
                )));
            }
        };
        merged.opcode = request.opcode;
        merged.request_id = request.request_id;
        Ok(merged)
    }

    /// The map, read again first if its watch saw a change (or a redirect
    /// asked for it); waits for ZooKeeper at most `wait`. A junk map node
    /// is an error: nobody should guess where keys live, and so is an
    /// ensemble that can never be read. When ZooKeeper cannot be read for
    /// now, the last reading stands (none: the one chain) and is
    /// read again next time: the chain's own lookup then says what is wrong
    /// and retries as it always has, and a server on a newer map refuses a
    /// key it does not own (ERR_MOVED), so nothing is answered wrongly.
    fn current_map(&mut self, wait: Duration) -> Result<Option<Arc<ShardMap>>, ClientError> {
        if self.map_watch.take_changed() {
            match self.map_watch.read(wait.min(SHARD_MAP_READ_WAIT)) {
                Ok(MapReading::Absent) => (self.map, self.map_known) = (None, true),
                Ok(MapReading::Map(map)) => (self.map, self.map_known) = (Some(map), true),
                Ok(MapReading::Junk(error)) => {
                    self.map_watch.mark_changed();
                    return Err(ClientError::NoChainEver(format!(
                        "{error} (at {}{})",
                        self.zk_hosts, self.map_path
                    )));
                }
                // A bad address, a host that is no ZooKeeper: never better.
                Err(CoordError::Permanent(reason)) => {
                    self.map_watch.mark_changed();
                    return Err(ClientError::NoChainEver(format!("no chain at {}: {reason}", self.name())));
                }
                Err(CoordError::Transient(reason)) => {
                    debug!("cannot read the shard map {}: {reason}", self.map_path);
                    self.map_watch.mark_changed();
                }
            }
        }
        Ok(self.map.clone())
    }

    /// The target of the chain at `path`, opened the first time.
    /// The address of the head of the chain at `path`, as ZooKeeper says
    /// now (`None`: it has no ready member).
    pub fn head_of(&mut self, path: &str, wait: Duration) -> Result<Option<String>, ClientError> {
        let view = self.chain(path)?.fresh_view(wait)?;
        Ok(view.head().map(|member| member.address.clone()))
    }

    fn chain(&mut self, path: &str) -> Result<&mut ChainTarget, ClientError> {
        if !self.chains.contains_key(path) {
            let mut target = ChainTarget::new(Locator::start(&self.zk_hosts, path)?);
            if let Some(observer) = &self.observer {
                target.observe_retries(forward_to(observer));
            }
            self.chains.insert(path.to_owned(), target);
        }
        Ok(self.chains.get_mut(path).expect("inserted above"))
    }
}

/// One chain of a sharded table as `shards` shows it.
#[derive(Debug)]
pub struct ChainReport {
    /// Its ZooKeeper path.
    pub chain: String,
    /// `host:port` of its head and tail (`None`: no ready member).
    pub head: Option<String>,
    pub tail: Option<String>,
    /// Keys it holds, or why it did not say.
    pub keys: Result<u64, ClientError>,
}

/// The shard map and each of its chains.
#[derive(Debug)]
pub struct ShardReport {
    /// The map's ZooKeeper node.
    pub map_path: String,
    pub map: Arc<ShardMap>,
    /// In the order the map names them.
    pub chains: Vec<ChainReport>,
}

impl Router {
    /// The map read afresh and each chain's ends and size (`size`: a SIZE
    /// request, ids set); `None` when there is no map.
    pub fn report(
        &mut self,
        size: &Request,
        options: &ClientOptions,
    ) -> Result<Option<ShardReport>, ClientError> {
        self.map_watch.mark_changed();
        let Some(map) = self.current_map(options.timeout)? else {
            return Ok(None);
        };
        let mut chains = Vec::with_capacity(map.chains().len());
        for chain in map.chains() {
            let target = self.chain(chain)?;
            let (head, tail) = match target.fresh_view(options.timeout) {
                Ok(view) => (
                    view.head().map(|member| member.address.clone()),
                    view.tail().map(|member| member.address.clone()),
                ),
                Err(_) => (None, None),
            };
            let keys = target.call(size, options).map(|answer| answer.size);
            chains.push(ChainReport { chain: chain.clone(), head, tail, keys });
        }
        Ok(Some(ShardReport { map_path: self.map_path.clone(), map, chains }))
    }

    /// Creates the first map: `chains` get equal consecutive slot ranges
    /// in the order named. Refused when a map exists or a chain does not.
    pub fn init(&mut self, chains: &[String], session_timeout: Duration) -> Result<ShardMap, ClientError> {
        let map = ShardMap::split_evenly(chains).map_err(|error| ClientError::NoChainEver(error.0))?;
        let created = create_map(&self.zk_hosts, &self.map_path, &map, session_timeout)
            .map_err(ClientError::NoChainEver)?;
        self.map_watch.mark_changed();
        Ok(created)
    }
}

/// What `migrate` did to the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrateStarted {
    /// Marked the slots `migrating-to` the target (in this map version).
    Marked(ShardMap),
    /// The same migration ran already: nothing changed.
    Running(ShardMap),
    /// The slots are the target's already.
    Done(ShardMap),
    /// `--abort`: the slots are their chain's again, stable.
    Aborted(ShardMap),
}

impl Router {
    /// `migrate`: starts moving `request`'s slots (or finds that move
    /// running or done), or with `abort` ends it; one version-checked set
    /// of the map at most. The source chain's head does the rest.
    pub fn migrate(
        &mut self,
        request: &MoveRequest,
        abort: bool,
        session_timeout: Duration,
    ) -> Result<MigrateStarted, ClientError> {
        let mut found = None;
        let (read, set) = change_map(&self.zk_hosts, &self.map_path, session_timeout, |map| {
            if abort {
                return request.abort(map).map(Some);
            }
            let start = request.start(map)?;
            found = Some(start.clone());
            Ok(match start {
                Start::Mark(next) => Some(next),
                Start::Running | Start::Done => None,
            })
        })
        .map_err(ClientError::NoChainEver)?;
        self.map_watch.mark_changed();
        Ok(match (set, found) {
            (Some(set), None) => MigrateStarted::Aborted(set),
            (Some(set), _) => MigrateStarted::Marked(set),
            (None, Some(Start::Done)) => MigrateStarted::Done(read),
            (None, _) => MigrateStarted::Running(read),
        })
    }

    /// The map read afresh (`None`: no map node).
    pub fn fresh_map(&mut self, wait: Duration) -> Result<Option<Arc<ShardMap>>, ClientError> {
        self.map_watch.mark_changed();
        self.current_map(wait)
    }
}

/// An observer for one chain that tells the shared one.
fn forward_to(shared: &Arc<Mutex<RetryObserver>>) -> RetryObserver {
    let shared = Arc::clone(shared);
    Box::new(move |reason: &str, error: &ClientError| (shared.lock())(reason, error))
}

/// The key a request is routed by: its key, or the first of an mget's or
/// mset's (a server refuses keys of several chains with ERR_CROSS_CHAIN);
/// `None` for table-wide requests.
pub fn routing_key(request: &Request) -> Option<&str> {
    if let Some(key) = &request.key {
        return Some(key);
    }
    match request.opcode.enum_value() {
        Ok(Opcode::OP_MGET) => request.keys.first().map(String::as_str),
        Ok(Opcode::OP_MSET) => request.pairs.first().map(|pair| pair.key.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Entry;

    #[test]
    fn requests_route_by_their_first_key() {
        let mut request = Request::new();
        request.opcode = Opcode::OP_SIZE.into();
        assert_eq!(routing_key(&request), None);
        request.opcode = Opcode::OP_MSET.into();
        request.pairs =
            vec![Entry::from_pair(("b".into(), Vec::new())), Entry::from_pair(("a".into(), Vec::new()))];
        assert_eq!(routing_key(&request), Some("b"));
        request.opcode = Opcode::OP_MGET.into();
        request.keys = vec!["c".into()];
        assert_eq!(routing_key(&request), Some("c"));
        request.key = Some("k".into());
        assert_eq!(routing_key(&request), Some("k"));
    }
}
