//! Watching a key or a prefix: one connection to the tail carries a stream
//! of committed changes (OP_WATCH). In chain mode, when the stream ends
//! because the tail changed or went away, the client reads the chain from
//! ZooKeeper again and resumes at the new tail from the sequence after the
//! last one the server said it looked at, so no change is missed and none
//! is seen twice. Errors that a new tail cannot cure (the history is gone,
//! the watcher was too slow) end the watch.

use std::time::Duration;

use log::debug;

use super::connection::{ClientOptions, Connection, check_response};
use super::error::ClientError;
use super::retry::{Backoff, Deadline, is_retryable};
use super::{Client, Target};
use crate::proto::{Opcode, Request, WatchEvent};

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRequest {
    /// The key, or with `prefix` the start of every key watched.
    pub keys: String,
    pub prefix: bool,
    /// The first sequence to see; `None`: the next write committed.
    pub from: Option<u64>,
}

/// Why a watch that its caller stops ended: an error type for
/// [`Client::watch`] whose callback says "stop" (`Stopped`).
#[derive(Debug)]
pub enum Ended {
    /// The caller's callback asked to stop.
    Stopped,
    Failed(ClientError),
}

impl From<ClientError> for Ended {
    fn from(error: ClientError) -> Ended {
        Ended::Failed(error)
    }
}

/// Why a stream on one connection ended.
enum StreamEnd<E> {
    /// The client's callback failed: the watch ends with its error.
    Stopped(E),
    /// The stream failed: perhaps another tail can go on.
    Failed(ClientError),
}

impl Client {
    /// Watches until `on_events` fails, or the stream fails in a way that a
    /// new look at the chain cannot cure. `on_events` gets every frame's
    /// events (perhaps none: a heartbeat about every second, so a caller
    /// can notice it should stop), each exactly once, in sequence order,
    /// and the sequence through which the stream is complete (a declined
    /// write takes a sequence number and has no event).
    /// In chain mode, a lost tail is looked for again for at most the
    /// client's timeout.
    pub fn watch<E: From<ClientError>>(
        &mut self,
        watched: &WatchRequest,
        mut on_events: impl FnMut(&[WatchEvent], u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut next = watched.from;
        let mut backoff = Backoff::default();
        let mut deadline = Deadline::starting_now(self.options.timeout);
        loop {
            let started = deadline.started;
            let error = match self.watch_tail(watched, &mut next, &mut on_events, &mut deadline) {
                StreamEnd::Stopped(error) => return Err(error),
                StreamEnd::Failed(error) => error,
            };
            let streamed = deadline.started != started;
            if streamed {
                backoff = Backoff::default();
            }
            let Target::Chain(router) = &mut self.target else {
                return Err(broken_off(error, streamed, next).into());
            };
            if !is_retryable(&error) {
                return Err(error.into());
            }
            let Some(pause) = backoff.pause(deadline.remaining()) else {
                return Err(error.into());
            };
            debug!("watch stream ended ({error}); resuming from {next:?} in {pause:?}");
            if let Ok(chain) = router.target_for(key_of(watched), deadline.remaining()) {
                chain.note_retry(&error);
            }
            std::thread::sleep(pause);
        }
    }

    /// One stream from the current tail (or the one server). Once the
    /// stream has started, `deadline` and the pauses start afresh.
    fn watch_tail<E>(
        &mut self,
        watched: &WatchRequest,
        next: &mut Option<u64>,
        on_events: &mut impl FnMut(&[WatchEvent], u64) -> Result<(), E>,
        deadline: &mut Deadline,
    ) -> StreamEnd<E> {
        let failed = StreamEnd::Failed;
        let address = match &mut self.target {
            Target::Server { endpoint, .. } => endpoint.address().to_owned(),
            Target::Chain(router) => {
                match router.target_for(key_of(watched), deadline.remaining()).and_then(|chain| {
                    chain.fresh_view(deadline.remaining()).map(|view| (view, chain.name().to_owned()))
                }) {
                    Ok((view, name)) => match view.tail() {
                        Some(tail) => tail.address.clone(),
                        None => {
                            return failed(ClientError::NoChain(format!(
                                "no chain at {name}: no ready server"
                            )));
                        }
                    },
                    Err(error) => return failed(error),
                }
            }
        };
        let options = ClientOptions {
            timeout: self.options.timeout.max(Duration::from_secs(2)),
            ..self.options.clone()
        };
        let mut connection = match Connection::open(&address, &options) {
            Ok(connection) => connection,
            Err(error) => return failed(error),
        };
        let request = self.watch_request(watched, *next);
        if let Err(error) = connection.send(&request) {
            return failed(error);
        }
        loop {
            let frame = match connection.receive().and_then(|response| check_response(&request, response)) {
                Ok(frame) => frame,
                Err(error) => return failed(error),
            };
            *deadline = Deadline::starting_now(self.options.timeout);
            let expected = next.unwrap_or(0);
            let fresh: Vec<WatchEvent> =
                frame.events.into_iter().filter(|event| event.sequence >= expected).collect();
            *next = Some(frame.watched_through + 1);
            if let Err(error) = on_events(&fresh, frame.watched_through) {
                return StreamEnd::Stopped(error);
            }
        }
    }

    /// The OP_WATCH request, with this client's ids.
    fn watch_request(&mut self, watched: &WatchRequest, from: Option<u64>) -> Request {
        let mut request = Request::new();
        request.opcode = Opcode::OP_WATCH.into();
        request.client_id = self.client_id;
        request.request_id = self.next_request_id;
        self.next_request_id += 1;
        if watched.prefix {
            request.watch_prefix = true;
            request.prefix = watched.keys.clone();
        } else {
            request.key = Some(watched.keys.clone());
        }
        request.from_sequence = from;
        request
    }
}

/// One server: a stream that broke off is not resumed, as a server
/// restarted without a data directory numbers its writes from 1 again and
/// resuming could skip writes unseen. A server closes a watcher that does
/// not read a frame within its `--write-timeout-ms` with no room left for
/// an error frame, so the error says that and where to resume.
fn broken_off(error: ClientError, streamed: bool, next: Option<u64>) -> ClientError {
    match (error, next) {
        (ClientError::Unreachable(why), Some(next)) if streamed => ClientError::Unreachable(format!(
            "the watch stream broke off after sequence {} ({why}); the server closes a watcher that \
             does not read within its --write-timeout-ms, or it went away; resume with --from {next}",
            next - 1
        )),
        (error, _) => error,
    }
}

/// The key a watch is about; `None` for a prefix (every chain's keys).
fn key_of(watched: &WatchRequest) -> Option<&str> {
    (!watched.prefix).then_some(watched.keys.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ErrorCode;

    #[test]
    fn only_a_stream_that_had_begun_is_said_to_have_broken_off() {
        let refused = ClientError::Unreachable("connection refused".into());
        assert_eq!(broken_off(refused.clone(), false, Some(7)), refused, "never streamed: as it was");
        let compacted = ClientError::Server { code: ErrorCode::ERR_COMPACTED, message: "gone".into() };
        assert_eq!(broken_off(compacted.clone(), true, Some(7)), compacted, "the server said why");
        let ClientError::Unreachable(message) = broken_off(refused, true, Some(7)) else {
            panic!("still unreachable");
        };
        assert!(message.contains("after sequence 6 (connection refused)"), "{message}");
        assert!(message.ends_with("resume with --from 7"), "{message}");
    }
}
