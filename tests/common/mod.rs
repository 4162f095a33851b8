//! Fixtures for integration tests: real `table-server` processes on
//! ephemeral loopback ports, killed by PID when the fixture is dropped (also
//! when the test panics), and a helper to run the real `table-client`.

#![allow(dead_code)] // each test binary uses a different subset

pub mod zookeeper;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to print its listening address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct ServerProcess {
    child: Child,
    /// `127.0.0.1:port` as logged by the server.
    pub address: String,
    /// Everything the server logged so far (drained by a thread so the
    /// server never blocks on a full pipe).
    log: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts `table-server 0 <table-size> <extra...>` and waits until it listens.
    pub fn start(table_size: usize, extra: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_table-server"))
            .arg("0")
            .arg(table_size.to_string())
            .args(extra)
            .env("RUST_LOG", "info,zookeeper=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting table-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let log_writer = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let address = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    let _ = address_sender.send(address);
                }
                let mut log = log_writer.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut server = ServerProcess { child, address: String::new(), log };
        match address_receiver.recv_timeout(STARTUP_TIMEOUT) {
            Ok(address) => server.address = address,
            Err(_) => panic!("server did not start; log:\n{}", server.log()),
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends a signal (by number) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits until the server's log contains `text`.
    #[track_caller]
    pub fn wait_for_log(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log().contains(text) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("'{text}' not in the log of {} after {limit:?}:\n{}", self.address, self.log());
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the server to exit; `None` if it is still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("waiting for server") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Runs the real `table-client --server <this server>` with `args`.
    pub fn client(&self, args: &[&str]) -> Output {
        run_client(&["--server", &self.address], args, None)
    }

    /// Runs the client shell with `input` on stdin.
    pub fn client_shell(&self, input: &[u8]) -> Output {
        run_client(&["--server", &self.address], &[], Some(input))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
