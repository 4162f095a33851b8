//! Durability (`--data-dir`) with real processes: acknowledged writes
//! survive `kill -9`; a torn last record is cut and the rest kept; damage
//! before the end, a missing segment or a directory of another chain
//! refuse to start and change nothing; snapshots cut the log and restore.
//! Servers are asked (`get`, `size`, `stats`), never their log text.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use common::watcher::{Watcher, Written};
use common::{ServerProcess, start_server};

/// A fresh data directory for one test (removed at the end of it).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("chaintable-durable-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        Scratch(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }

    /// The files of `extension` in it, sorted.
    fn files(&self, extension: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.0)
            .expect("the data directory")
            .map(|entry| entry.expect("an entry").path())
            .filter(|path| path.extension().is_some_and(|found| found == extension))
            .collect();
        files.sort();
        files
    }

    /// Every file's bytes, to show that a refused start changed nothing.
    fn contents(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = self.files("wal");
        files.extend(self.files("snap"));
        files.into_iter().map(|path| (path.clone(), fs::read(&path).expect("a data file"))).collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn durable_server(dir: &Scratch, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--data-dir", dir.path()];
    args.extend_from_slice(extra);
    start_server(16, &args)
}

fn client_of(server: &ServerProcess) -> Client {
    Client::new(&server.address, ClientOptions::default())
}

/// Runs `table-server 0 16 <args...>`, which must exit (refusing to start)
/// within 20 s; returns its exit code and stderr.
fn refused_start(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_table-server"))
        .args(["0", "16"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting table-server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("waiting for table-server") {
            let output = child.wait_with_output().expect("its stderr");
            return (status.code(), String::from_utf8_lossy(&output.stderr).into_owned());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("table-server {args:?} started; it should have refused");
}

/// Puts `key` = `key` through `server` from `writers` threads until
/// `stop`; returns the keys acknowledged.
fn write_until(
    server: &ServerProcess,
    writers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<Vec<String>>> {
    (0..writers)
        .map(|writer| {
            let mut client = client_of(server);
            let stop = Arc::clone(stop);
            thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let started = Instant::now();
                for sequence in 0.. {
                    if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                    let key = format!("w{writer}-{sequence:07}");
                    match client.put(&key, key.as_bytes()) {
                        Ok(()) => acknowledged.push(key),
                        // The server is gone: the outcome is unknown.
                        Err(_) => break,
                    }
                }
                acknowledged
            })
        })
        .collect()
}

/// Every key in `keys` reads back as itself from `server`.
#[track_caller]
fn assert_all_present(server: &ServerProcess, keys: &[String]) {
    assert_all_read(&mut client_of(server), keys);
}

/// Every key in `keys` reads back as itself through `client`.
#[track_caller]
fn assert_all_read(client: &mut Client, keys: &[String]) {
    let missing: Vec<&String> =
        keys.iter().filter(|key| client.get(key).ok().flatten().as_deref() != Some(key.as_bytes())).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        keys.len(),
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn every_acknowledged_put_survives_kill_9_under_load() {
    let dir = Scratch::new("kill");
    let mut server = durable_server(&dir, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = write_until(&server, 8, &stop);
    thread::sleep(Duration::from_millis(1500));
    server.kill();
    stop.store(true, Ordering::SeqCst);
    let acknowledged: Vec<String> =
        writers.into_iter().flat_map(|writer| writer.join().expect("a writer")).collect();
    assert!(acknowledged.len() > 100, "only {} writes acknowledged before the kill", acknowledged.len());
    let server = durable_server(&dir, &[]);
    assert_all_present(&server, &acknowledged);
    let size = client_of(&server).size().expect("size");
    assert!(size >= acknowledged.len() as u64, "{size} keys for {} acknowledged", acknowledged.len());
}

/// Appends half a record to the last segment, as a crash in the middle of
/// an append leaves it.
fn tear_last_segment(dir: &Scratch) -> (PathBuf, u64) {
    let last = dir.files("wal").pop().expect("a log segment");
    let whole = fs::metadata(&last).expect("the segment").len();
    let mut bytes = fs::read(&last).expect("the segment");
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9]);
    fs::write(&last, bytes).expect("tearing the segment");
    (last, whole)
}

#[test]
fn a_torn_last_record_is_cut_off_and_the_rest_kept() {
    let dir = Scratch::new("torn");
    let mut server = durable_server(&dir, &[]);
    let keys: Vec<String> = (0..20).map(|index| format!("k{index}")).collect();
    let mut client = client_of(&server);
    for key in &keys {
        client.put(key, key.as_bytes()).expect("a put");
    }
    server.kill();
    let (segment, whole) = tear_last_segment(&dir);
    let server = durable_server(&dir, &[]);
    assert_all_present(&server, &keys);
    assert_eq!(fs::metadata(&segment).expect("the segment").len(), whole, "the torn record is cut off");
    assert_eq!(client_of(&server).size().expect("size"), keys.len() as u64);
}

#[test]
fn damage_before_the_end_refuses_to_start_and_changes_nothing() {
    let dir = Scratch::new("corrupt");
    let mut server = durable_server(&dir, &[]);
    let mut client = client_of(&server);
    for index in 0..20 {
        client.put(&format!("k{index}"), b"value").expect("a put");
    }
    server.kill();
    let segment = dir.files("wal").pop().expect("a log segment");
    let mut bytes = fs::read(&segment).expect("the segment");
    bytes[30] ^= 0x40; // inside the first record, with nineteen after it
    fs::write(&segment, &bytes).expect("damaging the segment");
    let before = dir.contents();
    let (code, stderr) = refused_start(&["--data-dir", dir.path()]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("damaged at byte 0"), "{stderr}");
    assert_eq!(dir.contents(), before, "a refused start changes nothing");
}

#[test]
fn a_directory_in_use_or_of_another_chain_refuses_to_start() {
    let dir = Scratch::new("foreign");
    let server = durable_server(&dir, &[]);
    let (_, stderr) = refused_start(&["--data-dir", dir.path()]);
    assert!(stderr.contains("in use by another server"), "{stderr}");
    drop(server);
    // Chain mode on a standalone server's directory: refused before any
    // ZooKeeper is contacted (there is none at this address).
    let (_, stderr) = refused_start(&["127.0.0.1:1", "--data-dir", dir.path()]);
    assert!(stderr.contains("belongs to chain standalone, not /chain"), "{stderr}");
}

#[test]
fn snapshots_cut_the_log_and_a_restart_restores_from_them() {
    let dir = Scratch::new("snapshot");
    let mut server = durable_server(&dir, &["--snapshot-log-bytes", "64kb"]);
    let mut client = client_of(&server);
    let keys: Vec<String> = (0..3000).map(|index| format!("key{index:05}")).collect();
    for key in &keys {
        client.put(key, key.as_bytes()).expect("a put");
    }
    client.delete("key00000").expect("a delete");
    let deadline = Instant::now() + Duration::from_secs(20);
    while dir.files("snap").is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let segments = dir.files("wal");
    assert!(!dir.files("snap").is_empty(), "no snapshot written");
    assert!(
        !segments.iter().any(|path| path.ends_with(format!("{:020}.wal", 0))),
        "segment 0 was not deleted: {segments:?}"
    );
    server.kill();
    let server = durable_server(&dir, &[]);
    assert_all_present(&server, &keys[1..]);
    assert_eq!(client_of(&server).get("key00000").expect("a get"), None, "the delete is kept");
    drop(server);

    // A segment after the snapshot gone: refused, and nothing changed.
    let first = dir.files("wal").into_iter().next().expect("a segment after the snapshot");
    fs::remove_file(&first).expect("removing a segment");
    let before = dir.contents();
    let (_, stderr) = refused_start(&["--data-dir", dir.path()]);
    assert!(stderr.contains("missing"), "{stderr}");
    assert_eq!(dir.contents(), before);
}

#[test]
fn fsync_needs_a_data_dir_and_names_its_choices() {
    let (code, stderr) = refused_start(&["--fsync", "batch"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("need --data-dir"), "{stderr}");
    let dir = Scratch::new("fsync");
    let (_, stderr) = refused_start(&["--data-dir", dir.path(), "--fsync", "sometimes"]);
    assert!(stderr.contains("always, batch or everysec"), "{stderr}");
}

/// Durable chain members with their own directories under `scratch`.
fn durable_member_args(zookeeper: &common::ZooKeeperProcess, dir: &Scratch) -> Vec<String> {
    vec![
        zookeeper.address(),
        "--zk-timeout-ms".into(),
        "1000".into(),
        "--data-dir".into(),
        dir.path().to_owned(),
    ]
}

/// Waits until `servers` form a chain of ready members; returns the
/// generation they report.
#[track_caller]
fn wait_for_ready_chain(servers: &[ServerProcess]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats: Vec<_> = servers.iter().filter_map(|server| server.stats().ok()).collect();
        let ready =
            stats.iter().filter(|statistics| chaintable::check::cluster::is_ready_role(&statistics.role));
        if ready.count() == servers.len() {
            return stats[0].generation;
        }
        assert!(
            Instant::now() < deadline,
            "no ready chain: {:?}",
            stats.iter().map(|s| &s.role).collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A durable chain of three members on fresh data directories named
/// `<prefix><index>`, started one after another (not yet waited for).
fn durable_chain(zookeeper: &common::ZooKeeperProcess, prefix: &str) -> (Vec<Scratch>, Vec<ServerProcess>) {
    let dirs: Vec<Scratch> = (0..3).map(|index| Scratch::new(&format!("{prefix}{index}"))).collect();
    let servers = dirs
        .iter()
        .enumerate()
        .map(|(index, dir)| {
            let args = durable_member_args(zookeeper, dir);
            let args: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
            common::chain::start_member(zookeeper, index == 0, &args)
        })
        .collect();
    (dirs, servers)
}

#[test]
fn a_member_restarted_rejoins_and_a_whole_chain_killed_at_once_restarts_with_every_acknowledged_write() {
    let zookeeper = common::start_zookeeper();
    let (dirs, mut servers) = durable_chain(&zookeeper, "chain");
    assert_eq!(wait_for_ready_chain(&servers), 1);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let options = ClientOptions { timeout: Duration::from_secs(3), ..ClientOptions::default() };
            let mut client = Client::chain(&zookeeper.address(), "/chain", options).expect("a chain client");
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for sequence in 0..1_000_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let key = format!("c{writer}-{sequence:07}");
                    if client.put(&key, key.as_bytes()).is_ok() {
                        acknowledged.push(key);
                    }
                }
                acknowledged
            })
        })
        .collect();
    // One member killed and restarted on its directory under load: it
    // recovers and rejoins (resumed from its own table, or by a state
    // transfer that its log then takes).
    thread::sleep(Duration::from_millis(1000));
    servers[2].kill();
    let args = durable_member_args(&zookeeper, &dirs[2]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    servers[2] = start_server(64, &args);
    wait_for_ready_chain(&servers);
    thread::sleep(Duration::from_millis(1000));
    for server in &mut servers {
        server.kill();
    }
    stop.store(true, Ordering::SeqCst);
    let acknowledged: Vec<String> =
        writers.into_iter().flat_map(|writer| writer.join().expect("a writer")).collect();
    assert!(acknowledged.len() > 100, "only {} writes acknowledged before the kill", acknowledged.len());

    let servers: Vec<ServerProcess> = dirs
        .iter()
        .map(|dir| {
            let args = durable_member_args(&zookeeper, dir);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            start_server(64, &args)
        })
        .collect();
    let generation = wait_for_ready_chain(&servers);
    assert_eq!(generation, 1, "restarted from a member holding every committed write, not a new generation");
    let options = ClientOptions { timeout: Duration::from_secs(10), ..ClientOptions::default() };
    let mut client = Client::chain(&zookeeper.address(), "/chain", options).expect("a chain client");
    assert_all_read(&mut client, &acknowledged);
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(name: &str, size: &str) -> SmallDisk {
        let path = std::env::temp_dir().join(format!("chaintable-disk-{name}-{}", std::process::id()));
        fs::create_dir_all(&path).expect("a mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(status.success(), "this test needs root to mount a {size} tmpfs at {}", path.display());
        SmallDisk(path)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn a_full_disk_refuses_writes_serves_reads_and_recovers_when_space_returns() {
    let disk = SmallDisk::mount("full", "1m");
    let dir = Scratch(disk.0.join("data"));
    let filler = disk.0.join("filler");
    fs::write(&filler, vec![7u8; 600 << 10]).expect("filling most of the disk");
    let mut server = durable_server(&dir, &["--commit-timeout-ms", "1000"]);
    let mut client = client_of(&server);
    let value = vec![b'v'; 8 << 10];
    let mut acknowledged = Vec::new();
    let refusal = loop {
        let key = format!("big{:04}", acknowledged.len());
        match client.put(&key, value.clone()) {
            Ok(()) => acknowledged.push(key),
            Err(error) => break error.to_string(),
        }
        assert!(acknowledged.len() < 200, "a 1 MiB disk took {} puts of 8 KiB", acknowledged.len());
    };
    assert!(!acknowledged.is_empty(), "no put fit: {refusal}");
    // Once the disk is known failing, a write is refused at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        match client.put("more", value.clone()) {
            Err(error) if error.to_string().contains("cannot be written") => break error.to_string(),
            other => assert!(Instant::now() < deadline, "writes not refused: {other:?}"),
        }
    };
    assert!(refused.contains("writes are refused until it can"), "{refused}");
    assert_eq!(client.get(&acknowledged[0]).expect("reads are served"), Some(value.clone()));

    fs::remove_file(&filler).expect("making room");
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.put("after", b"room again").is_err() {
        assert!(Instant::now() < deadline, "writes did not resume once there was room");
        thread::sleep(Duration::from_millis(100));
    }
    acknowledged.push("after".into());
    server.kill();
    let server = durable_server(&dir, &[]);
    let mut client = client_of(&server);
    for key in &acknowledged {
        assert!(client.get(key).expect("a get").is_some(), "acknowledged {key} lost");
    }
}

/// Runs 8 writers for a moment against a server with `--fsync <policy>`;
/// returns (syncs, writes synced) from its `stats`.
fn syncs_under_load(policy: &str) -> (u64, u64) {
    let dir = Scratch::new(&format!("syncs-{policy}"));
    let server = durable_server(&dir, &["--fsync", policy]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = write_until(&server, 8, &stop);
    thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    let written: usize = writers.into_iter().map(|writer| writer.join().expect("a writer").len()).sum();
    let statistics = server.stats().expect("stats");
    assert_eq!(statistics.synced, written as u64, "every acknowledged write is synced");
    eprintln!("--fsync {policy}: {} syncs for {} writes", statistics.log_syncs, statistics.synced);
    (statistics.log_syncs, statistics.synced)
}

#[test]
fn batch_syncs_once_per_batch_always_once_per_write_and_everysec_once_a_second() {
    let (syncs, writes) = syncs_under_load("batch");
    assert!(syncs < writes, "group commit: {syncs} syncs for {writes} writes from 8 clients");
    let (syncs, writes) = syncs_under_load("always");
    assert!(syncs >= writes, "--fsync always: {syncs} syncs for {writes} writes");
    let (syncs, writes) = syncs_under_load("everysec");
    assert!(syncs <= 2 && writes > 100, "--fsync everysec: {syncs} syncs for {writes} writes in 0.7 s");
}

/// A member killed and restarted on its directory, holding many keys,
/// rejoins behind the tail by receiving only the writes it missed: its
/// `stats` show a resumed rejoin and no state transfer received, and as the
/// new tail it holds every key (issue 21: "rejoins the chain sending only
/// what it lacks").
#[test]
fn a_restarted_member_holding_many_keys_rejoins_without_a_state_transfer() {
    const KEYS: usize = 20_000;
    let zookeeper = common::start_zookeeper();
    let (dirs, mut servers) = durable_chain(&zookeeper, "rejoin");
    wait_for_ready_chain(&servers);
    let options = ClientOptions { timeout: Duration::from_secs(10), ..ClientOptions::default() };
    let mut client = Client::chain(&zookeeper.address(), "/chain", options).expect("a chain client");
    let keys: Vec<String> = (0..KEYS).map(|index| format!("k{index:06}")).collect();
    for batch in keys.chunks(1000) {
        let pairs: Vec<(String, Vec<u8>)> = batch.iter().map(|key| (key.clone(), vec![b'v'; 100])).collect();
        client.mset(&pairs).expect("an mset");
    }
    // The middle member goes; the chain goes on without it.
    servers[1].kill();
    let later: Vec<String> = (0..200).map(|index| format!("later{index:03}")).collect();
    for key in &later {
        client.put(key, key.as_bytes()).expect("a put while a member is down");
    }
    let args = durable_member_args(&zookeeper, &dirs[1]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    servers[1] = start_server(64, &args);
    wait_for_ready_chain(&servers);
    let statistics = servers[1].stats().expect("the restarted member's stats");
    assert_eq!(statistics.rejoins_resumed, 1, "rejoined from its own table");
    assert_eq!(statistics.state_transfers_received, 0, "no state transfer");
    assert_eq!(statistics.role, "tail", "it joined at the end and was handed the tail role");
    let mut tail = client_of(&servers[1]);
    assert_eq!(tail.size().expect("its size"), (KEYS + later.len()) as u64);
    assert_all_read(&mut tail, &later);
}

/// A durable member's data directory and arguments, to start it and to
/// restart it on its directory.
struct DurableMember {
    _dir: Scratch,
    args: Vec<String>,
}

impl DurableMember {
    fn new(zookeeper: &common::ZooKeeperProcess, name: &str) -> DurableMember {
        let dir = Scratch::new(name);
        let args = durable_member_args(zookeeper, &dir);
        DurableMember { _dir: dir, args }
    }

    /// Starts it in the chain; waits until it is ready.
    fn start(&self, zookeeper: &common::ZooKeeperProcess, first: bool) -> ServerProcess {
        let args: Vec<&str> = self.args.iter().skip(1).map(String::as_str).collect();
        common::chain::start_member(zookeeper, first, &args)
    }

    /// Restarts it on its directory; waits until it is the tail again,
    /// having rejoined on its own table.
    fn restart_as_tail(&self) -> ServerProcess {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let server = start_server(64, &args);
        let rejoined = server.wait_for_stats(Duration::from_secs(30), |statistics| statistics.role == "tail");
        let rejoined = rejoined.expect("the restarted member takes the tail role again");
        assert_eq!(rejoined.state_transfers_received, 0, "it rejoined on its own table: {rejoined:?}");
        server
    }
}

/// A watcher of the chain's `w/` keys, served by `tail`, stalled behind
/// writes (see [`Watcher::stall`]).
fn stalled_watcher(zookeeper: &common::ZooKeeperProcess, tail: &ServerProcess) -> (Watcher, Written) {
    let zk = zookeeper.address();
    let mut watcher = Watcher::start(&[&zk, "watch", "--prefix", "w/"]);
    let watching = tail.wait_for_stats(Duration::from_secs(20), |statistics| statistics.watchers == 1);
    assert!(watching.is_some(), "the tail never had the watcher");
    let client = Client::chain(&zk, "/chain", ClientOptions::default()).expect("a chain client");
    let mut written = Written::new(client);
    watcher.stall(&mut written);
    (watcher, written)
}

/// Issue 22, after a restart: a member restarted on its disk keeps the
/// watch history its log holds, so a watcher that fell behind before it
/// was killed resumes there once it is the tail again. Without it the
/// restarted member's history began after its last logged write, and the
/// watcher exited 2 ("history compacted").
#[test]
fn a_watcher_behind_a_restarted_member_resumes_at_it_from_its_log() {
    let zookeeper = common::start_zookeeper();
    let members = [DurableMember::new(&zookeeper, "watch0"), DurableMember::new(&zookeeper, "watch1")];
    let _head = members[0].start(&zookeeper, true);
    let mut tail = members[1].start(&zookeeper, false);
    let (mut watcher, mut written) = stalled_watcher(&zookeeper, &tail);
    tail.kill();
    written.put("after", 5, 0);
    tail = members[1].restart_as_tail();
    watcher.resume_and_see(&written);
    let served = tail.stats().expect("the restarted member's stats");
    assert_eq!(served.watchers, 1, "the restarted member serves the watcher");
}

/// Issue 22, a durable joiner: the watch history a state transfer carried
/// is logged with its chunks, so once the old tail is gone and the joiner
/// (the tail now) is killed and restarted on its disk, a watcher that fell
/// behind the joiner's snapshot resumes at it. Without it the restarted
/// joiner's history began after that snapshot, and the watcher exited 2
/// ("history compacted").
#[test]
fn a_watcher_behind_a_durable_joiners_snapshot_resumes_at_it_after_its_restart() {
    let zookeeper = common::start_zookeeper();
    let members: Vec<DurableMember> =
        (0..3).map(|index| DurableMember::new(&zookeeper, &format!("watchjoin{index}"))).collect();
    let _head = members[0].start(&zookeeper, true);
    let mut old_tail = members[1].start(&zookeeper, false);
    let (mut watcher, mut written) = stalled_watcher(&zookeeper, &old_tail);
    let mut joiner = members[2].start(&zookeeper, false);
    let statistics = joiner.stats().expect("the joiner's stats");
    assert_eq!(statistics.state_transfers_received, 1, "the joiner came in by a state transfer");
    written.put("after", 5, 0);
    old_tail.kill();
    joiner.kill();
    joiner = members[2].restart_as_tail();
    watcher.resume_and_see(&written);
    let served = joiner.stats().expect("the restarted joiner's stats");
    assert_eq!(served.watchers, 1, "the restarted joiner serves the watcher");
}
