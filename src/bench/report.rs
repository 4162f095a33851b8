//! The results of a run, for people (an aligned table) and for scripts (one
//! line of JSON). The JSON is written by hand: it is one flat object plus
//! the latency object, which does not earn a serialisation crate.

use std::fmt::Write;
use std::time::Duration;

use crate::bench::args::BenchTarget;
use crate::bench::histogram::Percentiles;
use crate::bench::workload::Mix;

/// What one run measured (the measured phase only, warm-up and fill left out).
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub target: BenchTarget,
    pub clients: usize,
    /// The measured phase as it really lasted.
    pub duration: Duration,
    pub keys: u64,
    pub value_bytes: usize,
    pub mix: Mix,
    /// Operations that succeeded (a GET or DEL of an absent key succeeds).
    pub ops: u64,
    /// Operations that failed; not in `ops` nor in the latencies.
    pub errors: u64,
    /// The successful operations by kind.
    pub gets: u64,
    pub puts: u64,
    pub dels: u64,
    pub cas: u64,
    pub incrs: u64,
    /// GETs and DELs that found no key: many of them in a read-mostly run
    /// mean the fill did not happen (`--no-fill` on an empty table).
    pub absent: u64,
    /// Latencies of the successful operations.
    pub latency_us: Percentiles,
    /// The first error seen, to say why operations failed.
    pub first_error: Option<String>,
    /// Idle connections held through the run, and how many of them the
    /// target still kept open at the end.
    pub idle_connections: usize,
    pub idle_open: usize,
    /// `--watchers`: watch streams held through the run, the changes they
    /// were sent, and how many were still open at the end.
    pub watchers: usize,
    pub watch_events: u64,
    pub watchers_open: usize,
}

impl Report {
    pub fn ops_per_sec(&self) -> f64 {
        let seconds = self.duration.as_secs_f64();
        if seconds > 0.0 { self.ops as f64 / seconds } else { 0.0 }
    }

    /// The operations row: counts by kind (cas and incr when in the mix;
    /// a cas that did not swap counts as finding no key).
    fn operations(&self) -> String {
        let more = if self.mix.cas > 0 || self.mix.incr > 0 {
            format!(", cas {}, incr {}", self.cas, self.incrs)
        } else {
            String::new()
        };
        format!(
            "{} ok (get {}, put {}, del {}{more}; {} found no key), {} errors",
            self.ops, self.gets, self.puts, self.dels, self.absent, self.errors
        )
    }

    /// The human-readable table, one line per row, ending in a newline.
    pub fn table(&self) -> String {
        let latency = &self.latency_us;
        let rows = [
            ("target", self.target.to_string()),
            ("clients", self.clients.to_string()),
            ("duration", format!("{:.2} s measured", self.duration.as_secs_f64())),
            ("keys", format!("{} keys, values of {} bytes", self.keys, self.value_bytes)),
            ("mix", format!("{} (get:put:del[:cas:incr])", self.mix)),
            ("operations", self.operations()),
            ("throughput", format!("{:.0} ops/s", self.ops_per_sec())),
            (
                "latency µs",
                format!(
                    "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
                    latency.p50, latency.p90, latency.p99, latency.p999, latency.max, latency.mean
                ),
            ),
        ];
        let mut table = String::new();
        for (name, value) in rows {
            let _ = writeln!(table, "{name:<12}{value}");
        }
        if self.idle_connections > 0 {
            let held = format!("{} held, {} still open at the end", self.idle_connections, self.idle_open);
            let _ = writeln!(table, "{:<12}{held}", "idle conns");
        }
        if self.watchers > 0 {
            let watched = format!(
                "{} held, {} changes sent, {} still open at the end",
                self.watchers, self.watch_events, self.watchers_open
            );
            let _ = writeln!(table, "{:<12}{watched}", "watchers");
        }
        if let Some(error) = &self.first_error {
            // One row, even for a message of several lines.
            let _ = writeln!(table, "{:<12}{}", "first error", error.replace(['\n', '\r'], " "));
        }
        table
    }

    /// One line of JSON (no newline): the promised `ops`, `ops_per_sec`,
    /// `errors` and `latency_us` {`p50`, `p90`, `p99`, `p999`, `max`}, and
    /// the run's parameters so a file of such lines describes itself.
    pub fn json(&self) -> String {
        let latency = &self.latency_us;
        let mut json = String::from("{");
        let _ = write!(
            json,
            "\"target\":{},\"address\":{},\"clients\":{},\"duration_s\":{:.3},\"keys\":{},\"value_size\":{},\
             \"mix\":{},\"ops\":{},\"ops_per_sec\":{:.1},\"errors\":{},\"gets\":{},\"puts\":{},\"dels\":{},\
             \"cas\":{},\"incrs\":{},\"absent\":{},",
            json_string(self.target.kind()),
            json_string(&self.target.address()),
            self.clients,
            self.duration.as_secs_f64(),
            self.keys,
            self.value_bytes,
            json_string(&self.mix.to_string()),
            self.ops,
            self.ops_per_sec(),
            self.errors,
            self.gets,
            self.puts,
            self.dels,
            self.cas,
            self.incrs,
            self.absent,
        );
        let _ = write!(
            json,
            "\"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{},\"mean\":{:.1}}},\
             \"first_error\":{},\"idle_connections\":{},\"idle_open\":{},\"watchers\":{},\"watch_events\":{},\
             \"watchers_open\":{}}}",
            latency.p50,
            latency.p90,
            latency.p99,
            latency.p999,
            latency.max,
            latency.mean,
            self.first_error.as_deref().map_or_else(|| "null".to_owned(), json_string),
            self.idle_connections,
            self.idle_open,
            self.watchers,
            self.watch_events,
            self.watchers_open,
        );
        json
    }
}

/// `text` as a JSON string literal: quotes, backslashes and control
/// characters escaped (addresses and error messages may hold any of them).
fn json_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            control if u32::from(control) < 0x20 => {
                let _ = write!(quoted, "\\u{:04x}", u32::from(control));
            }
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn report() -> Report {
        Report {
            target: BenchTarget::Server("127.0.0.1:7000".into()),
            clients: 16,
            duration: Duration::from_millis(2000),
            keys: 10_000,
            value_bytes: 100,
            mix: Mix { get: 90, put: 10, del: 0, cas: 0, incr: 0 },
            ops: 3000,
            errors: 2,
            gets: 2700,
            puts: 300,
            dels: 0,
            cas: 0,
            incrs: 0,
            absent: 5,
            latency_us: Percentiles { p50: 120, p90: 300, p99: 900, p999: 2000, max: 4100, mean: 150.0 },
            first_error: Some("server error: \"busy\"\n\\ \u{1}".into()),
            idle_connections: 5000,
            watchers: 0,
            watch_events: 0,
            watchers_open: 0,
            idle_open: 4990,
        }
    }

    #[test]
    fn json_has_the_promised_shape() {
        let json = report().json();
        assert!(!json.contains('\n'), "one line: {json}");
        let parsed: Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(parsed["ops"], 3000);
        assert_eq!(parsed["ops_per_sec"], 1500.0);
        assert_eq!(parsed["errors"], 2);
        let latency = &parsed["latency_us"];
        for (name, expected) in [("p50", 120), ("p90", 300), ("p99", 900), ("p999", 2000), ("max", 4100)] {
            assert_eq!(latency[name], expected, "{name}");
        }
        assert_eq!(parsed["target"], "server");
        assert_eq!(parsed["address"], "127.0.0.1:7000");
        assert_eq!(parsed["clients"], 16);
        assert_eq!(parsed["duration_s"], 2.0);
        assert_eq!((parsed["keys"].as_u64(), parsed["value_size"].as_u64()), (Some(10_000), Some(100)));
        assert_eq!(parsed["mix"], "90:10:0");
        assert_eq!(parsed["first_error"], "server error: \"busy\"\n\\ \u{1}");
        assert_eq!(
            (parsed["idle_connections"].as_u64(), parsed["idle_open"].as_u64()),
            (Some(5000), Some(4990))
        );
    }

    #[test]
    fn json_without_errors_or_operations() {
        let mut quiet = report();
        quiet.first_error = None;
        quiet.duration = Duration::ZERO;
        let parsed: Value = serde_json::from_str(&quiet.json()).expect("valid JSON");
        assert_eq!(parsed["first_error"], Value::Null);
        assert_eq!(parsed["ops_per_sec"], 0.0);
    }

    #[test]
    fn the_table_has_a_row_per_measure() {
        let table = report().table();
        assert!(table.contains("throughput  1500 ops/s\n"), "{table}");
        assert!(
            table.contains("latency µs  p50 120  p90 300  p99 900  p99.9 2000  max 4100  mean 150.0"),
            "{table}"
        );
        assert!(table.contains("3000 ok (get 2700, put 300, del 0; 5 found no key), 2 errors"), "{table}");
        assert!(table.contains("\nidle conns  5000 held, 4990 still open at the end\n"), "{table}");
        assert!(table.ends_with("\nfirst error server error: \"busy\" \\ \u{1}\n"), "{table}");
    }
}
