//! The interactive shell's requests, run on a thread of their own so the
//! shell can give up on one: Ctrl-C (SIGINT) while a request is pending
//! cancels it and returns to the prompt. The blocking client cannot be
//! interrupted in the middle of a call, so a cancelled request's thread is
//! left to finish on its own (bounded by `--timeout-ms`) with its output shut
//! off, and the next request gets a fresh client. Whether a cancelled write
//! was applied is unknown.
//!
//! While it waits, the shell shows one status line on a terminal's stderr:
//! the chain being retried ("head changed, retrying... 1.2 s"), or a slow
//! reply; it is cleared before the result.

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use signal_hook::consts::SIGINT;

use super::command::Command;
use super::output::Format;
use super::shell::{ClientFactory, run_command};
use crate::client::error::ClientError;
use crate::client::routing::RetryObserver;

/// How often the status line is redrawn and Ctrl-C looked for.
const WAIT_TICK: Duration = Duration::from_millis(100);

/// A reply slower than this gets a status line even without retries.
const SLOW_REPLY: Duration = Duration::from_secs(1);

/// How a request ended, for the shell.
#[derive(Debug)]
pub enum Waited {
    Finished,
    /// Ctrl-C: the shell stopped waiting (the request may still be applied).
    Cancelled,
    /// The shell cannot go on (no client could be made, or a thread failed).
    Failed(String),
}

/// Runs the shell's requests, one at a time, on a worker thread.
pub struct RequestRunner {
    make_client: ClientFactory,
    format: Format,
    worker: Worker,
    /// Set by SIGINT.
    interrupted: Arc<AtomicBool>,
    /// Whether stderr is a terminal, so a status line can be drawn and erased.
    status_lines: bool,
}

/// One client on its thread.
struct Worker {
    /// Commands for the thread; dropping it ends the thread after its request.
    commands: Sender<Command>,
    /// One exit code per command.
    finished: Receiver<i32>,
    /// The terminal as the thread and the shell share it.
    screen: Arc<Mutex<Screen>>,
    /// Why the pending request was last retried, if it was.
    retrying: Arc<Mutex<Option<String>>>,
    /// What the client talks to, for the banner.
    description: String,
}

impl RequestRunner {
    /// Makes the first client and starts catching SIGINT (on a terminal,
    /// Ctrl-C at the prompt is a key the line editor reads, not a signal).
    pub fn start(make_client: ClientFactory, format: Format) -> Result<RequestRunner, String> {
        let interrupted = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGINT, Arc::clone(&interrupted))
            .map_err(|error| format!("cannot catch Ctrl-C: {error}"))?;
        let worker = Worker::start(&make_client, format)?;
        Ok(RequestRunner {
            make_client,
            format,
            worker,
            interrupted,
            status_lines: io::stderr().is_terminal(),
        })
    }

    pub fn describe(&self) -> &str {
        &self.worker.description
    }

    /// Runs `command`, showing a status line while it waits, until it ends
    /// or Ctrl-C cancels it.
    pub fn run(&mut self, command: Command) -> Waited {
        self.interrupted.store(false, Ordering::SeqCst);
        *self.worker.retrying.lock() = None;
        self.worker.screen.lock().printing = false;
        if self.worker.commands.send(command).is_err() {
            return Waited::Failed("the request thread ended".into());
        }
        let started = Instant::now();
        let ended = loop {
            match self.worker.finished.recv_timeout(WAIT_TICK) {
                Ok(_) => break Waited::Finished,
                Err(RecvTimeoutError::Disconnected) => {
                    break Waited::Failed("the request thread ended".into());
                }
                Err(RecvTimeoutError::Timeout) if self.interrupted.swap(false, Ordering::SeqCst) => {
                    break Waited::Cancelled;
                }
                Err(RecvTimeoutError::Timeout) if self.status_lines => {
                    let retrying = self.worker.retrying.lock().clone();
                    let text = status_text(retrying.as_deref(), started.elapsed());
                    self.worker.screen.lock().show_status(text.as_deref());
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        };
        self.worker.screen.lock().erase_status();
        match ended {
            Waited::Cancelled => self.cancel(),
            other => other,
        }
    }

    /// Leaves the pending request to its thread, silenced, and starts a new
    /// client for the next one.
    fn cancel(&mut self) -> Waited {
        self.worker.screen.lock().output_open = false;
        match Worker::start(&self.make_client, self.format) {
            Ok(worker) => {
                // Dropping the old worker's channels ends its thread once its request does.
                self.worker = worker;
                Waited::Cancelled
            }
            Err(error) => Waited::Failed(error),
        }
    }
}

impl Worker {
    fn start(make_client: &ClientFactory, format: Format) -> Result<Worker, String> {
        let mut client = make_client().map_err(|error| error.to_string())?;
        let description = client.describe();
        let retrying = Arc::new(Mutex::new(None));
        let observed = Arc::clone(&retrying);
        client.observe_retries(Box::new(move |reason: &str, _: &ClientError| {
            *observed.lock() = Some(reason.to_owned())
        }));
        let (commands, worker_commands) = crossbeam_channel::bounded::<Command>(1);
        let (worker_finished, finished) = crossbeam_channel::bounded(1);
        let screen = Arc::new(Mutex::new(Screen { output_open: true, status_shown: false, printing: false }));
        let (mut out, mut err) = (Gated::stdout(&screen), Gated::stderr(&screen));
        std::thread::Builder::new()
            .name("shell-request".into())
            .spawn(move || {
                for command in worker_commands {
                    let code = run_command(&mut client, &command, format, "error: ", &mut out, &mut err);
                    if worker_finished.send(code).is_err() {
                        break;
                    }
                }
            })
            .map_err(|error| format!("cannot start the request thread: {error}"))?;
        Ok(Worker { commands, finished, screen, retrying, description })
    }
}

/// The terminal, shared by the shell thread, which draws the status line
/// while it waits, and the request thread, which prints the results.
struct Screen {
    /// Whether the request thread may still print; shut when its request is
    /// cancelled so a late answer does not land in the middle of the next one.
    output_open: bool,
    /// The status line is on the screen.
    status_shown: bool,
    /// The request has started printing: no status line until it ends.
    printing: bool,
}

impl Screen {
    /// Draws the status line with `text` (unless results are being printed),
    /// or erases it for `None`.
    fn show_status(&mut self, text: Option<&str>) {
        match text {
            Some(text) if !self.printing => {
                eprint!("\r\x1b[K{text}");
                self.status_shown = true;
            }
            _ => self.erase_status(),
        }
    }

    fn erase_status(&mut self) {
        if self.status_shown {
            eprint!("\r\x1b[K");
            self.status_shown = false;
        }
    }
}

/// stdout or stderr for a request's thread: erases the status line before
/// the first result, and fails once the request is cancelled.
struct Gated {
    screen: Arc<Mutex<Screen>>,
    to_stderr: bool,
}

impl Gated {
    fn stdout(screen: &Arc<Mutex<Screen>>) -> Gated {
        Gated { screen: Arc::clone(screen), to_stderr: false }
    }

    fn stderr(screen: &Arc<Mutex<Screen>>) -> Gated {
        Gated { screen: Arc::clone(screen), to_stderr: true }
    }

    /// Runs `write` on the stream while the output is open (the screen is
    /// held meanwhile, so a cancel waits for a write under way and none
    /// comes after it).
    fn through<T>(&self, write: impl FnOnce(&mut dyn Write) -> io::Result<T>) -> io::Result<T> {
        let mut screen = self.screen.lock();
        if !screen.output_open {
            return Err(io::Error::other("the request was cancelled"));
        }
        screen.erase_status();
        screen.printing = true;
        if self.to_stderr { write(&mut io::stderr()) } else { write(&mut io::stdout()) }
    }
}

impl Write for Gated {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.through(|stream| stream.write(bytes))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.through(|stream| stream.flush())
    }
}

/// What the status line says after `elapsed`: the retry under way, else a
/// slow reply; nothing for a reply that is merely not there yet.
fn status_text(retrying: Option<&str>, elapsed: Duration) -> Option<String> {
    let seconds = elapsed.as_secs_f64();
    match retrying {
        Some(reason) => Some(format!("{reason}, retrying... {seconds:.1} s")),
        None if elapsed >= SLOW_REPLY => {
            Some(format!("waiting for the reply... {seconds:.1} s (Ctrl-C cancels)"))
        }
        None => None,
    }
}

/// One-shot mode on a terminal: a line on stderr when a retry starts, and
/// again whenever its reason changes, saying why and for how long it may go
/// on (the shell shows the same as its status line). Without it, a chain
/// whose ZooKeeper refuses looks like a hang until `--timeout-ms` is up.
pub fn retry_notes(program: &str, limit: Duration) -> RetryObserver {
    let program = program.to_owned();
    let last_reason = Mutex::new(String::new());
    Box::new(move |reason: &str, error: &ClientError| {
        let mut last = last_reason.lock();
        if *last != reason {
            eprintln!("{}", retry_note_text(&program, error, limit));
            reason.clone_into(&mut last);
        }
    })
}

fn retry_note_text(program: &str, error: &ClientError, limit: Duration) -> String {
    format!("{program}: {error}; retrying for up to {} ms (--timeout-ms)...", limit.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_says_why_it_waits() {
        assert_eq!(
            status_text(Some("head changed"), Duration::from_millis(1230)).as_deref(),
            Some("head changed, retrying... 1.2 s")
        );
        assert_eq!(status_text(None, Duration::from_millis(300)), None);
        assert_eq!(
            status_text(None, Duration::from_millis(2050)).as_deref(),
            Some("waiting for the reply... 2.0 s (Ctrl-C cancels)")
        );
    }

    #[test]
    fn one_shot_retries_say_why_and_for_how_long() {
        let error = ClientError::NoChain("no chain at z:1/chain: ZooKeeper unreachable (refused)".into());
        assert_eq!(
            retry_note_text("table-client", &error, Duration::from_secs(10)),
            "table-client: no chain at z:1/chain: ZooKeeper unreachable (refused); \
             retrying for up to 10000 ms (--timeout-ms)..."
        );
    }
}
