//! Each simulated server's own clock: the world's time plus a skew that
//! drifts back and forth at up to [`CLOCK_DRIFT_PER_MILLE`] of real time,
//! within a bounded amplitude. The protocol may assume only that clocks
//! agree on the rate of time within that drift (see `chain::lease`), so the
//! simulator gives every server a rate that differs from the others' by up
//! to twice it, and an offset that is never the same twice.

use crate::check::random::SplitMix64;
use crate::limits::CLOCK_DRIFT_PER_MILLE;

/// The largest skew amplitude drawn (ms).
const AMPLITUDE_MAX_MS: u64 = 40;

/// A triangle wave of skew: from -amplitude to +amplitude and back over
/// `period_ms`, so its slope is `4 * amplitude / period_ms`, the drift.
#[derive(Clone, Copy, Debug)]
pub struct SimClock {
    amplitude_ms: u64,
    period_ms: u64,
    phase_ms: u64,
}

impl SimClock {
    /// A clock whose rate drifts at exactly the allowed bound (a third of
    /// them run true).
    pub fn draw(rng: &mut SplitMix64) -> SimClock {
        let amplitude_ms = if rng.below(3) == 0 { 0 } else { rng.between(1, AMPLITUDE_MAX_MS) };
        let period_ms = (4 * amplitude_ms * 1000 / CLOCK_DRIFT_PER_MILLE).max(1);
        SimClock { amplitude_ms, period_ms, phase_ms: rng.below(period_ms) }
    }

    /// The time on this clock when the world's time is `now_ms`: never
    /// behind a reading taken earlier.
    pub fn at(&self, now_ms: u64) -> u64 {
        let half = self.period_ms / 2;
        if half == 0 {
            return now_ms + AMPLITUDE_MAX_MS;
        }
        let position = (now_ms + self.phase_ms) % self.period_ms;
        let ramp = 2 * self.amplitude_ms;
        let skew =
            if position < half { ramp * position / half } else { ramp - ramp * (position - half) / half };
        // Offset so the skew never takes the clock below zero.
        now_ms + AMPLITUDE_MAX_MS - self.amplitude_ms + skew
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock never goes back, and over any stretch its rate is within
    /// the drift of the world's (within a millisecond of rounding).
    #[test]
    fn a_clock_drifts_within_the_bound_and_never_goes_back() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..50 {
            let clock = SimClock::draw(&mut rng);
            let mut last = clock.at(0);
            for now in 1..20_000 {
                let reading = clock.at(now);
                assert!(reading >= last, "{clock:?} went back at {now}");
                last = reading;
            }
            for (start, length) in [(0, 1000), (333, 5000), (7000, 10_000)] {
                let elapsed = clock.at(start + length) - clock.at(start);
                let slack = length * CLOCK_DRIFT_PER_MILLE / 1000 + 1;
                assert!(elapsed.abs_diff(length) <= slack, "{clock:?}: {elapsed} ms for {length}");
            }
        }
    }
}
