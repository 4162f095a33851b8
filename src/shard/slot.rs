//! Hash slots as Redis Cluster computes them, so users' key designs carry
//! over: CRC16 (XMODEM) of the key, or of its `{tag}` when it has one, mod
//! [`SLOT_COUNT`]. Keys that share a tag share a slot, so `mset`/`mget` of
//! `{user1}.a` and `{user1}.b` always land on one chain.

/// Slots in the key space (Redis Cluster's number, so slot numbers mean
/// the same as there).
pub const SLOT_COUNT: u16 = 16384;

/// The highest slot number.
pub const SLOT_LAST: u16 = SLOT_COUNT - 1;

/// CRC16 with polynomial 0x1021, initial value 0, no reflection (XMODEM),
/// the checksum Redis Cluster hashes keys with. Bitwise: keys are short and
/// a 512-byte table would buy little.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The part of `key` that is hashed: between the first `{` and the first
/// `}` after it when that is not empty, else the whole key (Redis's rule).
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&byte| byte == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&byte| byte == b'}') {
        Some(length) if length > 0 => &key[open + 1..open + 1 + length],
        _ => key,
    }
}

/// The slot of `key`.
pub fn slot_of(key: &str) -> u16 {
    crc16(hash_tag(key.as_bytes())) % SLOT_COUNT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_match_redis_cluster() {
        // Values from Redis's `CLUSTER KEYSLOT`.
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("somekey"), 11058);
        assert_eq!(slot_of("foo{hash_tag}"), 2515);
        assert_eq!(slot_of("hash_tag"), 2515);
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        assert_eq!(slot_of("{user1000}.followers"), slot_of("user1000"));
    }

    #[test]
    fn tags_follow_redis_rules() {
        assert_eq!(hash_tag(b"foo{bar}zap"), b"bar");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}", "an empty first tag: the whole key");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar", "from the first {{ to the next }}");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar", "only the first tag");
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar", "no closing brace");
        assert_eq!(hash_tag(b"}foo{"), b"}foo{");
    }

    #[test]
    fn every_slot_is_in_range() {
        for index in 0..10_000 {
            assert!(slot_of(&format!("key{index}")) < SLOT_COUNT);
        }
    }
}
