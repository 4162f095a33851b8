//! `--watchers N`: N watch streams of every key (`watch --prefix key:`) held
//! at the tail through the whole run, each on a thread of its own, so a run
//! shows what watchers cost the writes; the report counts the changes they
//! were sent and how many streams were still open at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};

use super::BenchError;
use crate::client::Client;
use crate::client::connection::ClientOptions;
use crate::client::watch::{Ended, WatchRequest};
use crate::limits::BENCH_WORKER_STACK_BYTES;
use crate::proto::WatchEvent;

/// The watchers of a run.
pub struct Watchers {
    stop: Arc<AtomicBool>,
    /// Changes sent to all of them.
    events: Arc<AtomicU64>,
    /// Streams not ended by an error.
    open: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Watchers {
    pub fn none() -> Watchers {
        Watchers { stop: Arc::default(), events: Arc::default(), open: Arc::default(), threads: Vec::new() }
    }

    /// Starts `count` watchers of the server at `address` (a chain's tail).
    pub fn start(address: &str, count: usize, options: &ClientOptions) -> Result<Watchers, BenchError> {
        let mut watchers = Watchers::none();
        for index in 0..count {
            let (stop, events, open) =
                (Arc::clone(&watchers.stop), Arc::clone(&watchers.events), Arc::clone(&watchers.open));
            let mut client = Client::new(address, options.clone());
            open.fetch_add(1, Ordering::SeqCst);
            let watch = move || {
                let watched = WatchRequest { keys: "key:".into(), prefix: true, from: None };
                let ended = client.watch(&watched, |new: &[WatchEvent], _| {
                    events.fetch_add(new.len() as u64, Ordering::Relaxed);
                    if stop.load(Ordering::SeqCst) { Err(Ended::Stopped) } else { Ok(()) }
                });
                if !matches!(ended, Err(Ended::Stopped)) {
                    open.fetch_sub(1, Ordering::SeqCst);
                }
            };
            let spawned = thread::Builder::new()
                .name(format!("bench-watch-{index}"))
                .stack_size(BENCH_WORKER_STACK_BYTES)
                .spawn(watch);
            match spawned {
                Ok(thread) => watchers.threads.push(thread),
                Err(error) => {
                    watchers.finish();
                    return Err(BenchError::Setup(format!("cannot start watcher {index}: {error}")));
                }
            }
        }
        Ok(watchers)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Stops them (each at its next frame, at most a heartbeat away) and
    /// returns the changes they were sent and how many were still open.
    pub fn finish(self) -> (u64, usize) {
        let open = self.open.load(Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            let _ = thread.join();
        }
        (self.events.load(Ordering::Relaxed), open)
    }
}
