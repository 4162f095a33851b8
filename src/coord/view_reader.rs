//! Reading a chain's membership out of ZooKeeper: the children of the chain
//! node, each member's data, the node's child version as the epoch, and the
//! node's own data as the commit record.
//!
//! Anything else under the chain node is ignored, and at most
//! [`CHAIN_MEMBERS_READ_MAX`] members are read (the oldest): junk children,
//! however many, cost one listing and never a read each (3,000 of them once
//! made every reading outlast the session timeout and fenced every server).
//! What is ignored is logged at most once a second.

use std::time::Duration;

use log::warn;
use zookeeper::{WatchedEvent, ZkError, ZooKeeper};

use super::zk::{self, BoundedZk};
use crate::limits::{CHAIN_MEMBERS_READ_MAX, LOG_REPEAT_INTERVAL};
use crate::throttle::{Every, suppressed_note};
use crate::view::{ChainView, CommitRecord, MEMBER_PREFIX, parse_member};

/// Digits ZooKeeper appends to a sequential node's name.
const SEQUENCE_DIGITS: usize = 10;

/// Reports of ignored children, at most once a second.
static IGNORED_WARNINGS: Every = Every::new(LOG_REPEAT_INTERVAL);

/// Reads the chain: every member's node and data, the chain node's child
/// version as the view's epoch and its data as the commit record.
pub fn read_view(zk: &ZooKeeper, chain_path: &str) -> Result<ChainView, ZkError> {
    let children = zk.get_children(chain_path, false)?;
    let (record, stat) = zk.get_data(chain_path, false)?;
    let epoch = stat.cversion as u64;
    let (names, mut ignored) = member_names(children);
    let mut members = Vec::with_capacity(names.len());
    for name in names {
        match zk.get_data(&format!("{chain_path}/{name}"), false) {
            Ok((data, _)) => match parse_member(&name, &data) {
                Some(member) => members.push(member),
                None => ignored.push(name),
            },
            // It left between the listing and the read.
            Err(ZkError::NoNode) => {}
            Err(error) => return Err(error),
        }
    }
    if !ignored.is_empty() {
        report_ignored(chain_path, &ignored);
    }
    Ok(ChainView::new(members, epoch).with_record(CommitRecord::parse(&record)))
}

/// Splits children into the member names to read (the oldest
/// [`CHAIN_MEMBERS_READ_MAX`], oldest first) and the rest.
fn member_names(children: Vec<String>) -> (Vec<String>, Vec<String>) {
    let (mut names, mut ignored): (Vec<String>, Vec<String>) =
        children.into_iter().partition(|child| is_member_name(child));
    names.sort();
    if names.len() > CHAIN_MEMBERS_READ_MAX {
        ignored.extend(names.split_off(CHAIN_MEMBERS_READ_MAX));
    }
    (names, ignored)
}

/// `node` and ten digits: the name of an EPHEMERAL_SEQUENTIAL member node.
fn is_member_name(name: &str) -> bool {
    name.strip_prefix(MEMBER_PREFIX).is_some_and(|digits| {
        digits.len() == SEQUENCE_DIGITS && digits.bytes().all(|byte| byte.is_ascii_digit())
    })
}

fn report_ignored(chain_path: &str, ignored: &[String]) {
    if let Some(held_back) = IGNORED_WARNINGS.due() {
        const SHOWN: usize = 3;
        let mut shown = ignored.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
        if ignored.len() > SHOWN {
            shown.push_str(", ...");
        }
        warn!(
            "ignoring {} children of {chain_path} that are not members or beyond the first {CHAIN_MEMBERS_READ_MAX} \
             ({shown}){}",
            ignored.len(),
            suppressed_note(held_back)
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_member_names_are_members() {
        assert!(is_member_name("node0000000042"));
        for junk in ["node42", "node00000000421", "node000000004x", "junk0000000042", "", "node"] {
            assert!(!is_member_name(junk), "{junk}");
        }
    }

    #[test]
    fn junk_is_set_aside_and_members_are_bounded_oldest_first() {
        let mut children: Vec<String> = (0..3000).map(|index| format!("junk{index}")).collect();
        children.extend((0..CHAIN_MEMBERS_READ_MAX + 2).rev().map(|index| format!("node{index:010}")));
        let (names, ignored) = member_names(children);
        assert_eq!(names.len(), CHAIN_MEMBERS_READ_MAX);
        assert_eq!(names[0], "node0000000000");
        assert_eq!(names.last().unwrap(), &format!("node{:010}", CHAIN_MEMBERS_READ_MAX - 1));
        assert_eq!(ignored.len(), 3002);
    }
}
