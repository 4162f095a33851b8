//! The chain client with a real ZooKeeper and real servers: the one-shot
//! command contract in chain mode, replicas that agree with what the chain
//! client wrote, writes that keep succeeding while the head is killed, and a
//! clear, bounded failure when there is no chain.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use chaintable::client::error::ClientError;
use chaintable::proto::ErrorCode;
use common::chain::start_chain;
use common::{ServerProcess, ZooKeeperProcess, assert_client, run_client, start_zookeeper, stdout};

fn chain_client(zookeeper: &ZooKeeperProcess) -> Client {
    Client::chain(&zookeeper.address(), "/chain", ClientOptions::default()).expect("chain client")
}

/// `gettable` of one server's own table, through `table-client --server --local`.
fn local_gettable(server: &ServerProcess) -> String {
    let output = run_client(&["--server", &server.address, "--local"], &["gettable"], None);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    stdout(&output)
}

/// Waits until every server holds the same table, and returns it.
fn converged(servers: &[ServerProcess]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tables: Vec<String> = servers.iter().map(local_gettable).collect();
        if tables.windows(2).all(|pair| pair[0] == pair[1]) {
            return tables.into_iter().next().unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "replicas differ:\n{tables:#?}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn one_shot_commands_through_the_chain() {
    let zookeeper = start_zookeeper();
    let servers = start_chain(&zookeeper, 3);
    let hosts = zookeeper.address();
    let chain = |args: &[&str]| run_client(&[&hosts], args, None);
    assert_client(&chain(&["size"]), 0, "0\n");
    assert_client(&chain(&["get", "fruit"]), 1, "");
    assert_client(&chain(&["del", "fruit"]), 1, "");
    assert_client(&chain(&["put", "fruit", "apple"]), 0, "OK\n");
    assert_client(&chain(&["put", "veg", "green", "beans"]), 0, "OK\n");
    assert_client(&chain(&["put", "gone", "soon"]), 0, "OK\n");
    assert_client(&chain(&["get", "fruit"]), 0, "apple\n");
    assert_client(&chain(&["del", "gone"]), 0, "OK\n");
    assert_client(&chain(&["get", "gone"]), 1, "");
    assert_client(&chain(&["size"]), 0, "2\n");
    assert_client(&chain(&["getkeys"]), 0, "fruit\nveg\n");
    let table = "fruit\tapple\nveg\tgreen beans\n";
    assert_client(&chain(&["gettable"]), 0, table);
    assert_client(&run_client(&["--chain", "/chain", &hosts], &["gettable"], None), 0, table);
    let stats = chain(&["stats"]);
    assert_eq!(stats.status.code(), Some(0));
    assert!(stdout(&stats).starts_with("role: tail\n"), "stats go to the tail:\n{}", stdout(&stats));
    // The shell, reading from a pipe, prints only results.
    let shell = run_client(&[&hosts], &[], Some(b"put note hello,  world\nget note\ndel note\nsize\n"));
    assert_client(&shell, 0, "OK\nhello,  world\nOK\n2\n");
    // Every replica holds exactly what the chain answers.
    assert_eq!(converged(&servers), table);
    // A request the server rejects for itself fails at once, without retries.
    let started = Instant::now();
    assert!(matches!(
        chain_client(&zookeeper).put(&"k".repeat(20_000), "v"),
        Err(ClientError::Server { code: ErrorCode::ERR_TOO_LARGE, .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[test]
fn writes_continue_after_the_head_is_killed() {
    const WRITES: u64 = 400;
    let zookeeper = start_zookeeper();
    let mut servers = start_chain(&zookeeper, 3);
    let acknowledged = Arc::new(AtomicU64::new(0));
    let writer = {
        let (mut client, acknowledged) = (chain_client(&zookeeper), Arc::clone(&acknowledged));
        thread::spawn(move || {
            for index in 1..=WRITES {
                if let Err(error) = client.put(&format!("key{index:04}"), format!("value{index}")) {
                    panic!("write {index} failed: {error}");
                }
                acknowledged.store(index, Ordering::SeqCst);
                // Spread the writes over the failure.
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.load(Ordering::SeqCst) < WRITES / 4 {
        assert!(Instant::now() < deadline, "the writer is stuck before the kill");
        thread::sleep(Duration::from_millis(10));
    }
    let mut head = servers.remove(0);
    head.kill();
    let at_kill = acknowledged.load(Ordering::SeqCst);
    writer.join().expect("every write succeeds, the ones during the failure included");
    assert!(at_kill < WRITES, "the head died after the last write; nothing was tested");

    // Nothing acknowledged is lost, and the survivors agree.
    let mut reader = chain_client(&zookeeper);
    assert_eq!(reader.size().unwrap(), WRITES);
    for index in [1, at_kill, at_kill + 1, WRITES] {
        assert_eq!(
            reader.get(&format!("key{index:04}")).unwrap(),
            Some(format!("value{index}").into_bytes())
        );
    }
    let table = converged(&servers);
    assert_eq!(table.lines().count() as u64, WRITES);
    let roles: Vec<String> = servers
        .iter()
        .map(|server| Client::new(&server.address, ClientOptions::default()).stats().unwrap().role)
        .collect();
    assert_eq!(roles, ["head", "tail"]);
}

#[test]
fn no_chain_fails_within_the_timeout_with_a_clear_message() {
    let zookeeper = start_zookeeper();
    let hosts = zookeeper.address();
    let started = Instant::now();
    let output = run_client(&["--timeout-ms", "1000", &hosts], &["get", "k"], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // "no ready server" normally; on a loaded machine the lookup may also end
    // on a ZooKeeper connection loss. Either way: no chain, clearly, in time.
    assert!(stderr.contains(&format!("no chain at {hosts}/chain:")), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    // Nobody listening where ZooKeeper should be: as clear, as bounded.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let started = Instant::now();
    let output = run_client(&["--timeout-ms", "1000", &free.to_string()], &["put", "k", "v"], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("no chain at {free}/chain: ZooKeeper unreachable")), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
