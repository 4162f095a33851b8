//! The client's command language, shared by the interactive shell and
//! one-shot mode: parsing, execution against a [`Client`], and the exact
//! output the command-line contract promises (see the README).

use std::io::{self, Write};

use crate::client::Client;
use crate::client::error::ClientError;
use crate::proto::Statistics;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Put { key: String, value: Vec<u8> },
    Get { key: String },
    Del { key: String },
    Size,
    GetKeys,
    GetTable,
    Scan { prefix: String },
    Stats,
    Help,
    Quit,
}

/// How a command that did not fail ended; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Exit 0.
    Done,
    /// The key was absent (`get`, `del`): exit 1.
    Absent,
}

/// Why a command ended the way it did, for the one-shot exit code.
pub fn exit_code(result: &Result<Outcome, CommandError>) -> i32 {
    match result {
        Ok(Outcome::Done) => 0,
        Ok(Outcome::Absent) => 1,
        Err(_) => 2,
    }
}

/// A command that could not run.
#[derive(Debug)]
pub enum CommandError {
    /// The request failed (unreachable, error reply, bad reply).
    Client(ClientError),
    /// Writing the output failed (e.g. a closed pipe).
    Output(io::Error),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Client(error) => write!(f, "{error}"),
            CommandError::Output(error) => write!(f, "cannot write output: {error}"),
        }
    }
}

impl From<ClientError> for CommandError {
    fn from(error: ClientError) -> Self {
        CommandError::Client(error)
    }
}

impl From<io::Error> for CommandError {
    fn from(error: io::Error) -> Self {
        CommandError::Output(error)
    }
}

pub const HELP: &str = "\
commands (short forms in brackets):
  put <key> <value>   [p]   set key to value (in the shell the rest of the line is the value)
  get <key>           [g]   print the value of key
  del <key>           [d]   delete key
  size                [s]   number of keys
  getkeys             [k]   every key, one per line
  gettable            [t]   every key<TAB>value, one per line (non-UTF-8 bytes as \\xNN)
  scan [prefix]             key<TAB>value of every key starting with prefix, like gettable
  stats               [st]  server statistics
  help                [h]   this text
  quit                [q]   leave the shell";

/// Parses a one-shot command from the words after the target. Words are raw
/// bytes so a value can be any byte string; for `put`, words after the value
/// are joined to it with single spaces, as in the shell.
pub fn parse_words(words: &[Vec<u8>]) -> Result<Command, String> {
    let (name, arguments) = words.split_first().ok_or("no command given")?;
    let name = std::str::from_utf8(name).map_err(|_| "command is not UTF-8".to_owned())?;
    let key = |index: usize| -> Result<String, String> {
        let word = arguments.get(index).ok_or_else(|| format!("{name}: missing <key>"))?;
        String::from_utf8(word.clone()).map_err(|_| format!("{name}: the key must be UTF-8"))
    };
    let command = match canonical_name(name)? {
        "put" => {
            let key = key(0)?;
            if arguments.len() < 2 {
                return Err("put: missing <value>".into());
            }
            Command::Put { key, value: arguments[1..].join(&b' ') }
        }
        "get" => Command::Get { key: key(0)? },
        "del" => Command::Del { key: key(0)? },
        "scan" => Command::Scan { prefix: if arguments.is_empty() { String::new() } else { key(0)? } },
        other => bare_command(other)?,
    };
    let expected_arguments = match &command {
        Command::Put { .. } => arguments.len(),
        Command::Get { .. } | Command::Del { .. } | Command::Scan { .. } => 1,
        _ => 0,
    };
    if arguments.len() > expected_arguments {
        return Err(format!("{name}: too many arguments"));
    }
    Ok(command)
}

/// Parses a shell line; `None` for a blank line. The value of `put` is the
/// rest of the line after the key, spaces included.
pub fn parse_line(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim_start();
    if line.trim_end().is_empty() {
        return Ok(None);
    }
    let (name, rest) = split_word(line);
    let name = canonical_name(name)?;
    let command = match name {
        "put" => {
            let (key, value) = split_word(rest);
            if key.is_empty() {
                return Err("put: missing <key>".into());
            }
            if value.is_empty() {
                return Err("put: missing <value>".into());
            }
            Command::Put { key: key.to_owned(), value: value.as_bytes().to_vec() }
        }
        "get" | "del" => {
            let (key, extra) = split_word(rest);
            if key.is_empty() {
                return Err(format!("{name}: missing <key>"));
            }
            if !extra.trim().is_empty() {
                return Err(format!("{name}: too many arguments"));
            }
            let key = key.to_owned();
            if name == "get" { Command::Get { key } } else { Command::Del { key } }
        }
        "scan" => {
            let (prefix, extra) = split_word(rest);
            if !extra.trim().is_empty() {
                return Err("scan: too many arguments".into());
            }
            Command::Scan { prefix: prefix.to_owned() }
        }
        other => {
            if !rest.trim().is_empty() {
                return Err(format!("{other}: too many arguments"));
            }
            bare_command(other)?
        }
    };
    Ok(Some(command))
}

/// The first whitespace-separated word and the rest after one run of
/// whitespace (the rest keeps its inner and trailing spaces).
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => {
            let rest = text[end..].trim_start_matches([' ', '\t']);
            (&text[..end], rest.trim_end_matches(['\n', '\r']))
        }
        None => (text.trim_end_matches(['\n', '\r']), ""),
    }
}

fn canonical_name(name: &str) -> Result<&'static str, String> {
    Ok(match name {
        "put" | "p" => "put",
        "get" | "g" => "get",
        "del" | "d" => "del",
        "size" | "s" => "size",
        "getkeys" | "k" => "getkeys",
        "gettable" | "t" => "gettable",
        "scan" => "scan",
        "stats" | "st" => "stats",
        "help" | "h" | "?" => "help",
        "quit" | "q" | "exit" => "quit",
        other => return Err(format!("unknown command '{other}' (try 'help')")),
    })
}

fn bare_command(name: &str) -> Result<Command, String> {
    Ok(match name {
        "size" => Command::Size,
        "getkeys" => Command::GetKeys,
        "gettable" => Command::GetTable,
        "stats" => Command::Stats,
        "help" => Command::Help,
        "quit" => Command::Quit,
        other => unreachable!("{other} takes arguments"),
    })
}

/// Runs `command` and writes its standard output to `out`.
pub fn execute(client: &mut Client, command: &Command, out: &mut dyn Write) -> Result<Outcome, CommandError> {
    match command {
        Command::Put { key, value } => {
            client.put(key, value.clone())?;
            writeln!(out, "OK")?;
        }
        Command::Get { key } => match client.get(key)? {
            Some(value) => {
                out.write_all(&value)?;
                writeln!(out)?;
            }
            None => return Ok(Outcome::Absent),
        },
        Command::Del { key } => {
            if !client.delete(key)? {
                return Ok(Outcome::Absent);
            }
            writeln!(out, "OK")?;
        }
        Command::Size => writeln!(out, "{}", client.size()?)?,
        Command::GetKeys => print_scan(client, "", true, out)?,
        Command::GetTable => print_scan(client, "", false, out)?,
        Command::Scan { prefix } => print_scan(client, prefix, false, out)?,
        Command::Stats => out.write_all(format_statistics(&client.stats()?).as_bytes())?,
        Command::Help => writeln!(out, "{HELP}")?,
        Command::Quit => {}
    }
    out.flush()?;
    Ok(Outcome::Done)
}

/// Prints a scan page by page as the pages arrive: `key` lines
/// (`keys_only`) or `key<TAB>value` lines, escaped.
fn print_scan(
    client: &mut Client,
    prefix: &str,
    keys_only: bool,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    for page in client.scan(prefix, keys_only) {
        for (key, value) in page? {
            match value {
                Some(value) => writeln!(out, "{}\t{}", escape(key.as_bytes()), escape(&value))?,
                None => writeln!(out, "{}", escape(key.as_bytes()))?,
            }
        }
        out.flush()?;
    }
    Ok(())
}

/// `name: value` lines for `stats`; chain fields only for chain members.
pub fn format_statistics(statistics: &Statistics) -> String {
    let mut text = String::new();
    if !statistics.role.is_empty() {
        text.push_str(&format!("role: {}\n", statistics.role));
    }
    if !statistics.node.is_empty() {
        text.push_str(&format!("node: {}\n", statistics.node));
        text.push_str(&format!("chain_position: {}\n", statistics.chain_position));
        text.push_str(&format!("chain_length: {}\n", statistics.chain_length));
    }
    let lines = [
        ("operations", statistics.operations),
        ("operation_time_us", statistics.operation_time_us),
        ("clients", statistics.clients),
        ("puts", statistics.puts),
        ("gets", statistics.gets),
        ("dels", statistics.dels),
        ("sizes", statistics.sizes),
        ("getkeys", statistics.getkeys),
        ("gettables", statistics.gettables),
        ("stats", statistics.stats),
        ("errors", statistics.errors),
        ("keys", statistics.keys),
        ("bytes_stored", statistics.bytes_stored),
        ("uptime_s", statistics.uptime_s),
        ("last_applied", statistics.last_applied),
        ("committed", statistics.committed),
        ("sent_list", statistics.sent_list),
        ("used_memory", statistics.used_memory),
        ("max_memory", statistics.max_memory),
        ("scans", statistics.scans),
        ("late_frames", statistics.late_frames),
    ];
    text.extend(lines.iter().map(|(name, value)| format!("{name}: {value}\n")));
    text
}

/// Makes bytes printable on one line: valid UTF-8 stays as it is except
/// backslash and control characters; bytes that are not UTF-8 become `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut escaped = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for character in chunk.valid().chars() {
            match character {
                '\\' => escaped.push_str("\\\\"),
                '\t' => escaped.push_str("\\t"),
                '\n' => escaped.push_str("\\n"),
                '\r' => escaped.push_str("\\r"),
                control if control.is_control() && (control as u32) < 0x100 => {
                    escaped.push_str(&format!("\\x{:02x}", control as u32));
                }
                other => escaped.push(other),
            }
        }
        for byte in chunk.invalid() {
            escaped.push_str(&format!("\\x{byte:02x}"));
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ErrorCode;

    fn words(text: &[&str]) -> Vec<Vec<u8>> {
        text.iter().map(|word| word.as_bytes().to_vec()).collect()
    }

    #[test]
    fn one_shot_commands() {
        assert_eq!(
            parse_words(&words(&["put", "k", "v"])),
            Ok(Command::Put { key: "k".into(), value: b"v".to_vec() })
        );
        assert_eq!(
            parse_words(&words(&["p", "k", "two", "words"])),
            Ok(Command::Put { key: "k".into(), value: b"two words".to_vec() })
        );
        assert_eq!(parse_words(&words(&["g", "k"])), Ok(Command::Get { key: "k".into() }));
        assert_eq!(parse_words(&words(&["d", "k"])), Ok(Command::Del { key: "k".into() }));
        assert_eq!(parse_words(&words(&["s"])), Ok(Command::Size));
        assert_eq!(parse_words(&words(&["k"])), Ok(Command::GetKeys));
        assert_eq!(parse_words(&words(&["t"])), Ok(Command::GetTable));
        assert_eq!(parse_words(&words(&["st"])), Ok(Command::Stats));
        assert_eq!(parse_words(&words(&["stats"])), Ok(Command::Stats));
        assert_eq!(parse_words(&words(&["scan"])), Ok(Command::Scan { prefix: String::new() }));
        assert_eq!(parse_words(&words(&["scan", "user:"])), Ok(Command::Scan { prefix: "user:".into() }));
        assert!(parse_words(&words(&["scan", "a", "b"])).is_err());
    }

    #[test]
    fn one_shot_values_are_raw_bytes() {
        let raw = vec![b"put".to_vec(), b"k".to_vec(), vec![0xff, 0x00]];
        assert_eq!(parse_words(&raw), Ok(Command::Put { key: "k".into(), value: vec![0xff, 0x00] }));
        let bad_key = vec![b"get".to_vec(), vec![0xff]];
        assert!(parse_words(&bad_key).is_err());
    }

    #[test]
    fn one_shot_errors() {
        assert!(parse_words(&[]).is_err());
        assert!(parse_words(&words(&["put", "k"])).is_err());
        assert!(parse_words(&words(&["get"])).is_err());
        assert!(parse_words(&words(&["get", "a", "b"])).is_err());
        assert!(parse_words(&words(&["size", "x"])).is_err());
        assert!(parse_words(&words(&["frobnicate"])).unwrap_err().contains("unknown command"));
    }

    #[test]
    fn shell_lines() {
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(
            parse_line("put greeting hello,   world \n"),
            Ok(Some(Command::Put { key: "greeting".into(), value: b"hello,   world ".to_vec() }))
        );
        assert_eq!(parse_line("  g key"), Ok(Some(Command::Get { key: "key".into() })));
        assert_eq!(
            parse_line("put k \t  v  w"),
            Ok(Some(Command::Put { key: "k".into(), value: b"v  w".to_vec() })),
            "the whole run of blanks after the key separates it from the value"
        );
        assert_eq!(parse_line("del key\n"), Ok(Some(Command::Del { key: "key".into() })));
        assert_eq!(parse_line("q"), Ok(Some(Command::Quit)));
        assert_eq!(parse_line("help"), Ok(Some(Command::Help)));
        assert_eq!(parse_line("scan"), Ok(Some(Command::Scan { prefix: String::new() })));
        assert_eq!(parse_line("scan ab\n"), Ok(Some(Command::Scan { prefix: "ab".into() })));
        assert!(parse_line("scan a b").is_err());
        assert!(parse_line("put key").is_err());
        assert!(parse_line("put").is_err());
        assert!(parse_line("get").is_err());
        assert!(parse_line("get a b").is_err());
        assert!(parse_line("size now").is_err());
        assert!(parse_line("nope").is_err());
    }

    #[test]
    fn escaping() {
        assert_eq!(escape(b"plain text"), "plain text");
        assert_eq!(escape("h\u{e9}".as_bytes()), "h\u{e9}");
        assert_eq!(escape(b"a\tb\nc\\d"), "a\\tb\\nc\\\\d");
        assert_eq!(escape(&[b'a', 0xff, 0x00, b'z']), "a\\xff\\x00z");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&Ok(Outcome::Done)), 0);
        assert_eq!(exit_code(&Ok(Outcome::Absent)), 1);
        let failure = Err(CommandError::Client(ClientError::Unreachable("x".into())));
        assert_eq!(exit_code(&failure), 2);
        let refused = CommandError::Client(ClientError::Server {
            code: ErrorCode::ERR_OUT_OF_MEMORY,
            message: "out of memory".into(),
        });
        assert_eq!(refused.to_string(), "server error (ERR_OUT_OF_MEMORY): out of memory");
        assert_eq!(exit_code(&Err(refused)), 2);
    }

    #[test]
    fn statistics_lines() {
        let mut statistics = Statistics::new();
        statistics.operations = 5;
        statistics.clients = 2;
        statistics.used_memory = 1234;
        let text = format_statistics(&statistics);
        assert!(text.contains("operations: 5\n"));
        assert!(text.contains("clients: 2\n"));
        assert!(text.contains("used_memory: 1234\nmax_memory: 0\n"), "{text}");
        assert!(text.lines().all(|line| line.contains(": ")));
    }
}
