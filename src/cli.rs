//! Command-line parsing for `table-server` and `table-client`, kept in the
//! library so it is tested like everything else and the mains stay thin.
//!
//! Options are `--name value` or `--name=value`. For the client, option
//! parsing stops at the first word of the command, so a value may start with
//! `--`.

use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::ffi::OsStringExt;
use std::str::FromStr;
use std::time::Duration;

use crate::client::connection::ClientOptions;
use crate::limits::{Limits, TABLE_STRIPES_MAX};
use crate::membership::ChainConfig;
use crate::replica::ReplicationLimits;
use crate::server::ServerConfig;

pub const SERVER_USAGE: &str = "\
usage: table-server <port> <table-size> [<zk-host:port,...>] [options]

  <port>        TCP port to listen on (0 picks a free one; the log says which)
  <table-size>  number of lock stripes of the table (1..1048576)
  <zk-hosts>    ZooKeeper ensemble (host:port,...): join that chain; without it, standalone

options:
  --bind <addr>             address to listen on (default 127.0.0.1)
  --advertise <host:port>   address peers and clients use to reach us (default <bind>:<port>)
  --chain <path>            the chain's ZooKeeper node (default /chain)
  --zk-timeout-ms <ms>      ZooKeeper session timeout; also how long we serve unconfirmed (default 5000)
  --exit-on-expiry          exit (code 3) when the session expires, instead of rejoining
  --queue-max <writes>      replication queue length (default 65536)
  --sent-max <writes>       Sent list length: forwarded, uncommitted writes (default 262144)
  --commit-timeout-ms <ms>  how long a write waits for the tail before the client retries (default 5000)
  --max-client-records <n>  clients remembered for exactly-once retries (default 100000)
  --max-clients <n>         concurrent client connections (default 10000)
  --max-frame <bytes>       largest frame (default 67108864)
  --max-key <bytes>         largest key (default 16384)
  --max-value <bytes>       largest value (default 33554432)
  --idle-timeout-ms <ms>    close connections silent this long (default 300000)
  --write-timeout-ms <ms>   give up on a reply not written in this time (default 10000)
  --unsafe-read-anywhere    TESTING ONLY: answer reads in any role (breaks linearizability on
                            purpose, so table-check can show that it catches it)
  --help                    this text

Logging: RUST_LOG=debug|info|warn (default info, with the zookeeper crate at error). SIGINT/SIGTERM shut down cleanly.";

pub const CLIENT_USAGE: &str = "\
usage: table-client [options] <zk-host:port,...> [command...]
       table-client [options] --server <host:port> [command...]

With ZooKeeper hosts: chain mode. Writes go to the chain's head, reads and stats to
its tail; a refused or failed request is retried (on the new head or tail) until
the timeout. With --server: only that server, no retries (in a chain it refuses
what its role does not allow, unless --local).
With no command: an interactive shell ('help' lists the commands).
With a command, runs it and exits: 0 success, 1 key absent (get, del), 2 failure.

options:
  --chain <path>         the chain's ZooKeeper node (default /chain)
  --server <host:port>   talk to one server directly
  --local                with --server: reads answer from that server's own table
                         whatever its chain role (may be stale; for comparing replicas)
  --timeout-ms <ms>      connect and reply timeout; in chain mode also the time
                         a command may take, retries included (default 10000)
  --max-frame <bytes>    largest reply frame accepted (default 67108864)
  --help                 this text

commands: put <key> <value> | get <key> | del <key> | size | getkeys | gettable | stats";

/// What the parser could not accept; printed with the usage text, exit 2.
#[derive(Debug, PartialEq)]
pub enum UsageError {
    /// `--help` was asked for: print usage, exit 0.
    HelpRequested,
    Invalid(String),
}

/// What a binary does with its parsed arguments: carry on with them; or,
/// for `--help`, print the usage and exit 0; or print the reason and the
/// usage on stderr and exit 2.
pub fn arguments_or_exit<T>(
    program: &str,
    usage: &str,
    parsed: Result<T, UsageError>,
) -> Result<T, std::process::ExitCode> {
    match parsed {
        Ok(arguments) => Ok(arguments),
        Err(UsageError::HelpRequested) => {
            println!("{usage}");
            Err(std::process::ExitCode::SUCCESS)
        }
        Err(UsageError::Invalid(message)) => {
            eprintln!("{program}: {message}\n\n{usage}");
            Err(std::process::ExitCode::from(2))
        }
    }
}

impl From<String> for UsageError {
    fn from(message: String) -> Self {
        UsageError::Invalid(message)
    }
}

/// Options that take no value.
const FLAGS: [&str; 3] = ["exit-on-expiry", "local", "unsafe-read-anywhere"];

/// Default chain node in ZooKeeper.
pub const CHAIN_PATH_DEFAULT: &str = "/chain";

/// Default ZooKeeper session timeout.
pub const ZK_TIMEOUT_MS_DEFAULT: u64 = 5000;

/// Splits `--name=value` / `--name`; `None` for a word that is not an option.
fn split_option(arg: &OsString) -> Option<(String, Option<OsString>)> {
    let text = arg.to_str()?;
    let name = text.strip_prefix("--")?;
    if name.is_empty() {
        return None;
    }
    Some(match name.split_once('=') {
        Some((name, value)) => (name.to_owned(), Some(value.into())),
        None => (name.to_owned(), None),
    })
}

/// Pulls options and positional words apart. `command_starts_after` is how
/// many positional words may come before the command, after which every
/// word is positional.
pub(crate) struct ParsedArgs {
    pub(crate) options: Vec<(String, OsString)>,
    pub(crate) positionals: Vec<OsString>,
}

pub(crate) fn parse_args(
    args: impl IntoIterator<Item = OsString>,
    known_options: &[&str],
    command_starts_after: impl Fn(&[(String, OsString)], usize) -> bool,
) -> Result<ParsedArgs, UsageError> {
    let mut parsed = ParsedArgs { options: Vec::new(), positionals: Vec::new() };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if command_starts_after(&parsed.options, parsed.positionals.len()) {
            parsed.positionals.push(arg);
            parsed.positionals.extend(args);
            break;
        }
        match split_option(&arg) {
            Some((name, _)) if name == "help" => return Err(UsageError::HelpRequested),
            Some((name, inline_value)) => {
                if !known_options.contains(&name.as_str()) {
                    return Err(format!("unknown option --{name}").into());
                }
                let value = match inline_value {
                    Some(_) if FLAGS.contains(&name.as_str()) => {
                        return Err(format!("--{name} takes no value").into());
                    }
                    Some(value) => value,
                    None if FLAGS.contains(&name.as_str()) => OsString::new(),
                    None => args.next().ok_or_else(|| format!("--{name} needs a value"))?,
                };
                parsed.options.push((name, value));
            }
            None => parsed.positionals.push(arg),
        }
    }
    Ok(parsed)
}

pub(crate) fn text(name: &str, value: &OsString) -> Result<String, UsageError> {
    value.to_str().map(str::to_owned).ok_or_else(|| format!("{name}: not valid UTF-8").into())
}

pub(crate) fn number<T: FromStr>(name: &str, value: &OsString) -> Result<T, UsageError> {
    let value = text(name, value)?;
    value.parse().map_err(|_| format!("{name}: '{value}' is not a valid number").into())
}

/// Parses `table-server` arguments (without the program name).
pub fn parse_server_args(args: impl IntoIterator<Item = OsString>) -> Result<ServerConfig, UsageError> {
    let known = [
        "bind",
        "advertise",
        "chain",
        "zk-timeout-ms",
        "exit-on-expiry",
        "queue-max",
        "sent-max",
        "commit-timeout-ms",
        "max-client-records",
        "unsafe-read-anywhere",
        "max-clients",
        "max-frame",
        "max-key",
        "max-value",
        "idle-timeout-ms",
        "write-timeout-ms",
    ];
    let parsed = parse_args(args, &known, |_, _| false)?;
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
            advertise: String::new(),
            session_timeout: Duration::from_millis(ZK_TIMEOUT_MS_DEFAULT),
            exit_on_expiry: false,
        }),
        replication: ReplicationLimits::default(),
        unsafe_read_anywhere: false,
    };
    let chain_only = |name: &str| format!("--{name} needs chain mode (a <zk-hosts> argument)");
    for (name, value) in &parsed.options {
        let limits = &mut config.limits;
        let replication = &mut config.replication;
        if matches!(name.as_str(), "advertise" | "chain" | "zk-timeout-ms" | "exit-on-expiry")
            && config.chain.is_none()
        {
            return Err(chain_only(name).into());
        }
        match name.as_str() {
            "advertise" => config.chain.as_mut().expect("checked").advertise = text(name, value)?,
            "chain" => config.chain.as_mut().expect("checked").chain_path = chain_path(name, value)?,
            "zk-timeout-ms" => {
                config.chain.as_mut().expect("checked").session_timeout =
                    Duration::from_millis(positive(name, value)?)
            }
            "exit-on-expiry" => config.chain.as_mut().expect("checked").exit_on_expiry = true,
            "queue-max" => replication.queue_max = positive(name, value)?,
            "sent-max" => replication.sent_max = positive(name, value)?,
            "commit-timeout-ms" => replication.commit_timeout = Duration::from_millis(positive(name, value)?),
            "max-client-records" => replication.client_records_max = positive(name, value)?,
            "unsafe-read-anywhere" => config.unsafe_read_anywhere = true,
            "bind" => {
                config.bind =
                    text(name, value)?.parse().map_err(|_| format!("--bind: not an IP address: {value:?}"))?
            }
            "max-clients" => limits.clients_max = positive(name, value)?,
            "max-frame" => limits.frame_bytes_max = positive(name, value)?,
            "max-key" => limits.key_bytes_max = positive(name, value)?,
            "max-value" => limits.value_bytes_max = positive(name, value)?,
            "idle-timeout-ms" => limits.idle_timeout = Duration::from_millis(positive(name, value)?),
            "write-timeout-ms" => limits.write_timeout = Duration::from_millis(positive(name, value)?),
            other => unreachable!("option {other} is in the known list"),
        }
    }
    if config.limits.frame_bytes_max > u32::MAX as usize {
        return Err("--max-frame must fit the 4-byte length prefix".to_owned().into());
    }
    Ok(config)
}

/// A `--chain` value: an absolute ZooKeeper path.
pub(crate) fn chain_path(name: &str, value: &OsString) -> Result<String, UsageError> {
    let path = text(name, value)?;
    if !path.starts_with('/') || path.ends_with('/') || path.contains("//") {
        return Err(format!("--{name}: '{path}' is not a ZooKeeper path like /chain").into());
    }
    Ok(path)
}

pub(crate) fn positive<T: FromStr + Default + PartialOrd>(
    name: &str,
    value: &OsString,
) -> Result<T, UsageError> {
    let parsed: T = number(name, value)?;
    if parsed <= T::default() {
        return Err(format!("--{name} must be positive").into());
    }
    Ok(parsed)
}

/// Where the client sends its requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// One server directly (`--server host:port`).
    Server(String),
    /// A chain found through ZooKeeper.
    Chain {
        /// The ensemble, `host:port,...`.
        zk_hosts: String,
        /// The chain's node.
        path: String,
    },
}

#[derive(Debug)]
pub struct ClientArgs {
    pub target: Target,
    pub options: ClientOptions,
    /// `--local`: reads from the `--server`'s own table, whatever its role.
    pub local_reads: bool,
    /// The one-shot command's words; empty for the shell.
    pub command: Vec<Vec<u8>>,
}

/// Parses `table-client` arguments (without the program name).
pub fn parse_client_args(args: impl IntoIterator<Item = OsString>) -> Result<ClientArgs, UsageError> {
    let known = ["server", "chain", "local", "timeout-ms", "max-frame"];
    let has_server = |options: &[(String, OsString)]| options.iter().any(|(name, _)| name == "server");
    // With --server every positional word is the command; otherwise the first
    // is the ZooKeeper address.
    let parsed = parse_args(args, &known, |options, positionals| {
        positionals >= if has_server(options) { 1 } else { 2 }
    })?;
    let mut options = ClientOptions::default();
    let mut server = None;
    let mut path = None;
    let mut local_reads = false;
    for (name, value) in &parsed.options {
        match name.as_str() {
            "server" => server = Some(text(name, value)?),
            "chain" => path = Some(chain_path(name, value)?),
            "local" => local_reads = true,
            "timeout-ms" => options.timeout = Duration::from_millis(positive(name, value)?),
            "max-frame" => options.frame_bytes_max = positive(name, value)?,
            other => unreachable!("option {other} is in the known list"),
        }
    }
    let mut words = parsed.positionals.into_iter().map(OsString::into_vec);
    let target = match server {
        Some(_) if path.is_some() => {
            return Err("--chain is for chain mode, not with --server".to_owned().into());
        }
        Some(address) => Target::Server(address),
        None if local_reads => return Err("--local needs --server <host:port>".to_owned().into()),
        None => {
            let hosts = words
                .next()
                .ok_or_else(|| "no target: give <zk-host:port,...> or --server <host:port>".to_owned())?;
            Target::Chain {
                zk_hosts: String::from_utf8(hosts)
                    .map_err(|_| "ZooKeeper address is not UTF-8".to_owned())?,
                path: path.unwrap_or_else(|| CHAIN_PATH_DEFAULT.to_owned()),
            }
        }
    };
    Ok(ClientArgs { target, options, local_reads, command: words.collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn server_positionals_and_options() {
        let config =
            parse_server_args(args(&["7000", "64", "--bind", "0.0.0.0", "--max-clients=8"])).unwrap();
        assert_eq!(config.port, 7000);
        assert_eq!(config.table_stripes, 64);
        assert_eq!(config.bind.to_string(), "0.0.0.0");
        assert_eq!(config.limits.clients_max, 8);
        assert_eq!(config.limits.frame_bytes_max, Limits::default().frame_bytes_max);
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
        assert!(
            parse_server_args(args(&["7000", "64", "--advertise", "h:1"])).is_err(),
            "chain option without chain"
        );
        assert!(parse_server_args(args(&["7000", "64", "zk:1", "--chain", "nochain"])).is_err());
        assert!(parse_server_args(args(&["7000", "64", "zk:1", "--exit-on-expiry=yes"])).is_err());
        assert_eq!(parse_server_args(args(&["--help"])).unwrap_err(), UsageError::HelpRequested);
    }

    #[test]
    fn client_with_server_and_command() {
        let parsed = parse_client_args(args(&["--server", "h:1", "put", "k", "--not-an-option"])).unwrap();
        assert_eq!(parsed.target, Target::Server("h:1".into()));
        assert_eq!(parsed.command, vec![b"put".to_vec(), b"k".to_vec(), b"--not-an-option".to_vec()]);
        assert!(!parsed.local_reads);
        let local = parse_client_args(args(&["--local", "--server=h:1", "gettable"])).unwrap();
        assert!(local.local_reads);
        assert_eq!(local.command, vec![b"gettable".to_vec()]);
    }

    #[test]
    fn client_with_chain_target() {
        let parsed =
            parse_client_args(args(&["--timeout-ms", "500", "zk1:2181,zk2:2181", "get", "k"])).unwrap();
        assert_eq!(
            parsed.target,
            Target::Chain { zk_hosts: "zk1:2181,zk2:2181".into(), path: "/chain".into() }
        );
        assert_eq!(parsed.options.timeout, Duration::from_millis(500));
        assert_eq!(parsed.command.len(), 2);
        let shell = parse_client_args(args(&["--chain=/tables/a", "zk:2181"])).unwrap();
        assert_eq!(shell.target, Target::Chain { zk_hosts: "zk:2181".into(), path: "/tables/a".into() });
        assert!(shell.command.is_empty());
    }

    #[test]
    fn client_errors() {
        assert!(parse_client_args(args(&[])).is_err());
        assert!(parse_client_args(args(&["--server"])).is_err());
        assert!(parse_client_args(args(&["--timeout-ms", "x", "zk:1"])).is_err());
        assert!(parse_client_args(args(&["--bogus", "zk:1"])).is_err());
        assert!(parse_client_args(args(&["--chain", "tables", "zk:1"])).is_err());
        assert!(parse_client_args(args(&["--chain", "/c", "--server", "h:1", "size"])).is_err());
        assert!(parse_client_args(args(&["--local", "zk:1", "size"])).is_err());
        assert!(parse_client_args(args(&["--local=yes", "--server", "h:1", "size"])).is_err());
    }
}
