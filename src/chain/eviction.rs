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
//! ZooKeeper stays the only judge: the removal itself is one conditional
//! operation carried out by membership (see `coord::membership`), so two
//! neighbours racing cannot both decide, and a member removed by mistake is
//! fenced by the epoch checks and rejoins. The guard rails are decided
//! here: only a neighbour in our view, never the last ready member, and at
//! most one removal asked per [`REMOVAL_INTERVAL_MIN_MS`].

use std::fmt;

use super::effects::{Action, Effects};
use super::injected::Check;
use super::node::ChainNode;
use crate::limits::REMOVAL_INTERVAL_MIN_MS;

/// What a neighbour learned trying to reach a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// The peer's listening port refused a connect: the process is gone.
    Refused,
    /// A connect or the link timed out: not proof of anything.
    TimedOut,
}

impl fmt::Display for Evidence {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Evidence::Refused => "its link closed and its port refused a connect",
            Evidence::TimedOut => "a connect to it timed out",
        })
    }
}

/// Why no removal was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The evidence is not proof of death.
    NoProof,
    /// The peer is not our neighbour in our view (gone already, or we are
    /// not in the chain).
    NotNeighbour,
    /// The peer is the last ready member: without it no member holds the
    /// chain's state.
    LastReady,
    /// We asked for a removal less than [`REMOVAL_INTERVAL_MIN_MS`] ago.
    TooSoon,
}

/// When this node last asked for a removal.
#[derive(Debug, Default)]
pub struct Evictions {
    last_asked_ms: Option<u64>,
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
        if evidence != Evidence::Refused && self.enforces(Check::EvictWithoutProof) {
            return Err(Hold::NoProof);
        }
        let position = self.position.as_ref().ok_or(Hold::NotNeighbour)?;
        let victim = [&position.predecessor, &position.successor]
            .into_iter()
            .flatten()
            .find(|member| member.name == peer)
            .ok_or(Hold::NotNeighbour)?;
        if victim.readiness.is_ready() && position.chain_length <= 1 {
            return Err(Hold::LastReady);
        }
        let last = self.evictions.last_asked_ms;
        if last.is_some_and(|last| now_ms.saturating_sub(last) < REMOVAL_INTERVAL_MIN_MS) {
            return Err(Hold::TooSoon);
        }
        self.evictions.last_asked_ms = Some(now_ms);
        effects.act(Action::RemoveMember { name: victim.name.clone(), evidence });
        Ok(())
    }
}
