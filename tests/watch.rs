//! Watches through the real binaries: `table-client watch` against one
//! server (puts, deletes, `mset` and expiry seen in order; `--from`
//! resumes; a compacted history exits 2; JSON lines), a watcher that stops
//! reading cut off while writes go on (and, closed for it, told where to
//! resume), a watcher behind a state transfer, and a watcher of a chain of three
//! that sees every acknowledged write of its prefix exactly once, in order,
//! while the tail is killed under writes.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use chaintable::proto::{ErrorCode, Opcode, Request, Response};
use chaintable::wire::{encode_frame, read_frame};
use common::chain::{start_chain, start_member};
use common::ensemble::Writer;
use common::pty::PtyChild;
use common::watcher::{LIMIT, Watcher, Written, puts_in_order};
use common::{RunClient, ServerProcess, assert_client, run_client, start_server, start_zookeeper};
use protobuf::Message;

/// Waits until `server` counts `watchers` watch streams (so a test's
/// writes come after the watch began).
fn wait_for_watchers(server: &ServerProcess, watchers: u64) {
    let counted = server.wait_for_stats(LIMIT, |statistics| statistics.watchers == watchers);
    assert!(counted.is_some(), "{} never had {watchers} watchers: {:?}", server.address, server.stats());
}

#[test]
fn one_server_shows_puts_deletes_msets_and_expiry_in_order_and_resumes_from_a_sequence() {
    let server = start_server(16, &[]);
    let mut watcher = Watcher::start(&["--server", &server.address, "watch", "--prefix", "user/"]);
    wait_for_watchers(&server, 1);
    assert_client(&server.client(&["put", "user/1", "alice"]), 0, "OK\n");
    assert_client(&server.client(&["put", "other", "x"]), 0, "OK\n");
    assert_client(&server.client(&["put", "--ttl", "2s", "user/2", "bob"]), 0, "OK\n");
    assert_client(&server.client(&["del", "user/1"]), 0, "OK\n");
    assert_client(&server.client(&["mset", "user/3", "c", "other", "y", "user/4", "d e"]), 0, "OK\n");
    let expected = [
        "1\tPUT\tuser/1\talice",
        "3\tPUT\tuser/2\tbob",
        "4\tDELETE\tuser/1",
        "5\tPUT\tuser/3\tc",
        "5\tPUT\tuser/4\td e",
        "6\tEXPIRED\tuser/2",
    ];
    let complete = watcher.wait_for(LIMIT, |seen| seen.len() >= expected.len());
    assert!(complete, "saw only {:?}", watcher.seen);
    assert_eq!(watcher.seen, expected);
    drop(watcher);

    // From a sequence: nothing before it, nothing skipped; one key; JSON.
    let mut resumed =
        Watcher::start(&["--server", &server.address, "watch", "--prefix", "user/", "--from", "4"]);
    assert!(resumed.wait_for(LIMIT, |seen| seen.len() >= 4), "saw only {:?}", resumed.seen);
    assert_eq!(resumed.seen, expected[2..]);
    let mut one_key =
        Watcher::start(&["--server", &server.address, "--json", "watch", "user/1", "--from", "1"]);
    assert!(one_key.wait_for(LIMIT, |seen| seen.len() >= 2), "saw only {:?}", one_key.seen);
    assert_eq!(
        one_key.seen,
        [
            r#"{"event":"put","key":"user/1","sequence":1,"value":"alice"}"#,
            r#"{"event":"delete","key":"user/1","sequence":4}"#
        ]
    );
    assert!(!one_key.wait_for(Duration::from_millis(1500), |seen| seen.len() > 2), "{:?}", one_key.seen);
}

#[test]
fn a_history_that_is_gone_exits_2_and_names_the_oldest_sequence() {
    let server = start_server(16, &["--watch-history-writes", "5"]);
    for index in 1..=10 {
        assert_client(&server.client(&["put", "k", &index.to_string()]), 0, "OK\n");
    }
    let mut watcher = Watcher::start(&["--server", &server.address, "watch", "k", "--from", "5"]);
    let (status, stderr) = watcher.wait_exit(LIMIT).expect("the watch ends by itself");
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("history compacted") && stderr.contains("oldest available 6"), "{stderr}");
    assert!(watcher.seen.is_empty(), "nothing printed: {:?}", watcher.seen);
    let mut kept = Watcher::start(&["--server", &server.address, "watch", "k", "--from", "6"]);
    assert!(kept.wait_for(LIMIT, |seen| seen.len() >= 5), "saw only {:?}", kept.seen);
    assert_eq!(kept.seen.first().map(String::as_str), Some("6\tPUT\tk\t6"));
    assert_eq!(kept.seen.last().map(String::as_str), Some("10\tPUT\tk\t10"));
}

/// Sends a watch of every key on a raw connection and reads its first frame.
fn raw_watch(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connecting");
    stream.set_read_timeout(Some(LIMIT)).expect("a read timeout");
    let mut request = Request::new();
    request.opcode = Opcode::OP_WATCH.into();
    request.request_id = 1;
    request.watch_prefix = true;
    let mut frame = Vec::new();
    encode_frame(&request, 1 << 20, &mut frame).expect("encoding");
    stream.write_all(&frame).expect("sending");
    let first = next_frame(&mut stream).expect("the stream's first frame");
    assert_eq!(first.opcode.enum_value(), Ok(Opcode::OP_WATCH), "{}", first.error_message);
    stream
}

fn next_frame(stream: &mut TcpStream) -> Option<Response> {
    let mut body = Vec::new();
    match read_frame(stream, 64 << 20, &mut body) {
        Ok(true) => Some(Response::parse_from_bytes(&body).expect("a frame that decodes")),
        _ => None,
    }
}

#[test]
fn a_watcher_that_stops_reading_is_cut_off_while_writes_go_on() {
    let server = start_server(16, &["--watch-lag-max", "50"]);
    let mut stalled = raw_watch(&server.address);
    // Far more than the socket buffers hold, so the stream's thread is
    // stuck sending while these are written and acknowledged.
    let value = vec![b'v'; 64 * 1024];
    let mut client = Client::new(&server.address, ClientOptions::default());
    let started = Instant::now();
    for index in 0..400 {
        client
            .put(&format!("k{index}"), value.clone())
            .expect("a write acknowledged while the watcher stalls");
    }
    let writing = started.elapsed();
    let statistics = server.stats().expect("stats");
    assert_eq!((statistics.puts, statistics.watchers), (400, 1), "written with the watcher still there");
    // Reading again: the frames it managed to send, then the cut-off.
    let mut events = 0;
    let deadline = Instant::now() + LIMIT;
    let last = loop {
        assert!(Instant::now() < deadline, "still streaming after {LIMIT:?} ({events} events): not cut off");
        let frame = next_frame(&mut stalled).expect("an error frame before the stream ends");
        if frame.opcode.enum_value() == Ok(Opcode::OP_ERROR) {
            break frame;
        }
        events += frame.events.len();
    };
    assert_eq!(last.error_code.enum_value(), Ok(ErrorCode::ERR_WATCH_TOO_SLOW), "{}", last.error_message);
    assert!(last.error_message.contains("over the server's --watch-lag-max 50"), "{}", last.error_message);
    assert!(events < 400, "cut off before it was sent everything ({events} events)");
    let statistics = server.wait_for_stats(LIMIT, |statistics| statistics.watchers == 0).expect("stats");
    assert_eq!(statistics.watchers_cut_off, 1);
    eprintln!("400 writes of 64 KiB in {writing:?} with a stalled watcher; it got {events} events");
}

/// A watcher that does not read a frame within the server's
/// `--write-timeout-ms` is closed mid-stream, with no room left for an
/// error frame: the client says so and where to resume (exit 2), and
/// resuming there misses nothing. Without it the client said only "server
/// unreachable: stream ended inside a frame".
#[test]
fn a_watcher_closed_for_not_reading_says_where_to_resume_and_nothing_is_lost() {
    let server = start_server(16, &["--write-timeout-ms", "500"]);
    let mut watcher = Watcher::start(&["--server", &server.address, "watch", "--prefix", "w/"]);
    wait_for_watchers(&server, 1);
    let client = Client::new(&server.address, ClientOptions::default());
    let mut written = Written::new(client);
    watcher.stall(&mut written);
    let closed = server.wait_for_stats(LIMIT, |statistics| statistics.watchers_cut_off == 1);
    assert!(closed.is_some(), "the stalled watcher was never closed: {:?}", server.stats());
    watcher.signal("CONT");
    let (status, stderr) = watcher.wait_exit(LIMIT).expect("the watch ends by itself");
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    let seen = puts_in_order(&watcher.seen);
    assert!(seen.len() < written.writes.len(), "it was closed before it saw everything");
    assert_eq!(seen, written.writes[..seen.len()], "what it saw, in order");
    let last: u64 = watcher.seen.last().and_then(|line| line.split('\t').next()?.parse().ok()).unwrap_or(0);
    let resume = (last + 1).to_string();
    assert!(
        stderr.contains("--write-timeout-ms") && stderr.contains(&format!("resume with --from {resume}")),
        "{stderr}"
    );
    let mut resumed =
        Watcher::start(&["--server", &server.address, "watch", "--prefix", "w/", "--from", &resume]);
    let rest = written.writes.len() - seen.len();
    assert!(resumed.wait_for(LIMIT, |lines| lines.len() >= rest), "saw {} of {rest}", resumed.seen.len());
    assert_eq!(puts_in_order(&resumed.seen), written.writes[seen.len()..], "the rest, once each");
}

#[test]
fn a_chain_watcher_sees_every_committed_write_once_in_order_across_a_tail_kill() {
    let zookeeper = start_zookeeper();
    let mut servers = start_chain(&zookeeper, 3);
    let zk = zookeeper.address();
    let mut watcher = Watcher::start(&[&zk, "watch", "--prefix", "w/"]);
    wait_for_watchers(&servers[2], 1);
    let writer = Writer::start(&zk, "/chain", "w/");
    thread::sleep(Duration::from_millis(700));
    servers[2].kill();
    let new_tail = servers[1].wait_for_stats(LIMIT, |statistics| statistics.role == "tail");
    assert!(new_tail.is_some(), "the middle never became the tail: {:?}", servers[1].stats());
    wait_for_watchers(&servers[1], 1);
    thread::sleep(Duration::from_millis(700));
    let report = writer.stop();
    assert_eq!(report.failures, 0, "every write was acknowledged in the end");
    let last = report.acked.last().expect("writes before and after the kill").clone();
    let last_line = format!("\t{last}\t{last}");
    let complete = watcher.wait_for(LIMIT, |seen| seen.last().is_some_and(|line| line.ends_with(&last_line)));
    assert!(complete, "the watcher never saw {last}; it saw {} lines", watcher.seen.len());
    // An expiry decided by the head reaches the new tail as a replicated
    // delete that says so.
    let ttl = run_client(&[&zk], &["put", "--ttl", "300ms", "w/ttl", "t"], None);
    assert_client(&ttl, 0, "OK\n");
    let count = report.acked.len() + 2;
    assert!(watcher.wait_for(LIMIT, |seen| seen.len() >= count), "saw {} lines", watcher.seen.len());
    let expiry: Vec<&str> =
        watcher.seen[count - 2..].iter().map(|line| line.split_once('\t').unwrap().1).collect();
    assert_eq!(expiry, ["PUT\tw/ttl\tt", "EXPIRED\tw/ttl"]);
    let seen = puts_in_order(&watcher.seen[..count - 2]);
    let acked: Vec<(String, String)> = report.acked.iter().map(|key| (key.clone(), key.clone())).collect();
    assert_eq!(seen.len(), acked.len(), "one line per acknowledged write");
    assert_eq!(seen, acked, "every acknowledged write once, in the order written");
    let table = common::chain::local_table(&servers[1].address);
    assert_eq!(table.len(), acked.len(), "the tail holds what the watcher saw");
}

/// Issue 22: a watcher that fell behind while the tail role moved to a
/// server that joined by a state transfer resumes there, once the old tail
/// is killed, from the last sequence it printed: the transfer carried the
/// old tail's watch history. Without it the joiner's history began after
/// its snapshot, and the watcher exited 2 ("history compacted").
#[test]
fn a_watcher_behind_a_state_transfer_resumes_at_the_joiner_once_the_old_tail_is_killed() {
    let zookeeper = start_zookeeper();
    let mut servers = start_chain(&zookeeper, 2);
    let zk = zookeeper.address();
    let mut watcher = Watcher::start(&[&zk, "watch", "--prefix", "w/"]);
    wait_for_watchers(&servers[1], 1);
    let client = Client::chain(&zk, "/chain", ClientOptions::default()).expect("a chain client");
    let mut written = Written::new(client);
    watcher.stall(&mut written);
    let joiner = start_member(&zookeeper, false, &[]);
    let statistics = joiner.stats().expect("the joiner's stats");
    assert_eq!(statistics.state_transfers_received, 1, "the joiner came in by a state transfer");
    written.put("after", 5, 0);
    servers[1].kill();
    watcher.resume_and_see(&written);
    let served = joiner.stats().expect("the joiner's stats");
    assert_eq!((served.role.as_str(), served.watchers), ("tail", 1), "the joiner serves the watcher now");
}

#[test]
fn in_the_shell_ctrl_c_ends_a_watch_and_the_shell_goes_on() {
    let server = start_server(16, &[]);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_table-client"));
    command.args(["--server", &server.address]).env("CHAINTABLE_HISTFILE", "").env("TERM", "xterm");
    let mut shell = PtyChild::spawn(command, None);
    shell.expect("table> ", LIMIT);
    shell.send("watch k\r");
    wait_for_watchers(&server, 1);
    assert_client(&server.client(&["put", "k", "seen"]), 0, "OK\n");
    shell.expect("PUT\tk\tseen", LIMIT);
    shell.send("\x03");
    shell.expect("table> ", LIMIT);
    // The cancelled watch notices within a heartbeat and closes its stream.
    wait_for_watchers(&server, 0);
    shell.send("get k\r");
    shell.expect("seen", LIMIT);
    shell.send("quit\r");
    assert_eq!(shell.wait_exit(LIMIT), Some(0), "screen: {:?}", shell.seen);
}
