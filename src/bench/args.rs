//! The `table-bench` command line: its usage text and options, read with
//! the toolkit in [`crate::cli::args`]. Every argument is an option, so the
//! options are checked one by one as the cursor reads them.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::bench::workload::Mix;
use crate::cli::args::{
    Arg, ArgCursor, CHAIN_PATH_DEFAULT, UsageError, chain_path, flag, seconds, text, unknown_option, within,
};
use crate::limits::{
    BENCH_CLIENTS_MAX, BENCH_IDLE_CONNECTIONS_MAX, BENCH_KEYS_MAX, BENCH_SECONDS_MAX, BENCH_VALUE_BYTES_MAX,
    CLIENT_TIMEOUT_MS_DEFAULT,
};

pub const BENCH_USAGE: &str = "\
usage: table-bench (--zk <host:port,...> | --server <host:port> | --redis <host:port>)
                   [--clients N] [--duration S] [--keys K] [--value-size B] [--mix GET:PUT:DEL[:CAS:INCR]]
                   [--json] [options]

A closed-loop load generator: N client threads, each with its own connection, send
operations back to back for S seconds and the latencies are reported. The keys
key:0 .. key:<K-1> are filled first (all clients in parallel), then a warm-up runs
unmeasured, then the measured phase. Progress goes to stderr every second.

targets (exactly one):
  --zk <hosts>           a chaintable chain found through ZooKeeper: writes to its head,
                         reads to its tail (looked up once, at the start)
  --server <host:port>   one table-server directly
  --redis <host:port>    a Redis server, for comparison (SET, GET, DEL)

options:
  --clients N            client threads and connections (default 1, at most 10000)
  --duration S           measured seconds; decimals allowed (default 10)
  --keys K               size of the key space (default 10000)
  --value-size B         bytes per value (default 100)
  --mix GET:PUT:DEL[:CAS:INCR]
                         relative weights of the operations (default 90:10:0); cas swaps a
                         key's value with itself, incr adds 1 to counter:<n> (not --redis's cas)
  --json                 end stdout with one JSON object of the results
  --warmup S             unmeasured seconds before the measured phase (default 1)
  --chain <path>         with --zk: the chain's ZooKeeper node (default /chain)
  --seed N               seed of the key and operation choices (default 1)
  --no-fill              skip filling the key space
  --timeout-ms <ms>      connect and reply timeout of each operation (default 10000)
  --secret-file <path>   the client secret (default: $CHAINTABLE_SECRET_FILE)
  --tls-ca <path>        use TLS; servers' certificates must chain to this CA (PEM)
  --idle-connections N   also hold N connections that send nothing, opened after the
                         clients' (at a chain's head); the report says how many the
                         target kept open (default 0)
  --watchers N           also hold N watch streams of every key (watch --prefix key:) at the
                         tail through the run; the report counts the changes they were sent
                         (default 0)
  -V, --version          the version
  -h, --help             this text

Exit: 0 done, 1 every operation failed, 2 usage error or target unreachable.";

/// What the bench loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BenchTarget {
    /// A chaintable chain found through ZooKeeper.
    Chain {
        /// The ensemble, `host:port,...`.
        zk_hosts: String,
        /// The chain's node.
        path: String,
    },
    /// One table-server, whatever its role.
    Server(String),
    /// A Redis server.
    Redis(String),
}

impl BenchTarget {
    /// `chain`, `server` or `redis`, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            BenchTarget::Chain { .. } => "chain",
            BenchTarget::Server(_) => "server",
            BenchTarget::Redis(_) => "redis",
        }
    }

    /// Where it is: `host:port`, or `<zk-hosts><path>` for a chain.
    pub fn address(&self) -> String {
        match self {
            BenchTarget::Chain { zk_hosts, path } => format!("{zk_hosts}{path}"),
            BenchTarget::Server(address) | BenchTarget::Redis(address) => address.clone(),
        }
    }
}

impl fmt::Display for BenchTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.address())
    }
}

/// A whole benchmark run, as asked for on the command line.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchArgs {
    pub target: BenchTarget,
    /// Client threads, one connection each (two in chain mode: head and tail).
    pub clients: usize,
    /// Length of the measured phase.
    pub duration: Duration,
    /// Length of the unmeasured phase before it, so connections, caches and
    /// the server's threads are warm when measuring starts.
    pub warmup: Duration,
    /// Keys `key:0 .. key:<keys - 1>`.
    pub keys: u64,
    pub value_bytes: usize,
    pub mix: Mix,
    /// End stdout with the JSON line.
    pub json: bool,
    /// Seeds every thread's generator: the same seed repeats the same
    /// operations.
    pub seed: u64,
    /// Fill the key space before the warm-up (off with `--no-fill`, e.g. to
    /// rerun against a table filled by an earlier run).
    pub fill: bool,
    /// Connect and reply timeout of each operation.
    pub timeout: Duration,
    /// Silent connections held through the run.
    pub idle_connections: usize,
    /// `--watchers`: watch streams of every key held at the tail.
    pub watchers: usize,
    /// `--secret-file` and `--tls-ca`, read when the run starts.
    pub secret_file: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
}

/// Options that take no value.
const FLAGS: [&str; 4] = ["json", "no-fill", "help", "version"];

/// Parses `table-bench` arguments (without the program name). Every word is
/// an option, checked as it comes.
pub fn parse_bench_args(args: impl IntoIterator<Item = OsString>) -> Result<BenchArgs, UsageError> {
    let mut targets = Vec::new();
    let mut chain_node = None;
    let mut parsed = BenchArgs {
        target: BenchTarget::Server(String::new()),
        clients: 1,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        keys: 10_000,
        value_bytes: 100,
        mix: Mix { get: 90, put: 10, del: 0, cas: 0, incr: 0 },
        json: false,
        seed: 1,
        fill: true,
        timeout: Duration::from_millis(CLIENT_TIMEOUT_MS_DEFAULT),
        idle_connections: 0,
        watchers: 0,
        secret_file: None,
        tls_ca: None,
    };
    let mut args = ArgCursor::new(args);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg {
            Arg::Option { name, inline } => (name, inline),
            Arg::Word(word) => {
                let word = text("an argument", &word)?;
                return Err(format!("unexpected argument '{word}': every argument is an --option").into());
            }
        };
        let name = name.as_str();
        if FLAGS.contains(&name) {
            flag(name, inline)?;
            match name {
                "help" => return Err(UsageError::HelpRequested),
                "version" => return Err(UsageError::VersionRequested),
                "json" => parsed.json = true,
                _ => parsed.fill = false,
            }
            continue;
        }
        let value = args.value(name, inline)?;
        match name {
            "zk" => targets.push(BenchTarget::Chain { zk_hosts: text(name, &value)?, path: String::new() }),
            "server" => targets.push(BenchTarget::Server(text(name, &value)?)),
            "redis" => targets.push(BenchTarget::Redis(text(name, &value)?)),
            "chain" => chain_node = Some(chain_path(name, &value)?),
            "clients" => parsed.clients = within(name, &value, 1..=BENCH_CLIENTS_MAX)?,
            "duration" => parsed.duration = seconds(name, &value, 0.001..=BENCH_SECONDS_MAX)?,
            "warmup" => parsed.warmup = seconds(name, &value, 0.0..=BENCH_SECONDS_MAX)?,
            "keys" => parsed.keys = within(name, &value, 1..=BENCH_KEYS_MAX)?,
            "value-size" => parsed.value_bytes = within(name, &value, 0..=BENCH_VALUE_BYTES_MAX)?,
            "mix" => {
                parsed.mix =
                    Mix::parse(&text(name, &value)?).map_err(|message| format!("--mix: {message}"))?
            }
            "seed" => parsed.seed = within(name, &value, 0..=u64::MAX)?,
            "timeout-ms" => parsed.timeout = Duration::from_millis(within(name, &value, 1..=3_600_000)?),
            "secret-file" => parsed.secret_file = Some(PathBuf::from(value)),
            "tls-ca" => parsed.tls_ca = Some(PathBuf::from(value)),
            "idle-connections" => {
                parsed.idle_connections = within(name, &value, 0..=BENCH_IDLE_CONNECTIONS_MAX)?
            }
            "watchers" => parsed.watchers = within(name, &value, 0..=BENCH_CLIENTS_MAX)?,
            _ => return Err(unknown_option(name)),
        }
    }
    parsed.target = match (targets.pop(), targets.is_empty()) {
        (None, _) => {
            return Err("no target: give --zk <hosts>, --server <host:port> or --redis <host:port>"
                .to_owned()
                .into());
        }
        (Some(_), false) => return Err("give only one of --zk, --server and --redis".to_owned().into()),
        (Some(BenchTarget::Chain { zk_hosts, .. }), true) => BenchTarget::Chain {
            zk_hosts,
            path: chain_node.take().unwrap_or_else(|| CHAIN_PATH_DEFAULT.to_owned()),
        },
        (Some(target), true) => target,
    };
    if matches!(parsed.target, BenchTarget::Redis(_)) && parsed.watchers > 0 {
        return Err("--redis: --watchers needs a chaintable target".to_owned().into());
    }
    if matches!(parsed.target, BenchTarget::Redis(_)) && parsed.mix.cas > 0 {
        return Err("--redis: Redis has no compare-and-set command; give cas a weight of 0"
            .to_owned()
            .into());
    }
    if chain_node.is_some() {
        return Err("--chain goes with --zk".to_owned().into());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::test_words;

    fn parse(words: &[&str]) -> Result<BenchArgs, UsageError> {
        parse_bench_args(test_words(words))
    }

    #[test]
    fn the_documented_command_line() {
        let parsed = parse(&[
            "--server",
            "127.0.0.1:7000",
            "--clients",
            "16",
            "--duration",
            "2.5",
            "--keys=10000",
            "--value-size",
            "100",
            "--mix",
            "90:10:0",
            "--json",
        ])
        .unwrap();
        assert_eq!(parsed.target, BenchTarget::Server("127.0.0.1:7000".into()));
        assert_eq!(parsed.clients, 16);
        assert_eq!(parsed.duration, Duration::from_millis(2500));
        assert_eq!((parsed.keys, parsed.value_bytes), (10_000, 100));
        assert_eq!(parsed.mix, Mix { get: 90, put: 10, del: 0, cas: 0, incr: 0 });
        assert!(parsed.json && parsed.fill);
        assert_eq!((parsed.warmup, parsed.seed), (Duration::from_secs(1), 1));
    }

    #[test]
    fn targets_and_extras() {
        let chain = parse(&["--zk", "zk1:2181,zk2:2181"]).unwrap();
        assert_eq!(
            chain.target,
            BenchTarget::Chain { zk_hosts: "zk1:2181,zk2:2181".into(), path: "/chain".into() }
        );
        assert_eq!(chain.target.to_string(), "chain zk1:2181,zk2:2181/chain");
        let chain = parse(&["--chain", "/tables/a", "--zk=zk:1"]).unwrap();
        assert_eq!(chain.target.address(), "zk:1/tables/a");
        let redis = parse(&["--redis", "h:6379", "--warmup", "0", "--seed", "9", "--no-fill"]).unwrap();
        assert_eq!((redis.target.kind(), redis.target.address()), ("redis", "h:6379".to_owned()));
        assert_eq!((redis.warmup, redis.seed, redis.fill), (Duration::ZERO, 9, false));
        let timeout =
            parse(&["--server", "h:1", "--timeout-ms", "250", "--idle-connections", "5000"]).unwrap();
        assert_eq!((timeout.timeout, timeout.idle_connections), (Duration::from_millis(250), 5000));
    }

    #[test]
    fn bad_command_lines() {
        for bad in [
            &[][..],
            &["--clients", "4"],
            &["--server", "h:1", "--redis", "h:2"],
            &["--server"],
            &["--server", "h:1", "extra"],
            &["--server", "h:1", "--clients", "0"],
            &["--server", "h:1", "--clients", "10001"],
            &["--server", "h:1", "--idle-connections", "100001"],
            &["--server", "h:1", "--clients", "-1"],
            &["--server", "h:1", "--duration", "0"],
            &["--server", "h:1", "--duration", "ten"],
            &["--server", "h:1", "--warmup", "-1"],
            &["--server", "h:1", "--keys", "0"],
            &["--server", "h:1", "--mix", "90:10"],
            &["--server", "h:1", "--mix", "0:0:0"],
            &["--server", "h:1", "--mix", "1:1:1:1"],
            &["--redis", "h:1", "--mix", "0:0:0:1:1"],
            &["--server", "h:1", "--json=yes"],
            &["--server", "h:1", "--frobnicate", "1"],
            &["--server", "h:1", "--chain", "/c"],
            &["--zk", "zk:1", "--chain", "chain"],
            &["--server", "h:1", "--"],
        ] {
            assert!(matches!(parse(bad), Err(UsageError::Invalid(_))), "{bad:?}");
        }
        assert_eq!(parse(&["--server", "h:1", "--help"]), Err(UsageError::HelpRequested));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let Err(UsageError::Invalid(message)) = parse(&["--server", "h:1", "--clients", "0"]) else {
            panic!("--clients 0 accepted");
        };
        assert_eq!(message, "--clients: '0' is not a whole number from 1 to 10000");
    }
}
