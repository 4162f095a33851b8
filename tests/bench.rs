//! `table-bench` through the real binary: its JSON line against a real
//! standalone server and a real chain, and its exit codes. Short runs: these
//! check the contract, never the speed (that is what the benchmark is for).

mod common;

use std::net::TcpListener;
use std::process::{Command, Output};

use common::chain::{converged, start_chain};
use common::{RunClient, start_server, start_zookeeper, stdout};
use serde_json::Value;

/// Runs `table-bench <args...>` to the end.
fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_table-bench")).args(args).output().expect("running table-bench")
}

/// The JSON object on the last line of stdout, after checking the run succeeded.
#[track_caller]
fn json_of(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    let stdout = stdout(output);
    let last_line = stdout.lines().last().expect("some output");
    serde_json::from_str(last_line)
        .unwrap_or_else(|error| panic!("last line is not JSON ({error}):\n{stdout}"))
}

#[test]
fn json_line_against_a_standalone_server() {
    let server = start_server(64, &[]);
    let output = bench(&[
        "--server",
        &server.address,
        "--clients",
        "4",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--keys",
        "500",
        "--value-size",
        "100",
        "--mix",
        "80:15:5",
        "--json",
    ]);
    let report = json_of(&output);
    let ops = report["ops"].as_u64().expect("ops is a number");
    assert!(ops > 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["ops_per_sec"].as_f64().is_some_and(|rate| rate > 0.0), "{report}");
    let latency = &report["latency_us"];
    let percentiles: Vec<u64> = ["p50", "p90", "p99", "p999", "max"]
        .iter()
        .map(|name| latency[name].as_u64().unwrap_or_else(|| panic!("latency_us.{name} missing: {report}")))
        .collect();
    assert!(percentiles.windows(2).all(|pair| pair[0] <= pair[1]), "percentiles not ordered: {report}");
    assert_eq!(
        (report["target"].as_str(), report["clients"].as_u64(), report["mix"].as_str()),
        (Some("server"), Some(4), Some("80:15:5"))
    );
    let by_kind = ["gets", "puts", "dels"].iter().map(|kind| report[kind].as_u64().unwrap()).sum::<u64>();
    assert_eq!(by_kind, ops, "{report}");
    // The human table comes first; progress went to stderr.
    assert!(stdout(&output).contains("\nthroughput  "), "{}", stdout(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("measuring 1/2 s"));
    // The fill wrote every key (some deleted since); values have the asked size.
    let size: u64 = stdout(&server.client(&["size"])).trim().parse().unwrap();
    assert!((250..=500).contains(&size), "size {size}");
    let some_key = (0..500)
        .map(|index| server.client(&["get", &format!("key:{index}")]))
        .find(|get| get.status.success());
    assert_eq!(some_key.map(|get| get.stdout.len()), Some(101), "a 100-byte value and a newline");
}

#[test]
fn json_line_against_a_chain() {
    let zookeeper = start_zookeeper();
    let servers = start_chain(&zookeeper, 2);
    let output = bench(&[
        "--zk",
        &zookeeper.address(),
        "--clients",
        "3",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--keys",
        "200",
        "--value-size",
        "10",
        "--mix",
        "50:50:0:20:20",
        "--json",
    ]);
    let report = json_of(&output);
    for kind in ["puts", "gets", "cas", "incrs"] {
        assert!(report[kind].as_u64().is_some_and(|count| count > 0), "{kind}: {report}");
    }
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    // Only a cas finds nothing to swap (a key another thread's value filled).
    assert!(report["absent"].as_u64() <= report["cas"].as_u64(), "{report}");
    assert_eq!((report["target"].as_str(), report["mix"].as_str()), (Some("chain"), Some("50:50:0:20:20")));
    let table = converged(&servers.iter().collect::<Vec<_>>());
    assert_eq!(table.iter().filter(|(key, _)| key.starts_with("key:")).count(), 200);
    let counted: u64 = table
        .iter()
        .filter(|(key, _)| key.starts_with("counter:"))
        .map(|(_, value)| String::from_utf8_lossy(value).parse::<u64>().expect("a counter"))
        .sum();
    assert!(counted >= report["incrs"].as_u64().unwrap(), "every measured incr counted once or more");
}

#[test]
fn an_unreachable_target_exits_2() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    for target in ["--server", "--redis"] {
        let output = bench(&[target, &closed, "--duration", "1", "--timeout-ms", "2000"]);
        assert_eq!(output.status.code(), Some(2), "{target}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stderr).contains(&closed), "{target}");
        assert!(output.stdout.is_empty(), "{target}");
    }
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let output = bench(&["--server", "127.0.0.1:1", "--mix", "90:10"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--mix"));
    let help = bench(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).starts_with("usage: table-bench"));
}

#[test]
fn watchers_are_held_through_the_run_and_sent_every_change() {
    let server = start_server(16, &[]);
    let output = bench(&[
        "--server",
        &server.address,
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--keys",
        "100",
        "--mix",
        "50:50:0",
        "--watchers",
        "3",
        "--json",
    ]);
    let report = json_of(&output);
    assert_eq!(
        (report["watchers"].as_u64(), report["watchers_open"].as_u64()),
        (Some(3), Some(3)),
        "{report}"
    );
    let puts = report["puts"].as_u64().expect("puts");
    let events = report["watch_events"].as_u64().expect("watch_events");
    // Each watcher is sent the fill, the warm-up's and the measured puts.
    assert!(puts > 0 && events >= 3 * (puts + 100), "{events} changes for {puts} puts: {report}");
    assert!(stdout(&output).contains("\nwatchers    3 held"), "{}", stdout(&output));
}
