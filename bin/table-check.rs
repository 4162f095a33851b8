//! `table-check`: run clients under injected faults and check that what
//! they saw is linearizable (or re-check a saved history). Exit 0 on PASS,
//! 1 on FAIL, 2 on a usage or setup error.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use signal_hook::consts::{SIGINT, SIGTERM};

use chaintable::chain::Check;
use chaintable::check::args::{CheckCommand, check_usage, parse_check_args};
use chaintable::check::failover::{self, FailoverConfig};
use chaintable::check::failover_report;
use chaintable::check::history::History;
use chaintable::check::run;
use chaintable::check::sim::run_seeds;
use chaintable::check::verify::{Explanation, Report, verify};
use chaintable::cli::args::arguments_or_exit;

fn main() -> ExitCode {
    let fresh_seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), std::process::id());
    let command = match arguments_or_exit(
        "table-check",
        &check_usage(),
        parse_check_args(std::env::args_os().skip(1), fresh_seed),
    ) {
        Ok(arguments) => arguments,
        Err(code) => return code,
    };
    // The simulator's nodes would log thousands of role changes a second;
    // its trace is the record of a simulated run.
    let default_filter = if matches!(command, CheckCommand::Sim(_)) { "off" } else { "info,zookeeper=off" };
    let mut logging =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    chaintable::coord::log_pace::init(logging.format_timestamp_millis());
    match command {
        CheckCommand::Sim(sim) => {
            if run_seeds(&sim) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        CheckCommand::ListBugs => {
            for check in Check::ALL {
                let kind = match (check.reached_by_simulator(), check.of_durability(), check.of_chains()) {
                    (false, _, _) => " shadowed",
                    (true, true, _) => " durable",
                    (true, false, true) => " chains",
                    (true, false, false) => "",
                };
                println!("{}{kind}", check.bug_name());
            }
            ExitCode::SUCCESS
        }
        CheckCommand::Failover(config) => run_failover(&config),
        CheckCommand::Verify(path) => {
            let history: History = match std::fs::read_to_string(&path)
                .map_err(|error| error.to_string())
                .and_then(|text| serde_json::from_str(&text).map_err(|error| error.to_string()))
            {
                Ok(history) => history,
                Err(error) => {
                    eprintln!("table-check: cannot read {}: {error}", path.display());
                    return ExitCode::from(2);
                }
            };
            let report = verify(&history);
            print_report(&history, &report, None, None)
        }
        CheckCommand::Run { config, history: history_path } => {
            println!(
                "table-check: seed {} ({} s, {} clients, {} keys, {} nodes, nemesis {})",
                config.seed,
                config.duration.as_secs(),
                config.clients,
                config.keys,
                config.nodes,
                if config.nemesis.is_empty() {
                    "none".to_owned()
                } else {
                    config.nemesis.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
                }
            );
            let interrupted = match interruptible() {
                Ok(interrupted) => interrupted,
                Err(code) => return code,
            };
            let outcome = match run::run(&config, &interrupted) {
                Ok(outcome) => outcome,
                Err(error) => {
                    eprintln!("table-check: {error}");
                    return ExitCode::from(2);
                }
            };
            if let Some(path) = history_path {
                let written = serde_json::to_string(&outcome.history)
                    .map_err(|error| error.to_string())
                    .and_then(|text| std::fs::write(&path, text).map_err(|error| error.to_string()));
                match written {
                    Ok(()) => println!("history written to {}", path.display()),
                    Err(error) => eprintln!("table-check: cannot write {}: {error}", path.display()),
                }
            }
            print_report(
                &outcome.history,
                &outcome.report,
                outcome.divergence.as_deref(),
                outcome.watch.as_deref(),
            )
        }
    }
}

/// SIGINT/SIGTERM end a run early but cleanly: every process it started
/// is stopped by PID on the way out. The flag they set.
fn interruptible() -> Result<Arc<AtomicBool>, ExitCode> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        if let Err(error) = signal_hook::flag::register(signal, Arc::clone(&interrupted)) {
            eprintln!("table-check: cannot handle signal {signal}: {error}");
            return Err(ExitCode::from(2));
        }
    }
    Ok(interrupted)
}

/// `table-check failover`: runs it, prints the table (or JSON) and the
/// verdict; the exit code follows it.
fn run_failover(config: &FailoverConfig) -> ExitCode {
    let interrupted = match interruptible() {
        Ok(interrupted) => interrupted,
        Err(code) => return code,
    };
    if !config.json {
        println!(
            "table-check failover: seed {} ({} rounds per victim, sigstop {:?} ms, {} clients + a ledger writer, session {} ms)",
            config.seed,
            config.rounds,
            config.pauses_ms,
            config.clients,
            config.session_timeout.as_millis()
        );
    }
    let outcome = match failover::run(config, &interrupted) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("table-check failover: {error}");
            return ExitCode::from(2);
        }
    };
    let report = &outcome.report;
    if config.json {
        let summary = serde_json::json!({
            "seed": config.seed,
            "rows": outcome.rows,
            "operations": report.operations,
            "linearizable": report.passed(),
            "problems": outcome.problems,
            "passed": outcome.passed(),
        });
        println!("{summary}");
    } else {
        print!("{}", failover_report::table(&outcome.rows));
        println!(
            "checked {} operations on {} keys ({} writes with unknown outcome)",
            report.operations, report.keys, report.unknown_writes
        );
    }
    for violation in &report.violations {
        eprint!("{}", Explanation { violation, history: &outcome.history });
    }
    for key in &report.undecided {
        eprintln!("key {key}: the search ran out of steps; not proven either way");
    }
    for problem in &outcome.problems {
        eprintln!("table-check failover: {problem}");
    }
    if outcome.passed() {
        if !config.json {
            println!("PASS (seed {})", config.seed);
        }
        ExitCode::SUCCESS
    } else {
        eprintln!("table-check failover: FAIL (seed {})", config.seed);
        ExitCode::from(1)
    }
}

/// Prints the verdict; the exit code follows it.
fn print_report(
    history: &History,
    report: &Report,
    divergence: Option<&str>,
    watch: Option<&str>,
) -> ExitCode {
    let unknown = report.unknown_writes;
    println!(
        "checked {} operations on {} keys ({unknown} writes with unknown outcome), {} faults injected",
        report.operations,
        report.keys,
        history.faults.len()
    );
    for fault in &history.faults {
        println!("  fault {fault}");
    }
    for violation in &report.violations {
        print!("{}", Explanation { violation, history });
    }
    for key in &report.undecided {
        println!("key {key}: the search ran out of steps; not proven either way");
    }
    if let Some(divergence) = divergence {
        println!("replicas diverged: {divergence}");
    }
    if let Some(problem) = watch {
        println!("the watcher: {problem}");
    }
    if report.passed() && divergence.is_none() && watch.is_none() {
        println!("PASS (seed {})", history.seed);
        ExitCode::SUCCESS
    } else {
        println!("FAIL (seed {})", history.seed);
        ExitCode::from(1)
    }
}
