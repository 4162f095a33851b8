//! SCAN through the real binaries: `getkeys`, `gettable` and `scan` list a
//! table whose listing is larger than `--max-frame` (in the formats of the
//! command-line contract), and in a chain of 3 a scan during concurrent
//! writes, and across the kill of the tail, returns every key present
//! throughout exactly once.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use common::chain::start_chain;
use common::{RunClient, assert_client, run_client, start_server, start_zookeeper, stdout};

#[test]
fn listings_larger_than_a_frame_are_paged_and_streamed() {
    let server = start_server(8, &["--max-frame", "65536"]);
    let mut client = Client::new(&server.address, ClientOptions::default());
    let mut table = BTreeMap::new();
    for index in 0..3000 {
        let key = format!("key{index:05}");
        let value = format!("value {index} {}", "x".repeat(80));
        client.put(&key, value.clone()).expect("put");
        table.insert(key, value);
    }
    let keys: String = table.keys().map(|key| format!("{key}\n")).collect();
    let entries: String = table.iter().map(|(key, value)| format!("{key}\t{value}\n")).collect();
    assert!(entries.len() > 4 * 65536, "the listing is several frames long");
    assert_client(&server.client(&["getkeys"]), 0, &keys);
    assert_client(&server.client(&["gettable"]), 0, &entries);
    let prefixed: String = table
        .iter()
        .filter(|(key, _)| key.starts_with("key01"))
        .map(|(key, value)| format!("{key}\t{value}\n"))
        .collect();
    assert_eq!(prefixed.lines().count(), 1000);
    assert_client(&server.client(&["scan", "key01"]), 0, &prefixed);
    assert_client(&server.client(&["scan", "nothing"]), 0, "");
    let stats = stdout(&server.client(&["stats"]));
    let scans: u64 = stats
        .lines()
        .find_map(|line| line.strip_prefix("scans: "))
        .and_then(|value| value.parse().ok())
        .expect("scans in stats");
    assert!(scans >= 3 * 4, "each listing took several pages: {scans} scans");
}

/// Writers add and delete `churn` keys while a scan in small pages reads
/// the chain; halfway the tail is killed, and the scan goes on at the new
/// tail from its cursor. Every `stable` key (present throughout) comes
/// exactly once, in order.
#[test]
fn a_scan_during_writes_and_a_tail_change_returns_each_stable_key_once() {
    let zookeeper = start_zookeeper();
    let mut servers = start_chain(&zookeeper, 3);
    let hosts = zookeeper.address();
    let mut loader = Client::chain(&hosts, "/chain", ClientOptions::default()).expect("chain client");
    let stable: Vec<String> = (0..1500).map(|index| format!("k{index:05}")).collect();
    for key in &stable {
        loader.put(key, "stable").expect("put");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            let (hosts, stop, churned) = (hosts.clone(), Arc::clone(&stop), Arc::clone(&churned));
            thread::spawn(move || {
                let mut client =
                    Client::chain(&hosts, "/chain", ClientOptions::default()).expect("chain client");
                let started = Instant::now();
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                    // Keys that sort between the stable ones, so pages shift.
                    let key = format!("k{:05}-{writer}", (round * 7 + writer) % 1500);
                    let result = if round % 3 == 2 {
                        client.delete(&key).map(drop)
                    } else {
                        client.put(&key, "churn")
                    };
                    // A write may fail while the tail is replaced; the scan
                    // is what this test checks.
                    if result.is_ok() {
                        churned.fetch_add(1, Ordering::Relaxed);
                    }
                    round += 1;
                }
            })
        })
        .collect();
    let mut scanner = Client::chain(&hosts, "/chain", ClientOptions::default()).expect("chain client");
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut tail_killed = false;
    // Pages of 512 B: about 60 of them, whatever the churn.
    for page in scanner.scan("", true).page_bytes(512) {
        seen.extend(page.expect("a page").into_iter().map(|(key, _)| key));
        pages += 1;
        if pages == 10 {
            servers[2].kill();
            tail_killed = true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("a writer");
    }
    assert!(tail_killed && pages > 10, "pages after the kill: {pages} pages in all");
    let new_tail = Client::new(&servers[1].address, ClientOptions::default()).stats().expect("stats");
    assert_eq!(new_tail.role, "tail");
    assert!(new_tail.scans > 0, "the new tail served the pages after the kill");
    assert!(churned.load(Ordering::Relaxed) > 50, "writes ran during the scan");
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "in key order, none twice");
    let stable_seen: Vec<&String> = seen.iter().filter(|key| !key.contains('-')).collect();
    assert_eq!(stable_seen, stable.iter().collect::<Vec<_>>(), "every stable key, exactly once");
    // The client binary pages the same way against the healed chain.
    let output = run_client(&[&hosts], &["scan", "k0000"], None);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout(&output).lines().filter(|line| *line == "k00001\tstable").count(), 1);
}
