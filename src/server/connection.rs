//! One client connection's thread: reads request frames, hands each to the
//! [`Service`] and writes the reply, taking turns on the socket with the
//! threads that answer its committed writes (see [`super::reply_port`]). A
//! connection whose first frame is OP_REPLICATE is a predecessor's
//! replication link and goes to the replication receiver instead; one that
//! asks for OP_WATCH becomes a watch stream (see [`super::watch`]).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::client_auth::{ClientAuth, Screened};
use super::inflight::{Refused, Reservation};
use super::reply_port::ReplyPort;
use super::service::{PendingWrite, Reply, Service, error_response};
use super::watch;
use crate::limits::{
    COMMIT_EXPIRY_PERIOD, CONNECTION_READ_BUFFER_BYTES, INFLIGHT_EXEMPT_FRAME_BYTES, Limits,
    OVER_LIMIT_FIRST_FRAME_TIMEOUT, REFUSAL_DRAIN_BYTES_MAX, REFUSAL_LINGER, SETTLED_REPLIES_PER_REQUEST,
    UNAUTHENTICATED_LOG_PERIOD,
};
use crate::proto::{ErrorCode, Opcode, Request, Response};
use crate::replication::{LinkError, migration, receiver};
use crate::secure::tls::{ServerTls, TLS_HANDSHAKE_BYTE, TlsSession};
use crate::throttle::{Every, suppressed_note};
use crate::wire::{self, FrameError, FrameReader, FrameWriter, encode_frame};

/// Links that fail their proof are logged at most once a period.
static UNAUTHENTICATED_LINKS: Every = Every::new(UNAUTHENTICATED_LOG_PERIOD);

/// Tells a connection over `--max-clients` (or `--max-clients-per-host`)
/// why it is refused (`reason`), then closes it. Bounded in time and bytes:
/// the acceptor may be the one calling this.
pub(super) fn refuse(mut stream: &TcpStream, limits: &Limits, reason: &str) {
    let response = error_response(0, ErrorCode::ERR_TOO_MANY_CLIENTS, reason);
    let mut frame = Vec::new();
    if encode_frame(&response, limits.frame_bytes_max, &mut frame).is_err() {
        return;
    }
    let _ = stream.set_write_timeout(Some(REFUSAL_LINGER));
    if stream.write_all(&frame).is_ok() {
        // Let the reply leave before the close, and swallow what the client
        // already sent so the close is not a reset.
        let _ = stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + REFUSAL_LINGER;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSAL_DRAIN_BYTES_MAX {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || stream.set_read_timeout(Some(remaining)).is_err() {
                break;
            }
            match stream.read(&mut sink) {
                Ok(count) if count > 0 => drained += count,
                _ => break,
            }
        }
    }
}

/// Reads requests and writes responses until the peer closes, a frame cannot
/// be read, or the server stops. A connection whose first frame is
/// OP_REPLICATE is a predecessor's replication link and is handed over to the
/// replication receiver.
pub(super) fn serve_connection(
    stream: Arc<TcpStream>,
    service: &Service,
    stopping: &AtomicBool,
    over_limit: Option<String>,
) -> Result<(), FrameError> {
    let limits = &service.limits;
    stream.set_nodelay(true).map_err(FrameError::Io)?;
    let first_frame_timeout =
        if over_limit.is_some() { OVER_LIMIT_FIRST_FRAME_TIMEOUT } else { limits.idle_timeout };
    stream.set_read_timeout(Some(first_frame_timeout)).map_err(FrameError::Io)?;
    stream.set_write_timeout(Some(limits.write_timeout)).map_err(FrameError::Io)?;
    let tls = match &service.link.security.tls {
        None => None,
        Some(tls) => match start_tls(&stream, tls, limits)? {
            Some(session) => Some(session),
            None => return Ok(()),
        },
    };
    let (mut reader, writer) = wire::split(stream, tls, limits.frame_bytes_max, CONNECTION_READ_BUFFER_BYTES);
    reader.set_frame_timeout(Some(limits.frame_timeout));
    let port = ReplyPort::new(&writer, Arc::clone(&service.stats));
    let mut writer = ConnectionWriter { frames: writer, port, owed_limit: owed_reply_limit(service) };
    let mut first_frame = true;
    let mut auth = ClientAuth::new(service.link.security.client_key.as_ref());
    loop {
        let (request, frame_reservation) = match receive_request(&mut reader, service) {
            Ok(Some(received)) => received,
            Ok(None) => return Ok(()),
            Err(FrameError::Malformed(reason)) => {
                writer.send(&service.malformed(&reason), service)?;
                first_frame = false;
                continue;
            }
            Err(FrameError::TooLarge { length, max }) => {
                // The body is not read, so the stream cannot be resynchronised:
                // say why, then close.
                let response = error_response(
                    0,
                    ErrorCode::ERR_TOO_LARGE,
                    format!("frame of {length} bytes is over the maximum of {max} bytes; closing"),
                );
                service.stats.record_error(ErrorCode::ERR_TOO_LARGE);
                writer.send(&response, service)?;
                return Err(FrameError::TooLarge { length, max });
            }
            Err(FrameError::Io(error))
                if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                debug!("closing idle connection");
                return Ok(());
            }
            Err(late @ FrameError::Late { .. }) => {
                service.stats.record_late_frame();
                info!("closing a connection: {late}");
                return Err(late);
            }
            Err(error) => return Err(error),
        };
        if stopping.load(Ordering::SeqCst) {
            let response = error_response(0, ErrorCode::ERR_SHUTTING_DOWN, "server is shutting down");
            return writer.send(&response, service);
        }
        if first_frame && request.opcode.enum_value() == Ok(Opcode::OP_REPLICATE) {
            // A link's frames are the predecessor's, paced by the chain,
            // not a client's: not budgeted, and once the link has proved
            // the peer secret not given a deadline either (see `receiver`).
            drop(frame_reservation);
            // An established link logs why it ended; the connection closes.
            let serve =
                if request.replica_hello.migration { migration::serve_import } else { receiver::serve };
            if let Err(error) =
                serve(request, reader, writer.frames, &service.replica, &service.link, stopping)
            {
                let unauthenticated = matches!(error, LinkError::Unauthenticated(_));
                if unauthenticated {
                    service.replica.peer_auth_failures.fetch_add(1, Ordering::Relaxed);
                }
                match unauthenticated.then(|| UNAUTHENTICATED_LINKS.due()).flatten() {
                    Some(suppressed) => warn!("replication link: {error}{}", suppressed_note(suppressed)),
                    None => debug!("replication link: {error}"),
                }
            }
            return Ok(());
        }
        if let Some(reason) = &over_limit {
            warn!("refusing a client: {reason}");
            refuse(writer.frames.stream(), limits, reason);
            return Ok(());
        }
        if first_frame {
            writer.frames.stream().set_read_timeout(Some(limits.idle_timeout)).map_err(FrameError::Io)?;
        }
        first_frame = false;
        let request = match auth.screen(request) {
            Screened::Serve(request) => request,
            Screened::Reply(response) => {
                writer.send(&response, service)?;
                continue;
            }
            Screened::Refuse(response) => {
                service.stats.record_error(ErrorCode::ERR_AUTH);
                return writer.send(&response, service);
            }
        };
        if request.opcode.enum_value() == Ok(Opcode::OP_WATCH) {
            // A key of another chain's (the service checks every other request).
            if let Some(refused) = service.screen_slots(&request) {
                return writer.send(&refused, service);
            }
            // From here on the connection carries the watch stream only.
            drop(frame_reservation);
            return watch::serve(&request, service, stopping, &mut |response| writer.send(response, service));
        }
        match service.handle(request) {
            Reply::Now(response, reply_reservation) => {
                writer.send(&response, service)?;
                drop(reply_reservation);
            }
            Reply::AfterCommit(pending) => writer.reply_after_commit(pending, service)?,
        }
        drop(frame_reservation);
        // On the way back to reading, answer a few other clients' committed
        // writes (see `commits`).
        service.replica.run_settled(SETTLED_REPLIES_PER_REQUEST);
    }
}

/// The server's side of TLS on an accepted socket: the session, or `None`
/// when the client is not speaking TLS (it is told so in a plaintext
/// frame, which a plaintext client reads as an error reply) or its
/// handshake failed (a certificate from another CA, say).
fn start_tls(
    stream: &TcpStream,
    tls: &ServerTls,
    limits: &Limits,
) -> Result<Option<Arc<TlsSession>>, FrameError> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).map_err(FrameError::Io)? == 0 {
        return Ok(None);
    }
    if first[0] != TLS_HANDSHAKE_BYTE {
        let response = error_response(
            0,
            ErrorCode::ERR_AUTH,
            "this server accepts TLS connections only: give the client --tls-ca <the CA's certificate>",
        );
        let mut frame = Vec::new();
        encode_frame(&response, limits.frame_bytes_max, &mut frame)?;
        let _ = (&*stream).write_all(&frame);
        debug!("refused a plaintext connection: TLS is required");
        return Ok(None);
    }
    match tls.accept(stream) {
        Ok(session) => Ok(Some(session)),
        Err(error) => {
            debug!("TLS handshake failed: {error}");
            Ok(None)
        }
    }
}

/// The next request, with its frame's bytes reserved in the in-flight
/// budget from its header until the request is handled (unless the frame
/// is small, see [`INFLIGHT_EXEMPT_FRAME_BYTES`]); `None` when the client
/// closed. Waiting for room counts against the frame's deadline.
fn receive_request(
    reader: &mut FrameReader,
    service: &Service,
) -> Result<Option<(Request, Option<Reservation>)>, FrameError> {
    let frame_timeout = service.limits.frame_timeout;
    reader.receive_admitted(|length, deadline| {
        if length <= INFLIGHT_EXEMPT_FRAME_BYTES {
            return Ok(None);
        }
        let deadline = deadline.unwrap_or_else(|| Instant::now() + frame_timeout);
        service.inflight.reserve(length, deadline).map(Some).map_err(|refused| match refused {
            Refused::OverCapacity { bytes, capacity_bytes } => {
                FrameError::TooLarge { length: bytes, max: capacity_bytes as usize }
            }
            Refused::TimedOut { .. } => FrameError::Late { timeout: frame_timeout },
        })
    })
}

/// The longest a connection thread waits for a reply another thread owes
/// its client: the commit timeout, the expiry check's period, and the write
/// timeout of a reply finished in the background, with a second to spare.
fn owed_reply_limit(service: &Service) -> Duration {
    service.replica.limits.commit_timeout
        + COMMIT_EXPIRY_PERIOD
        + service.limits.write_timeout
        + Duration::from_secs(1)
}

/// A client connection's writing side: the connection thread's own frames
/// and the port through which committed writes are answered, taking turns.
struct ConnectionWriter {
    frames: FrameWriter,
    port: Arc<ReplyPort>,
    owed_limit: Duration,
}

impl ConnectionWriter {
    /// Writes `response` as one frame with one write, after any reply owed
    /// before it; a response too large for a frame is replaced by an error
    /// saying so.
    fn send(&mut self, response: &Response, service: &Service) -> Result<(), FrameError> {
        self.wait_for_owed_reply()?;
        match self.frames.send(response) {
            Err(FrameError::TooLarge { length, max }) => {
                service.stats.record_error(ErrorCode::ERR_RESPONSE_TOO_LARGE);
                let refusal = error_response(
                    response.request_id,
                    ErrorCode::ERR_RESPONSE_TOO_LARGE,
                    format!("the reply would be {length} bytes, over the maximum frame of {max} bytes"),
                );
                self.frames.send(&refusal)
            }
            other => other,
        }
    }

    /// Leaves the reply to the write's commit (see `reply_port`).
    fn reply_after_commit(&self, pending: PendingWrite, service: &Service) -> Result<(), FrameError> {
        if self.port.reply_after_commit(pending, &service.replica, self.owed_limit) {
            Ok(())
        } else {
            Err(never_sent())
        }
    }

    /// Replies leave in request order: nothing is written while an earlier
    /// one is owed. Past the limit (the commit machinery is stopped, e.g.
    /// at shutdown) the connection closes.
    fn wait_for_owed_reply(&self) -> Result<(), FrameError> {
        if self.port.wait_until_sent(self.owed_limit) { Ok(()) } else { Err(never_sent()) }
    }
}

fn never_sent() -> FrameError {
    FrameError::Io(io::Error::new(ErrorKind::TimedOut, "an earlier reply was never sent"))
}
