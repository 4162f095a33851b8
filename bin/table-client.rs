//! `table-client (--server <host:port> | <zk-hosts> [--chain <path>]) [command...]`:
//! one command and exit, or the interactive shell.

use std::io::{self, IsTerminal, Read};
use std::process::ExitCode;

use chaintable::cli::args::{arguments_or_exit, usage_error_exit};
use chaintable::cli::client_args::{CLIENT_USAGE, ClientArgs, Target, parse_client_args};
use chaintable::cli::command;
use chaintable::cli::output::Format;
use chaintable::cli::requests;
use chaintable::cli::shell::{self, ClientFactory};
use chaintable::client::Client;

const PROGRAM: &str = "table-client";

fn main() -> ExitCode {
    // The zookeeper crate logs every failed connection attempt as an error,
    // many per second while ZooKeeper is down; the client reports the outcome
    // itself, once. rustyline warns when a terminal does not report the
    // cursor position, which the user can do nothing about.
    let mut logging = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,zookeeper=off,rustyline=off"),
    );
    chaintable::coord::log_pace::init(&mut logging);
    let parsed = parse_client_args(std::env::args_os().skip(1), |name| std::env::var_os(name));
    let mut args = match arguments_or_exit(PROGRAM, CLIENT_USAGE, parsed) {
        Ok(arguments) => arguments,
        Err(code) => return code,
    };
    let format = if args.json { Format::Json } else { Format::Text };
    let make_client = client_factory(&args);
    if args.command.is_empty() {
        return ExitCode::from(shell::run(make_client, format) as u8);
    }
    if args.last_argument_from_stdin {
        let mut last = Vec::new();
        if let Err(error) = io::stdin().read_to_end(&mut last) {
            eprintln!("{PROGRAM}: cannot read stdin (-x): {error}");
            return ExitCode::from(2);
        }
        args.command.push(last);
    }
    // A command that cannot be right fails before anything is contacted.
    let command = match command::parse_words(&args.command) {
        Ok(command) => command,
        Err(message) => return usage_error_exit(PROGRAM, &message),
    };
    let mut client = match make_client() {
        Ok(client) => client,
        Err(error) => {
            eprintln!("{PROGRAM}: {error}");
            return ExitCode::from(2);
        }
    };
    // On a terminal, a retry is said at once, not after --timeout-ms of silence.
    if io::stderr().is_terminal() {
        client.observe_retries(requests::retry_notes(PROGRAM, args.options.timeout));
    }
    let prefix = format!("{PROGRAM}: ");
    let code =
        shell::run_command(&mut client, &command, format, &prefix, &mut io::stdout(), &mut io::stderr());
    ExitCode::from(code as u8)
}

/// Makes clients of the target the arguments name.
fn client_factory(args: &ClientArgs) -> ClientFactory {
    let (target, options, local_reads) = (args.target.clone(), args.options.clone(), args.local_reads);
    let shards_path = args.shards_path.clone();
    Box::new(move || match &target {
        Target::Server(address) if local_reads => Ok(Client::local_reader(address, options.clone())),
        Target::Server(address) => Ok(Client::new(address, options.clone())),
        Target::Chain { zk_hosts, path } => Client::sharded(zk_hosts, path, &shards_path, options.clone()),
    })
}
