//! What `table-check failover` measured, as users see it: for every fault
//! (a kill -9 or a SIGSTOP), each client's write gap and read gap, the
//! time from the fault to that client's first success of that kind among
//! operations it began after the fault; summed up per victim as p50 and
//! max, printed as a table or as one JSON object.

use serde::Serialize;

use super::history::{OpKind, Record};

/// One fault the gaps are measured from.
#[derive(Clone, Debug)]
pub struct Disruption {
    /// The row it counts in: `head`, `middle`, `tail`, `tail after head`,
    /// `sigstop 300 ms`, ...
    pub label: String,
    /// When it happened (the run's clock).
    pub start_us: u64,
    /// Pauses: whether the chain removed the paused server (asked of the
    /// other servers' removal counts); kills: `None`.
    pub removed: Option<bool>,
}

/// The gaps of one kind (writes or reads) of one row, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GapSummary {
    /// Client-faults measured.
    pub samples: usize,
    pub p50_ms: f64,
    pub max_ms: f64,
    /// Client-faults after which the client never succeeded: a failure.
    pub missing: usize,
}

/// One line of the table: a victim (or a pause length) over its rounds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub victim: String,
    pub rounds: usize,
    pub write_gap: GapSummary,
    pub read_gap: GapSummary,
    /// Pauses: in how many rounds the paused server was removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<usize>,
}

/// Each client's gap (µs) after a fault at `start_us`: from the fault to
/// the return of the client's first successful operation matching `kind`
/// that it began at or after the fault; `None` if it had none. Clients
/// with no operation of that kind at all (the ledger writer has no reads)
/// are left out.
fn gaps(records: &[Record], start_us: u64, kind: fn(OpKind) -> bool) -> Vec<Option<u64>> {
    let mut clients: Vec<u64> =
        records.iter().filter(|record| kind(record.op)).map(|record| record.client).collect();
    clients.sort_unstable();
    clients.dedup();
    clients
        .into_iter()
        .map(|client| {
            records
                .iter()
                .filter(|record| record.client == client && kind(record.op) && record.call_us >= start_us)
                .filter_map(|record| record.return_us)
                .min()
                .map(|returned| returned - start_us)
        })
        .collect()
}

fn is_write(op: OpKind) -> bool {
    op != OpKind::Get
}

fn is_read(op: OpKind) -> bool {
    op == OpKind::Get
}

/// p50 (nearest rank) and max of the gaps, in milliseconds.
fn summarize(gaps: &[Option<u64>]) -> GapSummary {
    let mut found: Vec<u64> = gaps.iter().flatten().copied().collect();
    found.sort_unstable();
    let millis = |micros: u64| (micros as f64 / 100.0).round() / 10.0;
    let p50 = found.get(found.len().div_ceil(2).saturating_sub(1)).copied().unwrap_or_default();
    GapSummary {
        samples: found.len(),
        p50_ms: millis(p50),
        max_ms: millis(found.last().copied().unwrap_or_default()),
        missing: gaps.len() - found.len(),
    }
}

/// One row per label, in the order the labels first appear.
pub fn rows(records: &[Record], disruptions: &[Disruption]) -> Vec<Row> {
    let mut labels: Vec<&str> = Vec::new();
    for disruption in disruptions {
        if !labels.contains(&disruption.label.as_str()) {
            labels.push(&disruption.label);
        }
    }
    labels
        .into_iter()
        .map(|label| {
            let of_label: Vec<&Disruption> =
                disruptions.iter().filter(|disruption| disruption.label == label).collect();
            let all = |kind: fn(OpKind) -> bool| -> Vec<Option<u64>> {
                of_label.iter().flat_map(|disruption| gaps(records, disruption.start_us, kind)).collect()
            };
            let removals: Vec<bool> = of_label.iter().filter_map(|disruption| disruption.removed).collect();
            Row {
                victim: label.to_owned(),
                rounds: of_label.len(),
                write_gap: summarize(&all(is_write)),
                read_gap: summarize(&all(is_read)),
                removed: (!removals.is_empty()).then(|| removals.iter().filter(|removed| **removed).count()),
            }
        })
        .collect()
}

/// The rows as a table for people.
pub fn table(rows: &[Row]) -> String {
    let mut text = format!(
        "{:<18}{:>7}{:>15}{:>15}{:>15}{:>15}{:>9}\n",
        "victim", "rounds", "write p50 ms", "write max ms", "read p50 ms", "read max ms", "removed"
    );
    for row in rows {
        let removed = row.removed.map_or("-".to_owned(), |count| format!("{count}/{}", row.rounds));
        text.push_str(&format!(
            "{:<18}{:>7}{:>15.1}{:>15.1}{:>15.1}{:>15.1}{:>9}\n",
            row.victim,
            row.rounds,
            row.write_gap.p50_ms,
            row.write_gap.max_ms,
            row.read_gap.p50_ms,
            row.read_gap.max_ms,
            removed
        ));
    }
    text
}

/// Rows where some client never succeeded after a fault, described.
pub fn missing(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .flat_map(|row| {
            [("write", &row.write_gap), ("read", &row.read_gap)]
                .into_iter()
                .filter(|(_, gap)| gap.missing > 0)
                .map(move |(kind, gap)| {
                    format!(
                        "{}: {} of {} client-faults saw no successful {kind} afterwards",
                        row.victim,
                        gap.missing,
                        gap.missing + gap.samples
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(client: u64, op: OpKind, call_us: u64, return_us: Option<u64>) -> Record {
        Record { return_us, ..Record::called(client, "k0".into(), op, call_us) }
    }

    #[test]
    fn a_gap_runs_from_the_fault_to_the_first_success_begun_after_it() {
        let records = [
            // Began before the fault: does not count, however late it returns.
            done(1, OpKind::Put, 90, Some(105)),
            done(1, OpKind::Put, 110, None),
            done(1, OpKind::Put, 120, Some(400)),
            done(1, OpKind::Get, 130, Some(250)),
            done(2, OpKind::Put, 101, Some(150)),
            done(2, OpKind::Get, 50, Some(60)),
        ];
        assert_eq!(gaps(&records, 100, is_write), vec![Some(300), Some(50)]);
        assert_eq!(gaps(&records, 100, is_read), vec![Some(150), None], "client 2 read nothing after");
    }

    #[test]
    fn rows_sum_up_each_victim_and_report_what_is_missing() {
        let records = [
            done(1, OpKind::Put, 1_000, Some(3_000)),
            done(1, OpKind::Get, 1_000, Some(2_000)),
            done(1, OpKind::Put, 10_000, Some(20_000)),
            done(1, OpKind::Get, 10_000, Some(11_000)),
        ];
        let fault = |label: &str, start_us, removed| Disruption { label: label.into(), start_us, removed };
        let rows = rows(
            &records,
            &[fault("head", 0, None), fault("head", 9_000, None), fault("pause", 15_000, Some(true))],
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].write_gap, GapSummary { samples: 2, p50_ms: 3.0, max_ms: 11.0, missing: 0 });
        assert_eq!((rows[0].read_gap.p50_ms, rows[0].read_gap.max_ms), (2.0, 2.0));
        assert_eq!(rows[1].removed, Some(1));
        assert_eq!((rows[1].write_gap.missing, rows[1].read_gap.missing), (1, 1));
        let problems = missing(&rows);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("pause: 1 of 1 client-faults saw no successful write"),
            "{problems:?}"
        );
        assert!(table(&rows).contains("1/1"), "{}", table(&rows));
    }
}
