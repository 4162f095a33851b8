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
    /// Whether the thread may still print; shut when its request is cancelled.
    output_open: Arc<Mutex<bool>>,
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
        if self.worker.commands.send(command).is_err() {
            return Waited::Failed("the request thread ended".into());
        }
        let started = Instant::now();
        let mut status = StatusLine { enabled: self.status_lines, shown: false };
        loop {
            match self.worker.finished.recv_timeout(WAIT_TICK) {
                Ok(_) => {
                    status.clear();
                    return Waited::Finished;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    status.clear();
                    return Waited::Failed("the request thread ended".into());
                }
                Err(RecvTimeoutError::Timeout) if self.interrupted.swap(false, Ordering::SeqCst) => {
                    status.clear();
                    return self.cancel();
                }
                Err(RecvTimeoutError::Timeout) => {
                    let retrying = self.worker.retrying.lock().clone();
                    status.show(status_text(retrying.as_deref(), started.elapsed()).as_deref());
                }
            }
        }
    }

    /// Leaves the pending request to its thread, silenced, and starts a new
    /// client for the next one.
    fn cancel(&mut self) -> Waited {
        *self.worker.output_open.lock() = false;
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
        client.observe_retries(Box::new(move |reason: &str| *observed.lock() = Some(reason.to_owned())));
        let (commands, worker_commands) = crossbeam_channel::bounded::<Command>(1);
        let (worker_finished, finished) = crossbeam_channel::bounded(1);
        let output_open = Arc::new(Mutex::new(true));
        let (mut out, mut err) = (Gated::stdout(&output_open), Gated::stderr(&output_open));
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
        Ok(Worker { commands, finished, output_open, retrying, description })
    }
}

/// stdout or stderr for a request's thread, shut off when the request is
/// cancelled so a late answer does not land in the middle of the next one.
struct Gated {
    open: Arc<Mutex<bool>>,
    to_stderr: bool,
}

impl Gated {
    fn stdout(open: &Arc<Mutex<bool>>) -> Gated {
        Gated { open: Arc::clone(open), to_stderr: false }
    }

    fn stderr(open: &Arc<Mutex<bool>>) -> Gated {
        Gated { open: Arc::clone(open), to_stderr: true }
    }

    /// Runs `write` on the stream while the gate is open (held meanwhile, so
    /// a cancel waits for a write under way and none comes after it).
    fn through<T>(&self, write: impl FnOnce(&mut dyn Write) -> io::Result<T>) -> io::Result<T> {
        let open = self.open.lock();
        if !*open {
            return Err(io::Error::other("the request was cancelled"));
        }
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

/// The one line of status on stderr.
struct StatusLine {
    enabled: bool,
    shown: bool,
}

impl StatusLine {
    /// Redraws the line with `text`, or erases it for `None`.
    fn show(&mut self, text: Option<&str>) {
        match text {
            Some(text) if self.enabled => {
                eprint!("\r\x1b[K{text}");
                self.shown = true;
            }
            _ => self.clear(),
        }
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
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
}
