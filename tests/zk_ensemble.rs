//! A chain on a 3-node ZooKeeper ensemble (three real `QuorumPeerMain`
//! processes on loopback) under a writer: the leader killed, a follower
//! killed, the first listed host down, quorum lost for 3 s. Measures the
//! longest gap between acknowledged writes and counts fenced servers; every
//! acknowledged write must be on every replica afterwards.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::chain::{SERVER_START, converged};
use common::ensemble::{Ensemble, Writer, WriterReport};
use common::{ServerProcess, run_client, start_server};

/// Session timeout of the servers: the default (the ensemble's tickTime is 500 ms).
const ZK_TIMEOUT_MS: &str = "5000";

/// Starts a server and waits until it says (in `stats`) it is a ready member.
fn start_member(hosts: &str) -> ServerProcess {
    let server = start_server(64, &[hosts, "--zk-timeout-ms", ZK_TIMEOUT_MS]);
    assert!(server.wait_until_ready(SERVER_START), "not ready:\n{}", server.log());
    server
}

/// Fencings so far, as the servers count them in `stats`.
fn fenced_count(servers: &[ServerProcess]) -> u64 {
    servers.iter().map(|server| server.stats().expect("stats").fencings).sum()
}

/// Runs `fault` under a writer; returns the writer's report and how many
/// times servers were fenced meanwhile.
fn under_writer(
    hosts: &str,
    servers: &[ServerProcess],
    name: &str,
    fault: impl FnOnce(),
) -> (WriterReport, u64) {
    let fenced_before = fenced_count(servers);
    let writer = Writer::start(hosts, "/chain", &format!("{name}-"));
    thread::sleep(Duration::from_secs(1));
    fault();
    thread::sleep(Duration::from_secs(3));
    let report = writer.stop();
    let fenced = fenced_count(servers) - fenced_before;
    eprintln!(
        "ENSEMBLE {name}: {} writes acked, longest write gap {} ms, {} failed calls, {fenced} fencings",
        report.acked.len(),
        report.longest_gap.as_millis(),
        report.failures
    );
    (report, fenced)
}

#[test]
fn a_chain_rides_out_ensemble_faults() {
    let mut ensemble = Ensemble::start();
    let hosts = ensemble.hosts();
    let servers = vec![start_member(&hosts), start_member(&hosts)];
    let mut acked = Vec::new();
    let mut results = Vec::new();

    let leader = ensemble.leader();
    let (report, fenced) = under_writer(&hosts, &servers, "leader-killed", || ensemble.kill_peer(leader));
    ensemble.start_peer(leader);
    ensemble.wait_for_quorum(3);
    results.push(("leader killed", report.longest_gap, fenced));
    acked.extend(report.acked);

    let follower = (0..3).find(|&index| index != ensemble.leader()).expect("a follower");
    let (report, fenced) = under_writer(&hosts, &servers, "follower-killed", || ensemble.kill_peer(follower));
    ensemble.start_peer(follower);
    ensemble.wait_for_quorum(3);
    results.push(("follower killed", report.longest_gap, fenced));
    acked.extend(report.acked);

    // The first listed host down: servers keep writing, and one-shot clients
    // (each a new session) all find the chain.
    let mut client_failures = Vec::new();
    let (report, fenced) = under_writer(&hosts, &servers, "first-host-down", || {
        ensemble.kill_peer(0);
        for index in 0..20 {
            let started = Instant::now();
            let output = run_client(&[&hosts], &["get", &format!("first-host-down-{index}")], None);
            if !matches!(output.status.code(), Some(0 | 1)) || started.elapsed() > Duration::from_secs(3) {
                client_failures.push(String::from_utf8_lossy(&output.stderr).into_owned());
            }
        }
    });
    ensemble.start_peer(0);
    ensemble.wait_for_quorum(3);
    results.push(("first listed host down", report.longest_gap, fenced));
    acked.extend(report.acked);
    assert!(
        client_failures.is_empty(),
        "client commands failed with the first host down: {client_failures:?}"
    );

    // Quorum lost for 3 s, then back: writes resume.
    let (first, second) = (ensemble.leader(), (ensemble.leader() + 1) % 3);
    let (report, _) = under_writer(&hosts, &servers, "quorum-lost-3s", || {
        ensemble.kill_peer(first);
        ensemble.kill_peer(second);
        thread::sleep(Duration::from_secs(3));
        ensemble.start_peer(first);
        ensemble.start_peer(second);
        ensemble.wait_for_quorum(3);
    });
    eprintln!("ENSEMBLE quorum lost 3 s: longest write gap {} ms", report.longest_gap.as_millis());
    acked.extend(report.acked);
    let after = Writer::start(&hosts, "/chain", "after-quorum-");
    thread::sleep(Duration::from_secs(2));
    let after = after.stop();
    assert!(!after.acked.is_empty(), "writes did not resume after quorum came back");
    acked.extend(after.acked);

    let table = converged(&servers.iter().collect::<Vec<_>>());
    let missing: Vec<&String> =
        acked.iter().filter(|key| !table.iter().any(|(stored, _)| stored == *key)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    for (fault, gap, fenced) in results {
        assert!(
            gap < Duration::from_secs(1) && fenced == 0,
            "{fault}: longest write gap {gap:?}, {fenced} fencings"
        );
    }
}
