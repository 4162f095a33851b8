//! `table-client members` against a real chain of three on a real
//! ZooKeeper: every member in chain order with its state, role and
//! progress; a killed member shown as unreachable while ZooKeeper still
//! lists it; and a joining member followed until it is the tail.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::chain::start_member;
use common::{ZooKeeperProcess, assert_client, run_client, start_zookeeper, stdout};
use serde_json::Value;

/// Sessions long enough that a killed member stays listed for a while.
const SESSION: [&str; 2] = ["--zk-timeout-ms", "6000"];

/// `members --json` of the chain: one object per member.
fn members(zookeeper: &ZooKeeperProcess) -> Vec<Value> {
    let output = run_client(&["--json", &zookeeper.address()], &["members"], None);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    stdout(&output).lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

/// One field of every member.
fn column(rows: &[Value], field: &str) -> Vec<String> {
    rows.iter().map(|row| row[field].as_str().map_or_else(|| row[field].to_string(), str::to_owned)).collect()
}

/// Polls `members` until `done` holds for its rows; panics after `limit`.
fn wait_for_members(
    zookeeper: &ZooKeeperProcess,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let rows = members(zookeeper);
        if done(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "members never got there; last: {rows:#?}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn members_through_a_kill_and_a_join() {
    let zookeeper = start_zookeeper();
    let mut servers: Vec<_> = (0..3).map(|index| start_member(&zookeeper, index == 0, &SESSION)).collect();
    let hosts = zookeeper.address();
    for key in ["a", "b", "c"] {
        assert_client(&run_client(&[&hosts], &["put", key, "v"], None), 0, "OK\n");
    }
    let rows = wait_for_members(&zookeeper, Duration::from_secs(10), |rows| {
        rows.iter().all(|row| row["lag"] == 0 && row["committed"] == 3)
    });
    assert_eq!(column(&rows, "role"), ["head", "middle", "tail"]);
    assert_eq!(column(&rows, "state"), ["ready", "ready", "ready"]);
    assert_eq!(
        column(&rows, "address"),
        servers.iter().map(|server| server.address.clone()).collect::<Vec<_>>()
    );
    assert_eq!(column(&rows, "last_applied"), ["3", "3", "3"]);
    assert!(rows.iter().all(|row| row["reachable"] == true && row["uptime_s"].is_u64()), "{rows:#?}");

    // The table for people: a header, then one aligned line per member.
    let table = stdout(&run_client(&[&hosts], &["chain"], None));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("NODE") && lines[0].contains("LAG  UPTIME"), "{table}");
    for (line, role) in lines[1..].iter().zip(["head", "middle", "tail"]) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[2..7], ["ready", role, "3", "3", "0"], "{table}");
    }

    // Paused (SIGSTOP): ZooKeeper lists the tail until its session expires;
    // it does not answer. (A killed one is removed at once by its neighbour,
    // whose reconnect is refused: tests/failover.rs.)
    let paused = Command::new("kill").args(["-STOP", &servers[2].pid().to_string()]).status();
    assert!(paused.as_ref().is_ok_and(|status| status.success()), "SIGSTOP {paused:?}");
    let started = Instant::now();
    let rows = members(&zookeeper);
    assert!(started.elapsed() < Duration::from_secs(5), "members took {:?}", started.elapsed());
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert_eq!(rows[2]["role"], "unreachable");
    assert_eq!(rows[2]["reachable"], false);
    assert!(rows[2]["error"].as_str().is_some_and(|error| error.contains("unreachable")), "{rows:#?}");
    let table = stdout(&run_client(&[&hosts], &["members"], None));
    let killed: Vec<&str> = table.lines().nth(3).unwrap_or_default().split_whitespace().collect();
    assert_eq!(killed[2..], ["ready", "unreachable", "-", "-", "-", "-"], "{table}");

    // Then the session expires and the middle becomes the tail.
    let rows = wait_for_members(&zookeeper, Duration::from_secs(20), |rows| rows.len() == 2);
    assert_eq!(column(&rows, "role"), ["head", "tail"]);
    servers[2].kill();
    servers.remove(2);

    // A join, watched from another thread while it happens.
    let known: BTreeSet<String> = column(&rows, "node").into_iter().collect();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, zookeeper_address) = (Arc::clone(&stop), hosts.clone());
        thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..500 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let output = run_client(&["--json", &zookeeper_address], &["members"], None);
                for line in stdout(&output).lines() {
                    let row: Value = serde_json::from_str(line).expect("a JSON line");
                    seen.push((row["node"].to_string(), row["state"].to_string(), row["role"].to_string()));
                }
                thread::sleep(Duration::from_millis(50));
            }
            seen
        })
    };
    servers.push(start_member(&zookeeper, false, &SESSION));
    let rows = wait_for_members(&zookeeper, Duration::from_secs(20), |rows| {
        // A newcomer announces itself ready in ZooKeeper a moment before it
        // reads that view and calls itself the tail: wait for both.
        rows.len() == 3
            && rows.iter().all(|row| row["state"] == "ready" && row["lag"] == 0 && row["role"] != "joining")
    });
    stop.store(true, Ordering::SeqCst);
    let seen = watcher.join().expect("the watching thread");
    assert_eq!(column(&rows, "role"), ["head", "middle", "tail"]);
    let newcomer = &rows[2]["node"];
    assert!(!known.contains(newcomer.as_str().unwrap_or_default()), "{rows:#?}");
    assert_eq!(rows[2]["last_applied"], 3, "the newcomer holds every write");
    // Whatever the watcher saw of the newcomer was consistent: joining and
    // serving nothing, or ready.
    for (node, state, role) in seen.iter().filter(|(node, ..)| node == &newcomer.to_string()) {
        assert!(
            (state == "\"joining\"" && role == "\"joining\"") || state == "\"ready\"",
            "{node}: {state} {role}"
        );
    }
}
