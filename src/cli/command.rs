//! The client's command language, shared by the interactive shell and
//! one-shot mode: parsing, and execution against a [`Client`] into
//! [`Record`]s that [`super::output`] prints as text (the contract in the
//! README) or JSON.

use std::io;

use super::output::{Printer, Record};
use super::words::{self, Word};
use super::{expiry, migrate, operations, shards, watch};
use crate::client::Client;
use crate::client::error::ClientError;
use crate::proto::Statistics;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Put {
        key: String,
        value: Vec<u8>,
    },
    Get {
        key: String,
    },
    Del {
        key: String,
    },
    Size,
    GetKeys {
        prefix: String,
    },
    GetTable,
    Cas {
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    },
    Incr {
        key: String,
        delta: i64,
    },
    Mget {
        keys: Vec<String>,
    },
    Mset {
        pairs: Vec<(String, Vec<u8>)>,
    },
    Exists {
        key: String,
    },
    /// `put --ttl`: the value expires `ttl_ms` after it is set.
    Expiring {
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    },
    Expire {
        key: String,
        ttl_ms: u64,
    },
    Ttl {
        key: String,
    },
    Persist {
        key: String,
    },
    Scan {
        prefix: String,
    },
    /// `watch`: `keys` is the key, or with `prefix` the prefix.
    Watch {
        keys: String,
        prefix: bool,
        from: Option<u64>,
    },
    Stats,
    Members,
    /// `shards`: the shard map, each chain's ends and keys.
    Shards,
    /// `shards init`: the first map, these chains in this order.
    ShardsInit {
        chains: Vec<String>,
    },
    /// `migrate`: move slots to a chain (or `--abort` that), and follow it.
    Migrate {
        request: crate::shard::moves::MoveRequest,
        abort: bool,
    },
    Help,
    Quit,
}

/// How a command that did not fail ended; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Exit 0.
    Done,
    /// The key was absent (`get`, `del`, `exists`, a key of `mget`), or
    /// `cas` did not match: exit 1.
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
    /// `members`: no member answered its `stats`; why the first did not.
    NoMemberAnswered(ClientError),
}

impl CommandError {
    /// The client error behind the failure, if any (its code goes into JSON).
    pub fn client_error(&self) -> Option<&ClientError> {
        match self {
            CommandError::Client(error) | CommandError::NoMemberAnswered(error) => Some(error),
            CommandError::Output(_) => None,
        }
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Client(error) => write!(f, "{error}"),
            CommandError::Output(error) => write!(f, "cannot write output: {error}"),
            CommandError::NoMemberAnswered(error) => write!(f, "no member of the chain answered: {error}"),
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
commands (short forms in brackets; names in any case):
  put <key> <value>   [p]   set key to value (in the shell the rest of the line is the value)
  put --ttl <duration> <key> <value>
                            the same, deleted once duration (e.g. 500ms, 10s, 5m, 1h, 1d;
                            a bare number is seconds) has passed; a put without --ttl
                            removes any expiry
  get <key>           [g]   print the value of key
  del <key>           [d]   delete key
  size                [s]   number of keys
  getkeys [prefix]    [k]   every key (starting with prefix), one per line
  gettable            [t]   every key<TAB>value, one per line (non-UTF-8 bytes as \\xNN)
  scan [prefix]             key<TAB>value of every key starting with prefix, like gettable
  cas <key> <expected>|--absent <new>
                            set key to new only if it holds expected (or is absent);
                            prints OK, or else the value it holds (exit 1)
  incr <key> [delta]        add delta (default 1) to the signed 64-bit number at key
                            (absent: 0); prints the new value
  mget <key>...             key<TAB>value of each key (absent keys: exit 1)
  mset <key> <value>...     set every pair in one atomic write
  exists <key>              1 if key exists, else 0 (exit 1)
  expire <key> <duration>   delete key once duration has passed; 1, or 0 if absent (exit 1)
  ttl <key>                 milliseconds until key expires; -1: it does not expire;
                            -2: it is absent (exit 1)
  persist <key>             key no longer expires; 1, or 0 if absent (exit 1)
  watch [--prefix] <key> [--from <sequence>]
                            print every committed change of key (or of every key starting
                            with it) as it happens: <sequence> PUT <key> <value>, DELETE or
                            EXPIRED, tab-separated; from the next one, or from sequence;
                            until Ctrl-C (exit 2 if that history is gone or it falls behind)
  stats               [st]  server statistics
  members             [chain]  every member of the chain: state, role, progress, uptime
  shards                    the shard map: version, slot ranges, each chain's head, tail and keys
  shards init <chain>...    make the first shard map: the chains get equal consecutive slot
                            ranges in the order named (refused once a map exists)
  migrate <first>[-<last>] <chain> [--abort]
                            move slots to chain online, printing progress until the map
                            shows them there (again: follow it; --abort: give them back)
  help                [h]   this text
  quit                [q]   leave the shell
quoting: \"a b\" is one word, with escapes \\\" \\\\ \\n \\t \\xHH; 'a b' is taken literally; \"\" is empty";

/// Every command: its name and its other names. Parsing and the shell's Tab
/// completion read this one table; a new command adds a row here, a line to
/// [`HELP`] and to `table-client --help`, a [`Command`] and its arm in [`execute`].
pub const COMMAND_NAMES: &[(&str, &[&str])] = &[
    ("put", &["p"]),
    ("get", &["g"]),
    ("del", &["d"]),
    ("size", &["s"]),
    ("getkeys", &["k"]),
    ("gettable", &["t"]),
    ("scan", &[]),
    ("cas", &[]),
    ("incr", &[]),
    ("mget", &[]),
    ("mset", &[]),
    ("exists", &[]),
    ("expire", &[]),
    ("ttl", &[]),
    ("persist", &[]),
    ("watch", &[]),
    ("stats", &["st"]),
    ("members", &["chain"]),
    ("shards", &[]),
    ("migrate", &[]),
    ("help", &["h", "?"]),
    ("quit", &["q", "exit"]),
];

/// Whether `word` names a command, in any case.
pub fn is_command_name(word: &str) -> bool {
    canonical_name(word).is_ok()
}

/// Parses a one-shot command from the words after the target. Words are raw
/// bytes so a value can be any byte string; for `put`, words after the value
/// are joined to it with single spaces, as in the shell.
pub fn parse_words(words: &[Vec<u8>]) -> Result<Command, String> {
    let (name, arguments) = words.split_first().ok_or("no command given")?;
    let name = std::str::from_utf8(name).map_err(|_| "command is not UTF-8".to_owned())?;
    let name = canonical_name(name)?;
    let key = |index: usize| -> Result<String, String> {
        let word = arguments.get(index).ok_or_else(|| format!("{name}: missing <key>"))?;
        key_text(name, word)
    };
    if let Some(command) = special_command(name, arguments) {
        return command;
    }
    let command = match name {
        "put" => {
            let key = key(0)?;
            if arguments.len() < 2 {
                return Err("put: missing <value>".into());
            }
            Command::Put { key, value: arguments[1..].join(&b' ') }
        }
        "get" => Command::Get { key: key(0)? },
        "del" => Command::Del { key: key(0)? },
        "scan" if arguments.is_empty() => Command::Scan { prefix: String::new() },
        "scan" => Command::Scan { prefix: key(0)? },
        other => bare_command(other),
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

/// The commands the modules beside this one parse, from their argument
/// words; `None` for the others.
fn special_command(name: &str, arguments: &[Vec<u8>]) -> Option<Result<Command, String>> {
    operations::parse(name, arguments)
        .or_else(|| expiry::parse(name, arguments))
        .or_else(|| watch::parse(name, arguments))
        .or_else(|| shards::parse(name, arguments))
        .or_else(|| migrate::parse(name, arguments))
}

/// Parses a shell line (quoting as in [`words`]); `None` for a blank line.
/// The value of `put` is the rest of the line after the key, spaces
/// included, unless it starts with a quote: then it is that one quoted word.
pub fn parse_line(line: &str) -> Result<Option<Command>, String> {
    let Some(first) = words::next_word(line, 0)? else {
        return Ok(None);
    };
    let name = std::str::from_utf8(&first.bytes).map_err(|_| "command is not UTF-8".to_owned())?;
    let name = canonical_name(name)?;
    if name == "put" {
        let mut key = words::next_word(line, first.end)?.ok_or("put: missing <key>")?;
        let mut ttl_ms = None;
        if key.bytes == expiry::TTL_FLAG.as_bytes() {
            let usage = || format!("usage: put {} <duration> <key> <value>", expiry::TTL_FLAG);
            let duration = words::next_word(line, key.end)?.ok_or_else(usage)?;
            ttl_ms = Some(expiry::duration_ms(&duration.bytes)?);
            key = words::next_word(line, duration.end)?.ok_or_else(usage)?;
        }
        let (value, key) = (put_value(line, &key)?, key_text(name, &key.bytes)?);
        return Ok(Some(match ttl_ms {
            Some(ttl_ms) => Command::Expiring { key, value, ttl_ms },
            None => Command::Put { key, value },
        }));
    }
    let arguments = words::split(&line[first.end..])?;
    let words: Vec<Vec<u8>> = arguments.iter().map(|word| word.bytes.clone()).collect();
    if let Some(command) = special_command(name, &words) {
        return command.map(Some);
    }
    let command = match name {
        "get" | "del" => {
            let key = arguments.first().ok_or_else(|| format!("{name}: missing <key>"))?;
            let key = key_text(name, &key.bytes)?;
            if name == "get" { Command::Get { key } } else { Command::Del { key } }
        }
        "scan" => {
            let prefix = arguments.first().map(|prefix| key_text(name, &prefix.bytes)).transpose()?;
            Command::Scan { prefix: prefix.unwrap_or_default() }
        }
        other => bare_command(other),
    };
    let expected_arguments =
        usize::from(matches!(command, Command::Get { .. } | Command::Del { .. } | Command::Scan { .. }));
    if arguments.len() > expected_arguments {
        return Err(format!("{name}: too many arguments"));
    }
    Ok(Some(command))
}

/// The value of a shell `put` after `key`: one quoted word, or the rest of
/// the line as it is (without the blanks after the key and the line end).
fn put_value(line: &str, key: &Word) -> Result<Vec<u8>, String> {
    let rest = line[key.end..].trim_start_matches([' ', '\t']).trim_end_matches(['\n', '\r']);
    if rest.is_empty() {
        return Err("put: missing <value> (\"\" is the empty value)".into());
    }
    if !rest.starts_with(['"', '\'']) {
        return Ok(rest.as_bytes().to_vec());
    }
    match words::split(rest)?.as_slice() {
        [value] => Ok(value.bytes.clone()),
        _ => Err("put: a quoted value must be the last word (quote the whole value)".into()),
    }
}

/// A key as text: keys are UTF-8.
fn key_text(name: &str, bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{name}: the key must be UTF-8"))
}

/// Command `name`'s key at argument `index`: there, and UTF-8.
pub(super) fn key_at(name: &str, arguments: &[Vec<u8>], index: usize) -> Result<String, String> {
    let word = arguments.get(index).ok_or_else(|| format!("{name}: missing <key>"))?;
    key_text(name, word)
}

/// The command's name for `name` or any of its other names, in any case.
fn canonical_name(name: &str) -> Result<&'static str, String> {
    let lower = name.to_ascii_lowercase();
    COMMAND_NAMES
        .iter()
        .find(|(canonical, others)| *canonical == lower || others.contains(&lower.as_str()))
        .map(|(canonical, _)| *canonical)
        .ok_or_else(|| format!("unknown command '{name}' (try 'help')"))
}

/// The command of a name that takes no arguments.
fn bare_command(name: &str) -> Command {
    match name {
        "size" => Command::Size,
        "gettable" => Command::GetTable,
        "stats" => Command::Stats,
        "members" => Command::Members,
        "help" => Command::Help,
        "quit" => Command::Quit,
        other => unreachable!("{other} takes arguments"),
    }
}

/// Runs `command` and prints its results with `printer`.
pub fn execute(
    client: &mut Client,
    command: &Command,
    printer: &mut Printer<'_>,
) -> Result<Outcome, CommandError> {
    let mut outcome = Outcome::Done;
    match command {
        Command::Put { key, value } => {
            client.put(key, value.clone())?;
            printer.print(&Record::Written)?;
        }
        Command::Get { key } => match client.get(key)? {
            Some(value) => printer.print(&Record::Found { key, value: &value })?,
            None => {
                printer.print(&Record::NotFound { key })?;
                outcome = Outcome::Absent;
            }
        },
        Command::Del { key } => {
            let existed = client.delete(key)?;
            printer.print(&Record::Deleted { key, existed })?;
            if !existed {
                outcome = Outcome::Absent;
            }
        }
        Command::Size => printer.print(&Record::Size(client.size()?))?,
        Command::GetKeys { prefix } => print_scan(client, prefix, true, printer)?,
        Command::GetTable => print_scan(client, "", false, printer)?,
        Command::Scan { prefix } => print_scan(client, prefix, false, printer)?,
        Command::Stats => printer.print(&Record::Statistics(&client.stats()?))?,
        Command::Members => {
            let reports = client.members()?;
            printer.print(&Record::Members(&reports))?;
            printer.note_member_failures(&reports)?;
            // Nobody could be asked (no client secret, wrong CA, every server
            // down): a failure, not a table of `unreachable` rows and exit 0.
            if let Some(first) = reports.first()
                && let Err(error) = &first.statistics
                && reports.iter().all(|report| report.statistics.is_err())
            {
                printer.flush()?;
                return Err(CommandError::NoMemberAnswered(error.clone()));
            }
        }
        Command::Help => printer.print(&Record::Help)?,
        Command::Quit => {}
        Command::Cas { .. }
        | Command::Incr { .. }
        | Command::Mget { .. }
        | Command::Mset { .. }
        | Command::Exists { .. } => outcome = operations::execute(client, command, printer)?,
        Command::Expiring { .. } | Command::Expire { .. } | Command::Ttl { .. } | Command::Persist { .. } => {
            outcome = expiry::execute(client, command, printer)?
        }
        Command::Watch { .. } => outcome = watch::execute(client, command, printer)?,
        Command::Shards | Command::ShardsInit { .. } => outcome = shards::execute(client, command, printer)?,
        Command::Migrate { .. } => outcome = migrate::execute(client, command, printer)?,
    }
    printer.flush()?;
    Ok(outcome)
}

/// Prints a scan page by page as the pages arrive: keys (`keys_only`) or
/// entries, each page flushed before the next is asked for.
fn print_scan(
    client: &mut Client,
    prefix: &str,
    keys_only: bool,
    printer: &mut Printer<'_>,
) -> Result<(), CommandError> {
    for page in client.scan(prefix, keys_only) {
        for (key, value) in page? {
            match value {
                Some(value) => printer.print(&Record::Entry { key: &key, value: &value })?,
                None => printer.print(&Record::Key(&key))?,
            }
        }
        printer.flush()?;
    }
    Ok(())
}

/// The `stats` figures in order, each a number or a text; the one list both
/// the text and the JSON output are made from. Chain fields only for chain
/// members.
pub fn statistics_fields(statistics: &Statistics) -> Vec<(&'static str, StatisticsValue)> {
    let mut fields = Vec::new();
    if !statistics.role.is_empty() {
        fields.push(("role", StatisticsValue::Text(statistics.role.clone())));
    }
    if !statistics.node.is_empty() {
        fields.push(("node", StatisticsValue::Text(statistics.node.clone())));
        fields.push(("chain_position", StatisticsValue::Number(statistics.chain_position)));
        fields.push(("chain_length", StatisticsValue::Number(statistics.chain_length)));
    }
    if !statistics.metrics_address.is_empty() {
        fields.push(("metrics_address", StatisticsValue::Text(statistics.metrics_address.clone())));
    }
    if !statistics.peer_security.is_empty() {
        fields.push(("peer_security", StatisticsValue::Text(statistics.peer_security.clone())));
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
        ("generation", statistics.generation),
        ("cas", statistics.cas),
        ("incrs", statistics.incrs),
        ("mgets", statistics.mgets),
        ("msets", statistics.msets),
        ("exists", statistics.exists),
        ("expires", statistics.expires),
        ("ttls", statistics.ttls),
        ("persists", statistics.persists),
        ("state_transfers_received", statistics.state_transfers_received),
        ("state_transfers_sent", statistics.state_transfers_sent),
        ("fencings", statistics.fencings),
        ("rejoins_resumed", statistics.rejoins_resumed),
        ("removals_by_proof", statistics.removals_by_proof),
        ("removals_by_lease", statistics.removals_by_lease),
        ("peer_auth_failures", statistics.peer_auth_failures),
        ("log_syncs", statistics.log_syncs),
        ("synced", statistics.synced),
        ("watchers", statistics.watchers),
        ("watchers_cut_off", statistics.watchers_cut_off),
        ("watch_events", statistics.watch_events),
        ("watch_history_oldest", statistics.watch_history_oldest),
        ("watch_history_writes", statistics.watch_history_writes),
    ];
    fields.extend(lines.iter().map(|&(name, value)| (name, StatisticsValue::Number(value))));
    if statistics.shard_slots > 0 {
        fields.push(("shard_slots", StatisticsValue::Number(statistics.shard_slots)));
        fields.push(("shard_map_version", StatisticsValue::Number(statistics.shard_map_version)));
    }
    fields
}

/// One `stats` figure.
#[derive(Debug, Clone, PartialEq)]
pub enum StatisticsValue {
    Number(u64),
    Text(String),
}

/// `name: value` lines for `stats`.
pub fn format_statistics(statistics: &Statistics) -> String {
    statistics_fields(statistics)
        .into_iter()
        .map(|(name, value)| match value {
            StatisticsValue::Number(number) => format!("{name}: {number}\n"),
            StatisticsValue::Text(text) => format!("{name}: {text}\n"),
        })
        .collect()
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
        assert_eq!(parse_words(&words(&["k"])), Ok(Command::GetKeys { prefix: String::new() }));
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
    fn shell_quoting() {
        let put = |key: &str, value: &[u8]| Ok(Some(Command::Put { key: key.into(), value: value.to_vec() }));
        assert_eq!(parse_line(r#"put q "quoted value""#), put("q", b"quoted value"));
        assert_eq!(parse_line(r#"put k """#), put("k", b""));
        assert_eq!(parse_line(r#"put "a b" "  lead\ttab\x00""#), put("a b", b"  lead\ttab\0"));
        assert_eq!(parse_line("put k 'it is \\n'"), put("k", b"it is \\n"));
        assert_eq!(
            parse_line(r#"put k say "hi" now"#),
            put("k", br#"say "hi" now"#),
            "unquoted: the rest as is"
        );
        assert_eq!(parse_line("put k it's"), put("k", b"it's"));
        assert_eq!(parse_line(r#"get "a b""#), Ok(Some(Command::Get { key: "a b".into() })));
        assert_eq!(parse_line(r#"DEL 'a b'"#), Ok(Some(Command::Del { key: "a b".into() })));
        assert!(parse_line(r#"put k "a" b"#).unwrap_err().contains("quoted value must be the last word"));
        assert!(parse_line(r#"get "a b"#).unwrap_err().contains("unbalanced quotes"));
        assert!(parse_line(r#"get "\xff""#).unwrap_err().contains("the key must be UTF-8"));
        assert!(parse_line("put k").unwrap_err().contains("missing <value>"));
    }

    #[test]
    fn command_names_in_any_case() {
        assert_eq!(parse_line("GET x"), Ok(Some(Command::Get { key: "x".into() })));
        assert_eq!(parse_line("Members"), Ok(Some(Command::Members)));
        assert_eq!(parse_line("chain"), Ok(Some(Command::Members)));
        assert_eq!(parse_words(&words(&["SiZe"])), Ok(Command::Size));
        assert!(is_command_name("GETKEYS") && is_command_name("st") && !is_command_name("zk:2181"));
        assert_eq!(parse_line("GeT"), Err("get: missing <key>".into()));
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
    fn statistics_fields_feed_text_and_json_alike() {
        let mut statistics = Statistics::new();
        statistics.role = "tail".into();
        statistics.node = "node0000000002".into();
        let fields = statistics_fields(&statistics);
        assert_eq!(fields[0], ("role", StatisticsValue::Text("tail".into())));
        assert_eq!(fields[2], ("chain_position", StatisticsValue::Number(0)));
        assert_eq!(format_statistics(&statistics).lines().count(), fields.len());
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
