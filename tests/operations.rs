//! cas, incr, mget, mset, exists and getkeys with a prefix through the real
//! binaries, against one server and a chain of three: the one-shot, shell
//! and JSON contract; a retried incr (same client and request id) applied
//! once and answered as the first time, also by a new head after the old
//! one was killed; a cas race in which exactly one client wins each round;
//! bad input and --max-memory refused without changing anything.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use chaintable::proto::{ErrorCode, Opcode, Request, Response};
use common::chain::{converged, start_chain};
use common::{
    RunClient, ServerProcess, assert_client, call, run_client, start_server, start_zookeeper, stdout,
};

/// An INCR of `key` by `delta` as client `client_id`'s request `request_id`.
fn incr_request(client_id: u64, request_id: u64, key: &str, delta: i64) -> Request {
    let mut request = Request::new();
    request.opcode = Opcode::OP_INCR.into();
    request.client_id = client_id;
    request.request_id = request_id;
    request.key = Some(key.into());
    request.delta = delta;
    request
}

fn error_code(response: &Response) -> Option<ErrorCode> {
    (response.opcode.enum_value() == Ok(Opcode::OP_ERROR)).then(|| response.error_code.enum_value().unwrap())
}

/// The one-shot and shell contract, the same against one server or a chain
/// (`client` runs `table-client <target> <args...>` with optional stdin).
fn commands(client: impl Fn(&[&str], Option<&[u8]>) -> std::process::Output) {
    let run = |args: &[&str]| client(args, None);
    assert_client(&run(&["cas", "lock", "--absent", "alice"]), 0, "OK\n");
    assert_client(&run(&["cas", "lock", "--absent", "bob"]), 1, "alice\n");
    assert_client(&run(&["cas", "lock", "bob", "carol"]), 1, "alice\n");
    assert_client(&run(&["cas", "lock", "alice", "bob"]), 0, "OK\n");
    let absent = run(&["cas", "nobody", "x", "y"]);
    assert_client(&absent, 1, "");
    assert_eq!(String::from_utf8_lossy(&absent.stderr), "nobody: absent, not set\n");
    assert_client(&run(&["incr", "visits"]), 0, "1\n");
    assert_client(&run(&["incr", "visits", "41"]), 0, "42\n");
    assert_client(&run(&["incr", "visits", "-50"]), 0, "-8\n");
    let wrong = run(&["incr", "lock"]);
    assert_client(&wrong, 2, "");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("ERR_WRONG_TYPE"), "{wrong:?}");
    assert_client(&run(&["incr", "visits", "9223372036854775807"]), 0, "9223372036854775799\n");
    assert_client(&run(&["incr", "visits", "9"]), 2, "");
    assert_client(&run(&["get", "visits"]), 0, "9223372036854775799\n");
    assert_client(&run(&["mset", "user:1", "ann", "user:2", "ben lee"]), 0, "OK\n");
    assert_client(&run(&["mget", "user:1", "user:2"]), 0, "user:1\tann\nuser:2\tben lee\n");
    assert_client(&run(&["mget", "user:1", "user:9"]), 1, "user:1\tann\n");
    assert_client(&run(&["mset", "user:3"]), 2, "");
    assert_client(&run(&["exists", "user:1"]), 0, "1\n");
    assert_client(&run(&["exists", "user:9"]), 1, "0\n");
    assert_client(&run(&["getkeys", "user:"]), 0, "user:1\nuser:2\n");
    assert_client(&run(&["getkeys"]), 0, "lock\nuser:1\nuser:2\nvisits\n");
    assert_client(
        &run(&["--json", "cas", "lock", "x", "y"]),
        1,
        "{\"found\":true,\"key\":\"lock\",\"swapped\":false,\"value\":\"bob\"}\n",
    );
    assert_client(&run(&["--json", "incr", "n", "2"]), 0, "{\"key\":\"n\",\"value\":2}\n");
    assert_client(&run(&["--json", "exists", "n"]), 0, "{\"exists\":true,\"key\":\"n\"}\n");
    assert_client(
        &run(&["--json", "mget", "n", "none"]),
        1,
        "{\"found\":true,\"key\":\"n\",\"value\":\"2\"}\n{\"found\":false,\"key\":\"none\"}\n",
    );
    let shell = client(
        &[],
        Some(b"cas \"a b\" --absent \"c d\"\nincr n\nmset x 1 y 2\nmget \"a b\" x y\nexists y\n"),
    );
    assert_client(&shell, 0, "OK\n3\nOK\na b\tc d\nx\t1\ny\t2\n1\n");
}

#[test]
fn operations_on_one_server() {
    let server = start_server(16, &[]);
    commands(|args, input| match input {
        Some(input) => server.client_shell(input),
        None => server.client(args),
    });
    // A retried incr (same client and request id) adds once and gets its
    // original answer; a new request id adds again; an older one is refused.
    let first = call(&server.address, &incr_request(77, 5, "retried", 10));
    assert_eq!((error_code(&first), first.number), (None, 10));
    let retry = call(&server.address, &incr_request(77, 5, "retried", 10));
    assert_eq!((error_code(&retry), retry.number), (None, 10), "applied once");
    assert_eq!(call(&server.address, &incr_request(77, 6, "retried", 1)).number, 11);
    let stale = call(&server.address, &incr_request(77, 5, "retried", 10));
    assert_eq!(error_code(&stale), Some(ErrorCode::ERR_STALE_REQUEST));
    assert_client(&server.client(&["get", "retried"]), 0, "11\n");
}

#[test]
fn limits_and_bad_input_change_nothing() {
    let server = start_server(16, &["--max-key", "8", "--max-value", "16", "--max-memory", "4kb"]);
    assert_client(&server.client(&["mset", "k", "v"]), 0, "OK\n");
    for args in [
        &["mset", "a", "0123456789", "b", "0123456789"][..],
        &["mset", "a", "1", "toolongkey", "1"],
        &["cas", "k", "v", "01234567890123456"],
        &["mget", "toolongkey"],
        &["incr", "toolongkey"],
    ] {
        let output = server.client(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stderr).contains("ERR_TOO_LARGE"), "{args:?}");
    }
    // Fill the table to its --max-memory: mset and cas that would grow it
    // are refused as puts are; a cas that shrinks a value passes.
    let mut client = Client::new(&server.address, ClientOptions::default());
    let mut index = 0;
    while client.put(&format!("f{index}"), vec![b'x'; 16]).is_ok() {
        index += 1;
        assert!(index < 1000, "--max-memory 4kb never refused a put");
    }
    let full = server.client(&["mset", "new1", "v", "new2", "v"]);
    assert!(String::from_utf8_lossy(&full.stderr).contains("ERR_OUT_OF_MEMORY"), "{full:?}");
    assert_client(&server.client(&["exists", "new1"]), 1, "0\n");
    assert_client(&server.client(&["cas", "f0", &"x".repeat(16), "short"]), 0, "OK\n");
    assert_eq!(stdout(&server.client(&["size"])), format!("{}\n", index + 1));
}

/// Retries `request` at `address` until it is not refused for the chain's
/// role or availability (a new head taking over), at most 20 s.
fn call_until_served(address: &str, request: &Request) -> Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = call(address, request);
        match error_code(&response) {
            Some(ErrorCode::ERR_WRONG_ROLE | ErrorCode::ERR_UNAVAILABLE) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(100));
            }
            _ => return response,
        }
    }
}

#[test]
fn operations_through_a_chain_of_three() {
    let zookeeper = start_zookeeper();
    let mut servers = start_chain(&zookeeper, 3);
    let hosts = zookeeper.address();
    commands(|args, input| run_client(&[&hosts], args, input));
    let all: Vec<&ServerProcess> = servers.iter().collect();
    let table = converged(&all);
    assert!(table.iter().any(|(key, value)| key == "user:2" && value == b"ben lee"), "{table:?}");

    // An incr applied by the head, whose client never heard back, retried
    // at the next head after the first was killed: the record of its answer
    // went down the chain with the write, so it is not added again.
    let head = servers[0].address.clone();
    let first = call(&head, &incr_request(88, 1, "counter", 5));
    assert_eq!((error_code(&first), first.number), (None, 5), "{}", first.error_message);
    servers[0].kill();
    let retry = call_until_served(&servers[1].address, &incr_request(88, 1, "counter", 5));
    assert_eq!((error_code(&retry), retry.number), (None, 5), "{}", retry.error_message);
    let next = call_until_served(&servers[1].address, &incr_request(88, 2, "counter", 1));
    assert_eq!(next.number, 6);
    assert_client(&run_client(&[&hosts], &["get", "counter"], None), 0, "6\n");

    // Two clients race to move a counter on with cas, round after round,
    // both from the value they read: exactly one wins each round.
    let rounds = 20;
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let (barrier, hosts) = (Arc::clone(&barrier), hosts.clone());
            thread::spawn(move || {
                let mut client =
                    Client::chain(&hosts, "/chain", ClientOptions::default()).expect("a chain client");
                let mut wins = Vec::new();
                for round in 0..rounds {
                    barrier.wait();
                    let expected = (round > 0).then(|| format!("round{}", round - 1).into_bytes());
                    let swapped = client
                        .cas("race", expected.as_deref(), format!("round{round}"))
                        .expect("cas")
                        .is_ok();
                    if swapped {
                        wins.push(round);
                    }
                    barrier.wait();
                }
                wins
            })
        })
        .collect();
    let wins: Vec<Vec<u32>> = racers.into_iter().map(|racer| racer.join().expect("a racer")).collect();
    let mut every_round: Vec<u32> = wins.concat();
    every_round.sort_unstable();
    assert_eq!(every_round, (0..rounds).collect::<Vec<_>>(), "one winner per round: {wins:?}");
    let live: Vec<&ServerProcess> = servers[1..].iter().collect();
    let table = converged(&live);
    assert!(
        table.iter().any(|(key, value)| key == "race" && value == format!("round{}", rounds - 1).as_bytes())
    );
}
