//! A small seeded random number generator (splitmix64): reproducible
//! workloads and fault schedules from one `--seed`, without a crate.

/// splitmix64: tiny, fast, and good enough for choosing keys and faults.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// An independent stream for `stream` (e.g. a client number).
    pub fn derive(seed: u64, stream: u64) -> SplitMix64 {
        SplitMix64::new(SplitMix64::new(seed ^ stream.wrapping_mul(0xa076_1d64_78bd_642f)).next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "empty range");
        self.next_u64() % bound
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_spread() {
        let mut first = SplitMix64::new(7);
        let mut second = SplitMix64::new(7);
        let values: Vec<u64> = (0..100).map(|_| first.below(10)).collect();
        assert_eq!(values, (0..100).map(|_| second.below(10)).collect::<Vec<_>>());
        assert!((0..10).all(|digit| values.contains(&digit)));
        assert_ne!(SplitMix64::derive(7, 1).next_u64(), SplitMix64::derive(7, 2).next_u64());
        let mut range = SplitMix64::new(1);
        assert!((0..100).map(|_| range.between(3, 5)).all(|value| (3..=5).contains(&value)));
    }
}
