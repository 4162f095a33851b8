//! One server, from the client's side: a [`Connection`] speaks frames to
//! it; an [`Endpoint`] connects lazily, reconnects when needed, and checks
//! that each reply answers its request.

use std::fmt;
use std::io::{self, ErrorKind};
use std::time::{Duration, Instant};

use protobuf::Message;

use super::error::ClientError;
use crate::limits::{CLIENT_PROBE_AFTER_IDLE, CLIENT_TIMEOUT_MS_DEFAULT, FRAME_BYTES_MAX_DEFAULT};
use crate::proto::{AuthStep, ErrorCode, Opcode, Request, Response};
use crate::secure::challenge::{Prover, Transcript, fresh_nonce};
use crate::secure::secret::AuthKey;
use crate::secure::tls::{ClientSocket, ClientTls};
use crate::wire::{FrameError, encode_frame, read_frame};

/// Settings shared by every connection a client opens.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Limit for connecting and for waiting on each reply; in chain mode
    /// also the deadline of a whole call, retries included.
    pub timeout: Duration,
    /// Largest reply frame accepted.
    pub frame_bytes_max: usize,
    /// The client secret's key (`--secret-file`): proved to every server
    /// before the first request.
    pub secret: Option<AuthKey>,
    /// TLS (`--tls-ca`): servers must show a certificate from this CA.
    pub tls: Option<ClientTls>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_millis(CLIENT_TIMEOUT_MS_DEFAULT),
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            secret: None,
            tls: None,
        }
    }
}

/// One open connection to one server.
pub struct Connection {
    socket: ClientSocket,
    frame_bytes_max: usize,
    /// The socket's current read and write timeout.
    timeout: Duration,
    /// Reused buffers: the encoded request and the reply body.
    outgoing: Vec<u8>,
    incoming: Vec<u8>,
    /// When the connection was opened or last answered.
    last_used: Instant,
}

/// How a call on an open connection failed.
struct CallFailure {
    error: ClientError,
    /// The server had closed the connection (end of stream or reset before
    /// any reply): an idle timeout, a shutdown or a crash.
    peer_closed: bool,
}

impl From<ClientError> for CallFailure {
    fn from(error: ClientError) -> CallFailure {
        CallFailure { error, peer_closed: false }
    }
}

/// A failure to reach the server (`peer_closed`: it had closed the
/// connection).
fn unreachable(error: &dyn fmt::Display, peer_closed: bool) -> CallFailure {
    CallFailure { error: ClientError::Unreachable(error.to_string()), peer_closed }
}

/// Whether a socket error means the peer closed the connection.
fn is_peer_closed(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted)
}

impl Connection {
    /// Connects to `address` (`host:port`), trying each resolved address,
    /// and proves the client secret if the options hold one.
    pub fn open(address: &str, options: &ClientOptions) -> Result<Connection, ClientError> {
        let socket = ClientSocket::connect(address, options.timeout, options.tls.as_ref()).map_err(|error| {
            if error.kind() == ErrorKind::InvalidData {
                ClientError::Protocol(format!(
                    "TLS with {address} failed: {error} (is --tls-ca the CA of its certificate, and does the \
                     server use TLS?)"
                ))
            } else {
                ClientError::Unreachable(format!("{address}: {error}"))
            }
        })?;
        let mut connection = Connection {
            socket,
            frame_bytes_max: options.frame_bytes_max,
            timeout: options.timeout,
            outgoing: Vec::new(),
            incoming: Vec::new(),
            last_used: Instant::now(),
        };
        if let Some(key) = &options.secret {
            connection.authenticate(key, address)?;
        }
        Ok(connection)
    }

    /// Proves the client secret to the server, and checks the server's
    /// proof of it (see `OP_AUTH`). A server that does not authenticate
    /// clients says so by answering without a proof; it is used as is.
    fn authenticate(&mut self, key: &AuthKey, address: &str) -> Result<(), ClientError> {
        let client_nonce = fresh_nonce().map_err(ClientError::Protocol)?;
        let mut request = Request::new();
        request.opcode = Opcode::OP_AUTH.into();
        request.auth = Some(AuthStep { nonce: client_nonce.clone(), ..AuthStep::new() }).into();
        let challenge = self.call(&request).and_then(|response| check_response(&request, response))?;
        let Some(step) = challenge.auth.into_option() else {
            return Ok(());
        };
        let transcript =
            Transcript { initiator_nonce: &client_nonce, responder_nonce: &step.nonce, context: &[] };
        if !transcript.verify(key, Prover::Server, &step.proof) {
            return Err(ClientError::Server {
                code: ErrorCode::ERR_AUTH,
                message: format!(
                    "{address} did not prove the client secret: the secret differs, or it is not the server you meant"
                ),
            });
        }
        request.auth =
            Some(AuthStep { proof: transcript.prove(key, Prover::Client), ..AuthStep::new() }).into();
        self.call(&request).and_then(|response| check_response(&request, response)).map(drop)
    }

    /// Changes the read and write timeout (the next reply may be given less
    /// time than the connection was opened with, e.g. near a deadline).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        if timeout != self.timeout {
            let unreachable = |error: io::Error| ClientError::Unreachable(error.to_string());
            self.socket.tcp().set_read_timeout(Some(timeout)).map_err(unreachable)?;
            self.socket.tcp().set_write_timeout(Some(timeout)).map_err(unreachable)?;
            self.timeout = timeout;
        }
        Ok(())
    }

    /// Sends `request` and waits for its reply (an error reply is returned as
    /// a `Response`, not as an `Err`).
    pub fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        self.exchange(request).map_err(|failure| failure.error)
    }

    fn exchange(&mut self, request: &Request) -> Result<Response, CallFailure> {
        self.send_frame(request)?;
        self.receive_frame()
    }

    /// Sends `request` without waiting for a reply (a watch, whose replies
    /// are a stream read with [`Connection::receive`]).
    pub fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        self.send_frame(request).map_err(|failure| failure.error)
    }

    /// The next frame from the server, waiting at most the timeout.
    pub fn receive(&mut self) -> Result<Response, ClientError> {
        self.receive_frame().map_err(|failure| failure.error)
    }

    fn send_frame(&mut self, request: &Request) -> Result<(), CallFailure> {
        encode_frame(request, self.frame_bytes_max, &mut self.outgoing).map_err(|error| match error {
            FrameError::TooLarge { length, max } => ClientError::Server {
                code: ErrorCode::ERR_TOO_LARGE,
                message: format!("request of {length} bytes is over the maximum frame of {max} bytes"),
            },
            other => ClientError::Protocol(other.to_string()),
        })?;
        self.socket.send(&self.outgoing).map_err(|error| unreachable(&error, is_peer_closed(&error)))
    }

    fn receive_frame(&mut self) -> Result<Response, CallFailure> {
        match read_frame(self.socket.reader(), self.frame_bytes_max, &mut self.incoming) {
            Ok(true) => {}
            Ok(false) => return Err(unreachable(&"server closed the connection", true)),
            Err(error @ FrameError::TooLarge { .. }) => {
                return Err(ClientError::Protocol(error.to_string()).into());
            }
            Err(FrameError::Io(error)) => return Err(unreachable(&error, is_peer_closed(&error))),
            Err(error) => return Err(unreachable(&error, false)),
        }
        self.last_used = Instant::now();
        Response::parse_from_bytes(&self.incoming)
            .map_err(|error| ClientError::Protocol(format!("reply does not decode: {error}")).into())
    }

    /// Whether the server has closed (or written unasked to) this connection
    /// since the last reply, e.g. after its idle timeout. Checked before
    /// reusing a connection so a request is not sent into a dead socket.
    pub fn is_stale(&self) -> bool {
        let tcp = self.socket.tcp();
        if self.socket.has_buffered_bytes() {
            return true;
        }
        if tcp.set_nonblocking(true).is_err() {
            return true;
        }
        let mut probe = [0u8; 1];
        let stale = !matches!(tcp.peek(&mut probe), Err(error) if error.kind() == ErrorKind::WouldBlock);
        stale || tcp.set_nonblocking(false).is_err()
    }
}

/// One server, connected lazily and again whenever the connection failed or
/// the server closed it (e.g. after its idle timeout).
pub struct Endpoint {
    address: String,
    connection: Option<Connection>,
}

impl Endpoint {
    pub fn new(address: &str) -> Endpoint {
        Endpoint { address: address.to_owned(), connection: None }
    }

    /// `host:port` of the server.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` (ids already set) and checks the reply belongs to it;
    /// `options.timeout` limits connecting and this reply. A request sent on
    /// a reused connection that the server turns out to have closed is sent
    /// once more on a new one: with the same ids, so a server that did apply
    /// it answers the retry from its exactly-once record.
    pub fn call(&mut self, request: &Request, options: &ClientOptions) -> Result<Response, ClientError> {
        if self.connection.as_ref().is_some_and(|connection| {
            connection.last_used.elapsed() >= CLIENT_PROBE_AFTER_IDLE && connection.is_stale()
        }) {
            self.connection = None;
        }
        let reused = self.connection.is_some();
        match self.exchange(request, options) {
            Err(failure) if reused && failure.peer_closed => {
                self.exchange(request, options).map_err(|failure| failure.error)
            }
            result => result.map_err(|failure| failure.error),
        }
        .and_then(|response| check_response(request, response))
    }

    /// One exchange, on the open connection or a new one.
    fn exchange(&mut self, request: &Request, options: &ClientOptions) -> Result<Response, CallFailure> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => self.connection.insert(Connection::open(&self.address, options)?),
        };
        let response = connection.set_timeout(options.timeout).map_err(CallFailure::from);
        let response = response.and_then(|()| connection.exchange(request));
        if response.is_err() {
            // The stream's state is unknown after a failure: start afresh.
            self.connection = None;
        }
        response
    }
}

/// Turns an error reply into an `Err` and rejects replies to other requests.
pub(super) fn check_response(request: &Request, response: Response) -> Result<Response, ClientError> {
    let opcode = response.opcode.enum_value_or(Opcode::OP_UNSPECIFIED);
    if opcode == Opcode::OP_ERROR {
        // Connection-level errors (server full, frame refused) carry id 0.
        if response.request_id != request.request_id && response.request_id != 0 {
            return Err(ClientError::Protocol(format!(
                "error reply for request {} while waiting for {}",
                response.request_id, request.request_id
            )));
        }
        return Err(ClientError::Server {
            code: response.error_code.enum_value_or(ErrorCode::ERR_INTERNAL),
            message: response.error_message,
        });
    }
    if response.request_id != request.request_id || response.opcode != request.opcode {
        return Err(ClientError::Protocol(format!(
            "reply {:?} #{} does not answer request {:?} #{}",
            opcode,
            response.request_id,
            request.opcode.enum_value_or(Opcode::OP_UNSPECIFIED),
            request.request_id
        )));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(opcode: Opcode, id: u64) -> Request {
        let mut request = Request::new();
        request.opcode = opcode.into();
        request.request_id = id;
        request
    }

    fn reply(opcode: Opcode, id: u64) -> Response {
        let mut reply = Response::new();
        reply.opcode = opcode.into();
        reply.request_id = id;
        reply
    }

    fn error_reply(id: u64, code: ErrorCode, message: &str) -> Response {
        let mut reply = reply(Opcode::OP_ERROR, id);
        reply.error_code = code.into();
        reply.error_message = message.into();
        reply
    }

    #[test]
    fn error_replies_become_errors() {
        let reply = error_reply(3, ErrorCode::ERR_TOO_LARGE, "big");
        assert_eq!(
            check_response(&request(Opcode::OP_PUT, 3), reply),
            Err(ClientError::Server { code: ErrorCode::ERR_TOO_LARGE, message: "big".into() })
        );
        let connection_level = error_reply(0, ErrorCode::ERR_TOO_MANY_CLIENTS, "full");
        assert!(matches!(
            check_response(&request(Opcode::OP_GET, 8), connection_level),
            Err(ClientError::Server { code: ErrorCode::ERR_TOO_MANY_CLIENTS, .. })
        ));
    }

    #[test]
    fn replies_to_other_requests_are_rejected() {
        let reply = reply(Opcode::OP_GET, 4);
        assert!(matches!(
            check_response(&request(Opcode::OP_GET, 5), reply.clone()),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            check_response(&request(Opcode::OP_PUT, 4), reply.clone()),
            Err(ClientError::Protocol(_))
        ));
        assert!(check_response(&request(Opcode::OP_GET, 4), reply).is_ok());
    }
}
