//! Watch streams: a connection whose request is OP_WATCH turns into a
//! stream of the committed changes of one key or prefix, read from the
//! replica's watch history (see [`crate::replica::history`]) by the
//! connection's own thread.
//!
//! Only a server that may answer reads serves one, and each look at the
//! history is made under the same guard as a read (`read_guard`): a server
//! that stops being the tail, is fenced or loses its lease ends the stream
//! with ERR_WRONG_ROLE, and the client resumes at the new tail from the last
//! sequence it was sent. The stream reads the shared history; it copies
//! nothing per watcher beyond the frame it is sending, and a commit never
//! waits for it. A watcher more than `--watch-lag-max` writes behind the
//! commit point (writes committed since it started) is cut off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use log::{debug, info};

use super::service::{Service, error_response};
use crate::chain::Refusal;
use crate::limits::{WATCH_FRAME_EVENT_BYTES, WATCH_HEARTBEAT, WATCH_READ_WRITES_MAX};
use crate::proto::{ErrorCode, Opcode, Request, Response, WatchEvent};
use crate::replica::history::Read;
use crate::wire::FrameError;

/// The keys a watch asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Keys {
    One(String),
    Prefix(String),
}

impl Keys {
    fn wants(&self, key: &str) -> bool {
        match self {
            Keys::One(one) => key == one,
            Keys::Prefix(prefix) => key.starts_with(prefix.as_str()),
        }
    }
}

/// Sends one response frame on the connection.
pub(super) type Send<'a> = dyn FnMut(&Response) -> Result<(), FrameError> + 'a;

/// Serves a watch request until the stream ends: an error response says
/// why (wrong role, history gone, too slow, shutting down), or the client
/// went away. Errors are only the connection's.
pub(super) fn serve(
    request: &Request,
    service: &Service,
    stopping: &AtomicBool,
    send: &mut Send<'_>,
) -> Result<(), FrameError> {
    let request_id = request.request_id;
    let refuse = |send: &mut Send<'_>, refusal: Refusal| {
        service.stats.record_error(refusal.code);
        send(&error_response(request_id, refusal.code, refusal.message))
    };
    let keys = match watched_keys(request, service) {
        Ok(keys) => keys,
        Err(refusal) => return refuse(send, refusal),
    };
    let history = &service.replica.history;
    if !history.keeps_writes() {
        let refusal = Refusal::new(
            ErrorCode::ERR_UNAVAILABLE,
            "this server keeps no watch history (--watch-history-writes 0)",
        );
        return refuse(send, refusal);
    }
    let _watching = history.watch();
    let start = match service.replica.read_guard(|_| history.position()) {
        Ok(start) => start,
        Err(refusal) => return refuse(send, refusal),
    };
    let from = request.from_sequence.unwrap_or(start.committed + 1).max(1);
    if from < start.oldest {
        return refuse(send, compacted(from, start.oldest));
    }
    debug!("watch of {keys:?} from {from}");
    send(&frame(request_id, Vec::new(), from - 1))?;
    let stream = Stream { service, keys, request_id, era: start.era, started_at: start.committed };
    let ended = stream.run(from, stopping, send);
    if matches!(ended, Err(FrameError::Io(_))) {
        // Not read within --write-timeout-ms, or gone: either way done.
        service.stats.record_watcher_cut_off();
        info!("closed a watch stream whose client stopped reading: {ended:?}");
    }
    ended
}

/// An open stream.
struct Stream<'a> {
    service: &'a Service,
    keys: Keys,
    request_id: u64,
    /// The history's era at the start: a history that starts over ends it.
    era: u64,
    /// The commit point when it started: the backlog before it is not lag.
    started_at: u64,
}

impl Stream<'_> {
    /// Sends the events of committed writes from `next` on, as they commit,
    /// until the stream ends.
    fn run(&self, mut next: u64, stopping: &AtomicBool, send: &mut Send<'_>) -> Result<(), FrameError> {
        let (service, history) = (self.service, &self.service.replica.history);
        let mut last_sent = Instant::now();
        loop {
            if stopping.load(Ordering::SeqCst) {
                return self.end(send, Refusal::new(ErrorCode::ERR_SHUTTING_DOWN, "server is shutting down"));
            }
            history.wait(self.era, next - 1, WATCH_HEARTBEAT.saturating_sub(last_sent.elapsed()));
            // Its queue: what was committed since it started or was last
            // sent, and is not sent yet.
            let lag = history.position().committed.saturating_sub((next - 1).max(self.started_at));
            if lag > service.limits.watch_lag_max {
                return self.cut_off(send, too_slow(next, lag, service.limits.watch_lag_max));
            }
            let wanted = |key: &str| self.keys.wants(key);
            let read = service.replica.read_guard(|_| {
                history.read(self.era, next, &wanted, WATCH_READ_WRITES_MAX, WATCH_FRAME_EVENT_BYTES)
            });
            let (events, through) = match read {
                Err(refusal) => return self.end(send, refusal),
                Ok(Read::StartedOver) => return self.end(send, started_over(next)),
                Ok(Read::Compacted { oldest }) => {
                    return self.cut_off(send, too_slow_compacted(next, oldest));
                }
                Ok(Read::Events { events, through }) => (events, through),
            };
            let heartbeat_due = last_sent.elapsed() >= WATCH_HEARTBEAT;
            if events.is_empty() && !heartbeat_due {
                next = through + 1;
                continue;
            }
            service.stats.record_watch_events(events.len());
            send(&frame(self.request_id, events, through))?;
            last_sent = Instant::now();
            next = through + 1;
        }
    }

    /// Ends the stream with an error response.
    fn end(&self, send: &mut Send<'_>, refusal: Refusal) -> Result<(), FrameError> {
        self.service.stats.record_error(refusal.code);
        send(&error_response(self.request_id, refusal.code, refusal.message))
    }

    fn cut_off(&self, send: &mut Send<'_>, refusal: Refusal) -> Result<(), FrameError> {
        self.service.stats.record_watcher_cut_off();
        info!("cut off a watcher: {}", refusal.message);
        self.end(send, refusal)
    }
}

/// The keys `request` watches: a valid key, or a prefix (any, even empty).
fn watched_keys(request: &Request, service: &Service) -> Result<Keys, Refusal> {
    if !request.watch_prefix {
        return service.checked_key(request).map(|key| Keys::One(key.to_owned()));
    }
    if request.prefix.len() > service.limits.key_bytes_max {
        return Err(Refusal::new(
            ErrorCode::ERR_TOO_LARGE,
            format!(
                "prefix of {} bytes is over the maximum key of {}",
                request.prefix.len(),
                service.limits.key_bytes_max
            ),
        ));
    }
    Ok(Keys::Prefix(request.prefix.clone()))
}

/// One frame of the stream.
fn frame(request_id: u64, events: Vec<WatchEvent>, through: u64) -> Response {
    let mut response = Response::new();
    response.opcode = Opcode::OP_WATCH.into();
    response.request_id = request_id;
    response.events = events;
    response.watched_through = through;
    response
}

fn compacted(from: u64, oldest: u64) -> Refusal {
    Refusal::new(
        ErrorCode::ERR_COMPACTED,
        format!("history compacted: cannot watch from {from}, oldest available {oldest}"),
    )
}

fn too_slow_compacted(next: u64, oldest: u64) -> Refusal {
    Refusal::new(
        ErrorCode::ERR_WATCH_TOO_SLOW,
        format!(
            "watcher cut off: it fell behind the history (next {next}, oldest available {oldest}); \
             resume from {oldest} to skip what is gone"
        ),
    )
}

fn too_slow(next: u64, lag: u64, max: u64) -> Refusal {
    Refusal::new(
        ErrorCode::ERR_WATCH_TOO_SLOW,
        format!(
            "watcher cut off: {lag} committed writes behind, over the server's --watch-lag-max {max}; \
             resume with --from {next}"
        ),
    )
}

fn started_over(next: u64) -> Refusal {
    Refusal::new(
        ErrorCode::ERR_WRONG_ROLE,
        format!("this server left the chain and its history started over; look again and resume from {next}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::proto::watch_event::Kind;
    use crate::replica::history::HistoryLimits;
    use crate::replica::{Replica, ReplicationLimits};
    use std::sync::Arc;

    fn service_with(lag_max: u64, history_writes: usize) -> Service {
        let (ready_sender, _) = crossbeam_channel::bounded(1);
        let history = HistoryLimits { writes_max: history_writes, ..HistoryLimits::default() };
        let replica = Replica::new(
            4,
            true,
            ReplicationLimits { history, ..ReplicationLimits::default() },
            ready_sender,
        );
        Service::new(Arc::new(replica), Limits { watch_lag_max: lag_max, ..Limits::default() })
    }

    fn service(lag_max: u64) -> Service {
        service_with(lag_max, 100)
    }

    fn put(service: &Service, key: &str, id: u64) {
        let mut request = Request::new();
        request.opcode = Opcode::OP_PUT.into();
        (request.client_id, request.request_id) = (1, id);
        request.key = Some(key.into());
        request.value = Some(b"v".to_vec());
        let _ = service.handle(request);
    }

    fn watch(key: Option<&str>, prefix: Option<&str>, from: Option<u64>) -> Request {
        let mut request = Request::new();
        request.opcode = Opcode::OP_WATCH.into();
        request.request_id = 3;
        request.key = key.map(str::to_owned);
        request.watch_prefix = prefix.is_some();
        request.prefix = prefix.unwrap_or_default().to_owned();
        request.from_sequence = from;
        request
    }

    /// Serves `request` and collects its frames; the stream is stopped
    /// (shutdown) once `frames_max` frames were sent.
    fn frames(service: &Service, request: &Request, frames_max: usize) -> Vec<Response> {
        let stopping = AtomicBool::new(false);
        let mut sent = Vec::new();
        serve(request, service, &stopping, &mut |response: &Response| {
            sent.push(response.clone());
            if sent.len() >= frames_max {
                stopping.store(true, Ordering::SeqCst);
            }
            Ok(())
        })
        .expect("no connection errors");
        sent
    }

    #[test]
    fn a_prefix_watch_from_the_start_sees_its_keys_in_order_then_stops_cleanly() {
        let service = service(1000);
        for (id, key) in ["p/a", "q/x", "p/b"].into_iter().enumerate() {
            put(&service, key, id as u64 + 1);
        }
        let sent = frames(&service, &watch(None, Some("p/"), Some(1)), 2);
        assert_eq!(sent[0].watched_through, 0, "the first frame says where it starts");
        let keys: Vec<_> = sent[1].events.iter().map(|event| (event.sequence, event.key.as_str())).collect();
        assert_eq!(keys, vec![(1, "p/a"), (3, "p/b")]);
        assert_eq!(sent[1].events[0].kind.enum_value(), Ok(Kind::PUT));
        assert_eq!(sent[1].watched_through, 3);
        let last = sent.last().unwrap();
        assert_eq!(last.error_code.enum_value(), Ok(ErrorCode::ERR_SHUTTING_DOWN));
    }

    #[test]
    fn refusals_say_why() {
        let service = service_with(1000, 2);
        for id in 1..=3 {
            put(&service, "k", id);
        }
        let last = |request: &Request| frames(&service, request, 1).pop().unwrap();
        assert_eq!(last(&watch(None, None, None)).error_code.enum_value(), Ok(ErrorCode::ERR_MISSING_FIELD));
        let compacted = last(&watch(Some("k"), None, Some(1)));
        assert_eq!(compacted.error_code.enum_value(), Ok(ErrorCode::ERR_COMPACTED));
        assert!(compacted.error_message.ends_with("oldest available 2"), "{}", compacted.error_message);
        let served = last(&watch(Some("k"), None, Some(2)));
        assert_eq!(served.error_code.enum_value(), Ok(ErrorCode::ERR_SHUTTING_DOWN), "served until stopped");
        let off = service_with(1000, 0);
        let refused = frames(&off, &watch(Some("k"), None, None), 1).pop().unwrap();
        assert_eq!(refused.error_code.enum_value(), Ok(ErrorCode::ERR_UNAVAILABLE));
    }

    #[test]
    fn a_watcher_behind_by_more_than_the_limit_is_cut_off() {
        let service = service(2);
        let stopping = AtomicBool::new(false);
        let mut sent = Vec::new();
        let request = watch(Some("k"), None, None);
        serve(&request, &service, &stopping, &mut |response: &Response| {
            sent.push(response.clone());
            if sent.len() == 1 {
                // While the first frame is "sent", three writes commit.
                for id in 1..=3 {
                    put(&service, "other", id);
                }
            }
            Ok(())
        })
        .unwrap();
        let last = sent.last().unwrap();
        assert_eq!(last.error_code.enum_value(), Ok(ErrorCode::ERR_WATCH_TOO_SLOW), "{}", last.error_message);
        assert!(last.error_message.contains("resume with --from 1"), "{}", last.error_message);
        assert_eq!(service.statistics().watchers_cut_off, 1);
        assert_eq!(service.statistics().watchers, 0, "the watcher is no longer counted");
    }
}
