//! `table-check`: randomized clients under injected faults, and a
//! linearizability checker for what they saw.
//!
//! - [`linearizability`]: the per-key register checker (pure).
//! - [`history`]: records of operations and faults, saved as JSON.
//! - [`verify`]: checks a history key by key and explains violations.
//! - `cluster`: real ZooKeeper and server processes, stopped by PID (test harness).
//! - [`random`]: the seeded generator behind workloads and fault schedules.
//! - [`workload`]: the recorded client threads.
//! - [`nemesis`]: the fault injector.
//! - `netns`: network namespaces for the partition nemesis (test harness).
//! - `secrets`: the peer and client secrets of the chains it starts (test harness).
//! - [`failover`], [`failover_report`]: `table-check failover`, kills and
//!   pauses of chain members and the gaps clients saw.
//! - [`run`]: one whole run: cluster, clients, faults, healing, checks.
//! - [`args`]: the `table-check` command line.

pub mod args;
pub mod sim;
// Test harnesses that start and kill real processes (and, for netns, change
// the host's network as root): for table-check and the integration tests in
// tests/, which use `cluster` from outside the crate, so it stays `pub`; and
// `cluster`'s public functions take and return `netns` types. Not library API.
#[doc(hidden)]
pub mod cluster;
pub mod disks;
pub mod failover;
pub mod failover_report;
pub mod history;
pub mod linearizability;
pub mod nemesis;
#[doc(hidden)]
pub mod netns;
pub mod random;
pub mod run;
#[doc(hidden)]
pub mod secrets;
pub mod verify;
pub mod watcher;
pub mod workload;
