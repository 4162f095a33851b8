//! Checks a recorded history key by key and explains any violation: the key,
//! the shortest offending sub-history found, and the faults around it.

use std::collections::BTreeMap;
use std::fmt;

use super::history::{History, OpKind, Record};
use super::linearizability::{self, Verdict};
use crate::limits::CHECK_SHOWN_OPERATIONS_MAX;

/// The outcome of checking a history.
#[derive(Debug, Default)]
pub struct Report {
    pub keys: usize,
    /// Operations checked (reads whose outcome is unknown are not counted).
    pub operations: usize,
    /// Writes whose outcome was unknown.
    pub unknown_writes: usize,
    pub violations: Vec<Violation>,
    /// Keys whose search ran out of steps: not proven either way.
    pub undecided: Vec<String>,
}

#[derive(Debug)]
pub struct Violation {
    pub key: String,
    /// A small sub-history of this key that is still not linearizable; the
    /// flag marks writes relaxed to "outcome unknown" while shrinking it.
    pub minimal: Vec<(Record, bool)>,
    /// The operation the search could not place.
    pub stuck_at: Record,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.undecided.is_empty()
    }
}

/// Checks every key of `history`, and shrinks each violation to a short
/// sub-history that explains it.
pub fn verify(history: &History) -> Report {
    verify_explained(history, true)
}

/// Checks every key of `history`; `explain`: shrink each violation (up to
/// seconds each), or keep the whole history where only the verdict counts.
pub fn verify_explained(history: &History, explain: bool) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in &history.records {
        // A read that failed tells nothing about the register.
        if record.op == OpKind::Get && record.return_us.is_none() {
            continue;
        }
        by_key.entry(&record.key).or_default().push(record);
    }
    let mut report = Report { keys: by_key.len(), ..Report::default() };
    for (key, records) in by_key {
        report.operations += records.len();
        report.unknown_writes += records.iter().filter(|record| record.return_us.is_none()).count();
        let operations: Vec<_> = records.iter().map(|record| record.operation()).collect();
        match linearizability::check(&operations) {
            Verdict::Linearizable => {}
            Verdict::Unknown => report.undecided.push(key.to_owned()),
            Verdict::NotLinearizable { stuck_at } => {
                let shortest = match explain {
                    true => linearizability::minimize(&operations),
                    false => operations.iter().cloned().enumerate().collect(),
                };
                let mut minimal: Vec<(Record, bool)> = shortest
                    .into_iter()
                    .map(|(index, operation)| {
                        let relaxed = operation.ret.is_none() && records[index].return_us.is_some();
                        ((*records[index]).clone(), relaxed)
                    })
                    .collect();
                minimal.sort_by_key(|(record, _)| record.call_us);
                report.violations.push(Violation {
                    key: key.to_owned(),
                    minimal,
                    stuck_at: records[stuck_at].clone(),
                });
            }
        }
    }
    report
}

/// Explains a violation with the faults that overlap its time span.
pub struct Explanation<'a> {
    pub violation: &'a Violation,
    pub history: &'a History,
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let violation = self.violation;
        writeln!(
            f,
            "key {}: not linearizable ({} operations in the shortest sub-history found)",
            violation.key,
            violation.minimal.len()
        )?;
        let hidden = violation.minimal.len().saturating_sub(CHECK_SHOWN_OPERATIONS_MAX);
        if hidden > 0 {
            writeln!(f, "  ... {hidden} earlier operations (all of them are in the saved history)")?;
        }
        for (record, relaxed) in &violation.minimal[hidden..] {
            let note = if *relaxed { "  (checked as if its outcome were unknown)" } else { "" };
            writeln!(f, "  {record}{note}")?;
        }
        writeln!(f, "  could not be placed: {}", violation.stuck_at)?;
        let start = violation.minimal.iter().map(|(record, _)| record.call_us).min().unwrap_or(0);
        let end = violation
            .minimal
            .iter()
            .map(|(record, _)| record.return_us.unwrap_or(record.call_us))
            .max()
            .unwrap_or(0);
        // Faults from a little before the sub-history to its end.
        let window_start = start.saturating_sub(5_000_000);
        let nearby: Vec<_> = self
            .history
            .faults
            .iter()
            .filter(|fault| fault.start_us <= end && fault.end_us.unwrap_or(fault.start_us) >= window_start)
            .collect();
        if nearby.is_empty() {
            writeln!(f, "  no fault in the 5 s before it")?;
        } else {
            writeln!(f, "  faults around it:")?;
            for fault in nearby {
                writeln!(f, "    {fault}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::Fault;

    fn record(
        client: u64,
        op: OpKind,
        value: Option<u64>,
        observed: Option<u64>,
        call: u64,
        ret: u64,
    ) -> Record {
        Record { value, observed, return_us: Some(ret), ..Record::called(client, "k".into(), op, call) }
    }

    #[test]
    fn a_stale_read_is_reported_with_its_faults() {
        let history = History {
            seed: 1,
            records: vec![
                record(1, OpKind::Put, Some(1), None, 0, 10),
                record(1, OpKind::Put, Some(2), None, 20, 30),
                record(2, OpKind::Get, None, Some(1), 40, 50),
                // Another key, fine.
                Record { key: "other".into(), ..record(3, OpKind::Put, Some(3), None, 0, 1) },
            ],
            faults: vec![Fault { start_us: 35, end_us: None, description: "kill node 2".into() }],
        };
        let report = verify(&history);
        assert_eq!(report.keys, 2);
        assert!(!report.passed());
        assert_eq!(report.violations.len(), 1);
        let text = Explanation { violation: &report.violations[0], history: &history }.to_string();
        assert!(text.contains("key k"), "{text}");
        assert!(text.contains("kill node 2"), "{text}");
    }

    #[test]
    fn failed_reads_are_ignored() {
        let mut failed_read = record(2, OpKind::Get, None, Some(99), 40, 50);
        failed_read.return_us = None;
        let history = History {
            seed: 1,
            records: vec![record(1, OpKind::Put, Some(1), None, 0, 10), failed_read],
            faults: vec![],
        };
        let report = verify(&history);
        assert!(report.passed());
        assert_eq!(report.operations, 1);
    }
}
