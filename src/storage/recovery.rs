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
        let last = index + 1 == replayed.len();
        let (items, torn_at) =
            read_segment(&bytes, last).map_err(|why| format!("{}: {why}", path.display()))?;
        if let Some(at) = torn_at {
            torn = Some((path.clone(), at, bytes.len()));
        }
        for item in items {
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

/// The items of one log segment's `bytes`, and where a torn last record
/// begins (to be cut off), if it is the `last` segment. A torn end of an
/// earlier segment, damage before the end, or a record that does not decode
/// is an error: nothing may be skipped. (`table-check sim --durable` reads
/// its simulated disks through this too.)
pub fn read_segment(bytes: &[u8], last: bool) -> Result<(Vec<Durable>, Option<usize>), String> {
    let (records, ending) = frame::decode_all(bytes);
    let torn = match ending {
        Ending::Clean => None,
        Ending::Torn { at } if last => Some(at),
        Ending::Torn { at } => return Err(format!("damaged at byte {at}, and later segments follow")),
        Ending::Corrupt { at, why } => return Err(format!("damaged at byte {at}: {why}")),
    };
    let items = records.into_iter().map(codec::decode).collect::<Result<Vec<_>, _>>()?;
    Ok((items, torn))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::proto::Write;
    use crate::storage::log::LogWriter;
    use crate::storage::snapshot::{Header, SnapshotWriter};

    fn scratch(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("chaintable-recovery-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        path
    }

    /// Segment `number` holding writes `sequences`.
    fn segment(dir: &Path, number: u64, sequences: impl IntoIterator<Item = u64>) {
        let mut writer = LogWriter::create(dir, number).unwrap();
        let mut bytes = Vec::new();
        for sequence in sequences {
            let mut write = Write::new();
            write.sequence = sequence;
            write.key = format!("k{sequence}");
            codec::encode(&Durable::Write { generation: 1, write }, &mut bytes);
        }
        writer.append(&bytes).unwrap();
        writer.sync().unwrap();
    }

    fn writes_read(dir: &Path) -> Result<Vec<u64>, String> {
        let mut sequences = Vec::new();
        recover(dir, |item| {
            if let Durable::Write { write, .. } = item {
                sequences.push(write.sequence);
            }
            Ok(())
        })?;
        Ok(sequences)
    }

    #[test]
    fn segments_are_read_in_order_and_a_gap_between_them_is_refused() {
        let dir = scratch("gap");
        segment(&dir, 0, 1..=2);
        segment(&dir, 1, 3..=4);
        assert_eq!(writes_read(&dir), Ok(vec![1, 2, 3, 4]));
        segment(&dir, 3, 5..=5);
        let error = writes_read(&dir).unwrap_err();
        assert!(error.ends_with("00000000000000000002.wal: missing"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_record_before_the_last_segment_is_damage() {
        let dir = scratch("torn-early");
        segment(&dir, 0, 1..=2);
        segment(&dir, 1, 3..=3);
        let first = segment_path(&dir, 0);
        let length = fs::metadata(&first).unwrap().len();
        OpenOptions::new().write(true).open(&first).unwrap().set_len(length - 3).unwrap();
        let error = writes_read(&dir).unwrap_err();
        assert!(error.contains("later segments follow"), "{error}");
        assert_eq!(fs::metadata(&first).unwrap().len(), length - 3, "nothing is cut");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A snapshot holds writes up to its `end`; a log that stops short of
    /// it lost records (they were synced before the snapshot was renamed).
    #[test]
    fn a_log_that_ends_before_its_snapshot_does_is_refused() {
        let dir = scratch("short");
        let mut snapshot = SnapshotWriter::begin(&dir, 1).unwrap();
        let mut chunk = crate::proto::SnapshotChunk::new();
        chunk.sequence = 2;
        chunk.last = true;
        snapshot.chunk(&chunk).unwrap();
        snapshot.finish(Header { sequence: 2, generation: 1, end: 4, first_segment: 1 }).unwrap();
        segment(&dir, 1, 3..=3);
        let error = writes_read(&dir).unwrap_err();
        assert!(error.contains("the log ends at write 3 but the snapshot holds writes up to 4"), "{error}");
        segment(&dir, 2, 4..=4);
        assert_eq!(writes_read(&dir), Ok(vec![3, 4]), "the log from the snapshot's segment on");
        fs::remove_dir_all(&dir).unwrap();
    }
}
