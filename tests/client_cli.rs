//! The command lines of the four binaries as a user meets them: `--version`
//! and `-h`, usage errors with their exact message, exit code 2 and no
//! waiting, and the client's one-shot `--json`, `-x` and environment
//! defaults against a real server.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{RunClient, assert_client, start_server, stdout};
use serde_json::{Value, json};

/// A usage error must not wait for anything (no connection, no retry).
const AT_ONCE: Duration = Duration::from_secs(2);

fn run(binary: &str, args: &[&str], environment: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(binary)
        .args(args)
        .env_remove("CHAINTABLE_ZK")
        .env_remove("CHAINTABLE_CHAIN")
        .envs(environment.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running the binary");
    (output, started.elapsed())
}

const BINARIES: [(&str, &str); 4] = [
    ("table-server", env!("CARGO_BIN_EXE_table-server")),
    ("table-client", env!("CARGO_BIN_EXE_table-client")),
    ("table-bench", env!("CARGO_BIN_EXE_table-bench")),
    ("table-check", env!("CARGO_BIN_EXE_table-check")),
];

#[test]
fn every_binary_has_version_and_help() {
    for (name, binary) in BINARIES {
        for flag in ["--version", "-V"] {
            let (output, _) = run(binary, &[flag], &[]);
            assert_eq!(output.status.code(), Some(0), "{name} {flag}");
            assert_eq!(stdout(&output), format!("{name} {}\n", env!("CARGO_PKG_VERSION")), "{name} {flag}");
        }
        for flag in ["--help", "-h"] {
            let (output, _) = run(binary, &[flag], &[]);
            assert_eq!(output.status.code(), Some(0), "{name} {flag}");
            assert!(stdout(&output).starts_with(&format!("usage: {name}")), "{name} {flag}");
            assert!(stdout(&output).contains("-V, --version"), "{name} {flag} lists --version");
        }
    }
    // `-h` is help, not a ZooKeeper host, wherever options may stand.
    let (output, elapsed) = run(BINARIES[1].1, &["-h", "get", "x"], &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).starts_with("usage: table-client") && elapsed < AT_ONCE);
}

/// A usage error: which of [`BINARIES`], its arguments, its environment,
/// and the message expected.
type UsageCase = (usize, &'static [&'static str], &'static [(&'static str, &'static str)], &'static str);

#[test]
fn usage_errors_are_one_line_and_a_pointer_exit_2_at_once() {
    let cases: &[UsageCase] = &[
        (1, &["--bogus", "zk:1"], &[], "unknown option --bogus"),
        (1, &["-z", "127.0.0.1:2181", "get", "x"], &[], "unknown option -z"),
        (1, &["--server"], &[], "--server needs a value"),
        (1, &["--timeout-ms", "soon", "zk:1", "size"], &[], "timeout-ms: 'soon' is not a valid number"),
        (1, &[], &[], "no target: give <zk-host:port,...>, --server <host:port> or CHAINTABLE_ZK"),
        (1, &["get", "x"], &[], "no target: give <zk-host:port,...>, --server <host:port> or CHAINTABLE_ZK"),
        (1, &["--chain", "tables", "zk:1"], &[], "--chain: 'tables' is not a ZooKeeper path like /chain"),
        (
            1,
            &["size"],
            &[("CHAINTABLE_ZK", "zk:1"), ("CHAINTABLE_CHAIN", "t")],
            "CHAINTABLE_CHAIN: \"t\" is not a ZooKeeper path like /chain",
        ),
        (1, &["--local", "zk:1", "size"], &[], "--local needs --server <host:port>"),
        // A mistyped command is not a ZooKeeper host (it opened a shell "for
        // the chain at gettabel/chain"), with or without CHAINTABLE_ZK.
        (1, &["gettabel"], &[], "'gettabel' is neither a command nor a ZooKeeper address (host:port,...)"),
        (
            1,
            &["gettabel", "x"],
            &[("CHAINTABLE_ZK", "127.0.0.1:1")],
            "'gettabel' is neither a command nor a ZooKeeper address (host:port,...)",
        ),
        (1, &["-x", "--server", "127.0.0.1:1"], &[], "-x (--stdin) needs a command, e.g. -x put <key>"),
        // Commands that cannot be right fail before the target is contacted
        // (port 1 refuses, a chain would be retried for the whole timeout).
        (1, &["--server", "127.0.0.1:1", "get"], &[], "get: missing <key>"),
        (1, &["--server", "127.0.0.1:1", "get", "a", "b"], &[], "get: too many arguments"),
        (1, &["127.0.0.1:1", "frobnicate"], &[], "unknown command 'frobnicate' (try 'help')"),
        (1, &["127.0.0.1:1", "put", "k"], &[], "put: missing <value>"),
        (0, &["1"], &[], "expected <port> <table-size> [<zk-hosts>]"),
        (0, &["7000", "64", "--max-clients", "0"], &[], "--max-clients must be positive"),
        (0, &["-x", "7000", "64"], &[], "unknown option -x"),
        (
            2,
            &["--server", "h:1", "--clients", "0"],
            &[],
            "--clients: '0' is not a whole number from 1 to 10000",
        ),
        (2, &["-x"], &[], "unexpected argument '-x': every argument is an --option"),
        (3, &["--nodes"], &[], "--nodes needs a value"),
        (3, &["--frobnicate", "1"], &[], "unknown option --frobnicate"),
    ];
    for &(binary, args, environment, message) in cases {
        let (name, path) = BINARIES[binary];
        let (output, elapsed) = run(path, args, environment);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name} {args:?}: {stderr}");
        assert_eq!(
            stderr,
            format!("{name}: {message}\nTry '{name} --help' for more information.\n"),
            "{name} {args:?}"
        );
        assert!(output.stdout.is_empty(), "{name} {args:?}");
        assert!(elapsed < AT_ONCE, "{name} {args:?} took {elapsed:?}");
    }
}

/// Every stdout line as JSON.
fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("{line:?} is not JSON: {error}"))
        })
        .collect()
}

#[test]
fn one_shot_json_has_one_object_per_result_and_keeps_exit_codes() {
    let server = start_server(16, &[]);
    let json_client = |args: &[&str]| {
        let output = server.client(&[&["--json"], args].concat());
        (output.status.code(), json_lines(&output), output.stderr.is_empty())
    };
    assert_eq!(json_client(&["put", "k", "v w"]), (Some(0), vec![json!({"ok": true})], true));
    assert_eq!(json_client(&["put", "bin", "\u{1}"]), (Some(0), vec![json!({"ok": true})], true));
    assert_eq!(
        json_client(&["get", "k"]),
        (Some(0), vec![json!({"key": "k", "found": true, "value": "v w"})], true)
    );
    assert_eq!(json_client(&["get", "no"]), (Some(1), vec![json!({"key": "no", "found": false})], true));
    assert_eq!(json_client(&["size"]), (Some(0), vec![json!({"size": 2})], true));
    assert_eq!(json_client(&["getkeys"]), (Some(0), vec![json!({"key": "bin"}), json!({"key": "k"})], true));
    assert_eq!(
        json_client(&["gettable"]),
        (Some(0), vec![json!({"key": "bin", "value": "\u{1}"}), json!({"key": "k", "value": "v w"})], true)
    );
    let (code, stats, quiet) = json_client(&["stats"]);
    assert_eq!((code, stats.len(), quiet), (Some(0), 1, true));
    assert_eq!(stats[0]["role"], json!("standalone"));
    assert_eq!(stats[0]["keys"], json!(2));
    assert_eq!(json_client(&["del", "k"]), (Some(0), vec![json!({"key": "k", "deleted": true})], true));
    assert_eq!(json_client(&["DEL", "k"]), (Some(1), vec![json!({"key": "k", "deleted": false})], true));
    let (code, failure, quiet) = json_client(&["members"]);
    assert_eq!((code, quiet), (Some(2), true));
    assert_eq!(
        failure,
        vec![
            json!({"error": "members reads the chain from ZooKeeper: give <zk-host:port,...>, not --server"})
        ]
    );
    // Errors of the server come with their code.
    let big = "x".repeat(20_000);
    let (code, failure, _) = json_client(&["put", &big, "v"]);
    assert_eq!((code, &failure[0]["code"]), (Some(2), &json!("ERR_TOO_LARGE")), "{failure:?}");
    // An unreachable server.
    let output = common::run_client(&["--json", "--server", "127.0.0.1:1"], &["get", "k"], None);
    assert_eq!(output.status.code(), Some(2));
    let failure = json_lines(&output);
    assert!(
        failure[0]["error"].as_str().is_some_and(|error| error.starts_with("server unreachable")),
        "{failure:?}"
    );
}

#[test]
fn shell_json_and_scripted_input() {
    let server = start_server(16, &[]);
    let output = common::run_client(
        &["--json", "--server", &server.address],
        &[],
        Some(b"put \"a b\" ''\nget \"a b\"\nget 'no such'\nnonsense\n"),
    );
    assert_eq!(output.status.code(), Some(2), "a failed line makes a scripted shell exit 2");
    assert_eq!(
        json_lines(&output),
        vec![
            json!({"ok": true}),
            json!({"key": "a b", "found": true, "value": ""}),
            json!({"key": "no such", "found": false}),
            json!({"error": "unknown command 'nonsense' (try 'help')"}),
        ]
    );
}

#[test]
fn stdin_gives_the_last_argument_with_x() {
    let server = start_server(16, &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_table-client"))
        .args(["--server", &server.address, "-x", "put", "from-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting table-client");
    child.stdin.take().expect("piped stdin").write_all(b"line one\nline two\n\xff").expect("writing stdin");
    assert_client(&child.wait_with_output().expect("waiting for table-client"), 0, "OK\n");
    let output = server.client(&["--json", "get", "from-stdin"]);
    assert_eq!(
        json_lines(&output),
        vec![
            json!({"key": "from-stdin", "found": true, "value_hex": "6c696e65206f6e650a6c696e652074776f0aff"})
        ]
    );
}

#[test]
fn chaintable_zk_is_the_default_target() {
    // Nothing listens on port 1: what matters is which target the client
    // tried, which its error names.
    let (output, _) = run(
        BINARIES[1].1,
        &["--timeout-ms", "300", "GET", "k"],
        &[("CHAINTABLE_ZK", "127.0.0.1:1"), ("CHAINTABLE_CHAIN", "/elsewhere")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no chain at 127.0.0.1:1/elsewhere"), "{stderr}");
}
