//! The `table-client` command line: its usage text and options. Option
//! parsing stops at the first word of the command, so a value may start
//! with `--`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use super::args::{CHAIN_PATH_DEFAULT, UsageError, chain_path, client_security, parse_args, positive, text};
use crate::client::connection::ClientOptions;

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
  --secret-file <path>   the client secret, proved to servers that require one
                         (their --client-secret-file; default: $CHAINTABLE_SECRET_FILE)
  --tls-ca <path>        use TLS; servers' certificates must chain to this CA (PEM)
  --help                 this text

commands: put <key> <value> | get <key> | del <key> | size | getkeys | gettable | stats";

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
    let known = ["server", "chain", "local", "timeout-ms", "max-frame", "secret-file", "tls-ca"];
    let has_server = |options: &[(String, OsString)]| options.iter().any(|(name, _)| name == "server");
    // With --server every positional word is the command; otherwise the first
    // is the ZooKeeper address.
    let parsed = parse_args(args, &known, &["local"], |options, positionals| {
        positionals >= if has_server(options) { 1 } else { 2 }
    })?;
    let mut options = ClientOptions::default();
    let mut server = None;
    let mut path = None;
    let mut local_reads = false;
    let (mut secret_file, mut tls_ca) = (None, None);
    for (name, value) in &parsed.options {
        match name.as_str() {
            "server" => server = Some(text(name, value)?),
            "chain" => path = Some(chain_path(name, value)?),
            "local" => local_reads = true,
            "timeout-ms" => options.timeout = Duration::from_millis(positive(name, value)?),
            "max-frame" => options.frame_bytes_max = positive(name, value)?,
            "secret-file" => secret_file = Some(PathBuf::from(value)),
            "tls-ca" => tls_ca = Some(PathBuf::from(value)),
            other => unreachable!("option {other} is in the known list"),
        }
    }
    client_security(secret_file, tls_ca, &mut options)?;
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
    use crate::cli::args::test_words as args;

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
