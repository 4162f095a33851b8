//! Durability on disk (`--data-dir`): the write-ahead log, snapshots, and
//! recovery at start. File I/O only: what is logged and when a write counts
//! as on disk are the chain node's decisions (`chain::durable`).
//!
//! A data directory holds:
//! - `IDENTITY`: the chain it belongs to and this server's id ([`dir`]);
//! - `LOCK`: held (`flock`) by the server using it, with its pid;
//! - `<n>.wal`: log segments, numbered from 0 ([`log`]), of checksummed
//!   records ([`frame`], [`crc`], [`codec`]), written by the group-commit
//!   thread ([`syncer`]);
//! - `<n>.snap`: the latest snapshot, taken before segment `n` ([`snapshot`]);
//!   the segments before it are deleted once it is on disk.
//!
//! At start, [`recovery`] reads the snapshot and every segment after it.

pub mod codec;
pub mod crc;
pub mod dir;
pub mod frame;
pub mod log;
pub mod recovery;
pub mod snapshot;
pub mod syncer;
