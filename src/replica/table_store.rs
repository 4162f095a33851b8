//! The table as the chain node's [`Store`]: what the node applies writes
//! to and decides `cas`, `incr` and `--max-memory` against.

//! Keys that start with a NUL are a migration's pause markers: the
//! [`Markers`] hear of each as it is applied.

use super::migration::Markers;
use crate::chain::Store;
use crate::store::table::Table;

/// The table as the node's [`Store`].
pub(super) struct TableStore<'a> {
    pub(super) table: &'a Table,
    pub(super) markers: &'a Markers,
}

impl Store for TableStore<'_> {
    fn apply(&mut self, key: &str, value: Option<Vec<u8>>) -> bool {
        if key.starts_with('\u{0}') {
            self.markers.note(key, value.as_deref());
        }
        match value {
            Some(value) => self.table.put(key, value),
            None => self.table.delete(key),
        }
    }

    fn clear(&mut self) {
        self.markers.clear();
        self.table.clear();
    }

    fn key_count(&self) -> u64 {
        self.table.len()
    }

    fn bytes_stored(&self) -> u64 {
        self.table.bytes_stored()
    }

    fn value_len(&self, key: &str) -> Option<usize> {
        self.table.value_len(key)
    }

    fn put_many(&mut self, pairs: &[(&str, &[u8])]) {
        for (key, value) in pairs.iter().filter(|(key, _)| key.starts_with('\u{0}')) {
            self.markers.note(key, Some(value));
        }
        self.table.put_many(pairs);
    }

    fn value_of(&self, key: &str) -> Option<Vec<u8>> {
        self.table.get(key)
    }
}
