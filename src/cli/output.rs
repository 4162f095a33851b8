//! What the client prints for each result, as text (the README's contract)
//! or, with `--json`, as one JSON object per line.
//!
//! JSON objects: `put` `{"ok":true}`; `get` `{"key":..,"found":true,"value":..}`
//! or `{"key":..,"found":false}`; `del` `{"key":..,"deleted":true|false}`;
//! `size` `{"size":n}`; `getkeys` `{"key":..}` per key; `gettable`
//! `{"key":..,"value":..}` per entry; `stats` one object of every figure;
//! `members` one object per member; `help` `{"help":..}`; `cas`
//! `{"key":..,"swapped":true}` or `{"key":..,"swapped":false,"found":..,"value":..}`;
//! `incr` `{"key":..,"value":n}`; `mget` one `get` object per key; `mset`
//! `{"ok":true}`; `exists` `{"key":..,"exists":true|false}`; `put --ttl`
//! `{"ok":true}`; `expire` `{"key":..,"expire":true|false}`; `persist`
//! `{"key":..,"persist":true|false}`; `ttl` `{"key":..,"ttl_ms":n}` (-1: no
//! expiry, -2: absent); `watch` one
//! `{"sequence":n,"event":"put"|"delete"|"expired","key":..,"value":..}` per
//! change; `shards` one object `{"path":..,"version":n,"ranges":[{"first":..,"last":..,
//! "chain":..,"state":..}],"chains":[{"chain":..,"head":..,"tail":..,"keys":..}]}`; `shards
//! init` `{"ok":true,"version":0,"ranges":[..]}`; a failure
//! `{"error":..}` (with `"code"` for an error reply). A value that is not
//! UTF-8 comes as `"value_hex"` instead of `"value"`.

use std::io::{self, Write};

use serde_json::{Map, Value, json};

use super::command::{HELP, StatisticsValue, escape, format_statistics, statistics_fields};
use super::expiry::ttl_number;
use super::migrate::{self, MigrateReport};
use super::{member_table, shards};
use crate::client::error::ClientError;
use crate::client::expiry::TimeToLive;
use crate::client::members::MemberReport;
use crate::client::router::ShardReport;
use crate::proto::watch_event::Kind;
use crate::proto::{Statistics, WatchEvent};
use crate::shard::map::ShardMap;

/// Text or JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// One result of a command.
#[derive(Debug)]
pub enum Record<'a> {
    /// A `put` succeeded.
    Written,
    Found {
        key: &'a str,
        value: &'a [u8],
    },
    NotFound {
        key: &'a str,
    },
    Deleted {
        key: &'a str,
        existed: bool,
    },
    Size(u64),
    Key(&'a str),
    Entry {
        key: &'a str,
        value: &'a [u8],
    },
    Statistics(&'a Statistics),
    Members(&'a [MemberReport]),
    Help,
    /// A `cas` set its value.
    Swapped {
        key: &'a str,
    },
    /// A `cas` did not match: what the key holds (`None`: absent).
    NotSwapped {
        key: &'a str,
        current: Option<&'a [u8]>,
    },
    /// `incr`'s new value.
    Number {
        key: &'a str,
        number: i64,
    },
    /// One key of `mget` (`None`: absent).
    Lookup {
        key: &'a str,
        value: Option<&'a [u8]>,
    },
    Exists {
        key: &'a str,
        exists: bool,
    },
    /// `expire` (`name`) set a deadline, or `persist` removed it; `done`
    /// false: the key is absent.
    Changed {
        key: &'a str,
        name: &'static str,
        done: bool,
    },
    /// `ttl`'s answer.
    Ttl {
        key: &'a str,
        left: TimeToLive,
    },
    /// One change `watch` saw.
    Event(&'a WatchEvent),
    /// `shards`.
    Shards(&'a ShardReport),
    /// `shards init`'s new map.
    ShardsCreated(&'a ShardMap),
    /// A line of `migrate`.
    Migration(&'a MigrateReport<'a>),
}

/// A watch event's kind, as `watch` prints it (text: upper case).
fn event_kind(event: &WatchEvent) -> &'static str {
    match event.kind.enum_value() {
        Ok(Kind::PUT) => "put",
        Ok(Kind::DELETE) => "delete",
        Ok(Kind::EXPIRED) => "expired",
        Err(_) => "unknown",
    }
}

/// Prints records on `out` in one format, and notes for people on `err`.
pub struct Printer<'a> {
    pub format: Format,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

impl<'a> Printer<'a> {
    pub fn new(format: Format, out: &'a mut dyn Write, err: &'a mut dyn Write) -> Printer<'a> {
        Printer { format, out, err }
    }

    pub fn print(&mut self, record: &Record<'_>) -> io::Result<()> {
        match self.format {
            Format::Text => self.print_text(record),
            Format::Json => match record {
                Record::Members(reports) => reports
                    .iter()
                    .try_for_each(|report| json_line(self.out, &member_table::json_object(report))),
                other => json_line(self.out, &json_object(other)),
            },
        }
    }

    fn print_text(&mut self, record: &Record<'_>) -> io::Result<()> {
        let out = &mut *self.out;
        match record {
            Record::Written | Record::Deleted { existed: true, .. } => writeln!(out, "OK"),
            Record::Found { value, .. } => {
                out.write_all(value)?;
                writeln!(out)
            }
            // Absence is told on `err` (see `note_not_found`) and by the exit code.
            Record::NotFound { .. } | Record::Deleted { existed: false, .. } => Ok(()),
            Record::Size(size) => writeln!(out, "{size}"),
            Record::Key(key) => writeln!(out, "{}", escape(key.as_bytes())),
            Record::Entry { key, value } => writeln!(out, "{}\t{}", escape(key.as_bytes()), escape(value)),
            Record::Statistics(statistics) => out.write_all(format_statistics(statistics).as_bytes()),
            Record::Members(reports) => out.write_all(member_table::table(reports).as_bytes()),
            Record::Shards(report) => out.write_all(shards::report_text(report).as_bytes()),
            Record::ShardsCreated(map) => out.write_all(shards::created_text(map).as_bytes()),
            Record::Migration(report) => out.write_all(migrate::report_text(report).as_bytes()),
            Record::Help => writeln!(out, "{HELP}"),
            Record::Swapped { .. } => writeln!(out, "OK"),
            Record::NotSwapped { current: Some(value), .. } => {
                out.write_all(value)?;
                writeln!(out)
            }
            Record::NotSwapped { key, current: None } => writeln!(self.err, "{key}: absent, not set"),
            Record::Number { number, .. } => writeln!(out, "{number}"),
            Record::Lookup { key, value: Some(value) } => {
                writeln!(out, "{}\t{}", escape(key.as_bytes()), escape(value))
            }
            Record::Lookup { key, value: None } => writeln!(self.err, "{key}: not found"),
            Record::Exists { exists: done, .. } | Record::Changed { done, .. } => {
                writeln!(out, "{}", u8::from(*done))
            }
            Record::Ttl { left, .. } => writeln!(out, "{}", ttl_number(*left)),
            Record::Event(event) => {
                let (sequence, kind) = (event.sequence, event_kind(event).to_ascii_uppercase());
                let key = escape(event.key.as_bytes());
                match event.kind.enum_value() {
                    Ok(Kind::PUT) => writeln!(out, "{sequence}\t{kind}\t{key}\t{}", escape(&event.value)),
                    _ => writeln!(out, "{sequence}\t{kind}\t{key}"),
                }
            }
        }
    }

    /// A command that failed: in JSON, a result line of its own on `out`;
    /// as text, `prefix` and the message on `err`.
    pub fn print_failure(
        &mut self,
        prefix: &str,
        message: &str,
        error: Option<&ClientError>,
    ) -> io::Result<()> {
        match self.format {
            Format::Text => writeln!(self.err, "{prefix}{message}"),
            Format::Json => {
                let mut object = Map::new();
                object.insert("error".into(), json!(message));
                if let Some(ClientError::Server { code, .. }) = error {
                    object.insert("code".into(), json!(format!("{code:?}")));
                }
                json_line(self.out, &Value::Object(object))?;
                self.out.flush()
            }
        }
    }

    /// As text, an absent key is told on `err` (stdout stays the values
    /// only); in JSON the result line says it.
    pub fn note_not_found(&mut self, key: &str) -> io::Result<()> {
        match self.format {
            Format::Text => writeln!(self.err, "{key}: not found"),
            Format::Json => Ok(()),
        }
    }

    /// As text, why each member that is in the `members` table without
    /// figures did not answer (an `ERR_AUTH` is not a dead server); in JSON
    /// each member's object says it.
    pub fn note_member_failures(&mut self, reports: &[MemberReport]) -> io::Result<()> {
        if self.format == Format::Json {
            return Ok(());
        }
        for report in reports {
            if let Err(error) = &report.statistics {
                let member = &report.member;
                writeln!(self.err, "{} at {}: {error}", member.name, member.address)?;
            }
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn json_line(out: &mut dyn Write, value: &Value) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

/// `"value"` for UTF-8, `"value_hex"` for other bytes.
fn insert_value(object: &mut Map<String, Value>, value: &[u8]) {
    match std::str::from_utf8(value) {
        Ok(text) => object.insert("value".into(), json!(text)),
        Err(_) => object.insert(
            "value_hex".into(),
            json!(value.iter().map(|byte| format!("{byte:02x}")).collect::<String>()),
        ),
    };
}

fn json_object(record: &Record<'_>) -> Value {
    let mut object = Map::new();
    match record {
        Record::Written => {
            object.insert("ok".into(), json!(true));
        }
        Record::Found { key, value } => {
            object.insert("key".into(), json!(key));
            object.insert("found".into(), json!(true));
            insert_value(&mut object, value);
        }
        Record::NotFound { key } => {
            object.insert("key".into(), json!(key));
            object.insert("found".into(), json!(false));
        }
        Record::Deleted { key, existed } => {
            object.insert("key".into(), json!(key));
            object.insert("deleted".into(), json!(existed));
        }
        Record::Size(size) => {
            object.insert("size".into(), json!(size));
        }
        Record::Key(key) => {
            object.insert("key".into(), json!(key));
        }
        Record::Entry { key, value } => {
            object.insert("key".into(), json!(key));
            insert_value(&mut object, value);
        }
        Record::Statistics(statistics) => {
            for (name, value) in statistics_fields(statistics) {
                let value = match value {
                    StatisticsValue::Number(number) => json!(number),
                    StatisticsValue::Text(text) => json!(text),
                };
                object.insert(name.into(), value);
            }
        }
        Record::Members(_) => unreachable!("members print one object per member"),
        Record::Shards(report) => return shards::report_json(report),
        Record::Migration(report) => return migrate::report_json(report),
        Record::ShardsCreated(map) => {
            object.insert("ok".into(), json!(true));
            object.insert("version".into(), json!(map.version));
            object.insert("ranges".into(), shards::ranges_json(map));
        }
        Record::Swapped { key } => {
            object.insert("key".into(), json!(key));
            object.insert("swapped".into(), json!(true));
        }
        Record::NotSwapped { key, current } => {
            object.insert("key".into(), json!(key));
            object.insert("swapped".into(), json!(false));
            object.insert("found".into(), json!(current.is_some()));
            if let Some(value) = current {
                insert_value(&mut object, value);
            }
        }
        Record::Number { key, number } => {
            object.insert("key".into(), json!(key));
            object.insert("value".into(), json!(number));
        }
        Record::Lookup { key, value } => {
            object.insert("key".into(), json!(key));
            object.insert("found".into(), json!(value.is_some()));
            if let Some(value) = value {
                insert_value(&mut object, value);
            }
        }
        Record::Exists { key, exists } => {
            object.insert("key".into(), json!(key));
            object.insert("exists".into(), json!(exists));
        }
        Record::Changed { key, name, done } => {
            object.insert("key".into(), json!(key));
            object.insert((*name).into(), json!(done));
        }
        Record::Ttl { key, left } => {
            object.insert("key".into(), json!(key));
            object.insert("ttl_ms".into(), json!(ttl_number(*left)));
        }
        Record::Event(event) => {
            object.insert("sequence".into(), json!(event.sequence));
            object.insert("event".into(), json!(event_kind(event)));
            object.insert("key".into(), json!(event.key));
            if event.kind.enum_value() == Ok(Kind::PUT) {
                insert_value(&mut object, &event.value);
            }
        }
        Record::Help => {
            object.insert("help".into(), json!(HELP));
        }
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ErrorCode;

    fn printed(format: Format, records: &[Record<'_>]) -> String {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut printer = Printer::new(format, &mut out, &mut err);
        for record in records {
            printer.print(record).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_is_the_readme_contract() {
        let text = printed(
            Format::Text,
            &[
                Record::Written,
                Record::Found { key: "k", value: b"v w" },
                Record::NotFound { key: "x" },
                Record::Deleted { key: "k", existed: false },
                Record::Size(3),
                Record::Key("a\tb"),
                Record::Entry { key: "k", value: &[0xff] },
                Record::Swapped { key: "k" },
                Record::NotSwapped { key: "k", current: Some(b"now") },
                Record::NotSwapped { key: "k", current: None },
                Record::Number { key: "n", number: -3 },
                Record::Lookup { key: "a", value: Some(b"1") },
                Record::Lookup { key: "b", value: None },
                Record::Exists { key: "a", exists: false },
            ],
        );
        assert_eq!(text, "OK\nv w\n3\na\\tb\nk\t\\xff\nOK\nnow\n-3\na\t1\n0\n");
    }

    #[test]
    fn json_has_one_object_per_line() {
        let mut statistics = Statistics::new();
        statistics.role = "tail".into();
        statistics.keys = 2;
        let text = printed(
            Format::Json,
            &[
                Record::Written,
                Record::Found { key: "k", value: b"" },
                Record::Found { key: "b", value: &[0xff, 0x00] },
                Record::NotFound { key: "x" },
                Record::Deleted { key: "k", existed: true },
                Record::Size(3),
                Record::Entry { key: "k", value: b"v" },
                Record::Statistics(&statistics),
                Record::NotSwapped { key: "k", current: Some(b"v") },
                Record::Number { key: "n", number: 7 },
                Record::Exists { key: "k", exists: true },
            ],
        );
        let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines[0], json!({"ok": true}));
        assert_eq!(lines[1], json!({"key": "k", "found": true, "value": ""}));
        assert_eq!(lines[2], json!({"key": "b", "found": true, "value_hex": "ff00"}));
        assert_eq!(lines[3], json!({"key": "x", "found": false}));
        assert_eq!(lines[4], json!({"key": "k", "deleted": true}));
        assert_eq!(lines[5], json!({"size": 3}));
        assert_eq!(lines[6], json!({"key": "k", "value": "v"}));
        assert_eq!(lines[7]["role"], json!("tail"));
        assert_eq!(lines[7]["keys"], json!(2));
        assert_eq!(lines[8], json!({"key": "k", "swapped": false, "found": true, "value": "v"}));
        assert_eq!(lines[9], json!({"key": "n", "value": 7}));
        assert_eq!(lines[10], json!({"key": "k", "exists": true}));
        assert_eq!(lines.len(), 11);
    }

    #[test]
    fn json_failures_carry_the_code() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let error = ClientError::Server { code: ErrorCode::ERR_TOO_LARGE, message: "big".into() };
        let mut printer = Printer::new(Format::Json, &mut out, &mut err);
        printer.print_failure("", &error.to_string(), Some(&error)).unwrap();
        printer.note_not_found("k").unwrap();
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line, json!({"error": "server error (ERR_TOO_LARGE): big", "code": "ERR_TOO_LARGE"}));
        assert!(err.is_empty(), "JSON mode keeps stderr quiet");
        let mut printer = Printer::new(Format::Text, &mut out, &mut err);
        printer.print_failure("error: ", "gone", None).unwrap();
        printer.note_not_found("k").unwrap();
        assert_eq!(String::from_utf8(err).unwrap(), "error: gone\nk: not found\n");
    }
}
