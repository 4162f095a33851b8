//! The TCP server: an acceptor thread hands each client connection to its own
//! named OS thread, which reads frames, asks the [`Service`] for a response
//! and writes it back with one write, or, for a write not yet committed,
//! leaves the reply to the thread that commits it (see [`reply_port`]).
//!
//! Shutdown (from [`ShutdownHandle`], e.g. on SIGTERM): set a flag, connect to
//! our own listener to unblock `accept`, shut down every open client socket so
//! blocked reads return, then join every connection thread.
//!
//! This file is the acceptor; the rest of the server:
//! - `connection`: one client connection's thread: frames in, replies out.
//! - [`service`]: turns one decoded request into one reply (now, or at the write's commit).
//! - [`slot_check`]: the shard map this server knows and whether its chain owns a request's keys.
//! - [`migration`]: the source head's migration thread (drives slot migrations).
//! - `watch`: a connection turned into a stream of committed changes (OP_WATCH).
//! - [`reply_port`]: answers a committed write on its client's socket from the committing thread.
//! - [`stats`]: the counters behind the `stats` command.
//! - [`fd_limit`]: raising the open-files limit so `--max-clients` connections fit.
//! - [`metrics`]: the Prometheus endpoint (`--metrics-addr`), with [`latency`] histograms.
//! - [`fd_limit`]: raising the open-files limit, and fitting `--max-clients` to it.
//! - [`inflight`]: the `--max-inflight` budget of frames being received and replies being built.

mod address_file;
mod client_auth;
mod connection;
pub mod fd_limit;
pub mod inflight;
pub mod latency;
pub mod metrics;
pub mod migration;
mod operations;
pub mod reply_port;
pub mod service;
pub mod slot_check;
pub mod stats;
mod watch;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use log::{debug, info, warn};
use parking_lot::Mutex;

use crossbeam_channel::Receiver;

use self::connection::{refuse, serve_connection};
use self::service::{PeerSecurity, Service};
use self::slot_check::ShardGuard;
use crate::chain::Check;
use crate::coord::membership::{self, ChainConfig, MembershipEnd};
use crate::coord::shard_watch::MapSession;
use crate::limits::{
    ACCEPT_ERROR_PAUSE, COMMIT_EXPIRY_PERIOD, CONNECTION_STACK_BYTES, Limits, OVER_LIMIT_HEADROOM,
    display_bytes,
};
use crate::replica::durable::DurableOptions;
use crate::replica::{Replica, ReplicationLimits};
use crate::replication::{self, LinkSettings};
use crate::secure::ServerSecurity;

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
    /// Secrets and TLS (see [`ServerSecurity`]).
    pub security: ServerSecurity,
    /// Where to serve Prometheus metrics (`--metrics-addr`); `None`: nowhere.
    pub metrics_addr: Option<SocketAddr>,
    /// `--max-clients` was given: if the open-files limit cannot hold that
    /// many, say so; the default is quietly lowered to what fits.
    pub clients_max_given: bool,
    /// `--data-dir` and its options; `None`: in memory only.
    pub durable: Option<DurableOptions>,
    /// `--address-file`: where to write the address we listen on, once
    /// listening (scripts and tests that start a server on port 0 read it
    /// there instead of from the log).
    pub address_file: Option<PathBuf>,
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
    /// Each open client socket (shared with its thread), by connection number.
    sockets: Mutex<HashMap<u64, Arc<TcpStream>>>,
    /// Open connections per peer address, for `--max-clients-per-host`.
    per_host: Mutex<HashMap<IpAddr, usize>>,
    /// Every connection thread not yet joined.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Numbers connections for the registry and for thread names.
    next_number: AtomicU64,
}

impl Connections {
    /// Removes connection `number` from `host` from the registry.
    fn forget(&self, number: u64, host: IpAddr) {
        self.sockets.lock().remove(&number);
        let mut per_host = self.per_host.lock();
        if let Some(count) = per_host.get_mut(&host) {
            *count -= 1;
            if *count == 0 {
                per_host.remove(&host);
            }
        }
    }
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
    /// The metrics endpoint's socket, bound with the client one so that a
    /// busy port fails the start.
    metrics_listener: Option<TcpListener>,
    /// `--address-file` (see [`ServerConfig::address_file`]).
    address_file: Option<PathBuf>,
    /// Chain mode: wakes the shard map thread (see `slot_check`).
    shard_map_wake: Option<Receiver<()>>,
}

impl Server {
    /// Binds the listening socket; nothing is served until [`Server::run`].
    pub fn bind(config: &ServerConfig) -> io::Result<Server> {
        let listener = TcpListener::bind((config.bind, config.port))?;
        let metrics_listener = match config.metrics_addr {
            Some(address) => Some(TcpListener::bind(address).map_err(|error| {
                io::Error::new(error.kind(), format!("--metrics-addr {address}: {error}"))
            })?),
            None => None,
        };
        let (wake_sender, membership_wake) = crossbeam_channel::bounded(1);
        let mut replication = config.replication.clone();
        replication.writers_max = config.limits.clients_max + 1;
        let bug = config.unsafe_read_anywhere.then_some(Check::ReadAtTail);
        let chain_path = config.chain.as_ref().map_or("", |chain| chain.chain_path.as_str());
        let mut replica = Replica::with_bug(config.table_stripes, chain_path, replication, wake_sender, bug);
        if let Some(durable) = &config.durable {
            let chain = if chain_path.is_empty() { "standalone" } else { chain_path };
            replica.open_durable(durable.clone(), chain)?;
        }
        let mut chain = config.chain.clone();
        if let Some(chain) = chain.as_mut().filter(|chain| chain.advertise.is_empty()) {
            let mut address = listener.local_addr()?;
            if address.ip().is_unspecified() {
                address.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
                warn!("listening on all interfaces; advertising {address} (set --advertise for other hosts)");
            }
            chain.advertise = address.to_string();
        }
        let mut service = Service::new(Arc::new(replica), config.limits.clone());
        service.metrics_address = metrics_listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let mut shard_map_wake = None;
        if let Some(chain) = &chain {
            let (guard, woken) = ShardGuard::new(&chain.chain_path, Arc::clone(&service.replica.markers));
            service.shards = Some(guard);
            shard_map_wake = Some(woken);
        }
        service.peer_security = PeerSecurity::of(
            chain.is_some(),
            config.security.peer_key.is_some(),
            listener.local_addr()?.ip().is_loopback(),
        );
        service.link = Arc::new(LinkSettings {
            chain_path: chain.as_ref().map(|chain| chain.chain_path.clone()).unwrap_or_default(),
            security: config.security.clone(),
            limits: config.limits.clone(),
        });
        Ok(Server {
            listener,
            service: Arc::new(service),
            stopping: Arc::new(AtomicBool::new(false)),
            connections: Arc::default(),
            chain,
            membership_wake,
            metrics_listener,
            address_file: config.address_file.clone(),
            shard_map_wake,
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
        if let Some(path) = &self.address_file {
            address_file::write(path, self.local_addr()?)?;
        }
        match self.service.replica.limits.memory_bytes_max {
            Some(max) => info!("memory limit: --max-memory {} ({max} bytes)", display_bytes(max)),
            None => info!(
                "no memory limit (--max-memory): the table may grow until the machine runs out of memory"
            ),
        }
        self.log_security();
        let expired = Arc::new(AtomicBool::new(false));
        let mut chain_threads = match &self.chain {
            Some(chain) => self.start_chain_threads(chain, &expired)?,
            None => Vec::new(),
        };
        chain_threads.push(self.start_key_expiry_thread()?);
        chain_threads.extend(self.service.replica.start_disk_threads(&self.stopping)?);
        let metrics_thread = self.start_metrics_thread()?;
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
        if let Some((thread, address)) = metrics_thread {
            // Wake its accept; if this fails it is awake already.
            let _ = TcpStream::connect_timeout(&address, Duration::from_secs(1));
            if thread.join().is_err() {
                warn!("the metrics thread panicked");
            }
        }
        for thread in chain_threads {
            if thread.join().is_err() {
                warn!("a chain thread panicked");
            }
        }
        info!("shut down");
        Ok(if expired.load(Ordering::SeqCst) { ServerEnd::SessionExpired } else { ServerEnd::Stopped })
    }

    /// One line on who may change the chain and read the table.
    fn log_security(&self) {
        let security = &self.service.link.security;
        let tls = if security.tls.is_some() { "TLS (mutual between peers)" } else { "no TLS" };
        let clients = if security.client_key.is_some() {
            "clients must prove the client secret"
        } else {
            "any client may connect"
        };
        match self.service.peer_security {
            PeerSecurity::Standalone => info!("security: {clients}, {tls}"),
            PeerSecurity::Secret => {
                info!("security: peers authenticated by the peer secret, {clients}, {tls}")
            }
            PeerSecurity::LoopbackOnly => info!(
                "security: no --peer-secret-file, so serving on loopback only: any local process may join or \
                 feed this chain; {clients}, {tls}"
            ),
            PeerSecurity::Insecure => warn!(
                "security: --insecure: no --peer-secret-file on a non-loopback address: anyone who reaches this \
                 port may join or feed this chain; {clients}, {tls}"
            ),
        }
    }

    /// The metrics endpoint's thread, and the address that wakes it, if
    /// `--metrics-addr` was given.
    fn start_metrics_thread(&self) -> io::Result<Option<(JoinHandle<()>, SocketAddr)>> {
        let Some(listener) = &self.metrics_listener else {
            return Ok(None);
        };
        let mut address = listener.local_addr()?;
        info!("metrics at http://{address}/metrics");
        if address.ip().is_unspecified() {
            address.set_ip(if address.is_ipv4() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            });
        }
        let listener = listener.try_clone()?;
        let service = Arc::clone(&self.service);
        let stopping = Arc::clone(&self.stopping);
        let thread = thread::Builder::new()
            .name("metrics".into())
            .spawn(move || metrics::serve(&listener, &service, &stopping))?;
        Ok(Some((thread, address)))
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
                if membership::run(&chain, &*replica, &membership_wake, &stopping) == MembershipEnd::Expired {
                    warn!("ZooKeeper session expired and --exit-on-expiry is set: exiting");
                    expired.store(true, Ordering::SeqCst);
                    shutdown.shutdown();
                }
            })?
        };
        let sender = {
            let replica = Arc::clone(&self.service.replica);
            let stopping = Arc::clone(&self.stopping);
            let settings = Arc::clone(&self.service.link);
            thread::Builder::new()
                .name("replication-sender".into())
                .spawn(move || replication::sender::run(&replica, &stopping, &settings))?
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
        let mut threads = vec![membership, sender, commit_expiry];
        if let (Some(guard), Some(woken)) = (&self.service.shards, &self.shard_map_wake) {
            threads.push(slot_check::start_map_thread(
                &chain.zk_hosts,
                &chain.shards_path,
                Arc::clone(guard),
                woken.clone(),
                Arc::clone(&self.stopping),
            )?);
            let context = migration::MigrationContext {
                replica: Arc::clone(&self.service.replica),
                guard: Arc::clone(guard),
                status: Arc::clone(&self.service.migration),
                settings: Arc::clone(&self.service.link),
                zk: MapSession::new(&chain.zk_hosts, &chain.shards_path, chain.session_timeout),
                chain_path: chain.chain_path.clone(),
                me: chain.advertise.clone(),
            };
            threads.push(migration::start(context, Arc::clone(&self.stopping))?);
        }
        Ok(threads)
    }

    /// Starts the thread with which the head (or a standalone server)
    /// deletes the keys whose deadline passed, every
    /// [`COMMIT_EXPIRY_PERIOD`]: how late after its deadline a key is
    /// deleted, at most.
    fn start_key_expiry_thread(&self) -> io::Result<JoinHandle<()>> {
        let replica = Arc::clone(&self.service.replica);
        let stopping = Arc::clone(&self.stopping);
        thread::Builder::new().name("key-expiry".into()).spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                thread::sleep(COMMIT_EXPIRY_PERIOD);
                replica.expire_due();
            }
        })
    }

    /// Starts a connection thread for `stream`, or refuses it over a limit.
    ///
    /// A connection over `--max-clients` or `--max-clients-per-host` (but
    /// within [`OVER_LIMIT_HEADROOM`] of it) is still served for its first
    /// frame, in case it is a predecessor's replication link; a client is
    /// then refused with the reason.
    fn admit(&self, stream: TcpStream) {
        let peer_address = stream.peer_addr().ok();
        let peer = peer_address.map_or_else(|| "unknown peer".to_owned(), |address| address.to_string());
        let host = peer_address.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |address| address.ip());
        let limits = &self.service.limits;
        let clients = self.service.stats.clients();
        let host_clients = self.connections.per_host.lock().get(&host).copied().unwrap_or(0);
        let full = format!("server is full ({} clients)", limits.clients_max);
        let host_full = format!(
            "too many connections from {host} ({host_clients}; --max-clients-per-host {})",
            limits.clients_per_host()
        );
        if clients >= limits.clients_max as u64 + OVER_LIMIT_HEADROOM
            || host_clients >= limits.clients_per_host() + OVER_LIMIT_HEADROOM as usize
        {
            let reason = if clients >= limits.clients_max as u64 { full } else { host_full };
            warn!("refusing {peer}: {reason}");
            refuse(&stream, limits, &reason);
            return;
        }
        let over_limit = if clients >= limits.clients_max as u64 {
            Some(full)
        } else {
            (host_clients >= limits.clients_per_host()).then_some(host_full)
        };
        let number = self.connections.next_number.fetch_add(1, Ordering::Relaxed);
        let stream = Arc::new(stream);
        self.connections.sockets.lock().insert(number, Arc::clone(&stream));
        *self.connections.per_host.lock().entry(host).or_insert(0) += 1;
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
                connections.forget(number, host);
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
                self.connections.forget(number, host);
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
