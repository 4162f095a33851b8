//! The `table-server` command line: its usage text and options.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::args::{
    CHAIN_PATH_DEFAULT, UsageError, byte_size, chain_path, number, parse_args, positive, text,
};
use crate::coord::acl::ZkIdentity;
use crate::coord::membership::ChainConfig;
use crate::limits::{
    Limits, SHARDS_PATH_DEFAULT, SNAPSHOT_LOG_BYTES_DEFAULT, TABLE_STRIPES_MAX, ZK_TIMEOUT_MS_DEFAULT,
};
use crate::replica::ReplicationLimits;
use crate::replica::durable::DurableOptions;
use crate::secure::ServerSecurity;
use crate::secure::secret::{Secret, ZOOKEEPER_DIGEST_USER};
use crate::secure::tls::ServerTls;
use crate::server::ServerConfig;
use crate::storage::syncer::FsyncPolicy;

pub const SERVER_USAGE: &str = "\
usage: table-server <port> <table-size> [<zk-host:port,...>] [options]

  <port>        TCP port to listen on (0 picks a free one; the log says which)
  <table-size>  number of lock stripes of the table (1..1048576)
  <zk-hosts>    ZooKeeper ensemble (host:port,...): join that chain; without it, standalone

options:
  --bind <addr>             address to listen on (default 127.0.0.1)
  --advertise <host:port>   address peers and clients use to reach us (default <bind>:<port>)
  --chain <path>            the chain's ZooKeeper node (default /chain)
  --shards <path>           the shard map's ZooKeeper node (default /shards): once it exists, this
                            server answers only keys of the slots it gives this chain (ERR_MOVED)
  --zk-timeout-ms <ms>      ZooKeeper session timeout; also how long we serve unconfirmed (default 5000)
  --exit-on-expiry          exit (code 3) when the session expires, instead of rejoining
  --queue-max <writes>      replication queue length (default 262144)
  --sent-max <writes>       Sent list length: forwarded, uncommitted writes (default 262144)
  --commit-timeout-ms <ms>  how long a write waits for the tail before the client retries (default 5000)
  --max-client-records <n>  clients remembered for exactly-once retries (default 100000)
  --max-memory <size>       as the head, refuse puts past this much memory (e.g. 512mb, 4gb; units
                            b, kb, mb, gb, tb are powers of 1024); deletes always pass (default: none)
  --max-clients <n>         concurrent client connections (default 10000; lowered to what the
                            open-files limit allows, with a log line)
  --max-clients-per-host <n>  connections one IP address may hold (default a tenth of --max-clients)
  --max-inflight <size>     bytes of partly received frames and replies being built, all
                            connections together; past it connections wait (default 256mb)
  --frame-timeout-ms <ms>   a frame must complete this long after its first byte (default 10000)
  --max-frame <bytes>       largest frame (default 67108864)
  --max-key <bytes>         largest key (default 16384)
  --max-value <bytes>       largest value (default 33554432)
  --idle-timeout-ms <ms>    close connections silent this long (default 300000)
  --write-timeout-ms <ms>   give up on a reply not written in this time (default 10000)
  --peer-secret-file <path> the chain's peer secret: links between members prove it both ways and
                            are authenticated; members write ZooKeeper with an identity derived
                            from it. Without it a chain member serves on loopback only
  --client-secret-file <path>  clients must prove this secret (their --secret-file) first
  --insecure                allow a non-loopback --bind in chain mode without --peer-secret-file
  --tls-cert <path>         TLS for clients and peers: this server's certificate chain (PEM) ...
  --tls-key <path>          ... its private key (PEM) ...
  --tls-ca <path>           ... and the CA peers' certificates must chain to (mutual TLS)
  --watch-history-writes <n>  recent writes kept for watchers to resume from, also after a
                            failover (default 100000; 0: no watches)
  --watch-history <size>    ... and at most this many bytes of them (default 64mb)
  --watch-lag-max <writes>  cut off a watcher this many committed writes behind (default 10000)
  --metrics-addr <host:port>  serve Prometheus metrics on http://<host:port>/metrics (default: off)
  --address-file <path>     once listening, write the address (host:port) there: for scripts and
                            tests that start a server on port 0 (written whole, by a rename)
  --data-dir <dir>          durability: log every write there before it counts as applied, so a
                            client is answered only once every member of the chain holds the write
                            on disk; a restart recovers the table from it (created mode 0700,
                            locked, bound to this chain)
  --fsync <when>            with --data-dir: always (a sync per write), batch (default: one sync per
                            batch of writes that arrived together; never an answer before its batch
                            is synced) or everysec (a sync a second, like Redis's appendfsync
                            everysec: A POWER LOSS OR OS CRASH CAN LOSE UP TO ONE SECOND OF
                            ACKNOWLEDGED WRITES)
  --snapshot-log-bytes <size>  with --data-dir: snapshot the table, and delete the log behind it,
                            once the log since the last snapshot is this long (default 256mb)
  --unsafe-read-anywhere    TESTING ONLY: answer reads in any role (breaks linearizability on
                            purpose, so table-check can show that it catches it)
  -V, --version             the version
  -h, --help                this text

Logging: RUST_LOG=debug|info|warn (default info, with the zookeeper crate at error). SIGINT/SIGTERM shut down cleanly.";

/// Parses `table-server` arguments (without the program name).
pub fn parse_server_args(args: impl IntoIterator<Item = OsString>) -> Result<ServerConfig, UsageError> {
    let known = [
        "bind",
        "advertise",
        "chain",
        "shards",
        "zk-timeout-ms",
        "exit-on-expiry",
        "queue-max",
        "sent-max",
        "commit-timeout-ms",
        "max-client-records",
        "max-memory",
        "peer-secret-file",
        "client-secret-file",
        "insecure",
        "tls-cert",
        "tls-key",
        "tls-ca",
        "unsafe-read-anywhere",
        "max-clients",
        "max-frame",
        "max-key",
        "max-value",
        "idle-timeout-ms",
        "write-timeout-ms",
        "metrics-addr",
        "max-clients-per-host",
        "max-inflight",
        "frame-timeout-ms",
        "data-dir",
        "fsync",
        "snapshot-log-bytes",
        "address-file",
        "watch-history-writes",
        "watch-history",
        "watch-lag-max",
    ];
    let parsed =
        parse_args(args, &known, &["exit-on-expiry", "unsafe-read-anywhere", "insecure"], |_, _| false)?;
    let (port, table_stripes, zk_hosts) = match parsed.positionals.as_slice() {
        [port, size] => (number::<u16>("<port>", port)?, number::<usize>("<table-size>", size)?, None),
        [port, size, hosts] => (
            number::<u16>("<port>", port)?,
            number::<usize>("<table-size>", size)?,
            Some(text("<zk-hosts>", hosts)?),
        ),
        _ => return Err("expected <port> <table-size> [<zk-hosts>]".to_owned().into()),
    };
    if !(1..=TABLE_STRIPES_MAX).contains(&table_stripes) {
        return Err(format!("<table-size> must be between 1 and {TABLE_STRIPES_MAX}").into());
    }
    let mut config = ServerConfig {
        bind: IpAddr::from([127, 0, 0, 1]),
        port,
        table_stripes,
        limits: Limits::default(),
        chain: zk_hosts.map(|zk_hosts| ChainConfig {
            zk_hosts,
            chain_path: CHAIN_PATH_DEFAULT.to_owned(),
            shards_path: SHARDS_PATH_DEFAULT.to_owned(),
            advertise: String::new(),
            session_timeout: Duration::from_millis(ZK_TIMEOUT_MS_DEFAULT),
            exit_on_expiry: false,
            zk_identity: None,
        }),
        replication: ReplicationLimits::default(),
        unsafe_read_anywhere: false,
        security: ServerSecurity::default(),
        metrics_addr: None,
        clients_max_given: false,
        durable: None,
        address_file: None,
    };
    let mut fsync = FsyncPolicy::Batch;
    let mut snapshot_log_bytes = SNAPSHOT_LOG_BYTES_DEFAULT;
    let mut secrets = SecretFiles::default();
    let chain_only = |name: &str| format!("--{name} needs chain mode (a <zk-hosts> argument)");
    for (name, value) in &parsed.options {
        let limits = &mut config.limits;
        let replication = &mut config.replication;
        if matches!(name.as_str(), "advertise" | "chain" | "shards" | "zk-timeout-ms" | "exit-on-expiry")
            && config.chain.is_none()
        {
            return Err(chain_only(name).into());
        }
        match name.as_str() {
            "advertise" => config.chain.as_mut().expect("checked").advertise = text(name, value)?,
            "chain" => config.chain.as_mut().expect("checked").chain_path = chain_path(name, value)?,
            "shards" => config.chain.as_mut().expect("checked").shards_path = chain_path(name, value)?,
            "zk-timeout-ms" => {
                config.chain.as_mut().expect("checked").session_timeout =
                    Duration::from_millis(positive(name, value)?)
            }
            "exit-on-expiry" => config.chain.as_mut().expect("checked").exit_on_expiry = true,
            "queue-max" => replication.queue_max = positive(name, value)?,
            "sent-max" => replication.sent_max = positive(name, value)?,
            "commit-timeout-ms" => replication.commit_timeout = Duration::from_millis(positive(name, value)?),
            "max-client-records" => replication.client_records_max = positive(name, value)?,
            "max-memory" => replication.memory_bytes_max = Some(byte_size(name, value)?),
            "unsafe-read-anywhere" => config.unsafe_read_anywhere = true,
            "peer-secret-file" => secrets.peer = Some(text(name, value)?),
            "client-secret-file" => secrets.client = Some(text(name, value)?),
            "insecure" => secrets.insecure = true,
            "tls-cert" => secrets.tls_cert = Some(text(name, value)?),
            "tls-key" => secrets.tls_key = Some(text(name, value)?),
            "tls-ca" => secrets.tls_ca = Some(text(name, value)?),
            "bind" => {
                config.bind =
                    text(name, value)?.parse().map_err(|_| format!("--bind: not an IP address: {value:?}"))?
            }
            "max-clients" => {
                limits.clients_max = positive(name, value)?;
                config.clients_max_given = true;
            }
            "max-frame" => limits.frame_bytes_max = positive(name, value)?,
            "max-key" => limits.key_bytes_max = positive(name, value)?,
            "max-value" => limits.value_bytes_max = positive(name, value)?,
            "idle-timeout-ms" => limits.idle_timeout = Duration::from_millis(positive(name, value)?),
            "write-timeout-ms" => limits.write_timeout = Duration::from_millis(positive(name, value)?),
            "metrics-addr" => config.metrics_addr = Some(socket_address(name, value)?),
            "max-clients-per-host" => limits.clients_per_host_max = Some(positive(name, value)?),
            "max-inflight" => limits.inflight_bytes_max = byte_size(name, value)?,
            "frame-timeout-ms" => limits.frame_timeout = Duration::from_millis(positive(name, value)?),
            "address-file" => config.address_file = Some(PathBuf::from(text(name, value)?)),
            "data-dir" => {
                let dir = PathBuf::from(text(name, value)?);
                config.durable = Some(DurableOptions { dir, fsync, snapshot_log_bytes });
            }
            "fsync" => {
                let given = text(name, value)?;
                fsync = FsyncPolicy::parse(&given)
                    .ok_or_else(|| format!("--fsync: expected always, batch or everysec, not {given:?}"))?;
            }
            "snapshot-log-bytes" => snapshot_log_bytes = byte_size(name, value)?,
            "watch-history-writes" => replication.history.writes_max = number(name, value)?,
            "watch-history" => replication.history.bytes_max = byte_size(name, value)?,
            "watch-lag-max" => limits.watch_lag_max = positive(name, value)?,
            other => unreachable!("option {other} is in the known list"),
        }
    }
    match config.durable.as_mut() {
        Some(durable) => {
            durable.fsync = fsync;
            durable.snapshot_log_bytes = snapshot_log_bytes;
        }
        None if parsed.options.iter().any(|(name, _)| name == "fsync" || name == "snapshot-log-bytes") => {
            return Err("--fsync and --snapshot-log-bytes need --data-dir".to_owned().into());
        }
        None => {}
    }
    if config.limits.frame_bytes_max > u32::MAX as usize {
        return Err("--max-frame must fit the 4-byte length prefix".to_owned().into());
    }
    let (security, zk_identity) = secrets.load(config.chain.is_some(), config.bind)?;
    config.security = security;
    if let Some(chain) = config.chain.as_mut() {
        chain.zk_identity = zk_identity;
    }
    Ok(config)
}

/// The security options as given, checked together.
#[derive(Default)]
struct SecretFiles {
    peer: Option<String>,
    client: Option<String>,
    insecure: bool,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_ca: Option<String>,
}

impl SecretFiles {
    /// Reads the files. In chain mode without a peer secret only a loopback
    /// bind is allowed (anyone who can reach the port could otherwise join
    /// or feed the chain), unless `--insecure` says the network is trusted.
    /// Also returns the ZooKeeper identity derived from the peer secret.
    fn load(
        self,
        chain_mode: bool,
        bind: IpAddr,
    ) -> Result<(ServerSecurity, Option<ZkIdentity>), UsageError> {
        let peer = self.peer.map(|path| Secret::load(Path::new(&path))).transpose()?;
        let client = self.client.map(|path| Secret::load(Path::new(&path))).transpose()?;
        if let (Some(peer), Some(client)) = (&peer, &client)
            && peer.same_as(client)
        {
            return Err(
                "--peer-secret-file and --client-secret-file hold the same secret: every client could \
                        pose as a chain member; give them different secrets"
                    .to_owned()
                    .into(),
            );
        }
        if chain_mode && peer.is_none() && !bind.is_loopback() && !self.insecure {
            return Err(format!(
                "--bind {bind} in chain mode needs --peer-secret-file: without it anyone who reaches this port \
                 can join or change the chain (--insecure to allow it on a trusted network)"
            )
            .into());
        }
        let tls = match (self.tls_cert, self.tls_key, self.tls_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => {
                Some(Arc::new(ServerTls::load(Path::new(&cert), Path::new(&key), Path::new(&ca))?))
            }
            _ => return Err("TLS needs all three of --tls-cert, --tls-key and --tls-ca".to_owned().into()),
        };
        let zk_identity = peer.as_ref().map(|secret| ZkIdentity {
            user: ZOOKEEPER_DIGEST_USER.to_owned(),
            password: secret.zookeeper_password(),
        });
        let security = ServerSecurity {
            peer_key: peer.as_ref().map(Secret::peer_key),
            client_key: client.as_ref().map(Secret::client_key),
            tls,
        };
        Ok((security, zk_identity))
    }
}

/// A `host:port` to listen on, resolved now (the first address it names).
fn socket_address(name: &str, value: &OsString) -> Result<SocketAddr, UsageError> {
    let text = text(name, value)?;
    let mut addresses = text.to_socket_addrs().map_err(|error| format!("--{name} {text:?}: {error}"))?;
    addresses.next().ok_or_else(|| format!("--{name} {text:?}: names no address").into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::test_words as args;

    #[test]
    fn server_positionals_and_options() {
        let config =
            parse_server_args(args(&["7000", "64", "--bind", "0.0.0.0", "--max-clients=8"])).unwrap();
        assert_eq!(config.port, 7000);
        assert_eq!(config.table_stripes, 64);
        assert_eq!(config.bind.to_string(), "0.0.0.0");
        assert_eq!(config.limits.clients_max, 8);
        assert_eq!(config.limits.frame_bytes_max, Limits::default().frame_bytes_max);
        assert_eq!(config.replication.memory_bytes_max, None, "no memory limit unless asked");
        assert_eq!(config.metrics_addr, None);
        let metrics = parse_server_args(args(&["7000", "64", "--metrics-addr", "127.0.0.1:9187"])).unwrap();
        assert_eq!(metrics.metrics_addr, Some("127.0.0.1:9187".parse().unwrap()));
        assert!(parse_server_args(args(&["7000", "64", "--metrics-addr", "9187"])).is_err(), "no host");
        let limited = parse_server_args(args(&["7000", "64", "--max-memory", "512mb"])).unwrap();
        assert_eq!(limited.replication.memory_bytes_max, Some(512 << 20));
        assert_eq!(config.limits.clients_per_host(), 1, "a tenth of 8, at least 1");
        let connections = parse_server_args(args(&[
            "7000",
            "64",
            "--max-inflight=64mb",
            "--frame-timeout-ms=500",
            "--max-clients-per-host=3",
        ]))
        .unwrap();
        assert_eq!(connections.limits.inflight_bytes_max, 64 << 20);
        assert_eq!(connections.limits.frame_timeout, Duration::from_millis(500));
        assert_eq!(connections.limits.clients_per_host(), 3);
        assert_eq!(limited.limits.clients_per_host(), 1000);
    }

    #[test]
    fn server_chain_mode() {
        let config = parse_server_args(args(&[
            "7000",
            "64",
            "zk1:2181,zk2:2181",
            "--exit-on-expiry",
            "--zk-timeout-ms",
            "1500",
            "--chain=/tables/a",
            "--advertise",
            "10.1.1.1:7000",
            "--sent-max",
            "100",
        ]))
        .unwrap();
        let chain = config.chain.unwrap();
        assert_eq!(chain.zk_hosts, "zk1:2181,zk2:2181");
        assert!(chain.exit_on_expiry);
        assert_eq!(chain.session_timeout, Duration::from_millis(1500));
        assert_eq!(chain.chain_path, "/tables/a");
        assert_eq!(chain.advertise, "10.1.1.1:7000");
        assert_eq!(config.replication.sent_max, 100);
        let defaults = parse_server_args(args(&["7000", "64", "zk:2181"])).unwrap().chain.unwrap();
        assert_eq!(defaults.chain_path, "/chain");
        assert!(!defaults.exit_on_expiry && defaults.advertise.is_empty());
    }

    #[test]
    fn server_errors() {
        assert!(parse_server_args(args(&["7000"])).is_err());
        assert!(parse_server_args(args(&["port", "64"])).is_err());
        assert!(parse_server_args(args(&["7000", "0"])).is_err());
        assert!(parse_server_args(args(&["7000", "64", "--frobnicate", "1"])).is_err());
        assert!(parse_server_args(args(&["7000", "64", "--max-frame"])).is_err());
        assert!(parse_server_args(args(&["7000", "64", "--max-clients", "0"])).is_err());
        assert!(parse_server_args(args(&["7000", "64", "--bind", "nowhere"])).is_err());
        assert!(parse_server_args(args(&["7000", "64", "--max-memory", "1.5gb"])).is_err());
        assert!(
            parse_server_args(args(&["7000", "64", "--advertise", "h:1"])).is_err(),
            "chain option without chain"
        );
        assert!(parse_server_args(args(&["7000", "64", "zk:1", "--chain", "nochain"])).is_err());
        assert!(parse_server_args(args(&["7000", "64", "zk:1", "--exit-on-expiry=yes"])).is_err());
        assert_eq!(parse_server_args(args(&["--help"])).unwrap_err(), UsageError::HelpRequested);
    }
}
