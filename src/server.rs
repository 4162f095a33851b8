//! The TCP server: an acceptor thread hands each client connection to its own
//! named OS thread, which reads frames, asks the [`Service`] for a response
//! and writes it back with one write, or, for a write not yet committed,
//! leaves the reply to the thread that commits it (see `reply_port`).
//!
//! Shutdown (from [`ShutdownHandle`], e.g. on SIGTERM): set a flag, connect to
//! our own listener to unblock `accept`, shut down every open client socket so
//! blocked reads return, then join every connection thread.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use parking_lot::Mutex;

use crossbeam_channel::Receiver;

use crate::limits::{CONNECTION_STACK_BYTES, Limits};
use crate::membership::{self, ChainConfig, MembershipEnd};
use crate::proto::{ErrorCode, Opcode, Request, Response};
use crate::chain::InjectedBug;
use crate::replica::{Replica, ReplicationLimits};
use crate::replication;
use crate::replication::receiver;
use crate::reply_port::ReplyPort;
use crate::service::{PendingWrite, Reply, Service, error_response};
use crate::wire::{self, FrameError, FrameWriter, encode_frame};

/// Read buffer of a connection: most requests fit, and thousands of idle
/// connections stay cheap.
const CONNECTION_READ_BUFFER_BYTES: usize = 8 * 1024;

/// After an accept error (e.g. out of file descriptors) the acceptor waits
/// this long instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// How long a refused (over `--max-clients`) connection is given to take its
/// error reply before it is closed. Closing with unread request bytes would
/// reset the connection and could destroy the reply before the client reads it.
const REFUSAL_LINGER: Duration = Duration::from_millis(100);

/// At most this much of a refused connection's input is swallowed.
const REFUSAL_DRAIN_BYTES_MAX: usize = 64 * 1024;

/// Connections accepted beyond `--max-clients` so a predecessor's
/// replication link (which arrives on the client port) is never refused by
/// a full server. Such a connection must open with OP_REPLICATE within
/// [`OVER_LIMIT_FIRST_FRAME_TIMEOUT`], or it is refused like any client.
const OVER_LIMIT_HEADROOM: u64 = 8;
const OVER_LIMIT_FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(1);

/// How often writes waiting for their commit are checked against their
/// commit timeout and the lease.
const COMMIT_EXPIRY_PERIOD: Duration = Duration::from_millis(100);

/// What a server is started with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: IpAddr,
    /// Port to listen on; 0 picks a free one (see [`Server::local_addr`]).
    pub port: u16,
    /// Number of table lock stripes (`<table-size>`).
    pub table_stripes: usize,
    pub limits: Limits,
    /// Chain mode; `None` for a standalone server.
    pub chain: Option<ChainConfig>,
    pub replication: ReplicationLimits,
    /// Testing only: answer reads in any role (see `--unsafe-read-anywhere`).
    pub unsafe_read_anywhere: bool,
}

/// Why [`Server::run`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerEnd {
    /// Shut down on request.
    Stopped,
    /// The ZooKeeper session expired and `--exit-on-expiry` is set.
    SessionExpired,
}

/// The open client sockets and their threads, so shutdown can close and join
/// them all.
#[derive(Default)]
struct Connections {
    /// A clone of each open client socket, by connection number.
    sockets: Mutex<HashMap<u64, TcpStream>>,
    /// Every connection thread not yet joined.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Numbers connections for the registry and for thread names.
    next_number: AtomicU64,
}

/// Stops a running [`Server`] from any thread (or a signal handler thread).
#[derive(Clone)]
pub struct ShutdownHandle {
    stopping: Arc<AtomicBool>,
    /// Where to connect to wake the acceptor.
    wake_address: SocketAddr,
}

impl ShutdownHandle {
    /// Asks the server to stop; `Server::run` returns once everything is closed.
    pub fn shutdown(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the acceptor; if this fails it is already awake or gone.
        let _ = TcpStream::connect_timeout(&self.wake_address, Duration::from_secs(1));
    }
}

pub struct Server {
    listener: TcpListener,
    service: Arc<Service>,
    stopping: Arc<AtomicBool>,
    connections: Arc<Connections>,
    /// Chain mode, with the advertised address filled in.
    chain: Option<ChainConfig>,
    /// Hand-over requests from the replica to the membership thread.
    membership_wake: Receiver<()>,
}

impl Server {
    /// Binds the listening socket; nothing is served until [`Server::run`].
    pub fn bind(config: &ServerConfig) -> io::Result<Server> {
        let listener = TcpListener::bind((config.bind, config.port))?;
        let (wake_sender, membership_wake) = crossbeam_channel::bounded(1);
        let mut replication = config.replication.clone();
        replication.writers_max = config.limits.clients_max + 1;
        let bug = config.unsafe_read_anywhere.then_some(InjectedBug::StaleRead);
        let replica =
            Replica::with_bug(config.table_stripes, config.chain.is_none(), replication, wake_sender, bug);
        let mut chain = config.chain.clone();
        if let Some(chain) = chain.as_mut().filter(|chain| chain.advertise.is_empty()) {
            let mut address = listener.local_addr()?;
            if address.ip().is_unspecified() {
                address.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
                warn!("listening on all interfaces; advertising {address} (set --advertise for other hosts)");
            }
            chain.advertise = address.to_string();
        }
        Ok(Server {
            listener,
            service: Arc::new(Service::new(Arc::new(replica), config.limits.clone())),
            stopping: Arc::new(AtomicBool::new(false)),
            connections: Arc::default(),
            chain,
            membership_wake,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        let mut wake_address = self.local_addr()?;
        if wake_address.ip().is_unspecified() {
            let loopback = match wake_address.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            wake_address.set_ip(loopback);
        }
        Ok(ShutdownHandle { stopping: Arc::clone(&self.stopping), wake_address })
    }

    /// Serves until shut down, then closes every connection and joins every
    /// thread before returning.
    pub fn run(self) -> io::Result<ServerEnd> {
        info!(
            "listening on {} ({} table stripes, {})",
            self.local_addr()?,
            self.service.replica.table.stripe_count(),
            match &self.chain {
                Some(chain) => format!("chain {} at ZooKeeper {}", chain.chain_path, chain.zk_hosts),
                None => "standalone".to_owned(),
            }
        );
        let expired = Arc::new(AtomicBool::new(false));
        let chain_threads = match &self.chain {
            Some(chain) => self.start_chain_threads(chain, &expired)?,
            None => Vec::new(),
        };
        for incoming in self.listener.incoming() {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            match incoming {
                Ok(stream) => self.admit(stream),
                Err(error) => {
                    warn!("accept failed: {error}");
                    thread::sleep(ACCEPT_ERROR_PAUSE);
                }
            }
        }
        self.close_all();
        for thread in chain_threads {
            if thread.join().is_err() {
                warn!("a chain thread panicked");
            }
        }
        info!("shut down");
        Ok(if expired.load(Ordering::SeqCst) { ServerEnd::SessionExpired } else { ServerEnd::Stopped })
    }

    /// The membership and replication sender threads of chain mode.
    fn start_chain_threads(
        &self,
        chain: &ChainConfig,
        expired: &Arc<AtomicBool>,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        let membership = {
            let chain = chain.clone();
            let replica = Arc::clone(&self.service.replica);
            let membership_wake = self.membership_wake.clone();
            let stopping = Arc::clone(&self.stopping);
            let shutdown = self.shutdown_handle()?;
            let expired = Arc::clone(expired);
            thread::Builder::new().name("membership".into()).spawn(move || {
                if membership::run(&chain, &replica, &membership_wake, &stopping) == MembershipEnd::Expired {
                    warn!("ZooKeeper session expired and --exit-on-expiry is set: exiting");
                    expired.store(true, Ordering::SeqCst);
                    shutdown.shutdown();
                }
            })?
        };
        let sender = {
            let replica = Arc::clone(&self.service.replica);
            let stopping = Arc::clone(&self.stopping);
            let frame_bytes_max = self.service.limits.frame_bytes_max;
            thread::Builder::new()
                .name("replication-sender".into())
                .spawn(move || replication::sender::run(&replica, &stopping, frame_bytes_max))?
        };
        let commit_expiry = {
            let replica = Arc::clone(&self.service.replica);
            let stopping = Arc::clone(&self.stopping);
            thread::Builder::new().name("commit-expiry".into()).spawn(move || {
                while !stopping.load(Ordering::SeqCst) {
                    thread::sleep(COMMIT_EXPIRY_PERIOD);
                    replica.expire_overdue_writes();
                }
            })?
        };
        Ok(vec![membership, sender, commit_expiry])
    }

    /// Starts a connection thread for `stream`, or refuses it over the limit.
    fn admit(&self, stream: TcpStream) {
        let peer =
            stream.peer_addr().map_or_else(|_| "unknown peer".to_owned(), |address| address.to_string());
        let limits = &self.service.limits;
        let clients = self.service.stats.clients();
        if clients >= limits.clients_max as u64 + OVER_LIMIT_HEADROOM {
            warn!("refusing {peer}: {} clients already connected", limits.clients_max);
            refuse(&stream, limits);
            return;
        }
        let over_limit = clients >= limits.clients_max as u64;
        let number = self.connections.next_number.fetch_add(1, Ordering::Relaxed);
        let registered = match stream.try_clone() {
            Ok(clone) => clone,
            Err(error) => {
                warn!("dropping {peer}: {error}");
                return;
            }
        };
        self.connections.sockets.lock().insert(number, registered);
        self.service.stats.client_connected();
        let service = Arc::clone(&self.service);
        let connections = Arc::clone(&self.connections);
        let stopping = Arc::clone(&self.stopping);
        let spawned = thread::Builder::new()
            .name(format!("conn-{number}"))
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                debug!("connection {number} from {peer}");
                if let Err(error) = serve_connection(stream, &service, &stopping, over_limit) {
                    debug!("connection {number} from {peer} ended: {error}");
                }
                connections.sockets.lock().remove(&number);
                service.stats.client_disconnected();
            });
        match spawned {
            Ok(handle) => {
                let mut threads = self.connections.threads.lock();
                threads.retain(|thread| !thread.is_finished());
                threads.push(handle);
            }
            Err(error) => {
                warn!("cannot start a thread for connection {number}: {error}");
                self.connections.sockets.lock().remove(&number);
                self.service.stats.client_disconnected();
            }
        }
    }

    fn close_all(&self) {
        for socket in self.connections.sockets.lock().values() {
            // Unblocks the thread's read; an error means it is closed already.
            let _ = socket.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *self.connections.threads.lock());
        for thread in threads {
            if thread.join().is_err() {
                warn!("a connection thread panicked");
            }
        }
    }
}

/// Tells a connection over `--max-clients` why it is refused, then closes it.
/// Bounded in time and bytes: the acceptor may be the one calling this.
fn refuse(mut stream: &TcpStream, limits: &Limits) {
    let response = error_response(
        0,
        ErrorCode::ERR_TOO_MANY_CLIENTS,
        format!("server is full ({} clients)", limits.clients_max),
    );
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
fn serve_connection(
    stream: TcpStream,
    service: &Service,
    stopping: &AtomicBool,
    over_limit: bool,
) -> Result<(), FrameError> {
    let limits = &service.limits;
    stream.set_nodelay(true).map_err(FrameError::Io)?;
    let first_frame_timeout = if over_limit { OVER_LIMIT_FIRST_FRAME_TIMEOUT } else { limits.idle_timeout };
    stream.set_read_timeout(Some(first_frame_timeout)).map_err(FrameError::Io)?;
    stream.set_write_timeout(Some(limits.write_timeout)).map_err(FrameError::Io)?;
    let (mut reader, writer) =
        wire::split(stream, limits.frame_bytes_max, CONNECTION_READ_BUFFER_BYTES).map_err(FrameError::Io)?;
    let port = ReplyPort::new(&writer, Arc::clone(&service.stats));
    let mut writer = ConnectionWriter { frames: writer, port, owed_limit: owed_reply_limit(service) };
    let mut first_frame = true;
    loop {
        let request = match reader.receive::<Request>() {
            Ok(Some(request)) => request,
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
                service.stats.record_error();
                writer.send(&response, service)?;
                return Err(FrameError::TooLarge { length, max });
            }
            Err(FrameError::Io(error))
                if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                debug!("closing idle connection");
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        if stopping.load(Ordering::SeqCst) {
            let response = error_response(0, ErrorCode::ERR_SHUTTING_DOWN, "server is shutting down");
            return writer.send(&response, service);
        }
        if first_frame && request.opcode.enum_value() == Ok(Opcode::OP_REPLICATE) {
            return receiver::serve(request, reader, writer.frames, &service.replica, stopping);
        }
        if over_limit {
            warn!("refusing a client: {} clients already connected", limits.clients_max);
            refuse(writer.frames.stream(), limits);
            return Ok(());
        }
        if first_frame {
            writer.frames.stream().set_read_timeout(Some(limits.idle_timeout)).map_err(FrameError::Io)?;
        }
        first_frame = false;
        match service.handle(request) {
            Reply::Now(response) => writer.send(&response, service)?,
            Reply::AfterCommit(pending) => writer.reply_after_commit(pending, service)?,
        }
        // On the way back to reading, answer a few other clients' committed
        // writes (see `commits`).
        service.replica.run_settled(SETTLED_REPLIES_PER_REQUEST);
    }
}

/// How many committed writes of other clients a connection thread answers
/// after each request of its own: 2 gave 4 % fewer puts than 8 (chain of
/// 3, 50 clients, 2 cores), no limit the same as 8.
const SETTLED_REPLIES_PER_REQUEST: usize = 8;

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
                service.stats.record_error();
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
