//! The tail's read lease on the data path (issue 19): a tail with a
//! predecessor answers reads only while its predecessor's heartbeats renew
//! it, so that a tail that is paused or cut off stops answering reads
//! before its predecessor may have it removed and, as the new tail, commit
//! writes the old one never saw.
//!
//! # How the lease is granted
//!
//! Every ack the tail sends up carries a stamp: the time on the tail's own
//! clock when it sent it. The predecessor echoes the newest stamp it
//! received in its next frame (any frame, heartbeats included). A tail that
//! receives an echo of stamp `s` in view epoch `e` holds the lease until
//! `s + READ_LEASE_MS` on its own clock, in epoch `e` only (a new view,
//! which may bring a new predecessor, needs a new grant).
//!
//! # Why a remover that waits is safe, clocks drifting
//!
//! The lease counts from the tail's stamp, not from when the echo arrived:
//! a tail has no way to know how long an echo sat in a socket buffer (a
//! SIGSTOP of the tail parks every frame; on waking, the tail reads old
//! echoes), while its own stamp it knows. Each stamp the tail holds a lease
//! by was sent by the tail no later (in real time) than the predecessor
//! received it, since the predecessor echoes only stamps it received.
//!
//! The predecessor asks for a silent successor's removal only once
//! [`SUSPECT_REMOVAL_AFTER_MS`] passed on its own clock since the last frame
//! it received from it (`r`). Any lease the tail holds ends `READ_LEASE_MS`
//! on the tail's clock after a stamp sent before `r` (real time). With the
//! clocks' rates within a fraction `d` of real time, the lease ends at most
//! `READ_LEASE_MS / (1 - d)` real time after `r`, and our wait lasts at
//! least `SUSPECT_REMOVAL_AFTER_MS / (1 + d)`, which is longer (see the
//! constant). Nothing assumes the clocks agree on the time, only on its
//! rate, and nothing assumes a bound on network delays.
//!
//! A removal by proof of death (a refused connect) needs no wait: a process
//! that is gone answers no reads. A lone member, and a standalone server,
//! have no predecessor and need no data-path lease (no one could remove
//! them for silence); the lease on the ZooKeeper session still applies.

use super::injected::Check;
use super::node::ChainNode;
#[cfg(test)]
use super::node::Refusal;
use crate::limits::READ_LEASE_MS;

/// The read lease a tail holds from its predecessor.
#[derive(Debug, Default)]
pub struct ReadLease {
    /// The view epoch it was granted in: it holds in that one only.
    epoch: u64,
    /// When it runs out, on our clock (0: none).
    until_ms: u64,
}

impl ChainNode {
    /// Our predecessor echoed our ack stamped `stamp_ms` (see the module
    /// doc), on a link already checked to be from our current predecessor.
    /// A stamp from our future is none of ours and grants nothing.
    pub(super) fn lease_echoed(&mut self, stamp_ms: u64, now_ms: u64) {
        if stamp_ms > now_ms {
            return;
        }
        let until_ms = stamp_ms + READ_LEASE_MS;
        if self.read_lease.epoch != self.view_epoch {
            self.read_lease = ReadLease { epoch: self.view_epoch, until_ms };
        } else {
            self.read_lease.until_ms = self.read_lease.until_ms.max(until_ms);
        }
    }

    /// Tests: a heartbeat from `sender` on `link` echoing `stamp_ms`
    /// arrives at `now_ms` (as [`Uplink::receive`] takes it).
    ///
    /// [`Uplink::receive`]: super::link::Uplink::receive
    #[cfg(test)]
    pub fn heartbeat(&mut self, sender: &str, link: u64, stamp_ms: u64, now_ms: u64) -> Result<(), Refusal> {
        self.check_link(sender, link)?;
        self.lease_echoed(stamp_ms, now_ms);
        Ok(())
    }

    /// When the read lease runs out on our clock: never (`u64::MAX`) for a
    /// member without a predecessor, 0 for a lease of another view.
    pub fn read_lease_until_ms(&self) -> u64 {
        let has_predecessor = self.position.as_ref().is_some_and(|position| position.predecessor.is_some());
        if !has_predecessor || !self.enforces(Check::ReadLease) {
            return u64::MAX;
        }
        if self.read_lease.epoch == self.view_epoch { self.read_lease.until_ms } else { 0 }
    }

    /// Whether the read lease holds at `now_ms` (see
    /// [`ChainNode::read_lease_until_ms`]).
    pub(super) fn read_lease_holds(&self, now_ms: u64) -> bool {
        now_ms < self.read_lease_until_ms()
    }
}
