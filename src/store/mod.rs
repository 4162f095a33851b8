//! The data a server holds. Today one in-memory table; later the versions
//! CRAQ reads need and the snapshot and log that durability needs.
//!
//! - [`table`]: the striped `RwLock` hash table with consistent snapshots.
//! - [`scan`]: SCAN, one page of the table in key order after a cursor.
//! - [`Entry`]: one key-value pair in a single allocation (the table's own).

mod entry;
pub use entry::Entry;
pub mod scan;
pub mod table;
