//! What the load threads do: the operation mix, the key choice and the
//! values, driven by a small seeded generator so a run can be repeated
//! exactly (same `--seed`, same sequence of operations per thread).

use std::fmt::{self, Write};

/// The seeded generator `table-check` uses too: one implementation for both.
pub use crate::check::random::SplitMix64;

/// One operation of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Put,
    Del,
    /// Compare-and-set of a key's value with itself (it swaps if the key
    /// holds the run's value).
    Cas,
    /// Add 1 to a counter (`counter:<index>`, apart from the keys of the
    /// other operations, whose values are not numbers).
    Incr,
}

/// Relative weights of GET, PUT, DEL, CAS and INCR, as given by `--mix
/// GET:PUT:DEL[:CAS:INCR]` (e.g. `90:10:0`; they need not add up to 100).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub get: u32,
    pub put: u32,
    pub del: u32,
    pub cas: u32,
    pub incr: u32,
}

impl Mix {
    /// Parses `GET:PUT:DEL[:CAS:INCR]`: three or five whole numbers, not
    /// all zero.
    pub fn parse(text: &str) -> Result<Mix, String> {
        let bad = || {
            format!(
                "'{text}' is not a mix GET:PUT:DEL[:CAS:INCR] of three or five whole numbers such as 90:10:0"
            )
        };
        let weights: Vec<u32> = text
            .split(':')
            .map(|weight| weight.trim().parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let mix = match weights[..] {
            [get, put, del] => Mix { get, put, del, cas: 0, incr: 0 },
            [get, put, del, cas, incr] => Mix { get, put, del, cas, incr },
            _ => return Err(bad()),
        };
        if mix.total() == 0 {
            return Err(format!("mix '{text}' has no operation with a weight above 0"));
        }
        Ok(mix)
    }

    /// Sum of the weights, in `u64` so three `u32` weights cannot overflow.
    fn total(&self) -> u64 {
        self.weights().iter().map(|&(_, weight)| u64::from(weight)).sum()
    }

    /// Each operation with its weight, in the order of `--mix`.
    fn weights(&self) -> [(Op, u32); 5] {
        [
            (Op::Get, self.get),
            (Op::Put, self.put),
            (Op::Del, self.del),
            (Op::Cas, self.cas),
            (Op::Incr, self.incr),
        ]
    }

    /// The next operation, each with probability weight / sum of weights.
    pub fn pick(&self, rng: &mut SplitMix64) -> Op {
        let mut draw = rng.below(self.total());
        for (op, weight) in self.weights() {
            if draw < u64::from(weight) {
                return op;
            }
            draw -= u64::from(weight);
        }
        unreachable!("the draw is below the sum of the weights")
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.get, self.put, self.del)?;
        if self.cas > 0 || self.incr > 0 {
            write!(f, ":{}:{}", self.cas, self.incr)?;
        }
        Ok(())
    }
}

/// Writes the name of key number `index` (`key:<index>`) into `key`, reusing
/// its allocation: the load loop names a key per operation.
pub fn key_name(index: u64, key: &mut String) {
    key.clear();
    write!(key, "key:{index}").expect("writing to a String cannot fail");
}

/// Writes the name of counter number `index` (`counter:<index>`) into `key`.
pub fn counter_name(index: u64, key: &mut String) {
    key.clear();
    write!(key, "counter:{index}").expect("writing to a String cannot fail");
}

/// A value of `size` printable bytes (so `table-client get` shows it),
/// different per thread so a table holding the values of several threads is
/// not one repeated string.
pub fn value_of(size: usize, rng: &mut SplitMix64) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..size).map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse() {
        assert_eq!(Mix::parse("90:10:0"), Ok(Mix { get: 90, put: 10, del: 0, cas: 0, incr: 0 }));
        assert_eq!(Mix::parse("0:1:0"), Ok(Mix { get: 0, put: 1, del: 0, cas: 0, incr: 0 }));
        assert_eq!(Mix::parse(" 1 : 2 : 3 ").map(|mix| mix.to_string()), Ok("1:2:3".to_owned()));
    }

    #[test]
    fn bad_mixes_are_refused() {
        for bad in ["", "90:10", "90:10:0:0", "a:b:c", "90:-10:0", "90:10:", "0:0:0", "4294967296:1:0"] {
            assert!(Mix::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix = Mix::parse("70:20:10").unwrap();
        let mut rng = SplitMix64::new(7);
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            counts[mix.pick(&mut rng) as usize] += 1;
        }
        for (count, expected) in counts.iter().zip([70_000, 20_000, 10_000]) {
            assert!(count.abs_diff(expected) < 1000, "{counts:?}");
        }
        let five = Mix::parse("1:0:0:2:1").unwrap();
        assert_eq!(five.to_string(), "1:0:0:2:1");
        let mut counts = [0u32; 5];
        for _ in 0..4000 {
            counts[five.pick(&mut rng) as usize] += 1;
        }
        assert!(
            counts[1] == 0 && counts[2] == 0 && counts[3] > counts[0] + 500 && counts[4] > 500,
            "{counts:?}"
        );
        let only_puts = Mix::parse("0:5:0").unwrap();
        assert!((0..1000).all(|_| only_puts.pick(&mut rng) == Op::Put));
    }

    #[test]
    fn keys_and_values() {
        let mut key = String::from("left over");
        key_name(42, &mut key);
        assert_eq!(key, "key:42");
        let value = value_of(100, &mut SplitMix64::new(1));
        assert_eq!(value.len(), 100);
        assert!(value.iter().all(u8::is_ascii_alphanumeric));
        assert!(value_of(0, &mut SplitMix64::new(1)).is_empty());
    }
}
