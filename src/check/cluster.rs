//! Real processes for fault testing: a ZooKeeper server and `table-server`
//! processes on free loopback ports. Used by `table-check` and by the
//! integration tests. Every process is stopped by its PID when its handle is
//! dropped, also when the caller panics.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::disks::DataDirs;
use super::netns::{NetHost, TestNetwork};
use super::secrets::ClusterSecrets;
use crate::client::connection::ClientOptions;
use crate::client::error::ClientError;
use crate::coord::handshake::{Probed, probe_host};
use crate::coord::shard_watch::create_map;
use crate::limits::{
    CHECK_JOIN_TIMEOUT, CHECK_SERVER_STARTUP_TIMEOUT, CHECK_TABLE_STRIPES, CHECK_ZOOKEEPER_STARTUP_TIMEOUT,
    SHARDS_PATH_DEFAULT,
};
use crate::proto::Statistics;
use crate::shard::map::ShardMap;

/// The Debian `zookeeper` package's configuration and jar.
const ZOOKEEPER_CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar";
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

/// ZooKeeper's tick: 500 ms allows sessions as short as one second.
const ZOOKEEPER_TICK_MS: &str = "500";

/// Sends `signal` (a name such as `STOP`, `CONT`, `TERM`) to process `pid`.
pub fn send_signal(pid: u32, signal: &str) -> io::Result<()> {
    let status =
        Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).stderr(Stdio::null()).status()?;
    if status.success() { Ok(()) } else { Err(io::Error::other(format!("kill -{signal} {pid} failed"))) }
}

/// A running `table-server`, its log captured in memory (for people: its
/// state is asked of it, see [`ServerProcess::stats`]).
pub struct ServerProcess {
    child: Child,
    /// `127.0.0.1:port`, as the server logged it.
    pub address: String,
    /// What a client of this server must prove: the client secret and TLS
    /// CA from its own arguments.
    client_options: ClientOptions,
    /// Everything the server logged so far, drained by a thread so the
    /// server never blocks on a full pipe.
    log: Arc<Mutex<String>>,
    /// Where to write the log when the server is stopped (table-check --logs).
    log_file: Option<PathBuf>,
    /// The network namespace the server runs in, if any; deleted (by
    /// dropping it) only after the server is stopped.
    net_host: Option<NetHost>,
    /// In a [`Cluster`] of several chains, the index of this server's.
    pub chain: usize,
    /// Its `--data-dir` in a durable [`Cluster`]: a restart reuses it.
    pub data_dir: Option<PathBuf>,
}

impl ServerProcess {
    /// Starts `<binary> 0 <table-size> <extra...>` and waits until it listens.
    pub fn start(binary: &Path, table_size: usize, extra: &[&str]) -> io::Result<ServerProcess> {
        ServerProcess::launch(Command::new(binary), None, table_size, extra)
    }

    /// Like [`ServerProcess::start`], with the server's open-files limit
    /// (soft and hard) set to `files` (to test `--max-clients` fitting it).
    pub fn start_with_open_files_limit(
        binary: &Path,
        table_size: usize,
        extra: &[&str],
        files: u64,
    ) -> io::Result<ServerProcess> {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(binary);
        let limit = libc::rlimit { rlim_cur: files, rlim_max: files };
        // SAFETY: runs in the child between fork and exec; setrlimit only
        // reads `limit` (copied into the closure) and is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        ServerProcess::launch(command, None, table_size, extra)
    }

    /// Like [`ServerProcess::start`], inside `net_host`'s namespace and
    /// listening on its address.
    pub fn start_in(
        net_host: NetHost,
        binary: &Path,
        table_size: usize,
        extra: &[&str],
    ) -> io::Result<ServerProcess> {
        let bind = net_host.address.to_string();
        let mut args = extra.to_vec();
        args.extend(["--bind", &bind]);
        ServerProcess::launch(net_host.command(binary), Some(net_host), table_size, &args)
    }

    fn launch(
        mut command: Command,
        net_host: Option<NetHost>,
        table_size: usize,
        extra: &[&str],
    ) -> io::Result<ServerProcess> {
        let client_options = client_options_for(extra);
        let address_file = unique_address_file();
        let mut child = command
            .arg("0")
            .arg(table_size.to_string())
            .args(extra)
            .arg("--address-file")
            .arg(&address_file)
            .env("RUST_LOG", "info,zookeeper=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let log_writer = Arc::clone(&log);
        thread::Builder::new().name("server-log".into()).spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = log_writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        })?;
        let mut server = ServerProcess {
            child,
            address: String::new(),
            client_options,
            log,
            log_file: None,
            net_host,
            chain: 0,
            data_dir: None,
        };
        server.address = server.await_address(&address_file)?;
        Ok(server)
    }

    /// The address the server wrote to its `--address-file` once
    /// listening; an error (with its log) if it exits or takes too long.
    fn await_address(&mut self, address_file: &Path) -> io::Result<String> {
        let deadline = Instant::now() + CHECK_SERVER_STARTUP_TIMEOUT;
        loop {
            if let Ok(address) = std::fs::read_to_string(address_file) {
                let _ = std::fs::remove_file(address_file);
                return Ok(address.trim().to_owned());
            }
            if self.child.try_wait()?.is_some() || Instant::now() >= deadline {
                return Err(io::Error::other(format!("server did not start; log:\n{}", self.log())));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes the server's log to `path` when it is stopped (dropped).
    pub fn save_log_on_stop(&mut self, path: PathBuf) {
        self.log_file = Some(path);
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The server's own `stats`, asked with its client secret and TLS CA
    /// (answered in any role and state).
    pub fn stats(&self) -> Result<Statistics, ClientError> {
        let options = ClientOptions { timeout: SERVER_STATS_TIMEOUT, ..self.client_options.clone() };
        crate::client::Client::new(&self.address, options).stats()
    }

    /// Asks the server for its `stats` until `done` holds for them; the
    /// last answer if it did within `limit`, `None` if not.
    pub fn wait_for_stats(&self, limit: Duration, done: impl Fn(&Statistics) -> bool) -> Option<Statistics> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(statistics) = self.stats()
                && done(&statistics)
            {
                return Some(statistics);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the server says it is a ready member of its chain (its
    /// role is `head`, `middle`, `tail` or `head+tail`); false if it did
    /// not within `limit`.
    pub fn wait_until_ready(&self, limit: Duration) -> bool {
        self.wait_for_stats(limit, |statistics| is_ready_role(&statistics.role)).is_some()
    }

    pub fn signal(&self, signal: &str) -> io::Result<()> {
        send_signal(self.pid(), signal)
    }

    /// The namespace the server runs in, if it has one.
    pub fn net_host(&self) -> Option<&NetHost> {
        self.net_host.as_ref()
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the server to exit; `None` if it still runs after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A paused process must be resumed to die promptly and be reaped.
        let _ = send_signal(self.pid(), "CONT");
        self.kill();
        if let Some(path) = &self.log_file
            && let Err(error) = std::fs::write(path, self.log())
        {
            log::warn!("cannot save the log of {} to {}: {error}", self.address, path.display());
        }
    }
}

/// How long one `stats` question to a server may take.
const SERVER_STATS_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether `role` (as `stats` reports it) is that of a ready chain member.
pub fn is_ready_role(role: &str) -> bool {
    matches!(role, "head" | "middle" | "tail" | "head+tail")
}

/// The client options that a server started with `args` requires: its
/// `--client-secret-file` and, with TLS, its `--tls-ca`. Files that cannot
/// be read give none (such a server exits at once anyway, as it should).
fn client_options_for(args: &[&str]) -> ClientOptions {
    let value = |name: &str| {
        let inline = format!("{name}=");
        // The last occurrence, as the server's own parsing takes it.
        args.iter().enumerate().rev().find_map(|(index, arg)| match arg.strip_prefix(&inline) {
            Some(value) => Some(PathBuf::from(value)),
            None if *arg == name => args.get(index + 1).map(PathBuf::from),
            None => None,
        })
    };
    let mut options = ClientOptions::default();
    let loaded = crate::cli::args::client_security(
        value("--client-secret-file"),
        value("--tls-ca"),
        |_| None,
        &mut options,
    );
    if loaded.is_err() { ClientOptions::default() } else { options }
}

/// A standalone ZooKeeper server with its own data directory, listening
/// on one address only.
pub struct ZooKeeperProcess {
    child: Option<Child>,
    ip: IpAddr,
    pub port: u16,
    data_dir: PathBuf,
}

impl ZooKeeperProcess {
    /// Starts ZooKeeper on a free loopback port and waits until it answers.
    pub fn start() -> io::Result<ZooKeeperProcess> {
        ZooKeeperProcess::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Starts ZooKeeper on a free port of `ip` and waits until it answers.
    pub fn start_on(ip: IpAddr) -> io::Result<ZooKeeperProcess> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        if !Path::new(ZOOKEEPER_JAR).exists() {
            return Err(io::Error::other("ZooKeeper is not installed: apt-get install zookeeper"));
        }
        let port = TcpListener::bind((ip, 0))?.local_addr()?.port();
        let data_dir = std::env::temp_dir().join(format!(
            "chaintable-zk-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&data_dir)?;
        let mut zookeeper = ZooKeeperProcess { child: None, ip, port, data_dir };
        zookeeper.restart()?;
        Ok(zookeeper)
    }

    /// `ip:port`, for servers and clients.
    pub fn address(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// Kills ZooKeeper (SIGKILL); its data stays for a restart.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts ZooKeeper again on the same port and data, and waits until it
    /// answers.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        // A configuration file, because only it can bind one address
        // (the command-line form listens on every interface).
        let config = self.data_dir.join("zoo.cfg");
        std::fs::write(
            &config,
            format!(
                "tickTime={ZOOKEEPER_TICK_MS}\ndataDir={}\nclientPort={}\nclientPortAddress={}\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok\nmaxClientCnxns=0\n",
                self.data_dir.display(),
                self.port,
                self.ip
            ),
        )?;
        let child = Command::new("java")
            .args(["-cp", ZOOKEEPER_CLASSPATH])
            .arg("-Xmx256m")
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + CHECK_ZOOKEEPER_STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            // `ruok` is answered before sessions are: wait for a handshake too.
            if self.answers() && probe_host(&self.address()) == Probed::ZooKeeper {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(io::Error::other(format!("ZooKeeper did not start on port {}", self.port)))
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((self.ip, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = String::new();
        stream.write_all(b"ruok").is_ok() && stream.read_to_string(&mut answer).is_ok() && answer == "imok"
    }
}

impl Drop for ZooKeeperProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Chains of servers on one ZooKeeper that can grow and shrink: one chain
/// at the default path, or several (`/chain1`...) sharing the key space
/// through a shard map at the default path.
pub struct Cluster {
    pub zookeeper: ZooKeeperProcess,
    /// The `table-server` binary.
    binary: PathBuf,
    /// Arguments after `0 <table-size> <zk>` for every server.
    server_args: Vec<String>,
    /// Live servers, oldest first.
    pub servers: Vec<ServerProcess>,
    /// Several chains: their paths, each server's `chain` indexing it;
    /// empty for one chain at the default path.
    chain_paths: Vec<String>,
    /// Where every server's log is saved when it stops, if anywhere.
    log_dir: Option<PathBuf>,
    /// The peer and client secrets every server is started with.
    pub secrets: ClusterSecrets,
    /// `--durable`: every server's data directory is made in here (removed
    /// after every server stopped).
    pub(super) data_dirs: Option<DataDirs>,
    /// With the partition nemesis: the network the servers' namespaces hang
    /// off. Declared last so it is removed after every server.
    network: Option<TestNetwork>,
}

impl Cluster {
    /// Starts ZooKeeper and `nodes` servers in each of `chains` chains, one
    /// after another, each waited for until it is a ready member; with more
    /// than one chain, the shard map that splits the slots evenly between
    /// them. With `network`, every server runs in its own namespace on it
    /// (see [`super::netns`]).
    pub fn start(
        binary: &Path,
        (nodes, chains): (usize, usize),
        server_args: &[String],
        log_dir: Option<PathBuf>,
        network: Option<TestNetwork>,
        durable: bool,
    ) -> io::Result<Cluster> {
        if let Some(directory) = &log_dir {
            std::fs::create_dir_all(directory)?;
        }
        let zookeeper_ip = network.as_ref().map_or(Ipv4Addr::LOCALHOST, TestNetwork::zookeeper_address);
        let secrets = ClusterSecrets::create()?;
        let mut cluster = Cluster {
            zookeeper: ZooKeeperProcess::start_on(IpAddr::V4(zookeeper_ip))?,
            binary: binary.to_owned(),
            server_args: server_args.iter().cloned().chain(secrets.server_args()).collect(),
            secrets,
            servers: Vec::new(),
            chain_paths: if chains > 1 {
                (1..=chains).map(|index| format!("/chain{index}")).collect()
            } else {
                Vec::new()
            },
            log_dir,
            data_dirs: if durable { Some(DataDirs::create()?) } else { None },
            network,
        };
        for chain in 0..chains.max(1) {
            for _ in 0..nodes {
                cluster.add_server(chain)?;
            }
        }
        if chains > 1 {
            let map =
                ShardMap::split_evenly(&cluster.chain_paths).map_err(|error| io::Error::other(error.0))?;
            create_map(&cluster.zookeeper.address(), SHARDS_PATH_DEFAULT, &map, Duration::from_secs(5))
                .map_err(io::Error::other)?;
        }
        Ok(cluster)
    }

    /// Starts one more server in chain `chain` (0 with one chain), with a
    /// new data directory if durable, and waits until it says it has joined.
    pub fn add_server(&mut self, chain: usize) -> io::Result<&ServerProcess> {
        let data_dir = self.data_dirs.as_mut().map(DataDirs::new_dir);
        let server = self.spawn(chain, data_dir)?;
        if !server.wait_until_ready(CHECK_JOIN_TIMEOUT) {
            return Err(io::Error::other(format!("{} did not join; log:\n{}", server.address, server.log())));
        }
        self.servers.push(server);
        Ok(self.servers.last().expect("just pushed"))
    }

    /// Starts a server of chain `chain` on `data_dir` (if any), without
    /// waiting for it to join.
    pub(super) fn spawn(&self, chain: usize, data_dir: Option<PathBuf>) -> io::Result<ServerProcess> {
        let zookeeper = self.zookeeper.address();
        let mut args: Vec<&str> = vec![&zookeeper];
        args.extend(self.server_args.iter().map(String::as_str));
        if let Some(path) = self.chain_paths.get(chain) {
            args.extend(["--chain", path]);
        }
        let directory = data_dir.as_ref().map(|path| path.to_string_lossy().into_owned());
        if let Some(directory) = &directory {
            args.extend(["--data-dir", directory]);
        }
        let mut server = match &self.network {
            Some(network) => {
                ServerProcess::start_in(network.add_host()?, &self.binary, CHECK_TABLE_STRIPES, &args)?
            }
            None => ServerProcess::start(&self.binary, CHECK_TABLE_STRIPES, &args)?,
        };
        if let Some(directory) = &self.log_dir {
            let name = format!("server-{}-{}.log", server.address.replace(':', "-"), server.pid());
            server.save_log_on_stop(directory.join(name));
        }
        (server.chain, server.data_dir) = (chain, data_dir);
        Ok(server)
    }

    pub fn addresses(&self) -> Vec<String> {
        self.servers.iter().map(|server| server.address.clone()).collect()
    }

    /// Each chain's path (`None`: the one chain at the default path) and
    /// its live servers' addresses (each chain's servers hold the same
    /// table; different chains different ones).
    pub fn addresses_by_chain(&self) -> Vec<(Option<String>, Vec<String>)> {
        (0..self.chain_paths.len().max(1))
            .map(|chain| {
                let members = self.servers.iter().filter(|server| server.chain == chain);
                (self.chain_paths.get(chain).cloned(), members.map(|server| server.address.clone()).collect())
            })
            .collect()
    }

    /// Each live server's role as its `stats` reports it (`None` if it does
    /// not answer).
    pub fn roles(&self) -> Vec<Option<String>> {
        let Ok(options) = self.client_options(Duration::from_secs(1)) else {
            return vec![None; self.servers.len()];
        };
        self.servers
            .iter()
            .map(|server| {
                crate::client::Client::new(&server.address, options.clone())
                    .stats()
                    .ok()
                    .map(|stats| stats.role)
            })
            .collect()
    }

    /// Options for a client of this cluster, with the client secret.
    pub fn client_options(&self, timeout: Duration) -> io::Result<ClientOptions> {
        self.secrets.client_options(ClientOptions { timeout, ..ClientOptions::default() })
    }

    /// Waits until every live server is a ready member of its chain, and
    /// every chain has one head.
    pub fn wait_all_ready(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let chains = self.chain_paths.len().max(1);
        while Instant::now() < deadline {
            let roles = self.roles();
            let ready = |role: &Option<String>| role.as_deref().is_some_and(is_ready_role);
            let heads = (0..chains).map(|chain| {
                let members = roles.iter().zip(&self.servers).filter(|(_, server)| server.chain == chain);
                members.filter(|(role, _)| matches!(role.as_deref(), Some("head" | "head+tail"))).count()
            });
            if roles.iter().all(ready) && heads.into_iter().all(|heads| heads == 1) {
                return true;
            }
            thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

/// A path no other server of this process, or of another, writes its
/// address to.
fn unique_address_file() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let index = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("chaintable-address-{}-{index}", std::process::id()))
}
