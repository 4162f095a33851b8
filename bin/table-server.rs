//! `table-server <port> <table-size> [<zk-hosts>] [options]`: parse
//! arguments, set up logging and signals, run the server until SIGINT/SIGTERM
//! (exit 0), or until the ZooKeeper session expires with --exit-on-expiry
//! (exit 3).

use std::process::ExitCode;
use std::thread;

use chaintable::cli::args::arguments_or_exit;
use chaintable::cli::server_args::{SERVER_USAGE, parse_server_args};
use chaintable::server::fd_limit::effective_clients_max;
use chaintable::server::{Server, ServerEnd};
use log::{error, info};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    let mut logging =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,zookeeper=error"));
    chaintable::coord::log_pace::init(logging.format_timestamp_millis());
    let mut config =
        match arguments_or_exit("table-server", SERVER_USAGE, parse_server_args(std::env::args_os().skip(1)))
        {
            Ok(arguments) => arguments,
            Err(code) => return code,
        };
    config.limits.clients_max = effective_clients_max(config.limits.clients_max, config.clients_max_given);
    let server = match Server::bind(&config) {
        Ok(server) => server,
        Err(bind_error) => {
            error!("cannot start on {}:{}: {bind_error}", config.bind, config.port);
            return ExitCode::FAILURE;
        }
    };
    let (mut signals, shutdown) = match (Signals::new([SIGINT, SIGTERM]), server.shutdown_handle()) {
        (Ok(signals), Ok(shutdown)) => (signals, shutdown),
        (Err(setup_error), _) | (_, Err(setup_error)) => {
            error!("cannot set up shutdown: {setup_error}");
            return ExitCode::FAILURE;
        }
    };
    let signals_handle = signals.handle();
    let signal_thread = thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                info!("received signal {signal}; shutting down");
                shutdown.shutdown();
            }
        })
        .expect("starting the signal thread");
    let result = server.run();
    signals_handle.close();
    let _ = signal_thread.join();
    match result {
        Ok(ServerEnd::Stopped) => ExitCode::SUCCESS,
        Ok(ServerEnd::SessionExpired) => ExitCode::from(3),
        Err(run_error) => {
            error!("server failed: {run_error}");
            ExitCode::FAILURE
        }
    }
}
