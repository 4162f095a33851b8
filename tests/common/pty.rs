//! A program on a pseudo-terminal, driven the way a person at a terminal
//! drives it: keys in (Ctrl-C as the byte 0x03, which the terminal turns into
//! SIGINT), screen text out. The program gets the terminal as its controlling
//! terminal, so `/dev/tty` is this terminal. Killed by PID on drop.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

/// A child process whose terminal is a pseudo-terminal we hold the other end of.
pub struct PtyChild {
    child: Child,
    /// Our end: what we write is typed, what we read is the screen.
    master: File,
    /// Screen output, read by a thread so the child never blocks on it.
    screen: Receiver<Vec<u8>>,
    /// Everything read from the screen so far.
    pub seen: String,
}

impl PtyChild {
    /// Starts `command` with stdin and stderr on a new 80x24 terminal, and
    /// stdout there too unless `stdout` redirects it.
    pub fn spawn(mut command: Command, stdout: Option<Stdio>) -> PtyChild {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: openpty writes two descriptors into the integers we pass;
        // the name buffer and termios are not asked for.
        let opened =
            unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned by nobody else.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let terminal = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup of the terminal"));
        command.stdin(terminal(&slave)).stderr(terminal(&slave));
        command.stdout(stdout.unwrap_or_else(|| terminal(&slave)));
        // SAFETY: only async-signal-safe calls between fork and exec: a new
        // session, then the terminal (stdin) as its controlling terminal, so
        // 0x03 typed on it sends SIGINT to the program.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("starting the program on a pseudo-terminal");
        drop(slave);
        let (sender, screen) = channel();
        let mut reader = master.try_clone().expect("dup of the pseudo-terminal");
        thread::Builder::new()
            .name("pty-reader".into())
            .spawn(move || {
                let mut buffer = [0u8; 4096];
                // Ends with EIO once the program has exited and closed the terminal.
                while let Ok(count @ 1..) = reader.read(&mut buffer) {
                    if sender.send(buffer[..count].to_vec()).is_err() {
                        break;
                    }
                }
            })
            .expect("starting the pty reader");
        PtyChild { child, master, screen, seen: String::new() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Types `keys`.
    pub fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).expect("typing on the pseudo-terminal");
    }

    /// Waits until the screen shows `text` after what earlier calls
    /// consumed; returns the screen up to and including it. Panics with the
    /// screen after `limit`.
    #[track_caller]
    pub fn expect(&mut self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = self.seen.find(text) {
                let end = at + text.len();
                let shown = self.seen[..end].to_owned();
                self.seen.drain(..end);
                return shown;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.screen.recv_timeout(left) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{text:?} not shown within {limit:?}; screen:\n{:?}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the program closed the terminal before showing {text:?}; screen:\n{:?}",
                        self.seen
                    )
                }
            }
        }
    }

    /// Waits for the program to exit; its exit code, or `None` after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the program still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
