//! The write-ahead log's segment files: `<number, 20 digits>.wal` in the
//! data directory, numbered from 0 without gaps, appended to in order.
//!
//! A segment is closed and the next begun when it passes
//! [`SEGMENT_BYTES`](crate::limits::WAL_SEGMENT_BYTES), and whenever a
//! snapshot begins (a snapshot names the first segment after it, so the
//! segments before can be deleted once it is on disk).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::dir::sync_dir;

/// The path of segment `number`.
pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.wal"))
}

/// The numbers of the files in `dir` named `<20 digits>.<extension>`, in order.
pub fn numbered(dir: &Path, extension: &str) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(extension).and_then(|stem| stem.strip_suffix('.'))
            && stem.len() == 20
            && let Ok(number) = stem.parse()
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The segment being appended to.
pub struct LogWriter {
    dir: PathBuf,
    file: File,
    number: u64,
    /// Bytes appended to the segment.
    length: u64,
    /// Bytes of it known on disk (at the last successful sync).
    synced: u64,
}

impl LogWriter {
    /// Begins segment `number` (a new, empty file).
    pub fn create(dir: &Path, number: u64) -> io::Result<LogWriter> {
        let file = OpenOptions::new().append(true).create_new(true).open(segment_path(dir, number))?;
        sync_dir(dir)?;
        Ok(LogWriter { dir: dir.to_owned(), file, number, length: 0, synced: 0 })
    }

    /// Appends `bytes` (whole records). After an error, call
    /// [`LogWriter::abandon`] before anything else.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.length += bytes.len() as u64;
        Ok(())
    }

    /// Makes what was appended durable (`fdatasync`).
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.synced = self.length;
        Ok(())
    }

    /// Closes this segment (synced) and begins the next; returns its number.
    pub fn roll(&mut self) -> io::Result<u64> {
        self.sync()?;
        let next = LogWriter::create(&self.dir, self.number + 1)?;
        *self = next;
        Ok(self.number)
    }

    /// After a failed append or sync: cut the segment back to what was last
    /// synced, so that it ends in whole records again; the caller appends
    /// everything since that sync again. (After a failed sync the kernel may
    /// have dropped the unsynced pages and will not say so again, as
    /// PostgreSQL's "fsyncgate" showed: so they are written anew, never
    /// trusted to a second sync.)
    pub fn abandon(&mut self) -> io::Result<()> {
        self.file.set_len(self.synced)?;
        self.file.sync_all()?;
        self.length = self.synced;
        Ok(())
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    /// Bytes in this segment.
    pub fn length(&self) -> u64 {
        self.length
    }
}

/// Deletes the segments numbered below `first_kept` (a snapshot holds
/// them) and syncs the directory.
pub fn delete_before(dir: &Path, first_kept: u64, extension: &str) -> io::Result<usize> {
    let mut deleted = 0;
    for number in numbered(dir, extension)?.into_iter().filter(|number| *number < first_kept) {
        fs::remove_file(dir.join(format!("{number:020}.{extension}")))?;
        deleted += 1;
    }
    if deleted > 0 {
        sync_dir(dir)?;
    }
    Ok(deleted)
}
