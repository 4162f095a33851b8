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
//! - [`members`]: every member of a chain with its own `stats`.
//!
//! The client never uses server, replication or chain-protocol code.

pub mod connection;
pub mod error;
pub mod locator;
pub mod members;
pub mod retry;
pub mod routing;

use std::hash::{BuildHasher, RandomState};

use self::connection::{ClientOptions, Endpoint};
use self::error::ClientError;
use self::locator::Locator;
use self::members::{MemberReport, member_reports};
use self::routing::{ChainTarget, RetryObserver};
use crate::proto::{Opcode, Request, Response, Statistics};

/// Where a [`Client`] sends its requests.
enum Target {
    /// One server, whatever its role; no retries.
    Server {
        endpoint: Box<Endpoint>,
        /// Reads ask for the server's own table even if it is not the tail.
        local_reads: bool,
    },
    /// The chain's head or tail, whichever the request needs, with retries.
    Chain(Box<ChainTarget>),
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
    /// `options.timeout`. Looks up the chain on first use.
    pub fn chain(zk_hosts: &str, chain_path: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let locator = Locator::start(zk_hosts, chain_path)?;
        Ok(Client::with_target(Target::Chain(Box::new(ChainTarget::new(locator))), options))
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

    pub fn size(&mut self) -> Result<u64, ClientError> {
        Ok(self.call(Opcode::OP_SIZE, Request::new())?.size)
    }

    /// Every key, sorted.
    pub fn keys(&mut self) -> Result<Vec<String>, ClientError> {
        Ok(self.call(Opcode::OP_GETKEYS, Request::new())?.keys)
    }

    /// Every (key, value), sorted by key.
    pub fn entries(&mut self) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        let response = self.call(Opcode::OP_GETTABLE, Request::new())?;
        Ok(response.entries.into_iter().map(|entry| (entry.key, entry.value)).collect())
    }

    /// Chain mode: every member in chain order, with its `stats` (or why it
    /// did not answer). Not retried: a member that does not answer is part of
    /// the picture.
    pub fn members(&mut self) -> Result<Vec<MemberReport>, ClientError> {
        match &mut self.target {
            Target::Chain(chain) => {
                let view = chain.fresh_view(self.options.timeout)?;
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

    /// Sends one new request to the target.
    fn call(&mut self, opcode: Opcode, mut request: Request) -> Result<Response, ClientError> {
        request.opcode = opcode.into();
        request.client_id = self.client_id;
        request.request_id = self.next_request_id;
        self.next_request_id += 1;
        match &mut self.target {
            Target::Server { endpoint, local_reads } => {
                request.local_read = *local_reads
                    && matches!(
                        opcode,
                        Opcode::OP_GET | Opcode::OP_SIZE | Opcode::OP_GETKEYS | Opcode::OP_GETTABLE
                    );
                endpoint.call(&request, &self.options)
            }
            Target::Chain(chain) => chain.call(&request, &self.options),
        }
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
