//! The in-memory table: a fixed number of stripes, each a hash table of
//! [`Entry`]s behind a parking_lot `RwLock`.
//!
//! Readers of keys in different stripes never touch the same lock, and readers
//! of the same stripe share it. `keys` and `entries` take every stripe's read
//! lock, always in index order, before copying anything: a writer holds one
//! stripe lock, or (`put_many`) several taken in index order too, and
//! `with_looked_up` reads several in index order, so no two threads can wait for
//! each other's locks, and the copy is a consistent snapshot (no write
//! lands half inside it).

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as Slot;
use parking_lot::RwLock;

use super::entry::Entry;
use super::scan::encoded_bytes;

/// One stripe's keys and values, each pair in one allocation (see [`super::entry`]
/// for the layout and why). A `HashTable` rather than a `HashSet` because it
/// takes the hash from us: a key is hashed once, and that one hash picks
/// both the stripe and the slot within it.
type Stripe = HashTable<Entry>;

pub struct Table {
    /// The lock stripes; `<table-size>` of them.
    stripes: Box<[RwLock<Stripe>]>,
    /// Hashes keys (SipHash, seeded randomly so clients cannot aim many keys
    /// at one stripe or one slot).
    key_hasher: RandomState,
    /// Number of keys, updated while the stripe's write lock is held so it
    /// never disagrees with a completed write.
    key_count: AtomicU64,
    /// Sum of key and value lengths, updated like `key_count`.
    byte_count: AtomicU64,
}

impl Table {
    /// A table with `stripe_count` lock stripes.
    pub fn new(stripe_count: usize) -> Table {
        assert!(stripe_count > 0, "a table needs at least one stripe");
        assert!(stripe_count <= u32::MAX as usize, "stripe_index scales a 32-bit number");
        Table {
            stripes: (0..stripe_count).map(|_| RwLock::new(Stripe::new())).collect(),
            key_hasher: RandomState::new(),
            key_count: AtomicU64::new(0),
            byte_count: AtomicU64::new(0),
        }
    }

    /// The hash of a key's bytes, the same for a `&str` being looked up and
    /// for a stored entry's key.
    fn hash(&self, key: &[u8]) -> u64 {
        let mut hasher = self.key_hasher.build_hasher();
        hasher.write(key);
        hasher.finish()
    }

    /// `key`'s hash and stripe.
    fn locate(&self, key: &str) -> (u64, &RwLock<Stripe>) {
        let hash = self.hash(key.as_bytes());
        (hash, &self.stripes[stripe_index(hash, self.stripes.len())])
    }

    /// Each key's hash and stripe index, and the distinct stripe indexes
    /// in the order they are locked in.
    fn locate_all<'key>(&self, keys: impl Iterator<Item = &'key str>) -> (Vec<(u64, usize)>, Vec<usize>) {
        let located: Vec<(u64, usize)> = keys
            .map(|key| {
                let hash = self.hash(key.as_bytes());
                (hash, stripe_index(hash, self.stripes.len()))
            })
            .collect();
        let mut indexes: Vec<usize> = located.iter().map(|&(_, index)| index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        (located, indexes)
    }

    /// Sets `key` to `value`; returns whether the key existed before. Takes
    /// the value by reference (an owned `Vec` works too): it is copied next
    /// to the key into the entry's single allocation anyway.
    pub fn put(&self, key: &str, value: impl AsRef<[u8]>) -> bool {
        let entry = Entry::new(key, value.as_ref());
        let (hash, stripe) = self.locate(key);
        // The old entry is freed after the lock is released.
        let replaced = self.insert(&mut stripe.write(), hash, key, entry);
        replaced.is_some()
    }

    /// Sets every `(key, value)` of `pairs` at once: the stripes they fall
    /// in are write-locked together, in index order, before the first is
    /// set, so no reader sees some of them set and others not (MSET). A key
    /// given twice ends with its last value.
    pub fn put_many(&self, pairs: &[(&str, &[u8])]) {
        let (located, indexes) = self.locate_all(pairs.iter().map(|(key, _)| *key));
        let mut guards: Vec<_> = indexes.iter().map(|&index| self.stripes[index].write()).collect();
        let mut replaced = Vec::with_capacity(pairs.len());
        for (&(key, value), &(hash, index)) in pairs.iter().zip(&located) {
            let guard = &mut guards[indexes.binary_search(&index).expect("its stripe is locked")];
            replaced.push(self.insert(guard, hash, key, Entry::new(key, value)));
        }
        drop(guards);
        drop(replaced);
    }

    /// Puts `entry` (of hash `hash`) into its locked `stripe` and keeps the
    /// counts; returns the entry it replaced, to be freed by the caller
    /// after the lock is released.
    fn insert(&self, stripe: &mut Stripe, hash: u64, key: &str, entry: Entry) -> Option<Entry> {
        let added_bytes = entry.data_len() as u64;
        let is_key = |stored: &Entry| stored.has_key(key);
        let replaced = match stripe.entry(hash, is_key, |stored| self.hash(stored.key_bytes())) {
            Slot::Occupied(mut slot) => Some(std::mem::replace(slot.get_mut(), entry)),
            Slot::Vacant(slot) => {
                slot.insert(entry);
                None
            }
        };
        self.byte_count.fetch_add(added_bytes, Ordering::Relaxed);
        match &replaced {
            Some(old) => self.byte_count.fetch_sub(old.data_len() as u64, Ordering::Relaxed),
            None => self.key_count.fetch_add(1, Ordering::Relaxed),
        };
        replaced
    }

    /// The values of `keys` (`None` where absent), read at one moment (see
    /// [`Table::with_looked_up`]), if their [`Table::lookup_bytes`] are at
    /// most `bytes_max`; otherwise those bytes, found before anything is
    /// copied (MGET).
    pub fn get_many(&self, keys: &[String], bytes_max: u64) -> Result<Vec<Option<Vec<u8>>>, u64> {
        self.with_looked_up(keys, |values| {
            let bytes = lookup_bytes(&values);
            if bytes > bytes_max {
                return Err(bytes);
            }
            Ok(values.into_iter().map(|value| value.map(<[u8]>::to_vec)).collect())
        })
    }

    /// The bytes an MGET reply of `keys` needs now: each value and a
    /// lookup's framing.
    pub fn lookup_bytes(&self, keys: &[String]) -> u64 {
        self.with_looked_up(keys, |values| lookup_bytes(&values))
    }

    /// `visit` of the values of `keys` at one moment: the stripes they fall
    /// in are read-locked together, in index order, so no write lands
    /// between two of them.
    fn with_looked_up<T>(&self, keys: &[String], visit: impl FnOnce(Vec<Option<&[u8]>>) -> T) -> T {
        let (located, indexes) = self.locate_all(keys.iter().map(String::as_str));
        let guards: Vec<_> = indexes.iter().map(|&index| self.stripes[index].read()).collect();
        let values = keys
            .iter()
            .zip(&located)
            .map(|(key, &(hash, index))| {
                let stripe = &guards[indexes.binary_search(&index).expect("its stripe is locked")];
                stripe.find(hash, |stored| stored.has_key(key)).map(Entry::value)
            })
            .collect();
        visit(values)
    }

    /// A copy of the value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.read_value(key, <[u8]>::to_vec)
    }

    /// The length of `key`'s value, if present, without copying it.
    pub fn value_len(&self, key: &str) -> Option<usize> {
        self.read_value(key, <[u8]>::len)
    }

    /// `read` of `key`'s value, if present, under its stripe's read lock.
    fn read_value<T>(&self, key: &str, read: impl FnOnce(&[u8]) -> T) -> Option<T> {
        let (hash, stripe) = self.locate(key);
        let stripe = stripe.read();
        stripe.find(hash, |stored| stored.has_key(key)).map(|entry| read(entry.value()))
    }

    /// Removes `key`; returns whether it existed.
    pub fn delete(&self, key: &str) -> bool {
        let (hash, stripe) = self.locate(key);
        let removed = {
            let mut stripe = stripe.write();
            let removed = match stripe.find_entry(hash, |stored| stored.has_key(key)) {
                Ok(slot) => Some(slot.remove().0),
                Err(_) => None,
            };
            if let Some(entry) = &removed {
                self.key_count.fetch_sub(1, Ordering::Relaxed);
                self.byte_count.fetch_sub(entry.data_len() as u64, Ordering::Relaxed);
            }
            removed
        };
        removed.is_some()
    }

    /// Number of keys.
    pub fn len(&self) -> u64 {
        self.key_count.load(Ordering::Relaxed)
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of keys and values stored (not counting the hash table itself).
    pub fn bytes_stored(&self) -> u64 {
        self.byte_count.load(Ordering::Relaxed)
    }

    /// Number of lock stripes.
    pub fn stripe_count(&self) -> usize {
        self.stripes.len()
    }

    /// Every key, sorted, from one consistent snapshot.
    pub fn keys(&self) -> Vec<String> {
        self.keys_within(u64::MAX).expect("no limit")
    }

    /// Every (key, value), sorted by key, from one consistent snapshot.
    #[cfg(test)]
    pub fn entries(&self) -> Vec<(String, Vec<u8>)> {
        self.entries_within(u64::MAX).expect("no limit")
    }

    /// Every entry as one consistent copy, unsorted: a shared count raised
    /// per key, nothing copied (see `entry`). A state transfer takes it
    /// under the node's lock, so writes wait for it.
    pub fn copy_entries(&self) -> Vec<Entry> {
        let stripes = self.lock_all_for_reading();
        let mut copy = Vec::with_capacity(stripes.iter().map(|stripe| stripe.len()).sum());
        copy.extend(stripes.iter().flat_map(|stripe| stripe.iter()).cloned());
        copy
    }

    /// Like [`Table::keys`] if the reply would be at most `bytes_max` bytes
    /// (see [`encoded_bytes`]); otherwise its size, found before anything
    /// is copied.
    pub fn keys_within(&self, bytes_max: u64) -> Result<Vec<String>, u64> {
        self.listing(bytes_max, Self::key_bytes, |entry| entry.key().to_owned())
    }

    /// Every (key, value), sorted by key, from one consistent snapshot, if
    /// the reply would be at most `bytes_max` bytes; otherwise its size,
    /// found before anything is copied.
    pub fn entries_within(&self, bytes_max: u64) -> Result<Vec<(String, Vec<u8>)>, u64> {
        self.listing(bytes_max, Self::entry_bytes, |entry| (entry.key().to_owned(), entry.value().to_vec()))
    }

    /// Bytes of a `getkeys` (`with_values` false) or `gettable` reply now,
    /// counted without copying anything.
    pub fn listing_bytes(&self, with_values: bool) -> u64 {
        let stripes = self.lock_all_for_reading();
        total_bytes(&stripes, if with_values { Self::entry_bytes } else { Self::key_bytes })
    }

    /// A `getkeys` reply's bytes for `entry`.
    fn key_bytes(entry: &Entry) -> usize {
        encoded_bytes(entry.key_bytes().len(), None)
    }

    /// A `gettable` reply's bytes for `entry`.
    fn entry_bytes(entry: &Entry) -> usize {
        encoded_bytes(entry.key_bytes().len(), Some(entry.value().len()))
    }

    /// `copy` of every entry, sorted (keys are unique, so items sort by
    /// key), from one consistent snapshot, if the sum of their `bytes` is at
    /// most `bytes_max`; otherwise that sum.
    fn listing<T: Ord>(
        &self,
        bytes_max: u64,
        bytes: fn(&Entry) -> usize,
        copy: impl Fn(&Entry) -> T,
    ) -> Result<Vec<T>, u64> {
        let stripes = self.lock_all_for_reading();
        let total = total_bytes(&stripes, bytes);
        if total > bytes_max {
            return Err(total);
        }
        let mut copied: Vec<T> = stripes.iter().flat_map(|stripe| stripe.iter()).map(copy).collect();
        copied.sort_unstable();
        Ok(copied)
    }

    /// Calls `visit` with every entry, one stripe at a time under that
    /// stripe's read lock (so not one consistent snapshot: see `scan` for
    /// what that gives).
    pub(super) fn visit_entries(&self, mut visit: impl FnMut(&Entry)) {
        for stripe in self.stripes.iter() {
            for entry in stripe.read().iter() {
                visit(entry);
            }
        }
    }

    /// A copy of stripe `index`'s entries, under its read lock only: a
    /// snapshot file copies the table one stripe at a time, so writes to the
    /// other stripes go on meanwhile.
    pub fn stripe_entries(&self, index: usize) -> Vec<(String, Vec<u8>)> {
        let stripe = self.stripes[index].read();
        stripe.iter().map(|entry| (entry.key().to_owned(), entry.value().to_vec())).collect()
    }

    /// The (key, value) pairs whose key `wanted` accepts, stripe by stripe
    /// (a migration's snapshot of its slots, taken while its caller holds
    /// the writes back, so the stripes agree).
    pub fn entries_where(&self, wanted: impl Fn(&str) -> bool) -> Vec<(String, Vec<u8>)> {
        let mut entries = Vec::new();
        for stripe in &self.stripes {
            let stripe = stripe.read();
            let chosen = stripe.iter().filter(|entry| wanted(entry.key()));
            entries.extend(chosen.map(|entry| (entry.key().to_owned(), entry.value().to_vec())));
        }
        entries
    }

    /// Removes every key (a server that rejoins, or installs a snapshot,
    /// starts empty). Takes the write locks in index order, like snapshots.
    pub fn clear(&self) {
        let mut stripes: Vec<_> = self.stripes.iter().map(|stripe| stripe.write()).collect();
        for stripe in &mut stripes {
            // A new stripe rather than `clear`, which would keep the buckets.
            **stripe = Stripe::new();
        }
        self.key_count.store(0, Ordering::Relaxed);
        self.byte_count.store(0, Ordering::Relaxed);
    }

    /// Read guards on every stripe, taken in index order (see the module doc
    /// for why this cannot deadlock).
    fn lock_all_for_reading(&self) -> Vec<parking_lot::RwLockReadGuard<'_, Stripe>> {
        self.stripes.iter().map(|stripe| stripe.read()).collect()
    }
}

/// The sum of `bytes` over every entry of `stripes`.
fn total_bytes(stripes: &[parking_lot::RwLockReadGuard<'_, Stripe>], bytes: fn(&Entry) -> usize) -> u64 {
    stripes.iter().flat_map(|stripe| stripe.iter()).map(|entry| bytes(entry) as u64).sum()
}

/// What an MGET reply holds for `values`: each value and its framing (a
/// `Lookup` is a flag and a value, in a field with a two-byte tag).
fn lookup_bytes(values: &[Option<&[u8]>]) -> u64 {
    values.iter().map(|value| encoded_bytes(2, Some(value.map_or(0, <[u8]>::len))) as u64).sum()
}

/// The stripe of a key with hash `hash`, out of `stripe_count`.
///
/// The stripe's `HashTable` takes its slot from the same hash (hashbrown uses
/// the low bits for the slot and the top seven as a tag), so the stripe must
/// not be a plain function of those bits: with `hash % 1024`, every key of a
/// stripe would share its low ten bits and crowd a few slots. Multiplying by
/// an odd constant makes the product's high 32 bits depend on all the hash's
/// bits; scaling them to `stripe_count` (multiply and shift, no division)
/// picks the stripe, and the keys of one stripe keep well-spread low and top
/// bits.
fn stripe_index(hash: u64, stripe_count: usize) -> usize {
    const ODD_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15; // 2^64 / golden ratio
    let mixed = hash.wrapping_mul(ODD_MULTIPLIER) >> 32;
    ((mixed * stripe_count as u64) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::thread;

    #[test]
    fn put_get_delete() {
        let table = Table::new(4);
        assert!(table.is_empty());
        assert!(!table.put("a", b"1"));
        assert!(table.put("a", b"22"));
        assert_eq!(table.get("a"), Some(b"22".to_vec()));
        assert_eq!((table.value_len("a"), table.value_len("b")), (Some(2), None));
        assert_eq!(table.len(), 1);
        assert_eq!(table.bytes_stored(), 3);
        assert!(table.delete("a"));
        assert!(!table.delete("a"));
        assert_eq!(table.get("a"), None);
        assert_eq!(table.len(), 0);
        assert_eq!(table.bytes_stored(), 0);
        table.put("b", b"1");
        table.clear();
        assert!(table.is_empty() && table.keys().is_empty());
        assert_eq!(table.bytes_stored(), 0);
    }

    #[test]
    fn replacing_with_other_sizes_keeps_bytes_stored_exact() {
        let table = Table::new(2);
        let mut expected = 0;
        for (key, size) in [("k", 100), ("k", 0), ("k", 300), ("", 5), ("", 0), ("kk", 1)] {
            let existed = table.get(key).map(|old| old.len() + key.len());
            assert_eq!(table.put(key, vec![b'x'; size]), existed.is_some());
            expected = expected - existed.unwrap_or(0) + key.len() + size;
            assert_eq!(table.bytes_stored(), expected as u64, "after {key:?} := {size} bytes");
            assert_eq!(table.get(key), Some(vec![b'x'; size]));
        }
        assert_eq!(table.len(), 3);
        assert!(table.delete("k"));
        assert_eq!(table.bytes_stored(), 1 + 2);
    }

    #[test]
    fn empty_and_non_ascii_keys_and_empty_values() {
        let table = Table::new(4);
        table.put("", b"empty key");
        table.put("ключ-鍵-🔑", b"");
        table.put("plain", "värde".as_bytes());
        assert_eq!(table.get(""), Some(b"empty key".to_vec()));
        assert_eq!(table.get("ключ-鍵-🔑"), Some(Vec::new()));
        assert_eq!(table.keys(), vec!["", "plain", "ключ-鍵-🔑"]);
        let entries = table.entries();
        assert_eq!(entries[2], ("ключ-鍵-🔑".to_owned(), Vec::new()));
        assert_eq!(entries[1], ("plain".to_owned(), "värde".as_bytes().to_vec()));
        let expected: usize = entries.iter().map(|(key, value)| key.len() + value.len()).sum();
        assert_eq!(table.bytes_stored(), expected as u64);
        assert!(table.delete(""));
        assert_eq!(table.get(""), None);
    }

    /// Keys spread evenly over the stripes, and the keys of one stripe still
    /// spread over the low bits (the slot) and top bits (the tag) that its
    /// `HashTable` takes from the same hash.
    #[test]
    fn stripes_and_slots_use_independent_bits() {
        use std::hash::DefaultHasher;
        let hashes: Vec<u64> = (0..200_000u64)
            .map(|index| {
                let mut hasher = DefaultHasher::new();
                hasher.write_u64(index);
                hasher.finish()
            })
            .collect();
        let mut per_stripe = vec![0; 1024];
        let mut low_bits_of_stripe_0 = [0; 64];
        let mut top_bits_of_stripe_0 = [0; 64];
        for &hash in &hashes {
            let stripe = stripe_index(hash, 1024);
            per_stripe[stripe] += 1;
            if stripe == 0 {
                low_bits_of_stripe_0[(hash & 63) as usize] += 1;
                top_bits_of_stripe_0[(hash >> 58) as usize] += 1;
            }
        }
        // About 195 keys a stripe, about 3 for each of the 64 bit patterns.
        assert!(per_stripe.iter().all(|&count| (120..280).contains(&count)), "{per_stripe:?}");
        assert!(low_bits_of_stripe_0.iter().filter(|&&count| count > 0).count() > 48);
        assert!(top_bits_of_stripe_0.iter().filter(|&&count| count > 0).count() > 48);
        assert!(hashes.iter().all(|&hash| stripe_index(hash, 1) == 0));
        assert!(hashes.iter().all(|&hash| stripe_index(hash, 3) < 3));
    }

    #[test]
    fn keys_and_entries_are_sorted() {
        let table = Table::new(3);
        for key in ["c", "a", "b"] {
            table.put(key, key);
        }
        assert_eq!(table.keys(), vec!["a", "b", "c"]);
        let entries = table.entries();
        assert_eq!(entries[0], ("a".to_owned(), b"a".to_vec()));
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn listings_over_the_limit_give_their_size_instead() {
        let table = Table::new(3);
        for key in ["a", "bb", "ccc"] {
            table.put(key, b"value");
        }
        let key_bytes = table.listing_bytes(false);
        assert_eq!(key_bytes, (2 + 1) + (2 + 2) + (2 + 3));
        assert_eq!(table.keys_within(key_bytes), Ok(vec!["a".to_owned(), "bb".to_owned(), "ccc".to_owned()]));
        assert_eq!(table.keys_within(key_bytes - 1), Err(key_bytes));
        let entry_bytes = table.listing_bytes(true);
        assert_eq!(table.entries_within(entry_bytes - 1), Err(entry_bytes));
        assert_eq!(table.entries_within(entry_bytes).unwrap().len(), 3);
    }

    #[test]
    fn one_stripe_works() {
        let table = Table::new(1);
        for index in 0..100 {
            table.put(&index.to_string(), vec![index as u8]);
        }
        assert_eq!(table.len(), 100);
        assert_eq!(table.stripe_count(), 1);
    }

    #[test]
    fn concurrent_writers_and_readers_agree_on_counts() {
        let table = Arc::new(Table::new(16));
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let table = Arc::clone(&table);
                thread::spawn(move || {
                    for index in 0..2000 {
                        let key = format!("w{writer}-k{index}");
                        table.put(&key, vec![writer as u8; 10]);
                        assert_eq!(table.get(&key), Some(vec![writer as u8; 10]));
                        if index % 2 == 0 {
                            assert!(table.delete(&key));
                        }
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let table = Arc::clone(&table);
                thread::spawn(move || {
                    for _ in 0..50 {
                        let entries = table.entries();
                        assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0));
                    }
                })
            })
            .collect();
        for handle in writers.into_iter().chain(readers) {
            handle.join().unwrap();
        }
        assert_eq!(table.len(), 8 * 1000);
        assert_eq!(table.keys().len(), 8 * 1000);
        let expected_bytes: u64 =
            table.entries().iter().map(|(key, value)| (key.len() + value.len()) as u64).sum();
        assert_eq!(table.bytes_stored(), expected_bytes);
    }

    /// Two keys that sit in different stripes of `table`.
    fn keys_in_two_stripes(table: &Table) -> (String, String) {
        let left = "left".to_owned();
        let right = (0..)
            .map(|index| format!("right{index}"))
            .find(|key| !std::ptr::eq(table.locate(key).1, table.locate(&left).1))
            .unwrap();
        (left, right)
    }

    /// One writer sets "left" := n and then "right" := n, for n = 1, 2, ...
    /// (the keys sit in different stripes). A consistent snapshot sees
    /// left == right or left == right + 1; a snapshot copied stripe by stripe
    /// while the writer runs would see them drift apart.
    #[test]
    fn snapshots_are_not_torn() {
        let table = Arc::new(Table::new(64));
        let (left, right) = keys_in_two_stripes(&table);
        table.put(&left, 0u64.to_be_bytes());
        table.put(&right, 0u64.to_be_bytes());
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let table = Arc::clone(&table);
            let (left, right, stop) = (left.clone(), right.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut counter = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    counter += 1;
                    table.put(&left, counter.to_be_bytes());
                    table.put(&right, counter.to_be_bytes());
                }
            })
        };
        let decode = |bytes: &[u8]| u64::from_be_bytes(bytes.try_into().unwrap());
        for _ in 0..2000 {
            let entries: HashMap<String, Vec<u8>> = table.entries().into_iter().collect();
            let left_value = decode(&entries[&left]);
            let right_value = decode(&entries[&right]);
            assert!(
                left_value == right_value || left_value == right_value + 1,
                "torn snapshot: left={left_value} right={right_value}"
            );
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
    }

    #[test]
    fn put_many_is_seen_whole_by_get_many_and_by_single_gets() {
        let table = Arc::new(Table::new(64));
        let (left, right) = keys_in_two_stripes(&table);
        let keys = [left.clone(), right.clone()];
        table.put_many(&[(&left, &0u64.to_be_bytes()), (&right, &0u64.to_be_bytes())]);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (table, stop, keys) = (Arc::clone(&table), Arc::clone(&stop), keys.clone());
            thread::spawn(move || {
                let mut counter = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    counter += 1;
                    let bytes = counter.to_be_bytes();
                    table.put_many(&[(&keys[0], &bytes), (&keys[1], &bytes)]);
                }
            })
        };
        let decode = |bytes: &[u8]| u64::from_be_bytes(bytes.try_into().unwrap());
        for _ in 0..20_000 {
            let both = table.get_many(&keys, u64::MAX).unwrap();
            let (left_value, right_value) =
                (decode(both[0].as_ref().unwrap()), decode(both[1].as_ref().unwrap()));
            assert_eq!(left_value, right_value, "get_many saw half of a put_many");
            // One key, then the other: the second never shows an older write.
            let first = decode(&table.get(&left).unwrap());
            let second = decode(&table.get(&right).unwrap());
            assert!(second >= first, "saw left={first} and then right={second}");
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert_eq!(table.len(), 2);
        let sizes = table.lookup_bytes(&keys);
        assert_eq!(table.get_many(&keys, sizes - 1), Err(sizes), "refused past its limit, with the size");
    }
}
