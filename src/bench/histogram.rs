//! A latency histogram in microseconds with log-linear buckets: exact below
//! [`EXACT_BELOW_US`], then every power of two split into [`SUB_BUCKETS`]
//! equal buckets, so any recorded value is reported within 1/64 (1.6 %) of
//! itself in a fixed 30 KiB, whatever the range (HdrHistogram's idea, without
//! the crate). Each load thread fills its own and they are merged at the end,
//! so recording is a plain increment with no sharing between threads.

/// Sub-buckets per power of two, as a power of two: 2^6 = 64.
const SUB_BUCKET_BITS: u32 = 6;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;

/// Values below this have a bucket each (exponents 0..=6 would otherwise get
/// buckets narrower than one microsecond).
const EXACT_BELOW_US: u64 = 1 << (SUB_BUCKET_BITS + 1);

/// Buckets needed to cover every `u64`: the exact ones, then 64 per power of
/// two from 2^7 to 2^63.
const BUCKETS: usize = EXACT_BELOW_US as usize + (64 - (SUB_BUCKET_BITS as usize + 1)) * SUB_BUCKETS;

/// Recorded latencies, in microseconds.
#[derive(Clone)]
pub struct Histogram {
    /// How many values fell into each bucket; see [`bucket_of`].
    counts: Box<[u64]>,
    total: u64,
    /// Exact extremes and sum: the buckets only bound them.
    min_us: u64,
    max_us: u64,
    sum_us: u128,
}

/// The percentiles a report shows, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            min_us: u64::MAX,
            max_us: 0,
            sum_us: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, value_us: u64) {
        self.counts[bucket_of(value_us)] += 1;
        self.total += 1;
        self.min_us = self.min_us.min(value_us);
        self.max_us = self.max_us.max(value_us);
        self.sum_us += u128::from(value_us);
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Histogram) {
        for (count, other_count) in self.counts.iter_mut().zip(other.counts.iter()) {
            *count += other_count;
        }
        self.total += other.total;
        self.min_us = self.min_us.min(other.min_us);
        self.max_us = self.max_us.max(other.max_us);
        self.sum_us += other.sum_us;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The smallest recorded value `v` such that at least `quantile` of all
    /// values are `<= v` (nearest rank), as the highest value of its bucket
    /// but never above the true maximum nor below the true minimum. 0 when
    /// nothing was recorded.
    pub fn value_at(&self, quantile: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return highest_in(bucket).clamp(self.min_us, self.max_us);
            }
        }
        unreachable!("the counts add up to the total")
    }

    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            p50: self.value_at(0.50),
            p90: self.value_at(0.90),
            p99: self.value_at(0.99),
            p999: self.value_at(0.999),
            max: self.max_us,
            mean: if self.total == 0 { 0.0 } else { self.sum_us as f64 / self.total as f64 },
        }
    }
}

/// The bucket of `value`: itself below [`EXACT_BELOW_US`]; above, its power of
/// two and the next [`SUB_BUCKET_BITS`] bits below the leading one.
fn bucket_of(value: u64) -> usize {
    if value < EXACT_BELOW_US {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // >= SUB_BUCKET_BITS + 1
    let sub_bucket = (value >> (exponent - SUB_BUCKET_BITS)) as usize & (SUB_BUCKETS - 1);
    EXACT_BELOW_US as usize + (exponent - SUB_BUCKET_BITS - 1) as usize * SUB_BUCKETS + sub_bucket
}

/// The highest value that falls into `bucket` (inverse of [`bucket_of`]).
fn highest_in(bucket: usize) -> u64 {
    if bucket < EXACT_BELOW_US as usize {
        return bucket as u64;
    }
    let above = bucket - EXACT_BELOW_US as usize;
    let exponent = (above / SUB_BUCKETS) as u32 + SUB_BUCKET_BITS + 1;
    let sub_bucket = (above % SUB_BUCKETS) as u64;
    let width = 1u64 << (exponent - SUB_BUCKET_BITS);
    let lowest = (1u64 << exponent) + sub_bucket * width;
    lowest + (width - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(values: impl IntoIterator<Item = u64>) -> Histogram {
        let mut histogram = Histogram::default();
        values.into_iter().for_each(|value| histogram.record(value));
        histogram
    }

    #[test]
    fn small_values_are_exact() {
        let histogram = histogram_of(1..=100);
        let percentiles = histogram.percentiles();
        assert_eq!(
            (percentiles.p50, percentiles.p90, percentiles.p99, percentiles.p999, percentiles.max),
            (50, 90, 99, 100, 100)
        );
        assert_eq!(percentiles.mean, 50.5);
        assert_eq!(histogram.value_at(0.0), 1);
    }

    #[test]
    fn large_values_are_within_the_bucket_precision() {
        // 1000 values 1000, 2000, ..., 1_000_000 µs.
        let histogram = histogram_of((1..=1000).map(|step| step * 1000));
        for (quantile, exact) in [(0.5, 500_000u64), (0.9, 900_000), (0.99, 990_000), (0.999, 999_000)] {
            let reported = histogram.value_at(quantile);
            assert!(reported >= exact && reported - exact <= exact / 64, "{quantile}: {reported} vs {exact}");
        }
        assert_eq!(histogram.percentiles().max, 1_000_000);
    }

    #[test]
    fn a_tail_shows_in_the_high_percentiles_only() {
        let histogram = histogram_of(std::iter::repeat_n(100, 990).chain(std::iter::repeat_n(50_000, 10)));
        let percentiles = histogram.percentiles();
        assert_eq!((percentiles.p50, percentiles.p90, percentiles.p99), (100, 100, 100));
        assert!((50_000..=50_000 + 50_000 / 64).contains(&percentiles.p999), "{percentiles:?}");
        assert_eq!(percentiles.max, 50_000);
    }

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut previous = 0;
        for value in (0..5000).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let bucket = bucket_of(value);
            assert!(bucket < BUCKETS && bucket >= previous, "{value}");
            assert!(highest_in(bucket) >= value, "{value}");
            assert!(bucket == 0 || highest_in(bucket - 1) < value, "{value}");
            previous = bucket;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut merged = histogram_of([5, 700, 9000]);
        merged.merge(&histogram_of([1, 80_000]));
        merged.merge(&Histogram::default());
        let whole = histogram_of([5, 700, 9000, 1, 80_000]);
        assert_eq!(merged.percentiles(), whole.percentiles());
        assert_eq!(merged.count(), 5);
        assert_eq!(merged.value_at(0.0), 1);
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        assert_eq!(Histogram::default().percentiles(), Percentiles::default());
    }
}
