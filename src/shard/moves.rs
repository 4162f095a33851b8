//! The map changes an operator asks for with `migrate` (pure): start a
//! migration (mark the slots `migrating-to` their new chain) or abort one
//! (back to their chain, stable). Each is checked against the map as read,
//! and ZooKeeper applies it only at that map's version (see
//! `coord::shard_watch::change_map`), so a change decided on a stale map
//! changes nothing. The flip is the source head's (see `chain::migration`).

use super::map::{RangeState, ShardMap};
use super::slot::SLOT_LAST;

/// Slots `first..=last` to move to `target`, as the command names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveRequest {
    pub first: u16,
    pub last: u16,
    pub target: String,
}

/// What starting a migration does to the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// The next map: the slots marked `migrating-to` the target.
    Mark(ShardMap),
    /// This very migration runs already: nothing to change (the command
    /// only reports its progress).
    Running,
    /// The slots are the target's already (a migration that finished).
    Done,
}

/// Where a migration is, as the map says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveState {
    /// Still moving from `source`.
    Migrating { source: String },
    /// The slots are the target's: it finished.
    Moved,
    /// Neither: it was aborted (or the map was changed by hand).
    NotRunning,
}

impl MoveRequest {
    /// Parses `<first>[-<last>]` and the chain.
    pub fn parse(slots: &str, target: &str) -> Result<MoveRequest, String> {
        let slot = |word: &str| -> Result<u16, String> {
            match word.parse::<u16>() {
                Ok(slot) if slot <= SLOT_LAST => Ok(slot),
                _ => Err(format!("slot {word:?} is not a number from 0 to {SLOT_LAST}")),
            }
        };
        let (first, last) = match slots.split_once('-') {
            Some((first, last)) => (slot(first)?, slot(last)?),
            None => (slot(slots)?, slot(slots)?),
        };
        if first > last {
            return Err(format!("slots {first}-{last}: the first is after the last"));
        }
        super::map::check_chain_path(target).map_err(|error| error.0)?;
        Ok(MoveRequest { first, last, target: target.to_owned() })
    }

    /// `first-last`, for messages.
    pub fn slots(&self) -> String {
        format!("{}-{}", self.first, self.last)
    }

    /// The one chain that owns every slot asked for.
    pub fn source<'map>(&self, map: &'map ShardMap) -> Result<&'map str, String> {
        let owner = map.owner(self.first);
        match (self.first..=self.last).find(|&slot| map.owner(slot) != owner) {
            Some(slot) => Err(format!(
                "slots {} belong to more than one chain ({owner} and {}); move one chain's slots at a time",
                self.slots(),
                map.owner(slot)
            )),
            None => Ok(owner),
        }
    }

    /// The range of `map` that migrates exactly these slots, if one does.
    fn running<'map>(&self, map: &'map ShardMap) -> Option<&'map super::map::SlotRange> {
        map.ranges().iter().find(|range| {
            range.first == self.first && range.last == self.last && range.state != RangeState::Stable
        })
    }

    /// Starting this migration on `map`: one migration at a time in a
    /// table (a source head drives one, a target head imports one).
    pub fn start(&self, map: &ShardMap) -> Result<Start, String> {
        if let Some(range) = self.running(map) {
            return match &range.state {
                RangeState::MigratingTo(to) if *to == self.target => Ok(Start::Running),
                _ => Err(format!(
                    "slots {} are migrating from {} to another chain ({}); abort that first with --abort",
                    self.slots(),
                    range.chain,
                    map.migrating_to(self.first).unwrap_or("?")
                )),
            };
        }
        if let Some(busy) = map.ranges().iter().find(|range| range.state != RangeState::Stable) {
            return Err(format!(
                "a migration runs already (slots {}-{} from {} to {}); one at a time: wait for it or \
                 abort it with --abort",
                busy.first,
                busy.last,
                busy.chain,
                map.migrating_to(busy.first).unwrap_or("?")
            ));
        }
        let source = self.source(map)?;
        if source == self.target {
            return Ok(Start::Done);
        }
        let state = RangeState::MigratingTo(self.target.clone());
        map.with_range(self.first, self.last, source, state).map(Start::Mark).map_err(|error| error.0)
    }

    /// Where this migration is in `map`.
    pub fn state_in(&self, map: &ShardMap) -> MoveState {
        match self.running(map) {
            Some(range) if map.migrating_to(self.first) == Some(self.target.as_str()) => {
                MoveState::Migrating { source: range.chain.clone() }
            }
            _ if self.source(map) == Ok(self.target.as_str()) => MoveState::Moved,
            _ => MoveState::NotRunning,
        }
    }

    /// Aborting this migration on `map`: the slots back to their chain,
    /// stable.
    pub fn abort(&self, map: &ShardMap) -> Result<ShardMap, String> {
        match self.running(map) {
            Some(range) if map.migrating_to(self.first) == Some(self.target.as_str()) => map
                .with_range(self.first, self.last, &range.chain, RangeState::Stable)
                .map_err(|error| error.0),
            _ if self.source(map) == Ok(self.target.as_str()) => Err(format!(
                "slots {} belong to {} already: the migration finished, nothing to abort",
                self.slots(),
                self.target
            )),
            _ => Err(format!(
                "no migration of slots {} to {} runs; nothing to abort",
                self.slots(),
                self.target
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(text: &str) -> ShardMap {
        ShardMap::parse(format!("chaintable-shards 1\n{text}").as_bytes(), 7).expect("a valid map")
    }

    fn request(slots: &str, target: &str) -> MoveRequest {
        MoveRequest::parse(slots, target).expect("well-formed")
    }

    #[test]
    fn slots_and_chains_are_checked() {
        assert_eq!(request("5", "/b"), MoveRequest { first: 5, last: 5, target: "/b".into() });
        assert_eq!(request("5-9", "/b").slots(), "5-9");
        assert!(MoveRequest::parse("16384", "/b").unwrap_err().contains("0 to 16383"));
        assert!(MoveRequest::parse("9-5", "/b").unwrap_err().contains("after the last"));
        assert!(MoveRequest::parse("x-5", "/b").unwrap_err().contains("\"x\""));
        assert!(MoveRequest::parse("5", "b").unwrap_err().contains("not a chain path"));
    }

    #[test]
    fn a_start_marks_exactly_the_slots_and_is_refused_when_it_cannot_be_one_move() {
        let two = map("0-8191 /a\n8192-16383 /b\n");
        let Ok(Start::Mark(next)) = request("100-199", "/b").start(&two) else { panic!("marked") };
        assert_eq!(next.migrating_to(150), Some("/b"));
        assert_eq!(next.owner(150), "/a", "the source still owns them");
        assert_eq!(next.migrating_to(200), None);
        assert_eq!(request("100-199", "/b").start(&next), Ok(Start::Running), "again: it reports");
        assert!(request("100-199", "/c").start(&next).unwrap_err().contains("another chain"));
        assert!(request("300-399", "/b").start(&next).unwrap_err().contains("one at a time"));
        assert!(request("8000-8300", "/b").start(&two).unwrap_err().contains("more than one chain"));
        assert_eq!(request("9000-9001", "/b").start(&two), Ok(Start::Done));
        assert_eq!(request("9000", "/c").start(&two).map(|_| ()), Ok(()), "a chain with no slots yet");
    }

    #[test]
    fn an_abort_gives_the_slots_back_only_while_they_migrate() {
        let two = map("0-8191 /a\n8192-16383 /b\n");
        let Ok(Start::Mark(marked)) = request("100-199", "/b").start(&two) else { panic!("marked") };
        let aborted = request("100-199", "/b").abort(&marked).expect("aborted");
        assert_eq!((aborted.owner(150), aborted.migrating_to(150)), ("/a", None));
        assert!(request("100-199", "/b").abort(&aborted).unwrap_err().contains("nothing to abort"));
        let flipped = marked.with_range(100, 199, "/b", RangeState::Stable).unwrap();
        assert!(request("100-199", "/b").abort(&flipped).unwrap_err().contains("finished"));
        assert!(request("100-150", "/b").abort(&marked).unwrap_err().contains("no migration"));
        let state = |map: &ShardMap| request("100-199", "/b").state_in(map);
        assert_eq!(state(&marked), MoveState::Migrating { source: "/a".into() });
        assert_eq!((state(&flipped), state(&aborted)), (MoveState::Moved, MoveState::NotRunning));
    }
}
