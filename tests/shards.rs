//! Many chains, one table: two chains of real servers, a shard map made
//! with `table-client shards init`, and clients that route every key to the
//! chain that owns its slot.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use chaintable::client::error::ClientError;
use chaintable::proto::{ErrorCode, Opcode, Request, Response};
use chaintable::shard::slot::slot_of;
use chaintable::wire::{encode_frame, read_frame};
use common::chain::{local_table, start_member};
use common::{ServerProcess, ZooKeeperProcess, run_client, start_zookeeper, stdout};
use protobuf::Message;

const KEYS: usize = 1000;

fn options() -> ClientOptions {
    ClientOptions { timeout: Duration::from_secs(10), ..ClientOptions::default() }
}

/// One server heading chain `path`.
fn chain_of_one(zookeeper: &ZooKeeperProcess, path: &str) -> ServerProcess {
    start_member(zookeeper, true, &["--chain", path])
}

/// `table-client <zk> <args...>`.
fn admin(zookeeper: &ZooKeeperProcess, args: &[&str]) -> std::process::Output {
    run_client(&[&zookeeper.address()], args, None)
}

/// A GET of `key` sent straight to `server`, the reply as it came.
fn raw_get(server: &ServerProcess, key: &str) -> Response {
    use std::io::Write;
    let mut stream = TcpStream::connect(&server.address).expect("connecting");
    let mut request = Request::new();
    request.opcode = Opcode::OP_GET.into();
    request.request_id = 1;
    request.key = Some(key.to_owned());
    let mut frame = Vec::new();
    encode_frame(&request, 1 << 20, &mut frame).unwrap();
    stream.write_all(&frame).unwrap();
    let mut body = Vec::new();
    assert!(read_frame(&mut stream, 1 << 20, &mut body).unwrap(), "the server answers");
    Response::parse_from_bytes(&body).unwrap()
}

#[test]
fn keys_land_on_the_chain_that_owns_their_slot() {
    let zookeeper = start_zookeeper();
    let first = chain_of_one(&zookeeper, "/chain1");
    let second = chain_of_one(&zookeeper, "/chain2");

    // Bad input changes nothing: a chain that does not exist.
    let refused = admin(&zookeeper, &["shards", "init", "/chain1", "/chain9"]);
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no chain at /chain9"));
    assert_eq!(admin(&zookeeper, &["shards"]).status.code(), Some(1), "no map was made");

    // A client that knew no map: its next keys follow the map once it exists.
    let keys: Vec<String> = (0..KEYS).map(|index| format!("key{index:04}")).collect();
    let (low, high): (Vec<String>, Vec<String>) = keys.iter().cloned().partition(|key| slot_of(key) < 8192);
    let mut early = Client::chain(&zookeeper.address(), "/chain1", options()).unwrap();
    early.put(&low[0], low[0].as_bytes().to_vec()).unwrap();

    let init = admin(&zookeeper, &["shards", "init", "/chain1", "/chain2"]);
    assert_eq!(stdout(&init), "OK: shard map version 0\n0-8191\t/chain1\n8192-16383\t/chain2\n");
    for server in [&first, &second] {
        let knows =
            server.wait_for_stats(Duration::from_secs(10), |statistics| statistics.shard_slots == 8192);
        assert!(knows.is_some(), "{} never read the map: {:?}", server.address, server.stats());
    }
    let again = admin(&zookeeper, &["shards", "init", "/chain2", "/chain1"]);
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("a shard map exists at /shards already"), "{stderr}");

    early.put(&high[0], high[0].as_bytes().to_vec()).unwrap();
    assert_eq!(early.get(&high[0]).unwrap().as_deref(), Some(high[0].as_bytes()));
    let mut client = Client::chain(&zookeeper.address(), "/chain1", options()).unwrap();
    for key in &keys {
        client.put(key, key.as_bytes().to_vec()).unwrap();
    }
    for key in &keys {
        assert_eq!(client.get(key).unwrap().as_deref(), Some(key.as_bytes()));
    }
    assert!(!low.is_empty() && !high.is_empty());
    let held = |server: &ServerProcess| -> Vec<String> {
        local_table(&server.address).into_iter().map(|(key, _)| key).collect()
    };
    assert_eq!(held(&first), low, "chain1 holds exactly the keys of slots 0-8191");
    assert_eq!(held(&second), high, "chain2 holds exactly the keys of slots 8192-16383");
    assert_eq!(first.stats().unwrap().keys, low.len() as u64);

    // Table-wide requests span both chains.
    assert_eq!(client.size().unwrap(), KEYS as u64);
    assert_eq!(client.keys().unwrap(), keys, "the merged scan is every key once, in order");
    let merged = client.stats().unwrap();
    assert_eq!((merged.keys, merged.shard_slots), (KEYS as u64, 16384));

    // A server asked directly about another chain's key says whose it is.
    let moved_key = &high[0];
    let moved = raw_get(&first, moved_key);
    assert_eq!(moved.error_code.enum_value(), Ok(ErrorCode::ERR_MOVED), "{}", moved.error_message);
    let to = moved.moved.as_ref().expect("where the key lives");
    assert_eq!((to.slot, to.chain.as_str(), to.map_version), (slot_of(moved_key) as u32, "/chain2", 0));
    let mut direct = Client::new(&first.address, options());
    assert!(matches!(direct.get(moved_key), Err(ClientError::Server { code: ErrorCode::ERR_MOVED, .. })));
    let crossing = [low[0].clone(), high[0].clone()];
    assert!(matches!(
        client.mget(&crossing),
        Err(ClientError::Server { code: ErrorCode::ERR_CROSS_CHAIN, .. })
    ));

    // The admin view: both chains, their ends and keys.
    let shown = stdout(&admin(&zookeeper, &["shards"]));
    let low_line = format!("0-8191\t/chain1\t{0}\t{0}\t{1}", first.address, low.len());
    assert!(shown.contains(&low_line), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(stdout(&admin(&zookeeper, &["--json", "shards"])).trim()).unwrap();
    assert_eq!(json["chains"][1]["keys"], high.len());
    assert_eq!(json["ranges"][1]["first"], 8192);

    // table-bench routes by the map too: no errors, both chains filled.
    let bench = std::process::Command::new(env!("CARGO_BIN_EXE_table-bench"))
        .args(["--zk", &zookeeper.address(), "--clients", "2", "--duration", "1", "--warmup", "0"])
        .args(["--keys", "200", "--value-size", "10", "--mix", "50:50:0", "--json"])
        .output()
        .expect("running table-bench");
    let bench_stdout = stdout(&bench);
    let report: serde_json::Value = serde_json::from_str(bench_stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("{error}: {bench_stdout}{}", String::from_utf8_lossy(&bench.stderr)));
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    let filled = |server: &ServerProcess| held(server).iter().filter(|key| key.starts_with("key:")).count();
    assert_eq!(filled(&first) + filled(&second), 200);
    assert!(filled(&first) > 0 && filled(&second) > 0);
}

#[test]
fn a_junk_map_is_one_clear_error() {
    let zookeeper = start_zookeeper();
    let _server = chain_of_one(&zookeeper, "/chain");
    let zk = zookeeper::ZooKeeper::connect(&zookeeper.address(), Duration::from_secs(5), |_| {}).unwrap();
    zk.create(
        "/junkmap",
        b"not a map".to_vec(),
        zookeeper::Acl::open_unsafe().clone(),
        zookeeper::CreateMode::Persistent,
    )
    .unwrap();
    let output = run_client(&[&zookeeper.address(), "--shards", "/junkmap"], &["put", "k", "v"], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the shard map (version 0) is not valid: the first line must be"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one error: {stderr}");
    // Without that map the same table answers.
    let fine = run_client(&[&zookeeper.address()], &["put", "k", "v"], None);
    assert_eq!(stdout(&fine), "OK\n");
}

#[test]
fn table_check_judges_two_chains_under_faults() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_table-check"))
        .args(["--chains", "2", "--duration", "20", "--keys", "8"])
        .args(["--server-binary", env!("CARGO_BIN_EXE_table-server")])
        .env("RUST_LOG", "warn")
        .output()
        .expect("running table-check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("PASS"), "{stdout}");
    // A client that cannot route fails every operation, which is no
    // history at all: most operations must have completed.
    let summary = stdout.lines().find(|line| line.starts_with("checked ")).expect("a summary line");
    let numbers: Vec<u64> =
        summary.split(|c: char| !c.is_ascii_digit()).filter_map(|word| word.parse().ok()).collect();
    let (operations, unknown) = (numbers[0], numbers[2]);
    assert!(operations > 1000 && unknown * 10 < operations, "{summary}");
}

/// The map as `shards --json` shows it: (version, ranges); no map: (0, null).
/// A chain without servers costs it its timeout (no keys shown for it).
fn map_json(zookeeper: &ZooKeeperProcess) -> (u64, serde_json::Value) {
    let shown = stdout(&admin(zookeeper, &["--timeout-ms", "1000", "--json", "shards"]));
    let json: serde_json::Value = serde_json::from_str(shown.trim()).unwrap_or_default();
    (json["version"].as_u64().unwrap_or_default(), json["ranges"].clone())
}

/// `migrate` refused with one clear error that says `wanted`, the map unchanged.
fn assert_refused(zookeeper: &ZooKeeperProcess, args: &[&str], wanted: &str) {
    let before = map_json(zookeeper);
    let output = admin(zookeeper, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    // One error line (a usage error adds where to read more).
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains(wanted) && !stderr.lines().skip(1).any(|line| line.contains("error")),
        "{args:?}: {stderr}"
    );
    assert_eq!(map_json(zookeeper), before, "{args:?} changed the map");
}

#[test]
fn migrate_checks_its_input_and_an_interrupted_migration_can_be_aborted() {
    let zookeeper = start_zookeeper();
    let _first = chain_of_one(&zookeeper, "/chain1");
    let mut second = chain_of_one(&zookeeper, "/chain2");
    assert_refused(&zookeeper, &["migrate", "100-199", "/chain2"], "no shard map at /shards");
    assert_eq!(stdout(&admin(&zookeeper, &["shards", "init", "/chain1", "/chain2"])).lines().count(), 3);
    assert_refused(&zookeeper, &["migrate", "100-199", "/chain9"], "no chain at /chain9");
    assert_refused(&zookeeper, &["migrate", "100-16384", "/chain2"], "not a number from 0 to 16383");
    assert_refused(&zookeeper, &["migrate", "8000-8300", "/chain2"], "belong to more than one chain");
    assert_refused(&zookeeper, &["migrate", "--abort", "100-199", "/chain2"], "nothing to abort");
    let zk = zookeeper::ZooKeeper::connect(&zookeeper.address(), Duration::from_secs(5), |_| {}).unwrap();
    let open = zookeeper::Acl::open_unsafe().clone();
    zk.create("/junkmap", b"junk".to_vec(), open, zookeeper::CreateMode::Persistent).unwrap();
    let junk =
        run_client(&[&zookeeper.address(), "--shards", "/junkmap"], &["migrate", "1", "/chain2"], None);
    assert_eq!(junk.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&junk.stderr).contains("is not valid"), "{junk:?}");
    assert_eq!(zk.get_data("/junkmap", false).unwrap().0, b"junk", "junk left as it was");
    let done = admin(&zookeeper, &["migrate", "9000-9009", "/chain2"]);
    assert_eq!(stdout(&done).split(':').next(), Some("moved"), "slots already there");

    // The command's client dies once it marked the map (killed by PID),
    // while chain2 has no server to take the slots: the map says
    // migrating, and whoever runs the command again finds it there.
    second.kill();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_table-client"))
        .args([&zookeeper.address(), "migrate", "100-199", "/chain2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting migrate");
    let marked = (0..200).find_map(|_| {
        std::thread::sleep(Duration::from_millis(50));
        let (version, ranges) = map_json(&zookeeper);
        let moving = ranges.as_array()?.iter().find(|range| range["first"] == 100)?.clone();
        (moving["state"] == "migrating to /chain2").then_some(version)
    });
    command.kill().expect("killing migrate");
    command.wait().expect("reaping migrate");
    let marked = marked.expect("migrate marked the slots");
    assert_refused(&zookeeper, &["migrate", "300-399", "/chain2"], "one at a time");
    assert_refused(&zookeeper, &["migrate", "100-199", "/chain3"], "another chain");

    let aborted = admin(&zookeeper, &["migrate", "100-199", "/chain2", "--abort"]);
    assert_eq!(stdout(&aborted).split(':').next(), Some("aborted"), "{aborted:?}");
    let (version, ranges) = map_json(&zookeeper);
    assert!(version > marked, "one more version-checked change");
    let states: Vec<&str> =
        ranges.as_array().unwrap().iter().filter_map(|range| range["state"].as_str()).collect();
    assert!(states.iter().all(|state| *state == "stable"), "{ranges}");
}

/// A chain of two at `path`: its head, then its tail.
fn chain_of_two(zookeeper: &ZooKeeperProcess, path: &str) -> Vec<ServerProcess> {
    vec![
        start_member(zookeeper, true, &["--chain", path]),
        start_member(zookeeper, false, &["--chain", path]),
    ]
}

/// An INCR of `key` by `delta` sent straight to `server` as client
/// `client_id`'s request `request_id`, the reply as it came.
fn raw_incr(server: &ServerProcess, (client_id, request_id): (u64, u64), key: &str, delta: i64) -> Response {
    let mut request = Request::new();
    request.opcode = Opcode::OP_INCR.into();
    (request.client_id, request.request_id) = (client_id, request_id);
    request.key = Some(key.to_owned());
    request.delta = delta;
    common::call(&server.address, &request)
}

/// The slots the migration tests move: the first half of chain1's.
const MOVING: std::ops::RangeInclusive<u16> = 0..=4095;

/// What a client writing the moving slots throughout a migration saw.
#[derive(Default)]
struct Written {
    /// The last value acknowledged for each key.
    last: std::collections::HashMap<String, Vec<u8>>,
    /// Increments of the counter acknowledged.
    increments: i64,
    writes: usize,
    errors: Vec<String>,
}

/// A client that puts `keys` round after round, and increments `counter`
/// after each key, until `stop`.
fn keep_writing(
    zookeeper: &ZooKeeperProcess,
    keys: Vec<String>,
    counter: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Written> {
    let address = zookeeper.address();
    std::thread::spawn(move || {
        let mut client = Client::chain(&address, "/chain1", options()).unwrap();
        let mut written = Written::default();
        for round in 1.. {
            for key in &keys {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return written;
                }
                let value = format!("{key} round {round}").into_bytes();
                match client.put(key, value.clone()) {
                    Ok(()) => drop(written.last.insert(key.clone(), value)),
                    Err(error) => written.errors.push(format!("put {key}: {error}")),
                }
                match client.incr(&counter, 1) {
                    Ok(_) => written.increments += 1,
                    Err(error) => written.errors.push(format!("incr {counter}: {error}")),
                }
                written.writes += 2;
            }
        }
        unreachable!("the rounds do not end")
    })
}

/// The map made and known to every server; `keys` written, and a write
/// to `counter` (in the moving slots) applied at `source_head` whose
/// answer its client never got: client 4242's request 7, an increment by 5.
fn map_and_keys(zookeeper: &ZooKeeperProcess, servers: &[&ServerProcess], keys: &[String], counter: &str) {
    assert!(admin(zookeeper, &["shards", "init", "/chain1", "/chain2"]).status.success());
    for server in servers {
        let knows =
            server.wait_for_stats(Duration::from_secs(10), |statistics| statistics.shard_slots == 8192);
        assert!(knows.is_some(), "{} never read the map", server.address);
    }
    let mut client = Client::chain(&zookeeper.address(), "/chain1", options()).unwrap();
    for key in keys {
        client.put(key, key.as_bytes().to_vec()).unwrap();
    }
    let applied = raw_incr(servers[0], LOST_ANSWER, counter, 5);
    assert_eq!(
        (applied.error_code.enum_value(), applied.number),
        (Ok(ErrorCode::ERR_NONE), 5),
        "{applied:?}"
    );
}

/// The client and request id of the increment whose answer was lost.
const LOST_ANSWER: (u64, u64) = (4242, 7);

/// The first key named `counter<n>` in the moving slots.
fn counter_key() -> String {
    (0..).map(|index| format!("counter{index}")).find(|key| MOVING.contains(&slot_of(key))).unwrap()
}

/// After slots `MOVING` moved from `source` (chain1's live members) to
/// `target` (chain2's) while `written` was written: every key reads back
/// with its latest value, chain1 refuses the moved slots with ERR_MOVED and
/// deletes their keys, and the increment whose answer was lost, retried at
/// chain2, is answered from its record and not applied again.
fn assert_moved(
    zookeeper: &ZooKeeperProcess,
    (source, target): (&[&ServerProcess], &[&ServerProcess]),
    keys: &[String],
    written: &Written,
) {
    let counter = counter_key();
    let moving: Vec<&String> = keys.iter().filter(|key| MOVING.contains(&slot_of(key))).collect();
    let mut client = Client::chain(&zookeeper.address(), "/chain1", options()).unwrap();
    for key in keys {
        let expected = written.last.get(key).cloned().unwrap_or_else(|| key.as_bytes().to_vec());
        assert_eq!(client.get(key).unwrap(), Some(expected), "{key}");
    }
    let held = |server: &ServerProcess| -> Vec<String> {
        let table = local_table(&server.address);
        table.into_iter().map(|(key, _)| key).filter(|key| !key.starts_with('\0')).collect()
    };
    for server in target {
        let held = held(server);
        assert!(moving.iter().all(|key| held.contains(key)), "{} holds every moved key", server.address);
    }
    for server in source {
        let refused = raw_get(server, moving[0]);
        assert_eq!(refused.error_code.enum_value(), Ok(ErrorCode::ERR_MOVED), "{}", refused.error_message);
        assert_eq!(refused.moved.chain, "/chain2");
    }
    let retried_at_source = raw_incr(source[0], LOST_ANSWER, &counter, 5);
    assert_eq!(retried_at_source.error_code.enum_value(), Ok(ErrorCode::ERR_MOVED));
    let retried = raw_incr(target[0], LOST_ANSWER, &counter, 5);
    assert_eq!(
        (retried.error_code.enum_value(), retried.number),
        (Ok(ErrorCode::ERR_NONE), 5),
        "{retried:?}"
    );
    let total = (5 + written.increments).to_string().into_bytes();
    assert_eq!(client.get(&counter).unwrap(), Some(total), "every increment applied once");

    let staying: Vec<String> =
        keys.iter().filter(|key| !MOVING.contains(&slot_of(key)) && slot_of(key) < 8192).cloned().collect();
    for server in source {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while held(server) != staying {
            assert!(std::time::Instant::now() < deadline, "{} kept moved keys", server.address);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(client.size().unwrap(), keys.len() as u64 + 1, "every key once, the counter too");
}

/// Stops the client and returns what it wrote, after checking it kept
/// writing and had no error.
fn stop_writing(stop: &std::sync::atomic::AtomicBool, writer: std::thread::JoinHandle<Written>) -> Written {
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert!(written.errors.is_empty(), "{:?}", written.errors);
    assert!(written.writes > 100, "the client kept writing: {} writes", written.writes);
    written
}

/// `migrate` ran until the slots moved.
fn assert_migrated(output: &std::process::Output) {
    let shown = stdout(output);
    assert!(output.status.success(), "{shown}{}", String::from_utf8_lossy(&output.stderr));
    let last = shown.lines().last().unwrap_or_default();
    assert!(last.starts_with("moved: slots 0-4095 to /chain2"), "{shown}");
}

/// Slots 0-4095 move from chain1 to chain2 (two servers each) while a
/// client keeps writing them; see [`assert_moved`] for what must hold.
#[test]
fn slots_move_online_while_a_client_writes_them() {
    let zookeeper = start_zookeeper();
    let source = chain_of_two(&zookeeper, "/chain1");
    let target = chain_of_two(&zookeeper, "/chain2");
    let keys: Vec<String> = (0..KEYS).map(|index| format!("key{index:04}")).collect();
    let servers: Vec<&ServerProcess> = source.iter().chain(&target).collect();
    map_and_keys(&zookeeper, &servers, &keys, &counter_key());
    let moving: Vec<String> = keys.iter().filter(|key| MOVING.contains(&slot_of(key))).cloned().collect();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = keep_writing(&zookeeper, moving.clone(), counter_key(), std::sync::Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(300));
    let migrate = admin(&zookeeper, &["migrate", "0-4095", "/chain2"]);
    assert_migrated(&migrate);
    // Followed from the start, it says what chain1's head sent.
    let shown = stdout(&migrate);
    let sent = shown.lines().last().and_then(|line| line.split_once("): ")).map(|(_, sent)| sent.to_owned());
    let keys_sent: Option<u64> = sent.as_deref().and_then(|sent| sent.split(' ').next()?.parse().ok());
    assert!(keys_sent.is_some_and(|keys| keys >= moving.len() as u64), "{shown}");
    // The client goes on writing at chain2 for a moment.
    std::thread::sleep(Duration::from_millis(300));
    let written = stop_writing(&stop, writer);
    let statistics = source[0].stats().unwrap();
    assert!(statistics.migration_keys_sent >= moving.len() as u64, "{statistics:?}");
    assert_moved(&zookeeper, (&[&source[0], &source[1]], &[&target[0], &target[1]]), &keys, &written);
}

/// A migration interrupted by crashes resumes when the command runs again:
/// chain2 has no server when the slots are marked (so the move cannot
/// finish), then the command's client and chain1's head are killed while a
/// client keeps writing the slots; chain1's tail becomes its head and takes
/// the migration over, chain2 restarts with a new (empty) server, and `migrate` run
/// again follows the migration to its end.
#[test]
fn a_migration_resumes_after_its_command_and_source_head_die() {
    let zookeeper = start_zookeeper();
    let mut source = chain_of_two(&zookeeper, "/chain1");
    let mut first_target = chain_of_one(&zookeeper, "/chain2");
    // Only chain1's keys: chain2's server dies with its table.
    let keys: Vec<String> =
        (0..KEYS).map(|index| format!("key{index:04}")).filter(|key| slot_of(key) < 8192).collect();
    map_and_keys(&zookeeper, &[&source[0], &source[1], &first_target], &keys, &counter_key());
    let moving: Vec<String> = keys.iter().filter(|key| MOVING.contains(&slot_of(key))).cloned().collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = keep_writing(&zookeeper, moving, counter_key(), std::sync::Arc::clone(&stop));
    first_target.kill();

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_table-client"))
        .args([&zookeeper.address(), "migrate", "0-4095", "/chain2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting migrate");
    let driven = source[0]
        .wait_for_stats(Duration::from_secs(10), |statistics| statistics.migration_phase == "streaming");
    assert!(driven.is_some(), "chain1's head never took the migration up: {:?}", source[0].stats());
    command.kill().expect("killing migrate");
    command.wait().expect("reaping migrate");
    source[0].kill();
    let head = source.remove(1);
    let took_over = head.wait_for_stats(Duration::from_secs(20), |statistics| {
        statistics.role == "head+tail" && statistics.migration_phase == "streaming"
    });
    assert!(took_over.is_some(), "chain1's tail never drove the migration: {:?}", head.stats());
    // chain2's only server is gone for good: the operator clears its
    // record so that a new server restarts it (empty) at once.
    let zk = zookeeper::ZooKeeper::connect(&zookeeper.address(), Duration::from_secs(5), |_| {}).unwrap();
    zk.set_data("/chain2", Vec::new(), None).expect("clearing chain2's record");
    let target = chain_of_one(&zookeeper, "/chain2");
    assert_migrated(&admin(&zookeeper, &["migrate", "0-4095", "/chain2"]));
    std::thread::sleep(Duration::from_millis(300));
    let written = stop_writing(&stop, writer);
    assert_moved(&zookeeper, (&[&head], &[&target]), &keys, &written);
}
