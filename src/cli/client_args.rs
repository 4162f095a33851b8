//! The `table-client` command line: its usage text and options. Option
//! parsing stops at the first word of the command, so a value may start
//! with `--`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use super::args::{
    CHAIN_PATH_DEFAULT, COMMON_SHORT_OPTIONS, ShortOption, UsageError, chain_path, client_security,
    parse_args_seeing_words, positive, text,
};
use super::command;
use crate::client::connection::ClientOptions;
use crate::coord::handshake::check_hosts_syntax;
use crate::limits::SHARDS_PATH_DEFAULT;

pub const CLIENT_USAGE: &str = "\
usage: table-client [options] [<zk-host:port,...>] [command...]
       table-client [options] --server <host:port> [command...]

With ZooKeeper hosts (or CHAINTABLE_ZK): chain mode. Writes go to the chain's head,
reads and stats to its tail; a refused or failed request is retried (on the new head
or tail) until the timeout. With --server: only that server, no retries (in a chain
it refuses what its role does not allow, unless --local).
With no command: an interactive shell ('help' lists the commands).
With a command, runs it and exits: 0 success, 1 key absent (get, del), 2 failure.

options:
  --chain <path>         the chain's ZooKeeper node (default CHAINTABLE_CHAIN, else /chain)
  --shards <path>        the shard map's ZooKeeper node (default /shards); once it exists,
                         each key goes to the chain that owns its slot
  --server <host:port>   talk to one server directly
  --local                with --server: reads answer from that server's own table
                         whatever its chain role (may be stale; for comparing replicas)
  --timeout-ms <ms>      connect and reply timeout; in chain mode also the time
                         a command may take, retries included (default 10000)
  --max-frame <bytes>    largest reply frame accepted (default 67108864)
  --secret-file <path>   the client secret, proved to servers that require one
                         (their --client-secret-file; default: $CHAINTABLE_SECRET_FILE)
  --tls-ca <path>        use TLS; servers' certificates must chain to this CA (PEM)
  --json                 one JSON object per result line on stdout, errors included
  -x, --stdin            one-shot: read the command's last argument from stdin
                         (echo -n v | table-client ... -x put k)
  -V, --version          the version
  -h, --help             this text

environment:
  CHAINTABLE_ZK          ZooKeeper hosts when none are given (and no --server)
  CHAINTABLE_CHAIN       the chain's node when --chain is not given
  CHAINTABLE_SECRET_FILE the client secret's file when --secret-file is not given
  CHAINTABLE_HISTFILE    the shell's history file (default ~/.table_client_history;
                         empty: no history)

commands: put [--ttl <duration>] <key> <value> | get <key> | del <key> | size
          | getkeys [<prefix>] | gettable | scan [<prefix>] | cas <key> <expected>|--absent <new>
          | incr <key> [<delta>] | mget <key>... | mset <key> <value>... | exists <key>
          | expire <key> <duration> | ttl <key> | persist <key>
          | watch [--prefix] <key> [--from <sequence>] | stats | members (alias chain)
          | shards | shards init <chain>... | migrate <first>[-<last>] <chain> [--abort]";

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
    /// `--shards`: the shard map's node; once it exists, chain mode routes
    /// every key by it.
    pub shards_path: String,
    /// `--local`: reads from the `--server`'s own table, whatever its role.
    pub local_reads: bool,
    /// `--json`: results as JSON lines.
    pub json: bool,
    /// `-x`/`--stdin`: the one-shot command's last argument comes from stdin.
    pub last_argument_from_stdin: bool,
    /// The one-shot command's words; empty for the shell.
    pub command: Vec<Vec<u8>>,
}

/// Environment variable: ZooKeeper hosts when the command line names none.
pub const ZK_HOSTS_VARIABLE: &str = "CHAINTABLE_ZK";
/// Environment variable: the chain's node when `--chain` is not given.
pub const CHAIN_PATH_VARIABLE: &str = "CHAINTABLE_CHAIN";

/// The client's short forms: the common ones, and `-x` for `--stdin` as in redis-cli.
const SHORT_OPTIONS: &[ShortOption] = &[COMMON_SHORT_OPTIONS[0], COMMON_SHORT_OPTIONS[1], ("-x", "stdin")];

/// Parses `table-client` arguments (without the program name); `variable`
/// reads the environment (a parameter, so tests give their own).
pub fn parse_client_args(
    args: impl IntoIterator<Item = OsString>,
    variable: impl Fn(&str) -> Option<OsString>,
) -> Result<ClientArgs, UsageError> {
    let known = [
        "server",
        "chain",
        "shards",
        "local",
        "timeout-ms",
        "max-frame",
        "json",
        "stdin",
        "secret-file",
        "tls-ca",
    ];
    let flags = ["local", "json", "stdin"];
    let zk_from_environment = variable(ZK_HOSTS_VARIABLE).filter(|hosts| !hosts.is_empty());
    let has_server = |options: &[(String, OsString)]| options.iter().any(|(name, _)| name == "server");
    // With --server every positional word is the command. Otherwise the first
    // is the ZooKeeper address, unless CHAINTABLE_ZK gives it and the first
    // word is a command name.
    let parsed = parse_args_seeing_words(args, &known, &flags, SHORT_OPTIONS, |options, positionals| {
        let address_given = match positionals.first() {
            _ if has_server(options) => false,
            Some(first) if zk_from_environment.is_some() => {
                !first.to_str().is_some_and(command::is_command_name)
            }
            _ => true,
        };
        positionals.len() >= if address_given { 2 } else { 1 }
    })?;
    let mut options = ClientOptions::default();
    let mut server = None;
    let mut path = None;
    let mut shards_path = SHARDS_PATH_DEFAULT.to_owned();
    let mut local_reads = false;
    let (mut secret_file, mut tls_ca) = (None, None);
    let mut json = false;
    let mut last_argument_from_stdin = false;
    for (name, value) in &parsed.options {
        match name.as_str() {
            "server" => server = Some(text(name, value)?),
            "chain" => path = Some(chain_path(name, value)?),
            "shards" => shards_path = chain_path(name, value)?,
            "local" => local_reads = true,
            "json" => json = true,
            "stdin" => last_argument_from_stdin = true,
            "timeout-ms" => options.timeout = Duration::from_millis(positive(name, value)?),
            "max-frame" => options.frame_bytes_max = positive(name, value)?,
            "secret-file" => secret_file = Some(PathBuf::from(value)),
            "tls-ca" => tls_ca = Some(PathBuf::from(value)),
            other => unreachable!("option {other} is in the known list"),
        }
    }
    client_security(secret_file, tls_ca, &variable, &mut options)?;
    let mut words = parsed.positionals.into_iter().map(OsString::into_vec).peekable();
    let target = match server {
        Some(_) if path.is_some() => {
            return Err("--chain is for chain mode, not with --server".to_owned().into());
        }
        Some(address) => Target::Server(address),
        None if local_reads => return Err("--local needs --server <host:port>".to_owned().into()),
        None => {
            let first_is_command = words
                .peek()
                .is_some_and(|word| std::str::from_utf8(word).is_ok_and(command::is_command_name));
            let no_target =
                || format!("no target: give <zk-host:port,...>, --server <host:port> or {ZK_HOSTS_VARIABLE}");
            let hosts = match zk_from_environment {
                Some(hosts) if words.peek().is_none() || first_is_command => hosts.into_vec(),
                // `table-client get x`: the target was forgotten, not named `get`.
                None if first_is_command => return Err(no_target().into()),
                _ => {
                    let hosts = words.next().ok_or_else(no_target)?;
                    check_hosts_word(&hosts)?;
                    hosts
                }
            };
            let path = match path {
                Some(path) => path,
                None => match variable(CHAIN_PATH_VARIABLE).filter(|path| !path.is_empty()) {
                    Some(path) => chain_path("chain", &path).map_err(|_| {
                        format!("{CHAIN_PATH_VARIABLE}: {path:?} is not a ZooKeeper path like /chain")
                    })?,
                    None => CHAIN_PATH_DEFAULT.to_owned(),
                },
            };
            Target::Chain {
                zk_hosts: String::from_utf8(hosts)
                    .map_err(|_| "ZooKeeper address is not UTF-8".to_owned())?,
                path,
            }
        }
    };
    let command: Vec<Vec<u8>> = words.collect();
    if last_argument_from_stdin && command.is_empty() {
        return Err("-x (--stdin) needs a command, e.g. -x put <key>".to_owned().into());
    }
    Ok(ClientArgs { target, options, shards_path, local_reads, json, last_argument_from_stdin, command })
}

/// The word taken as ZooKeeper hosts must be written `host:port,...`:
/// `table-client gettabel` is a mistyped command, not a host to retry for
/// ten seconds (or to open a shell on); a word with a `:` was meant as an
/// address, and what is wrong with it is said.
fn check_hosts_word(word: &[u8]) -> Result<(), UsageError> {
    let text = String::from_utf8_lossy(word);
    match check_hosts_syntax(&text) {
        Ok(()) => Ok(()),
        Err(reason) if text.contains(':') => Err(format!("bad ZooKeeper address: {reason}").into()),
        Err(_) => {
            Err(format!("'{text}' is neither a command nor a ZooKeeper address (host:port,...)").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::test_words as args;

    /// Parses with an empty environment.
    fn parse(words: &[&str]) -> Result<ClientArgs, UsageError> {
        parse_client_args(args(words), |_| None)
    }

    /// Parses with `CHAINTABLE_ZK` and `CHAINTABLE_CHAIN` set as given.
    fn parse_with(zk: &str, chain: &str, words: &[&str]) -> Result<ClientArgs, UsageError> {
        parse_client_args(args(words), |name| match name {
            ZK_HOSTS_VARIABLE => Some(zk.into()),
            CHAIN_PATH_VARIABLE => Some(chain.into()),
            _ => None,
        })
    }

    #[test]
    fn client_with_server_and_command() {
        let parsed = parse(&["--server", "h:1", "put", "k", "--not-an-option", "-h"]).unwrap();
        assert_eq!(parsed.target, Target::Server("h:1".into()));
        assert_eq!(
            parsed.command,
            vec![b"put".to_vec(), b"k".to_vec(), b"--not-an-option".to_vec(), b"-h".to_vec()]
        );
        assert!(!parsed.local_reads && !parsed.json && !parsed.last_argument_from_stdin);
        let local = parse(&["--local", "--server=h:1", "--json", "gettable"]).unwrap();
        assert!(local.local_reads && local.json);
        assert_eq!(local.command, vec![b"gettable".to_vec()]);
        let from_stdin = parse(&["--server", "h:1", "-x", "put", "k"]).unwrap();
        assert!(from_stdin.last_argument_from_stdin);
    }

    #[test]
    fn client_with_chain_target() {
        let parsed = parse(&["--timeout-ms", "500", "zk1:2181,zk2:2181", "get", "k"]).unwrap();
        assert_eq!(
            parsed.target,
            Target::Chain { zk_hosts: "zk1:2181,zk2:2181".into(), path: "/chain".into() }
        );
        assert_eq!(parsed.options.timeout, Duration::from_millis(500));
        assert_eq!(parsed.command.len(), 2);
        let shell = parse(&["--chain=/tables/a", "zk:2181"]).unwrap();
        assert_eq!(shell.target, Target::Chain { zk_hosts: "zk:2181".into(), path: "/tables/a".into() });
        assert!(shell.command.is_empty());
    }

    #[test]
    fn the_environment_gives_default_targets() {
        let chain = |zk: &str, path: &str| Target::Chain { zk_hosts: zk.into(), path: path.into() };
        let parsed = parse_with("env:1", "/t", &["GET", "k", "--x"]).unwrap();
        assert_eq!(parsed.target, chain("env:1", "/t"));
        assert_eq!(parsed.command, vec![b"GET".to_vec(), b"k".to_vec(), b"--x".to_vec()]);
        let shell = parse_with("env:1", "", &[]).unwrap();
        assert_eq!(shell.target, chain("env:1", "/chain"), "an empty variable is unset");
        let given = parse_with("env:1", "/t", &["zk:2", "--chain", "/u", "size"]).unwrap();
        assert_eq!(given.target, chain("zk:2", "/u"), "the command line wins");
        assert_eq!(given.command, vec![b"size".to_vec()]);
        let server = parse_with("env:1", "/t", &["--server", "h:1", "size"]).unwrap();
        assert_eq!(server.target, Target::Server("h:1".into()));
        assert!(parse_with("env:1", "relative", &["size"]).is_err());
    }

    #[test]
    fn the_usage_lists_every_one_shot_command() {
        let listed = CLIENT_USAGE.split("commands:").nth(1).expect("a commands section");
        let one_shot = command::COMMAND_NAMES.iter().filter(|(name, _)| !matches!(*name, "help" | "quit"));
        for (name, _) in one_shot {
            assert!(listed.split(|c: char| !c.is_alphanumeric()).any(|word| word == *name), "{name}");
        }
    }

    #[test]
    fn client_errors() {
        let message = |words: &[&str]| match parse(words) {
            Err(UsageError::Invalid(message)) => message,
            other => panic!("{words:?}: {other:?}"),
        };
        assert_eq!(message(&[]), "no target: give <zk-host:port,...>, --server <host:port> or CHAINTABLE_ZK");
        assert_eq!(message(&["GET", "x"]), message(&[]));
        let typo = "'gettabel' is neither a command nor a ZooKeeper address (host:port,...)";
        assert_eq!(message(&["gettabel"]), typo);
        assert_eq!(message(&["gettabel", "x"]), typo);
        match parse_with("env:1", "", &["gettabel"]) {
            Err(UsageError::Invalid(message)) => assert_eq!(message, typo, "with {ZK_HOSTS_VARIABLE} too"),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["zk1:1,zk2:2/tables", "size"]).is_ok());
        assert_eq!(message(&["zk:1,:2", "size"]), "bad ZooKeeper address: ':2' is not a host:port address");
        assert_eq!(message(&["--server"]), "--server needs a value");
        assert_eq!(message(&["--timeout-ms", "x", "zk:1"]), "timeout-ms: 'x' is not a valid number");
        assert_eq!(message(&["--bogus", "zk:1"]), "unknown option --bogus");
        assert_eq!(message(&["-z", "zk:1", "get", "x"]), "unknown option -z");
        assert!(message(&["--chain", "tables", "zk:1"]).contains("not a ZooKeeper path"));
        assert_eq!(
            message(&["--chain", "/c", "--server", "h:1", "size"]),
            "--chain is for chain mode, not with --server"
        );
        assert_eq!(message(&["--local", "zk:1", "size"]), "--local needs --server <host:port>");
        assert_eq!(message(&["--local=yes", "--server", "h:1", "size"]), "--local takes no value");
        assert_eq!(message(&["-x", "--server", "h:1"]), "-x (--stdin) needs a command, e.g. -x put <key>");
        assert!(matches!(parse(&["-h", "get", "x"]), Err(UsageError::HelpRequested)));
        assert!(matches!(parse(&["zk:1", "-V"]), Err(UsageError::VersionRequested)));
    }
}
