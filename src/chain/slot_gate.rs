//! What every member does with a moving slot (see [`migration`](super::migration)
//! for the protocol), and what the target chain's head does with the
//! migration stream.
//!
//! - [`SlotGate`]: a member of the source chain refuses a slot from the
//!   pause marker on (a retryable refusal), whatever map version it knows,
//!   and any member refuses a slot the map it knows gives another chain.
//! - [`Importer`]: the target's head takes the stream of the latest
//!   attempt only, starting the slots over on a new one, and merges the
//!   clients' exactly-once records.

use super::injected::{Check, enforced};
use super::migration::Span;
use crate::proto::{ClientRecord, Write};
use crate::shard::map::ShardMap;

/// A pause or resume marker of a span of slots: an ordinary write of the
/// source chain, applied by every member in sequence order. A pause names
/// the driver's attempt (its claimed map version): it holds only for a
/// member whose map is no newer, since any newer map either gives the
/// slots away (refused by the map) or shows a later claim or an abort,
/// after which that attempt's flip can never land.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Pause { span: Span, attempt: u64 },
    Resume(Span),
}

/// Pause markers are keys of the table under this prefix (no client key
/// may start with a NUL), so they replicate, commit and go in snapshots
/// like any write: `<prefix><first>-<last>` holding the attempt.
pub const MARKER_PREFIX: &str = "\u{0}paused ";

/// The marker key of `span`.
pub fn marker_key(span: Span) -> String {
    format!("{MARKER_PREFIX}{}-{}", span.first, span.last)
}

/// The pause a marker key and its value stand for; `None` if they are not
/// a marker's.
pub fn parse_marker(key: &str, value: &[u8]) -> Option<(Span, u64)> {
    let (first, last) = key.strip_prefix(MARKER_PREFIX)?.split_once('-')?;
    let attempt = std::str::from_utf8(value).ok()?.parse().ok()?;
    Some((Span { first: first.parse().ok()?, last: last.parse().ok()? }, attempt))
}

/// Whether a member may answer a key of a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Serve,
    /// Paused by a migration: the client retries after a moment.
    Paused,
    /// The map this member knows gives the slot to another chain.
    Moved {
        chain: String,
        version: u64,
    },
}

/// A member's paused spans, as its history left them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotGate {
    /// Spans paused and not resumed, with their attempts, in the order paused.
    paused: Vec<(Span, u64)>,
    /// A deliberate bug (`--inject-bug`).
    bug: Option<Check>,
}

impl SlotGate {
    pub fn new(bug: Option<Check>) -> SlotGate {
        SlotGate { paused: Vec::new(), bug }
    }

    /// Applies a marker of our chain's history.
    pub fn apply(&mut self, marker: Marker) {
        match marker {
            Marker::Pause { span, attempt } => {
                self.paused.retain(|(paused, _)| *paused != span);
                self.paused.push((span, attempt));
            }
            Marker::Resume(span) => self.paused.retain(|(paused, _)| *paused != span),
        }
    }

    /// The spans paused, with their attempts.
    pub fn paused(&self) -> &[(Span, u64)] {
        &self.paused
    }

    /// Whether `slot` is paused for a member that knows map `version`
    /// (`None`: no map known yet).
    pub fn is_paused(&self, slot: u16, version: Option<u64>) -> bool {
        self.paused
            .iter()
            .any(|(span, attempt)| span.contains(slot) && version.is_none_or(|version| version <= *attempt))
    }

    /// Whether chain `own` may answer `slot` now: the map it knows gives it
    /// the slot, and no migration paused the slot in its history.
    pub fn admit(&self, map: Option<&ShardMap>, own: &str, slot: u16) -> Admission {
        if let Some(map) = map
            && map.owner(slot) != own
        {
            return Admission::Moved { chain: map.owner(slot).to_owned(), version: map.version };
        }
        if enforced(self.bug, Check::ServeAfterFlip) && self.is_paused(slot, map.map(|map| map.version)) {
            return Admission::Paused;
        }
        Admission::Serve
    }

    /// Whether the head may delete a key of `slot` held here: the map
    /// gives the slot to another chain and does not migrate it here (a
    /// finished migration away, or an aborted one to us).
    pub fn deletable(map: &ShardMap, own: &str, slot: u16) -> bool {
        map.owner(slot) != own && map.migrating_to(slot) != Some(own)
    }
}

/// The keys a source head deletes after its slots flipped away in map
/// version `flipped` (step 6 of `migration`), in batches of ordinary writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MovedAway {
    pub flipped: u64,
    /// A deliberate bug (`--inject-bug`).
    pub bug: Option<Check>,
}

/// What the head does with one such key now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    Delete,
    /// Not yet: the map it knows is older than the flip (and still gives
    /// us the slot), or the slot is coming back to us.
    Wait,
    /// Never: the slot is ours again (the import that brought it back
    /// replaced our copy first).
    Keep,
}

impl MovedAway {
    /// What to do with a key of `slot` of chain `own`, given the map known
    /// and the import our chain runs (its slots and attempt), if any. The
    /// head decides this and sequences the deletion without an import frame
    /// in between: an import of the slot begun after the flip (a later
    /// migration back to us) writes the new owner's copies, which a
    /// deletion would lose.
    pub fn deletion(&self, map: &ShardMap, own: &str, slot: u16, importing: Option<(Span, u64)>) -> Deletion {
        if map.version < self.flipped {
            return Deletion::Wait;
        }
        if map.owner(slot) == own {
            return Deletion::Keep;
        }
        let imported = importing.is_some_and(|(span, attempt)| span.contains(slot) && attempt > self.flipped);
        if (imported && enforced(self.bug, Check::DeleteOverImport)) || !SlotGate::deletable(map, own, slot) {
            return Deletion::Wait;
        }
        Deletion::Delete
    }
}

/// What the target's head does with a frame of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Import {
    /// A frame of an attempt older than one seen: refused, the link closed.
    Refuse,
    /// The first frame of a newer attempt: first delete every key of the
    /// slots (an older attempt's copy), then take it.
    StartOver,
    /// A frame of the current attempt: sequence it as a write of ours.
    Take,
}

/// The target head's side of one migration.
#[derive(Debug)]
pub struct Importer {
    /// The slots coming in.
    span: Span,
    /// The newest attempt seen (the driver's claimed map version).
    attempt: u64,
    /// A deliberate bug (`--inject-bug`).
    bug: Option<Check>,
}

impl Importer {
    pub fn new(span: Span, bug: Option<Check>) -> Importer {
        Importer { span, attempt: 0, bug }
    }

    pub fn span(&self) -> Span {
        self.span
    }

    /// The newest attempt seen (0: none yet).
    pub fn attempt(&self) -> u64 {
        self.attempt
    }

    /// A frame of `attempt` arrived.
    pub fn frame(&mut self, attempt: u64) -> Import {
        match attempt.cmp(&self.attempt) {
            std::cmp::Ordering::Less => Import::Refuse,
            std::cmp::Ordering::Equal => Import::Take,
            std::cmp::Ordering::Greater => {
                self.attempt = attempt;
                Import::StartOver
            }
        }
    }

    /// The record to keep for a client whose record came in the snapshot,
    /// given the one held here, or `None` to keep that: the later request
    /// wins (a client has one write in flight and its request ids only
    /// grow), stamped with `sequence`, the write of ours that imported it,
    /// so that a retry answered from it waits for a commit of ours.
    pub fn merged(
        &self,
        held: Option<&ClientRecord>,
        incoming: &ClientRecord,
        sequence: u64,
    ) -> Option<ClientRecord> {
        if !enforced(self.bug, Check::ForgetDedupOnMove) {
            return None;
        }
        if held.is_some_and(|held| held.request_id >= incoming.request_id) {
            return None;
        }
        let mut record = incoming.clone();
        record.sequence = sequence;
        Some(record)
    }

    /// A streamed write as our head sequences it: its client and request
    /// id come along, so its client's record here names it.
    pub fn write(&self, mut write: Write) -> Write {
        if !enforced(self.bug, Check::ForgetDedupOnMove) {
            (write.client_id, write.request_id) = (0, 0);
        }
        write
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::clients::{ClientRecords, Seen, record};

    const SPAN: Span = Span { first: 100, last: 199 };

    fn map(text: &str, version: u64) -> ShardMap {
        ShardMap::parse(format!("chaintable-shards 1\n{text}").as_bytes(), version).expect("a valid map")
    }

    #[test]
    fn markers_are_keys_that_name_their_span_and_attempt() {
        let key = marker_key(SPAN);
        assert_eq!(parse_marker(&key, b"42"), Some((SPAN, 42)));
        assert_eq!(parse_marker(&key, b"x"), None);
        assert_eq!(parse_marker("paused 100-199", b"42"), None, "a client's key is no marker");
    }

    #[test]
    fn a_paused_slot_is_refused_until_resumed_whatever_the_map_says() {
        let stale = map("0-16383 /a migrating-to /b\n", 3);
        let mut gate = SlotGate::new(None);
        assert_eq!(gate.admit(Some(&stale), "/a", 150), Admission::Serve);
        gate.apply(Marker::Pause { span: SPAN, attempt: 2 });
        gate.apply(Marker::Pause { span: SPAN, attempt: 3 });
        assert_eq!(gate.paused(), [(SPAN, 3)]);
        assert_eq!(gate.admit(Some(&stale), "/a", 150), Admission::Paused);
        let reclaimed = map("0-16383 /a migrating-to /b\n", 4);
        assert_eq!(gate.admit(Some(&reclaimed), "/a", 150), Admission::Serve, "a newer claim ends it");
        assert!(gate.is_paused(150, None), "no map known: paused");
        assert_eq!(gate.admit(Some(&stale), "/a", 99), Admission::Serve, "only the span");
        gate.apply(Marker::Resume(SPAN));
        assert_eq!(gate.admit(Some(&stale), "/a", 150), Admission::Serve);
        let flipped = map("0-99 /a\n100-199 /b\n200-16383 /a\n", 4);
        let moved = Admission::Moved { chain: "/b".into(), version: 4 };
        assert_eq!(gate.admit(Some(&flipped), "/a", 150), moved);
        assert_eq!(gate.admit(None, "/a", 150), Admission::Serve, "no map: one chain");
    }

    /// The rule removed (`serve-after-flip`): a member that has not read
    /// the flip yet answers a slot its head paused.
    #[test]
    fn serve_after_flip_answers_a_paused_slot() {
        let stale = map("0-16383 /a migrating-to /b\n", 3);
        let mut gate = SlotGate::new(Some(Check::ServeAfterFlip));
        gate.apply(Marker::Pause { span: SPAN, attempt: 3 });
        assert_eq!(gate.admit(Some(&stale), "/a", 150), Admission::Serve);
    }

    #[test]
    fn keys_are_deleted_only_where_no_migration_brings_them() {
        let migrating = map("0-99 /a\n100-199 /a migrating-to /b\n200-16383 /a\n", 3);
        assert!(!SlotGate::deletable(&migrating, "/b", 150), "the target keeps what streams in");
        assert!(SlotGate::deletable(&migrating, "/b", 50), "an aborted migration's copy goes");
        assert!(!SlotGate::deletable(&migrating, "/a", 150), "the source keeps what it owns");
        let flipped = map("0-99 /a\n100-199 /b\n200-16383 /a\n", 4);
        assert!(SlotGate::deletable(&flipped, "/a", 150), "the source deletes what moved");
    }

    #[test]
    fn moved_keys_are_deleted_once_the_flip_is_known_and_not_over_an_import() {
        let moved = MovedAway { flipped: 4, bug: None };
        let before = map("0-16383 /a migrating-to /b\n", 3);
        assert_eq!(moved.deletion(&before, "/a", 150, None), Deletion::Wait, "a map older than the flip");
        let flipped = map("0-99 /a\n100-199 /b\n200-16383 /a\n", 4);
        assert_eq!(moved.deletion(&flipped, "/a", 150, None), Deletion::Delete);
        assert_eq!(
            moved.deletion(&flipped, "/a", 150, Some((SPAN, 4))),
            Deletion::Delete,
            "our own old import"
        );
        let back = map("0-99 /a\n100-199 /b migrating-to /a\n200-16383 /a\n", 6);
        assert_eq!(moved.deletion(&back, "/a", 150, None), Deletion::Wait, "coming back");
        let returned = map("0-16383 /a\n", 8);
        assert_eq!(moved.deletion(&returned, "/a", 150, None), Deletion::Keep, "ours again");
        // A map that shows the slot /b's and stable, known here while /b's
        // head already claimed a migration back (version 7) and streams it.
        let known = map("0-99 /a\n100-199 /b\n200-16383 /a\n", 5);
        assert_eq!(moved.deletion(&known, "/a", 150, Some((SPAN, 7))), Deletion::Wait);
        let bug = MovedAway { flipped: 4, bug: Some(Check::DeleteOverImport) };
        assert_eq!(bug.deletion(&known, "/a", 150, Some((SPAN, 7))), Deletion::Delete, "delete-over-import");
    }

    #[test]
    fn only_the_newest_attempt_is_taken_and_a_new_one_starts_over() {
        let mut importer = Importer::new(SPAN, None);
        assert_eq!(importer.span(), SPAN);
        assert_eq!(importer.frame(5), Import::StartOver);
        assert_eq!(importer.frame(5), Import::Take);
        assert_eq!(importer.frame(4), Import::Refuse);
        assert_eq!(importer.frame(7), Import::StartOver);
        assert_eq!(importer.frame(5), Import::Refuse);
        assert_eq!(importer.attempt(), 7);
    }

    /// A write applied at the source whose answer was lost is retried at
    /// the target after the flip: answered from the moved record, waiting
    /// for the target's import write; with `forget-dedup-on-move` it would
    /// be applied again.
    #[test]
    fn a_retry_after_the_move_is_answered_from_the_moved_record() {
        for (bug, expected) in [
            (None, Seen::Retry { sequence: 40, found: true, number: 9 }),
            (Some(Check::ForgetDedupOnMove), Seen::New),
        ] {
            let importer = Importer::new(SPAN, bug);
            let mut target = ClientRecords::new(100);
            target.remember(record(7, 2, 30, false, 0));
            target.remember(record(8, 5, 31, false, 0));
            for incoming in [record(7, 3, 1000, true, 9), record(8, 4, 1001, false, 0)] {
                let held = target.all().into_iter().find(|held| held.client_id == incoming.client_id);
                if let Some(merged) = importer.merged(held.as_ref(), &incoming, 40) {
                    target.remember(merged);
                }
            }
            assert_eq!(target.seen(7, 3), expected, "{bug:?}");
            assert_eq!(
                target.seen(8, 5),
                Seen::Retry { sequence: 31, found: false, number: 0 },
                "newer kept"
            );
            let mut write = Write::new();
            (write.client_id, write.request_id) = (7, 4);
            let taken = importer.write(write);
            assert_eq!((taken.client_id, taken.request_id) == (7, 4), bug.is_none());
        }
    }
}
