//! Prometheus metrics: `--metrics-addr <host:port>` serves the text
//! exposition format on `GET /metrics`.
//!
//! A minimal HTTP/1.1 responder on a thread of its own, blocking like the
//! rest of the server: one connection at a time (Prometheus scrapes one
//! target every few seconds), a request head of at most
//! [`METRICS_REQUEST_BYTES_MAX`] that must arrive within
//! [`METRICS_REQUEST_TIMEOUT`], `Connection: close` after every answer, 404
//! for any other path and 405 for any other method. Nothing here is on the
//! request path: the figures are the atomics that `stats` reads too, and
//! the chain state is read under the node's lock once per scrape.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use log::{debug, warn};

use super::latency::{BUCKET_BOUNDS_US, LatencyHistogram};
use super::service::Service;
use super::stats::COUNTED_OPCODES;
use crate::chain::Role;
use crate::limits::{ACCEPT_ERROR_PAUSE, METRICS_REQUEST_BYTES_MAX, METRICS_REQUEST_TIMEOUT};

/// The exposition format's content type (text format 0.0.4).
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers scrapes on `listener` until `stopping` is set (the server wakes
/// the accept by connecting once it is).
pub fn serve(listener: &TcpListener, service: &Arc<Service>, stopping: &AtomicBool) {
    for incoming in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        match incoming {
            Ok(stream) => {
                if let Err(error) = answer(stream, service) {
                    debug!("metrics request: {error}");
                }
            }
            Err(error) => {
                warn!("metrics accept failed: {error}");
                thread::sleep(ACCEPT_ERROR_PAUSE);
            }
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Routes a request head (its request line, then headers).
fn route(head: &[u8]) -> Route {
    let Some(line) = head.split(|byte| *byte == b'\n').next() else {
        return Route::BadRequest;
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return Route::BadRequest;
    };
    let words: Vec<&str> = line.trim_end_matches('\r').split(' ').collect();
    let [method, target, version] = words.as_slice() else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    if *method != "GET" {
        return Route::MethodNotAllowed;
    }
    let path = target.split('?').next().unwrap_or_default();
    if path == "/metrics" { Route::Metrics } else { Route::NotFound }
}

/// Reads one request head and answers it.
fn answer(mut stream: TcpStream, service: &Service) -> io::Result<()> {
    stream.set_read_timeout(Some(METRICS_REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(METRICS_REQUEST_TIMEOUT))?;
    let (status, body) = match read_head(&mut stream)? {
        Some(head) => match route(&head) {
            Route::Metrics => ("200 OK", render(service)),
            Route::NotFound => ("404 Not Found", "not found: metrics are at /metrics\n".to_owned()),
            Route::MethodNotAllowed => ("405 Method Not Allowed", "only GET\n".to_owned()),
            Route::BadRequest => ("400 Bad Request", "not an HTTP/1 request\n".to_owned()),
        },
        None => (
            "431 Request Header Fields Too Large",
            format!("a request head is at most {METRICS_REQUEST_BYTES_MAX} bytes\n"),
        ),
    };
    let allow = if status.starts_with("405") { "Allow: GET\r\n" } else { "" };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// Reads up to the blank line that ends a request head; `None` if it is
/// longer than [`METRICS_REQUEST_BYTES_MAX`]. Errors if the peer closes or
/// is slower than [`METRICS_REQUEST_TIMEOUT`] in all.
fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + METRICS_REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    loop {
        if head.windows(4).any(|window| window == b"\r\n\r\n") || head.windows(2).any(|pair| pair == b"\n\n")
        {
            return Ok(Some(head));
        }
        if head.len() > METRICS_REQUEST_BYTES_MAX {
            return Ok(None);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request head not complete in time"));
        }
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the end of the head"));
        }
        head.extend_from_slice(&buffer[..read]);
    }
}

/// The metrics page.
fn render(service: &Service) -> String {
    let mut page = Exposition::default();
    let stats = &service.stats;
    let replica = &service.replica;

    let operations = COUNTED_OPCODES.map(|opcode| {
        (format!("{opcode:?}").trim_start_matches("OP_").to_lowercase(), stats.operations(opcode))
    });
    let counter = "counter";
    page.labelled(
        ("chaintable_operations_total", counter, "Requests served successfully, by operation."),
        "op",
        operations,
    );
    let errors = stats.errors_by_code().map(|(code, count)| (format!("{code:?}"), count));
    page.labelled(
        ("chaintable_errors_total", counter, "Requests answered with an error, by error code."),
        "code",
        errors,
    );
    page.histogram(
        "chaintable_request_duration_seconds",
        "Time from a request's arrival to its reply (a write's includes its commit).",
        stats.request_latency(),
    );
    page.histogram(
        "chaintable_commit_duration_seconds",
        "Time from a write being applied at this server to its commit at the tail.",
        stats.commit_latency(),
    );
    page.gauge("chaintable_client_connections", "Client connections open.", stats.clients());
    page.gauge("chaintable_keys", "Keys in the table.", replica.table.len());
    page.gauge("chaintable_stored_bytes", "Key and value bytes in the table.", replica.table.bytes_stored());
    page.gauge(
        "chaintable_memory_used_bytes",
        "Memory as --max-memory counts it: keys, values and measured overheads.",
        replica.used_memory(),
    );
    page.gauge(
        "chaintable_memory_max_bytes",
        "--max-memory (0: no limit).",
        replica.limits.memory_bytes_max.unwrap_or(0),
    );

    let role = replica.role();
    page.labelled(
        ("chaintable_role", "gauge", "This server's chain role: 1 for the current one."),
        "role",
        Role::ALL.map(|candidate| (candidate.name(), u64::from(candidate == role))),
    );
    let position = replica.position();
    page.gauge(
        "chaintable_chain_position",
        "0-based position in replication order (0 when not a member).",
        position.as_ref().map_or(0, |position| position.index as u64),
    );
    page.gauge(
        "chaintable_chain_length",
        "Ready servers in the chain, as this server's view shows it.",
        position.as_ref().map_or(0, |position| position.chain_length as u64),
    );
    let progress = replica.progress();
    page.gauge(
        "chaintable_last_applied_sequence",
        "Sequence number of the last write applied.",
        progress.applied,
    );
    page.gauge(
        "chaintable_committed_sequence",
        "Sequence number up to which writes are committed.",
        progress.committed,
    );
    page.gauge(
        "chaintable_replication_lag_writes",
        "Writes applied here and not yet committed by the tail.",
        progress.applied.saturating_sub(progress.committed),
    );
    page.gauge(
        "chaintable_sent_list_writes",
        "Writes forwarded to the successor and not yet acknowledged.",
        replica.sent_list_len(),
    );
    page.gauge(
        "chaintable_zookeeper_session_confirmed",
        "1 while the ZooKeeper session is confirmed (the lease holds); always 1 standalone.",
        u64::from(replica.lease_valid()),
    );
    page.gauge(
        "chaintable_generation",
        "The chain's generation: raised when the chain restarted losing writes (0: standalone or not a member).",
        replica.generation(),
    );
    let (sent, received) = (replica.transfers.sent.read(), replica.transfers.received.read());
    page.labelled(
        ("chaintable_state_transfers_total", counter, "State transfers (snapshots) begun, by direction."),
        "direction",
        [("sent", sent.0), ("received", received.0)],
    );
    page.labelled(
        ("chaintable_state_transfer_bytes_total", counter, "Bytes of state transfers, by direction."),
        "direction",
        [("sent", sent.1), ("received", received.1)],
    );
    page.gauge("chaintable_uptime_seconds", "Seconds since the server started.", stats.uptime_s());
    page.text
}

/// The text exposition format, written family by family.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// `# HELP` and `# TYPE` lines.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> =
            labels.iter().map(|(label, value)| format!("{label}=\"{value}\"")).collect();
        match labels.is_empty() {
            true => {
                let _ = writeln!(self.text, "{name} {value}");
            }
            false => {
                let _ = writeln!(self.text, "{name}{{{}}} {value}", labels.join(","));
            }
        }
    }

    /// A family (`name`, `kind`, `help`) of one sample per value of `label`.
    fn labelled(
        &mut self,
        (name, kind, help): (&str, &str, &str),
        label: &str,
        samples: impl IntoIterator<Item = (impl AsRef<str>, u64)>,
    ) {
        self.family(name, kind, help);
        for (label_value, value) in samples {
            self.sample(name, &[(label, label_value.as_ref())], value);
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, histogram: &LatencyHistogram) {
        self.family(name, "histogram", help);
        let snapshot = histogram.snapshot();
        let bucket = format!("{name}_bucket");
        for (bound_us, count) in BUCKET_BOUNDS_US.iter().zip(snapshot.cumulative) {
            let le = (*bound_us as f64 / 1e6).to_string();
            self.sample(&bucket, &[("le", &le)], count);
        }
        self.sample(&bucket, &[("le", "+Inf")], snapshot.count);
        self.sample(&format!("{name}_sum"), &[], snapshot.sum_seconds);
        self.sample(&format!("{name}_count"), &[], snapshot.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_of_metrics_is_served() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SPDY/3\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(&[0xff, b' ', b'/', b' ', b'H', b'\r', b'\n']), Route::BadRequest);
    }

    #[test]
    fn a_histogram_is_cumulative_with_sum_and_count() {
        let histogram = LatencyHistogram::default();
        histogram.record(std::time::Duration::from_micros(80));
        histogram.record(std::time::Duration::from_millis(2));
        let mut page = Exposition::default();
        page.histogram("x_seconds", "Help.", &histogram);
        let text = page.text;
        assert!(text.starts_with("# HELP x_seconds Help.\n# TYPE x_seconds histogram\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.00005\"} 0\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.0001\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.0025\"} 2\n"), "{text}");
        assert!(
            text.contains("x_seconds_bucket{le=\"+Inf\"} 2\nx_seconds_sum 0.00208\nx_seconds_count 2\n"),
            "{text}"
        );
    }
}
