//! `table-check`: randomized clients under injected faults, and a
//! linearizability checker for what they saw.

pub mod cluster;
pub mod linearizability;
