//! A `table-client ... watch ...` process whose output lines a test reads
//! as they come; killed by PID when dropped (also when the test panics).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

pub struct Watcher {
    child: Child,
    lines: Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Watcher {
    /// Starts `table-client <args...>` (the target and the watch command).
    pub fn start(args: &[&str]) -> Watcher {
        let mut child = Command::new(env!("CARGO_BIN_EXE_table-client"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting table-client watch");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = crossbeam_channel::unbounded();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher { child, lines, seen: Vec::new() }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the watching process.
    pub fn signal(&self, signal: &str) {
        chaintable::check::cluster::send_signal(self.child.id(), signal).expect("signalling table-client");
    }

    /// Reads lines until `done` holds for what was seen, for at most
    /// `limit`; returns whether it did.
    pub fn wait_for(&mut self, limit: Duration, done: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !done(&self.seen) {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
            }
        }
        true
    }

    /// Waits for the process to end by itself (at most `limit`): its exit
    /// status and stderr.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<(ExitStatus, String)> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("polling table-client") {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                self.wait_for(Duration::from_millis(200), |_| false);
                return Some((status, stderr));
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // A stopped process must be resumed to die promptly and be reaped.
        let _ = chaintable::check::cluster::send_signal(self.child.id(), "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
