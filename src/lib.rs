//! chaintable: a chain-replicated, in-memory distributed hash table.
//!
//! Blocking and thread-per-connection by design: one OS thread per client
//! connection, a striped reader-writer-locked table, protobuf messages in
//! length-prefixed frames over TCP.
//!
//! # Layout
//!
//! - [`proto`]: message types generated from `proto/chaintable.proto` by `build.rs`.
//! - [`wire`]: framing (4-byte big-endian length + message), checked before allocation.
//! - [`limits`]: every size, count and time limit, with its default and why.
//! - [`store`]: the table: a striped `RwLock` hash table with consistent snapshots.
//! - [`view`]: the chain as ZooKeeper shows it and one server's position in it (pure).
//! - [`replica`]: the table plus the chain protocol state: ordering, commit, exactly-once, roles.
//! - [`commits`]: the commit point and the client writes waiting for it (settled one by one).
//! - [`outbox`]: the replication queue, and how its sender thread sleeps on it.
//! - [`replication`]: the sender and receiver threads between neighbours in the chain.
//! - [`membership`]: ZooKeeper registration, views, session lease and fencing.
//! - [`coord`]: all ZooKeeper I/O: the `zookeeper` crate's workarounds, reading a chain's view.
//! - [`server`]: the acceptor, connection threads, request service, reply port, stats and
//!   clean shutdown.
//! - [`client`]: blocking client library (connection, request ids, typed calls), of one
//!   server or of a chain: chain routing, locator, retry policy.
//! - [`cli`]: one argument parsing toolkit for the four binaries in `bin/`, the server's and
//!   client's command lines, the client's command language and shell.
//! - [`bench`]: `table-bench`, the closed-loop load generator: phases, threads, targets.
//!   - [`bench::args`]: its command line.
//!   - [`bench::workload`]: the operation mix, key choice and values, from a seeded generator.
//!   - [`bench::histogram`]: log-linear latency histogram and its percentiles.
//!   - [`bench::redis`]: a minimal RESP client (SET, GET, DEL) to compare with Redis.
//!   - [`bench::report`]: the results as a table and as one JSON line.

pub mod bench;
pub mod check;
pub mod cli;
pub mod client;
pub mod commits;
pub mod coord;
pub mod limits;
pub mod membership;
pub mod outbox;
pub mod proto;
pub mod replica;
pub mod replication;
pub mod server;
pub mod store;
pub mod view;
pub mod wire;
