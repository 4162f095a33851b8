//! Every limit in one place: sizes, counts and times, each with its value
//! and why. Those an operator may need to change have a command-line option
//! (see [`crate::cli::server_args`]) and are gathered in [`Limits`]; the
//! rest are fixed here, grouped by the part that uses them.

use std::time::Duration;

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

// ZooKeeper (see `coord`).

/// Default ZooKeeper session timeout of a server (`--zk-timeout-ms`); also
/// how long it serves without confirming its session.
pub const ZK_TIMEOUT_MS_DEFAULT: u64 = 5000;

/// How long a probe of a ZooKeeper host may take, connection and handshake
/// together (hosts are probed in parallel; see `coord::handshake`).
pub const ZK_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause before the second attempt to reconnect to ZooKeeper after a lost
/// connection (the first is immediate); it doubles with each failed
/// attempt up to [`ZK_RECONNECT_PAUSE_MAX`] (see `coord::log_pace`).
pub const ZK_RECONNECT_PAUSE_FIRST: Duration = Duration::from_millis(50);

/// Longest pause between attempts to reconnect to ZooKeeper: while it is
/// down, a process tries about once a second.
pub const ZK_RECONNECT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// A log line that repeats (the `zookeeper` crate's, a failing ZooKeeper
/// call, children of the chain node that are ignored) goes out at most once
/// per this interval, with a count of the ones held back.
pub const LOG_REPEAT_INTERVAL: Duration = Duration::from_secs(1);

/// ZooKeeper calls queued for a server's ZooKeeper worker thread (see
/// `coord::zk::BoundedZk`). Its one caller, the membership thread, waits for
/// each call, so calls queue up only behind one stuck in the `zookeeper`
/// crate, and each timed-out call already ends the session. When the queue is
/// full a call waits for room within its own time limit and, if none comes,
/// fails with `OperationTimeout` like a call that went unanswered.
pub const ZK_CALLS_QUEUED_MAX: usize = 8;

/// Session timeout a client's chain watch asks of ZooKeeper. A client holds
/// no ephemeral nodes, so this only bounds how long the crate keeps trying to
/// reach a ZooKeeper that is down before it gives up and the watch starts
/// afresh.
pub const CHAIN_WATCH_SESSION_TIMEOUT: Duration = Duration::from_secs(4);

/// Members of a chain read out of ZooKeeper: the oldest this many children
/// with member names; any others are ignored and logged (see
/// `coord::view_reader`). Far above any real chain's length; it bounds the
/// reads a view costs when something else fills the chain node.
pub const CHAIN_MEMBERS_READ_MAX: usize = 64;

/// Readings asked of a chain watch's thread and not yet answered (see
/// `coord::chain_watch`). Its owner waits for each one, so requests queue up
/// only while the thread is stuck in ZooKeeper, and the thread answers all
/// queued requests with its next reading. When the queue is full a reading
/// waits for room within the caller's wait and, if none comes, fails like a
/// reading ZooKeeper did not answer in time; the client retries or reports it.
pub const CHAIN_WATCH_REQUESTS_QUEUED_MAX: usize = 8;

// Shards (see `shard`, `server::slot_check`, `client::router`).

/// The shard map's ZooKeeper node when `--shards` is not given.
pub const SHARDS_PATH_DEFAULT: &str = "/shards";

/// How long a server holds a request whose client routed by a newer shard
/// map than the server knows, while its map thread reads the map again.
/// ZooKeeper answers a read in about a millisecond; past this the request
/// is refused with ERR_UNAVAILABLE and the client retries.
pub const SHARD_MAP_CATCH_UP_WAIT: Duration = Duration::from_secs(1);

/// How often a server's map thread looks whether its watch saw a change.
/// A client routed by a newer map wakes it at once, so this bounds only
/// how late a server that no client pushes learns of a change.
pub const SHARD_MAP_POLL: Duration = Duration::from_millis(50);

/// How often a server reads the map even without a change: the safety net
/// against watches the `zookeeper` crate lost over a reconnection.
pub const SHARD_MAP_REREAD: Duration = Duration::from_secs(5);

/// How long a server or client waits for one reading of the map.
pub const SHARD_MAP_READ_WAIT: Duration = Duration::from_secs(2);

/// Redirects (ERR_MOVED) a client follows for one request before it gives
/// up: each one reads the map afresh, so more than a few means the map is
/// changing faster than the client can follow, or servers disagree.
pub const SHARD_REDIRECTS_MAX: u32 = 5;

// The client library (see `client`).

/// Default time allowed for connecting and for each reply; in chain mode
/// also for each whole call, retries included.
pub const CLIENT_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// A connection silent for this long is probed before it is reused (the
/// probe costs three system calls, as much as the request itself). A busy
/// connection is not: if the server closed it anyway (an idle timeout
/// shorter than this), the request is sent once more on a new connection.
pub const CLIENT_PROBE_AFTER_IDLE: Duration = Duration::from_secs(1);

/// First pause after a failed attempt: a few milliseconds, so a retry that
/// only needed a fresh look at the chain is not held up (issue 19: the
/// client's pacing must not become the failover gap). A pause also ends
/// as soon as ZooKeeper's watch says the chain changed.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(2);

/// Longest pause, doubling from [`BACKOFF_FIRST`]: a repair that no watch
/// reports (a tail whose read lease is renewed again) is noticed within
/// this, and a client of a chain that is down retries ten times a second.
pub const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// Shortest reply timeout of one attempt (unless the whole time limit is
/// shorter): a write waits at the head for the tail's commit, which takes a
/// few round trips plus, after a failure, the chain's repair.
pub const ATTEMPT_TIMEOUT_MIN: Duration = Duration::from_secs(2);

/// Share of the time limit one attempt may use at least, so several attempts
/// fit in the deadline when the limit is long (e.g. a large `gettable`).
pub const ATTEMPT_SHARE: u32 = 4;

/// Longest wait for one member's `stats` in `members` (all are asked at
/// once): a live member answers in milliseconds, so one that has not after
/// this is shown as unreachable instead of holding up the whole view.
pub const MEMBER_STATS_TIMEOUT_MAX: Duration = Duration::from_secs(2);

// table-bench (see `bench`).

/// Most client threads: the server's default `--max-clients`, past which it
/// refuses connections; each client is also one OS thread here.
pub const BENCH_CLIENTS_MAX: usize = CLIENTS_MAX_DEFAULT;

/// Most idle connections: each is a file descriptor here and (with
/// table-server) a thread there.
pub const BENCH_IDLE_CONNECTIONS_MAX: usize = 100_000;

/// Longest measured phase or warm-up: a benchmark is a bounded loop.
pub const BENCH_SECONDS_MAX: f64 = 24.0 * 3600.0;

/// Largest key space: filling it already takes minutes at this size.
pub const BENCH_KEYS_MAX: u64 = 1_000_000_000;

/// Largest value: the server's default value limit.
pub const BENCH_VALUE_BYTES_MAX: usize = VALUE_BYTES_MAX_DEFAULT;

/// Stack of a load thread: an operation is a shallow call into the client,
/// which keeps its buffers on the heap; thousands of threads stay cheap.
pub const BENCH_WORKER_STACK_BYTES: usize = 256 * 1024;

/// A load thread stops filling after this many failed PUTs, so a target that
/// fails every write does not hold the run up for keys × timeout.
pub const BENCH_FILL_ERRORS_MAX: u64 = 100;

/// How often the coordinator looks at the clock and the counters.
pub const BENCH_TICK: Duration = Duration::from_millis(50);

/// How often a progress line is printed.
pub const BENCH_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Longest status, error or length line the bench's Redis client accepts;
/// Redis's own are short.
pub const REDIS_LINE_BYTES_MAX: u64 = 64 * 1024;

/// Largest bulk reply the bench's Redis client accepts, checked before
/// allocating: Redis's own limit
/// for a string value (512 MiB).
pub const REDIS_BULK_BYTES_MAX: usize = 512 * 1024 * 1024;

// table-check and its test harness (see `check`).

/// How long a server may take to print its listening address.
pub const CHECK_SERVER_STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long ZooKeeper may take to answer after starting.
pub const CHECK_ZOOKEEPER_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a new server may take to become a ready member.
pub const CHECK_JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Lock stripes of the servers a cluster starts.
pub const CHECK_TABLE_STRIPES: usize = 64;

/// How long the chain may take to heal before the next fault.
pub const CHECK_HEAL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long clients keep going after the nemesis stopped, so the history
/// shows the healed chain too.
pub const CHECK_SETTLE: Duration = Duration::from_secs(2);

/// How long the chain may take to heal at the end.
pub const CHECK_FINAL_HEAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Log lines shown of each server when the chain does not heal.
pub const CHECK_UNHEALED_LOG_LINES: usize = 40;

/// A violation shows at most this many operations: the last ones before
/// the point where no order could be found.
pub const CHECK_SHOWN_OPERATIONS_MAX: usize = 30;

/// Linearizability search steps allowed per history before giving up.
pub const CHECK_SEARCH_STEPS_MAX: u64 = 20_000_000;

/// Ways of linearizing a key's history kept at once by the breadth-first
/// linearizability search before it hands over to the depth-first one:
/// bounds its memory (each is a register, a few running operations and the
/// unknown ones applied); real histories keep a handful.
pub const CHECK_FRONTIER_CONFIGURATIONS_MAX: usize = 100_000;

/// Search steps allowed for each candidate while minimizing: a candidate
/// that is hard to decide is simply not taken.
pub const CHECK_MINIMIZE_STEPS_MAX: u64 = 200_000;

/// Minimizing a violation stops improving after this long (per key).
pub const CHECK_MINIMIZE_TIME_MAX: Duration = Duration::from_secs(5);

// ---- replication between neighbours ----

/// Most writes the sender puts in one frame, and the receiver applies under
/// one lock acquisition.
pub const REPLICATION_BATCH_MAX: usize = 1024;

/// An idle link end sends a frame this often (ms), both ways: the sender an
/// empty batch, the receiver its unchanged progress; any frame counts. So
/// the receiver can tell a silent predecessor from a dead one (and a
/// predecessor replaced in the view is cut off even when it has nothing to
/// send), and a peer missing a few in a row is suspect within tens of
/// milliseconds (issue 19: failover in milliseconds). 15 ms is ~70 small
/// frames a second per link: nothing next to a write load.
pub const REPLICATION_HEARTBEAT_INTERVAL_MS: u64 = 15;

/// A peer that missed this many heartbeats in a row is suspect (probed;
/// never removed for silence alone, see `chain::liveness`). Four leaves
/// room for a scheduler hiccup on a loaded machine.
pub const REPLICATION_SUSPECT_AFTER_MISSED: u64 = 4;

/// A receiver that hears nothing (not even a heartbeat) for this long drops
/// the link; the predecessor reconnects if it is still alive.
pub const REPLICATION_SILENCE_TIMEOUT: Duration = Duration::from_secs(5);

/// The tail's read lease (ms, on its own clock), counted from when it sent
/// the ack whose stamp its predecessor echoed back (see `chain::lease`).
/// Long enough to outlive several missed heartbeats (15 ms each) and a
/// scheduler hiccup on a loaded machine, so a live tail does not refuse
/// reads for want of a renewal; short enough that a silent tail's
/// predecessor may remove it (after the lease and the drift margin) well
/// within the 200 ms failover target.
pub const READ_LEASE_MS: u64 = 100;

/// The most two servers' clocks may differ in rate, per mille: 1 %, far
/// beyond what a quartz clock drifts (tens of ppm) or NTP slews (0.05 %).
pub const CLOCK_DRIFT_PER_MILLE: u64 = 10;

/// Slack on top of the drift for the whole milliseconds both clocks are
/// read in (each read may be up to 1 ms short).
pub const LEASE_MARGIN_MS: u64 = 5;

/// How long a predecessor waits, on its own clock, from the last frame it
/// received from a silent successor before it may ask for the successor's
/// removal: the successor's read lease has surely run out by then. The
/// lease runs `READ_LEASE_MS` on the successor's clock, at most
/// `READ_LEASE_MS / (1 - d)` real time; our wait of `W` on our clock is at
/// least `W / (1 + d)` real time; `W >= READ_LEASE_MS (1 + d) / (1 - d)`,
/// which 1 + 3d bounds from above for d up to 1/3 (see `chain::lease`).
pub const SUSPECT_REMOVAL_AFTER_MS: u64 =
    READ_LEASE_MS * (1000 + 3 * CLOCK_DRIFT_PER_MILLE) / 1000 + LEASE_MARGIN_MS;

/// A member asks for at most one neighbour's removal this often (ms), so
/// a confused or slow server cannot empty a chain in a storm of removals.
pub const REMOVAL_INTERVAL_MIN_MS: u64 = 300;

/// Entries per snapshot chunk: large enough to stream fast, small enough
/// that a chunk of 100-byte values stays far below the frame limit.
pub const SNAPSHOT_CHUNK_ENTRIES: usize = 8192;

/// A replication frame that cannot be written in this long means the
/// successor is stuck; the sender reconnects (or ZooKeeper removes it).
pub const REPLICATION_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the ack writer waits for a commit before checking whether the
/// link is still open and reporting progress that is not a commit.
/// One heartbeat interval, so an idle successor's heartbeats go out on time.
pub const REPLICATION_ACK_POLL: Duration = Duration::from_millis(REPLICATION_HEARTBEAT_INTERVAL_MS);

/// Pause before reconnecting after a failed link.
pub const REPLICATION_RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// How long the sender waits on the queue before looking at the view again.
pub const REPLICATION_QUEUE_POLL: Duration = Duration::from_millis(10);

pub const REPLICATION_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A probe of a neighbour's listening port (proof of death) waits this
/// long: a refused connect comes back at once; a slower answer is not proof.
pub const REPLICATION_PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// Read buffer of the ack stream (acks are tiny).
pub const REPLICATION_ACK_READ_BUFFER_BYTES: usize = 4096;

/// Applied writes waiting for the replication sender (`--queue-max`).
/// Writers wait (holding no lock) while it is this full.
pub const REPLICATION_QUEUE_MAX_DEFAULT: usize = 65_536;

/// Writes forwarded and not yet committed (`--sent-max`): the Sent list.
/// The sender stops draining the queue while it is this long.
pub const SENT_LIST_MAX_DEFAULT: usize = 262_144;

/// How long a client write waits for its commit (`--commit-timeout-ms`)
/// before the client is told to retry.
pub const COMMIT_TIMEOUT_MS_DEFAULT: u64 = 5000;

/// Clients whose latest write is remembered for exactly-once retries
/// (`--max-client-records`); past this the oldest tenth is forgotten.
pub const CLIENT_RECORDS_MAX_DEFAULT: usize = 100_000;

// ---- memory (`--max-memory`) ----

/// What one key costs in `used_memory` beyond its key and value bytes: the
/// rest of its entry's malloc chunk (a 128-byte chunk holds a 1-byte length
/// prefix, a 10-byte key and a 100-byte value) and its share of its stripe's
/// hash table (a 16-byte slot and a control byte per bucket, under half full
/// just after the table doubled). Measured as resident memory growth by
/// `cargo test --release --test memory_overhead -- --nocapture`, which also
/// checks this value: 54.0 B per key with 1,000,000 keys `key:<n>` of 100 B
/// over 1024 stripes (164 B per key in all; BENCHMARKS.md measured 167 B for
/// a whole server), and 41 to 54 B at 100,000 to 900,000 keys. We take the
/// top of that range, so that the limit is not passed by undercounting.
pub const ENTRY_OVERHEAD_BYTES: u64 = 54;

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

// ---- membership ----

/// Time between confirmations of the session, as a share of the session
/// timeout. Above 2/3 on purpose: the `zookeeper` crate (0.8) pings only
/// after 2/3 of the timeout without traffic, and it closes the session on
/// any disconnection once its last ping is older than the timeout; a
/// member that confirmed more often never pinged and lost its session
/// whenever its ensemble member went away (see `coord::zk`). Below
/// [`LEASE_SHARE`], so a lease is renewed before it runs out.
pub const LEASE_CHECK_SHARE: f64 = 0.75;

/// Share of the session timeout a confirmation is trusted for, below one to
/// leave room for clock-rate differences with the ZooKeeper server.
pub const LEASE_SHARE: f64 = 0.9;

/// Pause before retrying to connect or register; it doubles while
/// ZooKeeper stays unreachable, up to `ZK_RECONNECT_PAUSE_MAX`.
pub const MEMBERSHIP_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Session timeouts a member waits for a member named in the commit record
/// before the chain restarts without one (and may lose writes): 5 minutes
/// at the default timeout of 5 s. Long, because a named member that is only
/// slow, paused or cut off will come back with every committed write (the
/// simulator found a named member kept away by faults for 10 timeouts); an
/// operator who knows they are all gone for good can clear the record (set
/// the chain node's data to empty) to restart at once.
pub const RESTART_FALLBACK_TIMEOUTS: u64 = 60;

/// Shortest time between two readings of the chain by a member: changes
/// that come faster (children created one after another under the chain
/// node) share a reading, and so a view change and a commit record, instead
/// of each costing every member a reading and the tail a record write.
pub const VIEW_READ_INTERVAL_MIN: Duration = Duration::from_millis(50);
/// The tail writes its commit point into the chain's commit record at most
/// this often (ms), and at a hand-over: the record says how far a chain that
/// was lost had committed ("writes up to N") at ZooKeeper's cost of one
/// write a second, not one per client write. What was committed in the last
/// interval before a total loss is not in the number.
pub const RECORD_PROGRESS_INTERVAL_MS: u64 = 1000;

/// Membership events (watch firings, connection states) waiting for the
/// membership thread. Each is a prompt to look again, and the session is
/// also confirmed on a timer, so one dropped when the queue is full (the
/// thread is stuck in a ZooKeeper call) loses nothing.
pub const MEMBERSHIP_EVENTS_QUEUED_MAX: usize = 64;

// ---- durability (`--data-dir`) ----

/// Most log records the syncer takes into one batch (one write, one sync).
/// Bounds the batch a crash can catch half-written, not the throughput:
/// a busier queue makes more batches back to back.
pub const WAL_BATCH_MAX: usize = 4096;

/// A log segment is closed and the next begun past this many bytes, so
/// that a snapshot can delete the log behind it in whole files.
pub const WAL_SEGMENT_BYTES: u64 = 64 << 20;

/// How long the syncer waits before writing again after a failed write or
/// sync (a full disk): often enough to recover within a moment once space
/// returns, seldom enough not to spin or flood the log.
pub const WAL_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// `--snapshot-log-bytes`: a snapshot is taken once the log since the last
/// one passes this, so the log (and the replay at a restart) stays bounded:
/// about the size of a table of a million 100-byte values.
pub const SNAPSHOT_LOG_BYTES_DEFAULT: u64 = 256 << 20;

/// How often the snapshot thread looks at the log's size.
pub const SNAPSHOT_CHECK_PERIOD: Duration = Duration::from_millis(200);

/// Keys per chunk of a snapshot file (one record each).
pub const SNAPSHOT_CHUNK_KEYS: usize = 4096;

/// Writes a durable member keeps after applying them, so that a member
/// restarting on its disk can rejoin behind it by receiving only the writes
/// it missed instead of the whole table (see `chain::rejoin`): a restart
/// takes a second or two, and 16,384 writes cover that at about the rate a
/// durable chain of three takes on this machine. Beyond it, a snapshot.
pub const REJOIN_WRITES_MAX: usize = 16_384;

/// Bytes of keys and values those writes hold at most: with large values
/// this, not the count, bounds them (a cost every durable member pays).
pub const REJOIN_WRITES_BYTES_MAX: u64 = 16 << 20;

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
