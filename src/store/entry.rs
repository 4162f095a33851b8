//! One stored key-value pair in a single heap allocation.
//!
//! A `HashMap<Box<str>, Box<[u8]>>` pays for two allocations per key (each
//! rounded up to a malloc chunk, a short key to 32 bytes) and a 32-byte
//! slot in the hash table. An [`Entry`] is one boxed byte slice laid out as
//!
//! ```text
//! [key length, LEB128] [key bytes] [value bytes]
//! ```
//!
//! so a key costs one allocation and a 16-byte slot. The length prefix is
//! one byte for keys shorter than 128 bytes. The value's length is what is
//! left of the slice, so it needs no prefix.
//!
//! The slice is shared (`Arc`: 16 bytes of counts in the same allocation).
//! A state transfer copies the table under the node's lock, where a clone
//! is a count raised but a copy of the bytes held a 1,000,000-key table's
//! writers for about a second. Entries are never changed in place (a put
//! stores a new one), so sharing needs nothing more.

use std::sync::Arc;

/// A key and its value in one shared allocation (see the module doc).
#[derive(Clone)]
pub struct Entry(Arc<[u8]>);

impl Entry {
    /// Lays out `key` and `value` in one exactly-sized shared allocation.
    pub(super) fn new(key: &str, value: &[u8]) -> Entry {
        let mut prefix = [0; PREFIX_BYTES_MAX];
        let prefix = encode_length(key.len(), &mut prefix);
        let mut bytes = Vec::with_capacity(prefix.len() + key.len() + value.len());
        bytes.extend_from_slice(prefix);
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(value);
        // Copied once more, into the allocation that also holds the counts.
        Entry(Arc::from(bytes))
    }

    /// The key's bytes: valid UTF-8, since every entry is built from a `&str`.
    pub(super) fn key_bytes(&self) -> &[u8] {
        let (prefix, key_len) = read_length(&self.0);
        &self.0[prefix..prefix + key_len]
    }

    /// Whether this is `key`'s entry.
    pub(super) fn has_key(&self, key: &str) -> bool {
        self.key_bytes() == key.as_bytes()
    }

    /// The key as text.
    pub fn key(&self) -> &str {
        std::str::from_utf8(self.key_bytes()).expect("entries are built from &str keys")
    }

    /// The value's bytes.
    pub fn value(&self) -> &[u8] {
        let (prefix, key_len) = read_length(&self.0);
        &self.0[prefix + key_len..]
    }

    /// Key and value bytes, the unit of `Table::bytes_stored` (the length
    /// prefix is bookkeeping, not data).
    pub(super) fn data_len(&self) -> usize {
        let (prefix, _) = read_length(&self.0);
        self.0.len() - prefix
    }
}

/// Longest LEB128 encoding of a `usize` (64 bits, 7 per byte).
const PREFIX_BYTES_MAX: usize = 10;

/// Encodes `length` as LEB128 into `buffer` and returns the bytes used:
/// seven bits per byte, low bits first, the top bit set on every byte but
/// the last.
fn encode_length(mut length: usize, buffer: &mut [u8; PREFIX_BYTES_MAX]) -> &[u8] {
    let mut used = 0;
    while length >= 0x80 {
        buffer[used] = (length as u8) | 0x80;
        length >>= 7;
        used += 1;
    }
    buffer[used] = length as u8;
    &buffer[..=used]
}

/// Decodes the LEB128 length at the start of `bytes`: (prefix bytes, length).
fn read_length(bytes: &[u8]) -> (usize, usize) {
    let mut length = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        length |= usize::from(byte & 0x7f) << (7 * index);
        if byte < 0x80 {
            return (index + 1, length);
        }
    }
    unreachable!("every entry starts with a complete length prefix")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, value: &[u8]) {
        let entry = Entry::new(key, value);
        assert_eq!(entry.key(), key);
        assert_eq!(entry.key_bytes(), key.as_bytes());
        assert!(entry.has_key(key));
        assert!(!entry.has_key(&format!("{key}x")));
        assert_eq!(entry.value(), value);
        assert_eq!(entry.data_len(), key.len() + value.len());
    }

    #[test]
    fn empty_key_and_empty_value() {
        check("", b"");
        check("", b"value");
        check("key", b"");
    }

    #[test]
    fn non_ascii_key() {
        check("clé-ключ-鍵-🔑", "värde".as_bytes());
    }

    #[test]
    fn length_prefix_boundaries() {
        for key_len in [0, 1, 127, 128, 129, 16_383, 16_384, 70_000] {
            let key = "k".repeat(key_len);
            check(&key, &[7; 3]);
            let entry = Entry::new(&key, b"");
            let expected_prefix = match key_len {
                0..128 => 1,
                128..16_384 => 2,
                _ => 3,
            };
            assert_eq!(entry.0.len(), expected_prefix + key_len, "key length {key_len}");
        }
    }

    #[test]
    fn the_key_ends_where_its_length_says() {
        let entry = Entry::new("a", b"bc");
        assert!(entry.has_key("a"));
        assert!(!entry.has_key("ab") && !entry.has_key("abc") && !entry.has_key(""));
    }

    #[test]
    fn one_exact_allocation() {
        let entry = Entry::new("key:123456", &[0; 100]);
        assert_eq!(entry.0.len(), 1 + 10 + 100);
    }
}
