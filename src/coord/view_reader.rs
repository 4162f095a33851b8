//! Reading a chain's membership out of ZooKeeper: the children of the chain
//! node, each member's data, the node's child version as the epoch, and the
//! node's own data as the commit record.

use std::time::Duration;

use zookeeper::{WatchedEvent, ZkError, ZooKeeper};

use super::zk::{self, BoundedZk};
use crate::view::{ChainView, CommitRecord, parse_member};

/// Reads the chain: every member's node and data, the chain node's child
/// version as the view's epoch and its data as the commit record.
pub fn read_view(zk: &ZooKeeper, chain_path: &str) -> Result<ChainView, ZkError> {
    let children = zk.get_children(chain_path, false)?;
    let (record, stat) = zk.get_data(chain_path, false)?;
    let epoch = stat.cversion as u64;
    let mut members = Vec::with_capacity(children.len());
    for child in children {
        match zk.get_data(&format!("{chain_path}/{child}"), false) {
            Ok((data, _)) => members.extend(parse_member(&child, &data)),
            // It left between the listing and the read.
            Err(ZkError::NoNode) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(ChainView::new(members, epoch).with_record(CommitRecord::parse(&record)))
}

impl BoundedZk {
    /// [`read_view`] on the worker thread, bounded in time.
    pub fn read_view(&self, chain_path: &str) -> Result<ChainView, ZkError> {
        let chain_path = chain_path.to_owned();
        self.call(move |zk| read_view(zk, &chain_path))
    }
}

/// Reads the chain once through a session of its own (closed on return),
/// for tools that look at a chain without following it.
pub fn read_view_once(
    zk_hosts: &str,
    chain_path: &str,
    session_timeout: Duration,
) -> Result<ChainView, String> {
    let zk =
        zk::connect(zk_hosts, session_timeout, |_: WatchedEvent| {}).map_err(|error| error.to_string())?;
    read_view(&zk, chain_path).map_err(|error| format!("reading {chain_path}: {error}"))
}
