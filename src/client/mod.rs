//! Blocking client library: a [`Client`] gives typed calls (put, get, ...)
//! against one server or a whole chain.
//!
//! Every request carries the client's random `client_id` and a `request_id`
//! that increases per new request, so servers can recognise retries.
//!
//! The parts, each depending only on those listed before it:
//! - [`error`]: [`ClientError`], why a call failed.
//! - [`connection`]: a connection to one server, and an endpoint that reconnects to it.
//! - [`retry`]: the chain client's retry policy: which failures to retry, backoff, deadline.
//! - [`locator`]: finds a chain's head and tail through ZooKeeper ([`crate::coord`]),
//!   time-bounded, and keeps the last reading until it is stale.
//! - [`routing`]: chain mode: writes to the head, reads to the tail, retries.
//! - [`spanning`]: answers of several chains merged into one (size, stats, scan pages).
//! - [`router`]: many chains: the shard map, one [`routing`] target per chain, redirects.
//! - [`members`]: every member of a chain with its own `stats`.
//! - [`watch`]: a stream of committed changes that follows the tail across failovers.
//!
//! The client never uses server, replication or chain-protocol code.

pub mod connection;
pub mod error;
pub mod expiry;
pub mod locator;
pub mod members;
pub mod retry;
pub mod router;
pub mod routing;
pub mod spanning;
pub mod watch;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use self::connection::{ClientOptions, Endpoint};
use self::error::ClientError;
use self::members::{MemberReport, member_reports};
use self::router::{MigrateStarted, Router, ShardReport};
use self::routing::RetryObserver;
use crate::limits::SHARDS_PATH_DEFAULT;
use crate::proto::{Entry, Opcode, Request, Response, Statistics};
use crate::shard::map::ShardMap;
use crate::shard::moves::MoveRequest;

/// Where a [`Client`] sends its requests.
enum Target {
    /// One server, whatever its role; no retries.
    Server {
        endpoint: Box<Endpoint>,
        /// Reads ask for the server's own table even if it is not the tail.
        local_reads: bool,
    },
    /// The head or tail of the chain that owns the key (per the shard map,
    /// or the one chain without a map), whichever the request needs, with
    /// retries.
    Chain(Box<Router>),
}

/// A client of one server or of a chain.
pub struct Client {
    target: Target,
    options: ClientOptions,
    /// Random per client, so request ids of different clients never collide.
    client_id: u64,
    /// Id of the next new request.
    next_request_id: u64,
}

impl Client {
    /// A client of the one server at `address` (`host:port`); connects on
    /// first use. In a chain, the server answers only what its role allows.
    pub fn new(address: &str, options: ClientOptions) -> Client {
        Client::with_target(
            Target::Server { endpoint: Box::new(Endpoint::new(address)), local_reads: false },
            options,
        )
    }

    /// Like [`Client::new`], but reads (`get`, `size`, `getkeys`,
    /// `gettable`) are answered from that server's own table whatever its
    /// chain role: for operators comparing replicas. Such an answer may miss
    /// committed writes (a server before the tail may hold uncommitted ones,
    /// one after the head may lag behind).
    pub fn local_reader(address: &str, options: ClientOptions) -> Client {
        Client::with_target(
            Target::Server { endpoint: Box::new(Endpoint::new(address)), local_reads: true },
            options,
        )
    }

    /// A client of the chain at `chain_path` in the ZooKeeper ensemble
    /// `zk_hosts` (`host:port,...`): writes go to the head, reads to the
    /// tail, and refused or failed requests are retried until
    /// `options.timeout`. Looks up the chain on first use. Once a shard map
    /// exists at the default path (`/shards`), keys are routed by it.
    pub fn chain(zk_hosts: &str, chain_path: &str, options: ClientOptions) -> Result<Client, ClientError> {
        Client::sharded(zk_hosts, chain_path, SHARDS_PATH_DEFAULT, options)
    }

    /// Like [`Client::chain`], with the shard map at `map_path` (`--shards`).
    pub fn sharded(
        zk_hosts: &str,
        chain_path: &str,
        map_path: &str,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let router = Router::start(zk_hosts, chain_path, map_path)?;
        Ok(Client::with_target(Target::Chain(Box::new(router)), options))
    }

    fn with_target(target: Target, options: ClientOptions) -> Client {
        Client { target, options, client_id: random_client_id(), next_request_id: 1 }
    }

    /// What the client talks to, for people: `host:port` or the chain.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Server { endpoint, .. } => endpoint.address().to_owned(),
            Target::Chain(chain) => format!("the chain at {}", chain.name()),
        }
    }

    pub fn put(&mut self, key: &str, value: impl Into<Vec<u8>>) -> Result<(), ClientError> {
        let mut request = Request::new();
        request.key = Some(key.to_owned());
        request.value = Some(value.into());
        self.call(Opcode::OP_PUT, request).map(drop)
    }

    /// The value of `key`, or `None` if absent.
    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let mut request = Request::new();
        request.key = Some(key.to_owned());
        let response = self.call(Opcode::OP_GET, request)?;
        Ok(response.found.then_some(response.value))
    }

    /// Deletes `key`; returns whether it existed.
    pub fn delete(&mut self, key: &str) -> Result<bool, ClientError> {
        let mut request = Request::new();
        request.key = Some(key.to_owned());
        Ok(self.call(Opcode::OP_DEL, request)?.found)
    }

    /// Compare-and-set: sets `key` to `value` if it holds `expected`
    /// (`None`: if it is absent). `Ok(Ok(()))` when set; `Ok(Err(current))`
    /// with the value it holds (`None`: absent) when not.
    pub fn cas(
        &mut self,
        key: &str,
        expected: Option<&[u8]>,
        value: impl Into<Vec<u8>>,
    ) -> Result<Result<(), Option<Vec<u8>>>, ClientError> {
        let mut request = Request::new();
        request.key = Some(key.to_owned());
        request.expected = expected.map(<[u8]>::to_vec);
        request.value = Some(value.into());
        let response = self.call(Opcode::OP_CAS, request)?;
        Ok(if response.swapped { Ok(()) } else { Err(response.found.then_some(response.value)) })
    }

    /// Adds `delta` to the number at `key` (absent: 0); returns the new
    /// value. A value that is not a signed 64-bit decimal, or an overflow,
    /// is a server error (`ERR_WRONG_TYPE`) that changed nothing.
    pub fn incr(&mut self, key: &str, delta: i64) -> Result<i64, ClientError> {
        let mut request = Request::new();
        request.key = Some(key.to_owned());
        request.delta = delta;
        Ok(self.call(Opcode::OP_INCR, request)?.number)
    }

    /// The values of `keys` (`None` where absent), read at one point of the
    /// chain's history.
    pub fn mget(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, ClientError> {
        let mut request = Request::new();
        request.keys = keys.to_vec();
        let response = self.call(Opcode::OP_MGET, request)?;
        if response.values.len() != keys.len() {
            return Err(ClientError::Protocol(format!(
                "mget of {} keys answered with {} values",
                keys.len(),
                response.values.len()
            )));
        }
        Ok(response.values.into_iter().map(|lookup| lookup.found.then_some(lookup.value)).collect())
    }

    /// Sets every pair in one write: readers see all of them or none.
    pub fn mset(&mut self, pairs: &[(String, Vec<u8>)]) -> Result<(), ClientError> {
        let mut request = Request::new();
        request.pairs = pairs.iter().cloned().map(Entry::from_pair).collect();
        self.call(Opcode::OP_MSET, request).map(drop)
    }

    /// Whether `key` exists.
    pub fn exists(&mut self, key: &str) -> Result<bool, ClientError> {
        let mut request = Request::new();
        request.key = Some(key.to_owned());
        Ok(self.call(Opcode::OP_EXISTS, request)?.found)
    }

    pub fn size(&mut self) -> Result<u64, ClientError> {
        Ok(self.call(Opcode::OP_SIZE, Request::new())?.size)
    }

    /// Every key, sorted, paged through with SCAN (so any table size works;
    /// see [`Client::scan`] for what a scan guarantees).
    pub fn keys(&mut self) -> Result<Vec<String>, ClientError> {
        let mut keys = Vec::new();
        for page in self.scan("", true) {
            keys.extend(page?.into_iter().map(|(key, _)| key));
        }
        Ok(keys)
    }

    /// Every (key, value), sorted by key, paged through with SCAN.
    pub fn entries(&mut self) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        let mut entries = Vec::new();
        for page in self.scan("", false) {
            entries.extend(page?.into_iter().map(|(key, value)| (key, value.unwrap_or_default())));
        }
        Ok(entries)
    }

    /// The pages of a scan of the keys starting with `prefix`, in key
    /// order, each `(key, value)` (`None` with `keys_only`), fetched as the
    /// iterator is advanced. A key present for the whole scan comes exactly
    /// once; keys added or removed during it may or may not come. In a
    /// chain every page is read at the tail, whichever server that is then.
    pub fn scan<'client>(&'client mut self, prefix: &str, keys_only: bool) -> Scan<'client> {
        Scan { client: self, prefix: prefix.to_owned(), keys_only, page_bytes: 0, cursor: None, done: false }
    }

    /// Chain mode: every member in chain order, with its `stats` (or why it
    /// did not answer). Not retried: a member that does not answer is part of
    /// the picture.
    pub fn members(&mut self) -> Result<Vec<MemberReport>, ClientError> {
        match &mut self.target {
            Target::Chain(router) => {
                let view = router.default_target()?.fresh_view(self.options.timeout)?;
                Ok(member_reports(&view, &self.options, self.client_id))
            }
            Target::Server { .. } => Err(ClientError::NoChain(
                "members reads the chain from ZooKeeper: give <zk-host:port,...>, not --server".into(),
            )),
        }
    }

    /// Chain mode: `observer` is told of every retry (one server: no retries).
    pub fn observe_retries(&mut self, observer: RetryObserver) {
        if let Target::Chain(chain) = &mut self.target {
            chain.observe_retries(observer);
        }
    }

    pub fn stats(&mut self) -> Result<Statistics, ClientError> {
        self.call(Opcode::OP_STATS, Request::new())?
            .statistics
            .into_option()
            .ok_or_else(|| ClientError::Protocol("stats reply without statistics".into()))
    }

    /// Chain mode: `stats` of the head of the chain at `chain` (what a
    /// head alone counts, such as the migration it drives).
    pub fn head_stats(&mut self, chain: &str) -> Result<Statistics, ClientError> {
        let timeout = self.options.timeout;
        let head = self.router()?.head_of(chain, timeout)?;
        let head = head.ok_or_else(|| ClientError::NoChain(format!("{chain} has no head now")))?;
        Client::new(&head, self.options.clone()).stats()
    }

    /// Chain mode: the shard map and every chain's head, tail and keys;
    /// `None` when there is no map.
    pub fn shards(&mut self) -> Result<Option<ShardReport>, ClientError> {
        let size = self.stamped(Opcode::OP_SIZE, Request::new());
        let options = self.options.clone();
        self.router()?.report(&size, &options)
    }

    /// Chain mode: creates the first shard map, giving `chains` equal
    /// consecutive slot ranges in order.
    pub fn shards_init(&mut self, chains: &[String]) -> Result<ShardMap, ClientError> {
        let timeout = self.options.timeout;
        self.router()?.init(chains, timeout)
    }

    /// Chain mode: starts moving slots (or finds that move running), or
    /// aborts it (see [`Router::migrate`]).
    pub fn migrate(&mut self, request: &MoveRequest, abort: bool) -> Result<MigrateStarted, ClientError> {
        let timeout = self.options.timeout;
        self.router()?.migrate(request, abort, timeout)
    }

    /// Chain mode: the shard map read afresh.
    pub fn shard_map(&mut self) -> Result<Option<Arc<ShardMap>>, ClientError> {
        let timeout = self.options.timeout;
        self.router()?.fresh_map(timeout)
    }

    fn router(&mut self) -> Result<&mut Router, ClientError> {
        match &mut self.target {
            Target::Chain(router) => Ok(router),
            Target::Server { .. } => Err(ClientError::NoChain(
                "the shard map is in ZooKeeper: give <zk-host:port,...>, not --server".into(),
            )),
        }
    }

    /// `request` as a new request of this client's: opcode and ids set.
    fn stamped(&mut self, opcode: Opcode, mut request: Request) -> Request {
        request.opcode = opcode.into();
        request.client_id = self.client_id;
        request.request_id = self.next_request_id;
        self.next_request_id += 1;
        request
    }

    /// Sends one new request to the target.
    fn call(&mut self, opcode: Opcode, request: Request) -> Result<Response, ClientError> {
        let mut request = self.stamped(opcode, request);
        match &mut self.target {
            Target::Server { endpoint, local_reads } => {
                request.local_read = *local_reads
                    && matches!(
                        opcode,
                        Opcode::OP_GET
                            | Opcode::OP_SIZE
                            | Opcode::OP_GETKEYS
                            | Opcode::OP_GETTABLE
                            | Opcode::OP_SCAN
                            | Opcode::OP_MGET
                            | Opcode::OP_EXISTS
                            | Opcode::OP_TTL
                    );
                endpoint.call(&request, &self.options)
            }
            Target::Chain(router) => router.call(&mut request, &self.options),
        }
    }
}

/// One page of a scan: keys, with values unless keys only.
pub type ScanEntries = Vec<(String, Option<Vec<u8>>)>;

/// A scan in progress (see [`Client::scan`]): an iterator of pages, each one
/// SCAN request, ending after the page the server says is the last or at
/// the first error.
pub struct Scan<'client> {
    client: &'client mut Client,
    prefix: String,
    keys_only: bool,
    /// Bytes asked per page; 0: the server's default page.
    page_bytes: u64,
    /// The last key of the previous page.
    cursor: Option<String>,
    done: bool,
}

impl Scan<'_> {
    /// Asks for pages of about `bytes` (the server caps them; 0: its default).
    pub fn page_bytes(mut self, bytes: u64) -> Self {
        self.page_bytes = bytes;
        self
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<ScanEntries, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut request = Request::new();
        request.cursor = self.cursor.clone();
        request.prefix = self.prefix.clone();
        request.keys_only = self.keys_only;
        request.max_bytes = self.page_bytes;
        let response = match self.client.call(Opcode::OP_SCAN, request) {
            Ok(response) => response,
            Err(error) => {
                self.done = true;
                return Some(Err(error));
            }
        };
        if !response.done && response.next_cursor.is_none() {
            self.done = true;
            return Some(Err(ClientError::Protocol("a scan page with more to come but no cursor".into())));
        }
        // Cursors only move forward: a page that does not would repeat forever.
        if let (Some(previous), Some(next)) = (&self.cursor, &response.next_cursor)
            && next <= previous
        {
            self.done = true;
            return Some(Err(ClientError::Protocol(format!(
                "a scan cursor went back from {previous:?} to {next:?}"
            ))));
        }
        self.done = response.done;
        if response.next_cursor.is_some() {
            self.cursor = response.next_cursor;
        }
        let page = if self.keys_only {
            response.keys.into_iter().map(|key| (key, None)).collect()
        } else {
            response.entries.into_iter().map(|entry| (entry.key, Some(entry.value))).collect()
        };
        Some(Ok(page))
    }
}

/// A random 64-bit id from std's randomly seeded hasher (no extra crate).
fn random_client_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    RandomState::new().hash_one((std::process::id(), nanos)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_differ() {
        assert_ne!(random_client_id(), random_client_id());
    }
}
