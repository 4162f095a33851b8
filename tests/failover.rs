//! Failover in milliseconds (issue 19, phase 1): a `kill -9`ed chain
//! member is removed by its neighbour, whose connect to the dead port is
//! refused, long before ZooKeeper would expire its session. Measured as a
//! writer sees it: the time from the kill to the first acknowledged write
//! that began after the kill.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use common::chain::{local_table, start_member_with_session};
use common::{ServerProcess, start_zookeeper};

/// The servers' ZooKeeper session: the gap without a removal.
const SESSION_MS: u64 = 5_000;
/// The gap must be far below the session timeout: only a removal, not an
/// expiry, can give it. Generous for a loaded 2-core machine.
const GAP_MAX: Duration = Duration::from_secs(1);
/// How long the test waits for a write after a kill at most.
const WAIT_MAX: Duration = Duration::from_secs(20);

/// Writes acknowledged so far: (key number, when the write began, when it
/// was acknowledged).
type Acked = Arc<Mutex<Vec<(u64, Instant, Instant)>>>;

/// One chain client writing `f<n>` = `n` back to back until stopped.
fn start_writer(zk_hosts: String, acked: Acked, stopping: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut client = Client::chain(&zk_hosts, "/chain", ClientOptions::default()).expect("chain client");
        let started = Instant::now();
        let mut number = 0u64;
        while !stopping.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
            number += 1;
            let began = Instant::now();
            if client.put(&format!("f{number}"), number.to_string()).is_ok() {
                acked.lock().unwrap().push((number, began, Instant::now()));
            }
        }
    })
}

/// Kills `victim` and returns the write gap: from the kill to the
/// acknowledgement of the first write that began after it.
fn kill_and_measure(victim: &mut ServerProcess, acked: &Acked) -> Duration {
    let killed = Instant::now();
    victim.kill();
    loop {
        let first = acked.lock().unwrap().iter().find(|(_, began, _)| *began >= killed).map(|entry| entry.2);
        if let Some(done) = first {
            return done - killed;
        }
        assert!(killed.elapsed() < WAIT_MAX, "no write acknowledged {WAIT_MAX:?} after the kill");
        thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until the writer has had `count` more writes acknowledged.
fn wait_for_writes(acked: &Acked, count: usize) {
    let target = acked.lock().unwrap().len() + count;
    let deadline = Instant::now() + WAIT_MAX;
    while acked.lock().unwrap().len() < target {
        assert!(Instant::now() < deadline, "the writer made no progress");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn kill_9_of_head_then_tail_costs_writes_far_less_than_the_session_timeout() {
    let zookeeper = start_zookeeper();
    let mut servers: Vec<ServerProcess> =
        (0..3).map(|index| start_member_with_session(&zookeeper, index == 0, SESSION_MS, &[])).collect();
    let acked: Acked = Arc::default();
    let stopping = Arc::new(AtomicBool::new(false));
    let writer = start_writer(zookeeper.address(), Arc::clone(&acked), Arc::clone(&stopping));
    wait_for_writes(&acked, 200);

    let head_gap = kill_and_measure(&mut servers[0], &acked);
    wait_for_writes(&acked, 200);
    // Right after the head's removal, within the removal rate limit: a
    // removal on a new proof of death skips it (see `chain::eviction`).
    let tail_gap = kill_and_measure(&mut servers[2], &acked);
    wait_for_writes(&acked, 200);
    stopping.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    println!("write gap after kill -9: head {head_gap:?}, tail {tail_gap:?} (session {SESSION_MS} ms)");

    // The survivor knows it is the whole chain: asked, not read in a log.
    let survivor = &servers[1];
    let role = survivor.wait_for_stats(WAIT_MAX, |statistics| statistics.role == "head+tail");
    let statistics =
        role.unwrap_or_else(|| panic!("the survivor never became head+tail: {:?}", survivor.stats()));
    // It removed both, each on the proof of its death (a refused connect),
    // none for silence: asked, not read in a log.
    assert_eq!(
        (statistics.removals_by_proof, statistics.removals_by_lease),
        (2, 0),
        "removals by proof and by lease expiry"
    );
    assert!(head_gap < GAP_MAX, "head kill: writes stopped for {head_gap:?}");
    assert!(tail_gap < GAP_MAX, "tail kill: writes stopped for {tail_gap:?}");
    // No acknowledged write was lost.
    let table: std::collections::HashMap<String, Vec<u8>> =
        local_table(&survivor.address).into_iter().collect();
    for (number, _, _) in acked.lock().unwrap().iter() {
        assert_eq!(
            table.get(&format!("f{number}")),
            Some(&number.to_string().into_bytes()),
            "write {number} lost"
        );
    }
}

/// `table-check failover`, one round of each kill and one short pause: it
/// passes (linearizable, every acknowledged write on every server), and
/// its JSON has a row per victim, each with gaps measured for every client.
#[test]
fn table_check_failover_measures_every_victim_and_passes() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_table-check"))
        .args(["failover", "--rounds", "1", "--sigstop", "300", "--clients", "2", "--json", "--seed", "19"])
        .args(["--server-binary", env!("CARGO_BIN_EXE_table-server")])
        .env("RUST_LOG", "warn")
        .output()
        .expect("running table-check failover");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let last = stdout.lines().last().expect("a JSON line");
    let summary: serde_json::Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(summary["passed"], true, "{summary}");
    assert_eq!(summary["linearizable"], true, "{summary}");
    let rows = summary["rows"].as_array().expect("rows");
    let victims: Vec<&str> = rows.iter().map(|row| row["victim"].as_str().unwrap()).collect();
    assert_eq!(victims, ["head", "middle", "tail", "tail after head", "sigstop 300 ms"]);
    for row in rows {
        // Two clients of the shared keys and the ledger writer.
        assert_eq!(row["write_gap"]["samples"], 3, "{row}");
        assert_eq!(row["read_gap"]["samples"], 2, "{row}");
        assert!(row["write_gap"]["max_ms"].as_f64().unwrap() > 0.0, "{row}");
    }
    assert!(rows[4]["removed"].is_u64(), "a pause says whether it was removed: {}", rows[4]);
}

/// A dead member's removal asked for while ZooKeeper is down (restarting)
/// is made once ZooKeeper is back (the crate holds the delete until it has
/// reconnected): the member still leaves on the proof of its death, not
/// seconds later on its session's expiry. Asked of the survivor's `stats`,
/// not read in a log.
#[test]
fn a_removal_zookeeper_missed_is_made_once_it_is_back() {
    // Long enough that the sessions outlive ZooKeeper's restart.
    const LONG_SESSION_MS: u64 = 10_000;
    let mut zookeeper = start_zookeeper();
    let mut servers: Vec<ServerProcess> =
        (0..2).map(|index| start_member_with_session(&zookeeper, index == 0, LONG_SESSION_MS, &[])).collect();
    zookeeper.stop();
    servers[1].kill();
    // The head's link to the tail closes at once and its connect to the
    // tail's port is refused: it asks for the removal while ZooKeeper is
    // down (the probe takes a few milliseconds; this is ample).
    thread::sleep(Duration::from_millis(500));
    zookeeper.restart().expect("restarting ZooKeeper");
    let head = &servers[0];
    let alone = head.wait_for_stats(WAIT_MAX, |statistics| statistics.role == "head+tail");
    let statistics = alone.unwrap_or_else(|| panic!("the head never became head+tail: {:?}", head.stats()));
    assert_eq!(
        (statistics.removals_by_proof, statistics.removals_by_lease),
        (1, 0),
        "the tail is removed on the proof of its death, not by its session's expiry"
    );
}
