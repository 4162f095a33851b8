//! Proof of death and the removal a neighbour asks for (issue 19, phase 1).
//!
//! A neighbour whose link to a peer closed, and whose connect to the peer's
//! listening port is *refused*, knows the process is gone (the port has no
//! listener): it asks ZooKeeper to remove the peer at once instead of
//! waiting for the peer's session to expire. A connect that times out, or
//! silence on the link, proves nothing (the peer may be paused or cut off
//! and still serving reads under its lease), so it never leads to a removal
//! in phase 1: session expiry stays the fallback for those.
//!
//! Silence is enough once the silent peer's read lease must have run out
//! (phase 2): a predecessor whose successor sent nothing for
//! [`SUSPECT_REMOVAL_AFTER_MS`] (on the predecessor's clock, from the last
//! frame received from it) asks for its removal, since by then the
//! successor stopped answering reads even if it is alive (the argument,
//! drift included, is in [`lease`](super::lease)). Only the predecessor
//! does: it is the one that grants the successor's lease, so only it knows
//! when the lease ran out. A silent predecessor is left to session expiry.
//!
//! ZooKeeper stays the only judge: the removal itself is one conditional
//! operation carried out by membership (see `coord::membership`), so two
//! neighbours racing cannot both decide, and a member removed by mistake is
//! fenced by the epoch checks and rejoins. The guard rails are decided
//! here: only a neighbour in our view, never the last ready member, and at
//! most one removal asked per [`REMOVAL_INTERVAL_MIN_MS`]. The rate limit
//! is per node, not per chain: a removal asked for by lease expiry needs a
//! successor silent for over 100 ms and ends with the view change that
//! makes a new successor (heard from afresh), so each member can remove at
//! most its own successors one after the other, and never the last ready
//! member; a per-chain limit would cost a ZooKeeper write per removal.
//!
//! A removal on proof of death skips the rate limit, unless it is of the
//! member we already asked to remove on proof (a second refused connect
//! to it while ZooKeeper's answer is on its way). The rate limit keeps a
//! slow or confused server from emptying a chain on guesses; a proof is
//! no guess (a live process accepts the connect, however slow it is), each
//! process dies once, and neither safety nor the lease depends on the
//! rate: a removed member is fenced by the epoch checks, and a proven
//! removal waits for no lease because a dead process answers no read. So
//! a tail that dies right after the head is removed at once by the member
//! that just removed the head, instead of one interval later (measured by
//! `table-check failover`, row `tail after head`). A proven removal still
//! counts as the last one asked, so a removal on silence right after it
//! waits the interval out.

use std::fmt;

use super::effects::{Action, Effects};
use super::injected::Check;
use super::node::ChainNode;
use crate::limits::{
    REMOVAL_INTERVAL_MIN_MS, REPLICATION_HEARTBEAT_INTERVAL_MS, REPLICATION_SUSPECT_AFTER_MISSED,
    SUSPECT_REMOVAL_AFTER_MS,
};

/// A successor silent this long is suspect (see `liveness`).
const REPLICATION_SUSPECT_WINDOW_MS: u64 =
    REPLICATION_HEARTBEAT_INTERVAL_MS * REPLICATION_SUSPECT_AFTER_MISSED;

/// What a neighbour learned trying to reach a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// The peer's listening port refused a connect: the process is gone.
    Refused,
    /// A connect or the link timed out: not proof of anything.
    TimedOut,
    /// Our successor sent no frame since `last_heard_ms` (our clock), and
    /// its read lease has run out since (see `lease`).
    Silent { last_heard_ms: u64 },
}

impl Evidence {
    /// A removal on this evidence is counted as one by proof of death
    /// (else by lease expiry).
    pub fn is_proof(self) -> bool {
        self == Evidence::Refused
    }

    fn is_not_silence(self) -> bool {
        !matches!(self, Evidence::Silent { .. })
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match *self {
            Evidence::Refused => "its link closed and its port refused a connect",
            Evidence::TimedOut => "a connect to it timed out",
            Evidence::Silent { .. } => "it missed its heartbeats and its read lease ran out",
        })?;
        if let Evidence::Silent { last_heard_ms } = self {
            write!(formatter, " (last heard at {last_heard_ms} ms)")?;
        }
        Ok(())
    }
}

/// Why no removal was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The evidence is not proof of death.
    NoProof,
    /// The silent peer's read lease may still hold.
    LeaseMayHold,
    /// The peer is not our neighbour in our view (gone already, or we are
    /// not in the chain).
    NotNeighbour,
    /// The peer is the last ready member: without it no member holds the
    /// chain's state.
    LastReady,
    /// We asked for a removal less than [`REMOVAL_INTERVAL_MIN_MS`] ago, and
    /// this one is not on a new proof of death.
    TooSoon,
}

/// When this node last asked for a removal, and what it heard of its
/// successor.
#[derive(Debug, Default)]
pub struct Evictions {
    last_asked_ms: Option<u64>,
    /// Our successor (by name) and when we last heard from it: set by its
    /// first ack on our link, which it sends only once its view makes us
    /// its predecessor (and so voids any lease from another one).
    successor_heard: Option<(String, u64)>,
    /// The latest time a tick told us (our clock), and a long gap before
    /// it means we were stalled ourselves (paused, or starved of CPU): our
    /// successor's acks may be waiting unread, so its silence counts
    /// afresh from then.
    last_tick_ms: u64,
    /// The member we asked to remove on the proof of its death.
    proven_dead: Option<String>,
    /// Our successor, whose port did not answer a probe since we last
    /// heard from it: a silent successor is removed only then. One whose
    /// port answers is alive and reachable (slow, or its frames late), and
    /// removing it would be a wrong guess that costs it a rejoin.
    unreachable: Option<String>,
    /// Until then (our clock) we ask for no commit record: a successor we
    /// granted a read lease left our view without our proof of its death,
    /// and may answer reads until its lease runs out (see `lease`).
    record_held_until_ms: u64,
}

impl ChainNode {
    /// A peer could not be reached, with this `evidence`: asks for its
    /// removal ([`Action::RemoveMember`]) if that is proof of its death and
    /// the guard rails allow it.
    pub fn peer_unreachable(
        &mut self,
        peer: &str,
        evidence: Evidence,
        now_ms: u64,
        effects: &mut impl Effects,
    ) -> Result<(), Hold> {
        match evidence {
            Evidence::Refused => {}
            Evidence::TimedOut if self.enforces(Check::EvictWithoutProof) => {
                if self.successor().is_some_and(|member| member.name == peer) {
                    self.evictions.unreachable = Some(peer.to_owned());
                }
                return Err(Hold::NoProof);
            }
            Evidence::TimedOut => {}
            Evidence::Silent { last_heard_ms } => {
                let ran_out = now_ms >= last_heard_ms.saturating_add(SUSPECT_REMOVAL_AFTER_MS);
                if !self.requires(Check::LeaseExpiry, ran_out) {
                    return Err(Hold::LeaseMayHold);
                }
            }
        }
        let position = self.position.as_ref().ok_or(Hold::NotNeighbour)?;
        // Silence counts only against the successor, whose lease we grant.
        let predecessor = position.predecessor.as_ref().filter(|_| evidence.is_not_silence());
        let victim = [predecessor, position.successor.as_ref()]
            .into_iter()
            .flatten()
            .find(|member| member.name == peer)
            .ok_or(Hold::NotNeighbour)?;
        if victim.readiness.is_ready() && position.chain_length <= 1 {
            return Err(Hold::LastReady);
        }
        let last = self.evictions.last_asked_ms;
        let too_soon = last.is_some_and(|last| now_ms.saturating_sub(last) < REMOVAL_INTERVAL_MIN_MS);
        // Proof of a death we have not asked about yet skips the rate limit
        // (see the module doc); the same death proven again waits for it.
        let proven_anew =
            evidence.is_proof() && self.evictions.proven_dead.as_deref() != Some(victim.name.as_str());
        if too_soon && !proven_anew {
            return Err(Hold::TooSoon);
        }
        self.evictions.last_asked_ms = Some(now_ms);
        if evidence.is_proof() {
            self.evictions.proven_dead = Some(victim.name.clone());
        }
        effects.act(Action::RemoveMember { name: victim.name.clone(), evidence });
        Ok(())
    }
}

impl ChainNode {
    /// A frame arrived from our successor `name` at `now_ms`.
    pub(super) fn successor_heard(&mut self, name: &str, now_ms: u64) {
        if self.successor().is_some_and(|member| member.name == name) {
            self.evictions.successor_heard = Some((name.to_owned(), now_ms));
            self.evictions.unreachable = None;
        }
    }

    /// At every tick: asks for our successor's removal once it has been
    /// silent for long enough that its read lease ran out (see the module
    /// doc). Only a successor that acked our link since it became ours
    /// (until then its lease may come from a predecessor of its older view,
    /// whose heartbeats we know nothing of), and whose port did not answer
    /// a probe since. After a stall of ours, its silence counts afresh.
    pub(super) fn watch_successor(&mut self, now_ms: u64, effects: &mut impl Effects) {
        let stalled = now_ms.saturating_sub(self.evictions.last_tick_ms) > REPLICATION_SUSPECT_WINDOW_MS;
        self.evictions.last_tick_ms = self.evictions.last_tick_ms.max(now_ms);
        // Only a ready successor we replicate to: we grant its lease, and
        // its silence holds up commits. A joiner answers no reads and holds
        // up nothing (it may be silent while a snapshot streams to it).
        let probe_awaited = self.enforces(Check::LeaseExpiry);
        let watched = self.successor().filter(|member| member.readiness.is_ready() && self.may_replicate());
        let successor = watched.map(|member| member.name.clone());
        let heard =
            self.evictions.successor_heard.as_mut().filter(|(name, _)| Some(name) == successor.as_ref());
        let Some((successor, heard_ms)) = heard else {
            return;
        };
        // The probe's verdict is part of what removal waits for (bug
        // `evict-before-lease` waits for nothing).
        if self.evictions.unreachable.as_ref() != Some(successor) && probe_awaited {
            return;
        }
        if stalled {
            *heard_ms = now_ms;
        }
        let (successor, last_heard_ms) = (successor.clone(), *heard_ms);
        // Past a missed heartbeat, whether it may go is the lease's call
        // (`peer_unreachable`), which waits far longer than suspicion.
        let silent = now_ms.saturating_sub(last_heard_ms) > REPLICATION_HEARTBEAT_INTERVAL_MS;
        if silent && self.lease_valid(now_ms) {
            let _ = self.peer_unreachable(&successor, Evidence::Silent { last_heard_ms }, now_ms, effects);
        }
    }

    /// Our view changed and `old_successor` is not our successor any more:
    /// if we granted it a read lease (we heard from it) and did not prove
    /// it dead, hold our commit record (and so our commits and reads, were
    /// we the tail now) until its lease must have run out. Whoever removed
    /// it, and whenever, a client then cannot read from it what we
    /// overwrote.
    pub(super) fn successor_left(&mut self, old_successor: Option<&str>) {
        let Some((name, heard_ms)) = self.evictions.successor_heard.take() else { return };
        let left =
            Some(name.as_str()) == old_successor && self.successor().is_none_or(|member| member.name != name);
        if !left {
            self.evictions.successor_heard = Some((name, heard_ms));
            return;
        }
        if self.evictions.proven_dead.as_deref() != Some(name.as_str()) && self.enforces(Check::LeaseExpiry) {
            let until_ms = heard_ms + SUSPECT_REMOVAL_AFTER_MS;
            self.evictions.record_held_until_ms = self.evictions.record_held_until_ms.max(until_ms);
        }
    }

    /// Whether our commit record waits for a departed successor's lease
    /// (see [`ChainNode::successor_left`]), as of the latest tick.
    pub(super) fn record_held(&self) -> bool {
        self.evictions.last_tick_ms < self.evictions.record_held_until_ms
    }
}
