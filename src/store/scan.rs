//! SCAN: one page of the table in key order, after a cursor.
//!
//! The cursor is the last key of the previous page, so it means the same
//! thing on every replica (their hash tables differ: each seeds its own
//! hasher) and a scan survives a change of tail. A page is built in two
//! passes, neither of which holds more than one stripe's lock at a time:
//!
//! 1. Visit every stripe and keep, in a max-heap, the smallest keys after the
//!    cursor (with the prefix) that fit the page's entry and byte limits,
//!    and the smallest key left out (the ceiling): a key at or above it is
//!    skipped after one comparison, without allocating, so the page is
//!    every key seen between the cursor and the ceiling.
//! 2. Sort them and copy their values (a key deleted since is left out).
//!
//! Guarantee: a key present for the whole scan is returned exactly once,
//! since each page holds every key present throughout between its cursor
//! and its last key (each was seen in pass 1, below the ceiling), and the
//! next page starts after that last key. Keys added or
//! removed during the scan may or may not appear.
//!
//! Cost: memory of one page (its keys in the heap, then the page itself);
//! CPU of one pass over the whole table per page (up to three key
//! comparisons for a key that does not enter the page), so a whole scan of N keys in pages
//! of P keys costs N × N / P comparisons. Large pages keep that small.

use std::collections::BinaryHeap;

use super::table::Table;

/// What one SCAN request asks for.
#[derive(Clone, Debug, Default)]
pub struct ScanRequest<'request> {
    /// Return keys after this one; `None` from the start.
    pub after: Option<&'request str>,
    /// Only keys starting with this.
    pub prefix: &'request str,
    /// At most this many entries (at least 1).
    pub count_max: usize,
    /// At most this many bytes as [`encoded_bytes`] counts them, unless one
    /// entry alone is larger: a page holds at least one entry if any is left.
    pub bytes_max: usize,
    /// Keys only, no values.
    pub keys_only: bool,
}

/// One page: keys in order, with their values unless keys only. Two
/// vectors rather than one of pairs, so a keys-only page moves into its
/// reply without another copy.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub keys: Vec<String>,
    /// The values of `keys`, in the same order; empty for keys only.
    pub values: Vec<Vec<u8>>,
    /// The cursor of the next page: the last key this page looked at.
    pub next_cursor: Option<String>,
    /// No key after this page matched when it was built.
    pub done: bool,
}

/// Bytes one entry adds to a reply: the protobuf encoding of a repeated
/// string (keys only) or of a repeated `Entry {key, value}` message.
pub fn encoded_bytes(key_len: usize, value_len: Option<usize>) -> usize {
    let field = |len: usize| 1 + varint_bytes(len) + len;
    match value_len {
        None => field(key_len),
        Some(value_len) => field(field(key_len) + field(value_len)),
    }
}

fn varint_bytes(value: usize) -> usize {
    (usize::BITS - (value | 1).leading_zeros()).div_ceil(7) as usize
}

/// A key kept for the page, ordered by key (the heap's top is the largest).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    key: String,
    bytes: usize,
}

impl Table {
    /// One page of `request` (see the module doc).
    pub fn scan(&self, request: &ScanRequest) -> ScanPage {
        assert!(request.count_max > 0, "a page holds at least one entry");
        let mut candidates = BinaryHeap::<Candidate>::new();
        let mut held_bytes = 0;
        // The smallest key left out of the page so far: every key from it on
        // is left out too, so the page stays a run of consecutive keys even
        // when room appears later (a smaller key pushed out a larger one).
        let mut ceiling: Option<String> = None;
        let after = request.after.map(str::as_bytes);
        let prefix = request.prefix.as_bytes();
        // Keys compare as bytes (the order of UTF-8 strings), so a key is
        // made a `String` only when it enters the page or becomes the ceiling.
        self.visit_entries(|entry| {
            let key = entry.key_bytes();
            if after.is_some_and(|after| key <= after)
                || !key.starts_with(prefix)
                || ceiling.as_ref().is_some_and(|ceiling| key >= ceiling.as_bytes())
            {
                return;
            }
            let bytes = encoded_bytes(key.len(), (!request.keys_only).then(|| entry.value().len()));
            if let Some(largest) = candidates.peek()
                && key > largest.key.as_bytes()
                && (candidates.len() >= request.count_max || held_bytes + bytes > request.bytes_max)
            {
                ceiling = Some(entry.key().to_owned());
                return;
            }
            candidates.push(Candidate { key: entry.key().to_owned(), bytes });
            held_bytes += bytes;
            while candidates.len() > request.count_max
                || (candidates.len() > 1 && held_bytes > request.bytes_max)
            {
                // The largest candidate, so below the ceiling: the new ceiling.
                let dropped = candidates.pop().expect("the heap is not empty");
                held_bytes -= dropped.bytes;
                ceiling = Some(dropped.key);
            }
        });
        let truncated = ceiling.is_some();
        let keys = candidates.into_sorted_vec();
        let next_cursor = keys.last().map(|last| last.key.clone());
        if request.keys_only {
            let keys = keys.into_iter().map(|candidate| candidate.key).collect();
            return ScanPage { keys, values: Vec::new(), next_cursor, done: !truncated };
        }
        self.with_values(keys, request.bytes_max, truncated)
    }

    /// Pass 2 of [`Table::scan`]: the values of `keys`, in order, while
    /// they fit `bytes_max` (values may have grown since pass 1).
    fn with_values(&self, keys: Vec<Candidate>, bytes_max: usize, truncated: bool) -> ScanPage {
        let mut page = ScanPage {
            keys: Vec::with_capacity(keys.len()),
            values: Vec::with_capacity(keys.len()),
            next_cursor: None,
            done: !truncated,
        };
        let mut page_bytes = 0;
        for candidate in keys {
            let Some(value) = self.get(&candidate.key) else {
                page.next_cursor = Some(candidate.key);
                continue;
            };
            let bytes = encoded_bytes(candidate.key.len(), Some(value.len()));
            if !page.keys.is_empty() && page_bytes + bytes > bytes_max {
                page.done = false;
                return page;
            }
            page_bytes += bytes;
            page.next_cursor = Some(candidate.key.clone());
            page.keys.push(candidate.key);
            page.values.push(value);
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;

    use protobuf::Message;

    use super::*;
    use crate::proto::{Entry, Response};

    fn table_of(keys: &[&str]) -> Table {
        let table = Table::new(4);
        for key in keys {
            table.put(key, key.as_bytes());
        }
        table
    }

    /// Every page of a whole scan, following the cursors.
    fn all_pages(table: &Table, template: &ScanRequest) -> Vec<ScanPage> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let request = ScanRequest { after: cursor.as_deref(), ..template.clone() };
            let page = table.scan(&request);
            let done = page.done;
            cursor = page.next_cursor.clone();
            pages.push(page);
            if done {
                return pages;
            }
            assert!(pages.len() < 10_000, "a scan must end");
        }
    }

    fn keys_of(pages: &[ScanPage]) -> Vec<String> {
        pages.iter().flat_map(|page| page.keys.iter().cloned()).collect()
    }

    #[test]
    fn pages_by_count_cover_every_key_once_in_order() {
        let keys: Vec<String> = (0..100).map(|index| format!("k{index:03}")).collect();
        let table = table_of(&keys.iter().map(String::as_str).collect::<Vec<_>>());
        let request = ScanRequest { count_max: 7, bytes_max: usize::MAX, ..Default::default() };
        let pages = all_pages(&table, &request);
        assert_eq!(keys_of(&pages), keys);
        assert_eq!(pages.len(), 15, "14 full pages and one of 2");
        assert!(pages[..14].iter().all(|page| page.keys.len() == 7 && page.values.len() == 7 && !page.done));
        assert_eq!((pages[0].keys[0].as_str(), pages[0].values[0].as_slice()), ("k000", &b"k000"[..]));
    }

    #[test]
    fn pages_by_bytes_stay_within_the_limit() {
        let table = Table::new(8);
        for index in 0..50 {
            table.put(&format!("key{index:02}"), vec![b'v'; 100]);
        }
        let one = encoded_bytes(5, Some(100));
        let request =
            ScanRequest { count_max: usize::MAX, bytes_max: one * 3 + one / 2, ..Default::default() };
        let pages = all_pages(&table, &request);
        assert_eq!(keys_of(&pages).len(), 50);
        for page in &pages {
            let bytes: usize = page
                .keys
                .iter()
                .zip(&page.values)
                .map(|(key, value)| encoded_bytes(key.len(), Some(value.len())))
                .sum();
            assert!(bytes <= request.bytes_max, "{bytes} > {}", request.bytes_max);
        }
        assert_eq!(pages[0].keys.len(), 3);
        // An entry larger than the whole page still comes, alone.
        let tiny = ScanRequest { count_max: 10, bytes_max: 1, ..Default::default() };
        let pages = all_pages(&table, &tiny);
        assert_eq!(keys_of(&pages).len(), 50);
        assert!(pages.iter().all(|page| page.keys.len() <= 1));
    }

    #[test]
    fn prefix_keys_only_and_an_empty_table() {
        let table = table_of(&["apple", "apricot", "banana", "ap", "a"]);
        let request = ScanRequest {
            prefix: "ap",
            count_max: 2,
            bytes_max: 1 << 20,
            keys_only: true,
            ..Default::default()
        };
        let pages = all_pages(&table, &request);
        assert_eq!(keys_of(&pages), vec!["ap", "apple", "apricot"]);
        assert!(pages.iter().all(|page| page.values.is_empty()));
        let empty = Table::new(2).scan(&ScanRequest { count_max: 5, bytes_max: 100, ..Default::default() });
        assert_eq!(empty, ScanPage { keys: Vec::new(), values: Vec::new(), next_cursor: None, done: true });
        // A cursor past every key: an empty, finished page.
        let past = table.scan(&ScanRequest {
            after: Some("zzz"),
            count_max: 5,
            bytes_max: 100,
            ..Default::default()
        });
        assert!(past.done && past.keys.is_empty());
    }

    #[test]
    fn encoded_bytes_match_protobuf() {
        for (key, value) in [("k", 0), ("key", 5), (&*"x".repeat(200), 70_000)] {
            let mut keys = Response::new();
            keys.keys.push(key.to_owned());
            assert_eq!(encoded_bytes(key.len(), None), keys.compute_size() as usize);
            let mut entries = Response::new();
            let mut entry = Entry::new();
            entry.key = key.to_owned();
            entry.value = vec![1; value];
            entries.entries.push(entry);
            // proto3 leaves out an empty value: our count is one byte over.
            let exact = entries.compute_size() as usize;
            let counted = encoded_bytes(key.len(), Some(value));
            assert!(counted == exact || (value == 0 && counted == exact + 2), "{key:?} {value}");
        }
    }

    /// Keys present throughout a scan come exactly once, while writers add
    /// and delete other keys.
    #[test]
    fn keys_present_throughout_come_exactly_once_under_writes() {
        let table = Arc::new(Table::new(16));
        let stable: BTreeSet<String> = (0..2000).map(|index| format!("s{index:05}")).collect();
        for key in &stable {
            table.put(key, b"stable");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (table, stop) = (Arc::clone(&table), Arc::clone(&stop));
            thread::spawn(move || {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) && round < 5_000_000 {
                    let key = format!("s{:05}x{}", round % 3000, round % 7);
                    table.put(&key, b"churn");
                    if round % 2 == 1 {
                        table.delete(&format!("s{:05}x{}", (round / 2) % 3000, (round / 2) % 7));
                    }
                    round += 1;
                }
            })
        };
        for round in 0..10 {
            let request = if round % 2 == 0 {
                ScanRequest { count_max: 97, bytes_max: usize::MAX, ..Default::default() }
            } else {
                ScanRequest { count_max: usize::MAX, bytes_max: 512, keys_only: true, ..Default::default() }
            };
            let seen = keys_of(&all_pages(&table, &request));
            assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "in order, none twice");
            let seen: BTreeSet<String> = seen.into_iter().collect();
            assert!(stable.is_subset(&seen), "every key present throughout came");
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
    }
}
