//! Request handling: one decoded request in, one reply out (now, or once
//! its write is committed), against the replica. No sockets here, so every
//! rule about bad input and roles is unit-testable.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::inflight::{InflightBudget, Refused, Reservation};
use super::operations;
use super::slot_check::ShardGuard;
use super::stats::ServerStats;
use crate::chain::Refusal;
use crate::limits::{
    Limits, REPLY_ENTRY_OVERHEAD_BYTES, REPLY_ENVELOPE_BYTES, SCAN_COUNT_MAX, SCAN_PAGE_BYTES_DEFAULT,
};
use crate::proto::{Entry, ErrorCode, Opcode, Request, Response, Statistics};
use crate::replica::commits::CommitOutcome;
use crate::replica::migration::Markers;
use crate::replica::{ReadKeys, Replica, WriteReceipt, commit_result};
use crate::replication::LinkSettings;
use crate::store::scan::ScanRequest;
use crate::store::table::Table;

/// The state every connection thread shares.
pub struct Service {
    /// The data and the chain protocol state.
    pub replica: Arc<Replica>,
    /// Counters for `stats`; shared with the threads that answer committed
    /// writes.
    pub stats: Arc<ServerStats>,
    /// Key and value limits checked here; the rest are the server's.
    pub limits: Limits,
    /// How replication links are opened and checked; its `security` also
    /// holds the client secret and TLS every connection must satisfy.
    pub link: Arc<LinkSettings>,
    /// `--max-inflight`: request frames and replies being built reserve
    /// their bytes here.
    pub inflight: Arc<InflightBudget>,
    /// Chain mode: the shard map this server knows, which may send a key
    /// elsewhere (ERR_MOVED). `None`: standalone.
    pub shards: Option<Arc<ShardGuard>>,
    /// `--metrics-addr`: where the endpoint listens (shown in `stats`, so a
    /// script that asked for port 0 learns the port by asking).
    pub metrics_address: Option<SocketAddr>,
    /// Who may join or feed our chain (shown in `stats`).
    pub peer_security: PeerSecurity,
    /// What this server's migration thread did (`stats`).
    pub migration: Arc<super::migration::MigrationStatus>,
}

/// Who may join or feed this server's chain: `stats` reports it, so an
/// operator (or a test) learns it by asking, and the start-up line says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerSecurity {
    /// No chain: nobody replicates to us.
    Standalone,
    /// Peers prove the peer secret.
    Secret,
    /// No peer secret: we listen on loopback only, so only local processes
    /// can reach the replication port.
    LoopbackOnly,
    /// No peer secret on a non-loopback address (`--insecure`).
    Insecure,
}

impl PeerSecurity {
    pub fn of(chain_mode: bool, peer_secret: bool, loopback: bool) -> PeerSecurity {
        match (chain_mode, peer_secret, loopback) {
            (false, _, _) => PeerSecurity::Standalone,
            (true, true, _) => PeerSecurity::Secret,
            (true, false, true) => PeerSecurity::LoopbackOnly,
            (true, false, false) => PeerSecurity::Insecure,
        }
    }

    /// The name `stats` shows.
    pub fn name(self) -> &'static str {
        match self {
            PeerSecurity::Standalone => "standalone",
            PeerSecurity::Secret => "peer-secret",
            PeerSecurity::LoopbackOnly => "loopback-only",
            PeerSecurity::Insecure => "insecure",
        }
    }
}

/// An error reply.
pub fn error_response(request_id: u64, code: ErrorCode, message: impl Into<String>) -> Response {
    let mut response = Response::new();
    response.opcode = Opcode::OP_ERROR.into();
    response.request_id = request_id;
    response.error_code = code.into();
    response.error_message = message.into();
    response
}

/// The reply to a request carried out (its opcode and id filled in),
/// counted in `stats` with its latency since `started`.
fn completed(
    stats: &ServerStats,
    opcode: Opcode,
    request_id: u64,
    started: Instant,
    mut response: Response,
) -> Response {
    stats.record_operation(opcode, started.elapsed());
    response.opcode = opcode.into();
    response.request_id = request_id;
    response
}

/// The error reply to a refused request, counted in `stats`.
fn refused(stats: &ServerStats, request_id: u64, refusal: Refusal) -> Response {
    stats.record_error(refusal.code);
    error_response(request_id, refusal.code, refusal.message)
}

/// A request's answer.
pub enum Reply {
    /// With the in-flight bytes its building took, held until it is sent.
    Now(Response, Option<Reservation>),
    /// A write applied at the head, answered once it is committed.
    AfterCommit(PendingWrite),
}

/// A client write waiting for its commit, with what its reply needs.
pub struct PendingWrite {
    pub receipt: WriteReceipt,
    request_id: u64,
    opcode: Opcode,
    started: Instant,
    /// When the write was applied here, for the commit latency.
    applied: Instant,
}

impl PendingWrite {
    /// The reply once the wait for the commit ended with `outcome`, counted
    /// in `stats` (latency up to now).
    pub fn reply(&self, outcome: CommitOutcome, stats: &ServerStats) -> Response {
        let answer = commit_result(self.receipt.sequence, outcome)
            .and_then(|()| operations::write_answer(self.opcode, &self.receipt.outcome));
        match answer {
            Ok(response) => {
                stats.record_commit(self.applied.elapsed());
                completed(stats, self.opcode, self.request_id, self.started, response)
            }
            Err(refusal) => refused(stats, self.request_id, refusal),
        }
    }
}

/// What executing a request gave. Lives on the stack for one request:
/// boxing the large variant would cost every read an allocation.
#[allow(clippy::large_enum_variant)]
enum Executed {
    Answered(Opcode, Response, Option<Reservation>),
    Applied(Opcode, WriteReceipt),
}

impl Service {
    pub fn new(replica: Arc<Replica>, limits: Limits) -> Service {
        let inflight = InflightBudget::new(limits.inflight_bytes_max);
        Service {
            replica,
            stats: Arc::default(),
            link: Arc::new(LinkSettings { limits: limits.clone(), ..LinkSettings::default() }),
            limits,
            inflight,
            shards: None,
            metrics_address: None,
            peer_security: PeerSecurity::Standalone,
            migration: Arc::default(),
        }
    }

    /// The reply to a frame that does not decode.
    pub fn malformed(&self, error: &dyn std::fmt::Display) -> Response {
        self.stats.record_error(ErrorCode::ERR_MALFORMED);
        error_response(0, ErrorCode::ERR_MALFORMED, format!("request does not decode: {error}"))
    }

    /// Executes one request. A write that is not committed yet is answered
    /// later: the caller hands the [`PendingWrite`] to
    /// [`Replica::await_commit`].
    pub fn handle(&self, request: Request) -> Reply {
        let started = Instant::now();
        let request_id = request.request_id;
        if let Some(refused) = self.screen_slots(&request) {
            return Reply::Now(refused, None);
        }
        match self.execute(request) {
            Ok(Executed::Answered(opcode, response, reservation)) => {
                Reply::Now(completed(&self.stats, opcode, request_id, started, response), reservation)
            }
            Ok(Executed::Applied(opcode, receipt)) => {
                let applied = Instant::now();
                let committed = self.replica.is_committed(&receipt);
                let pending = PendingWrite { receipt, request_id, opcode, started, applied };
                if committed {
                    Reply::Now(pending.reply(CommitOutcome::Committed, &self.stats), None)
                } else {
                    Reply::AfterCommit(pending)
                }
            }
            Err(refusal) => Reply::Now(refused(&self.stats, request_id, refusal), None),
        }
    }

    /// The refusal of a request for keys this server's chain does not own
    /// in the shard map it knows (see `slot_check`), counted in `stats`.
    pub(super) fn screen_slots(&self, request: &Request) -> Option<Response> {
        let refused = self.shards.as_ref()?.screen(request)?;
        self.stats.record_error(refused.error_code.enum_value_or(ErrorCode::ERR_INTERNAL));
        Some(refused)
    }

    fn execute(&self, mut request: Request) -> Result<Executed, Refusal> {
        let opcode = request.opcode.enum_value().map_err(|value| {
            Refusal::new(ErrorCode::ERR_UNKNOWN_OPCODE, format!("unknown opcode {value}"))
        })?;
        let mut response = Response::new();
        let mut reservation = None;
        let local = request.local_read;
        match opcode {
            opcode if opcode.writes() => {
                let op = self.write_op(opcode, &mut request)?;
                let receipt = self.replica.client_write(request.client_id, request.request_id, op)?;
                return Ok(Executed::Applied(opcode, receipt));
            }
            Opcode::OP_MGET => {
                let (values, held) = self.mget(local, &request.keys)?;
                response.values = values;
                reservation = Some(held);
            }
            Opcode::OP_EXISTS => {
                let key = self.checked_key(&request)?;
                response.found = self
                    .read(local, ReadKeys::One(key), |table| table.value_len(key).is_some())?
                    && !self.replica.expired(key);
            }
            Opcode::OP_TTL => response.ttl_ms = self.ttl(local, self.checked_key(&request)?)?,
            Opcode::OP_GET => {
                let key = self.checked_key(&request)?;
                if let Some(value) = self.lookup(local, key)? {
                    response.found = true;
                    response.value = value;
                }
            }
            Opcode::OP_SIZE => {
                let markers = &self.replica.markers;
                response.size = self.read(local, ReadKeys::All, |table| markers.client_keys(table.len()))?;
            }
            Opcode::OP_GETKEYS => {
                let (listing_bytes_max, held) = self.reserve_listing(local, false)?;
                reservation = Some(held);
                response.keys = self
                    .read(local, ReadKeys::All, |table| table.keys_within(listing_bytes_max))?
                    .map_err(|bytes| self.listing_too_large(bytes))?;
                response.keys.retain(|key| !Markers::is_marker(key));
            }
            Opcode::OP_GETTABLE => {
                let (listing_bytes_max, held) = self.reserve_listing(local, true)?;
                reservation = Some(held);
                let entries = self
                    .read(local, ReadKeys::All, |table| table.entries_within(listing_bytes_max))?
                    .map_err(|bytes| self.listing_too_large(bytes))?;
                let entries = entries.into_iter().filter(|(key, _)| !Markers::is_marker(key));
                response.entries = entries.map(Entry::from_pair).collect();
            }
            Opcode::OP_SCAN => {
                let scan = self.scan_request(&request);
                reservation = Some(self.reserve_reply(
                    2 * scan.bytes_max as u64 + scan.count_max as u64 * REPLY_ENTRY_OVERHEAD_BYTES,
                )?);
                let page = self.read(local, ReadKeys::All, |table| table.scan(&scan))?;
                if scan.keys_only {
                    response.keys = page.keys;
                    response.keys.retain(|key| !Markers::is_marker(key));
                } else {
                    let entries =
                        page.keys.into_iter().zip(page.values).filter(|(key, _)| !Markers::is_marker(key));
                    response.entries = entries.map(Entry::from_pair).collect();
                }
                response.next_cursor = page.next_cursor;
                response.done = page.done;
            }
            Opcode::OP_STATS => response.statistics = Some(self.statistics()).into(),
            Opcode::OP_REPLICATE => {
                return Err(Refusal::new(
                    ErrorCode::ERR_UNKNOWN_OPCODE,
                    "OP_REPLICATE must be the first frame of a connection",
                ));
            }
            // The connection turns into a watch stream before the service
            // sees it (see `watch`); a service called directly refuses it.
            Opcode::OP_WATCH => {
                return Err(Refusal::new(
                    ErrorCode::ERR_UNKNOWN_OPCODE,
                    "OP_WATCH is served by the connection",
                ));
            }
            // The connection answers it before the service sees requests
            // (see `client_auth`); a service called directly refuses it.
            Opcode::OP_AUTH => {
                return Err(Refusal::new(ErrorCode::ERR_AUTH, "OP_AUTH is answered by the connection"));
            }
            Opcode::OP_UNSPECIFIED | Opcode::OP_ERROR => {
                return Err(Refusal::new(
                    ErrorCode::ERR_UNKNOWN_OPCODE,
                    format!("{opcode:?} is not a request opcode"),
                ));
            }
            write => unreachable!("{write:?} is a write, taken by the first arm"),
        }
        Ok(Executed::Answered(opcode, response, reservation))
    }

    /// What a SCAN request asks for, within the server's limits: a page
    /// fits a frame and a quarter of the in-flight budget.
    fn scan_request<'request>(&self, request: &'request Request) -> ScanRequest<'request> {
        let page_bytes_max =
            (self.limits.frame_bytes_max.saturating_sub(self.limits.key_bytes_max + REPLY_ENVELOPE_BYTES))
                .min((self.limits.inflight_bytes_max / 4) as usize)
                .max(1);
        let asked_bytes = match request.max_bytes {
            0 => SCAN_PAGE_BYTES_DEFAULT,
            asked => usize::try_from(asked).unwrap_or(usize::MAX),
        };
        let asked_count = match request.count {
            0 => SCAN_COUNT_MAX,
            asked => usize::try_from(asked).unwrap_or(usize::MAX),
        };
        ScanRequest {
            after: request.cursor.as_deref(),
            prefix: &request.prefix,
            count_max: asked_count.min(SCAN_COUNT_MAX),
            bytes_max: asked_bytes.min(page_bytes_max),
            keys_only: request.keys_only,
        }
    }

    /// For `getkeys` (`with_values` false) or `gettable`: the reply's size,
    /// found before anything is copied, refused if over a frame, and
    /// reserved in the in-flight budget (the listing, its encoded frame and
    /// a `String` per key). Returns the size and the reservation.
    fn reserve_listing(&self, local: bool, with_values: bool) -> Result<(u64, Reservation), Refusal> {
        let (bytes, keys) =
            self.read(local, ReadKeys::All, |table| (table.listing_bytes(with_values), table.len()))?;
        let listing_bytes_max = self.limits.frame_bytes_max.saturating_sub(REPLY_ENVELOPE_BYTES) as u64;
        if bytes > listing_bytes_max {
            return Err(self.listing_too_large(bytes));
        }
        let reservation = self.reserve_reply(2 * bytes + keys * REPLY_ENTRY_OVERHEAD_BYTES)?;
        Ok((listing_bytes_max, reservation))
    }

    fn listing_too_large(&self, bytes: u64) -> Refusal {
        Refusal::new(
            ErrorCode::ERR_RESPONSE_TOO_LARGE,
            format!(
                "the reply would be {bytes} bytes, over the maximum frame of {} bytes; page through the table \
                 with SCAN (the client's getkeys and gettable do)",
                self.limits.frame_bytes_max
            ),
        )
    }

    /// Reserves `bytes` of the in-flight budget for a reply, waiting at most
    /// `--frame-timeout-ms` for room.
    pub(super) fn reserve_reply(&self, bytes: u64) -> Result<Reservation, Refusal> {
        self.inflight.reserve(bytes, Instant::now() + self.limits.frame_timeout).map_err(|refused| {
            let code = match refused {
                Refused::OverCapacity { .. } => ErrorCode::ERR_RESPONSE_TOO_LARGE,
                Refused::TimedOut { .. } => ErrorCode::ERR_UNAVAILABLE,
            };
            Refusal::new(code, refused.to_string())
        })
    }

    /// Runs a read on the table: as the chain allows (tail only), or on this
    /// server's own table whatever its role when the request asks for a
    /// `local_read` (operators' convergence checks; may be stale).
    pub(super) fn read<T>(
        &self,
        local: bool,
        keys: ReadKeys<'_>,
        read: impl FnOnce(&Table) -> T,
    ) -> Result<T, Refusal> {
        if local { Ok(read(&self.replica.table)) } else { self.replica.read_guard_of(keys, read) }
    }

    /// Server counters plus the replica's chain state.
    pub fn statistics(&self) -> Statistics {
        let replica = &self.replica;
        let mut statistics = self.stats.snapshot(&replica.table);
        let progress = replica.progress();
        statistics.role = replica.role().name().to_owned();
        statistics.last_applied = progress.applied;
        statistics.committed = progress.committed;
        statistics.sent_list = replica.sent_list_len();
        statistics.used_memory = replica.used_memory();
        statistics.max_memory = replica.limits.memory_bytes_max.unwrap_or(0);
        statistics.generation = replica.generation();
        statistics.state_transfers_received = replica.transfers.received.read().0;
        statistics.state_transfers_sent = replica.transfers.sent.read().0;
        statistics.fencings = replica.fencings();
        statistics.rejoins_resumed = replica.rejoins_resumed();
        (statistics.removals_by_proof, statistics.removals_by_lease) = replica.removals.counts();
        statistics.peer_auth_failures = replica.peer_auth_failures.load(Ordering::Relaxed);
        statistics.metrics_address =
            self.metrics_address.map(|address| address.to_string()).unwrap_or_default();
        statistics.peer_security = self.peer_security.name().to_owned();
        if let Some(disk) = replica.disk() {
            statistics.log_syncs = disk.syncs();
            statistics.synced = replica.synced();
        }
        statistics.watchers = replica.history.watchers() as u64;
        let history = replica.history.position();
        let kept = replica.history.len() as u64;
        statistics.watch_history_writes = kept;
        statistics.watch_history_oldest = if kept > 0 { history.oldest } else { 0 };
        if let Some(shards) = &self.shards {
            (statistics.shard_slots, statistics.shard_map_version) = shards.known();
        }
        self.migration.fill(&mut statistics);
        statistics.keys = replica.markers.client_keys(statistics.keys);
        if let Some(position) = replica.position() {
            statistics.chain_position = position.index as u64;
            statistics.chain_length = position.chain_length as u64;
            statistics.node = position.me.name;
        }
        statistics
    }

    pub(super) fn checked_key<'request>(&self, request: &'request Request) -> Result<&'request str, Refusal> {
        let key = match &request.key {
            Some(key) if !key.is_empty() => key,
            _ => return Err(Refusal::new(ErrorCode::ERR_MISSING_FIELD, "a non-empty key is required")),
        };
        if key.len() > self.limits.key_bytes_max {
            return Err(Refusal::new(
                ErrorCode::ERR_TOO_LARGE,
                format!(
                    "key of {} bytes is over the maximum of {} bytes",
                    key.len(),
                    self.limits.key_bytes_max
                ),
            ));
        }
        Ok(key)
    }

    pub(super) fn checked_value(&self, value: Option<Vec<u8>>) -> Result<Vec<u8>, Refusal> {
        let value =
            value.ok_or_else(|| Refusal::new(ErrorCode::ERR_MISSING_FIELD, "put requires a value"))?;
        if value.len() > self.limits.value_bytes_max {
            return Err(Refusal::new(
                ErrorCode::ERR_TOO_LARGE,
                format!(
                    "value of {} bytes is over the maximum of {} bytes",
                    value.len(),
                    self.limits.value_bytes_max
                ),
            ));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::ReplicationLimits;
    use protobuf::Message;

    impl Service {
        /// The reply, which standalone is always immediate.
        fn answer(&self, request: Request) -> Response {
            match self.handle(request) {
                Reply::Now(response, _) => response,
                Reply::AfterCommit(_) => panic!("a standalone write commits at once"),
            }
        }

        /// Decodes and executes one frame body.
        fn answer_frame(&self, body: &[u8]) -> Response {
            match Request::parse_from_bytes(body) {
                Ok(request) => self.answer(request),
                Err(error) => self.malformed(&error),
            }
        }
    }

    fn service() -> Service {
        let limits = Limits { key_bytes_max: 8, value_bytes_max: 16, ..Limits::default() };
        let (ready_sender, _) = crossbeam_channel::bounded(1);
        let replica = Replica::new(4, true, ReplicationLimits::default(), ready_sender);
        Service::new(Arc::new(replica), limits)
    }

    fn request(opcode: Opcode, key: Option<&str>, value: Option<&[u8]>) -> Request {
        let mut request = Request::new();
        request.opcode = opcode.into();
        request.request_id = 9;
        request.key = key.map(str::to_owned);
        request.value = value.map(<[u8]>::to_vec);
        request
    }

    fn error_code(response: &Response) -> ErrorCode {
        assert_eq!(response.opcode.enum_value(), Ok(Opcode::OP_ERROR));
        response.error_code.enum_value().unwrap()
    }

    #[test]
    fn put_get_del_size() {
        let service = service();
        let put = service.answer(request(Opcode::OP_PUT, Some("k"), Some(b"v")));
        assert_eq!(put.opcode.enum_value(), Ok(Opcode::OP_PUT));
        assert_eq!(put.request_id, 9);
        let get = service.answer(request(Opcode::OP_GET, Some("k"), None));
        assert!(get.found);
        assert_eq!(get.value, b"v");
        assert_eq!(service.answer(request(Opcode::OP_SIZE, None, None)).size, 1);
        assert!(service.answer(request(Opcode::OP_DEL, Some("k"), None)).found);
        assert!(!service.answer(request(Opcode::OP_DEL, Some("k"), None)).found);
        assert!(!service.answer(request(Opcode::OP_GET, Some("k"), None)).found);
    }

    #[test]
    fn empty_value_is_a_value() {
        let service = service();
        service.answer(request(Opcode::OP_PUT, Some("k"), Some(b"")));
        assert!(service.answer(request(Opcode::OP_GET, Some("k"), None)).found);
    }

    #[test]
    fn bad_requests_get_error_codes() {
        let service = service();
        let cases = [
            (request(Opcode::OP_PUT, None, Some(b"v")), ErrorCode::ERR_MISSING_FIELD),
            (request(Opcode::OP_PUT, Some(""), Some(b"v")), ErrorCode::ERR_MISSING_FIELD),
            (request(Opcode::OP_PUT, Some("k"), None), ErrorCode::ERR_MISSING_FIELD),
            (request(Opcode::OP_GET, None, None), ErrorCode::ERR_MISSING_FIELD),
            (request(Opcode::OP_PUT, Some("key-too-long"), Some(b"v")), ErrorCode::ERR_TOO_LARGE),
            (request(Opcode::OP_PUT, Some("k"), Some(&[0; 17])), ErrorCode::ERR_TOO_LARGE),
            (request(Opcode::OP_UNSPECIFIED, None, None), ErrorCode::ERR_UNKNOWN_OPCODE),
            (request(Opcode::OP_ERROR, None, None), ErrorCode::ERR_UNKNOWN_OPCODE),
            (request(Opcode::OP_REPLICATE, None, None), ErrorCode::ERR_UNKNOWN_OPCODE),
        ];
        for (bad, expected) in cases {
            let response = service.answer(bad);
            assert_eq!(error_code(&response), expected, "{}", response.error_message);
            assert!(!response.error_message.is_empty());
        }
        assert!(service.replica.table.is_empty(), "no refused request may change the table");
        assert_eq!(service.statistics().errors, 9);
    }

    #[test]
    fn unknown_opcode_number() {
        // Field 1 (opcode) = 77, a value the enum does not define.
        let response = service().answer_frame(&[0x08, 77]);
        assert_eq!(error_code(&response), ErrorCode::ERR_UNKNOWN_OPCODE);
    }

    #[test]
    fn garbage_frame() {
        let response = service().answer_frame(&[0xff, 0xff, 0xff]);
        assert_eq!(error_code(&response), ErrorCode::ERR_MALFORMED);
    }

    #[test]
    fn retried_writes_apply_once() {
        let service = service();
        let mut delete = request(Opcode::OP_DEL, Some("k"), None);
        delete.client_id = 5;
        delete.request_id = 1;
        service.answer(request(Opcode::OP_PUT, Some("k"), Some(b"v")));
        assert!(service.answer(delete.clone()).found);
        // The retry gets the original answer, not "absent".
        assert!(service.answer(delete.clone()).found);
        // A later write by the same client is applied; an older id is refused.
        let mut put = request(Opcode::OP_PUT, Some("k"), Some(b"w"));
        put.client_id = 5;
        put.request_id = 2;
        service.answer(put);
        assert_eq!(error_code(&service.answer(delete)), ErrorCode::ERR_STALE_REQUEST);
        assert!(service.answer(request(Opcode::OP_GET, Some("k"), None)).found);
    }

    #[test]
    fn scan_pages_through_the_table_and_listings_past_a_frame_are_refused_early() {
        let limits = Limits { frame_bytes_max: 1000, key_bytes_max: 16, ..Limits::default() };
        let (ready_sender, _) = crossbeam_channel::bounded(1);
        let replica = Replica::new(4, true, ReplicationLimits::default(), ready_sender);
        let service = Service::new(Arc::new(replica), limits);
        let keys: Vec<String> = (0..100).map(|index| format!("key{index:03}")).collect();
        for key in &keys {
            service.answer(request(Opcode::OP_PUT, Some(key), Some(b"0123456789")));
        }
        let refused = service.answer(request(Opcode::OP_GETTABLE, None, None));
        assert_eq!(error_code(&refused), ErrorCode::ERR_RESPONSE_TOO_LARGE);
        assert_eq!(service.inflight.reserved_bytes(), 0, "nothing reserved for a refused listing");
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let mut scan = request(Opcode::OP_SCAN, None, None);
            scan.cursor = cursor.clone();
            scan.prefix = "key0".to_owned();
            let page = service.answer(scan);
            assert_eq!(page.opcode.enum_value(), Ok(Opcode::OP_SCAN), "{}", page.error_message);
            assert!(page.compute_size() <= 1000, "a page fits a frame");
            seen.extend(page.entries.iter().map(|entry| entry.key.clone()));
            pages += 1;
            if page.done {
                break;
            }
            cursor = page.next_cursor;
        }
        assert_eq!(seen, keys, "keys 000..099 all start with key0, once each, in order");
        assert!(pages > 1, "more than one frame's worth needs several pages");
        assert_eq!(service.statistics().scans, pages);
    }

    #[test]
    fn stats_reflect_operations() {
        let service = service();
        service.answer(request(Opcode::OP_PUT, Some("k"), Some(b"v")));
        service.answer(request(Opcode::OP_GET, Some("k"), None));
        let response = service.answer(request(Opcode::OP_STATS, None, None));
        let statistics = response.statistics.unwrap();
        assert_eq!(statistics.puts, 1);
        assert_eq!(statistics.gets, 1);
        assert_eq!(statistics.operations, 2);
        assert_eq!(statistics.keys, 1);
        assert_eq!(statistics.role, "standalone");
        assert_eq!(statistics.last_applied, 1);
        assert_eq!(statistics.committed, 1);
    }
}
