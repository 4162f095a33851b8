//! The TCP server: an acceptor thread hands each client connection to its own
//! named OS thread, which reads frames, asks the [`Service`] for a response
//! and writes it back with one write.
//!
//! Shutdown (from [`ShutdownHandle`], e.g. on SIGTERM): set a flag, connect to
//! our own listener to unblock `accept`, shut down every open client socket so
//! blocked reads return, then join every connection thread.

use std::collections::HashMap;
use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use log::{debug, info, warn};
use parking_lot::Mutex;

use crate::limits::{CONNECTION_STACK_BYTES, Limits};
use crate::proto::{ErrorCode, Response};
use crate::service::{Service, error_response};
use crate::wire::{FrameError, encode_frame, read_frame};

/// Read buffer of a connection: most requests fit, and thousands of idle
/// connections stay cheap.
const CONNECTION_READ_BUFFER_BYTES: usize = 8 * 1024;

/// A connection's frame buffers are shrunk back to this after a large frame,
/// so one big `gettable` does not keep megabytes per idle connection.
const CONNECTION_BUFFER_KEEP_BYTES: usize = 1024 * 1024;

/// After an accept error (e.g. out of file descriptors) the acceptor waits
/// this long instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// How long a refused (over `--max-clients`) connection is given to take its
/// error reply before it is closed. Closing with unread request bytes would
/// reset the connection and could destroy the reply before the client reads it.
const REFUSAL_LINGER: Duration = Duration::from_millis(100);

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
}

impl Server {
    /// Binds the listening socket; nothing is served until [`Server::run`].
    pub fn bind(config: &ServerConfig) -> io::Result<Server> {
        let listener = TcpListener::bind((config.bind, config.port))?;
        Ok(Server {
            listener,
            service: Arc::new(Service::new(config.table_stripes, config.limits.clone())),
            stopping: Arc::new(AtomicBool::new(false)),
            connections: Arc::default(),
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
    pub fn run(self) -> io::Result<()> {
        info!("listening on {} ({} table stripes)", self.local_addr()?, self.service.table.stripe_count());
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
        info!("shut down");
        Ok(())
    }

    /// Starts a connection thread for `stream`, or refuses it over the limit.
    fn admit(&self, stream: TcpStream) {
        let peer =
            stream.peer_addr().map_or_else(|_| "unknown peer".to_owned(), |address| address.to_string());
        let limits = &self.service.limits;
        if self.service.stats.clients() >= limits.clients_max as u64 {
            warn!("refusing {peer}: {} clients already connected", limits.clients_max);
            refuse(stream, limits);
            return;
        }
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
                if let Err(error) = serve_connection(stream, &service, &stopping) {
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
fn refuse(mut stream: TcpStream, limits: &Limits) {
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
        let _ = stream.set_read_timeout(Some(REFUSAL_LINGER));
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink), Ok(count) if count > 0) {}
    }
}

/// Reads requests and writes responses until the peer closes, a frame cannot
/// be read, or the server stops.
fn serve_connection(stream: TcpStream, service: &Service, stopping: &AtomicBool) -> Result<(), FrameError> {
    let limits = &service.limits;
    stream.set_nodelay(true).map_err(FrameError::Io)?;
    stream.set_read_timeout(Some(limits.idle_timeout)).map_err(FrameError::Io)?;
    stream.set_write_timeout(Some(limits.write_timeout)).map_err(FrameError::Io)?;
    let mut reader =
        BufReader::with_capacity(CONNECTION_READ_BUFFER_BYTES, stream.try_clone().map_err(FrameError::Io)?);
    let mut writer = stream;
    let mut body = Vec::new();
    let mut reply = Vec::new();
    loop {
        match read_frame(&mut reader, limits.frame_bytes_max, &mut body) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(FrameError::TooLarge { length, max }) => {
                // The body is not read, so the stream cannot be resynchronised:
                // say why, then close.
                let response = error_response(
                    0,
                    ErrorCode::ERR_TOO_LARGE,
                    format!("frame of {length} bytes is over the maximum of {max} bytes; closing"),
                );
                service.stats.record_error();
                send(&mut writer, &response, service, &mut reply)?;
                return Err(FrameError::TooLarge { length, max });
            }
            Err(FrameError::Io(error))
                if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                debug!("closing idle connection");
                return Ok(());
            }
            Err(error) => return Err(error),
        }
        if stopping.load(Ordering::SeqCst) {
            let response = error_response(0, ErrorCode::ERR_SHUTTING_DOWN, "server is shutting down");
            return send(&mut writer, &response, service, &mut reply);
        }
        let response = service.handle_frame(&body);
        send(&mut writer, &response, service, &mut reply)?;
        shrink_if_large(&mut body);
        shrink_if_large(&mut reply);
    }
}

/// Writes `response` as one frame with one write; a response too large for a
/// frame is replaced by an error saying so.
fn send(
    writer: &mut TcpStream,
    response: &Response,
    service: &Service,
    frame: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let frame_bytes_max = service.limits.frame_bytes_max;
    match encode_frame(response, frame_bytes_max, frame) {
        Ok(()) => {}
        Err(FrameError::TooLarge { length, max }) => {
            service.stats.record_error();
            let refusal = error_response(
                response.request_id,
                ErrorCode::ERR_RESPONSE_TOO_LARGE,
                format!("the reply would be {length} bytes, over the maximum frame of {max} bytes"),
            );
            encode_frame(&refusal, frame_bytes_max, frame)?;
        }
        Err(error) => return Err(error),
    }
    writer.write_all(frame).map_err(FrameError::Io)
}

fn shrink_if_large(buffer: &mut Vec<u8>) {
    if buffer.capacity() > CONNECTION_BUFFER_KEEP_BYTES {
        buffer.clear();
        buffer.shrink_to(CONNECTION_BUFFER_KEEP_BYTES);
    }
}
