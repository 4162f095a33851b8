//! `table-check`: randomized clients under injected faults, and a
//! linearizability checker for what they saw.
//!
//! - [`linearizability`]: the per-key register checker (pure).
//! - [`history`]: records of operations and faults, saved as JSON.
//! - [`verify`]: checks a history key by key and explains violations.
//! - [`cluster`]: real ZooKeeper and server processes, stopped by PID.
//! - [`random`]: the seeded generator behind workloads and fault schedules.
//! - [`workload`]: the recorded client threads.
//! - [`nemesis`]: the fault injector.
//! - [`netns`]: network namespaces for the partition nemesis.
//! - [`run`]: one whole run: cluster, clients, faults, healing, checks.
//! - [`args`]: the `table-check` command line.

pub mod args;
pub mod sim;
pub mod cluster;
pub mod history;
pub mod linearizability;
pub mod nemesis;
pub mod netns;
pub mod random;
pub mod run;
pub mod verify;
pub mod workload;
