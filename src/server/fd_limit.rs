//! The open-files limit. Every client connection costs a server one file
//! descriptor (its socket, shared by both halves, see `wire::SharedSocket`),
//! and Debian's default soft limit is 1024. The hard limit is the
//! administrator's ceiling; the soft limit may be raised up to it without
//! privileges, as Redis and most servers do at startup. Past the limit,
//! `accept` would fail and new clients would see their connections reset,
//! so the server lowers `--max-clients` to what the limit allows and refuses
//! the rest with a reply instead (see [`effective_clients_max`]).

use std::io;

use log::warn;

use crate::limits::{FILES_PER_CONNECTION, OVER_LIMIT_HEADROOM, SERVER_FILES_BASE};

/// File descriptors a server needs for `connections` clients (plus the
/// connections it accepts over the limit to refuse them or to find
/// replication links among them).
pub fn files_for_connections(connections: u64) -> u64 {
    FILES_PER_CONNECTION * (connections + OVER_LIMIT_HEADROOM) + SERVER_FILES_BASE
}

/// Client connections that fit in `files` file descriptors.
pub fn connections_for_files(files: u64) -> u64 {
    (files.saturating_sub(SERVER_FILES_BASE) / FILES_PER_CONNECTION).saturating_sub(OVER_LIMIT_HEADROOM)
}

/// Raises the open-files limit so `clients_max` connections fit if it can;
/// returns the `--max-clients` that fits the limit now in force (at least
/// 1), saying so once in the log when that is fewer: a warning if the
/// operator `given` that number, an info line if it is the default (a
/// default should not warn at every start).
pub fn effective_clients_max(clients_max: usize, given: bool) -> usize {
    let needed = files_for_connections(clients_max as u64);
    match raise_open_files_limit() {
        Ok(limit) if limit >= needed => clients_max,
        Ok(limit) => {
            let fitting = (connections_for_files(limit) as usize).clamp(1, clients_max);
            let level = if given { log::Level::Warn } else { log::Level::Info };
            log::log!(
                level,
                "--max-clients lowered from {clients_max} to {fitting}: the open-files limit is {limit} \
                 (raise it to {needed}, e.g. ulimit -n {needed}, for all of them)"
            );
            fitting
        }
        Err(raise_error) => {
            warn!(
                "cannot read or raise the open-files limit: {raise_error}; keeping --max-clients {clients_max}"
            );
            clients_max
        }
    }
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
        assert_eq!(connections_for_files(1024), 1024 - 64 - 8);
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
