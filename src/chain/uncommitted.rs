//! Which keys a durable node applied writes to that are not committed yet,
//! so a read shows a write only once it is committed (on disk at every
//! member that must hold it), never one a power loss could take back.
//!
//! A tail applies a write before the members before it report it synced
//! (see `SyncedReport`), so its table runs ahead of its commit point; a read
//! of a key written in that window waits (the server) or is refused for a
//! retry (the simulator) until the write commits. Reads of other keys go on
//! at once, also while a failing disk holds writes back.

use std::collections::{HashMap, VecDeque};

use super::durable::Durable;

/// Which keys a read may show.
#[derive(Clone, Copy, Debug)]
pub enum ReadKeys<'a> {
    One(&'a str),
    Many(&'a [String]),
    /// Any key (a count, a scan, a listing).
    All,
}

/// The keys of writes logged and perhaps not yet committed, each with the
/// last write that set it.
#[derive(Debug, Default)]
pub struct Uncommitted {
    by_key: HashMap<String, u64>,
    order: VecDeque<(u64, String)>,
    /// A state transfer's (or a reset's) point: every read waits for it.
    floor: u64,
}

impl Uncommitted {
    /// Notes what a logged item changes.
    pub fn note(&mut self, item: &Durable) {
        match item {
            Durable::Write { write, .. } => {
                for key in std::iter::once(&write.key).chain(write.more.iter().map(|entry| &entry.key)) {
                    self.by_key.insert(key.clone(), write.sequence);
                    self.order.push_back((write.sequence, key.clone()));
                }
            }
            Durable::Chunk(chunk) => self.floor = self.floor.max(chunk.sequence),
            Durable::Reset => *self = Uncommitted::default(),
        }
    }

    /// Forgets the writes up to `committed`.
    pub fn prune(&mut self, committed: u64) {
        while let Some((sequence, _)) = self.order.front()
            && *sequence <= committed
        {
            let (sequence, key) = self.order.pop_front().expect("a front entry");
            if self.by_key.get(&key) == Some(&sequence) {
                self.by_key.remove(&key);
            }
        }
    }

    /// The newest write a read of `keys` may show that may not be committed
    /// yet (0: none); `applied` is the last write applied (what a read of
    /// every key may show).
    pub fn newest(&self, keys: ReadKeys<'_>, applied: u64) -> u64 {
        let newest = match keys {
            ReadKeys::One(key) => self.by_key.get(key).copied(),
            ReadKeys::Many(keys) => keys.iter().filter_map(|key| self.by_key.get(key).copied()).max(),
            ReadKeys::All => Some(applied),
        };
        newest.unwrap_or(0).max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Write;

    fn put(sequence: u64, key: &str) -> Durable {
        let mut write = Write::new();
        write.sequence = sequence;
        write.key = key.to_owned();
        Durable::Write { generation: 1, write }
    }

    #[test]
    fn a_read_waits_only_for_the_newest_uncommitted_write_of_its_keys() {
        let mut uncommitted = Uncommitted::default();
        uncommitted.note(&put(1, "a"));
        uncommitted.note(&put(2, "b"));
        uncommitted.note(&put(3, "a"));
        assert_eq!(uncommitted.newest(ReadKeys::One("a"), 3), 3);
        assert_eq!(uncommitted.newest(ReadKeys::One("b"), 3), 2);
        assert_eq!(uncommitted.newest(ReadKeys::One("c"), 3), 0);
        assert_eq!(uncommitted.newest(ReadKeys::All, 3), 3);
        uncommitted.prune(2);
        assert_eq!(uncommitted.newest(ReadKeys::One("b"), 3), 0, "committed: nothing to wait for");
        assert_eq!(uncommitted.newest(ReadKeys::One("a"), 3), 3, "write 3 is still uncommitted");
        uncommitted.prune(3);
        assert_eq!(uncommitted.newest(ReadKeys::Many(&["a".into(), "b".into()]), 3), 0);
    }
}
