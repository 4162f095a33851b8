//! Snapshot files: `<first segment, 20 digits>.snap`, the table as of a
//! point in the log, so that the segments before that point can go.
//!
//! ```text
//! Reset, Chunk..., Chunk (last), Header
//! ```
//!
//! The chunks are `SnapshotChunk`s, as a state transfer sends them (the
//! last one carries the sequence number and the newest write epoch). The
//! table is copied stripe by stripe while writes go on, so it may already
//! hold some writes after that sequence number: replaying the log from
//! the segment the header names sets each such key again to the same or a
//! later state, which ends where the log ends (writes carry states, not
//! operations). Those writes must be on disk before the snapshot is: the
//! header's `end` (the last write applied when the copy ended) is synced
//! before the file is renamed into place. The header comes last, so a file
//! without it was never finished.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use protobuf::Message;

use super::dir::sync_dir;
use super::frame::{self, Ending, Kind, Record};
use crate::proto::SnapshotChunk;

/// What a snapshot's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The sequence number it was taken at (the client records and
    /// deadlines are exactly as of it).
    pub sequence: u64,
    pub generation: u64,
    /// The last write applied when the copy ended; on disk in the log.
    pub end: u64,
    /// The first log segment after it.
    pub first_segment: u64,
}

pub fn snapshot_path(dir: &Path, first_segment: u64) -> PathBuf {
    dir.join(format!("{first_segment:020}.snap"))
}

/// A snapshot file being written (under a temporary name).
pub struct SnapshotWriter {
    dir: PathBuf,
    temporary: PathBuf,
    file: BufWriter<File>,
    buffer: Vec<u8>,
}

impl SnapshotWriter {
    pub fn begin(dir: &Path, first_segment: u64) -> io::Result<SnapshotWriter> {
        let temporary = dir.join(format!("{first_segment:020}.snap.tmp"));
        let file = BufWriter::with_capacity(1 << 20, File::create(&temporary)?);
        let mut writer = SnapshotWriter { dir: dir.to_owned(), temporary, file, buffer: Vec::new() };
        writer.record(Kind::Reset, 0, 0, &[])?;
        Ok(writer)
    }

    fn record(&mut self, kind: Kind, sequence: u64, generation: u64, payload: &[u8]) -> io::Result<()> {
        self.buffer.clear();
        frame::encode(kind, sequence, generation, payload, &mut self.buffer);
        self.file.write_all(&self.buffer)
    }

    pub fn chunk(&mut self, chunk: &SnapshotChunk) -> io::Result<()> {
        let payload = chunk.write_to_bytes().map_err(io::Error::other)?;
        self.record(Kind::Chunk, chunk.sequence, 0, &payload)
    }

    /// Writes the header, syncs, and renames the file into place.
    pub fn finish(mut self, header: Header) -> io::Result<()> {
        let mut payload = header.end.to_le_bytes().to_vec();
        payload.extend_from_slice(&header.first_segment.to_le_bytes());
        self.record(Kind::Header, header.sequence, header.generation, &payload)?;
        let file = self.file.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.temporary, snapshot_path(&self.dir, header.first_segment))?;
        sync_dir(&self.dir)
    }

    /// Gives up: the temporary file goes.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.temporary);
    }
}

/// Reads snapshot `first_segment`: its records before the header (a Reset
/// and the chunks), and the header. Any damage is an error: a snapshot is
/// renamed into place only once whole and synced.
pub fn read_snapshot(dir: &Path, first_segment: u64) -> Result<(Vec<Record>, Header), String> {
    let path = snapshot_path(dir, first_segment);
    let bytes = fs::read(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    let (mut records, ending) = frame::decode_all(&bytes);
    if ending != Ending::Clean {
        return Err(format!("{}: damaged ({ending:?})", path.display()));
    }
    let header = match records.pop() {
        Some(Record { kind: Kind::Header, sequence, generation, payload }) if payload.len() == 16 => Header {
            sequence,
            generation,
            end: u64::from_le_bytes(payload[0..8].try_into().expect("8 bytes")),
            first_segment: u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes")),
        },
        _ => return Err(format!("{}: no header at its end", path.display())),
    };
    if header.first_segment != first_segment {
        return Err(format!("{}: its header names segment {}", path.display(), header.first_segment));
    }
    Ok((records, header))
}
