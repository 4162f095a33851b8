//! Every limit in one place: sizes, counts and times, each with its value
//! and why. Those an operator may need to change have a command-line option
//! (see [`crate::cli::server_args`]) and are gathered in [`Limits`]; the
//! rest are fixed here, grouped by the part that uses them: the server's
//! requests, connections and memory here, the chain's replication,
//! membership and durability in `chain.rs`, and the tools' (client library,
//! shards, table-bench, table-check) in `tools.rs`. Every limit is reachable
//! as `crate::limits::NAME`.

use std::time::Duration;

mod chain;
mod tools;

pub use chain::*;
pub use tools::*;

// Requests and connections: the server's limits, most with a `table-server` option.

/// Largest frame accepted or sent, header excluded. Big enough for a 1 MiB
/// value with room to spare and for `gettable` on tables of moderate size;
/// small enough that one connection cannot make the server allocate without
/// bound (the length is checked before any allocation).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// Largest key. Keys are identifiers, not payloads; 16 KiB is generous.
pub const KEY_BYTES_MAX_DEFAULT: usize = 16 * 1024;

/// Largest value: half the frame, so a PUT with its envelope always fits.
pub const VALUE_BYTES_MAX_DEFAULT: usize = 32 * 1024 * 1024;

/// Concurrent client connections (Redis's default too). Each one is an OS
/// thread with a small stack (an idle one costs about 20 KiB of memory,
/// see BENCHMARKS.md) and one file descriptor; past this a newcomer gets an
/// error reply and is closed.
pub const CLIENTS_MAX_DEFAULT: usize = 10_000;

/// A connection silent for this long is closed, so a vanished peer cannot pin
/// a thread forever. Clients reconnect transparently.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 300_000;

/// A reply that cannot be written for this long (peer not reading) ends the
/// connection.
pub const WRITE_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Upper bound of `<table-size>`, the number of lock stripes.
pub const TABLE_STRIPES_MAX: usize = 1 << 20;

/// Bytes in flight across all connections (`--max-inflight`): partly
/// received frames and replies being built. Four frames of the default
/// maximum; past it connections wait instead of allocating.
pub const INFLIGHT_BYTES_MAX_DEFAULT: u64 = 256 * 1024 * 1024;

/// Request frames up to this size are not counted in `--max-inflight`: each
/// connection's own buffers hold them (at most `--max-clients` times this),
/// so small requests never wait behind large frames, and the common request
/// costs the budget nothing.
pub const INFLIGHT_EXEMPT_FRAME_BYTES: u64 = 8 * 1024;

/// How long a frame may take from its first byte to its last
/// (`--frame-timeout-ms`): a 64 MiB frame needs 10 s only below 6.4 MB/s,
/// and a client sending a byte now and then cannot hold a frame open.
pub const FRAME_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// The default `--max-clients-per-host` is this share of `--max-clients`,
/// so one host cannot lock all others out.
pub const CLIENTS_PER_HOST_DIVISOR: usize = 10;

/// Default SCAN page (when a request asks for none): large enough that a
/// whole scan visits the table few times (each page is one pass, see
/// `store::scan`), small enough that many scans fit the in-flight budget.
pub const SCAN_PAGE_BYTES_DEFAULT: usize = 4 * 1024 * 1024;

/// Most entries in one SCAN page: bounds the page's heap of keys (about
/// 20 MiB for this many short keys while the page is built). A keys-only
/// page of the default 4 MiB holds about 320,000 keys of 11 bytes, so for
/// short keys this, not the bytes, decides how many pages a listing takes.
pub const SCAN_COUNT_MAX: usize = 262_144;

/// Memory one listed key costs beyond its encoded bytes while a reply is
/// built (a `String` and its malloc chunk, or a heap slot): what a reply
/// reserves per entry in the in-flight budget.
pub const REPLY_ENTRY_OVERHEAD_BYTES: u64 = 64;

/// Room in a reply frame for everything but its listed entries (opcode,
/// ids, a cursor key up to `--max-key`, flags).
pub const REPLY_ENVELOPE_BYTES: usize = 64;

/// Stack of a connection thread: request handling is shallow and keeps its
/// buffers on the heap, so thousands of connections stay cheap.
pub const CONNECTION_STACK_BYTES: usize = 256 * 1024;

/// The server's limits, all in one place so the connection code and the
/// request handler agree.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest frame body in either direction.
    pub frame_bytes_max: usize,
    /// Largest key in a request.
    pub key_bytes_max: usize,
    /// Largest value in a PUT.
    pub value_bytes_max: usize,
    /// Concurrent client connections.
    pub clients_max: usize,
    /// How long a connection may stay silent.
    pub idle_timeout: Duration,
    /// How long one reply may take to write.
    pub write_timeout: Duration,
    /// `--max-inflight`: bytes of partly received frames and replies being
    /// built, across all connections.
    pub inflight_bytes_max: u64,
    /// `--frame-timeout-ms`: how long a frame may take from its first byte.
    pub frame_timeout: Duration,
    /// `--max-clients-per-host`; `None`: a tenth of `clients_max`.
    pub clients_per_host_max: Option<usize>,
    /// `--watch-lag-max`: committed writes a watcher may be behind before
    /// it is cut off.
    pub watch_lag_max: u64,
}

impl Limits {
    /// Connections one host (IP address) may hold.
    pub fn clients_per_host(&self) -> usize {
        self.clients_per_host_max.unwrap_or((self.clients_max / CLIENTS_PER_HOST_DIVISOR).max(1))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            key_bytes_max: KEY_BYTES_MAX_DEFAULT,
            value_bytes_max: VALUE_BYTES_MAX_DEFAULT,
            clients_max: CLIENTS_MAX_DEFAULT,
            idle_timeout: Duration::from_millis(IDLE_TIMEOUT_MS_DEFAULT),
            write_timeout: Duration::from_millis(WRITE_TIMEOUT_MS_DEFAULT),
            inflight_bytes_max: INFLIGHT_BYTES_MAX_DEFAULT,
            frame_timeout: Duration::from_millis(FRAME_TIMEOUT_MS_DEFAULT),
            clients_per_host_max: None,
            watch_lag_max: WATCH_LAG_WRITES_MAX_DEFAULT,
        }
    }
}

// Authentication (see `secure`).

/// Largest frame a replication link's sender may send before it has proved
/// the peer secret (its proof: a few dozen bytes): an outsider opening
/// links cannot make a server hold large frames.
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = 4096;

/// At most one log line per this period about links or clients that fail
/// to prove a secret: outsiders can fail as often as they like.
pub const UNAUTHENTICATED_LOG_PERIOD: Duration = Duration::from_secs(10);

// Frames, for every reader and writer of them (see `wire`).

/// Initial reservation for a frame body; larger bodies grow as data arrives.
pub const FRAME_RESERVE_BYTES: usize = 64 * 1024;

/// Frames shrink back to this after a large one, so one big transfer does
/// not keep megabytes per idle connection.
pub const FRAME_BUFFER_KEEP_BYTES: usize = 1024 * 1024;

// The server's connections (see `server`).

/// Read buffer of a connection: most requests fit, and thousands of idle
/// connections stay cheap.
pub const CONNECTION_READ_BUFFER_BYTES: usize = 8 * 1024;

/// After an accept error (e.g. out of file descriptors) the acceptor waits
/// this long instead of spinning.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

// The metrics endpoint (`--metrics-addr`, see `server::metrics`).

/// Largest HTTP request head a scrape may send: Prometheus sends about 300
/// bytes; anything much larger is not a scraper.
pub const METRICS_REQUEST_BYTES_MAX: usize = 8 * 1024;

/// A scrape's request must arrive, and its answer be taken, within this
/// time: the endpoint serves one connection at a time, so a silent one must
/// not hold it.
pub const METRICS_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections accepted beyond `--max-clients` so a predecessor's
/// replication link (which arrives on the client port) is never refused by
/// a full server. Such a connection must open with OP_REPLICATE within
/// [`OVER_LIMIT_FIRST_FRAME_TIMEOUT`], or it is refused like any client.
pub const OVER_LIMIT_HEADROOM: u64 = 8;

/// How long a connection accepted over `--max-clients` has to show it is a
/// replication link (see [`OVER_LIMIT_HEADROOM`]).
pub const OVER_LIMIT_FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a refused (over `--max-clients`) connection is given to take its
/// error reply before it is closed. Closing with unread request bytes would
/// reset the connection and could destroy the reply before the client reads it.
pub const REFUSAL_LINGER: Duration = Duration::from_millis(100);

/// At most this much of a refused connection's input is swallowed.
pub const REFUSAL_DRAIN_BYTES_MAX: usize = 64 * 1024;

/// How often the node's clock ticks: writes waiting for their commit are
/// checked against their commit timeout and the lease, and a silent
/// successor whose read lease ran out is removed (`chain::eviction`). One
/// heartbeat interval, so that removal comes within a heartbeat of being
/// due, and a tick late by more than the suspect window shows the process
/// itself stalled (which restarts the count, rather than remove a
/// successor whose acks wait unread).
pub const COMMIT_EXPIRY_PERIOD: Duration = Duration::from_millis(REPLICATION_HEARTBEAT_INTERVAL_MS);

/// How many committed writes of other clients a connection thread answers
/// after each request of its own: 2 gave 4 % fewer puts than 8 (chain of
/// 3, 50 clients, 2 cores), no limit the same as 8.
pub const SETTLED_REPLIES_PER_REQUEST: usize = 8;

/// File descriptors a server needs besides its client connections
/// (listener, ZooKeeper, replication links, log, some slack).
pub const SERVER_FILES_BASE: u64 = 64;

/// File descriptors of one client connection: its socket, shared by the
/// reading and writing halves and the registry that shuts it down (see
/// `wire::SharedSocket`).
pub const FILES_PER_CONNECTION: u64 = 1;

// Watches (see `replica::history` and `server::watch`).

/// Writes every replica keeps for watchers (`--watch-history-writes`; 0:
/// none, and watches are refused). Every replica keeps them, so that the
/// server that becomes the tail after a failover can resume a watcher from
/// the last sequence it printed: a tail failover takes about a ZooKeeper
/// session timeout (5 s by default), and 100,000 writes cover that at
/// 20,000 writes a second, about what a chain of three takes on this
/// machine.
pub const WATCH_HISTORY_WRITES_DEFAULT: usize = 100_000;

/// Bytes of keys and values the watch history holds at most
/// (`--watch-history`): with large values this, not the count, bounds it.
/// 64 MiB is a quarter of the default in-flight budget: a cost every
/// replica pays, so kept well below the table itself.
pub const WATCH_HISTORY_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// What a kept write costs beyond its key and value bytes, per key: the
/// `Recorded` entry, the `String` and `Vec` headers and allocator rounding
/// (an estimate; the limit above is about the order of magnitude).
pub const WATCH_HISTORY_ENTRY_OVERHEAD_BYTES: u64 = 96;

/// A watcher's queue: the committed writes it has not yet been sent
/// (`--watch-lag-max`). A watcher further behind is cut off with
/// ERR_WATCH_TOO_SLOW, naming the sequence to resume from. The queue is
/// the shared history, not a copy per watcher, so a slow watcher costs no
/// memory; the limit keeps it from holding history hostage and ends a
/// stream whose client stopped reading.
pub const WATCH_LAG_WRITES_MAX_DEFAULT: u64 = 10_000;

/// An idle watch stream gets a frame this often (`watched_through` only),
/// so the client can resume from it and a vanished client is noticed.
pub const WATCH_HEARTBEAT: Duration = Duration::from_secs(1);

/// A watcher reads at most this many writes of the history per look, so
/// it holds the history's lock briefly (the write path takes it once per
/// step).
pub const WATCH_READ_WRITES_MAX: usize = 4096;

/// Event bytes (keys and values) after which a watch frame is sent; a
/// write's events are never split, so a frame may hold one write more.
pub const WATCH_FRAME_EVENT_BYTES: usize = 1024 * 1024;

// ---- memory (`--max-memory`) ----

/// What one key costs in `used_memory` beyond its key and value bytes: the
/// rest of its entry's malloc chunk (a 144-byte chunk holds the shared
/// entry's 16 bytes of counts, a 1-byte length prefix, a 10-byte key and a
/// 100-byte value) and its share of its stripe's hash table (a 16-byte slot
/// and a control byte per bucket, under half full just after the table
/// doubled). Measured as resident memory growth by
/// `cargo test --release --test memory_overhead -- --nocapture`, which also
/// checks this value: 70.0 B per key with 1,000,000 keys `key:<n>` of 100 B
/// over 1024 stripes (180 B per key in all). It was 54.0 B before entries
/// were shared (`store::Entry`: a state transfer raises their counts under
/// the node's lock instead of copying the table); before, 41 to 54 B at
/// 100,000 to 900,000 keys, so the 1,000,000-key figure is the top.
pub const ENTRY_OVERHEAD_BYTES: u64 = 70;

/// What one client record (exactly-once retries) costs in `used_memory`: its
/// bucket in the records' hash map, client id and record. Measured by the
/// same command as [`ENTRY_OVERHEAD_BYTES`]: 76.1 B per record with 100,000
/// records, the default `--max-client-records`.
pub const CLIENT_RECORD_BYTES: u64 = 76;

/// What one expiring key's entry in the deadline index costs in
/// `used_memory` beyond twice its key's bytes: a hash-map bucket (a 24-byte
/// `String`, the 8-byte deadline, a control byte, under half full just
/// after doubling), a B-tree element (the same 32 bytes, nodes about two
/// thirds full) and the two key allocations' malloc rounding and headers.
/// Estimated from those sizes, not measured like the two above; rounded up
/// so the limit is not passed by undercounting.
pub const DEADLINE_OVERHEAD_BYTES: u64 = 160;

/// `bytes` for people, in the binary units `--max-memory` takes: `512 B`,
/// `64 KiB`, `1.2 MiB` (one decimal unless the size is a whole number of
/// its unit), for the startup log, refusals and warnings.
pub fn display_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let exponent = (0..UNITS.len()).rev().find(|&exponent| bytes >> (10 * exponent) > 0).unwrap_or(0);
    let unit = 1u64 << (10 * exponent);
    if bytes.is_multiple_of(unit) {
        format!("{} {}", bytes / unit, UNITS[exponent])
    } else {
        format!("{:.1} {}", bytes as f64 / unit as f64, UNITS[exponent])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(display_bytes(0), "0 B");
        assert_eq!(display_bytes(512), "512 B");
        assert_eq!(display_bytes(64 * 1024), "64 KiB");
        assert_eq!(display_bytes(1536), "1.5 KiB");
        assert_eq!(display_bytes(1_258_291), "1.2 MiB");
        assert_eq!(display_bytes(4 << 30), "4 GiB");
        assert_eq!(display_bytes(3 << 40), "3 TiB");
        assert_eq!(display_bytes(u64::MAX), "16777216.0 TiB");
    }
}
