//! Expiry through the real binaries, against one server and a chain of
//! three: `put --ttl`, `expire`, `ttl` and `persist` in one-shot, shell and
//! JSON; an expired key gone from every member (deleted, not only hidden)
//! and a persisted one kept; a new head expiring what the old one set; a
//! joiner's state transfer carrying deadlines; a
//! retried or stale write applied once; `--max-memory` counting the
//! deadline index.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use chaintable::proto::{ErrorCode, Opcode, Request, Response};
use common::chain::{local_table, start_chain, start_member};
use common::{
    RunClient, ServerProcess, assert_client, call, run_client, start_server, start_zookeeper, stdout,
};

fn request(opcode: Opcode, request_id: u64, key: &str, ttl_ms: Option<u64>) -> Request {
    let mut request = Request::new();
    request.opcode = opcode.into();
    request.client_id = 77;
    request.request_id = request_id;
    request.key = Some(key.into());
    request.ttl_ms = ttl_ms;
    request
}

fn error_code(response: &Response) -> Option<ErrorCode> {
    (response.opcode.enum_value() == Ok(Opcode::OP_ERROR)).then(|| response.error_code.enum_value().unwrap())
}

/// `ttl`'s printed number of ms, checked to be within `range`.
fn assert_ttl_within(output: &std::process::Output, range: std::ops::RangeInclusive<i64>) {
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let left: i64 = stdout(output).trim().parse().expect("a number of ms");
    assert!(range.contains(&left), "ttl {left} ms, expected within {range:?}");
}

/// Waits (at most `limit`) until `done` holds.
fn eventually(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// The one-shot, shell and JSON contract, the same against one server or a
/// chain (`client` runs `table-client <target> <args...>` with optional stdin).
fn commands(client: impl Fn(&[&str], Option<&[u8]>) -> std::process::Output) {
    let run = |args: &[&str]| client(args, None);
    assert_client(&run(&["put", "--ttl", "1s", "short", "lived"]), 0, "OK\n");
    assert_ttl_within(&run(&["ttl", "short"]), 1..=1000);
    assert_client(&run(&["get", "short"]), 0, "lived\n");
    assert_client(&run(&["put", "plain", "v"]), 0, "OK\n");
    assert_client(&run(&["ttl", "plain"]), 0, "-1\n");
    assert_client(&run(&["ttl", "nothing"]), 1, "-2\n");
    assert_client(&run(&["expire", "plain", "10m"]), 0, "1\n");
    assert_ttl_within(&run(&["ttl", "plain"]), 590_000..=600_000);
    assert_client(&run(&["persist", "plain"]), 0, "1\n");
    assert_client(&run(&["ttl", "plain"]), 0, "-1\n");
    assert_client(&run(&["expire", "nothing", "1s"]), 1, "0\n");
    assert_client(&run(&["persist", "nothing"]), 1, "0\n");
    assert_client(&run(&["put", "--ttl", "1h", "reset", "v"]), 0, "OK\n");
    assert_client(&run(&["put", "reset", "w"]), 0, "OK\n");
    assert_client(&run(&["ttl", "reset"]), 0, "-1\n");
    assert_client(&run(&["--json", "ttl", "reset"]), 0, "{\"key\":\"reset\",\"ttl_ms\":-1}\n");
    assert_client(
        &run(&["--json", "expire", "nothing", "5s"]),
        1,
        "{\"expire\":false,\"key\":\"nothing\"}\n",
    );
    assert_client(&run(&["--json", "persist", "reset"]), 0, "{\"key\":\"reset\",\"persist\":true}\n");
    for bad in [&["expire", "plain", "0"][..], &["put", "--ttl", "soon", "k", "v"], &["ttl"]] {
        assert_client(&run(bad), 2, "");
    }
    let shell = client(&[], Some(b"put --ttl 10s \"a b\" c d\nget \"a b\"\npersist \"a b\"\nttl \"a b\"\n"));
    assert_client(&shell, 0, "OK\nc d\n1\n-1\n");
    // Gone once its second has passed: answered absent at once by the
    // tail's clock, and deleted by the head soon after.
    thread::sleep(Duration::from_millis(1100));
    assert_client(&run(&["get", "short"]), 1, "");
    assert_client(&run(&["exists", "short"]), 1, "0\n");
    assert_client(&run(&["ttl", "short"]), 1, "-2\n");
}

#[test]
fn expiry_on_one_server() {
    let server = start_server(16, &[]);
    commands(|args, input| match input {
        Some(input) => server.client_shell(input),
        None => server.client(args),
    });
    assert!(
        eventually(Duration::from_secs(2), || stdout(&server.client(&["getkeys"])) == "a b\nplain\nreset\n"),
        "the expired key is deleted, not only hidden: {}",
        stdout(&server.client(&["getkeys"]))
    );

    // A retried expire is applied once and answered as the first time; an
    // older request of the same client is refused, so it cannot bring back
    // a deadline that a later persist removed.
    let expire = request(Opcode::OP_EXPIRE, 5, "plain", Some(3_600_000));
    assert!(call(&server.address, &expire).found);
    let applied = server.stats().expect("stats").last_applied;
    let retry = call(&server.address, &expire);
    assert_eq!((error_code(&retry), retry.found), (None, true));
    assert_eq!(server.stats().expect("stats").last_applied, applied, "the retry wrote nothing");
    assert!(call(&server.address, &request(Opcode::OP_PERSIST, 6, "plain", None)).found);
    assert_eq!(error_code(&call(&server.address, &expire)), Some(ErrorCode::ERR_STALE_REQUEST));
    assert_client(&server.client(&["ttl", "plain"]), 0, "-1\n");
    let missing = call(&server.address, &request(Opcode::OP_EXPIRE, 7, "plain", None));
    assert_eq!(error_code(&missing), Some(ErrorCode::ERR_MISSING_FIELD));
}

#[test]
fn max_memory_counts_the_deadline_index() {
    let server = start_server(16, &["--max-memory", "4kb"]);
    // One client throughout, so its one record is counted from the start.
    let mut client = Client::new(&server.address, ClientOptions::default());
    let mut index = 0;
    while client.put(&format!("f{index}"), vec![b'x'; 16]).is_ok() {
        index += 1;
        assert!(index < 1000, "--max-memory 4kb never refused a put");
    }
    // Full: room for less than one more key, so for no deadline either.
    let refused = client.expire("f0", Duration::from_secs(3600)).expect_err("refused");
    assert!(refused.to_string().contains("ERR_OUT_OF_MEMORY"), "{refused}");
    assert_client(&server.client(&["ttl", "f0"]), 0, "-1\n");
    for key in ["f1", "f2", "f3"] {
        assert!(client.delete(key).expect("a delete"));
    }
    let used = server.stats().expect("stats").used_memory;
    assert!(client.expire("f0", Duration::from_secs(3600)).expect("room now"));
    let with_deadline = server.stats().expect("stats").used_memory;
    assert_eq!(with_deadline - used, 2 * 2 + 160, "the index entry counts: its key twice and its overhead");
    assert!(client.persist("f0").expect("persist"));
    assert_eq!(server.stats().expect("stats").used_memory, used, "and is given back");
}

#[test]
fn expiry_through_a_chain_of_three() {
    let zookeeper = start_zookeeper();
    let mut servers = start_chain(&zookeeper, 3);
    let hosts = zookeeper.address();
    commands(|args, input| run_client(&[&hosts], args, input));
    let chain = |args: &[&str]| run_client(&[&hosts], args, None);

    // Gone from every member within about two seconds of its deadline; the
    // persisted one is kept everywhere.
    assert_client(&chain(&["put", "--ttl", "1s", "brief", "v"]), 0, "OK\n");
    assert_client(&chain(&["put", "--ttl", "1s", "kept", "v"]), 0, "OK\n");
    assert_client(&chain(&["persist", "kept"]), 0, "1\n");
    let has =
        |server: &ServerProcess, key: &str| local_table(&server.address).iter().any(|(held, _)| held == key);
    for server in &servers {
        assert!(has(server, "brief") && has(server, "kept"), "{} has both keys at first", server.address);
    }
    thread::sleep(Duration::from_secs(1));
    for server in &servers {
        assert!(
            eventually(Duration::from_secs(2), || !has(server, "brief")),
            "{} still has it",
            server.address
        );
        assert!(has(server, "kept"), "{} lost the persisted key", server.address);
        let get = run_client(&["--server", &server.address, "--local"], &["get", "brief"], None);
        assert_client(&get, 1, "");
    }

    // The deadline went down the chain with the write: after the head is
    // killed, the new head expires the key.
    assert_client(&chain(&["put", "--ttl", "3s", "failover", "v"]), 0, "OK\n");
    assert_ttl_within(&chain(&["ttl", "failover"]), 1..=3000);
    servers[0].kill();
    let live = &servers[1..];
    assert!(
        eventually(Duration::from_secs(20), || live.iter().all(|server| !has(server, "failover"))),
        "the new head never expired the key"
    );
    assert!(live.iter().all(|server| has(server, "kept")));

    // A joiner gets its table by state transfer: the deadlines come with it.
    assert_client(&chain(&["put", "--ttl", "1h", "hour", "v"]), 0, "OK\n");
    let joiner = start_member(&zookeeper, false, &[]);
    let local_ttl = run_client(&["--server", &joiner.address, "--local"], &["ttl", "hour"], None);
    assert_ttl_within(&local_ttl, 3_500_000..=3_600_000);
    assert!(joiner.stats().expect("stats").state_transfers_received >= 1, "it joined by a snapshot");
}
