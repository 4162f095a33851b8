//! `--max-memory` through the real binaries: a full server refuses puts with
//! `ERR_OUT_OF_MEMORY` (the client says so and exits 2) but takes deletes and
//! overwrites that do not grow a value; `stats` shows what is used and the
//! limit; in a chain only the head's limit counts and the replicas stay
//! identical, whatever their own limits.

mod common;

use std::process::Output;

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use chaintable::client::error::ClientError;
use chaintable::limits::{CLIENT_RECORD_BYTES, ENTRY_OVERHEAD_BYTES};
use chaintable::proto::{ErrorCode, Statistics};
use common::chain::{converged, start_member};
use common::{RunClient, ServerProcess, assert_client, run_client, start_server, start_zookeeper};

const LIMIT: &str = "64kb";
const LIMIT_BYTES: u64 = 64 * 1024;
const VALUE_BYTES: usize = 1000;

/// Puts keys `fill<n>` of `VALUE_BYTES` until the server refuses one for
/// memory; returns how many it took.
fn fill(client: &mut Client) -> usize {
    for index in 0..=LIMIT_BYTES as usize / VALUE_BYTES {
        match client.put(&format!("fill{index}"), vec![b'x'; VALUE_BYTES]) {
            Ok(()) => {}
            Err(ClientError::Server { code: ErrorCode::ERR_OUT_OF_MEMORY, message }) => {
                assert!(message.contains("of --max-memory 64 KiB"), "names the limit: {message}");
                return index;
            }
            Err(error) => panic!("put {index}: {error}"),
        }
    }
    panic!("no put refused within --max-memory {LIMIT}")
}

/// A full head, through the client binary (`client` runs it against the
/// server or chain): a put of a new key fails with exit 2 and the server's
/// message; a delete and a shrinking overwrite succeed, and then a put of
/// the size refused before fits again.
fn full_head_takes_deletes_and_shrinking_overwrites(client: impl Fn(&[&str]) -> Output) {
    let value = "x".repeat(VALUE_BYTES);
    let refused = client(&["put", "one-more", &value]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("server error (ERR_OUT_OF_MEMORY): out of memory: used ")
            && stderr.contains(" of --max-memory 64 KiB"),
        "{stderr}"
    );
    assert_client(&client(&["del", "fill0"]), 0, "OK\n");
    assert_client(&client(&["put", "fill1", "short"]), 0, "OK\n");
    assert_client(&client(&["put", "fill0", &value]), 0, "OK\n");
}

fn stats_of(server: &ServerProcess) -> Statistics {
    Client::new(&server.address, ClientOptions::default()).stats().expect("stats")
}

#[test]
fn a_full_server_refuses_puts_but_takes_deletes_and_shrinking_overwrites() {
    let server = start_server(4, &["--max-memory", LIMIT]);
    let empty = stats_of(&server);
    assert_eq!((empty.used_memory, empty.max_memory), (0, LIMIT_BYTES));

    let accepted = fill(&mut Client::new(&server.address, ClientOptions::default()));
    assert!(accepted > 30, "only {accepted} puts of {VALUE_BYTES} B fit in {LIMIT}");
    full_head_takes_deletes_and_shrinking_overwrites(|args| server.client(args));

    let stats = stats_of(&server);
    let lines = common::stdout(&server.client(&["stats"]));
    assert!(lines.contains(&format!("\nmax_memory: {LIMIT_BYTES}\n")), "{lines}");
    assert!(lines.contains("\nused_memory: "), "{lines}");
    // Four clients wrote (the filler and three client processes), so four
    // records; the refused put left none.
    assert_eq!(
        stats.used_memory,
        stats.bytes_stored + stats.keys * ENTRY_OVERHEAD_BYTES + 4 * CLIENT_RECORD_BYTES
    );
    assert!(stats.used_memory <= LIMIT_BYTES, "{} used", stats.used_memory);
}

/// The head has a limit, the middle none and the tail a smaller one: the
/// head alone refuses, the tail applies what the head accepted past its own
/// limit, the three tables stay identical, and the two servers whose
/// predecessor has another limit warn.
#[test]
fn a_chain_head_refuses_past_its_limit_and_the_replicas_stay_identical() {
    let zookeeper = start_zookeeper();
    let head = start_member(&zookeeper, true, &["--max-memory", LIMIT]);
    let middle = start_member(&zookeeper, false, &[]);
    let tail = start_member(&zookeeper, false, &["--max-memory", "16kb"]);
    let zk_hosts = zookeeper.address();

    let mut chain = Client::chain(&zk_hosts, "/chain", ClientOptions::default()).expect("chain client");
    let accepted = fill(&mut chain);
    assert!(accepted > 30, "only {accepted} puts of {VALUE_BYTES} B fit in {LIMIT}");
    full_head_takes_deletes_and_shrinking_overwrites(|args| run_client(&[&zk_hosts], args, None));

    let servers = [&head, &middle, &tail];
    let table = converged(&servers);
    assert_eq!(table.len(), accepted);
    assert!(table.contains(&("fill1".to_owned(), b"short".to_vec())));
    let stats: Vec<Statistics> = servers.iter().map(|server| stats_of(server)).collect();
    let limits: Vec<u64> = stats.iter().map(|stats| stats.max_memory).collect();
    assert_eq!(limits, [LIMIT_BYTES, 0, 16 * 1024]);
    let used: Vec<u64> = stats.iter().map(|stats| stats.used_memory).collect();
    assert!(used.iter().all(|&bytes| bytes == used[0]), "same table and records, same usage: {used:?}");
    assert!(used[2] > 16 * 1024, "the tail holds more than its own limit: {used:?}");

    assert!(middle.log().contains("has --max-memory 64 KiB, this server none"), "{}", middle.log());
    assert!(tail.log().contains("has --max-memory none, this server 16 KiB"), "{}", tail.log());
    assert!(!head.log().contains("has --max-memory"), "the head has no predecessor: {}", head.log());
}
