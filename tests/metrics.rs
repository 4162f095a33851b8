//! `--metrics-addr`: the Prometheus endpoint of real chain servers, scraped
//! while a client writes, checked with `promtool check metrics` (Debian
//! package `prometheus`) and by value; other paths get 404; a server with
//! the endpoint shuts down cleanly on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use chaintable::client::error::ClientError;
use chaintable::proto::ErrorCode;
use common::chain::start_member;
use common::{ServerProcess, start_zookeeper};

/// Puts the load thread makes at most, and for at most how long.
const PUTS_MAX: u64 = 200_000;
const LOAD_TIME_MAX: Duration = Duration::from_secs(20);

/// The metrics address, as the server's `stats` tell it.
fn metrics_address(server: &ServerProcess) -> String {
    let address = server.stats().expect("the server's stats").metrics_address;
    assert!(!address.is_empty(), "the server has a metrics endpoint");
    address
}

/// `GET <path>` over HTTP/1.1: (status line, body).
fn http_get(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("connecting to the metrics endpoint");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/plain\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reading the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
    (status, body.to_owned())
}

/// `promtool check metrics` on `page`: passes with no lint complaint.
fn promtool_check(page: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus; scripts/test.sh installs it)");
    promtool.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let output = promtool.wait_with_output().unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "promtool: {said}\n{page}");
}

/// The value of the sample `series` (name and labels as written).
#[track_caller]
fn value(page: &str, series: &str) -> f64 {
    let line = page
        .lines()
        .find(|line| line.strip_prefix(series).is_some_and(|rest| rest.starts_with(' ')))
        .unwrap_or_else(|| panic!("no {series} in:\n{page}"));
    line[series.len() + 1..].parse().expect("a number")
}

#[test]
fn metrics_are_valid_during_load_and_tell_the_chain_state() {
    let zookeeper = start_zookeeper();
    let metrics = ["--metrics-addr", "127.0.0.1:0"];
    let mut head = start_member(&zookeeper, true, &metrics);
    let tail = start_member(&zookeeper, false, &metrics);
    let (head_metrics, tail_metrics) = (metrics_address(&head), metrics_address(&tail));

    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop);
    let options = ClientOptions { timeout: Duration::from_secs(10), ..ClientOptions::default() };
    let mut client = Client::chain(&zookeeper.address(), "/chain", options).expect("chain client");
    let writer = thread::spawn(move || {
        let started = Instant::now();
        let mut acknowledged = 0u64;
        for index in 0..PUTS_MAX {
            if stop_flag.load(Ordering::SeqCst) || started.elapsed() > LOAD_TIME_MAX {
                break;
            }
            if client.put(&format!("key{index}"), vec![b'v'; 100]).is_ok() {
                acknowledged += 1;
            }
        }
        acknowledged
    });
    for _ in 0..5 {
        assert!(!writer.is_finished(), "the load ended before the scrapes");
        for address in [&head_metrics, &tail_metrics] {
            let (status, page) = http_get(address, "/metrics");
            assert_eq!(status, "HTTP/1.1 200 OK");
            promtool_check(&page);
        }
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    let acknowledged = writer.join().expect("the writer");
    assert!(acknowledged > 0);

    // A read at the head is refused: counted by its error code.
    let mut direct = Client::new(&head.address, ClientOptions::default());
    let refused = direct.get("key0").expect_err("the head answers no read");
    assert!(matches!(refused, ClientError::Server { code: ErrorCode::ERR_WRONG_ROLE, .. }), "{refused}");

    let (_, head_page) = http_get(&head_metrics, "/metrics");
    let (_, tail_page) = http_get(&tail_metrics, "/metrics");
    promtool_check(&head_page);
    promtool_check(&tail_page);
    let acknowledged = acknowledged as f64;
    assert!(value(&head_page, "chaintable_operations_total{op=\"put\"}") >= acknowledged);
    assert!(value(&head_page, "chaintable_commit_duration_seconds_count") >= acknowledged);
    assert!(value(&head_page, "chaintable_request_duration_seconds_count") >= acknowledged);
    assert!(value(&head_page, "chaintable_errors_total{code=\"ERR_WRONG_ROLE\"}") >= 1.0);
    assert_eq!(value(&head_page, "chaintable_role{role=\"head\"}"), 1.0);
    assert_eq!(value(&head_page, "chaintable_role{role=\"tail\"}"), 0.0);
    assert_eq!(value(&tail_page, "chaintable_role{role=\"tail\"}"), 1.0);
    assert_eq!(value(&tail_page, "chaintable_chain_position"), 1.0);
    for page in [&head_page, &tail_page] {
        assert_eq!(value(page, "chaintable_chain_length"), 2.0);
        assert_eq!(value(page, "chaintable_generation"), 1.0);
        assert_eq!(value(page, "chaintable_zookeeper_session_confirmed"), 1.0);
        assert!(value(page, "chaintable_keys") >= acknowledged);
        assert!(value(page, "chaintable_memory_used_bytes") > value(page, "chaintable_stored_bytes"));
        assert!(value(page, "chaintable_committed_sequence") >= acknowledged);
    }
    assert!(
        value(&head_page, "chaintable_state_transfers_total{direction=\"sent\"}") >= 1.0,
        "the tail joined"
    );
    assert!(value(&tail_page, "chaintable_state_transfers_total{direction=\"received\"}") >= 1.0);
    assert!(value(&tail_page, "chaintable_state_transfer_bytes_total{direction=\"received\"}") > 0.0);

    assert_eq!(http_get(&head_metrics, "/").0, "HTTP/1.1 404 Not Found");
    head.signal("TERM").unwrap();
    let status = head.wait_exit(Duration::from_secs(10)).expect("the server exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}
