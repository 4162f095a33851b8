//! `table-check`: run clients under injected faults and check that what
//! they saw is linearizable (or re-check a saved history). Exit 0 on PASS,
//! 1 on FAIL, 2 on a usage or setup error.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use signal_hook::consts::{SIGINT, SIGTERM};

use chaintable::chain::Check;
use chaintable::check::args::{CheckCommand, check_usage, parse_check_args};
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
            // SIGINT/SIGTERM end the run early but cleanly: every process it
            // started is stopped by PID on the way out.
            let interrupted = Arc::new(AtomicBool::new(false));
            for signal in [SIGINT, SIGTERM] {
                if let Err(error) = signal_hook::flag::register(signal, Arc::clone(&interrupted)) {
                    eprintln!("table-check: cannot handle signal {signal}: {error}");
                    return ExitCode::from(2);
                }
            }
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
