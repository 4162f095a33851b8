//! Server statistics: the original's three figures (operations, time spent in
//! operations, connected clients) plus per-operation counts, errors (also by
//! code), table size and uptime, and the request and commit latency
//! histograms behind the metrics. Lock-free counters, so counting never
//! serialises the connection threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use protobuf::Enum;

use super::latency::LatencyHistogram;
use crate::proto::{ErrorCode, Opcode, Statistics};
use crate::store::table::Table;

/// Operations counted separately, in the order of `Statistics`' fields.
pub const COUNTED_OPCODES: [Opcode; 16] = [
    Opcode::OP_PUT,
    Opcode::OP_GET,
    Opcode::OP_DEL,
    Opcode::OP_SIZE,
    Opcode::OP_GETKEYS,
    Opcode::OP_GETTABLE,
    Opcode::OP_STATS,
    Opcode::OP_SCAN,
    Opcode::OP_CAS,
    Opcode::OP_INCR,
    Opcode::OP_MGET,
    Opcode::OP_MSET,
    Opcode::OP_EXISTS,
    Opcode::OP_EXPIRE,
    Opcode::OP_TTL,
    Opcode::OP_PERSIST,
];

pub struct ServerStats {
    /// When the server started, for uptime.
    started: Instant,
    /// Successful operations per opcode, indexed like `COUNTED_OPCODES`.
    operations: [AtomicU64; COUNTED_OPCODES.len()],
    /// Requests answered with an error reply.
    errors: AtomicU64,
    /// The same by error code, indexed like `ErrorCode::VALUES`.
    errors_by_code: [AtomicU64; ErrorCode::VALUES.len()],
    /// Client connections open now.
    clients: AtomicU64,
    /// How long successful requests took, from the frame read to the
    /// reply ready (a write's includes its wait for the commit); its sum is
    /// `stats`' `operation_time_us`.
    request_latency: LatencyHistogram,
    /// How long committed writes took from being applied here to their
    /// commit (at the head: the way down the chain and back).
    commit_latency: LatencyHistogram,
    /// Connections closed for a frame past `--frame-timeout-ms`.
    late_frames: AtomicU64,
    /// Events sent to watchers, and watchers cut off for falling behind
    /// (or not reading their stream within `--write-timeout-ms`).
    watch_events: AtomicU64,
    watchers_cut_off: AtomicU64,
}

impl Default for ServerStats {
    fn default() -> Self {
        ServerStats {
            started: Instant::now(),
            operations: Default::default(),
            errors: AtomicU64::new(0),
            errors_by_code: Default::default(),
            clients: AtomicU64::new(0),
            request_latency: LatencyHistogram::default(),
            commit_latency: LatencyHistogram::default(),
            late_frames: AtomicU64::new(0),
            watch_events: AtomicU64::new(0),
            watchers_cut_off: AtomicU64::new(0),
        }
    }
}

impl ServerStats {
    /// Counts one successful operation that took `elapsed`.
    pub fn record_operation(&self, opcode: Opcode, elapsed: Duration) {
        if let Some(index) = COUNTED_OPCODES.iter().position(|counted| *counted == opcode) {
            self.operations[index].fetch_add(1, Ordering::Relaxed);
        }
        self.request_latency.record(elapsed);
    }

    /// Counts one request answered with an error `code`.
    pub fn record_error(&self, code: ErrorCode) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(index) = ErrorCode::VALUES.iter().position(|known| *known == code) {
            self.errors_by_code[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A write committed `elapsed` after it was applied here.
    pub fn record_commit(&self, elapsed: Duration) {
        self.commit_latency.record(elapsed);
    }

    /// Successful operations of `opcode` so far.
    pub fn operations(&self, opcode: Opcode) -> u64 {
        let index = COUNTED_OPCODES.iter().position(|counted| *counted == opcode);
        self.operations[index.expect("opcode is counted")].load(Ordering::Relaxed)
    }

    /// Error replies so far, by code (codes never sent included, as 0).
    pub fn errors_by_code(&self) -> impl Iterator<Item = (ErrorCode, u64)> + '_ {
        ErrorCode::VALUES
            .iter()
            .zip(&self.errors_by_code)
            .filter(|(code, _)| **code != ErrorCode::ERR_NONE)
            .map(|(code, count)| (*code, count.load(Ordering::Relaxed)))
    }

    pub fn request_latency(&self) -> &LatencyHistogram {
        &self.request_latency
    }

    pub fn commit_latency(&self) -> &LatencyHistogram {
        &self.commit_latency
    }

    /// Seconds since the server started.
    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Counts a connection closed for a frame past its deadline.
    pub fn record_late_frame(&self) {
        self.late_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `count` events sent to a watcher.
    pub fn record_watch_events(&self, count: usize) {
        self.watch_events.fetch_add(count as u64, Ordering::Relaxed);
    }

    /// Counts a watcher cut off.
    pub fn record_watcher_cut_off(&self) {
        self.watchers_cut_off.fetch_add(1, Ordering::Relaxed);
    }

    /// A client connection opened; returns the number now open.
    pub fn client_connected(&self) -> u64 {
        self.clients.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A client connection closed.
    pub fn client_disconnected(&self) {
        let before = self.clients.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "more disconnects than connects");
    }

    /// Client connections open now.
    pub fn clients(&self) -> u64 {
        self.clients.load(Ordering::Relaxed)
    }

    /// The figures as a protobuf message.
    pub fn snapshot(&self, table: &Table) -> Statistics {
        let count = |opcode: Opcode| self.operations(opcode);
        let mut statistics = Statistics::new();
        statistics.puts = count(Opcode::OP_PUT);
        statistics.gets = count(Opcode::OP_GET);
        statistics.dels = count(Opcode::OP_DEL);
        statistics.sizes = count(Opcode::OP_SIZE);
        statistics.getkeys = count(Opcode::OP_GETKEYS);
        statistics.gettables = count(Opcode::OP_GETTABLE);
        statistics.stats = count(Opcode::OP_STATS);
        statistics.scans = count(Opcode::OP_SCAN);
        statistics.cas = count(Opcode::OP_CAS);
        statistics.incrs = count(Opcode::OP_INCR);
        statistics.mgets = count(Opcode::OP_MGET);
        statistics.msets = count(Opcode::OP_MSET);
        statistics.exists = count(Opcode::OP_EXISTS);
        statistics.expires = count(Opcode::OP_EXPIRE);
        statistics.ttls = count(Opcode::OP_TTL);
        statistics.persists = count(Opcode::OP_PERSIST);
        statistics.late_frames = self.late_frames.load(Ordering::Relaxed);
        statistics.watch_events = self.watch_events.load(Ordering::Relaxed);
        statistics.watchers_cut_off = self.watchers_cut_off.load(Ordering::Relaxed);
        statistics.operations = self.operations.iter().map(|counter| counter.load(Ordering::Relaxed)).sum();
        statistics.operation_time_us = self.request_latency.sum_us();
        statistics.errors = self.errors.load(Ordering::Relaxed);
        statistics.clients = self.clients();
        statistics.keys = table.len();
        statistics.bytes_stored = table.bytes_stored();
        statistics.uptime_s = self.uptime_s();
        statistics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_operation_and_in_total() {
        let stats = ServerStats::default();
        let table = Table::new(1);
        table.put("k", b"vv");
        stats.record_operation(Opcode::OP_PUT, Duration::from_micros(5));
        stats.record_operation(Opcode::OP_GET, Duration::from_micros(3));
        stats.record_operation(Opcode::OP_GET, Duration::from_micros(2));
        stats.record_error(ErrorCode::ERR_WRONG_ROLE);
        stats.client_connected();
        let snapshot = stats.snapshot(&table);
        assert_eq!(snapshot.puts, 1);
        assert_eq!(snapshot.gets, 2);
        assert_eq!(snapshot.operations, 3);
        assert_eq!(snapshot.operation_time_us, 10);
        assert_eq!(snapshot.errors, 1);
        let wrong_role = stats.errors_by_code().find(|(code, _)| *code == ErrorCode::ERR_WRONG_ROLE);
        assert_eq!(wrong_role, Some((ErrorCode::ERR_WRONG_ROLE, 1)));
        assert_eq!(stats.request_latency().snapshot().count, 3);
        assert_eq!(snapshot.clients, 1);
        assert_eq!(snapshot.keys, 1);
        assert_eq!(snapshot.bytes_stored, 3);
        stats.client_disconnected();
        assert_eq!(stats.clients(), 0);
    }
}
