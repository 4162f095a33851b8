//! The data directory: created 0700, locked so that two servers never share
//! one, and marked with the chain it belongs to (and this server's id in
//! that chain's commit records), so a directory from another chain, or
//! from standalone use, refuses to start instead of being mixed in.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "LOCK";
const IDENTITY_FILE: &str = "IDENTITY";
const IDENTITY_HEADER: &str = "chaintable data directory";

/// An open, locked data directory. The lock lasts as long as this value
/// (the kernel drops it when the process dies, also by `kill -9`).
pub struct DataDir {
    path: PathBuf,
    /// Holds the `flock`.
    _lock: File,
    /// The server id recorded in the directory (see `Replica::server_id`).
    pub server_id: u64,
}

/// The error of a directory that cannot be used, naming it.
fn refused(path: &Path, message: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("data directory {}: {message}", path.display()))
}

impl DataDir {
    /// Opens `path` for the chain `chain` ("standalone" without one),
    /// creating it (mode 0700) if absent. A new directory records
    /// `new_server_id`; an existing one keeps the id it recorded.
    pub fn open(path: &Path, chain: &str, new_server_id: u64) -> io::Result<DataDir> {
        if !path.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|error| refused(path, error))?;
        }
        if !path.is_dir() {
            return Err(refused(path, "not a directory"));
        }
        let lock = lock(path)?;
        let identity_path = path.join(IDENTITY_FILE);
        let server_id = match fs::read_to_string(&identity_path) {
            Ok(text) => check_identity(path, &text, chain)?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if let Some(stray) = data_files(path)?.first() {
                    return Err(refused(path, format!("holds {stray} but no {IDENTITY_FILE} file")));
                }
                let text = format!("{IDENTITY_HEADER}\nchain: {chain}\nserver_id: {new_server_id}\n");
                write_durably(path, IDENTITY_FILE, text.as_bytes())?;
                new_server_id
            }
            Err(error) => return Err(refused(path, error)),
        };
        Ok(DataDir { path: path.to_owned(), _lock: lock, server_id })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the directory's lock, or says which process holds it.
fn lock(path: &Path) -> io::Result<File> {
    let lock_path = path.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|error| refused(path, error))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let holder = fs::read_to_string(&lock_path).unwrap_or_default();
        return Err(refused(path, format!("in use by another server (pid {})", holder.trim())));
    }
    file.set_len(0).map_err(|error| refused(path, error))?;
    writeln!(file, "{}", std::process::id()).map_err(|error| refused(path, error))?;
    Ok(file)
}

/// The server id of an identity file that names `chain`.
fn check_identity(path: &Path, text: &str, chain: &str) -> io::Result<u64> {
    let mut lines = text.lines();
    if lines.next() != Some(IDENTITY_HEADER) {
        return Err(refused(path, format!("{IDENTITY_FILE} is not a chaintable identity")));
    }
    let mut recorded_chain = None;
    let mut server_id = None;
    for line in lines {
        if let Some(value) = line.strip_prefix("chain: ") {
            recorded_chain = Some(value);
        } else if let Some(value) = line.strip_prefix("server_id: ") {
            server_id = value.parse::<u64>().ok();
        }
    }
    match (recorded_chain, server_id) {
        (Some(recorded), Some(_)) if recorded != chain => Err(refused(
            path,
            format!("belongs to chain {recorded}, not {chain}; refusing to mix their data"),
        )),
        (Some(_), Some(id)) => Ok(id),
        _ => Err(refused(path, format!("{IDENTITY_FILE} is damaged"))),
    }
}

/// The log segments and snapshots in the directory, by name.
pub fn data_files(path: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path).map_err(|error| refused(path, error))? {
        let name = entry.map_err(|error| refused(path, error))?.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".wal") || name.ends_with(".snap") {
            names.push(name.into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Writes `name` in `dir` so that after a crash it is either absent or
/// whole: a temporary file, fsync, rename, fsync of the directory.
pub fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let temporary = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, dir.join(name))?;
    sync_dir(dir)
}

/// Makes the directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn scratch(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("chaintable-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        path
    }

    #[test]
    fn a_new_directory_is_private_locked_and_named() {
        let path = scratch("dir-new");
        let dir = DataDir::open(&path, "/chain", 42).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(dir.server_id, 42);
        let second = DataDir::open(&path, "/chain", 43).err().expect("locked");
        assert!(second.to_string().contains("in use by another server"), "{second}");
        drop(dir);
        assert_eq!(DataDir::open(&path, "/chain", 44).unwrap().server_id, 42, "the id is kept");
        let foreign = DataDir::open(&path, "/other", 45).err().expect("another chain");
        assert!(foreign.to_string().contains("belongs to chain /chain"), "{foreign}");
        fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn data_without_an_identity_is_refused() {
        let path = scratch("dir-stray");
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("00000000000000000000.wal"), b"").unwrap();
        let error = DataDir::open(&path, "standalone", 1).err().expect("refused");
        assert!(error.to_string().contains("no IDENTITY"), "{error}");
        fs::remove_dir_all(&path).unwrap();
    }
}
