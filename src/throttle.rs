//! Log lines that outsiders can trigger at will (failed proofs, junk in
//! ZooKeeper, a peer that keeps failing its handshake) are kept to one per
//! period, so a flood cannot fill the disk or drown the lines that matter.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Allows an event at most once per `period`, from any thread.
pub struct Throttle {
    period: Duration,
    /// Milliseconds since [`epoch`] of the last allowed event, plus one
    /// (0: none yet).
    last: AtomicU64,
}

/// A fixed point that all throttles measure from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Throttle {
    pub const fn new(period: Duration) -> Throttle {
        Throttle { period, last: AtomicU64::new(0) }
    }

    /// True if the last allowed event is at least a period ago (and this
    /// one is then the last allowed).
    pub fn allow(&self) -> bool {
        let now = epoch().elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.period.as_millis() as u64;
        due && self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_period() {
        let throttle = Throttle::new(Duration::from_millis(200));
        assert!(throttle.allow());
        assert!(!throttle.allow());
        std::thread::sleep(Duration::from_millis(210));
        assert!(throttle.allow());
        assert!(!throttle.allow());
    }
}
