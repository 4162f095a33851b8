//! One watcher per `table-check` run: it watches every key of the workload
//! from the chain's first write, through every fault, and afterwards the
//! run checks that it saw exactly the committed changes, in order: each
//! change once (no sequence number twice for a key, rising), each
//! acknowledged put and swapped cas (their values are unique in a run)
//! exactly once, acknowledged writes of a key in their real-time order,
//! and, replayed, the events leave every key as the final reads found it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::history::{OpKind, Record};
use super::workload::{Workload, decode_value};
use log::warn;

use crate::client::Client;
use crate::client::error::ClientError;
use crate::client::retry::is_retryable;
use crate::client::watch::{Ended, WatchRequest};
use crate::proto::watch_event::Kind;
use crate::proto::{ErrorCode, WatchEvent};

/// How long the watcher may take to catch up with the commit point once
/// the run is over.
const CATCH_UP: Duration = Duration::from_secs(30);

/// The watcher's thread.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    /// The sequence through which its stream is complete (past the last
    /// event when the last writes were declined ones, which have none).
    newest: Arc<AtomicU64>,
    thread: JoinHandle<Result<Seen, String>>,
}

/// What the watcher's thread saw.
enum Seen {
    /// Every change until it was stopped.
    Whole(Vec<WatchEvent>),
    /// The tail it moved to keeps no history as old as its next change
    /// (a server that joined by a state transfer keeps none from before
    /// it): a known limit of watches (issue 22), so the watcher is not
    /// judged.
    Compacted(String),
}

impl Watcher {
    /// Starts watching every key (`k...`) from sequence 1.
    pub fn start(workload: &Workload) -> Watcher {
        let (stop, newest) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (stopping, seen, workload) = (Arc::clone(&stop), Arc::clone(&newest), workload.clone());
        let thread = thread::spawn(move || {
            // One client for the whole run: its ZooKeeper session reconnects
            // by itself, where a new client per attempt would leave a
            // session behind on a ZooKeeper it cannot close it on.
            let mut client = Client::chain(&workload.zk_hosts, &workload.chain_path, workload.client.clone())
                .map_err(|error| error.to_string())?;
            let mut events = Vec::new();
            // The event count at the last failure and the pause after it:
            // failures in a row with nothing seen between them are logged
            // once, and paced ever more slowly.
            let mut failed = (None, RESUME_PAUSE_FIRST);
            loop {
                let error = match watch_once(&mut client, &mut events, &seen, &stopping) {
                    Err(Ended::Stopped) => return Ok(Seen::Whole(events)),
                    Err(Ended::Failed(ClientError::Server { code: ErrorCode::ERR_COMPACTED, message })) => {
                        return Ok(Seen::Compacted(message));
                    }
                    Err(Ended::Failed(error)) => error,
                    Ok(()) => return Err("the watcher ended without an error".into()),
                };
                if stopping.load(Ordering::SeqCst) || !outlasted(&error) {
                    return Err(format!("the watcher ended: {error}"));
                }
                failed = match failed {
                    (Some(count), pause) if count == events.len() => {
                        (Some(count), (pause * 2).min(RESUME_PAUSE_MAX))
                    }
                    _ => {
                        warn!("the watcher lost the chain ({error}); resuming after {} events", events.len());
                        (Some(events.len()), RESUME_PAUSE_FIRST)
                    }
                };
                thread::sleep(failed.1);
            }
        });
        Watcher { stop, newest, thread }
    }

    /// Stops the watcher once it has seen the chain's commit point (asked
    /// of the tail now), and returns what it saw; `None` when a tail
    /// without the history it needed cut it short (see [`Seen::Compacted`]).
    pub fn finish(self, workload: &Workload) -> Result<Option<Vec<WatchEvent>>, String> {
        let committed = Client::chain(&workload.zk_hosts, &workload.chain_path, workload.client.clone())
            .and_then(|mut client| client.stats())
            .map(|statistics| statistics.committed)
            .map_err(|error| format!("cannot ask the tail its commit point: {error}"));
        // Every write of the run is to a watched key, so the watcher has
        // caught up when its stream is complete through the commit point; it stops
        // after its next frame (at most a heartbeat away).
        let deadline = Instant::now() + CATCH_UP;
        let target = committed.as_ref().copied().unwrap_or(0);
        while self.newest.load(Ordering::SeqCst) < target
            && !self.thread.is_finished()
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(50));
        }
        self.stop.store(true, Ordering::SeqCst);
        while !self.thread.is_finished() && Instant::now() < deadline + Duration::from_secs(5) {
            thread::sleep(Duration::from_millis(50));
        }
        if !self.thread.is_finished() {
            return Err(format!("the watcher did not stop within {CATCH_UP:?}"));
        }
        let events = match self.thread.join().map_err(|_| "the watcher thread panicked".to_owned())?? {
            Seen::Whole(events) => events,
            Seen::Compacted(message) => {
                warn!("the watcher was cut short and is not judged: {message} (a known limit: issue 22)");
                return Ok(None);
            }
        };
        let committed = committed?;
        let through = self.newest.load(Ordering::SeqCst);
        if through < committed {
            return Err(format!("the watcher saw writes up to {through} only; {committed} are committed"));
        }
        Ok(Some(events))
    }
}

/// Pauses between attempts to resume the watch: the first, doubling up to
/// the longest while attempts fail with nothing seen between them.
const RESUME_PAUSE_FIRST: Duration = Duration::from_millis(100);
const RESUME_PAUSE_MAX: Duration = Duration::from_secs(1);

/// One watch of every key from the sequence after the last event seen
/// (from 1 at first), until it ends; its events are appended to `events`.
fn watch_once(
    client: &mut Client,
    events: &mut Vec<WatchEvent>,
    seen: &AtomicU64,
    stopping: &AtomicBool,
) -> Result<(), Ended> {
    let from = events.last().map_or(1, |event| event.sequence + 1);
    let watched = WatchRequest { keys: "k".into(), prefix: true, from: Some(from) };
    client.watch(&watched, |new: &[WatchEvent], through| {
        events.extend_from_slice(new);
        seen.fetch_max(through, Ordering::SeqCst);
        if stopping.load(Ordering::SeqCst) { Err(Ended::Stopped) } else { Ok(()) }
    })
}

/// Whether the watcher resumes after `error` while the run goes on: every
/// failure to reach ZooKeeper or a server outlasts the client's timeout
/// when the run's nemesis stops ZooKeeper, and "no chain, ever" is what a
/// ZooKeeper that accepts connections but does not answer yet (starting
/// up again) looks like to the client's probe. A run's faults never fail
/// the watcher; an answer that makes no sense does.
fn outlasted(error: &ClientError) -> bool {
    is_retryable(error) || matches!(error, ClientError::NoChainEver(_))
}

/// What is wrong with what the watcher saw, if anything, given the run's
/// `records` (final reads included) and the key count.
pub fn check(events: &[WatchEvent], records: &[Record], keys: u64) -> Option<String> {
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut state: BTreeMap<&str, Option<u64>> = BTreeMap::new();
    let mut seen_at: HashMap<(&str, u64), u64> = HashMap::new();
    for event in events {
        let key = event.key.as_str();
        if last.get(key).is_some_and(|previous| *previous >= event.sequence) {
            return Some(format!("key {key}: change {} seen after change {}", event.sequence, last[key]));
        }
        last.insert(key, event.sequence);
        let value = (event.kind.enum_value() == Ok(Kind::PUT)).then(|| decode_value(&event.value));
        state.insert(key, value);
        if let Some(value) = value.filter(|value| put_shaped(*value))
            && seen_at.insert((key, value), event.sequence).is_some()
        {
            return Some(format!("key {key}: value {value} seen twice (values are written once)"));
        }
    }
    let sequence_of = |record: &Record| {
        let value = record.value?;
        let written = record.op == OpKind::Put || (record.op == OpKind::Cas && record.swapped == Some(true));
        (written && record.return_us.is_some()).then(|| seen_at.get(&(record.key.as_str(), value)).copied())
    };
    let mut acknowledged: Vec<(&Record, u64)> = Vec::new();
    for record in records {
        match sequence_of(record) {
            Some(Some(sequence)) => acknowledged.push((record, sequence)),
            Some(None) => {
                return Some(format!(
                    "key {}: acknowledged write of {:?} never seen",
                    record.key, record.value
                ));
            }
            None => {}
        }
    }
    // In sequence order, no write may have been called after a write that
    // comes later returned.
    acknowledged.sort_by_key(|(record, sequence)| (record.key.as_str(), *sequence));
    let mut latest_call: Option<&Record> = None;
    for (index, (record, _)) in acknowledged.iter().enumerate() {
        if index > 0 && acknowledged[index - 1].0.key != record.key {
            latest_call = None;
        }
        if let Some(called) = latest_call
            && called.call_us > record.return_us.unwrap_or(u64::MAX)
        {
            return Some(format!(
                "key {}: {:?} was written after {:?} returned, but seen before it",
                record.key, called.value, record.value
            ));
        }
        if latest_call.is_none_or(|called| record.call_us > called.call_us) {
            latest_call = Some(record);
        }
    }
    final_state_problem(&state, records, keys)
}

/// Whether `value` has the shape of a put's or cas's value in the
/// workload (`client << 40 | count << 10`, unique in the run), which an
/// increment's result has only after a thousand increments in a row.
fn put_shaped(value: u64) -> bool {
    value >= 1 << 40 && value.is_multiple_of(1024)
}

/// Whether the events, replayed, leave each key as the run's last read of
/// it (the final reads, after every write) found it.
fn final_state_problem(state: &BTreeMap<&str, Option<u64>>, records: &[Record], keys: u64) -> Option<String> {
    for key in (0..keys).map(|key| format!("k{key}")) {
        let Some(read) = records
            .iter()
            .rev()
            .find(|record| record.key == key && record.op == OpKind::Get && record.return_us.is_some())
        else {
            continue;
        };
        let replayed = state.get(key.as_str()).copied().flatten();
        if replayed != read.observed {
            return Some(format!(
                "key {key}: the watcher's changes leave {replayed:?}, the final read found {:?}",
                read.observed
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: u64, key: &str, value: Option<u64>) -> WatchEvent {
        WatchEvent {
            sequence,
            key: key.into(),
            kind: if value.is_some() { Kind::PUT } else { Kind::DELETE }.into(),
            value: value.map(|value| value.to_string().into_bytes()).unwrap_or_default(),
            ..WatchEvent::new()
        }
    }

    fn record(op: OpKind, value: Option<u64>, call_us: u64, return_us: Option<u64>) -> Record {
        Record { value, observed: value, return_us, ..Record::called(1, "k0".into(), op, call_us) }
    }

    /// A value as the workload's client 1 writes its `count`th.
    fn put_value(count: u64) -> u64 {
        1 << 40 | count << 10
    }

    /// A ZooKeeper that accepts connections but does not answer (as one
    /// starting up again after the zk nemesis stopped it, or a paused one)
    /// makes the client's probe say "no reply within 1000 ms", a chain
    /// never to be found: the watcher keeps trying for as long as the run
    /// lasts, and reports the last failure only when stopped.
    #[test]
    fn the_watcher_outlasts_a_zookeeper_that_does_not_answer() {
        // Never accepted: the kernel completes connects, nobody answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let workload = Workload {
            zk_hosts: silent.local_addr().unwrap().to_string(),
            chain_path: "/chain".into(),
            keys: 1,
            think_max: Duration::ZERO,
            client: crate::client::connection::ClientOptions {
                timeout: Duration::from_secs(5),
                ..Default::default()
            },
            read_anywhere: None,
        };
        let watcher = Watcher::start(&workload);
        thread::sleep(Duration::from_millis(3500));
        assert!(!watcher.thread.is_finished(), "the watcher gave up while the run went on");
        let ended = watcher.finish(&workload).expect_err("it saw nothing");
        assert!(ended.contains("the watcher ended") && ended.contains("no reply"), "{ended}");
    }

    #[test]
    fn every_acknowledged_write_once_in_order_and_the_final_state() {
        let events =
            [event(1, "k0", Some(put_value(1))), event(2, "k0", None), event(3, "k0", Some(put_value(2)))];
        let records = [
            record(OpKind::Put, Some(put_value(1)), 0, Some(5)),
            record(OpKind::Del, None, 6, Some(8)),
            record(OpKind::Put, Some(put_value(2)), 9, Some(12)),
            record(OpKind::Get, Some(put_value(2)), 20, Some(21)),
        ];
        assert_eq!(check(&events, &records, 1), None);
        let missing = check(&events[..2], &records, 1).expect("a lost write");
        assert!(missing.contains("never seen"), "{missing}");
        let twice = [events[0].clone(), events[1].clone(), event(3, "k0", Some(put_value(1)))];
        assert!(check(&twice, &records[..1], 1).expect("a repeat").contains("seen twice"));
        let backwards = [event(2, "k0", Some(put_value(1))), event(1, "k0", Some(put_value(2)))];
        assert!(check(&backwards, &[], 1).expect("out of order").contains("seen after"));
        let reordered = [event(1, "k0", Some(put_value(2))), event(3, "k0", Some(put_value(1)))];
        let real_time = check(&reordered, &[records[0].clone(), records[2].clone()], 1).expect("reordered");
        assert!(real_time.contains("seen before it"), "{real_time}");
        let stale = check(&events[..2], &[records[3].clone()], 1).expect("a final state");
        assert!(stale.contains(&format!("final read found Some({})", put_value(2))), "{stale}");
    }
}
