//! Pacing the `zookeeper` crate through its log, and rate-limited warnings.
//!
//! While no ZooKeeper host answers, the crate (0.8) reconnects in a loop
//! with no pause: a failed attempt goes straight to the next one without a
//! state change we could observe, so a listener cannot pace it (measured: a
//! full core and about 20,000 lines a second of "Failed to write socket").
//! But every attempt starts by logging "Establishing Zk connection", and an
//! attempt that fails before it can start logs "Failed to connect", both on
//! the crate's I/O thread, through `log`. So the process's logger, installed
//! by [`init`], is the one place that sees every attempt on the thread that
//! makes it: it pauses that thread (no pause for the first attempt after a
//! connection was lost, then a pause doubling from
//! [`ZK_RECONNECT_PAUSE_FIRST`] up to [`ZK_RECONNECT_PAUSE_MAX`]), and it
//! passes on at most one of the crate's lines a second.
//!
//! The messages are the crate's own strings: `zookeeper` is pinned to
//! 0.8.0 in Cargo.toml, and a test below names them.

use std::cell::Cell;
use std::time::Duration;

use log::{LevelFilter, Log, Metadata, Record};

use crate::limits::{LOG_REPEAT_INTERVAL, ZK_RECONNECT_PAUSE_FIRST, ZK_RECONNECT_PAUSE_MAX};
use crate::throttle::{Every, suppressed_note};

/// Log target of the crate's I/O thread.
const CRATE_IO_TARGET: &str = "zookeeper::io";
/// What the crate logs as it starts each reconnection attempt.
const ATTEMPT_STARTS: &str = "Establishing Zk connection";
/// What it logs when an attempt fails at once and it tries the next host.
const ATTEMPT_FAILS_AT_ONCE: &str = "Failed to connect";

thread_local! {
    /// Pause before this thread's next reconnection attempt, in ms (only the
    /// crate's I/O threads ever set it).
    static NEXT_PAUSE_MS: Cell<u64> = const { Cell::new(0) };
}

/// Installs `builder`'s logger behind the pacing; for every binary.
pub fn init(builder: &mut env_logger::Builder) {
    let inner = builder.build();
    // The crate's attempts are logged at info and error: they must reach
    // us whatever the filter lets through.
    let level = inner.filter().max(LevelFilter::Info);
    let logger = PacedLogger { inner, crate_lines: Every::new(LOG_REPEAT_INTERVAL) };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

/// The connection is up again: the next reconnection attempt on this
/// thread starts without a pause. Called from a state listener, which the
/// crate runs on its I/O thread.
pub fn connected() {
    NEXT_PAUSE_MS.with(|pause| pause.set(0));
}

/// Pauses the calling thread before a reconnection attempt; see the module.
fn pace_attempt() {
    let pause = NEXT_PAUSE_MS.with(|pause| {
        let now = pause.get();
        let first = ZK_RECONNECT_PAUSE_FIRST.as_millis() as u64;
        pause.set((now * 2).clamp(first, ZK_RECONNECT_PAUSE_MAX.as_millis() as u64));
        now
    });
    std::thread::sleep(Duration::from_millis(pause));
}

/// Whether `record` is the crate starting a reconnection attempt.
fn is_attempt(record: &Record) -> bool {
    if record.target() != CRATE_IO_TARGET {
        return false;
    }
    match record.args().as_str() {
        Some(text) => text == ATTEMPT_STARTS,
        None => record.args().to_string().starts_with(ATTEMPT_FAILS_AT_ONCE),
    }
}

struct PacedLogger {
    inner: env_logger::Logger,
    crate_lines: Every,
}

impl Log for PacedLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !record.target().starts_with("zookeeper") {
            return self.inner.log(record);
        }
        if is_attempt(record) {
            pace_attempt();
        }
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        if let Some(suppressed) = self.crate_lines.due() {
            let args = record.args();
            self.inner.log(
                &Record::builder()
                    .args(format_args!("{args}{}", suppressed_note(suppressed)))
                    .metadata(record.metadata().clone())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .build(),
            );
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_crates_attempts_are_recognised_by_their_messages() {
        let attempt = |target: &str, args: std::fmt::Arguments| {
            is_attempt(&Record::builder().target(target).args(args).build())
        };
        assert!(attempt("zookeeper::io", format_args!("Establishing Zk connection")));
        let host = "127.0.0.1:1";
        assert!(attempt("zookeeper::io", format_args!("Failed to connect {host:?}: refused")));
        assert!(!attempt("zookeeper::io", format_args!("Connecting to new server {host:?}")));
        assert!(!attempt("chaintable::coord", format_args!("Establishing Zk connection")));
    }

    #[test]
    fn attempts_pause_longer_each_time_until_connected() {
        let paused = || {
            let started = Instant::now();
            pace_attempt();
            started.elapsed()
        };
        assert!(paused() < ZK_RECONNECT_PAUSE_FIRST);
        assert!(paused() >= ZK_RECONNECT_PAUSE_FIRST);
        assert!(paused() >= ZK_RECONNECT_PAUSE_FIRST * 2);
        connected();
        assert!(paused() < ZK_RECONNECT_PAUSE_FIRST);
    }
}
