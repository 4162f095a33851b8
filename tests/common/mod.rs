//! Fixtures for integration tests: real `table-server` processes on
//! ephemeral loopback ports, killed by PID when the fixture is dropped (also
//! when the test panics), and a helper to run the real `table-client`.

#![allow(dead_code)] // each test binary uses a different subset

pub mod chain;
pub mod ensemble;
pub mod pty;
pub mod tls;
pub mod watcher;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use chaintable::proto::{Opcode, Request, Response};
use chaintable::wire::{encode_frame, read_frame};
use protobuf::Message;

pub use chaintable::check::cluster::{ServerProcess, ZooKeeperProcess};

/// Starts the `table-server` built for these tests: `0 <table-size> <extra...>`.
pub fn start_server(table_size: usize, extra: &[&str]) -> ServerProcess {
    ServerProcess::start(Path::new(env!("CARGO_BIN_EXE_table-server")), table_size, extra)
        .expect("starting table-server")
}

/// Starts the `table-server` built for these tests with at most `files`
/// open files.
pub fn start_server_with_open_files(table_size: usize, extra: &[&str], files: u64) -> ServerProcess {
    let binary = Path::new(env!("CARGO_BIN_EXE_table-server"));
    ServerProcess::start_with_open_files_limit(binary, table_size, extra, files)
        .expect("starting table-server")
}

/// Sends one request with `opcode` on `stream` and reads the reply frame;
/// `None` when the server closed the connection instead.
pub fn raw_call(stream: &TcpStream, opcode: Opcode) -> Option<Response> {
    let mut request = Request::new();
    request.opcode = opcode.into();
    request.request_id = 1;
    send_and_receive(stream, &request)
}

/// Sends `request` on a fresh connection to `address` and reads the reply.
pub fn call(address: &str, request: &Request) -> Response {
    let stream = TcpStream::connect(address).expect("connecting");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("a read timeout");
    send_and_receive(&stream, request).expect("the server closed the connection")
}

/// Sends `request` on `stream` and reads the reply frame; `None` when the
/// server closed the connection instead.
fn send_and_receive(mut stream: &TcpStream, request: &Request) -> Option<Response> {
    use std::io::Write;
    let mut frame = Vec::new();
    encode_frame(request, 1 << 20, &mut frame).expect("encoding a request");
    stream.write_all(&frame).ok()?;
    let mut body = Vec::new();
    match read_frame(&mut stream, 1 << 20, &mut body) {
        Ok(true) => Some(Response::parse_from_bytes(&body).expect("a reply that decodes")),
        _ => None,
    }
}

/// Starts a test ZooKeeper.
pub fn start_zookeeper() -> ZooKeeperProcess {
    ZooKeeperProcess::start().expect("starting ZooKeeper (apt-get install zookeeper)")
}

/// Runs the real `table-client` against one server.
pub trait RunClient {
    /// `table-client --server <this server> <args...>`.
    fn client(&self, args: &[&str]) -> Output;
    /// The client shell with `input` on stdin.
    fn client_shell(&self, input: &[u8]) -> Output;
}

impl RunClient for ServerProcess {
    fn client(&self, args: &[&str]) -> Output {
        run_client(&["--server", &self.address], args, None)
    }

    fn client_shell(&self, input: &[u8]) -> Output {
        run_client(&["--server", &self.address], &[], Some(input))
    }
}

/// Runs `table-client <target...> <args...>`, optionally feeding `input`.
pub fn run_client(target: &[&str], args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_table-client"))
        .args(target)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting table-client");
    if let Some(input) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input).expect("writing client input");
    }
    child.wait_with_output().expect("waiting for table-client")
}

/// stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts the exit code and exact stdout of a client run.
#[track_caller]
pub fn assert_client(output: &Output, code: i32, expected_stdout: &str) {
    assert_eq!(
        (output.status.code(), stdout(output).as_str()),
        (Some(code), expected_stdout),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
