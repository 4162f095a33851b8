//! TLS (rustls, with ring as its crypto provider) over our blocking
//! sockets.
//!
//! A connection has one thread reading and, in turns, other threads
//! writing (a connection thread and its reply port; a link's sender and its
//! ack reader), so one `rustls::StreamOwned` per connection will not do:
//! its reads would block its writes. Instead the handshake runs on the
//! socket as a stream, then the session is shared: a writer encrypts a
//! frame under the session's lock and writes the ciphertext outside it (the
//! turns that order frames also order their records); the reader reads the
//! socket outside the lock and feeds what arrived into the session under
//! it. Nobody holds the lock across socket I/O, so a reader never waits for
//! a writer's blocked socket.
//!
//! Servers verify peers' certificates against `--tls-ca` (mutual TLS on
//! replication links); clients need only the CA to verify servers.

use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustls::client::ClientConnection;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::{ClientConfig, Connection, RootCertStore, ServerConfig};

/// The first byte of a TLS record carrying a handshake: what a TLS client
/// sends first. Our frames start with a length's high byte, which is 0 for
/// any frame under 16 MiB, so a server can tell a plaintext client apart.
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// Bytes read from the socket at a time (one full TLS record and its header).
const CIPHERTEXT_READ_BYTES: usize = 16 * 1024 + 512;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("cannot read certificates from {}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certificates)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|error| format!("cannot read a private key from {}: {error}", path.display()))
}

fn load_roots(ca: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for certificate in load_certificates(ca)? {
        roots
            .add(certificate)
            .map_err(|error| format!("{}: not a usable CA certificate: {error}", ca.display()))?;
    }
    Ok(Arc::new(roots))
}

fn server_name(address: &str) -> io::Result<ServerName<'static>> {
    let host = match address.rsplit_once(':') {
        Some((host, _port)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => address,
    };
    ServerName::try_from(host.to_owned()).map_err(|_| {
        io::Error::new(ErrorKind::InvalidInput, format!("{host} is not a valid TLS server name"))
    })
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, format!("TLS: {error}"))
}

/// A server's TLS: its own certificate for clients and peers, the CA that
/// peers' certificates must chain to, and its side as a link's client.
pub struct ServerTls {
    server: Arc<ServerConfig>,
    peer_client: Arc<ClientConfig>,
}

impl ServerTls {
    /// Loads `--tls-cert`, `--tls-key` and `--tls-ca`.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<ServerTls, String> {
        let roots = load_roots(ca)?;
        let certificates = load_certificates(cert)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|error| format!("TLS client verifier: {error}"))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certificates.clone(), load_key(key)?)
            .map_err(|error| format!("{} and {}: {error}", cert.display(), key.display()))?;
        let peer_client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(certificates, load_key(key)?)
            .map_err(|error| format!("{} and {}: {error}", cert.display(), key.display()))?;
        Ok(ServerTls { server: Arc::new(server), peer_client: Arc::new(peer_client) })
    }

    /// The server's side of a handshake on an accepted socket.
    pub fn accept(&self, tcp: &TcpStream) -> io::Result<Arc<TlsSession>> {
        let connection = ServerConnection::new(Arc::clone(&self.server)).map_err(tls_error)?;
        TlsSession::handshake(connection.into(), tcp)
    }

    /// A link's sending side: connects to the successor at `address`,
    /// showing our certificate and verifying its.
    pub fn connect_peer(&self, tcp: &TcpStream, address: &str) -> io::Result<Arc<TlsSession>> {
        let connection =
            ClientConnection::new(Arc::clone(&self.peer_client), server_name(address)?).map_err(tls_error)?;
        TlsSession::handshake(connection.into(), tcp)
    }
}

/// A client's TLS: the CA that servers' certificates must chain to.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls(..)")
    }
}

impl ClientTls {
    /// Loads `--tls-ca`.
    pub fn load(ca: &Path) -> Result<ClientTls, String> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(load_roots(ca)?)
            .with_no_client_auth();
        Ok(ClientTls { config: Arc::new(config) })
    }

    /// The client's side of a handshake with the server at `address`.
    pub fn connect(&self, tcp: &TcpStream, address: &str) -> io::Result<Arc<TlsSession>> {
        let connection =
            ClientConnection::new(Arc::clone(&self.config), server_name(address)?).map_err(tls_error)?;
        TlsSession::handshake(connection.into(), tcp)
    }
}

/// One connection's TLS state after its handshake, shared by its reader and
/// its writers.
pub struct TlsSession {
    connection: Mutex<Connection>,
}

impl TlsSession {
    /// Runs the handshake to its end on `tcp` (within the socket's
    /// timeouts), then lifts the buffer limit: frames are sealed whole.
    fn handshake(mut connection: Connection, tcp: &TcpStream) -> io::Result<Arc<TlsSession>> {
        let mut socket = tcp;
        while connection.is_handshaking() {
            connection.complete_io(&mut socket)?;
        }
        while connection.wants_write() {
            connection.write_tls(&mut socket)?;
        }
        connection.set_buffer_limit(None);
        Ok(Arc::new(TlsSession { connection: Mutex::new(connection) }))
    }

    /// Whether the peer showed a certificate (verified against the CA
    /// during the handshake): required of a replication link's sender.
    pub fn peer_has_certificate(&self) -> bool {
        self.connection.lock().peer_certificates().is_some_and(|certificates| !certificates.is_empty())
    }

    /// `plaintext` encrypted into records, ready for the socket. Callers
    /// write results to the socket in the order they got them.
    pub fn seal(&self, plaintext: &[u8]) -> io::Result<Vec<u8>> {
        let mut connection = self.connection.lock();
        connection.writer().write_all(plaintext)?;
        let mut ciphertext = Vec::with_capacity(plaintext.len() + 64);
        while connection.wants_write() {
            connection.write_tls(&mut ciphertext)?;
        }
        Ok(ciphertext)
    }
}

/// The reading half of a connection: plaintext from the socket (`raw`:
/// a `TcpStream`, or the server's socket with its frame deadline), through
/// the session when there is one.
pub struct SocketReader<R> {
    raw: R,
    tls: Option<Arc<TlsSession>>,
    /// Ciphertext read from the socket and not yet given to the session.
    pending: Vec<u8>,
    pending_start: usize,
}

impl<R: Read> SocketReader<R> {
    pub fn new(raw: R, tls: Option<Arc<TlsSession>>) -> SocketReader<R> {
        SocketReader { raw, tls, pending: Vec::new(), pending_start: 0 }
    }

    pub fn raw(&self) -> &R {
        &self.raw
    }

    pub fn raw_mut(&mut self) -> &mut R {
        &mut self.raw
    }

    fn read_through(&mut self, session: &TlsSession, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let mut connection = session.connection.lock();
                match connection.reader().read(buf) {
                    Ok(count) => return Ok(count),
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                    Err(error) => return Err(error),
                }
                if self.pending_start < self.pending.len() {
                    let fed = connection.read_tls(&mut &self.pending[self.pending_start..])?;
                    self.pending_start += fed;
                    connection.process_new_packets().map_err(tls_error)?;
                    continue;
                }
            }
            self.pending.resize(CIPHERTEXT_READ_BYTES, 0);
            let count = self.raw.read(&mut self.pending).inspect_err(|_| self.pending.clear())?;
            self.pending.truncate(count);
            self.pending_start = 0;
            if count == 0 {
                // The end of the socket: the session says whether it was
                // closed properly (a read of 0) or cut (an error).
                let mut connection = session.connection.lock();
                connection.read_tls(&mut &[][..])?;
                connection.process_new_packets().map_err(tls_error)?;
                return match connection.reader().read(buf) {
                    Err(error) if error.kind() == ErrorKind::WouldBlock => Ok(0),
                    other => other,
                };
            }
        }
    }
}

impl<R: Read> Read for SocketReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.clone() {
            None => self.raw.read(buf),
            Some(session) => self.read_through(&session, buf),
        }
    }
}

/// A client's connection: TCP, with TLS when asked for, read through a
/// buffer. Shared by the chaintable client and table-bench's Redis client.
pub struct ClientSocket {
    tcp: TcpStream,
    reader: BufReader<SocketReader<TcpStream>>,
    tls: Option<Arc<TlsSession>>,
}

impl ClientSocket {
    /// Connects to `address` (`host:port`), trying each address it resolves
    /// to; `timeout` limits connecting and, from then on, every read and
    /// write. With `tls`, the handshake runs before this returns (an
    /// `InvalidData` error: the server's certificate or protocol is wrong).
    pub fn connect(address: &str, timeout: Duration, tls: Option<&ClientTls>) -> io::Result<ClientSocket> {
        let mut last_error = io::Error::new(ErrorKind::NotFound, "address resolves to nothing");
        for socket_address in address.to_socket_addrs()? {
            match TcpStream::connect_timeout(&socket_address, timeout) {
                Ok(tcp) => {
                    tcp.set_nodelay(true)?;
                    tcp.set_read_timeout(Some(timeout))?;
                    tcp.set_write_timeout(Some(timeout))?;
                    let tls = tls.map(|tls| tls.connect(&tcp, address)).transpose()?;
                    let reader = BufReader::new(SocketReader::new(tcp.try_clone()?, tls.clone()));
                    return Ok(ClientSocket { tcp, reader, tls });
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Writes `bytes` whole (sealed first with TLS).
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.tls {
            None => (&self.tcp).write_all(bytes),
            Some(session) => (&self.tcp).write_all(&session.seal(bytes)?),
        }
    }

    pub fn reader(&mut self) -> &mut BufReader<SocketReader<TcpStream>> {
        &mut self.reader
    }

    /// Whether bytes were read from the socket and not consumed.
    pub fn has_buffered_bytes(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    /// The socket, for timeouts and probes.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}
