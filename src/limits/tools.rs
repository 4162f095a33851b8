//! The tools' limits: the client library, shards, table-bench and
//! table-check (see `limits`).

use std::time::Duration;

use super::{CLIENTS_MAX_DEFAULT, VALUE_BYTES_MAX_DEFAULT};

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

// `migrate` (see `cli::migrate`).

/// How often `migrate` reads the map (and asks the source head) while it
/// follows a migration.
pub const MIGRATE_POLL: Duration = Duration::from_millis(100);

/// How often `migrate` prints a progress line.
pub const MIGRATE_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How long `migrate` follows a migration before it leaves it running and
/// says so (the source head drives it; running the command again follows
/// it on).
pub const MIGRATE_FOLLOW_MAX: Duration = Duration::from_secs(3600);

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
