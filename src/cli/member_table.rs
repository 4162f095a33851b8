//! How `members` shows a chain: a table for people, one JSON object per
//! member for scripts.

use serde_json::{Map, Value, json};

use crate::client::members::MemberReport;
use crate::view::Readiness;

/// The state a member announces in ZooKeeper: `ready`, `joining` or `recovering`.
fn state(readiness: Readiness) -> &'static str {
    match readiness {
        Readiness::Ready => "ready",
        Readiness::Joining => "joining",
        Readiness::Recovering { .. } => "recovering",
    }
}

/// What the role column says of a member that did not answer.
pub const UNREACHABLE: &str = "unreachable";

/// Seconds for people: `42s`, `3m07s`, `5h02m`, `2d03h`.
pub fn duration_text(seconds: u64) -> String {
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    match () {
        _ if days > 0 => format!("{days}d{:02}h", hours % 24),
        _ if hours > 0 => format!("{hours}h{:02}m", minutes % 60),
        _ if minutes > 0 => format!("{minutes}m{:02}s", seconds % 60),
        _ => format!("{seconds}s"),
    }
}

/// The table's cells for one member; `-` where it did not answer.
fn row(report: &MemberReport) -> [String; 8] {
    let member = &report.member;
    let dash = || "-".to_owned();
    let (role, applied, committed, uptime) = match &report.statistics {
        Ok(statistics) => (
            statistics.role.clone(),
            statistics.last_applied.to_string(),
            statistics.committed.to_string(),
            duration_text(statistics.uptime_s),
        ),
        Err(_) => (UNREACHABLE.to_owned(), dash(), dash(), dash()),
    };
    [
        member.name.clone(),
        member.address.clone(),
        state(member.readiness).to_owned(),
        role,
        applied,
        committed,
        report.lag.map_or_else(dash, |lag| lag.to_string()),
        uptime,
    ]
}

/// A header and one line per member, columns aligned; numbers to the right.
pub fn table(reports: &[MemberReport]) -> String {
    const HEADER: [&str; 8] = ["NODE", "ADDRESS", "STATE", "ROLE", "APPLIED", "COMMITTED", "LAG", "UPTIME"];
    const NUMERIC: [bool; 8] = [false, false, false, false, true, true, true, true];
    let rows: Vec<[String; 8]> = reports.iter().map(row).collect();
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|column| {
            rows.iter().map(|row| row[column].len()).chain([HEADER[column].len()]).max().unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 8]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .zip(NUMERIC)
            .map(
                |((cell, &width), numeric)| {
                    if numeric { format!("{cell:>width$}") } else { format!("{cell:<width$}") }
                },
            )
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut text = line(HEADER);
    for row in &rows {
        text.push_str(&line(row.each_ref().map(String::as_str)));
    }
    text
}

/// One member as a JSON object: `reachable` says whether the figures are there.
pub fn json_object(report: &MemberReport) -> Value {
    let member = &report.member;
    let mut object = Map::new();
    object.insert("node".into(), json!(member.name));
    object.insert("address".into(), json!(member.address));
    object.insert("state".into(), json!(state(member.readiness)));
    match &report.statistics {
        Ok(statistics) => {
            object.insert("reachable".into(), json!(true));
            object.insert("role".into(), json!(statistics.role));
            object.insert("last_applied".into(), json!(statistics.last_applied));
            object.insert("committed".into(), json!(statistics.committed));
            object.insert("lag".into(), json!(report.lag));
            object.insert("uptime_s".into(), json!(statistics.uptime_s));
        }
        Err(error) => {
            object.insert("reachable".into(), json!(false));
            object.insert("role".into(), json!(UNREACHABLE));
            object.insert("error".into(), json!(error.to_string()));
        }
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::error::ClientError;
    use crate::proto::Statistics;
    use crate::view::parse_member;

    fn report(sequence: u64, state: &str, figures: Option<(&str, u64)>, lag: Option<u64>) -> MemberReport {
        let member =
            parse_member(&format!("node{sequence:010}"), format!("h:{sequence} {state} t").as_bytes())
                .expect("well-formed member");
        let statistics = match figures {
            Some((role, applied)) => {
                let mut statistics = Statistics::new();
                statistics.role = role.into();
                statistics.last_applied = applied;
                statistics.committed = applied;
                statistics.uptime_s = 3725;
                Ok(statistics)
            }
            None => Err(ClientError::Unreachable("h:3: Connection refused".into())),
        };
        MemberReport { member, statistics, lag }
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(59), "59s");
        assert_eq!(duration_text(187), "3m07s");
        assert_eq!(duration_text(3725), "1h02m");
        assert_eq!(duration_text(2 * 86_400 + 3 * 3600 + 59), "2d03h");
    }

    #[test]
    fn the_table_aligns_and_marks_the_unreachable() {
        let reports = [
            report(1, "ready", Some(("head", 120)), Some(0)),
            report(3, "ready", None, None),
            report(4, "joining", Some(("joining", 7)), Some(113)),
        ];
        assert_eq!(
            table(&reports),
            "NODE            ADDRESS  STATE    ROLE         APPLIED  COMMITTED  LAG  UPTIME\n\
             node0000000001  h:1      ready    head             120        120    0   1h02m\n\
             node0000000003  h:3      ready    unreachable        -          -    -       -\n\
             node0000000004  h:4      joining  joining            7          7  113   1h02m\n"
        );
    }

    #[test]
    fn json_objects_say_whether_the_member_answered() {
        let answered = json_object(&report(1, "ready", Some(("head+tail", 5)), Some(0)));
        assert_eq!(answered["reachable"], json!(true));
        assert_eq!(answered["role"], json!("head+tail"));
        assert_eq!(answered["lag"], json!(0));
        assert_eq!(answered["uptime_s"], json!(3725));
        let silent = json_object(&report(2, "recovering:9", None, None));
        assert_eq!(silent["state"], json!("recovering"));
        assert_eq!(silent["role"], json!("unreachable"));
        assert_eq!(silent["error"], json!("server unreachable: h:3: Connection refused"));
    }
}
