//! The open-files limit. Every client connection costs a server three file
//! descriptors (the socket, its clone for the writing half and the clone
//! kept to shut it down), and Debian's default soft limit is 1024: without
//! raising it, a server would fail to
//! accept past ~320 clients although `--max-clients` allows thousands. The
//! hard limit is the administrator's ceiling; the soft limit may be raised
//! up to it without privileges, as Redis and most servers do at startup.

use std::io;

use crate::limits::{FILES_PER_CONNECTION, SERVER_FILES_BASE};

/// File descriptors a server needs for `connections` clients.
pub fn files_for_connections(connections: u64) -> u64 {
    FILES_PER_CONNECTION * connections + SERVER_FILES_BASE
}

/// Client connections that fit in `files` file descriptors.
pub fn connections_for_files(files: u64) -> u64 {
    files.saturating_sub(SERVER_FILES_BASE) / FILES_PER_CONNECTION
}

/// Raises the soft open-files limit to the hard limit; returns the limit now
/// in force.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the rlimit we own; no other memory.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit only reads the rlimit we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_connections_agree() {
        assert_eq!(connections_for_files(files_for_connections(10_000)), 10_000);
        assert_eq!(connections_for_files(1024), 320);
        assert_eq!(connections_for_files(10), 0);
    }

    #[test]
    fn raising_reaches_the_hard_limit_and_is_idempotent() {
        let first = raise_open_files_limit().unwrap();
        assert_eq!(raise_open_files_limit().unwrap(), first);
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
        assert_eq!(first, limit.rlim_cur);
    }
}
