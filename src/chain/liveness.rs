//! Heartbeats and suspicion on a replication link: when a link end owes the
//! other a frame although it has nothing to say, and when the silence of
//! the other end makes it a *suspect*.
//!
//! Suspicion is not proof: a paused or cut-off peer is silent too, and may
//! still hold a valid read lease. A suspect is only probed (a connect to
//! its listening port); a refused connect is the proof of death that lets
//! a neighbour ask for its removal (see [`eviction`](super::eviction)).

use crate::limits::{REPLICATION_HEARTBEAT_INTERVAL_MS, REPLICATION_SUSPECT_AFTER_MISSED};

/// Whether a frame is owed now: nothing went out for a heartbeat interval.
pub fn heartbeat_due(last_sent_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(last_sent_ms) >= REPLICATION_HEARTBEAT_INTERVAL_MS
}

/// What one link end heard of the other.
#[derive(Debug, Default)]
pub struct Liveness {
    /// When the last frame (any frame) arrived, or the link opened.
    last_heard_ms: u64,
    /// The suspect was probed since it was last heard.
    probed: bool,
}

impl Liveness {
    /// A frame arrived (or the link opened): the peer is not suspect.
    pub fn heard(&mut self, now_ms: u64) {
        self.last_heard_ms = self.last_heard_ms.max(now_ms);
        self.probed = false;
    }

    /// The peer missed [`REPLICATION_SUSPECT_AFTER_MISSED`] heartbeats.
    pub fn suspect(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_heard_ms)
            > REPLICATION_HEARTBEAT_INTERVAL_MS * REPLICATION_SUSPECT_AFTER_MISSED
    }

    /// Whether to probe the peer's listening port now: once each time it
    /// becomes suspect (a probe that is not refused proves nothing, and
    /// repeating it would only load a slow machine more).
    pub fn probe_due(&mut self, now_ms: u64) -> bool {
        let due = self.suspect(now_ms) && !self.probed;
        self.probed |= due;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = REPLICATION_HEARTBEAT_INTERVAL_MS * REPLICATION_SUSPECT_AFTER_MISSED;

    #[test]
    fn a_heartbeat_is_due_after_one_idle_interval() {
        assert!(!heartbeat_due(100, 100 + REPLICATION_HEARTBEAT_INTERVAL_MS - 1));
        assert!(heartbeat_due(100, 100 + REPLICATION_HEARTBEAT_INTERVAL_MS));
    }

    #[test]
    fn a_peer_is_suspect_only_after_the_missed_heartbeats() {
        let mut liveness = Liveness::default();
        liveness.heard(1_000);
        assert!(!liveness.suspect(1_000 + WINDOW));
        assert!(liveness.suspect(1_000 + WINDOW + 1));
        liveness.heard(1_000 + WINDOW + 1);
        assert!(!liveness.suspect(1_000 + WINDOW + 1));
    }

    #[test]
    fn a_suspect_is_probed_once_until_heard_again() {
        let mut liveness = Liveness::default();
        liveness.heard(0);
        assert!(!liveness.probe_due(WINDOW));
        assert!(liveness.probe_due(WINDOW + 1));
        assert!(!liveness.probe_due(WINDOW + 500));
        liveness.heard(WINDOW + 600);
        assert!(liveness.probe_due(2 * WINDOW + 601));
    }
}
