//! The interactive client: line editing and history on a terminal; plain
//! line-by-line reading, with no prompt or banner, when stdin is not a
//! terminal (so `table-client ... < commands.txt` prints only results).

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::command::{self, Command, Outcome};
use crate::client::Client;

const PROMPT: &str = "table> ";

/// History file in the user's home directory.
fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".table_client_history"))
}

/// Runs the shell until `quit` or end of input; returns the exit code: 0, or
/// 2 when reading commands from a non-terminal and any of them failed.
pub fn run(client: &mut Client) -> i32 {
    if io::stdin().is_terminal() {
        match DefaultEditor::new() {
            Ok(editor) => return interactive(client, editor),
            Err(error) => eprintln!("line editing unavailable ({error}); reading plain lines"),
        }
    }
    scripted(client, io::stdin().lock())
}

fn interactive(client: &mut Client, mut editor: DefaultEditor) -> i32 {
    let history = history_path();
    if let Some(path) = &history {
        // A missing history file is normal on first use.
        let _ = editor.load_history(path);
    }
    println!("chaintable client for {}; 'help' lists the commands, 'quit' leaves.", client.describe());
    loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if run_line(client, &line) == LineResult::Quit {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
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

fn scripted(client: &mut Client, mut input: impl BufRead) -> i32 {
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
        let result = match std::str::from_utf8(&line) {
            Ok(text) => run_line(client, text),
            Err(_) => {
                eprintln!("error: input line is not UTF-8");
                LineResult::Failed
            }
        };
        match result {
            LineResult::Quit => break,
            LineResult::Failed => any_failed = true,
            LineResult::Continue => {}
        }
    }
    if any_failed { 2 } else { 0 }
}

#[derive(PartialEq)]
enum LineResult {
    Continue,
    Failed,
    Quit,
}

fn run_line(client: &mut Client, line: &str) -> LineResult {
    let command = match command::parse_line(line) {
        Ok(None) => return LineResult::Continue,
        Ok(Some(Command::Quit)) => return LineResult::Quit,
        Ok(Some(command)) => command,
        Err(message) => {
            eprintln!("error: {message}");
            return LineResult::Failed;
        }
    };
    let mut stdout = io::stdout().lock();
    let result = command::execute(client, &command, &mut stdout);
    let _ = stdout.flush();
    match result {
        Ok(Outcome::Done) => LineResult::Continue,
        Ok(Outcome::Absent) => {
            if let Command::Get { key } | Command::Del { key } = &command {
                eprintln!("{key}: not found");
            }
            LineResult::Continue
        }
        Err(error) => {
            eprintln!("error: {error}");
            LineResult::Failed
        }
    }
}
