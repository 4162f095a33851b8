//! `table-bench --zk` on a sharded table: the shard map is read once, at
//! the start, like the chain's head and tail (see the module doc of
//! [`super`]); each load thread holds connections to every chain's head
//! and tail and sends each key to the chain that owns its slot. The cost
//! per operation over one chain: a CRC16 of the key and one array read.

use std::sync::Arc;
use std::time::Duration;

use super::{BenchError, Store};
use crate::coord::shard_watch::{MapReading, read_map_once};
use crate::limits::SHARDS_PATH_DEFAULT;
use crate::shard::map::ShardMap;
use crate::shard::slot::slot_of;

/// The shard map at the default path, if there is one (a junk map is an
/// error: nobody can tell where keys live).
pub fn read_map(zk_hosts: &str, timeout: Duration) -> Result<Option<Arc<ShardMap>>, BenchError> {
    match read_map_once(zk_hosts, SHARDS_PATH_DEFAULT, timeout).map_err(BenchError::Unreachable)? {
        MapReading::Absent => Ok(None),
        MapReading::Map(map) => Ok(Some(map)),
        MapReading::Junk(error) => Err(BenchError::Unreachable(error.to_string())),
    }
}

/// One load thread's connections to every chain of a sharded table.
pub(super) struct ShardedStore {
    pub(super) map: Arc<ShardMap>,
    /// One per chain, in the order of [`ShardMap::chains`].
    pub(super) chains: Vec<Box<dyn Store>>,
}

impl ShardedStore {
    fn owner(&mut self, key: &str) -> &mut dyn Store {
        self.chains[self.map.owner_index(slot_of(key)) as usize].as_mut()
    }
}

impl Store for ShardedStore {
    fn get(&mut self, key: &str) -> Result<bool, String> {
        self.owner(key).get(key)
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.owner(key).put(key, value)
    }

    fn del(&mut self, key: &str) -> Result<bool, String> {
        self.owner(key).del(key)
    }

    fn cas(&mut self, key: &str, value: &[u8]) -> Result<bool, String> {
        self.owner(key).cas(key, value)
    }

    fn incr(&mut self, key: &str) -> Result<(), String> {
        self.owner(key).incr(key)
    }
}
