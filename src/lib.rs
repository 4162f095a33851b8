//! chaintable: a chain-replicated, in-memory distributed hash table.
//!
//! Blocking and thread-per-connection by design: one OS thread per client
//! connection, a striped reader-writer-locked table, protobuf messages in
//! length-prefixed frames over TCP.
//!
//! # Layout
//!
//! By layer, lower layers first: a module uses only its own layer and those
//! listed before it. The client uses no server, replication or
//! chain-protocol code, only the chain [`view`] and [`coord`]; table-check
//! runs real servers, or (`table-check sim`) the [`chain`] protocol itself.
//!
//! Messages, frames and limits:
//! - [`proto`]: message types generated from `proto/chaintable.proto` by `build.rs`.
//! - [`wire`]: framing (4-byte big-endian length + message), checked before allocation.
//! - [`limits`]: every size, count and time limit, with its value and why.
//! - [`secure`]: secrets, the challenge-response of peers and clients, sealed link frames, TLS.
//! - [`throttle`]: one line per interval for log lines outsiders can repeat at will.
//!
//! Shards:
//! - [`shard`]: hash slots (Redis Cluster's CRC16) and the versioned map of slot ranges to
//!   chains (pure; its ZooKeeper I/O is in [`coord`]).
//!
//! Store:
//! - [`store`]: the table: a striped `RwLock` hash table with consistent snapshots, and
//!   SCAN pages of it in key order.
//!
//! Chain protocol (pure: no threads, sockets, locks or clock reads):
//! - [`view`]: the chain as ZooKeeper shows it and one server's position in it.
//! - [`chain`]: one server's protocol as a state machine: events in, actions out.
//!
//! Coordination:
//! - [`coord`]: ZooKeeper I/O: the `zookeeper` crate's workarounds, chain views, client
//!   watches, a server's membership.
//!
//! Server and replication:
//! - [`storage`]: `--data-dir`: the write-ahead log with group commit, snapshot files,
//!   recovery at start (file I/O only; the decisions are the chain node's).
//! - [`replica`]: the table and the [`chain`] node under one lock, with what the threads
//!   around it share: the replication queue ([`replica::outbox`]) and the client writes
//!   waiting for their commit ([`replica::commits`]).
//! - [`replication`]: the sender and receiver threads between neighbours in the chain.
//! - [`server`]: acceptor, connection threads, request service, reply port, stats, Prometheus
//!   metrics, shutdown, the in-flight budget and the connection limits.
//!
//! Client:
//! - [`client`]: blocking client of one server or a chain: connection, routing, locator, retry,
//!   members.
//!
//! Command lines:
//! - [`cli`]: one argument parser for the four binaries; the client's command language, its
//!   text and JSON output, and the shell.
//!
//! Tools:
//! - [`bench`](mod@bench): `table-bench`, the closed-loop load generator, also against Redis.
//! - [`check`]: `table-check`, clients under injected faults and a linearizability checker.

pub mod bench;
pub mod chain;
pub mod check;
pub mod cli;
pub mod client;
pub mod coord;
pub mod limits;
pub mod proto;
pub mod replica;
pub mod replication;
pub mod secure;
pub mod server;
pub mod shard;
pub mod storage;
pub mod store;
pub mod throttle;
pub mod view;
pub mod wire;
