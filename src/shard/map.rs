//! The shard map: which chain owns which slots, at which version.
//!
//! One ZooKeeper node holds it (`--shards`, default `/shards`) as text a
//! person can read with any ZooKeeper shell:
//!
//! ```text
//! chaintable-shards 1
//! 0-8191 /chain1
//! 8192-16383 /chain2 migrating-to /chain3
//! ```
//!
//! The node's ZooKeeper version is the map version: every change is one
//! version-checked set, so two admins cannot both change the map from the
//! same version, and everyone compares versions to know who is behind.
//!
//! A range may be `migrating-to` another chain (the next phase's online
//! migration writes it): its source chain still owns it and answers it
//! until the map flips the range to the target in one more versioned set,
//! so readers of this phase route such a range exactly as a stable one.

use std::fmt;

use super::slot::{SLOT_COUNT, SLOT_LAST};

/// The first line of every map: the format and its version.
const HEADER: &str = "chaintable-shards 1";

/// Bytes a map node may hold: 16,384 one-slot ranges with long chain paths
/// fit; anything bigger is junk, refused before it is read.
pub const MAP_BYTES_MAX: usize = 4 << 20;

/// What happens to a range (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeState {
    /// Owned and served by its chain.
    Stable,
    /// Still owned and served by its chain, while its keys are copied to
    /// `target` (the next phase).
    MigratingTo(String),
}

/// Slots `first..=last`, owned by the chain at ZooKeeper path `chain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRange {
    pub first: u16,
    pub last: u16,
    pub chain: String,
    pub state: RangeState,
}

/// Why a map node cannot be used; the message says where and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapError(pub String);

impl fmt::Display for MapError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A valid map: its ranges cover every slot exactly once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMap {
    /// The ZooKeeper version of the node it was read from (0 once created).
    pub version: u64,
    /// In slot order, consecutive, covering 0..=16383.
    ranges: Vec<SlotRange>,
    /// Every owning chain once, in the order the ranges name them.
    chains: Vec<String>,
    /// Index into `chains` of each slot's owner: one array read per key.
    owners: Box<[u16]>,
}

impl ShardMap {
    /// A map from `ranges`, checked: sorted by slot, every slot exactly
    /// once, chain paths absolute.
    pub fn new(version: u64, mut ranges: Vec<SlotRange>) -> Result<ShardMap, MapError> {
        ranges.sort_by_key(|range| range.first);
        let mut next = 0u32;
        for range in &ranges {
            check_range(range, next)?;
            next = range.last as u32 + 1;
        }
        if next != SLOT_COUNT as u32 {
            return Err(MapError(format!("slots {next}-{SLOT_LAST} belong to no chain")));
        }
        let mut chains: Vec<String> = Vec::new();
        let mut owners = vec![0u16; SLOT_COUNT as usize].into_boxed_slice();
        for range in &ranges {
            let index = match chains.iter().position(|chain| *chain == range.chain) {
                Some(index) => index,
                None => {
                    chains.push(range.chain.clone());
                    chains.len() - 1
                }
            };
            owners[range.first as usize..=range.last as usize].fill(index as u16);
        }
        Ok(ShardMap { version, ranges, chains, owners })
    }

    /// `chains` given equal consecutive ranges in the order named (the
    /// first ones one slot more when 16,384 does not divide evenly).
    pub fn split_evenly(chains: &[String]) -> Result<ShardMap, MapError> {
        if chains.is_empty() || chains.len() > SLOT_COUNT as usize {
            return Err(MapError(format!("between 1 and {SLOT_COUNT} chains, please")));
        }
        let count = chains.len() as u32;
        let (share, extra) = (SLOT_COUNT as u32 / count, SLOT_COUNT as u32 % count);
        let mut first = 0u32;
        let mut ranges = Vec::with_capacity(chains.len());
        for (index, chain) in chains.iter().enumerate() {
            let size = share + u32::from((index as u32) < extra);
            let last = first + size - 1;
            ranges.push(SlotRange {
                first: first as u16,
                last: last as u16,
                chain: chain.clone(),
                state: RangeState::Stable,
            });
            first = last + 1;
        }
        let map = ShardMap::new(0, ranges)?;
        if map.chains.len() != chains.len() {
            return Err(MapError("a chain is named twice".into()));
        }
        Ok(map)
    }

    /// Reads a map node's data at ZooKeeper version `version`.
    pub fn parse(data: &[u8], version: u64) -> Result<ShardMap, MapError> {
        let junk =
            |reason: String| MapError(format!("the shard map (version {version}) is not valid: {reason}"));
        if data.len() > MAP_BYTES_MAX {
            return Err(junk(format!("{} bytes, over the maximum of {MAP_BYTES_MAX}", data.len())));
        }
        let text = std::str::from_utf8(data).map_err(|_| junk("not UTF-8 text".into()))?;
        let mut lines = text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty());
        match lines.next() {
            Some((_, line)) if line.trim() == HEADER => {}
            _ => return Err(junk(format!("the first line must be {HEADER:?}"))),
        }
        let ranges = lines
            .map(|(number, line)| {
                parse_range(line).map_err(|reason| junk(format!("line {}: {reason}", number + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        ShardMap::new(version, ranges).map_err(|error| junk(error.0))
    }

    /// The node's data for this map (the version is ZooKeeper's).
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("{HEADER}\n");
        for range in &self.ranges {
            text.push_str(&format!("{}-{} {}", range.first, range.last, range.chain));
            if let RangeState::MigratingTo(target) = &range.state {
                text.push_str(&format!(" migrating-to {target}"));
            }
            text.push('\n');
        }
        text.into_bytes()
    }

    /// This map with slots `first..=last` given to `chain` in `state`, the
    /// ranges around them cut where they overlap (the next version's
    /// content: a migration's start, flip or abort).
    pub fn with_range(
        &self,
        first: u16,
        last: u16,
        chain: &str,
        state: RangeState,
    ) -> Result<ShardMap, MapError> {
        let mut ranges: Vec<SlotRange> = Vec::with_capacity(self.ranges.len() + 2);
        for range in &self.ranges {
            if range.first < first {
                ranges.push(SlotRange { last: range.last.min(first.saturating_sub(1)), ..range.clone() });
            }
            if range.last > last {
                ranges.push(SlotRange { first: range.first.max(last.saturating_add(1)), ..range.clone() });
            }
        }
        ranges.push(SlotRange { first, last, chain: chain.to_owned(), state });
        ShardMap::new(self.version, ranges)
    }

    /// The ranges in slot order.
    pub fn ranges(&self) -> &[SlotRange] {
        &self.ranges
    }

    /// Every chain that owns slots, each once.
    pub fn chains(&self) -> &[String] {
        &self.chains
    }

    /// Index in [`ShardMap::chains`] of the chain that owns `slot`.
    pub fn owner_index(&self, slot: u16) -> u16 {
        self.owners[(slot % SLOT_COUNT) as usize]
    }

    /// The chain that owns `slot`.
    pub fn owner(&self, slot: u16) -> &str {
        &self.chains[self.owner_index(slot) as usize]
    }

    /// The chain `slot` is migrating to, if a migration of it runs.
    pub fn migrating_to(&self, slot: u16) -> Option<&str> {
        let index = self.ranges.partition_point(|range| range.last < slot);
        match &self.ranges.get(index)?.state {
            RangeState::MigratingTo(target) => Some(target),
            RangeState::Stable => None,
        }
    }

    /// Index of `chain` in [`ShardMap::chains`]; `None`: it owns no slot.
    pub fn chain_index(&self, chain: &str) -> Option<u16> {
        self.chains.iter().position(|owner| owner == chain).map(|index| index as u16)
    }
}

/// Checks that `range` starts at slot `next` and is well-formed.
fn check_range(range: &SlotRange, next: u32) -> Result<(), MapError> {
    let name = format!("{}-{}", range.first, range.last);
    if range.first > range.last || range.last > SLOT_LAST {
        return Err(MapError(format!("range {name} is not within 0-{SLOT_LAST}")));
    }
    if (range.first as u32) < next {
        return Err(MapError(format!("range {name} overlaps the one before")));
    }
    if range.first as u32 > next {
        return Err(MapError(format!("slots {next}-{} belong to no chain", range.first - 1)));
    }
    check_chain_path(&range.chain)?;
    if let RangeState::MigratingTo(target) = &range.state {
        check_chain_path(target)?;
    }
    Ok(())
}

/// A chain path is an absolute ZooKeeper path.
pub fn check_chain_path(path: &str) -> Result<(), MapError> {
    let well_formed = path.starts_with('/')
        && path.len() > 1
        && !path.ends_with('/')
        && !path.contains("//")
        && !path.chars().any(|character| character.is_whitespace() || character.is_control());
    if well_formed { Ok(()) } else { Err(MapError(format!("{path:?} is not a chain path (like /chain1)"))) }
}

/// One line: `<first>-<last> <chain> [migrating-to <chain>]`, or
/// `<slot> <chain>` for a range of one slot.
fn parse_range(line: &str) -> Result<SlotRange, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (slots, chain, state) = match words.as_slice() {
        [slots, chain] => (*slots, *chain, RangeState::Stable),
        [slots, chain, "migrating-to", target] => {
            (*slots, *chain, RangeState::MigratingTo((*target).to_owned()))
        }
        _ => return Err(format!("expected \"<first>-<last> <chain> [migrating-to <chain>]\", not {line:?}")),
    };
    let (first, last) = slots.split_once('-').unwrap_or((slots, slots));
    let slot = |text: &str| {
        text.parse::<u16>()
            .ok()
            .filter(|slot| *slot <= SLOT_LAST)
            .ok_or_else(|| format!("{text:?} is not a slot (0-{SLOT_LAST})"))
    };
    Ok(SlotRange { first: slot(first)?, last: slot(last)?, chain: chain.to_owned(), state })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chains(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn two_chains_split_at_8192_and_round_trip() {
        let map = ShardMap::split_evenly(&chains(&["/chain1", "/chain2"])).unwrap();
        let ranges: Vec<_> = map.ranges().iter().map(|range| (range.first, range.last)).collect();
        assert_eq!(ranges, [(0, 8191), (8192, 16383)]);
        assert_eq!(map.owner(8191), "/chain1");
        assert_eq!(map.owner(8192), "/chain2");
        assert_eq!(map.chain_index("/chain2"), Some(1));
        assert_eq!(map.chain_index("/chain3"), None);
        let read = ShardMap::parse(&map.encode(), 0).unwrap();
        assert_eq!(read, map);
    }

    #[test]
    fn uneven_splits_cover_everything() {
        let map = ShardMap::split_evenly(&chains(&["/a", "/b", "/c"])).unwrap();
        let sizes: Vec<_> = map.ranges().iter().map(|range| range.last - range.first + 1).collect();
        assert_eq!(sizes, [5462, 5461, 5461]);
        assert!(ShardMap::split_evenly(&chains(&["/a", "/a"])).is_err());
        assert!(ShardMap::split_evenly(&[]).is_err());
    }

    #[test]
    fn migrating_ranges_are_still_their_sources() {
        let text = "chaintable-shards 1\n0-99 /a migrating-to /b\n100-16383 /b\n";
        let map = ShardMap::parse(text.as_bytes(), 4).unwrap();
        assert_eq!(map.owner(50), "/a");
        assert_eq!(
            (map.migrating_to(0), map.migrating_to(99), map.migrating_to(100)),
            (Some("/b"), Some("/b"), None)
        );
        assert_eq!(map.ranges()[0].state, RangeState::MigratingTo("/b".into()));
        assert_eq!(String::from_utf8(map.encode()).unwrap(), text);
        assert_eq!(map.version, 4);
    }

    #[test]
    fn junk_gets_one_clear_error() {
        let cases: [(&[u8], &str); 9] = [
            (b"", "the first line must be"),
            (b"\xff\xfe", "not UTF-8"),
            (b"chaintable-shards 1\n0-8191 /a\n", "slots 8192-16383 belong to no chain"),
            (b"chaintable-shards 1\n0-8191 /a\n8000-16383 /b\n", "overlaps"),
            (b"chaintable-shards 1\n0-8191 /a\n8193-16383 /b\n", "slots 8192-8192 belong to no chain"),
            (b"chaintable-shards 1\n0-16384 /a\n", "\"16384\" is not a slot"),
            (b"chaintable-shards 1\n0-16383 a\n", "is not a chain path"),
            (b"chaintable-shards 1\n0-16383\n", "line 2: expected"),
            (b"chaintable-shards 1\n9-3 /a\n", "not within"),
        ];
        for (data, expected) in cases {
            let error = ShardMap::parse(data, 7).unwrap_err().to_string();
            assert!(error.starts_with("the shard map (version 7) is not valid: "), "{error}");
            assert!(error.contains(expected), "{error} should say {expected}");
        }
        let huge = vec![b' '; MAP_BYTES_MAX + 1];
        assert!(ShardMap::parse(&huge, 0).unwrap_err().to_string().contains("over the maximum"));
    }

    #[test]
    fn a_range_is_set_by_cutting_the_ones_around_it() {
        let map = ShardMap::split_evenly(&chains(&["/a", "/b"])).unwrap();
        let moving = RangeState::MigratingTo("/b".into());
        let marked = map.with_range(100, 199, "/a", moving.clone()).unwrap();
        let text = "chaintable-shards 1\n0-99 /a\n100-199 /a migrating-to /b\n200-8191 /a\n8192-16383 /b\n";
        assert_eq!(String::from_utf8(marked.encode()).unwrap(), text);
        let flipped = marked.with_range(100, 199, "/b", RangeState::Stable).unwrap();
        assert_eq!(flipped.owner(150), "/b");
        assert_eq!(flipped.migrating_to(150), None);
        let edges = map.with_range(0, 16383, "/c", RangeState::Stable).unwrap();
        assert_eq!(edges.ranges().len(), 1);
        assert!(map.with_range(9, 3, "/c", RangeState::Stable).is_err());
        assert_eq!(map.with_range(8000, 8300, "/c", moving).unwrap().ranges().len(), 3);
    }

    #[test]
    fn one_slot_ranges_may_omit_the_dash() {
        let map = ShardMap::parse(b"chaintable-shards 1\n0 /a\n1-16383 /b\n", 0).unwrap();
        assert_eq!(map.owner(0), "/a");
        assert_eq!(map.owner(1), "/b");
    }
}
