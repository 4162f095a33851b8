//! The shard map's ZooKeeper I/O: following the map node (clients and
//! servers, through a [`NodeWatch`] of its own), reading it once (tools),
//! and changing it, always by one version-checked write so that two admins
//! acting on the same version cannot both win.

use std::sync::Arc;
use std::time::Duration;

use zookeeper::{Acl, AddWatchMode, CreateMode, WatchedEvent, ZkError, ZooKeeper, ZooKeeperExt};

use super::chain_watch::{NodeWatch, Watched};
use super::zk;
use crate::shard::map::{MapError, ShardMap};

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
    for chain in map.chains() {
        match zk.exists(chain, false) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(format!("no chain at {chain}: start its servers first (--chain {chain})"));
            }
            Err(error) => return Err(format!("looking for {chain}: {error:?}")),
        }
    }
    Ok(())
}
