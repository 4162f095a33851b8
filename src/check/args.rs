//! The `table-check` command line: its usage text and options, read with
//! the toolkit in [`crate::cli::args`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::failover::FailoverConfig;
use super::nemesis::{FaultKind, parse_kinds};
use super::run::CheckConfig;
use crate::chain::Check;
use crate::cli::args::{
    CHAIN_PATH_DEFAULT, UsageError, chain_path, client_security, number, parse_args, positive, text,
};
use crate::client::connection::ClientOptions;

/// `table-check --help`: the text around the list of injected bugs.
pub fn check_usage() -> String {
    let bugs: String = Check::ALL
        .iter()
        .map(|check| {
            let mark = if check.reached_by_simulator() { "" } else { " (*)" };
            format!("                            {:<31}{}{mark}\n", check.bug_name(), check.bug_description())
        })
        .collect();
    format!("{USAGE_BEFORE_BUGS}{bugs}{USAGE_AFTER_BUGS}")
}

const USAGE_BEFORE_BUGS: &str = "\
usage: table-check [options]                 run clients under faults and check the history
       table-check verify <history.json>     check a saved history again
       table-check sim [sim options]         simulate chains (the protocol in src/chain/)
                                             under seeded faults, many seeds a second
       table-check failover [failover options]
                                             measure failover as clients see it

Starts its own ZooKeeper and chain (or attaches to one with --zk, without
faults), runs clients doing random put/get/del/cas/incr over a few keys while a
nemesis injects faults, then checks that every key's history is linearizable, that
every server ends with the same table, and that a watcher of every key saw each
committed change once, in order (not with --zk). Prints PASS, or FAIL with the key, the
shortest offending sub-history, the seed and the faults around it (exit 1).

options:
  --duration <s>          how long clients run (default 60)
  --clients <n>           concurrent clients (default 4)
  --keys <n>              keys k0..k<n-1> (default 5)
  --nodes <n>             servers in the chain (default 3)
  --chains <n>            chains of --nodes servers each, sharing the key space through a
                          shard map; clients route each key to its chain (default 1: no map;
                          more than one: no watcher)
  --seed <n>              workload and fault schedule seed (default: random, printed)
  --nemesis <list>        faults from kill,pause,join,zk,partition,crash-all, or none
                          (default kill,pause,join; with --durable also crash-all);
                          partition needs root and ip netns, crash-all --durable
  --durable               every server has a data directory (--data-dir): a killed server
                          restarts on it, and crash-all kills every server at once and
                          restarts them all; no acknowledged write may be lost
  --zk-timeout-ms <ms>    the servers' ZooKeeper session timeout (default 1000)
  --zk <hosts>            attach to an existing chain: no faults
  --secret-file <path>    with --zk: that chain's client secret (default: $CHAINTABLE_SECRET_FILE)
  --tls-ca <path>         with --zk: use TLS; servers' certificates must chain to this CA
  --chain <path>          the chain's ZooKeeper node (default /chain)
  --history <file>        write the history as JSON
  --server-binary <path>  table-server to start (default: the one beside table-check)
  --think-ms <ms>         longest pause between a client's operations (default 2)
  --logs <dir>            save every server's log there when it stops (for post-mortems)
  --broken stale-reads    servers answer reads in any role and clients read anywhere:
                          a deliberately broken chain, which must FAIL (tests the checker)
  -V, --version           the version
  -h, --help              this text

sim options:
  --seeds <n>             runs, each with its own seed derived from the base (default 2000)
  --seed <n>              the base seed (default: random, printed); with --seeds 1, the
                          seed of the one run
  --nodes <n>             servers at the start of each run (default 3); per chain
  --chains <n>            chains sharing the key space by a shard map, clients routing by
                          key (default 1: one chain, no map)
  --steps <n>             client operations per run (default 300)
  --inject-bug <name>     switch one safety check off, a deliberate bug which must FAIL:
";

const USAGE_AFTER_BUGS: &str = "\
                          (*) shadowed by another check: not caught by the simulator yet
  --list-bugs             print the injected bugs' names, one a line; a shadowed one
                          is followed by \"shadowed\", one caught only with --durable
                          by \"durable\", one caught only with --chains 2 by \"chains\"
  --trace                 print every event of a failed run
  --durable               every server has a simulated disk (--data-dir): a crashed server
                          restarts on it, whole chains crash at once, and no acknowledged
                          write may be lost

failover options: a chain of 3 on a ZooKeeper of its own, clients reading and writing
throughout, plus a writer of keys written once each. kill -9 of the head, the middle and
the tail in turn, then of the tail right after the head's removal, --rounds times each, a
fresh server joining after every kill; then the tail is SIGSTOPped for each --sigstop
length and resumed. Per victim it prints the write gap and the read gap (from the fault to
each client's first success among operations begun after it), p50 and max, and for pauses
whether the chain removed the paused tail. Fails (exit 1) if the history is not
linearizable, a server lacks an acknowledged write or holds a different table, or a client
never succeeded after a fault.
  --rounds <n>            kills per victim (default 5)
  --sigstop <ms,...>      SIGSTOP lengths of the tail, or none (default 300,1000,3000)
  --clients <n>           clients of the shared keys (default 4)
  --keys <n>              shared keys k0..k<n-1> (default 5)
  --seed <n>              workload seed (default: random, printed)
  --zk-timeout-ms <ms>    the servers' ZooKeeper session timeout (default 5000, theirs)
  --server-binary <path>  table-server to start (default: the one beside table-check)
  --logs <dir>            save every server's log there when it stops
  --json                  print the result as one JSON object on the last line";

/// What `table-check` was asked to do.
#[derive(Debug)]
pub enum CheckCommand {
    Run {
        config: Box<CheckConfig>,
        history: Option<PathBuf>,
    },
    Verify(PathBuf),
    Sim(SimArgs),
    /// `table-check sim --list-bugs`.
    ListBugs,
    Failover(Box<FailoverConfig>),
}

/// `table-check sim`'s settings.
#[derive(Debug, PartialEq, Eq)]
pub struct SimArgs {
    pub seeds: u64,
    pub base_seed: u64,
    pub nodes: usize,
    pub steps: usize,
    pub bug: Option<Check>,
    pub trace: bool,
    /// `--durable`: simulated disks.
    pub durable: bool,
    /// `--chains`: chains sharing the key space by a shard map.
    pub chains: usize,
}

fn parse_sim_args(
    args: impl IntoIterator<Item = OsString>,
    default_seed: u64,
) -> Result<CheckCommand, UsageError> {
    let known = ["seeds", "seed", "nodes", "chains", "steps", "inject-bug", "trace", "list-bugs", "durable"];
    let parsed = parse_args(args, &known, &["trace", "list-bugs", "durable"], |_, _| false)?;
    if !parsed.positionals.is_empty() {
        return Err("sim takes options only".to_owned().into());
    }
    let mut sim = SimArgs {
        seeds: 2000,
        base_seed: default_seed,
        nodes: 3,
        steps: 300,
        bug: None,
        trace: false,
        durable: false,
        chains: 1,
    };
    for (name, value) in &parsed.options {
        match name.as_str() {
            "seeds" => sim.seeds = positive(name, value)?,
            "seed" => sim.base_seed = number(name, value)?,
            "nodes" => sim.nodes = positive(name, value)?,
            "chains" => sim.chains = positive(name, value)?,
            "steps" => sim.steps = positive(name, value)?,
            "inject-bug" => {
                let bug = text(name, value)?;
                let names: Vec<&str> = Check::ALL.iter().map(|check| check.bug_name()).collect();
                sim.bug = Some(Check::from_bug_name(&bug).ok_or_else(|| {
                    UsageError::from(format!("--inject-bug: unknown bug '{bug}' ({})", names.join(", ")))
                })?);
            }
            "trace" => sim.trace = true,
            "durable" => sim.durable = true,
            "list-bugs" => return Ok(CheckCommand::ListBugs),
            other => unreachable!("option {other} is in the known list"),
        }
    }
    Ok(CheckCommand::Sim(sim))
}

/// `table-server` beside this binary (or on the path).
fn default_server_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.parent().map(|directory| directory.join("table-server")))
        .unwrap_or_else(|| PathBuf::from("table-server"))
}

fn parse_failover_args(
    args: impl IntoIterator<Item = OsString>,
    default_seed: u64,
) -> Result<CheckCommand, UsageError> {
    let known =
        ["rounds", "sigstop", "clients", "keys", "seed", "zk-timeout-ms", "server-binary", "logs", "json"];
    let parsed = parse_args(args, &known, &["json"], |_, _| false)?;
    if !parsed.positionals.is_empty() {
        return Err("failover takes options only".to_owned().into());
    }
    let mut config = FailoverConfig {
        rounds: 5,
        pauses_ms: vec![300, 1000, 3000],
        clients: 4,
        keys: 5,
        seed: default_seed,
        session_timeout: Duration::from_millis(5000),
        server_binary: default_server_binary(),
        log_dir: None,
        json: false,
    };
    for (name, value) in &parsed.options {
        match name.as_str() {
            "rounds" => config.rounds = positive(name, value)?,
            "sigstop" => {
                let list = text(name, value)?;
                config.pauses_ms = match list.as_str() {
                    "none" => Vec::new(),
                    _ => list
                        .split(',')
                        .map(|part| positive(name, &OsString::from(part)))
                        .collect::<Result<_, _>>()?,
                };
            }
            "clients" => config.clients = positive(name, value)?,
            "keys" => config.keys = positive(name, value)?,
            "seed" => config.seed = number(name, value)?,
            "zk-timeout-ms" => config.session_timeout = Duration::from_millis(positive(name, value)?),
            "server-binary" => config.server_binary = PathBuf::from(value),
            "logs" => config.log_dir = Some(PathBuf::from(value)),
            "json" => config.json = true,
            other => unreachable!("option {other} is in the known list"),
        }
    }
    Ok(CheckCommand::Failover(Box::new(config)))
}

/// Parses arguments (without the program name). `default_seed` is used
/// when `--seed` is not given.
pub fn parse_check_args(
    args: impl IntoIterator<Item = OsString>,
    default_seed: u64,
) -> Result<CheckCommand, UsageError> {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|first| first == "sim") {
        return parse_sim_args(args.skip(1), default_seed);
    }
    if args.peek().is_some_and(|first| first == "failover") {
        return parse_failover_args(args.skip(1), default_seed);
    }
    let known = [
        "duration",
        "clients",
        "keys",
        "nodes",
        "chains",
        "seed",
        "nemesis",
        "zk-timeout-ms",
        "zk",
        "chain",
        "history",
        "server-binary",
        "think-ms",
        "broken",
        "logs",
        "secret-file",
        "tls-ca",
        "durable",
    ];
    let parsed = parse_args(args, &known, &["durable"], |_, _| false)?;
    match parsed.positionals.as_slice() {
        [] => {}
        [verb, file] if verb == "verify" => {
            if !parsed.options.is_empty() {
                return Err("verify takes no options".to_owned().into());
            }
            return Ok(CheckCommand::Verify(PathBuf::from(file)));
        }
        _ => return Err("expected no argument, or: verify <history.json>".to_owned().into()),
    }
    let server_binary = default_server_binary();
    let mut config = CheckConfig {
        duration: Duration::from_secs(60),
        clients: 4,
        keys: 5,
        nodes: 3,
        chains: 1,
        seed: default_seed,
        nemesis: vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Join],
        session_timeout: Duration::from_millis(1000),
        server_binary,
        attach: None,
        chain_path: CHAIN_PATH_DEFAULT.to_owned(),
        broken_reads: false,
        think_max: Duration::from_millis(2),
        log_dir: None,
        client: ClientOptions::default(),
        durable: false,
    };
    let mut history = None;
    let (mut secret_file, mut tls_ca) = (None, None);
    let durable = parsed.options.iter().any(|(name, _)| name == "durable");
    if durable {
        config.durable = true;
        config.nemesis.push(FaultKind::CrashAll);
    }
    for (name, value) in &parsed.options {
        match name.as_str() {
            "duration" => config.duration = Duration::from_secs(positive(name, value)?),
            "clients" => config.clients = positive(name, value)?,
            "keys" => config.keys = positive(name, value)?,
            "nodes" => config.nodes = positive(name, value)?,
            "chains" => config.chains = positive(name, value)?,
            "seed" => config.seed = number(name, value)?,
            "nemesis" => {
                let list = text(name, value)?;
                config.nemesis = if list == "none" { Vec::new() } else { parse_kinds(&list)? };
            }
            "zk-timeout-ms" => config.session_timeout = Duration::from_millis(positive(name, value)?),
            "zk" => config.attach = Some(text(name, value)?),
            "chain" => config.chain_path = chain_path(name, value)?,
            "history" => history = Some(PathBuf::from(value)),
            "server-binary" => config.server_binary = PathBuf::from(value),
            "logs" => config.log_dir = Some(PathBuf::from(value)),
            "secret-file" => secret_file = Some(PathBuf::from(value)),
            "tls-ca" => tls_ca = Some(PathBuf::from(value)),
            "durable" => {}
            "think-ms" => config.think_max = Duration::from_millis(number(name, value)?),
            "broken" => match text(name, value)?.as_str() {
                "stale-reads" => config.broken_reads = true,
                other => return Err(format!("--broken: unknown mode '{other}' (stale-reads)").into()),
            },
            other => unreachable!("option {other} is in the known list"),
        }
    }
    if config.attach.is_none() && (secret_file.is_some() || tls_ca.is_some()) {
        return Err(
            "--secret-file and --tls-ca are for --zk: a chain table-check starts has secrets of its own"
                .to_owned()
                .into(),
        );
    }
    client_security(secret_file, tls_ca, |name| std::env::var_os(name), &mut config.client)?;
    if config.attach.is_some() && config.chains > 1 {
        return Err("--chains starts chains of its own (not with --zk; a sharded table routes by its map)"
            .to_owned()
            .into());
    }
    if config.attach.is_some() {
        config.nemesis.clear();
        if config.broken_reads {
            return Err("--broken needs a chain table-check starts itself (not --zk)".to_owned().into());
        }
    }
    if config.nemesis.contains(&FaultKind::CrashAll) && !config.durable {
        return Err("crash-all needs --durable (only data directories survive it)".to_owned().into());
    }
    if config.durable && (config.attach.is_some() || config.chains > 1) {
        return Err("--durable starts one chain of its own (not with --zk or --chains)".to_owned().into());
    }
    let survivable = config.nemesis.iter().all(|kind| *kind == FaultKind::Zk) || config.nodes >= 2;
    if !survivable {
        return Err(
            "kill, pause, join and partition need --nodes 2 or more (one server cannot survive them)"
                .to_owned()
                .into(),
        );
    }
    Ok(CheckCommand::Run { config: Box::new(config), history })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::test_words as args;

    #[test]
    fn defaults_and_options() {
        let CheckCommand::Run { config, history } = parse_check_args(args(&[]), 7).unwrap() else {
            panic!("expected a run");
        };
        assert_eq!(config.seed, 7);
        assert_eq!(config.nemesis, vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Join]);
        assert!(history.is_none());
        let CheckCommand::Run { config, history } = parse_check_args(
            args(&[
                "--duration",
                "5",
                "--nemesis",
                "zk,kill",
                "--seed",
                "9",
                "--history",
                "h.json",
                "--broken",
                "stale-reads",
            ]),
            7,
        )
        .unwrap() else {
            panic!("expected a run");
        };
        assert_eq!(config.duration, Duration::from_secs(5));
        assert_eq!(config.nemesis, vec![FaultKind::Zk, FaultKind::Kill]);
        assert_eq!(config.seed, 9);
        assert!(config.broken_reads);
        assert_eq!(history, Some(PathBuf::from("h.json")));
        let CheckCommand::Run { config, .. } = parse_check_args(args(&["--zk", "h:1"]), 1).unwrap() else {
            panic!("expected a run");
        };
        assert!(config.nemesis.is_empty(), "attaching injects no faults");
    }

    #[test]
    fn verify_and_errors() {
        assert!(matches!(parse_check_args(args(&["verify", "h.json"]), 1), Ok(CheckCommand::Verify(_))));
        assert!(parse_check_args(args(&["verify"]), 1).is_err());
        assert!(parse_check_args(args(&["--nemesis", "flood"]), 1).is_err());
        assert!(parse_check_args(args(&["--nodes", "1"]), 1).is_err());
        assert!(parse_check_args(args(&["--nodes", "1", "--nemesis", "zk"]), 1).is_ok());
        assert!(parse_check_args(args(&["--broken", "everything"]), 1).is_err());
        assert!(parse_check_args(args(&["--zk", "h:1", "--broken", "stale-reads"]), 1).is_err());
        assert!(parse_check_args(args(&["--nemesis", "crash-all"]), 1).is_err(), "crash-all needs --durable");
        let Ok(CheckCommand::Run { config, .. }) = parse_check_args(args(&["--durable"]), 1) else {
            panic!("expected a run");
        };
        assert!(config.durable);
        let expected = [FaultKind::Kill, FaultKind::Pause, FaultKind::Join, FaultKind::CrashAll];
        assert_eq!(config.nemesis, expected, "crash-all joins the default faults");
        assert!(parse_check_args(args(&["--durable", "--nemesis", "crash-all"]), 1).is_ok());
    }

    #[test]
    fn sim_options() {
        let Ok(CheckCommand::Sim(sim)) =
            parse_check_args(args(&["sim", "--seeds", "10", "--inject-bug", "stale-read", "--seed", "4"]), 1)
        else {
            panic!("expected a simulation");
        };
        assert_eq!(sim.seeds, 10);
        assert_eq!(sim.base_seed, 4);
        assert_eq!(sim.bug, Some(Check::ReadAtTail));
        assert!(parse_check_args(args(&["sim", "--inject-bug", "everything"]), 1).is_err());
        assert!(parse_check_args(args(&["sim", "--duration", "5"]), 1).is_err());
        assert!(matches!(parse_check_args(args(&["sim", "--list-bugs"]), 1), Ok(CheckCommand::ListBugs)));
    }

    #[test]
    fn failover_options() {
        let Ok(CheckCommand::Failover(config)) = parse_check_args(args(&["failover"]), 3) else {
            panic!("expected a failover run");
        };
        assert_eq!((config.rounds, config.pauses_ms.clone(), config.seed), (5, vec![300, 1000, 3000], 3));
        let Ok(CheckCommand::Failover(config)) =
            parse_check_args(args(&["failover", "--rounds", "1", "--sigstop", "200", "--json"]), 3)
        else {
            panic!("expected a failover run");
        };
        assert_eq!((config.rounds, config.pauses_ms.clone(), config.json), (1, vec![200], true));
        let Ok(CheckCommand::Failover(config)) =
            parse_check_args(args(&["failover", "--sigstop", "none"]), 3)
        else {
            panic!("expected a failover run");
        };
        assert!(config.pauses_ms.is_empty());
        assert!(parse_check_args(args(&["failover", "--sigstop", "300,x"]), 1).is_err());
        assert!(parse_check_args(args(&["failover", "--rounds", "0"]), 1).is_err());
        assert!(parse_check_args(args(&["failover", "--nemesis", "kill"]), 1).is_err());
    }

    /// `table-check --help` lists every injected bug by name, with what it breaks.
    #[test]
    fn the_help_lists_every_injected_bug() {
        let usage = check_usage();
        for check in Check::ALL {
            let line = usage.lines().find(|line| line.trim_start().starts_with(check.bug_name()));
            assert!(line.is_some_and(|line| line.contains(check.bug_description())), "{}", check.bug_name());
        }
    }
}
