//! A `table-client ... watch ...` process whose output lines a test reads
//! as they come; killed by PID when dropped (also when the test panics).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chaintable::client::Client;
use crossbeam_channel::{Receiver, RecvTimeoutError};

/// How long a watcher may take to see what a test waits for.
pub const LIMIT: Duration = Duration::from_secs(20);

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

    /// Issue 22's setup: it sees five writes, then is stopped (SIGSTOP)
    /// while 80 writes of 256 KiB follow, more than the socket buffers
    /// hold, so its stream stalls far behind what the servers hold.
    pub fn stall(&mut self, written: &mut Written) {
        let before = written.writes.len() + 5;
        written.put("before", 5, 0);
        assert!(self.wait_for(LIMIT, |seen| seen.len() >= before), "saw only {:?}", self.seen);
        self.signal("STOP");
        written.put("big", 80, 256 * 1024);
    }

    /// Resumed (SIGCONT), it sees every write of `written` once, in order.
    pub fn resume_and_see(&mut self, written: &Written) {
        self.signal("CONT");
        let (key, value) = written.writes.last().expect("writes to see");
        let last_line = format!("\t{key}\t{value}");
        let complete =
            self.wait_for(LIMIT, |seen| seen.last().is_some_and(|line| line.ends_with(&last_line)));
        let exit = if complete { None } else { self.wait_exit(Duration::from_secs(1)) };
        assert!(
            complete,
            "the watcher saw {} of {} writes; its exit: {exit:?}",
            self.seen.len(),
            written.writes.len()
        );
        assert_eq!(puts_in_order(&self.seen), written.writes, "every committed write once, in order");
    }
}

/// The key and value of each `PUT` line of `watch`, checking that the
/// sequence numbers rise.
pub fn puts_in_order(lines: &[String]) -> Vec<(String, String)> {
    let mut last_sequence = 0;
    lines
        .iter()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "a PUT line: {line:?}");
            let sequence: u64 = fields[0].parse().expect("a sequence number");
            assert!(
                sequence > last_sequence,
                "{line:?} after sequence {last_sequence}: repeated or out of order"
            );
            last_sequence = sequence;
            (fields[2].to_owned(), fields[3].to_owned())
        })
        .collect()
}

/// Writes to watched keys (`w/...`) and what was acknowledged, in order.
pub struct Written {
    client: Client,
    pub writes: Vec<(String, String)>,
}

impl Written {
    pub fn new(client: Client) -> Written {
        Written { client, writes: Vec::new() }
    }

    /// Puts `w/<name><index>` for `count` indexes, each value its index
    /// and `padding` more bytes.
    pub fn put(&mut self, name: &str, count: usize, padding: usize) {
        for index in 0..count {
            let (key, value) = (format!("w/{name}{index}"), format!("{index}{}", "x".repeat(padding)));
            self.client.put(&key, value.clone()).expect("a write acknowledged");
            self.writes.push((key, value));
        }
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
