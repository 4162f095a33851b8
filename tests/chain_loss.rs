//! Data loss is never silent: a chain whose servers are all gone for good
//! restarts empty only after the fallback wait, with one ERROR line naming
//! the last committed write it recorded (a lower bound, and it says so), and
//! as a new generation that clients see in `stats`. Real ZooKeeper, real servers, kill -9.

mod common;

use std::time::{Duration, Instant};

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use chaintable::coord::view_reader::read_view_once;
use chaintable::limits::RESTART_FALLBACK_TIMEOUTS;
use common::chain::start_chain;
use common::{ZooKeeperProcess, start_server, start_zookeeper};

const ZK_TIMEOUT: Duration = Duration::from_millis(1000);
const WRITES: u64 = 30;

/// The commit record in the chain node, once its committed count reaches
/// `committed` (the tail records it at most once a second).
fn wait_for_recorded_commit(zookeeper: &ZooKeeperProcess, committed: u64) -> chaintable::view::CommitRecord {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view =
            read_view_once(&zookeeper.address(), "/chain", Duration::from_secs(5)).expect("reading /chain");
        if view.record.committed >= committed {
            return view.record;
        }
        assert!(Instant::now() < deadline, "the record never showed write {committed}: {:?}", view.record);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_chain_lost_whole_restarts_as_a_new_generation_and_says_what_was_lost() {
    let zookeeper = start_zookeeper();
    let mut servers = start_chain(&zookeeper, 2);
    let first = Client::new(&servers[0].address, ClientOptions::default()).stats().expect("stats");
    assert_eq!(first.generation, 1, "a first start is generation 1");
    let options = ClientOptions { timeout: Duration::from_secs(10), ..ClientOptions::default() };
    let mut client = Client::chain(&zookeeper.address(), "/chain", options).expect("chain client");
    for index in 0..WRITES {
        client.put(&format!("k{index}"), "v").expect("put");
    }
    assert_eq!(client.stats().expect("stats").generation, 1);
    let record = wait_for_recorded_commit(&zookeeper, WRITES);
    assert_eq!((record.generation, record.committed), (1, WRITES));

    for server in &mut servers {
        server.kill();
    }
    let args = [zookeeper.address(), "--zk-timeout-ms".into(), ZK_TIMEOUT.as_millis().to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let newcomer = start_server(64, &args);
    // The old sessions expire, then the newcomer waits for a server named
    // in the commit record for the fallback time before it starts empty.
    let fallback = ZK_TIMEOUT * RESTART_FALLBACK_TIMEOUTS as u32;
    // A loaded machine may cost the newcomer its 1 s session, and each new
    // registration waits the fallback time again (measured: three times
    // while other builds ran): allow for a few.
    let limit = fallback * 4 + Duration::from_secs(30);
    let mut direct = Client::new(&newcomer.address, ClientOptions::default());
    let deadline = Instant::now() + limit;
    let statistics = loop {
        let statistics = direct.stats().expect("stats");
        if statistics.role == "head+tail" || Instant::now() > deadline {
            break statistics;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        (statistics.role.as_str(), statistics.generation, statistics.keys),
        ("head+tail", 2, 0),
        "{}",
        newcomer.log()
    );
    // The number is the commit record's, a lower bound, and the line says so.
    let expected = format!(
        "the previous chain had committed writes up to at least {WRITES} (the tail records its commit point \
         at most once a second: writes in the second before the loss are not counted); starting empty as \
         generation 2"
    );
    let log = newcomer.log();
    let waiting = format!("waiting {} s for one to come back", RESTART_FALLBACK_TIMEOUTS);
    let warnings: Vec<&str> = log.lines().filter(|line| line.contains(&waiting)).collect();
    assert!(
        warnings.len() == 1 && warnings[0].contains("WARN"),
        "one warning while it could be helped: {warnings:?}"
    );
    let error_lines: Vec<&str> = log.lines().filter(|line| line.contains("ERROR")).collect();
    assert_eq!(error_lines.len(), 1, "one ERROR line: {error_lines:?}");
    assert!(error_lines[0].contains(&expected), "{}", error_lines[0]);
    assert_eq!(wait_for_recorded_commit(&zookeeper, 0).generation, 2, "the record shows the new generation");
}
