//! Blocking client library: a [`Connection`] speaks frames to one server; an
//! [`Endpoint`] reconnects to it when needed; a [`Client`] adds ids and typed
//! calls, against one server or a whole chain (see [`crate::chain_client`]).
//!
//! Every request carries the client's random `client_id` and a `request_id`
//! that increases per new request, so servers can recognise retries.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, BufReader, ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use protobuf::Message;

use crate::chain_client::ChainTarget;
use crate::limits::FRAME_BYTES_MAX_DEFAULT;
use crate::locator::Locator;
use crate::proto::{ErrorCode, Opcode, Request, Response, Statistics};
use crate::wire::{FrameError, encode_frame, read_frame};

/// Default time allowed for connecting and for each reply; in chain mode
/// also for each whole call, retries included.
pub const CLIENT_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// A connection silent for this long is probed before it is reused (the
/// probe costs three system calls, as much as the request itself). A busy
/// connection is not: if the server closed it anyway (an idle timeout
/// shorter than this), the request is sent once more on a new connection.
const PROBE_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Why a call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// The server could not be reached, or the connection failed or timed out
    /// before a reply arrived (a write may or may not have been applied).
    Unreachable(String),
    /// The server answered with an error reply.
    Server { code: ErrorCode, message: String },
    /// The reply was not a valid answer to the request.
    Protocol(String),
    /// Chain mode: no server to send to (ZooKeeper did not answer, or the
    /// chain has no ready server).
    NoChain(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable(message) => write!(f, "server unreachable: {message}"),
            ClientError::Server { code, message } => write!(f, "server error ({code:?}): {message}"),
            ClientError::Protocol(message) => write!(f, "protocol error: {message}"),
            ClientError::NoChain(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Settings shared by every connection a client opens.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Limit for connecting and for waiting on each reply; in chain mode
    /// also the deadline of a whole call, retries included.
    pub timeout: Duration,
    /// Largest reply frame accepted.
    pub frame_bytes_max: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_millis(CLIENT_TIMEOUT_MS_DEFAULT),
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
        }
    }
}

/// One open connection to one server.
pub struct Connection {
    /// Write half (also used for the staleness probe).
    stream: TcpStream,
    /// Read half, buffered.
    reader: BufReader<TcpStream>,
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

/// Whether a socket error means the peer closed the connection.
fn is_peer_closed(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted)
}

impl Connection {
    /// Connects to `address` (`host:port`), trying each resolved address.
    pub fn open(address: &str, options: &ClientOptions) -> Result<Connection, ClientError> {
        let unreachable = |error: io::Error| ClientError::Unreachable(format!("{address}: {error}"));
        let mut last_error = io::Error::new(ErrorKind::NotFound, "address resolves to nothing");
        for socket_address in address.to_socket_addrs().map_err(unreachable)? {
            match TcpStream::connect_timeout(&socket_address, options.timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(unreachable)?;
                    stream.set_read_timeout(Some(options.timeout)).map_err(unreachable)?;
                    stream.set_write_timeout(Some(options.timeout)).map_err(unreachable)?;
                    let reader = BufReader::new(stream.try_clone().map_err(unreachable)?);
                    return Ok(Connection {
                        stream,
                        reader,
                        frame_bytes_max: options.frame_bytes_max,
                        timeout: options.timeout,
                        outgoing: Vec::new(),
                        incoming: Vec::new(),
                        last_used: Instant::now(),
                    });
                }
                Err(error) => last_error = error,
            }
        }
        Err(unreachable(last_error))
    }

    /// Changes the read and write timeout (the next reply may be given less
    /// time than the connection was opened with, e.g. near a deadline).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        if timeout != self.timeout {
            let unreachable = |error: io::Error| ClientError::Unreachable(error.to_string());
            self.stream.set_read_timeout(Some(timeout)).map_err(unreachable)?;
            self.stream.set_write_timeout(Some(timeout)).map_err(unreachable)?;
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
        encode_frame(request, self.frame_bytes_max, &mut self.outgoing).map_err(|error| match error {
            FrameError::TooLarge { length, max } => ClientError::Server {
                code: ErrorCode::ERR_TOO_LARGE,
                message: format!("request of {length} bytes is over the maximum frame of {max} bytes"),
            },
            other => ClientError::Protocol(other.to_string()),
        })?;
        let unreachable = |error: &dyn fmt::Display, peer_closed: bool| CallFailure {
            error: ClientError::Unreachable(error.to_string()),
            peer_closed,
        };
        self.stream.write_all(&self.outgoing).map_err(|error| unreachable(&error, is_peer_closed(&error)))?;
        match read_frame(&mut self.reader, self.frame_bytes_max, &mut self.incoming) {
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
        if !self.reader.buffer().is_empty() {
            return true;
        }
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut probe = [0u8; 1];
        let stale =
            !matches!(self.stream.peek(&mut probe), Err(error) if error.kind() == ErrorKind::WouldBlock);
        stale || self.stream.set_nonblocking(false).is_err()
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
            connection.last_used.elapsed() >= PROBE_AFTER_IDLE && connection.is_stale()
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

/// Where a [`Client`] sends its requests.
enum Target {
    /// One server, whatever its role; no retries.
    Server {
        endpoint: Endpoint,
        /// Reads ask for the server's own table even if it is not the tail.
        local_reads: bool,
    },
    /// The chain's head or tail, whichever the request needs, with retries.
    Chain(Box<ChainTarget>),
}

/// A client of one server or of a chain.
pub struct Client {
    target: Target,
    options: ClientOptions,
    /// Random per client, so request ids of different clients never collide.
    client_id: u64,
    /// Id of the next new request.
    next_request_id: u64,
}

impl Client {
    /// A client of the one server at `address` (`host:port`); connects on
    /// first use. In a chain, the server answers only what its role allows.
    pub fn new(address: &str, options: ClientOptions) -> Client {
        Client::with_target(Target::Server { endpoint: Endpoint::new(address), local_reads: false }, options)
    }

    /// Like [`Client::new`], but reads (`get`, `size`, `getkeys`,
    /// `gettable`) are answered from that server's own table whatever its
    /// chain role: for operators comparing replicas. Such an answer may miss
    /// committed writes (a server before the tail may hold uncommitted ones,
    /// one after the head may lag behind).
    pub fn local_reader(address: &str, options: ClientOptions) -> Client {
        Client::with_target(Target::Server { endpoint: Endpoint::new(address), local_reads: true }, options)
    }

    /// A client of the chain at `chain_path` in the ZooKeeper ensemble
    /// `zk_hosts` (`host:port,...`): writes go to the head, reads to the
    /// tail, and refused or failed requests are retried until
    /// `options.timeout`. Looks up the chain on first use.
    pub fn chain(zk_hosts: &str, chain_path: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let locator = Locator::start(zk_hosts, chain_path)?;
        Ok(Client::with_target(Target::Chain(Box::new(ChainTarget::new(locator))), options))
    }

    fn with_target(target: Target, options: ClientOptions) -> Client {
        Client { target, options, client_id: random_client_id(), next_request_id: 1 }
    }

    /// What the client talks to, for people: `host:port` or the chain.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Server { endpoint, .. } => endpoint.address().to_owned(),
            Target::Chain(chain) => format!("the chain at {}", chain.name()),
        }
    }

    pub fn put(&mut self, key: &str, value: impl Into<Vec<u8>>) -> Result<(), ClientError> {
        let mut request = Request::new();
        request.key = Some(key.to_owned());
        request.value = Some(value.into());
        self.call(Opcode::OP_PUT, request).map(drop)
    }

    /// The value of `key`, or `None` if absent.
    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let mut request = Request::new();
        request.key = Some(key.to_owned());
        let response = self.call(Opcode::OP_GET, request)?;
        Ok(response.found.then_some(response.value))
    }

    /// Deletes `key`; returns whether it existed.
    pub fn delete(&mut self, key: &str) -> Result<bool, ClientError> {
        let mut request = Request::new();
        request.key = Some(key.to_owned());
        Ok(self.call(Opcode::OP_DEL, request)?.found)
    }

    pub fn size(&mut self) -> Result<u64, ClientError> {
        Ok(self.call(Opcode::OP_SIZE, Request::new())?.size)
    }

    /// Every key, sorted.
    pub fn keys(&mut self) -> Result<Vec<String>, ClientError> {
        Ok(self.call(Opcode::OP_GETKEYS, Request::new())?.keys)
    }

    /// Every (key, value), sorted by key.
    pub fn entries(&mut self) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        let response = self.call(Opcode::OP_GETTABLE, Request::new())?;
        Ok(response.entries.into_iter().map(|entry| (entry.key, entry.value)).collect())
    }

    pub fn stats(&mut self) -> Result<Statistics, ClientError> {
        self.call(Opcode::OP_STATS, Request::new())?
            .statistics
            .into_option()
            .ok_or_else(|| ClientError::Protocol("stats reply without statistics".into()))
    }

    /// Sends one new request to the target.
    fn call(&mut self, opcode: Opcode, mut request: Request) -> Result<Response, ClientError> {
        request.opcode = opcode.into();
        request.client_id = self.client_id;
        request.request_id = self.next_request_id;
        self.next_request_id += 1;
        match &mut self.target {
            Target::Server { endpoint, local_reads } => {
                request.local_read = *local_reads
                    && matches!(
                        opcode,
                        Opcode::OP_GET | Opcode::OP_SIZE | Opcode::OP_GETKEYS | Opcode::OP_GETTABLE
                    );
                endpoint.call(&request, &self.options)
            }
            Target::Chain(chain) => chain.call(&request, &self.options),
        }
    }
}

/// Turns an error reply into an `Err` and rejects replies to other requests.
fn check_response(request: &Request, response: Response) -> Result<Response, ClientError> {
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

/// A random 64-bit id from std's randomly seeded hasher (no extra crate).
fn random_client_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    RandomState::new().hash_one((std::process::id(), nanos)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::service::error_response;

    fn request(opcode: Opcode, id: u64) -> Request {
        let mut request = Request::new();
        request.opcode = opcode.into();
        request.request_id = id;
        request
    }

    #[test]
    fn error_replies_become_errors() {
        let reply = error_response(3, ErrorCode::ERR_TOO_LARGE, "big");
        assert_eq!(
            check_response(&request(Opcode::OP_PUT, 3), reply),
            Err(ClientError::Server { code: ErrorCode::ERR_TOO_LARGE, message: "big".into() })
        );
        let connection_level = error_response(0, ErrorCode::ERR_TOO_MANY_CLIENTS, "full");
        assert!(matches!(
            check_response(&request(Opcode::OP_GET, 8), connection_level),
            Err(ClientError::Server { code: ErrorCode::ERR_TOO_MANY_CLIENTS, .. })
        ));
    }

    #[test]
    fn replies_to_other_requests_are_rejected() {
        let mut reply = Response::new();
        reply.opcode = Opcode::OP_GET.into();
        reply.request_id = 4;
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

    #[test]
    fn client_ids_differ() {
        assert_ne!(random_client_id(), random_client_id());
    }
}
