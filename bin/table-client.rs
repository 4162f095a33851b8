//! `table-client (--server <host:port> | <zk-hosts> [--chain <path>]) [command...]`:
//! one command and exit, or the interactive shell.

use std::io::{self, Write};
use std::process::ExitCode;

use chaintable::cli::args::arguments_or_exit;
use chaintable::cli::client_args::{CLIENT_USAGE, Target, parse_client_args};
use chaintable::cli::command::{self, Command, Outcome};
use chaintable::cli::shell;
use chaintable::client::Client;

fn main() -> ExitCode {
    // The zookeeper crate logs every failed connection attempt as an error,
    // many per second while ZooKeeper is down; the client reports the outcome
    // itself, once.
    let mut logging =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,zookeeper=off"));
    chaintable::coord::log_pace::init(&mut logging);
    let args =
        match arguments_or_exit("table-client", CLIENT_USAGE, parse_client_args(std::env::args_os().skip(1)))
        {
            Ok(arguments) => arguments,
            Err(code) => return code,
        };
    let mut client = match &args.target {
        Target::Server(address) if args.local_reads => Client::local_reader(address, args.options),
        Target::Server(address) => Client::new(address, args.options),
        Target::Chain { zk_hosts, path } => match Client::chain(zk_hosts, path, args.options) {
            Ok(client) => client,
            Err(error) => {
                eprintln!("table-client: {error}");
                return ExitCode::from(2);
            }
        },
    };
    if args.command.is_empty() {
        return ExitCode::from(shell::run(&mut client) as u8);
    }
    let command = match command::parse_words(&args.command) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("table-client: {message}\n\n{CLIENT_USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = command::execute(&mut client, &command, &mut io::stdout().lock());
    let _ = io::stdout().flush();
    match &result {
        Ok(Outcome::Absent) => {
            if let Command::Get { key } | Command::Del { key } = &command {
                eprintln!("{key}: not found");
            }
        }
        Err(error) => eprintln!("table-client: {error}"),
        Ok(Outcome::Done) => {}
    }
    ExitCode::from(command::exit_code(&result) as u8)
}
