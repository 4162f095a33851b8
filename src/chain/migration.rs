//! Online slot migration: the decisions of the source chain's head, which
//! drives a migration, as a pure state machine (ZooKeeper's answers, the
//! time and the links' progress in; [`Step`]s out). What every member does
//! with a moving slot is in [`slot_gate`](super::slot_gate); what the
//! target's head does with the stream is its [`Importer`](super::slot_gate::Importer).
//!
//! # The protocol
//!
//! Slots `S` move from chain `A` to chain `B`. Everything that decides who
//! may answer `S` is ordered either by ZooKeeper (the map node, one
//! version-checked set at a time) or by `A`'s head (which orders every
//! write to `S`); nothing depends on a timer or on two clocks agreeing.
//!
//! 1. **Start** (the `migrate` command): one version-checked set of the map
//!    marks `S` as `A migrating-to B`. The map *is* the migration's state:
//!    whoever runs the command again, or whichever member of `A` becomes
//!    head, reads it there. `A` still owns and serves `S`; `B` refuses it.
//! 2. **Claim** (`A`'s head, the driver): it rewrites the map unchanged at
//!    the version it read ([`Step::Claim`]). The new version is the
//!    migration's *attempt*: every frame of the stream carries it, `B`'s
//!    head takes only the highest attempt it saw and starts `S` over (clears
//!    it) on a new one. The claim also fences every earlier driver (a head
//!    that was removed but still runs): a flip is version-checked at the
//!    claimed version, so after our claim succeeded no older driver's flip
//!    can land, and before it we had no right to resume anything.
//! 3. **Stream**: a snapshot of `S`'s keys taken at one sequence number of
//!    `A`'s head, with *every* client record `A` holds, then every later
//!    write to `S` once it is committed in `A`, in sequence order, to `B`'s
//!    head, which sequences each as an ordinary write of `B`'s (so it is
//!    replicated and committed down `B` like any other) and acks it once
//!    `B` committed it. Only committed writes go, so what `B` holds of `S`
//!    is always a prefix of what `A` committed; a break of the link (either
//!    head changed) starts a new attempt with a fresh snapshot.
//! 4. **Pause**: once the snapshot is out and `B` acked all but a few
//!    items, `A`'s head sequences a *pause marker* for `S` in its own chain
//!    ([`Step::Pause`]). It is an ordinary write: every member of `A`
//!    applies it in order, and from it on refuses reads and writes of `S`
//!    with a retryable error (clients back off and retry), as long as the
//!    map it knows is no newer than the attempt the marker names (a newer
//!    map gives the slots away, or shows a later claim or an abort, after
//!    which this attempt's flip can never land). A new head inherits it
//!    with the history.
//! 5. **Drain and flip**: once the marker is committed in `A` (so every
//!    write to `S` before it is committed and was forwarded, and no member
//!    of `A` will answer `S` again while paused) and `B` acked every item
//!    sent, the driver flips the map, version-checked at its attempt:
//!    `S` becomes `B`'s ([`Step::Flip`]). A drain longer than
//!    [`PAUSE_MS_MAX`] gives up the pause (a resume marker) and streams on;
//!    that is safe only because no flip was asked yet.
//! 6. **After the flip** `A`'s members refuse `S` for good (the pause marker
//!    stays until the map they know says `B`, and then the map does), and
//!    `A`'s head deletes `S`'s keys in batches of ordinary writes. `B`'s
//!    members serve `S` once the map they know says so; every write `A`
//!    acknowledged on `S` is committed in `B` by then.
//!
//! **Crashes.** The state is the map plus `A`'s history (the pause marker):
//! - `A`'s head dies: the next head reads the map. `B` owns `S`: the
//!   migration is over (the marker keeps `S` refused until its map agrees).
//!   `S` is still migrating: it claims (fencing the old driver), resumes `S`
//!   if its history paused it, and streams again from a new snapshot. `S`
//!   is `A`'s and stable (the command aborted it): it resumes `S`.
//! - `A`'s tail or a middle dies: the chain repairs itself; the marker and
//!   the commit point survive in every member that becomes tail.
//! - `B`'s head dies: the link breaks, the driver claims again and
//!   restreams; `B`'s new head clears `S` on the new attempt. `B`'s tail
//!   or middle: `B` repairs itself; acks come only for writes `B` committed.
//! - The command's client dies: the map says "migrating"; running the
//!   command again resumes (nothing to do: `A`'s head drives) or aborts
//!   (`--abort`: one version-checked set back to `A` stable; an in-flight
//!   flip at an older version then fails, and `A`'s head resumes `S` only
//!   after it *read* a map in which `S` is `A`'s and stable).
//! - A flip whose answer was lost: `S` stays paused, the driver reads the
//!   map; the same version means the flip did not happen and it asks again
//!   (version-checked: at most one applies), `B` owning `S` means it did.
//!   `A` never resumes `S` on a timer once a flip was asked.
//!
//! **Exactly once.** Client records are per client, not per key, so the
//! snapshot carries every record `A` holds; `B` keeps, per client, the one
//! with the higher request id (a client has one write in flight, and
//! request ids only grow), stamped with the sequence number of `B`'s write
//! that imported it (so a retry at `B` waits for a commit of `B`'s). Each
//! streamed write carries its client and request id like any write. So a
//! write applied in `A`, whose answer was lost, retried at `B` after the
//! flip, is answered from its record and not applied again.
//!
//! **Linearizable across the flip.** At every moment at most one chain
//! answers `S`: `B` only after the flip; `A` only before the pause marker
//! reached the member asked, and the flip waits for the marker's commit (a
//! new tail or head of `A` holds every committed write, the marker too).
//! Every write `A` acknowledged on `S` precedes the marker, so it is
//! committed in `B` before the flip: the first read at `B` sees it.

use super::injected::{Check, enforced};
use crate::shard::map::{RangeState, ShardMap};

/// Items `B` may still owe acks for when `A`'s head pauses `S`: the pause
/// lasts about as long as these take to commit in `B`, a few milliseconds.
pub const PAUSE_BACKLOG_ITEMS: u64 = 64;

/// A pause that has not drained in this long is given up (writes to `S`
/// resume, the stream goes on, and the driver pauses again once caught up):
/// clients retry a paused slot, and a target that is slow or being
/// repaired must not stall them for longer.
pub const PAUSE_MS_MAX: u64 = 500;

/// Slots `first..=last` (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub first: u16,
    pub last: u16,
}

impl Span {
    pub fn contains(self, slot: u16) -> bool {
        (self.first..=self.last).contains(&slot)
    }

    pub fn overlaps(self, other: Span) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// What a reading of the map says of the moving slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapSays {
    /// Every slot is still the source's, migrating to the target.
    Migrating { version: u64 },
    /// Every slot is the source's and stable: the migration was aborted.
    Source { version: u64 },
    /// Some slot is no longer the source's: it flipped (to the target, or
    /// on to another chain since). The source never answers them again.
    Moved { version: u64 },
    /// Neither: the slots are the source's but in different states (an
    /// operator's hand edit). Nothing is decided until the map settles.
    Mixed { version: u64 },
}

impl MapSays {
    /// What `map` says of `span` moving from `source` to `target`.
    pub fn of(map: &ShardMap, span: Span, source: &str, target: &str) -> MapSays {
        let version = map.version;
        let mut migrating = 0usize;
        let mut stable = 0usize;
        for range in
            map.ranges().iter().filter(|range| span.overlaps(Span { first: range.first, last: range.last }))
        {
            if range.chain != source {
                return MapSays::Moved { version };
            }
            match &range.state {
                RangeState::MigratingTo(to) if to == target => migrating += 1,
                RangeState::MigratingTo(_) => return MapSays::Mixed { version },
                RangeState::Stable => stable += 1,
            }
        }
        match (migrating, stable) {
            (_, 0) => MapSays::Migrating { version },
            (0, _) => MapSays::Source { version },
            _ => MapSays::Mixed { version },
        }
    }
}

/// ZooKeeper's answer to a version-checked set of the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZkAnswer {
    /// Set: the map is at this version now.
    Done { version: u64 },
    /// The map was not at the version given: someone changed it first.
    BadVersion,
    /// No answer (timeout, connection lost): it may or may not have been set.
    Unknown,
}

/// What the driver asks its host to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Set the map, unchanged, if it is at `version`; answer with
    /// [`Driver::claim_answered`].
    Claim { version: u64 },
    /// Read the map and tell [`Driver::map_read`].
    ReadMap,
    /// Open a link to the target's head for `attempt`, send it a snapshot
    /// of the slots with every client record this chain holds, then each
    /// committed write to the slots in sequence order.
    Stream { attempt: u64 },
    /// Sequence a pause marker of the slots for `attempt` in our chain
    /// and report its sequence number ([`Driver::paused_at`]).
    Pause { attempt: u64 },
    /// Sequence a resume marker of the slots in our chain.
    Resume,
    /// Set the map to the target owning the slots if it is at `base`;
    /// answer with [`Driver::flip_answered`].
    Flip { base: u64 },
    /// The slots are gone from this chain since map `version`: drop the
    /// link and delete their keys in batches.
    Finished { version: u64 },
    /// The migration ended without moving anything (aborted).
    Abandoned,
}

/// Where the driver is (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a reading of the map.
    Reading,
    /// Waiting for the answer to a claim at this version.
    Claiming { version: u64 },
    /// Sending the snapshot and the writes of this attempt.
    Streaming { attempt: u64 },
    /// Paused; waiting for the marker's commit here and the target's acks.
    /// `marker` is 0 until the host reported its sequence number.
    Draining { attempt: u64, marker: u64, since_ms: u64 },
    /// A flip at `base` was asked: the slots stay paused until a reading
    /// or an answer says how it went.
    Flipping { base: u64 },
    /// Over: the slots flipped.
    Finished,
    /// Over: the migration was aborted.
    Abandoned,
}

/// The driver of one migration, at the source chain's head.
#[derive(Debug)]
pub struct Driver {
    /// The moving slots.
    span: Span,
    phase: Phase,
    /// Our chain's history holds a pause marker of the slots not followed
    /// by a resume (inherited from a former head, or ours).
    paused: bool,
    /// Items of this attempt sent to the target: snapshot chunks and writes.
    sent: u64,
    /// Items of this attempt the target committed and acked.
    acked: u64,
    /// The whole snapshot of this attempt is sent.
    snapshot_sent: bool,
    /// Every write to the slots up to this sequence number was forwarded.
    forwarded_through: u64,
    /// Our chain's commit point.
    committed: u64,
    /// A deliberate bug (`--inject-bug`).
    bug: Option<Check>,
}

impl Driver {
    /// A head that found `span` migrating in the map at `version` starts
    /// (or takes over) driving it; `paused` says whether its history holds
    /// the slots paused.
    pub fn start(span: Span, version: u64, paused: bool, bug: Option<Check>) -> (Driver, Vec<Step>) {
        assert!(span.first <= span.last, "a span of slots is not empty");
        let driver = Driver {
            span,
            phase: Phase::Claiming { version },
            paused,
            sent: 0,
            acked: 0,
            snapshot_sent: false,
            forwarded_through: 0,
            committed: 0,
            bug,
        };
        (driver, vec![Step::Claim { version }])
    }

    pub fn span(&self) -> Span {
        self.span
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether writes to the slots are refused at the head now.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Whether the migration is over, one way or the other.
    pub fn over(&self) -> bool {
        matches!(self.phase, Phase::Finished | Phase::Abandoned)
    }

    fn requires(&self, check: Check, holds: bool) -> bool {
        holds || !enforced(self.bug, check)
    }

    /// The answer to our claim.
    pub fn claim_answered(&mut self, answer: ZkAnswer) -> Vec<Step> {
        if !matches!(self.phase, Phase::Claiming { .. }) {
            return Vec::new();
        }
        match answer {
            ZkAnswer::Done { version } => self.stream(version),
            ZkAnswer::BadVersion | ZkAnswer::Unknown => {
                self.phase = Phase::Reading;
                vec![Step::ReadMap]
            }
        }
    }

    /// A claim at `attempt` succeeded: no flip can land but ours from now
    /// on, so a pause we inherited may end; stream afresh.
    fn stream(&mut self, attempt: u64) -> Vec<Step> {
        let mut steps = Vec::new();
        if std::mem::replace(&mut self.paused, false) {
            steps.push(Step::Resume);
        }
        self.phase = Phase::Streaming { attempt };
        (self.sent, self.acked, self.snapshot_sent) = (0, 0, false);
        steps.push(Step::Stream { attempt });
        steps
    }

    /// A reading of the map (after a failed claim or flip, or whenever the
    /// map changed while we drive).
    pub fn map_read(&mut self, says: MapSays) -> Vec<Step> {
        match (says, self.phase) {
            (_, Phase::Finished | Phase::Abandoned) => Vec::new(),
            (MapSays::Moved { version }, _) => {
                self.phase = Phase::Finished;
                vec![Step::Finished { version }]
            }
            (MapSays::Source { .. }, _) => {
                self.phase = Phase::Abandoned;
                let resume = std::mem::replace(&mut self.paused, false).then_some(Step::Resume);
                resume.into_iter().chain([Step::Abandoned]).collect()
            }
            (MapSays::Mixed { .. }, _) => {
                self.phase = Phase::Reading;
                Vec::new()
            }
            (MapSays::Migrating { version }, Phase::Flipping { base }) if version == base => {
                vec![Step::Flip { base }]
            }
            (
                MapSays::Migrating { version },
                Phase::Streaming { attempt } | Phase::Draining { attempt, .. },
            ) if version == attempt => Vec::new(),
            (MapSays::Migrating { version }, Phase::Claiming { .. }) => {
                self.phase = Phase::Claiming { version };
                vec![Step::Claim { version }]
            }
            // Someone claimed after us (a head we did not know was gone
            // still drives): claim again, keeping any pause until then.
            (MapSays::Migrating { version }, _) => self.reclaim(version),
        }
    }

    /// Our attempt is over (the link broke, or another driver claimed):
    /// claim again at `version`. A pause ends at once when no flip was
    /// asked (safe: only our claimed flip could land); after a flip was
    /// asked it waits for the next claim to succeed.
    fn reclaim(&mut self, version: u64) -> Vec<Step> {
        let mut steps = Vec::new();
        if !matches!(self.phase, Phase::Flipping { .. } | Phase::Reading) && self.paused {
            self.paused = false;
            steps.push(Step::Resume);
        }
        self.phase = Phase::Claiming { version };
        steps.push(Step::Claim { version });
        steps
    }

    /// The link to the target's head broke (either end's head changed, or
    /// the network): start a new attempt.
    pub fn link_broken(&mut self) -> Vec<Step> {
        match self.phase {
            Phase::Streaming { attempt } | Phase::Draining { attempt, .. } => self.reclaim(attempt),
            _ => Vec::new(),
        }
    }

    /// The host sent `items` more items of `attempt`; `snapshot_done` once
    /// the snapshot's last chunk is among them.
    pub fn sent(&mut self, attempt: u64, items: u64, snapshot_done: bool) {
        if self.attempt() == Some(attempt) {
            self.sent += items;
            self.snapshot_sent |= snapshot_done;
        }
    }

    /// The target acked `items` of `attempt` in all (cumulative), each
    /// committed in the target chain.
    pub fn acked(&mut self, attempt: u64, items: u64) {
        if self.attempt() == Some(attempt) {
            assert!(items <= self.sent, "the target acks only what was sent: {items} of {}", self.sent);
            self.acked = self.acked.max(items);
        }
    }

    /// Every write to the slots up to `sequence` was forwarded, and our
    /// chain committed up to `committed`.
    pub fn progress(&mut self, forwarded_through: u64, committed: u64) {
        assert!(forwarded_through <= committed, "only committed writes are forwarded");
        self.forwarded_through = self.forwarded_through.max(forwarded_through);
        self.committed = self.committed.max(committed);
    }

    fn attempt(&self) -> Option<u64> {
        match self.phase {
            Phase::Streaming { attempt } | Phase::Draining { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    /// The pause marker we asked for was sequenced at `marker`.
    pub fn paused_at(&mut self, marker: u64) {
        if let Phase::Draining { attempt, since_ms, .. } = self.phase {
            assert!(marker > 0, "a marker is a write with a sequence number");
            self.phase = Phase::Draining { attempt, marker, since_ms };
        }
    }

    /// The time passed: pause once caught up, flip once drained, give up a
    /// pause that takes too long.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Step> {
        match self.phase {
            Phase::Streaming { attempt } => {
                let caught_up = self.snapshot_sent && self.sent - self.acked <= PAUSE_BACKLOG_ITEMS;
                if !caught_up {
                    return Vec::new();
                }
                self.paused = true;
                self.phase = Phase::Draining { attempt, marker: 0, since_ms: now_ms };
                vec![Step::Pause { attempt }]
            }
            Phase::Draining { attempt, marker, since_ms } if marker > 0 => {
                if self.requires(Check::FlipBeforeDrain, self.drained(marker)) {
                    self.phase = Phase::Flipping { base: attempt };
                    return vec![Step::Flip { base: attempt }];
                }
                if now_ms.saturating_sub(since_ms) < PAUSE_MS_MAX {
                    return Vec::new();
                }
                self.paused = false;
                self.phase = Phase::Streaming { attempt };
                vec![Step::Resume]
            }
            _ => Vec::new(),
        }
    }

    /// The pause at `marker` drained: the marker committed here (every
    /// write to the slots before it too), each of those forwarded, and the
    /// target committed everything sent.
    fn drained(&self, marker: u64) -> bool {
        self.committed >= marker && self.forwarded_through >= marker && self.acked == self.sent
    }

    /// The answer to our flip.
    pub fn flip_answered(&mut self, answer: ZkAnswer) -> Vec<Step> {
        if !matches!(self.phase, Phase::Flipping { .. }) {
            return Vec::new();
        }
        match answer {
            ZkAnswer::Done { version } => {
                self.phase = Phase::Finished;
                vec![Step::Finished { version }]
            }
            // The slots stay paused whatever happened: only a reading of
            // the map may end the pause.
            ZkAnswer::BadVersion | ZkAnswer::Unknown => vec![Step::ReadMap],
        }
    }
}

#[cfg(test)]
#[path = "migration_tests.rs"]
mod tests;
