//! A latency histogram for Prometheus: fixed bucket bounds, one atomic
//! counter per bucket, so any connection thread records with two relaxed
//! atomic additions and no lock (the count is the buckets' total), and a scrape reads it without stopping
//! anyone. (The benchmark's `bench::histogram` is the other kind: precise
//! percentiles, one per load thread, merged at the end.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: 50 µs to 10 s in 1-2.5-5
/// steps, as Prometheus' default buckets are, shifted down to where a
/// chain's requests fall (loopback requests take tens of microseconds; a
/// commit waits for every server of the chain).
pub const BUCKET_BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Recorded durations.
pub struct LatencyHistogram {
    /// Durations per bucket (not cumulative); the last counts those above
    /// every bound.
    buckets: [AtomicU64; BUCKET_BOUNDS_US.len() + 1],
    /// Sum of every duration recorded, in microseconds.
    sum_us: AtomicU64,
}

/// A histogram as read at one moment, for the exposition.
pub struct LatencySnapshot {
    /// Durations at most each bound, cumulative (Prometheus' `le` buckets).
    pub cumulative: [u64; BUCKET_BOUNDS_US.len()],
    pub sum_seconds: f64,
    pub count: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { buckets: Default::default(), sum_us: AtomicU64::new(0) }
    }
}

impl LatencyHistogram {
    pub fn record(&self, elapsed: Duration) {
        let micros = elapsed.as_micros().min(u64::MAX as u128) as u64;
        let bucket = BUCKET_BOUNDS_US.partition_point(|bound| *bound < micros);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Sum of every duration recorded, in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }

    /// The counts now. Read without a lock while others record, so the sum
    /// may be a few durations ahead of or behind the buckets; the count is
    /// the buckets' total, so `+Inf` is never below a bound.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut cumulative = [0; BUCKET_BOUNDS_US.len()];
        let mut running = 0;
        for (index, total) in cumulative.iter_mut().enumerate() {
            running += self.buckets[index].load(Ordering::Relaxed);
            *total = running;
        }
        let above = self.buckets[BUCKET_BOUNDS_US.len()].load(Ordering::Relaxed);
        LatencySnapshot { cumulative, sum_seconds: self.sum_us() as f64 / 1e6, count: running + above }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let histogram = LatencyHistogram::default();
        histogram.record(Duration::from_micros(50));
        histogram.record(Duration::from_micros(51));
        histogram.record(Duration::from_millis(3));
        histogram.record(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative[0], 1, "a bound is inclusive (le)");
        assert_eq!(snapshot.cumulative[1], 2);
        assert_eq!(snapshot.cumulative[6], 3, "3 ms is at most 5 ms");
        assert_eq!(snapshot.cumulative[BUCKET_BOUNDS_US.len() - 1], 3, "60 s is above every bound");
        assert_eq!(snapshot.count, 4);
        assert!((snapshot.sum_seconds - 60.003101).abs() < 1e-9, "{}", snapshot.sum_seconds);
    }
}
