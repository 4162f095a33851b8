//! Chain replication with a real ZooKeeper and real server processes:
//! replicas converge, and a server joins under continuous writes without a
//! stale read.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use chaintable::client::error::ClientError;
use chaintable::proto::ErrorCode;
use common::chain::{converged, start_chain};
use common::{ServerProcess, ZooKeeperProcess, start_server, start_zookeeper};

fn chain_client_at(zk_hosts: &str) -> Client {
    Client::chain(zk_hosts, "/chain", ClientOptions::default()).expect("chain client")
}

fn chain_client(zookeeper: &ZooKeeperProcess) -> Client {
    chain_client_at(&zookeeper.address())
}

fn direct(server: &ServerProcess) -> Client {
    Client::new(&server.address, ClientOptions::default())
}

#[test]
fn three_servers_hold_identical_tables() {
    let zookeeper = start_zookeeper();
    let servers = start_chain(&zookeeper, 3);
    // Writes through the chain client, which retries what a loaded machine
    // may refuse for a moment (an unconfirmed session); roles are checked
    // with direct clients below.
    let mut head = chain_client(&zookeeper);
    for index in 0..300 {
        head.put(&format!("key{index}"), format!("value{index}")).unwrap();
    }
    for index in (0..300).step_by(3) {
        assert!(head.delete(&format!("key{index}")).unwrap());
    }
    // Writes are answered only after the tail has them: the tail reads them at once.
    let mut tail = direct(&servers[2]);
    assert_eq!(tail.get("key1").unwrap(), Some(b"value1".to_vec()));
    assert_eq!(tail.size().unwrap(), 200);
    let table = converged(&servers.iter().collect::<Vec<_>>());
    assert_eq!(table.len(), 200);
    // Roles are enforced.
    assert!(matches!(
        direct(&servers[1]).get("key1"),
        Err(ClientError::Server { code: ErrorCode::ERR_WRONG_ROLE, .. })
    ));
    assert!(matches!(tail.put("k", "v"), Err(ClientError::Server { code: ErrorCode::ERR_WRONG_ROLE, .. })));
    let roles: Vec<String> = servers.iter().map(|server| direct(server).stats().unwrap().role).collect();
    assert_eq!(roles, ["head", "middle", "tail"]);
}

/// A third server joins a chain holding 100,000 keys while a writer keeps
/// writing and a reader keeps reading a counter from whichever server is the
/// tail: afterwards the newcomer holds everything, and no read ever returned
/// a value older than the last write acknowledged before the read began.
#[test]
fn join_under_writes_without_stale_reads() {
    const KEYS: usize = 100_000;
    const LOADERS: usize = 8;
    let zookeeper = start_zookeeper();
    let mut servers = start_chain(&zookeeper, 2);
    let zk_hosts = zookeeper.address();
    let loaders: Vec<_> = (0..LOADERS)
        .map(|loader| {
            let hosts = zk_hosts.clone();
            thread::spawn(move || {
                let mut client = chain_client_at(&hosts);
                for index in (loader..KEYS).step_by(LOADERS) {
                    client.put(&format!("bulk{index:06}"), vec![b'x'; 100]).unwrap();
                }
            })
        })
        .collect();
    for loader in loaders {
        loader.join().unwrap();
    }

    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (address, acknowledged, stop) = (zk_hosts.clone(), Arc::clone(&acknowledged), Arc::clone(&stop));
        thread::spawn(move || {
            let mut client = chain_client_at(&address);
            let mut counter = 0u64;
            while !stop.load(Ordering::SeqCst) && counter < 1_000_000 {
                counter += 1;
                client.put("counter", counter.to_string()).unwrap();
                client.put(&format!("during{counter}"), "x").unwrap();
                acknowledged.store(counter, Ordering::SeqCst);
            }
            counter
        })
    };
    let old_tail = servers[1].address.clone();
    let newcomer = start_server(64, &[&zookeeper.address(), "--zk-timeout-ms", "1000"]);
    let reader = {
        let (addresses, acknowledged, stop) =
            (vec![old_tail, newcomer.address.clone()], Arc::clone(&acknowledged), Arc::clone(&stop));
        thread::spawn(move || {
            let mut clients: Vec<Client> =
                addresses.iter().map(|address| Client::new(address, ClientOptions::default())).collect();
            let mut answered = [0u64; 2];
            while !stop.load(Ordering::SeqCst) && answered.iter().sum::<u64>() < 10_000_000 {
                for (index, client) in clients.iter_mut().enumerate() {
                    let floor = acknowledged.load(Ordering::SeqCst);
                    match client.get("counter") {
                        Ok(value) => {
                            let value: u64 =
                                value.map_or(0, |bytes| String::from_utf8(bytes).unwrap().parse().unwrap());
                            assert!(value >= floor, "stale read: {value} after {floor} was acknowledged");
                            answered[index] += 1;
                        }
                        // Not the tail (yet, or any more), or not registered yet.
                        Err(ClientError::Server {
                            code: ErrorCode::ERR_WRONG_ROLE | ErrorCode::ERR_UNAVAILABLE,
                            ..
                        }) => {}
                        Err(error) => panic!("read failed: {error}"),
                    }
                }
            }
            answered
        })
    };
    assert!(newcomer.wait_until_ready(Duration::from_secs(60)), "{}", newcomer.log());
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let writes = writer.join().unwrap();
    let [old_tail_reads, newcomer_reads] = reader.join().unwrap();
    assert!(writes > 0, "no write during the join");
    assert!(
        old_tail_reads > 0 && newcomer_reads > 0,
        "reads: old tail {old_tail_reads}, newcomer {newcomer_reads}"
    );
    let received = newcomer.stats().expect("the newcomer's stats").state_transfers_received;
    assert_eq!(received, 1, "the newcomer joined by one state transfer: {}", newcomer.log());
    servers.push(newcomer);
    let table = converged(&servers.iter().collect::<Vec<_>>());
    assert_eq!(table.len(), KEYS + 1 + writes as usize);
    // The newcomer is a ready member (normally the tail; on a loaded machine
    // a session may expire and the chain reorder itself, which is fine).
    let role = direct(&servers[2]).stats().unwrap().role;
    assert!(["head", "middle", "tail"].contains(&role.as_str()), "newcomer's role: {role}");
}
