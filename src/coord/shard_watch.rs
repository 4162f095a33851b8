//! The shard map's ZooKeeper I/O: following the map node (clients and
//! servers, through a [`NodeWatch`] of its own), reading it once (tools),
//! and changing it, always by one version-checked write so that two admins
//! acting on the same version cannot both win.

use std::sync::Arc;
use std::time::Duration;

use zookeeper::{Acl, AddWatchMode, CreateMode, WatchedEvent, ZkError, ZooKeeper, ZooKeeperExt};

use super::chain_watch::{NodeWatch, Watched};
use super::zk::{self, BoundedZk};
use crate::chain::migration::ZkAnswer;
use crate::shard::map::{MapError, RangeState, ShardMap};
use crate::view::Member;

/// What the map node holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapReading {
    /// No map node: one chain, no routing (a table as before shards).
    Absent,
    /// A valid map (shared: it is 32 KiB and read per request).
    Map(Arc<ShardMap>),
    /// The node holds junk: nobody may route by it, and it must be fixed.
    Junk(MapError),
}

/// A session following the shard map node.
pub type MapWatch = NodeWatch<MapReading>;

/// Starts following the map node at `map_path` in the ensemble `hosts`.
/// Connects on the first reading.
pub fn follow_map(hosts: &str, map_path: &str) -> std::io::Result<MapWatch> {
    NodeWatch::follow(
        hosts,
        Watched {
            path: map_path.to_owned(),
            mode: AddWatchMode::Persistent,
            reader: read_map,
            what: "the shard map",
            thread_name: "shard-map",
        },
    )
}

/// Reads the map node: absent, a map at the node's version, or junk.
pub fn read_map(zk: &ZooKeeper, map_path: &str) -> Result<MapReading, ZkError> {
    match zk.get_data(map_path, false) {
        Ok((data, stat)) => Ok(match ShardMap::parse(&data, stat.version as u64) {
            Ok(map) => MapReading::Map(Arc::new(map)),
            Err(error) => MapReading::Junk(error),
        }),
        Err(ZkError::NoNode) => Ok(MapReading::Absent),
        Err(error) => Err(error),
    }
}

/// Opens a session of its own for one tool's command (closed on return).
fn session(zk_hosts: &str, session_timeout: Duration) -> Result<ZooKeeper, String> {
    zk::connect(zk_hosts, session_timeout, |_: WatchedEvent| {}).map_err(|error| error.to_string())
}

/// Reads the map once, for tools.
pub fn read_map_once(
    zk_hosts: &str,
    map_path: &str,
    session_timeout: Duration,
) -> Result<MapReading, String> {
    let zk = session(zk_hosts, session_timeout)?;
    read_map(&zk, map_path).map_err(|error| format!("reading {map_path}: {error:?}"))
}

/// Creates the map node holding `map`, refused when a map exists or a chain
/// it names does not exist. Returns the map as created (version 0).
pub fn create_map(
    zk_hosts: &str,
    map_path: &str,
    map: &ShardMap,
    session_timeout: Duration,
) -> Result<ShardMap, String> {
    let zk = session(zk_hosts, session_timeout)?;
    check_chains_exist(&zk, map)?;
    if let Some((parent, _)) = map_path.rsplit_once('/')
        && !parent.is_empty()
    {
        zk.ensure_path(parent).map_err(|error| format!("creating {parent}: {error:?}"))?;
    }
    match zk.create(map_path, map.encode(), Acl::open_unsafe().clone(), CreateMode::Persistent) {
        Ok(_) => Ok(ShardMap::new(0, map.ranges().to_vec()).map_err(|error| error.0)?),
        Err(ZkError::NodeExists) => Err(format!(
            "a shard map exists at {map_path} already (see `shards`); init only makes the first one"
        )),
        Err(error) => Err(format!("creating {map_path}: {error:?}")),
    }
}

/// Every chain the map names must exist as a chain node.
fn check_chains_exist(zk: &ZooKeeper, map: &ShardMap) -> Result<(), String> {
    map.chains().iter().try_for_each(|chain| check_chain_exists(zk, chain))
}

fn check_chain_exists(zk: &ZooKeeper, chain: &str) -> Result<(), String> {
    match zk.exists(chain, false) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("no chain at {chain}: start its servers first (--chain {chain})")),
        Err(error) => Err(format!("looking for {chain}: {error:?}")),
    }
}

/// Sets the map node to `map` if it is at version `base` (a migration's
/// claim, flip or abort): ZooKeeper applies at most one of several sets
/// made at one version.
pub fn set_map_at(zk: &ZooKeeper, map_path: &str, map: &ShardMap, base: u64) -> ZkAnswer {
    let Ok(version) = i32::try_from(base) else { return ZkAnswer::BadVersion };
    match zk.set_data(map_path, map.encode(), Some(version)) {
        Ok(stat) => ZkAnswer::Done { version: stat.version as u64 },
        Err(ZkError::BadVersion | ZkError::NoNode) => ZkAnswer::BadVersion,
        Err(_) => ZkAnswer::Unknown,
    }
}

/// A tool's change of the map: reads it, asks `change` for the next one
/// (`None`: nothing to change), checks that the chains it names exist, and
/// sets it at the version read. Returns the map read and the one set.
pub fn change_map(
    zk_hosts: &str,
    map_path: &str,
    session_timeout: Duration,
    change: impl FnOnce(&ShardMap) -> Result<Option<ShardMap>, String>,
) -> Result<(ShardMap, Option<ShardMap>), String> {
    let zk = session(zk_hosts, session_timeout)?;
    let map = match read_map(&zk, map_path).map_err(|error| format!("reading {map_path}: {error:?}"))? {
        MapReading::Map(map) => map,
        MapReading::Absent => return Err(format!("no shard map at {map_path} (see `shards init`)")),
        MapReading::Junk(error) => return Err(format!("{error}; fix the map node first")),
    };
    let Some(mut next) = change(&map)? else { return Ok(((*map).clone(), None)) };
    check_chains_exist(&zk, &next)?;
    for range in next.ranges() {
        if let RangeState::MigratingTo(target) = &range.state {
            check_chain_exists(&zk, target)?;
        }
    }
    match set_map_at(&zk, map_path, &next, map.version) {
        ZkAnswer::Done { version } => {
            next.version = version;
            Ok(((*map).clone(), Some(next)))
        }
        ZkAnswer::BadVersion => Err(format!(
            "the shard map changed while this command read it (it was version {}); nothing changed, run it again",
            map.version
        )),
        ZkAnswer::Unknown => Err(format!(
            "no answer from ZooKeeper setting {map_path}; the change may or may not be made: run the command again"
        )),
    }
}

/// A server's own ZooKeeper session for a migration's driver: reads of the
/// map and of the target chain, and version-checked sets of the map, each
/// bounded in time (see [`BoundedZk`]); after a failure the next call opens
/// a new session.
pub struct MapSession {
    hosts: String,
    map_path: String,
    session_timeout: Duration,
    zk: Option<BoundedZk>,
}

impl MapSession {
    pub fn new(hosts: &str, map_path: &str, session_timeout: Duration) -> MapSession {
        MapSession { hosts: hosts.to_owned(), map_path: map_path.to_owned(), session_timeout, zk: None }
    }

    /// Runs `call` on the session, opening it first if needed; any error
    /// drops the session.
    fn call<T: Send + 'static>(
        &mut self,
        call: impl FnOnce(&ZooKeeper) -> Result<T, ZkError> + Send + 'static,
    ) -> Result<T, String> {
        if self.zk.is_none() {
            let zk = session(&self.hosts, self.session_timeout)?;
            self.zk = Some(BoundedZk::new(zk, self.session_timeout).map_err(|error| error.to_string())?);
        }
        let result = self.zk.as_ref().expect("opened above").call(call);
        if result.is_err() {
            self.zk = None;
        }
        result.map_err(|error| format!("ZooKeeper: {error:?}"))
    }

    /// The map as it is now.
    pub fn read(&mut self) -> Result<MapReading, String> {
        let path = self.map_path.clone();
        self.call(move |zk| read_map(zk, &path))
    }

    /// Sets the map to `map` if it is at `base`.
    pub fn set_at(&mut self, map: ShardMap, base: u64) -> ZkAnswer {
        let path = self.map_path.clone();
        self.call(move |zk| Ok(set_map_at(zk, &path, &map, base))).unwrap_or(ZkAnswer::Unknown)
    }

    /// The head of the chain at `chain_path` (`None`: it has no ready member).
    pub fn head_of(&mut self, chain_path: &str) -> Result<Option<Member>, String> {
        let path = chain_path.to_owned();
        let view = self.call(move |zk| super::view_reader::read_view(zk, &path))?;
        Ok(view.head().cloned())
    }
}
