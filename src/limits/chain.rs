//! The chain's limits: ZooKeeper, replication between neighbours,
//! membership and durability (see `limits`).

use std::time::Duration;

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

/// Bytes of watch history (encoded writes) per snapshot chunk, past which
/// the rest goes in later chunks: the history may hold 64 MiB
/// (`--watch-history`), a frame at most that by default.
pub const SNAPSHOT_CHUNK_HISTORY_BYTES: u64 = 4 * 1024 * 1024;

// Slot migrations (see `chain::migration`, `server::migration`).

/// Writes to the moving slots a source head keeps until they are committed
/// and sent, and their bytes: past either the attempt ends and starts over
/// from a fresh snapshot (a target that cannot keep up must not fill the
/// source's memory).
pub const MIGRATION_TAP_WRITES_MAX: usize = 200_000;
pub const MIGRATION_TAP_BYTES_MAX: u64 = 256 << 20;

/// A migration frame carries at most this many keys or writes, and stops
/// adding more once past this many bytes (one bigger value goes alone), so
/// that a big value costs the link one frame and the target's head one step.
pub const MIGRATION_FRAME_ITEMS_MAX: usize = 512;
pub const MIGRATION_FRAME_BYTES_MAX: usize = 1 << 20;

/// How often the migration thread looks at its driver, the link and the map.
pub const MIGRATION_TICK: Duration = Duration::from_millis(2);

/// How long opening the migration link to the target's head may take.
pub const MIGRATION_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A silent migration link (no frame either way) is broken after this.
pub const MIGRATION_SILENCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Moved keys the source head deletes per pass of its migration thread.
pub const MIGRATION_DELETE_BATCH: usize = 256;

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
/// Writers wait (holding no lock) while it is this full. It must hold the
/// writes that arrive while a state transfer streams (the sender sends the
/// snapshot first): 1,000,000 keys of 100 B stream in about 2 s, and at 60k
/// writes a second 65,536 filled after 1.1 s and stopped every writer for
/// about 0.8 s of each join (`scripts/bench-join.sh`, BENCHMARKS.md:
/// longest write 0.8 s at 65,536, 0.1 s at this). The same as
/// the Sent list's bound, which takes the writes next.
pub const REPLICATION_QUEUE_MAX_DEFAULT: usize = 262_144;

/// Writes forwarded and not yet committed (`--sent-max`): the Sent list.
/// The sender stops draining the queue while it is this long.
pub const SENT_LIST_MAX_DEFAULT: usize = 262_144;

/// How long a client write waits for its commit (`--commit-timeout-ms`)
/// before the client is told to retry.
pub const COMMIT_TIMEOUT_MS_DEFAULT: u64 = 5000;

/// Clients whose latest write is remembered for exactly-once retries
/// (`--max-client-records`); past this the oldest tenth is forgotten.
pub const CLIENT_RECORDS_MAX_DEFAULT: usize = 100_000;

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
