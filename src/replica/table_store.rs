//! The table as the chain node's [`Store`]: what the node applies writes
//! to and decides `cas`, `incr` and `--max-memory` against.

use crate::chain::Store;
use crate::store::table::Table;

/// The table as the node's [`Store`].
pub(super) struct TableStore<'a>(pub(super) &'a Table);

impl Store for TableStore<'_> {
    fn apply(&mut self, key: &str, value: Option<Vec<u8>>) -> bool {
        match value {
            Some(value) => self.0.put(key, value),
            None => self.0.delete(key),
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn key_count(&self) -> u64 {
        self.0.len()
    }

    fn bytes_stored(&self) -> u64 {
        self.0.bytes_stored()
    }

    fn value_len(&self, key: &str) -> Option<usize> {
        self.0.value_len(key)
    }

    fn put_many(&mut self, pairs: &[(&str, &[u8])]) {
        self.0.put_many(pairs);
    }

    fn value_of(&self, key: &str) -> Option<Vec<u8>> {
        self.0.get(key)
    }
}
