//! The interactive client. On a terminal: line editing, history, Tab
//! completion of command names, Ctrl-C that cancels a pending request, and a
//! status line while the chain is retried. The prompt and the editing go to
//! the terminal itself (`/dev/tty`), never to a redirected stdout. When stdin
//! is not a terminal: plain line-by-line reading with no prompt or banner
//! (so `table-client ... < commands.txt` prints only results).

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Behavior, Config, Editor, EventHandler, KeyEvent};

use super::command::{self, Command, Outcome};
use super::output::{Format, Printer};
use super::requests::{RequestRunner, Waited};
use super::shell_editing::{ClearOrLeave, ShellHelper};
use crate::client::Client;
use crate::client::error::ClientError;

const PROMPT: &str = "table> ";

/// Environment variable: the history file; empty for none.
pub const HISTORY_FILE_VARIABLE: &str = "CHAINTABLE_HISTFILE";

/// The history file: `CHAINTABLE_HISTFILE` if set (empty: no history), else
/// `~/.table_client_history`.
pub fn history_path(variable: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    match variable(HISTORY_FILE_VARIABLE) {
        Some(path) if path.is_empty() => None,
        Some(path) => Some(PathBuf::from(path)),
        None => variable("HOME").map(|home| PathBuf::from(home).join(".table_client_history")),
    }
}

/// Makes a client; the shell makes a fresh one after a cancelled request,
/// whose client is still busy with it.
pub type ClientFactory = Box<dyn Fn() -> Result<Client, ClientError> + Send>;

/// Runs the shell until `quit` or end of input; returns the exit code: 0, or
/// 2 when reading commands from a non-terminal and any of them failed.
pub fn run(make_client: ClientFactory, format: Format) -> i32 {
    if io::stdin().is_terminal() {
        let config = Config::builder().behavior(Behavior::PreferTerm).auto_add_history(false).build();
        match Editor::<ShellHelper, DefaultHistory>::with_config(config) {
            Ok(editor) => return interactive(make_client, format, editor),
            Err(error) => eprintln!("line editing unavailable ({error}); reading plain lines"),
        }
    }
    match make_client() {
        Ok(mut client) => scripted(&mut client, format, io::stdin().lock()),
        Err(error) => {
            eprintln!("error: {error}");
            2
        }
    }
}

fn interactive(
    make_client: ClientFactory,
    format: Format,
    mut editor: Editor<ShellHelper, DefaultHistory>,
) -> i32 {
    editor.set_helper(Some(ShellHelper));
    editor.bind_sequence(KeyEvent::ctrl('C'), EventHandler::Conditional(Box::new(ClearOrLeave)));
    let history = history_path(|name| std::env::var_os(name));
    if let Some(path) = &history {
        // A missing history file is normal on first use.
        let _ = editor.load_history(path);
    }
    let mut runner = match RequestRunner::start(make_client, format) {
        Ok(runner) => runner,
        Err(error) => {
            eprintln!("error: {error}");
            return 2;
        }
    };
    eprintln!(
        "chaintable client for {}; 'help' lists the commands, Tab completes them, 'quit' leaves.",
        runner.describe()
    );
    loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                let command = match command::parse_line(&line) {
                    Ok(None) => continue,
                    Ok(Some(Command::Quit)) => break,
                    Ok(Some(command)) => command,
                    Err(message) => {
                        report_parse_error(format, &message);
                        continue;
                    }
                };
                match runner.run(command) {
                    Waited::Finished => {}
                    Waited::Cancelled => {
                        eprintln!("cancelled (a write may or may not have been applied)");
                    }
                    Waited::Failed(error) => {
                        eprintln!("error: {error}");
                        return 2;
                    }
                }
            }
            // Ctrl-C on an empty line (on a non-empty one it clears the line):
            // leave, as redis-cli does.
            Err(ReadlineError::Interrupted) | Err(ReadlineError::Eof) => break,
            Err(error) => {
                eprintln!("cannot read input: {error}");
                break;
            }
        }
    }
    if let Some(path) = &history
        && let Err(error) = editor.save_history(path)
    {
        eprintln!("cannot save history to {}: {error}", path.display());
    }
    0
}

fn scripted(client: &mut Client, format: Format, mut input: impl BufRead) -> i32 {
    let mut any_failed = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                eprintln!("cannot read input: {error}");
                return 2;
            }
        }
        let parsed = std::str::from_utf8(&line)
            .map_err(|_| "input line is not UTF-8".to_owned())
            .and_then(command::parse_line);
        let failed = match parsed {
            Ok(None) => false,
            Ok(Some(Command::Quit)) => break,
            Ok(Some(command)) => {
                run_command(client, &command, format, "error: ", &mut io::stdout(), &mut io::stderr())
                    == FAILED
            }
            Err(message) => {
                report_parse_error(format, &message);
                true
            }
        };
        any_failed |= failed;
    }
    if any_failed { FAILED } else { 0 }
}

/// The exit code of a failed command (and of a shell in which one failed).
pub const FAILED: i32 = 2;

/// A line that is not a command: a result line of its own in JSON.
fn report_parse_error(format: Format, message: &str) {
    let _ =
        Printer::new(format, &mut io::stdout(), &mut io::stderr()).print_failure("error: ", message, None);
}

/// Runs one command and reports it: results on `out`; an absent key and a
/// failure (after `prefix`) as the format says (see [`Printer::print_failure`]).
/// Returns the command's exit code (see [`command::exit_code`]).
pub fn run_command(
    client: &mut Client,
    command: &Command,
    format: Format,
    prefix: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let mut printer = Printer::new(format, out, err);
    let result = command::execute(client, command, &mut printer);
    match &result {
        Ok(Outcome::Done) => {}
        Ok(Outcome::Absent) => {
            if let Command::Get { key } | Command::Del { key } = command {
                let _ = printer.note_not_found(key);
            }
        }
        Err(error) => {
            let _ = printer.print_failure(prefix, &error.to_string(), error.client_error());
        }
    }
    command::exit_code(&result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_file_follows_the_environment() {
        fn environment(histfile: Option<&'static str>) -> impl Fn(&str) -> Option<std::ffi::OsString> {
            move |name| match name {
                HISTORY_FILE_VARIABLE => histfile.map(Into::into),
                "HOME" => Some("/home/u".into()),
                _ => None,
            }
        }
        assert_eq!(history_path(environment(None)), Some(PathBuf::from("/home/u/.table_client_history")));
        assert_eq!(history_path(environment(Some(""))), None);
        assert_eq!(history_path(environment(Some("/tmp/h"))), Some(PathBuf::from("/tmp/h")));
    }
}
