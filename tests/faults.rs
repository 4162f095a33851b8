//! Faults under load, with a real ZooKeeper and real processes: kill -9 of
//! the head, a middle server and the tail while a writer runs; a tail paused
//! past its session timeout; a write whose reply was lost; shrinking to one
//! server and growing back. After each, every write the writer saw
//! acknowledged is readable and the replicas converge.
//!
//! Each test prints the longest time between two acknowledged writes (the
//! chain's unavailability for writes around the fault): run with
//! `--nocapture` to see it.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chaintable::check::cluster::is_ready_role;
use chaintable::client::Client;
use chaintable::client::connection::{ClientOptions, Connection};
use chaintable::proto::{Opcode, Request};
use common::chain::{SERVER_START, converged, local_table, start_chain, start_member};
use common::{ServerProcess, ZooKeeperProcess, start_zookeeper};

/// Session timeout of the servers in these tests.
const ZK_TIMEOUT: Duration = Duration::from_millis(1000);

/// Writes `w<n>` = n for n = 1, 2, ... through the chain client until
/// stopped; remembers which writes were acknowledged and the longest gap
/// between two acknowledgements.
struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged_count: Arc<AtomicU64>,
    thread: JoinHandle<WriterReport>,
}

struct WriterReport {
    acknowledged: BTreeMap<String, Vec<u8>>,
    longest_gap: Duration,
    failed: u64,
}

impl Writer {
    fn start(zookeeper: &ZooKeeperProcess) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged_count = Arc::new(AtomicU64::new(0));
        let mut client = chain_client(zookeeper);
        let (stop_flag, count) = (Arc::clone(&stop), Arc::clone(&acknowledged_count));
        let thread = thread::spawn(move || {
            let mut report =
                WriterReport { acknowledged: BTreeMap::new(), longest_gap: Duration::ZERO, failed: 0 };
            let mut last_ack = Instant::now();
            let started = Instant::now();
            let mut sequence = 0u64;
            while !stop_flag.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                sequence += 1;
                let key = format!("w{sequence:06}");
                match client.put(&key, sequence.to_string()) {
                    Ok(()) => {
                        report.longest_gap = report.longest_gap.max(last_ack.elapsed());
                        last_ack = Instant::now();
                        report.acknowledged.insert(key, sequence.to_string().into_bytes());
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    // Outcome unknown: it may or may not have been applied.
                    Err(_) => report.failed += 1,
                }
            }
            report
        });
        Writer { stop, acknowledged_count, thread }
    }

    /// Waits until `more` further writes are acknowledged.
    #[track_caller]
    fn wait_for_progress(&self, more: u64) {
        let target = self.acknowledged_count.load(Ordering::SeqCst) + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acknowledged_count.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "writes did not resume");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> WriterReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn chain_client(zookeeper: &ZooKeeperProcess) -> Client {
    let options = ClientOptions { timeout: Duration::from_secs(10), ..ClientOptions::default() };
    Client::chain(&zookeeper.address(), "/chain", options).unwrap()
}

fn start_servers(zookeeper: &ZooKeeperProcess, count: usize) -> Vec<ServerProcess> {
    start_chain(zookeeper, count)
}

/// Every acknowledged write is readable through the chain, and the live
/// servers converge on a table that holds all of them.
fn check_nothing_lost(zookeeper: &ZooKeeperProcess, report: &WriterReport, live: &[&ServerProcess]) {
    let mut client = chain_client(zookeeper);
    for (key, value) in &report.acknowledged {
        assert_eq!(client.get(key).unwrap().as_ref(), Some(value), "acknowledged write {key} lost");
    }
    let table: BTreeMap<String, Vec<u8>> = converged(live).into_iter().collect();
    for (key, value) in &report.acknowledged {
        assert_eq!(table.get(key), Some(value), "{key} missing in the converged table");
    }
}

fn kill_while_writing(victim: usize) {
    let zookeeper = start_zookeeper();
    let mut servers = start_servers(&zookeeper, 3);
    let writer = Writer::start(&zookeeper);
    writer.wait_for_progress(200);
    let killed_at = Instant::now();
    servers[victim].kill();
    writer.wait_for_progress(200);
    let report = writer.finish();
    eprintln!(
        "kill -9 of server {victim}: {} writes acknowledged, {} failed, longest gap {} ms (recovered {} ms after the kill)",
        report.acknowledged.len(),
        report.failed,
        report.longest_gap.as_millis(),
        killed_at.elapsed().as_millis()
    );
    let live: Vec<&ServerProcess> =
        servers.iter().enumerate().filter(|(index, _)| *index != victim).map(|(_, server)| server).collect();
    check_nothing_lost(&zookeeper, &report, &live);
}

#[test]
fn kill_head_while_writing() {
    kill_while_writing(0);
}

#[test]
fn kill_middle_while_writing() {
    kill_while_writing(1);
}

#[test]
fn kill_tail_while_writing() {
    kill_while_writing(2);
}

/// The tail is paused past its session timeout while writes go on, then
/// resumed: it must not answer a read with what it had before the pause,
/// and it rejoins and ends with the same table as the others.
#[test]
fn paused_tail_serves_nothing_stale_and_rejoins() {
    let zookeeper = start_zookeeper();
    let servers = start_servers(&zookeeper, 3);
    let mut client = chain_client(&zookeeper);
    client.put("fresh", "before").unwrap();
    servers[2].signal("STOP").unwrap();
    let writer = Writer::start(&zookeeper);
    writer.wait_for_progress(100);
    client.put("fresh", "after").unwrap();
    thread::sleep(ZK_TIMEOUT * 2);
    servers[2].signal("CONT").unwrap();
    // Straight after SIGCONT, before it notices anything: a direct read must
    // not return the old value.
    let mut direct = Client::new(&servers[2].address, ClientOptions::default());
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(value) = direct.get("fresh") {
            assert_eq!(value.as_deref(), Some(&b"after"[..]), "stale read from the resumed old tail");
        }
    }
    // It was fenced (its lease ran out while paused), then came back.
    let rejoined = servers[2].wait_for_stats(SERVER_START, |statistics| {
        statistics.fencings >= 1 && is_ready_role(&statistics.role)
    });
    assert!(rejoined.is_some(), "not fenced and ready again: {:?}\n{}", servers[2].stats(), servers[2].log());
    let report = writer.finish();
    check_nothing_lost(&zookeeper, &report, &servers.iter().collect::<Vec<_>>());
}

/// A delete reaches the head and is forwarded, but the head is killed
/// before it answers. The client retries the same request (same client id
/// and request id) at the new head: it gets the original answer, and the
/// delete is not applied a second time.
#[test]
fn write_with_lost_reply_is_applied_once() {
    let zookeeper = start_zookeeper();
    let mut servers = start_servers(&zookeeper, 3);
    let mut client = chain_client(&zookeeper);
    client.put("victim", "present").unwrap();

    let mut delete = Request::new();
    delete.opcode = Opcode::OP_DEL.into();
    delete.client_id = 0x5eed;
    delete.request_id = 1;
    delete.key = Some("victim".into());
    // Hold commits back by pausing the tail, so the head cannot answer.
    servers[2].signal("STOP").unwrap();
    let head_address = servers[0].address.clone();
    let lost = {
        let delete = delete.clone();
        thread::spawn(move || {
            let mut connection = Connection::open(&head_address, &ClientOptions::default()).unwrap();
            connection.call(&delete)
        })
    };
    // Wait until the delete has been forwarded to the middle server.
    let forwarded_by = Instant::now() + Duration::from_secs(5);
    while local_table(&servers[1].address).iter().any(|(key, _)| key == "victim") {
        assert!(Instant::now() < forwarded_by, "the delete never reached the middle server");
        thread::sleep(Duration::from_millis(10));
    }
    servers[0].kill();
    servers[2].signal("CONT").unwrap();
    assert!(lost.join().unwrap().is_err(), "the killed head cannot have answered");

    // Retry at the new head until the chain has settled.
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let attempt = Connection::open(&servers[1].address, &ClientOptions::default())
            .and_then(|mut connection| connection.call(&delete));
        match attempt {
            Ok(response) if response.opcode.enum_value() == Ok(Opcode::OP_DEL) => break response,
            _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            other => panic!("the retry never succeeded: {other:?}"),
        }
    };
    // Executed again, the delete would find no key; the original answer says it existed.
    assert!(answer.found, "the retry must get the original answer (the key existed)");
    // Put the key back; a late duplicate of the old delete must not remove it.
    client.put("victim", "back").unwrap();
    let mut connection = Connection::open(&servers[1].address, &ClientOptions::default()).unwrap();
    let duplicate = connection.call(&delete).unwrap();
    assert!(duplicate.found, "a duplicate is answered from memory");
    assert_eq!(client.get("victim").unwrap().as_deref(), Some(&b"back"[..]), "the delete was applied twice");
}

/// Two of three servers die under writes; the last one carries on alone;
/// two new servers join and the chain is three long again.
#[test]
fn shrink_to_one_and_grow_back() {
    let zookeeper = start_zookeeper();
    let mut servers = start_servers(&zookeeper, 3);
    let writer = Writer::start(&zookeeper);
    writer.wait_for_progress(100);
    servers[1].kill();
    servers[2].kill();
    writer.wait_for_progress(100);
    let survivor = servers.remove(0);
    let mut live = vec![survivor];
    for _ in 0..2 {
        live.push(start_member(&zookeeper, false, &[]));
        writer.wait_for_progress(50);
    }
    let report = writer.finish();
    drop(servers);
    check_nothing_lost(&zookeeper, &report, &live.iter().collect::<Vec<_>>());
    let mut client = chain_client(&zookeeper);
    assert_eq!(client.stats().unwrap().chain_length, 3);
}
