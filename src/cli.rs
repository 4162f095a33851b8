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

use crate::client::ClientOptions;
use crate::limits::{Limits, TABLE_STRIPES_MAX};
use crate::server::ServerConfig;

pub const SERVER_USAGE: &str = "\
usage: table-server <port> <table-size> [<zk-host:port,...>] [options]

  <port>        TCP port to listen on (0 picks a free one; the log says which)
  <table-size>  number of lock stripes of the table (1..1048576)
  <zk-hosts>    ZooKeeper ensemble for chain mode (not available yet)

options:
  --bind <addr>             address to listen on (default 127.0.0.1)
  --max-clients <n>         concurrent client connections (default 4096)
  --max-frame <bytes>       largest frame (default 67108864)
  --max-key <bytes>         largest key (default 16384)
  --max-value <bytes>       largest value (default 33554432)
  --idle-timeout-ms <ms>    close connections silent this long (default 300000)
  --write-timeout-ms <ms>   give up on a reply not written in this time (default 10000)
  --help                    this text

Logging: RUST_LOG=debug|info|warn (default info). SIGINT/SIGTERM shut down cleanly.";

pub const CLIENT_USAGE: &str = "\
usage: table-client [options] <zk-host:port,...> [command...]
       table-client [options] --server <host:port> [command...]

With no command: an interactive shell ('help' lists the commands).
With a command, runs it and exits: 0 success, 1 key absent (get, del), 2 failure.

options:
  --server <host:port>   talk to one server directly
  --timeout-ms <ms>      connect and reply timeout (default 10000)
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

impl From<String> for UsageError {
    fn from(message: String) -> Self {
        UsageError::Invalid(message)
    }
}

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
struct ParsedArgs {
    options: Vec<(String, OsString)>,
    positionals: Vec<OsString>,
}

fn parse_args(
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
                    Some(value) => value,
                    None => args.next().ok_or_else(|| format!("--{name} needs a value"))?,
                };
                parsed.options.push((name, value));
            }
            None => parsed.positionals.push(arg),
        }
    }
    Ok(parsed)
}

fn text(name: &str, value: &OsString) -> Result<String, UsageError> {
    value.to_str().map(str::to_owned).ok_or_else(|| format!("{name}: not valid UTF-8").into())
}

fn number<T: FromStr>(name: &str, value: &OsString) -> Result<T, UsageError> {
    let value = text(name, value)?;
    value.parse().map_err(|_| format!("{name}: '{value}' is not a valid number").into())
}

/// Parses `table-server` arguments (without the program name).
pub fn parse_server_args(args: impl IntoIterator<Item = OsString>) -> Result<ServerConfig, UsageError> {
    let known =
        ["bind", "max-clients", "max-frame", "max-key", "max-value", "idle-timeout-ms", "write-timeout-ms"];
    let parsed = parse_args(args, &known, |_, _| false)?;
    let (port, table_stripes) = match parsed.positionals.as_slice() {
        [port, size] => (number::<u16>("<port>", port)?, number::<usize>("<table-size>", size)?),
        [_, _, _] => {
            return Err("chain mode (a ZooKeeper address) is not available in this version; \
                        start without it for a standalone server"
                .to_owned()
                .into());
        }
        _ => return Err("expected <port> <table-size>".to_owned().into()),
    };
    if !(1..=TABLE_STRIPES_MAX).contains(&table_stripes) {
        return Err(format!("<table-size> must be between 1 and {TABLE_STRIPES_MAX}").into());
    }
    let mut config =
        ServerConfig { bind: IpAddr::from([127, 0, 0, 1]), port, table_stripes, limits: Limits::default() };
    for (name, value) in &parsed.options {
        let limits = &mut config.limits;
        match name.as_str() {
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

fn positive<T: FromStr + Default + PartialOrd>(name: &str, value: &OsString) -> Result<T, UsageError> {
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
    Chain(String),
}

#[derive(Debug)]
pub struct ClientArgs {
    pub target: Target,
    pub options: ClientOptions,
    /// The one-shot command's words; empty for the shell.
    pub command: Vec<Vec<u8>>,
}

/// Parses `table-client` arguments (without the program name).
pub fn parse_client_args(args: impl IntoIterator<Item = OsString>) -> Result<ClientArgs, UsageError> {
    let known = ["server", "timeout-ms", "max-frame"];
    let has_server = |options: &[(String, OsString)]| options.iter().any(|(name, _)| name == "server");
    // With --server every positional word is the command; otherwise the first
    // is the ZooKeeper address.
    let parsed = parse_args(args, &known, |options, positionals| {
        positionals >= if has_server(options) { 1 } else { 2 }
    })?;
    let mut options = ClientOptions::default();
    let mut server = None;
    for (name, value) in &parsed.options {
        match name.as_str() {
            "server" => server = Some(text(name, value)?),
            "timeout-ms" => options.timeout = Duration::from_millis(positive(name, value)?),
            "max-frame" => options.frame_bytes_max = positive(name, value)?,
            other => unreachable!("option {other} is in the known list"),
        }
    }
    let mut words = parsed.positionals.into_iter().map(OsString::into_vec);
    let target = match server {
        Some(address) => Target::Server(address),
        None => {
            let hosts = words
                .next()
                .ok_or_else(|| "no target: give <zk-host:port,...> or --server <host:port>".to_owned())?;
            Target::Chain(String::from_utf8(hosts).map_err(|_| "ZooKeeper address is not UTF-8".to_owned())?)
        }
    };
    Ok(ClientArgs { target, options, command: words.collect() })
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
    fn server_errors() {
        assert!(parse_server_args(args(&["7000"])).is_err());
        assert!(parse_server_args(args(&["port", "64"])).is_err());
        assert!(parse_server_args(args(&["7000", "0"])).is_err());
        assert!(parse_server_args(args(&["7000", "64", "--frobnicate", "1"])).is_err());
        assert!(parse_server_args(args(&["7000", "64", "--max-frame"])).is_err());
        assert!(parse_server_args(args(&["7000", "64", "--max-clients", "0"])).is_err());
        assert!(parse_server_args(args(&["7000", "64", "--bind", "nowhere"])).is_err());
        let chain = parse_server_args(args(&["7000", "64", "127.0.0.1:2181"])).unwrap_err();
        assert!(matches!(chain, UsageError::Invalid(message) if message.contains("not available")));
        assert_eq!(parse_server_args(args(&["--help"])).unwrap_err(), UsageError::HelpRequested);
    }

    #[test]
    fn client_with_server_and_command() {
        let parsed = parse_client_args(args(&["--server", "h:1", "put", "k", "--not-an-option"])).unwrap();
        assert_eq!(parsed.target, Target::Server("h:1".into()));
        assert_eq!(parsed.command, vec![b"put".to_vec(), b"k".to_vec(), b"--not-an-option".to_vec()]);
    }

    #[test]
    fn client_with_chain_target() {
        let parsed =
            parse_client_args(args(&["--timeout-ms", "500", "zk1:2181,zk2:2181", "get", "k"])).unwrap();
        assert_eq!(parsed.target, Target::Chain("zk1:2181,zk2:2181".into()));
        assert_eq!(parsed.options.timeout, Duration::from_millis(500));
        assert_eq!(parsed.command.len(), 2);
        let shell = parse_client_args(args(&["zk:2181"])).unwrap();
        assert!(shell.command.is_empty());
    }

    #[test]
    fn client_errors() {
        assert!(parse_client_args(args(&[])).is_err());
        assert!(parse_client_args(args(&["--server"])).is_err());
        assert!(parse_client_args(args(&["--timeout-ms", "x", "zk:1"])).is_err());
        assert!(parse_client_args(args(&["--bogus", "zk:1"])).is_err());
    }
}
