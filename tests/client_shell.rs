//! The interactive shell on a real pseudo-terminal, driven as a person
//! would: quoting, command names in any case, Tab completion, Ctrl-C on a
//! pending request and at the prompt, history, and a redirected stdout that
//! gets results only.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::chain::start_member;
use common::pty::PtyChild;
use common::{RunClient, assert_client, start_server, start_zookeeper};

const SHOWN: Duration = Duration::from_secs(10);
const PROMPT: &str = "table> ";

/// `table-client <args>` on a pseudo-terminal, with its history in `history`.
fn shell(args: &[&str], history: &std::path::Path, stdout: Option<Stdio>) -> PtyChild {
    let mut command = Command::new(env!("CARGO_BIN_EXE_table-client"));
    command.args(args).env("CHAINTABLE_HISTFILE", history).env("TERM", "xterm").env_remove("RUST_LOG");
    PtyChild::spawn(command, stdout)
}

/// A temporary file path unique to this test process and `name`.
fn temporary(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("chaintable-client-shell-{}-{name}", std::process::id()))
}

#[test]
fn quoting_names_in_any_case_completion_and_history() {
    let server = start_server(16, &[]);
    let history = temporary("history");
    let mut shell = shell(&["--server", &server.address], &history, None);
    shell.expect(PROMPT, SHOWN);
    shell.send("put \"a b\" \"  two\\twords\"\r");
    shell.expect("OK", SHOWN);
    shell.send("PUT empty \"\"\r");
    shell.expect("OK", SHOWN);
    shell.send("Get \"a b\"\r");
    shell.expect("  two\twords", SHOWN);
    // Tab completes the command name; Enter runs it.
    shell.expect(PROMPT, SHOWN);
    shell.send("gett\t");
    shell.expect("gettable ", SHOWN);
    shell.send("\r");
    shell.expect("a b\t  two\\twords", SHOWN);
    shell.expect("empty\t", SHOWN);
    // Ctrl-C on a line with text clears it: what follows is a fresh line.
    shell.expect(PROMPT, SHOWN);
    shell.send("get zz");
    shell.expect("get zz", SHOWN);
    shell.send("\x03");
    shell.send("get 'a b'\r");
    shell.expect("  two\twords", SHOWN);
    shell.send("quit\r");
    assert_eq!(shell.wait_exit(SHOWN), Some(0), "screen: {:?}", shell.seen);
    let saved = std::fs::read_to_string(&history).expect("the history file CHAINTABLE_HISTFILE names");
    assert!(saved.contains("Get \"a b\"") && saved.contains("gettable"), "{saved}");
    std::fs::remove_file(&history).expect("removing the history file");
    assert_client(&server.client(&["get", "empty"]), 0, "\n");
}

#[test]
fn ctrl_c_at_an_empty_prompt_leaves_like_redis_cli() {
    let server = start_server(16, &[]);
    let mut shell = shell(&["--server", &server.address], std::path::Path::new(""), None);
    shell.expect(PROMPT, SHOWN);
    shell.send("\x03");
    assert_eq!(shell.wait_exit(SHOWN), Some(0), "screen: {:?}", shell.seen);
}

/// A listener that accepts connections and never answers, until dropped.
struct SilentServer {
    address: String,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let address = listener.local_addr().expect("its address").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            // Bounded: at most a minute, at most a few connections kept.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stopped.load(Ordering::SeqCst) && Instant::now() < deadline {
                if let Ok((stream, _)) = listener.accept()
                    && held.len() < 16
                {
                    held.push(stream);
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        SilentServer { address, stop, thread: Some(thread) }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn ctrl_c_cancels_a_pending_request_and_the_shell_stays() {
    let silent = SilentServer::start();
    let mut shell =
        shell(&["--server", &silent.address, "--timeout-ms", "60000"], std::path::Path::new(""), None);
    shell.expect(PROMPT, SHOWN);
    shell.send("get x\r");
    // The status line while it waits (on stderr, the terminal).
    shell.expect("waiting for the reply... 1.", SHOWN);
    let pressed = Instant::now();
    shell.send("\x03");
    shell.expect("cancelled (a write may or may not have been applied)", SHOWN);
    shell.expect(PROMPT, SHOWN);
    assert!(pressed.elapsed() < Duration::from_secs(2), "cancelled after {:?}", pressed.elapsed());
    assert!(shell.is_running(), "Ctrl-C must not end the shell");
    shell.send("HELP\r");
    shell.expect("commands (short forms", SHOWN);
    shell.send("quit\r");
    assert_eq!(shell.wait_exit(SHOWN), Some(0), "screen: {:?}", shell.seen);
}

#[test]
fn a_redirected_stdout_gets_results_only() {
    let server = start_server(16, &[]);
    let results = temporary("stdout");
    let file = std::fs::File::create(&results).expect("creating the stdout file");
    let mut shell = shell(&["--server", &server.address], std::path::Path::new(""), Some(Stdio::from(file)));
    shell.expect(PROMPT, SHOWN);
    shell.send("put k \"v w\"\r");
    shell.expect(PROMPT, SHOWN);
    shell.send("get k\r");
    shell.expect(PROMPT, SHOWN);
    shell.send("get absent\r");
    shell.expect("absent: not found", SHOWN);
    shell.send("quit\r");
    assert_eq!(shell.wait_exit(SHOWN), Some(0), "screen: {:?}", shell.seen);
    let mut stdout = String::new();
    std::fs::File::open(&results)
        .and_then(|mut file| file.read_to_string(&mut stdout))
        .expect("reading stdout");
    std::fs::remove_file(&results).expect("removing the stdout file");
    assert_eq!(stdout, "OK\nv w\n", "no prompt, banner or escape sequence on a redirected stdout");
}

#[test]
fn a_status_line_while_the_chain_is_retried() {
    let zookeeper = start_zookeeper();
    // Sessions of 6 s: a paused tail stays listed, and is retried, for a while.
    let session = ["--zk-timeout-ms", "6000"];
    let servers: Vec<_> = (0..2).map(|index| start_member(&zookeeper, index == 0, &session)).collect();
    let mut shell = shell(&["--timeout-ms", "20000", &zookeeper.address()], std::path::Path::new(""), None);
    shell.expect(PROMPT, SHOWN);
    shell.send("put k v\r");
    shell.expect("OK", SHOWN);
    shell.expect(PROMPT, SHOWN);
    servers[1].signal("STOP").expect("pausing the tail");
    shell.send("get k\r");
    shell.expect("waiting for the reply... 1.", SHOWN);
    shell.expect("tail unreachable, retrying... ", SHOWN);
    // Once ZooKeeper drops the paused tail, the head answers as the new tail
    // and the status line is erased before the answer.
    shell.expect("\r\x1b[Kv\r\n", Duration::from_secs(20));
    shell.expect(PROMPT, SHOWN);
    shell.send("quit\r");
    assert_eq!(shell.wait_exit(SHOWN), Some(0), "screen: {:?}", shell.seen);
}

/// One-shot on a terminal, ZooKeeper refusing: the retry is said at once
/// (with why and for how long), not after `--timeout-ms` of silence; with
/// stderr not a terminal, only the final error.
#[test]
fn a_one_shot_retry_is_said_at_once_on_a_terminal() {
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address").to_string()
    };
    let args = ["--timeout-ms", "3000", refused.as_str(), "get", "x"];
    let mut client = shell(&args, &temporary("unused-history"), Some(Stdio::null()));
    let started = Instant::now();
    let shown = client.expect("retrying for up to 3000 ms (--timeout-ms)...", SHOWN);
    assert!(started.elapsed() < Duration::from_secs(2), "said after {:?}", started.elapsed());
    assert!(shown.contains("ZooKeeper unreachable") && shown.contains("Connection refused"), "{shown:?}");
    assert_eq!(client.wait_exit(SHOWN), Some(2));
    let piped = common::run_client(&["--timeout-ms", "300"], &[refused.as_str(), "get", "x"], None);
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert_eq!(piped.status.code(), Some(2));
    assert!(!stderr.contains("retrying for up to") && stderr.contains("gave up after"), "{stderr}");
}
