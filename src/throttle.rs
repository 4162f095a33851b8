//! Log lines that outsiders or outages can trigger at will (failed proofs,
//! junk in ZooKeeper, a peer that keeps failing its handshake, ZooKeeper
//! down) are kept to one per interval, with a count of the ones held back,
//! so a flood cannot fill the disk or drown the lines that matter.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets a repeated log line through at most once per interval.
pub struct Every {
    interval: Duration,
    /// When a line last went through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Every {
    pub const fn new(interval: Duration) -> Every {
        Every { interval, state: Mutex::new((None, 0)) }
    }

    /// `Some(lines held back since the last one)` if a line may go out now.
    pub fn due(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, held_back) = &mut *state;
        if last.is_some_and(|last| last.elapsed() < self.interval) {
            *held_back += 1;
            return None;
        }
        *last = Some(Instant::now());
        Some(std::mem::take(held_back))
    }
}

/// ` (N similar lines suppressed)`, or nothing.
pub fn suppressed_note(suppressed: u64) -> String {
    match suppressed {
        0 => String::new(),
        1 => " (1 similar line suppressed)".into(),
        count => format!(" ({count} similar lines suppressed)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_line_goes_out_once_per_interval_with_a_count() {
        let every = Every::new(Duration::from_millis(200));
        assert_eq!(every.due(), Some(0));
        assert_eq!(every.due(), None);
        assert_eq!(every.due(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(every.due(), Some(2));
        assert_eq!(suppressed_note(2), " (2 similar lines suppressed)");
        assert_eq!(suppressed_note(0), "");
    }
}
