//! The generation rule, checked over a whole simulated run: a chain's
//! generation never goes back, and a restart that loses committed writes
//! always raises it (so no data loss is silent: clients see the change).

use std::collections::BTreeMap;

use crate::view::CommitRecord;

/// What the run has shown about generations so far.
#[derive(Default)]
pub struct GenerationCheck {
    /// The highest sequence number of a write acknowledged to its client,
    /// in each generation. (A node's commit point alone is not enough: a
    /// recovering node that joins may count its own old, never
    /// acknowledged writes committed while it answers nobody.)
    acknowledged: BTreeMap<u64, u64>,
    /// The highest generation the chain node's record has held.
    recorded_max: u64,
    /// The first breach of the rule, if any.
    violation: Option<String>,
    /// Durable servers (`--durable`): every restart is on its disk, so no
    /// restart may drop acknowledged writes, not even by raising the
    /// generation.
    durable: bool,
}

impl GenerationCheck {
    /// The rule for a run of durable servers or not.
    pub fn new(durable: bool) -> GenerationCheck {
        GenerationCheck { durable, ..GenerationCheck::default() }
    }

    /// A server told a client that write `sequence` of `generation` is
    /// committed.
    pub fn acknowledged(&mut self, server: usize, generation: u64, sequence: u64) {
        if generation < self.recorded_max {
            self.breach(format!(
                "s{server} acknowledged write {sequence} of generation {generation} after generation {} was recorded",
                self.recorded_max
            ));
        }
        let highest = self.acknowledged.entry(generation).or_default();
        *highest = (*highest).max(sequence);
    }

    /// The chain node now holds `record`.
    pub fn recorded(&mut self, record: &CommitRecord) {
        if record.generation < self.recorded_max {
            self.breach(format!(
                "the record went back from generation {} to {}",
                self.recorded_max, record.generation
            ));
        }
        self.recorded_max = self.recorded_max.max(record.generation);
    }

    /// Server `server`, whose table holds writes up to `applied` of
    /// generation `held_generation`, started a chain as `generation`.
    pub fn chain_started(&mut self, server: usize, held_generation: u64, applied: u64, generation: u64) {
        let latest = self.recorded_max;
        let committed = self.acknowledged.get(&latest).copied().unwrap_or(0);
        let held = if held_generation == latest { applied } else { 0 };
        if generation < latest {
            self.breach(format!("s{server} started generation {generation} after generation {latest}"));
        } else if self.durable && generation > latest && committed > 0 {
            self.breach(format!(
                "s{server} started generation {generation}, dropping write {committed} of generation \
                 {latest}, acknowledged by a durable chain"
            ));
        } else if committed > held && generation == latest {
            self.breach(format!(
                "s{server} restarted generation {latest}, which had acknowledged write {committed}, \
                 holding only {held} of it, without raising the generation"
            ));
        }
    }

    pub fn violation(&self) -> Option<&String> {
        self.violation.as_ref()
    }

    fn breach(&mut self, message: String) {
        self.violation.get_or_insert(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(generation: u64) -> CommitRecord {
        CommitRecord { epoch: 1, servers: vec![1], generation, committed: 0 }
    }

    #[test]
    fn a_restart_that_loses_committed_writes_must_raise_the_generation() {
        let mut check = GenerationCheck::default();
        check.chain_started(0, 0, 0, 1);
        check.recorded(&record(1));
        check.acknowledged(0, 1, 10);
        check.chain_started(1, 1, 10, 1);
        assert_eq!(check.violation(), None, "the restart held every committed write");
        check.chain_started(2, 1, 9, 2);
        assert_eq!(check.violation(), None, "a loss that raised the generation");
        check.chain_started(2, 1, 9, 1);
        assert!(check.violation().unwrap().contains("without raising"));
    }

    /// Durable: a restart on the disks keeps every acknowledged write, so
    /// raising the generation over acknowledged writes is a loss.
    #[test]
    fn a_durable_chain_never_drops_acknowledged_writes() {
        let mut check = GenerationCheck::new(true);
        check.chain_started(0, 0, 0, 1);
        check.recorded(&record(1));
        check.acknowledged(0, 1, 10);
        check.chain_started(2, 1, 9, 2);
        assert!(check.violation().unwrap().contains("acknowledged by a durable chain"));
    }

    #[test]
    fn a_generation_never_goes_back() {
        let mut check = GenerationCheck::default();
        check.recorded(&record(3));
        check.chain_started(0, 0, 0, 2);
        assert!(check.violation().unwrap().contains("started generation 2 after generation 3"));
        let mut check = GenerationCheck::default();
        check.recorded(&record(3));
        check.recorded(&record(2));
        assert!(check.violation().unwrap().contains("went back"));
        let mut check = GenerationCheck::default();
        check.recorded(&record(3));
        check.acknowledged(1, 2, 5);
        assert!(check.violation().unwrap().contains("of generation 2 after generation 3"));
    }
}
