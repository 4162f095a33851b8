//! `table-bench (--zk <hosts> | --server <host:port> | --redis <host:port>) [options]`:
//! parse arguments, run the load, print the table (and with --json the JSON
//! line last). Exit 0 done, 1 every operation failed, 2 usage error or target
//! unreachable.

use std::io::{self, Write};
use std::process::ExitCode;

use chaintable::bench::args::{BENCH_USAGE, parse_bench_args};
use chaintable::bench::{self, BenchError};
use chaintable::cli::args::arguments_or_exit;
use chaintable::server::fd_limit::raise_open_files_limit;

fn main() -> ExitCode {
    // The zookeeper crate logs every failed connection attempt as an error;
    // the bench reports an unreachable chain itself, once.
    let mut logging =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,zookeeper=off"));
    chaintable::coord::log_pace::init(&mut logging);
    let args =
        match arguments_or_exit("table-bench", BENCH_USAGE, parse_bench_args(std::env::args_os().skip(1))) {
            Ok(arguments) => arguments,
            Err(code) => return code,
        };
    // Every connection (load or idle) is a file descriptor; Debian's default
    // soft limit of 1024 would stop a run with thousands.
    if let Err(error) = raise_open_files_limit() {
        eprintln!("table-bench: cannot raise the open-files limit: {error}");
    }
    let report = match bench::run(&args, &mut io::stderr()) {
        Ok(report) => report,
        Err(error @ BenchError::Unreachable(_)) => {
            eprintln!("table-bench: {error}");
            return ExitCode::from(2);
        }
        Err(error @ BenchError::Setup(_)) => {
            eprintln!("table-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = io::stdout().lock();
    let _ = write!(stdout, "{}", report.table());
    if args.json {
        let _ = writeln!(stdout, "{}", report.json());
    }
    let _ = stdout.flush();
    if report.ops == 0 && report.errors > 0 {
        eprintln!(
            "table-bench: every operation failed ({} errors; the first: {})",
            report.errors,
            report.first_error.as_deref().unwrap_or("unknown")
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
