//! Reading a data directory back at start: the latest snapshot, then every
//! log segment after it, in order.
//!
//! A torn last record (a crash in the middle of an append) is cut off with
//! a warning. Anything else wrong (a checksum error before the end, a
//! missing segment, a damaged snapshot, a record that does not decode) is
//! an error that names the file, and nothing is changed: the operator
//! decides, the server never starts with less than it had.

use std::fs::{self, OpenOptions};
use std::path::Path;

use log::warn;

use super::codec;
use super::frame::{self, Ending};
use super::log::{numbered, segment_path};
use super::snapshot::read_snapshot;
use crate::chain::Durable;

/// What recovery found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The segment to append to next.
    pub next_segment: u64,
    /// The snapshot's `end`: the log must reach it (0 without a snapshot).
    pub snapshot_end: u64,
    /// Records read (snapshot and log).
    pub records: u64,
    /// The last write the directory holds.
    pub last_write: u64,
}

/// The write sequence number the log is at after `item`.
fn reached(item: &Durable, before: u64) -> u64 {
    match item {
        Durable::Write { write, .. } => write.sequence,
        Durable::Chunk(chunk) if chunk.last => chunk.sequence,
        Durable::Chunk(_) => before,
        Durable::Reset => 0,
    }
}

/// Feeds every item of the directory to `apply`, in order.
pub fn recover(
    dir: &Path,
    mut apply: impl FnMut(Durable) -> Result<(), String>,
) -> Result<Recovered, String> {
    let at = |error: std::io::Error| format!("{}: {error}", dir.display());
    let snapshots = numbered(dir, "snap").map_err(at)?;
    let segments = numbered(dir, "wal").map_err(at)?;
    let mut recovered = Recovered::default();
    let first_segment = match snapshots.last() {
        Some(&first_segment) => {
            let (records, header) = read_snapshot(dir, first_segment)?;
            for record in records {
                let item = codec::decode(record)?;
                recovered.last_write = reached(&item, recovered.last_write);
                apply(item)?;
                recovered.records += 1;
            }
            recovered.snapshot_end = header.end;
            first_segment
        }
        None => 0,
    };
    let replayed: Vec<u64> = segments.into_iter().filter(|number| *number >= first_segment).collect();
    for (index, number) in replayed.iter().enumerate() {
        let expected = first_segment + index as u64;
        if *number != expected {
            return Err(format!("{}: missing", segment_path(dir, expected).display()));
        }
    }
    if replayed.is_empty() && !snapshots.is_empty() {
        return Err(format!("{}: missing", segment_path(dir, first_segment).display()));
    }
    let mut torn = None;
    for (index, number) in replayed.iter().enumerate() {
        let path = segment_path(dir, *number);
        let bytes = fs::read(&path).map_err(|error| format!("{}: {error}", path.display()))?;
        let (records, ending) = frame::decode_all(&bytes);
        let last = index + 1 == replayed.len();
        match ending {
            Ending::Clean => {}
            Ending::Torn { at } if last => torn = Some((path.clone(), at, bytes.len())),
            Ending::Torn { at } => {
                return Err(format!("{}: damaged at byte {at}, and later segments follow", path.display()));
            }
            Ending::Corrupt { at, why } => {
                return Err(format!("{}: damaged at byte {at}: {why}", path.display()));
            }
        }
        for record in records {
            let item = codec::decode(record).map_err(|why| format!("{}: {why}", path.display()))?;
            recovered.last_write = reached(&item, recovered.last_write);
            apply(item)?;
            recovered.records += 1;
        }
    }
    if recovered.last_write < recovered.snapshot_end {
        return Err(format!(
            "{}: the log ends at write {} but the snapshot holds writes up to {}: log records are missing",
            dir.display(),
            recovered.last_write,
            recovered.snapshot_end
        ));
    }
    if let Some((path, at, length)) = torn {
        warn!("{}: cutting off a torn last record ({} bytes at byte {at})", path.display(), length - at);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        file.set_len(at as u64)
            .and_then(|()| file.sync_all())
            .map_err(|error| format!("{}: {error}", path.display()))?;
    }
    recovered.next_segment = replayed.last().map_or(first_segment, |last| last + 1);
    Ok(recovered)
}
