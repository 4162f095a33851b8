//! Answering a client write from a thread other than its connection's.
//!
//! At a chain's head a write is answered only once the tail has it. Its
//! connection thread hands the reply over (as a callback on the commit,
//! see `commits`) and goes back to reading the next request; the thread
//! that advances the commit point (the replication ack reader, usually),
//! or another connection thread helping it, sends the reply on the
//! client's socket. The connection thread sleeps once per request instead
//! of twice.
//!
//! The threads take turns on the socket so replies leave in request order:
//! a reply owed by another thread is claimed by its sender before any later
//! one is registered, replies settled while another thread is sending are
//! queued behind it, and the connection thread writes nothing of its own
//! while any of that is under way. The settling thread serves many clients,
//! so it never blocks on one of them: it sends without waiting, and replies
//! that do not fit in the socket's buffer at once (a client that is not
//! reading) are finished by a thread of their own, which may block on that
//! client alone.

use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use log::{debug, warn};
use parking_lot::Mutex;

use super::service::PendingWrite;
use super::stats::ServerStats;
use crate::proto::Response;
use crate::replica::Replica;
use crate::replica::commits::CommitOutcome;
use crate::secure::tls::TlsSession;
use crate::wire::{FrameWriter, encode_frame};

/// One client connection's socket as seen by the threads that answer its
/// committed writes.
pub struct ReplyPort {
    stream: Arc<TcpStream>,
    /// The connection's TLS session: replies are sealed through it, in
    /// turn order (see `send`).
    tls: Option<Arc<TlsSession>>,
    frame_bytes_max: usize,
    /// Whose turn it is; held only to read and change the flags, never
    /// during I/O.
    turns: Mutex<Turns>,
    /// The connection thread, woken when a turn it waits for ends.
    connection: Thread,
    stats: Arc<ServerStats>,
}

#[derive(Default)]
struct Turns {
    /// A reply waits for its commit and no sender has claimed it yet.
    owed: bool,
    /// A thread other than the connection's is writing replies.
    sending: bool,
    /// Reply frames settled while `sending`; that sender writes them next.
    queued: Vec<u8>,
    /// The connection thread is parked until a turn ends.
    waiting: bool,
}

/// What the connection thread is about to do, and so what it must wait for.
#[derive(Clone, Copy)]
enum Intent {
    /// Leave another reply to a commit: the previous one must be claimed.
    Defer,
    /// Write a reply itself: every earlier one must be out.
    Write,
}

impl Turns {
    fn allows(&self, intent: Intent) -> bool {
        match intent {
            Intent::Defer => !self.owed,
            Intent::Write => !self.owed && !self.sending,
        }
    }
}

impl ReplyPort {
    /// The port of the connection `writer` writes to; called on the
    /// connection's own thread.
    pub fn new(writer: &FrameWriter, stats: Arc<ServerStats>) -> Arc<ReplyPort> {
        Arc::new(ReplyPort {
            stream: writer.shared_stream(),
            tls: writer.tls(),
            frame_bytes_max: writer.frame_bytes_max(),
            turns: Mutex::new(Turns::default()),
            connection: thread::current(),
            stats,
        })
    }

    /// Leaves `pending`'s reply to whoever settles its commit, once the
    /// previous owed reply (if any) has been claimed, waiting at most
    /// `limit`; returns false if it was not (the connection must close).
    pub fn reply_after_commit(
        self: &Arc<Self>,
        pending: PendingWrite,
        replica: &Replica,
        limit: Duration,
    ) -> bool {
        if !self.wait_for(Intent::Defer, limit) {
            return false;
        }
        self.turns.lock().owed = true;
        let port = Arc::clone(self);
        let receipt = pending.receipt.clone();
        replica.await_commit(
            &receipt,
            Box::new(move |outcome: CommitOutcome| {
                let response = pending.reply(outcome, &port.stats);
                port.send(&response);
            }),
        );
        true
    }

    /// Blocks until every reply owed by other threads is out, so the
    /// connection thread may write; at most `limit` (then returns false: the
    /// connection cannot write in order and must close).
    pub fn wait_until_sent(&self, limit: Duration) -> bool {
        self.wait_for(Intent::Write, limit)
    }

    fn wait_for(&self, intent: Intent, limit: Duration) -> bool {
        let mut deadline = None;
        loop {
            {
                let mut turns = self.turns.lock();
                if turns.allows(intent) {
                    turns.waiting = false;
                    return true;
                }
                turns.waiting = true;
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + limit);
            let now = Instant::now();
            if now >= deadline {
                self.turns.lock().waiting = false;
                return false;
            }
            // An unpark that came first is remembered: no wake-up is lost.
            thread::park_timeout(deadline - now);
        }
    }

    /// Sends `response` as one frame without blocking this thread (behind
    /// any reply another thread is sending).
    fn send(self: Arc<Self>, response: &Response) {
        let mut frame = Vec::new();
        if let Err(error) = encode_frame(response, self.frame_bytes_max, &mut frame) {
            // A write's reply is a few bytes; this cannot happen with any
            // usable frame limit, but the client must not wait forever.
            warn!("cannot encode a write's reply ({error}); closing the connection");
            self.change_turns(|turns| turns.owed = false);
            self.close_turn();
            return;
        }
        let claimed = self.change_turns(|turns| {
            turns.owed = false;
            // TLS records must leave in the order they were sealed: seal
            // under the turns' lock, where the order of sending is decided.
            let frame = match &self.tls {
                None => frame,
                Some(session) => session.seal(&frame)?,
            };
            if turns.sending {
                turns.queued.extend_from_slice(&frame);
                Ok(None)
            } else {
                turns.sending = true;
                Ok::<_, io::Error>(Some(frame))
            }
        });
        match claimed {
            Ok(Some(frame)) => self.write_turn(frame, false),
            Ok(None) => {}
            Err(error) => {
                debug!("cannot seal a reply ({error}); closing the connection");
                self.close_turn();
            }
        }
    }

    /// Writes `frame`, then whatever was queued meanwhile, and ends the
    /// turn. Without `blocking`, what does not fit at once is left to a new
    /// thread that may block (up to the socket's write timeout) on this
    /// client only.
    fn write_turn(self: Arc<Self>, mut frame: Vec<u8>, blocking: bool) {
        loop {
            let written = if blocking {
                (&*self.stream).write_all(&frame).map(|()| frame.len())
            } else {
                send_without_waiting(&self.stream, &frame)
            };
            match written {
                Ok(count) if count == frame.len() => {
                    let queued = self.change_turns(|turns| {
                        let queued = std::mem::take(&mut turns.queued);
                        turns.sending = !queued.is_empty();
                        queued
                    });
                    if queued.is_empty() {
                        return;
                    }
                    frame = queued;
                }
                // The socket took part of it: the rest will not fit now.
                Ok(count) => {
                    frame.drain(..count);
                    return self.finish_in_background(frame);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock && !blocking => {
                    return self.finish_in_background(frame);
                }
                Err(error) => {
                    debug!("replies not sent ({error}); closing the connection");
                    return self.close_turn();
                }
            }
        }
    }

    fn finish_in_background(self: Arc<Self>, frame: Vec<u8>) {
        let port = Arc::clone(&self);
        let spawned =
            thread::Builder::new().name("reply-finish".into()).spawn(move || port.write_turn(frame, true));
        if let Err(error) = spawned {
            warn!("cannot start a thread to finish a reply ({error}); closing the connection");
            self.close_turn();
        }
    }

    /// Replies that cannot be delivered whole must not be followed by
    /// others: the connection is closed (the client retries, with the same
    /// request ids, and gets the original answers) and the turn ends.
    fn close_turn(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        self.change_turns(|turns| {
            turns.sending = false;
            turns.queued = Vec::new();
        });
    }

    /// Changes the turns under their lock, then, with the lock released,
    /// wakes the connection thread if it waits for a turn to end (it looks
    /// again and parks again if its turn has not come).
    fn change_turns<R>(&self, change: impl FnOnce(&mut Turns) -> R) -> R {
        let (result, waiting) = {
            let mut turns = self.turns.lock();
            let result = change(&mut turns);
            (result, std::mem::take(&mut turns.waiting))
        };
        if waiting {
            self.connection.unpark();
        }
        result
    }
}

/// One `send(2)` that returns at once: how many bytes the socket took
/// (`WouldBlock` when none fit).
fn send_without_waiting(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `bytes` is a live slice for the length passed, and the
        // descriptor belongs to `stream`, which outlives the call.
        let sent = unsafe {
            libc::send(
                stream.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coord::membership::Member;
    use crate::limits::Limits;
    use crate::proto::{ErrorCode, Opcode, Request};
    use crate::replica::ReplicationLimits;
    use crate::server::service::{Reply, Service};
    use crate::view::{ChainView, CommitRecord, Readiness, test_member};
    use crate::wire::{self, FrameReader, read_frame};
    use protobuf::Message;
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};

    const SUCCESSOR: &str = "node0000000002";
    const LONG: Duration = Duration::from_secs(10);

    /// The head of a two-server chain, a connection to it (the test thread
    /// plays its connection thread) and the client's end of the socket.
    struct Fixture {
        service: Service,
        port: Arc<ReplyPort>,
        writer: FrameWriter,
        _reader: FrameReader,
        client: TcpStream,
    }

    fn fixture(commit_timeout: Duration) -> Fixture {
        let (ready_sender, _) = crossbeam_channel::bounded(1);
        let limits = ReplicationLimits { commit_timeout, ..ReplicationLimits::default() };
        let replica = Replica::new(8, false, limits, ready_sender);
        replica.renew_lease(Instant::now() + Duration::from_secs(60));
        let members = vec![test_member(1, Readiness::Ready), test_member(2, Readiness::Ready)];
        replica.set_view(
            &ChainView::new(members, 1).with_record(CommitRecord { epoch: 1, ..CommitRecord::default() }),
            "node0000000001",
        );
        let service = Service::new(Arc::new(replica), Limits::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(LONG)).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let (reader, writer) = wire::split(accepted, None, 1 << 20, 4096);
        let port = ReplyPort::new(&writer, Arc::clone(&service.stats));
        Fixture { service, port, writer, _reader: reader, client }
    }

    fn put(request_id: u64) -> Request {
        let mut request = Request::new();
        request.opcode = Opcode::OP_PUT.into();
        request.request_id = request_id;
        request.key = Some("k".into());
        request.value = Some(b"v".to_vec());
        request
    }

    impl Fixture {
        /// Sends a put through the service; its reply is left to the commit.
        fn deferred_put(&self, request_id: u64) {
            let Reply::AfterCommit(pending) = self.service.handle(put(request_id)) else {
                panic!("a write at a chain's head waits for the tail");
            };
            assert!(self.port.reply_after_commit(pending, &self.service.replica, LONG));
        }

        fn commit(&self, sequence: u64) {
            self.service.replica.on_successor_progress(SUCCESSOR, sequence).unwrap();
        }

        fn next_reply(&mut self) -> Response {
            let mut body = Vec::new();
            assert!(read_frame(&mut self.client, 1 << 20, &mut body).unwrap(), "connection closed");
            Response::parse_from_bytes(&body).unwrap()
        }
    }

    #[test]
    fn a_write_is_answered_when_it_commits_and_replies_stay_in_order() {
        let mut fixture = fixture(LONG);
        fixture.deferred_put(1);
        assert!(!fixture.port.wait_until_sent(Duration::ZERO), "the reply is owed until the commit");
        fixture.client.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let early = fixture.client.read(&mut [0u8; 16]);
        assert!(early.is_err(), "nothing is sent before the commit: {early:?}");
        fixture.client.set_read_timeout(Some(LONG)).unwrap();

        fixture.commit(1);
        assert!(fixture.port.wait_until_sent(Duration::ZERO), "sent by the committing thread");
        let reply = fixture.next_reply();
        assert_eq!((reply.opcode.enum_value(), reply.request_id), (Ok(Opcode::OP_PUT), 1));

        // A second write, then a reply of the connection's own: the own one
        // waits until the owed one is out.
        fixture.deferred_put(2);
        let committed = Arc::new(AtomicBool::new(false));
        let committer = {
            let (replica, committed) = (Arc::clone(&fixture.service.replica), Arc::clone(&committed));
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                committed.store(true, Ordering::SeqCst);
                replica.on_successor_progress(SUCCESSOR, 2).unwrap();
            })
        };
        assert!(fixture.port.wait_until_sent(LONG));
        assert!(committed.load(Ordering::SeqCst), "the connection waited for the owed reply");
        committer.join().unwrap();
        fixture
            .writer
            .send(&crate::server::service::error_response(3, ErrorCode::ERR_WRONG_ROLE, "own"))
            .unwrap();
        assert_eq!(fixture.next_reply().request_id, 2);
        assert_eq!(fixture.next_reply().request_id, 3);
        assert_eq!(fixture.service.stats.snapshot(&fixture.service.replica.table).puts, 2);
    }

    #[test]
    fn a_client_that_does_not_read_delays_only_its_own_replies() {
        let mut fixture = fixture(LONG);
        // Fill the socket until it takes nothing more.
        let filler = [0u8; 64 * 1024];
        let mut filled = 0;
        loop {
            match send_without_waiting(fixture.writer.stream(), &filler) {
                Ok(count) => filled += count,
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => panic!("{error}"),
            }
        }
        fixture.deferred_put(1);
        // The committing thread (this one) comes back at once although the
        // reply cannot be written now.
        fixture.commit(1);
        assert!(!fixture.port.wait_until_sent(Duration::ZERO), "the reply is still being written");
        let mut drained = vec![0u8; filled];
        fixture.client.read_exact(&mut drained).unwrap();
        assert_eq!(fixture.next_reply().request_id, 1, "the reply follows what was queued before it");
        assert!(fixture.port.wait_until_sent(LONG));
    }

    #[test]
    fn fencing_and_the_commit_timeout_answer_waiting_writes() {
        let mut fixture = fixture(Duration::from_millis(20));
        fixture.deferred_put(1);
        thread::sleep(Duration::from_millis(30));
        fixture.service.replica.expire_overdue_writes();
        let reply = fixture.next_reply();
        assert_eq!(reply.error_code.enum_value(), Ok(ErrorCode::ERR_UNAVAILABLE));
        assert!(reply.error_message.contains("not confirmed by the tail in time"), "{}", reply.error_message);

        fixture.deferred_put(2);
        fixture.service.replica.fence("fenced in the test");
        let reply = fixture.next_reply();
        assert_eq!((reply.request_id, reply.error_code.enum_value()), (2, Ok(ErrorCode::ERR_UNAVAILABLE)));
        assert!(reply.error_message.contains("lost the ZooKeeper session"), "{}", reply.error_message);
        assert!(fixture.port.wait_until_sent(Duration::ZERO));
    }
}
