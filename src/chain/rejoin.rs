//! A member that restarted on its disk (or was fenced and kept its table)
//! rejoins behind the chain's tail by receiving only the writes it lacks,
//! instead of a state transfer of the whole table.
//!
//! The joiner's welcome offers its history ([`RejoinOffer`]: its table's
//! generation and the identity of its last write, [`WriteId`]); the
//! predecessor decides ([`ChainNode::rejoin_writes`]) and, when it may,
//! resends the writes after the joiner's last from the ones it kept
//! ([`Recent`]), marking the first frame `resumed_after`; the joiner then
//! follows the stream as a joiner that finished a state transfer does
//! ([`ChainNode::rejoin_resumed`]).
//!
//! # Why resuming is safe only when the last writes match
//!
//! Resuming after write `L` is right exactly when the joiner's table is
//! ours as of `L`: then the writes after `L` make it a prefix of ours, as a
//! snapshot at `L` would. Both tables are functions of their histories
//! (the writes applied, in order, from the start of the generation), so it
//! is enough that the two histories agree up to `L`, and it is enough to
//! compare one write:
//!
//! - One head sequences in a view, and sequence numbers rise within a
//!   view, so the view epoch in which the head sequenced a write
//!   (`Write.origin_epoch`, never changed on the way down) and its sequence
//!   number name one write.
//! - A server applies a write only right after the one before it, from its
//!   current predecessor, whose history up to there is a prefix of the
//!   head's; a snapshot copies a prefix of a history with the name of its
//!   last write. So any two servers that hold the write named (`L`,
//!   origin) hold the history of the head that sequenced it, up to `L`.
//!
//! What this guards against: a recovered member may hold writes beyond the
//! commit point that the chain never committed and later gave to other
//! writes (a head that applied and synced a write, then crashed before
//! forwarding it: the next head sequences a different write under the same
//! number, in a newer view). Its write `L` then has another origin than
//! ours, and it gets a snapshot, which replaces those writes (they were
//! never acknowledged: the chain committed the others). A joiner that holds
//! more writes than we do gets a snapshot too, as does one whose write `L`
//! we no longer keep. The generation must match as well: a restart that
//! may have lost writes begins a new generation, whose history is not the
//! old one's after its start. The digest of the write's contents guards
//! against view epochs reused when the chain node itself was deleted and
//! made again in ZooKeeper (the epochs start over there).

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};

use log::info;

use super::effects::Effects;
use super::injected::Check;
use super::lifecycle::Lifecycle;
use super::node::{ChainNode, Refusal};
use crate::limits::{REJOIN_WRITES_BYTES_MAX, REJOIN_WRITES_MAX};
use crate::proto::{ErrorCode, SnapshotChunk, Write};

/// Names one write of a chain's history (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteId {
    /// `Write.origin_epoch`: the view in which the head sequenced it.
    pub origin: u64,
    /// A hash of what it does (every field but the epochs). `DefaultHasher`
    /// is the same in every process of one build; a server of another build
    /// may hash differently, which costs only a snapshot.
    pub digest: u64,
}

impl WriteId {
    /// The name of `write`; `None` when it has no origin (written by a
    /// server before `origin_epoch` existed).
    pub fn of(write: &Write) -> Option<WriteId> {
        if write.origin_epoch == 0 {
            return None;
        }
        let mut hasher = DefaultHasher::new();
        (write.sequence, &write.key, &write.value, write.client_id, write.request_id).hash(&mut hasher);
        (write.found, write.number, write.deadline_ms, write.declined, write.expired).hash(&mut hasher);
        for entry in &write.more {
            (&entry.key, &entry.value).hash(&mut hasher);
        }
        Some(WriteId { origin: write.origin_epoch, digest: hasher.finish() })
    }

    /// The name a snapshot chunk gives its last write, if any.
    pub fn of_chunk(chunk: &SnapshotChunk) -> Option<WriteId> {
        (chunk.last_origin_epoch != 0)
            .then_some(WriteId { origin: chunk.last_origin_epoch, digest: chunk.last_digest })
    }
}

/// What a joiner offers in its welcome instead of taking a snapshot: its
/// table is a complete history of `generation` whose last write (the
/// welcome's `last_applied`) is `last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejoinOffer {
    pub generation: u64,
    pub last: WriteId,
}

/// The writes a durable member applied last, in order, the newest being its
/// last applied: bounded by [`REJOIN_WRITES_MAX`] and
/// [`REJOIN_WRITES_BYTES_MAX`]; emptied when its history starts over.
#[derive(Default)]
pub struct Recent {
    writes: VecDeque<Write>,
    bytes: u64,
}

impl Recent {
    fn push(&mut self, write: Write) {
        if let Some(last) = self.writes.back() {
            assert_eq!(write.sequence, last.sequence + 1, "kept writes follow each other");
        }
        self.bytes += write_bytes(&write);
        self.writes.push_back(write);
        while self.writes.len() > REJOIN_WRITES_MAX || self.bytes > REJOIN_WRITES_BYTES_MAX {
            let Some(oldest) = self.writes.pop_front() else { break };
            self.bytes -= write_bytes(&oldest);
        }
    }

    fn clear(&mut self) {
        self.writes.clear();
        self.bytes = 0;
    }

    /// The kept write `sequence`, if kept.
    fn get(&self, sequence: u64) -> Option<&Write> {
        let first = self.writes.front()?.sequence;
        self.writes.get(usize::try_from(sequence.checked_sub(first)?).ok()?)
    }

    /// The writes after `sequence`, if every one of them up to the newest is
    /// kept.
    fn after(&self, sequence: u64) -> Option<Vec<Write>> {
        let Some(first) = self.writes.front().map(|write| write.sequence) else {
            return Some(Vec::new());
        };
        let skip = usize::try_from((sequence + 1).checked_sub(first)?).ok()?;
        Some(self.writes.iter().skip(skip).cloned().collect())
    }
}

fn write_bytes(write: &Write) -> u64 {
    let more: usize = write.more.iter().map(|entry| entry.key.len() + entry.value.len()).sum();
    (write.key.len() + write.value.as_ref().map_or(0, Vec::len) + more) as u64
}

impl ChainNode {
    /// A write was applied (or replayed) here: it is our last, and kept for
    /// a rejoining successor. Durable members only.
    pub(super) fn note_written(&mut self, write: &Write) {
        self.last_written = WriteId::of(write);
        self.recent.push(write.clone());
    }

    /// A snapshot's last chunk was installed (or replayed): its last write
    /// is ours, and none before it is kept.
    pub(super) fn note_installed(&mut self, chunk: &SnapshotChunk) {
        self.recent.clear();
        self.last_written = WriteId::of_chunk(chunk);
    }

    /// Our table's history started over: nothing of it is known.
    pub(super) fn forget_written(&mut self) {
        self.recent.clear();
        self.last_written = None;
    }

    /// The name of our last write, for a snapshot of our table.
    pub(super) fn last_written(&self) -> Option<WriteId> {
        self.last_written
    }

    /// What we offer a predecessor's link instead of taking a snapshot: a
    /// joiner whose table is a complete history (recovered from our disk,
    /// or kept through fencing) with a known last write.
    pub(super) fn rejoin_offer(&self) -> Option<RejoinOffer> {
        let complete = self.lifecycle == Lifecycle::Joining && self.recoverable_history().is_some();
        let last = self.last_written.filter(|_| complete && self.durable && self.generation != 0)?;
        Some(RejoinOffer { generation: self.generation, last })
    }

    /// The predecessor's decision on a joiner that applied up to `applied`
    /// and offers `offer`: the writes it lacks, when its history up to
    /// `applied` is ours (see the module doc), else `None` (a snapshot).
    pub fn rejoin_writes(&self, applied: u64, offer: &RejoinOffer) -> Option<Vec<Write>> {
        if !self.durable || !self.may_replicate() || offer.generation != self.generation {
            return None;
        }
        if applied == 0 || applied > self.last_applied {
            return None;
        }
        let ours = if applied == self.last_applied {
            self.last_written
        } else {
            self.recent.get(applied).and_then(WriteId::of)
        };
        if self.enforces(Check::RejoinIdentity) && ours != Some(offer.last) {
            return None;
        }
        self.recent
            .after(applied)
            .filter(|writes| writes.last().map_or(applied, |write| write.sequence) == self.last_applied)
    }

    /// The first frame of a link from `sender` resumes our history after
    /// write `after`: we follow the stream from here as a joiner whose
    /// state transfer is done. Refused unless we offered exactly that.
    pub fn rejoin_resumed(
        &mut self,
        sender: &str,
        link: u64,
        after: u64,
        effects: &mut impl Effects,
    ) -> Result<(), Refusal> {
        self.check_link(sender, link)?;
        if self.rejoin_offer().is_none() || after != self.last_applied {
            return Err(Refusal::new(
                ErrorCode::ERR_INTERNAL,
                format!(
                    "a resume after write {after}; we offered none there (we hold {})",
                    self.last_applied
                ),
            ));
        }
        info!(
            "{}: {sender} resumes our own table after write {after}, without a state transfer",
            self.identity()
        );
        self.lifecycle = Lifecycle::caught_up();
        // As after a state transfer: the commit point is learned again from
        // this chain (our old one would be acked upstream as if it were).
        self.committed = 0;
        self.successor_committed = 0;
        self.rejoins_resumed += 1;
        self.publish_commit(effects);
        Ok(())
    }

    /// Times we rejoined by resuming our own table (`stats`' `rejoins_resumed`).
    pub fn rejoins_resumed(&self) -> u64 {
        self.rejoins_resumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(sequence: u64) -> Write {
        let mut write = Write::numbered(sequence);
        write.origin_epoch = 3;
        write.value = Some(vec![0; 10]);
        write
    }

    #[test]
    fn recent_writes_are_bounded_and_found_by_sequence() {
        let mut recent = Recent::default();
        assert_eq!(recent.after(5), Some(Vec::new()), "nothing kept: nothing after");
        for sequence in 1..=(REJOIN_WRITES_MAX as u64 + 10) {
            recent.push(numbered(sequence));
        }
        assert_eq!(recent.writes.len(), REJOIN_WRITES_MAX);
        assert!(recent.get(10).is_none(), "dropped");
        assert_eq!(recent.get(11).map(|write| write.sequence), Some(11));
        assert!(recent.after(9).is_none(), "write 10 is gone");
        let after = recent.after(REJOIN_WRITES_MAX as u64 + 8).expect("kept");
        assert_eq!(after.iter().map(|write| write.sequence).collect::<Vec<_>>(), [16_393, 16_394]);
        recent.clear();
        assert_eq!(recent.bytes, 0);
    }

    #[test]
    fn a_write_is_named_by_its_origin_and_contents() {
        let write = numbered(4);
        let id = WriteId::of(&write).expect("an origin");
        let mut raised = write.clone();
        raised.epoch = 9;
        assert_eq!(WriteId::of(&raised), Some(id), "the epoch raised on the way down does not count");
        let mut other = write.clone();
        other.origin_epoch = 4;
        assert_ne!(WriteId::of(&other), Some(id));
        let mut changed = write.clone();
        changed.key = "x".into();
        assert_ne!(WriteId::of(&changed), Some(id));
        assert_eq!(WriteId::of(&Write::numbered(4)), None, "no origin: unknown");
    }
}
