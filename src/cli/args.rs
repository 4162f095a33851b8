//! The argument parsing toolkit of all four binaries (`table-server`,
//! `table-client`, `table-bench`, `table-check`), kept in the library so it
//! is tested like everything else and the mains stay thin. Each command line
//! defines its own options (see [`super::server_args`],
//! [`super::client_args`], [`crate::bench::args`], [`crate::check::args`]);
//! this is the machinery they share:
//!
//! - [`ArgCursor`]: reads the words once: `--name value` or `--name=value`,
//!   flags that take no value, short forms (`-h`), positional words.
//! - [`parse_args`]: the options and positional words of a command line
//!   pulled apart, for parsers that look at all of them before deciding
//!   (`table-server`'s chain options need its `<zk-hosts>` word).
//! - typed values: [`text`], [`number`], [`positive`], [`within`],
//!   [`seconds`], [`byte_size`], [`chain_path`], each with an error that names the option.
//! - [`UsageError`] and [`arguments_or_exit`]: usage on `-h`/`--help` and the
//!   version on `-V`/`--version` (exit 0); otherwise one line saying what is
//!   wrong and one saying where to look, on stderr (exit 2).

use std::ffi::OsString;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::client::connection::ClientOptions;
use crate::secure::secret::Secret;
use crate::secure::tls::ClientTls;

/// What the parser could not accept (exit 2), or a request for the usage or
/// the version (exit 0).
#[derive(Debug, PartialEq)]
pub enum UsageError {
    /// `-h`/`--help` was asked for: print usage, exit 0.
    HelpRequested,
    /// `-V`/`--version` was asked for: print the version, exit 0.
    VersionRequested,
    Invalid(String),
}

/// The version every binary prints for `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a binary does with its parsed arguments: carry on with them; or
/// print the usage (`--help`) or the version (`--version`) and exit 0; or
/// print [`usage_error_text`] on stderr and exit 2.
pub fn arguments_or_exit<T>(
    program: &str,
    usage: &str,
    parsed: Result<T, UsageError>,
) -> Result<T, std::process::ExitCode> {
    match parsed {
        Ok(arguments) => Ok(arguments),
        Err(UsageError::HelpRequested) => {
            println!("{usage}");
            Err(std::process::ExitCode::SUCCESS)
        }
        Err(UsageError::VersionRequested) => {
            println!("{program} {VERSION}");
            Err(std::process::ExitCode::SUCCESS)
        }
        Err(UsageError::Invalid(message)) => Err(usage_error_exit(program, &message)),
    }
}

/// A usage error as printed: what is wrong on one line, where to look on the
/// next (the whole usage would bury the one line that matters).
pub fn usage_error_text(program: &str, message: &str) -> String {
    format!("{program}: {message}\nTry '{program} --help' for more information.")
}

/// Prints [`usage_error_text`] on stderr; the exit status of a usage error (2).
pub fn usage_error_exit(program: &str, message: &str) -> std::process::ExitCode {
    eprintln!("{}", usage_error_text(program, message));
    std::process::ExitCode::from(2)
}

impl From<String> for UsageError {
    fn from(message: String) -> Self {
        UsageError::Invalid(message)
    }
}

/// Default chain node in ZooKeeper (`--chain`).
pub const CHAIN_PATH_DEFAULT: &str = "/chain";

/// Where a client's secret file is found without `--secret-file`.
pub const SECRET_FILE_ENV: &str = "CHAINTABLE_SECRET_FILE";

/// A client's `--secret-file` (or [`SECRET_FILE_ENV`]) and `--tls-ca`,
/// loaded into `options`; `variable` reads the environment (tests give
/// their own).
pub fn client_security(
    secret_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    variable: impl Fn(&str) -> Option<OsString>,
    options: &mut ClientOptions,
) -> Result<(), String> {
    let secret_file =
        secret_file.or_else(|| variable(SECRET_FILE_ENV).filter(|path| !path.is_empty()).map(PathBuf::from));
    if let Some(path) = secret_file {
        options.secret = Some(Secret::load(&path)?.client_key());
    }
    if let Some(ca) = tls_ca {
        options.tls = Some(ClientTls::load(&ca)?);
    }
    Ok(())
}

/// One command-line word, as [`ArgCursor`] reads it.
#[derive(Debug, PartialEq)]
pub enum Arg {
    /// `--name`, or `--name=value` with its `value` inline.
    Option { name: String, inline: Option<OsString> },
    /// Any other word: `--` alone and words that are not UTF-8 included.
    Word(OsString),
}

/// A short form of an option and the option's name: the cursor reads `-h`
/// as `--help`.
pub type ShortOption = (&'static str, &'static str);

/// The short forms every binary knows, as people type them from other
/// tools: `-h` (help) and `-V` (version).
pub const COMMON_SHORT_OPTIONS: &[ShortOption] = &[("-h", "help"), ("-V", "version")];

/// The words of a command line (without the program name), read once, in
/// order. An option's value is its inline `=value` or else the next word,
/// whatever that word looks like.
pub struct ArgCursor {
    words: std::vec::IntoIter<OsString>,
    /// Words read as the options they stand for.
    short_options: &'static [ShortOption],
}

impl ArgCursor {
    /// A cursor that knows the [`COMMON_SHORT_OPTIONS`].
    pub fn new(args: impl IntoIterator<Item = OsString>) -> ArgCursor {
        ArgCursor::with_short_options(args, COMMON_SHORT_OPTIONS)
    }

    /// A cursor that reads each of `short_options` as its long form.
    pub fn with_short_options(
        args: impl IntoIterator<Item = OsString>,
        short_options: &'static [ShortOption],
    ) -> ArgCursor {
        ArgCursor { words: args.into_iter().collect::<Vec<_>>().into_iter(), short_options }
    }

    /// The value of option `name`: `inline` if it had one, else the next word.
    pub fn value(&mut self, name: &str, inline: Option<OsString>) -> Result<OsString, UsageError> {
        match inline {
            Some(value) => Ok(value),
            None => self.words.next().ok_or_else(|| format!("--{name} needs a value").into()),
        }
    }

    /// The words not read yet.
    pub fn rest(self) -> impl Iterator<Item = OsString> {
        self.words
    }
}

impl Iterator for ArgCursor {
    type Item = Arg;

    fn next(&mut self) -> Option<Arg> {
        let word = self.words.next()?;
        if let Some((_, long)) = self.short_options.iter().find(|(short, _)| word == *short) {
            return Some(Arg::Option { name: (*long).to_owned(), inline: None });
        }
        let Some(option) =
            word.to_str().and_then(|text| text.strip_prefix("--")).filter(|name| !name.is_empty())
        else {
            return Some(Arg::Word(word));
        };
        Some(match option.split_once('=') {
            Some((name, value)) => Arg::Option { name: name.to_owned(), inline: Some(value.into()) },
            None => Arg::Option { name: option.to_owned(), inline: None },
        })
    }
}

/// Checks that flag `name` (an option without a value) was not given one.
pub fn flag(name: &str, inline: Option<OsString>) -> Result<(), UsageError> {
    match inline {
        Some(_) => Err(format!("--{name} takes no value").into()),
        None => Ok(()),
    }
}

/// The error for an option no definition knows.
pub fn unknown_option(name: &str) -> UsageError {
    format!("unknown option --{name}").into()
}

/// Whether a word before the command looks like an option nobody defines
/// (`-z`, `-zk`): refused rather than taken as, say, a ZooKeeper address.
fn is_dashed(word: &OsString) -> bool {
    word.to_str().is_some_and(|text| text.len() > 1 && text.starts_with('-') && text != "--")
}

/// A command line pulled apart by [`parse_args`].
pub struct ParsedArgs {
    /// Every option in the order given, with its value (empty for a flag).
    pub options: Vec<(String, OsString)>,
    pub positionals: Vec<OsString>,
}

/// Pulls options and positional words apart. `known` lists every option,
/// `flags` those of them that take no value; `--help` (`-h`) or `--version`
/// (`-V`) anywhere before the command asks for the usage or the version.
/// `command_starts_after` says, from the options and the number of
/// positional words so far, whether the command has begun: from there on
/// every word is positional, so a value may start with `--`.
pub fn parse_args(
    args: impl IntoIterator<Item = OsString>,
    known: &[&str],
    flags: &[&str],
    command_starts_after: impl Fn(&[(String, OsString)], usize) -> bool,
) -> Result<ParsedArgs, UsageError> {
    parse_args_seeing_words(args, known, flags, COMMON_SHORT_OPTIONS, |options, positionals| {
        command_starts_after(options, positionals.len())
    })
}

/// [`parse_args`] for command lines with short forms of their own, whose
/// command may start after a different number of words depending on what
/// the words are (the client's ZooKeeper address is optional when
/// `CHAINTABLE_ZK` is set): `command_starts_after` sees the positional words
/// themselves.
pub fn parse_args_seeing_words(
    args: impl IntoIterator<Item = OsString>,
    known: &[&str],
    flags: &[&str],
    short_options: &'static [ShortOption],
    command_starts_after: impl Fn(&[(String, OsString)], &[OsString]) -> bool,
) -> Result<ParsedArgs, UsageError> {
    let mut parsed = ParsedArgs { options: Vec::new(), positionals: Vec::new() };
    let mut cursor = ArgCursor::with_short_options(args, short_options);
    while !command_starts_after(&parsed.options, &parsed.positionals) {
        match cursor.next() {
            None => break,
            Some(Arg::Word(word)) if is_dashed(&word) => {
                return Err(format!("unknown option {}", word.to_string_lossy()).into());
            }
            Some(Arg::Word(word)) => parsed.positionals.push(word),
            Some(Arg::Option { name, .. }) if name == "help" => return Err(UsageError::HelpRequested),
            Some(Arg::Option { name, .. }) if name == "version" => return Err(UsageError::VersionRequested),
            Some(Arg::Option { name, .. }) if !known.contains(&name.as_str()) => {
                return Err(unknown_option(&name));
            }
            Some(Arg::Option { name, inline }) => {
                let value = if flags.contains(&name.as_str()) {
                    flag(&name, inline).map(|()| OsString::new())?
                } else {
                    cursor.value(&name, inline)?
                };
                parsed.options.push((name, value));
            }
        }
    }
    parsed.positionals.extend(cursor.rest());
    Ok(parsed)
}

/// The value as text.
pub fn text(name: &str, value: &OsString) -> Result<String, UsageError> {
    value.to_str().map(str::to_owned).ok_or_else(|| format!("{name}: not valid UTF-8").into())
}

/// Any number of type `T`.
pub fn number<T: FromStr>(name: &str, value: &OsString) -> Result<T, UsageError> {
    let value = text(name, value)?;
    value.parse().map_err(|_| format!("{name}: '{value}' is not a valid number").into())
}

/// A number above zero.
pub fn positive<T: FromStr + Default + PartialOrd>(name: &str, value: &OsString) -> Result<T, UsageError> {
    let parsed: T = number(name, value)?;
    if parsed <= T::default() {
        return Err(format!("--{name} must be positive").into());
    }
    Ok(parsed)
}

/// A whole number in `range`.
pub fn within<T: FromStr + PartialOrd + fmt::Display>(
    name: &str,
    value: &OsString,
    range: RangeInclusive<T>,
) -> Result<T, UsageError> {
    let value = text(name, value)?;
    match value.parse::<T>() {
        Ok(number) if range.contains(&number) => Ok(number),
        _ => Err(format!(
            "--{name}: '{value}' is not a whole number from {} to {}",
            range.start(),
            range.end()
        )
        .into()),
    }
}

/// Seconds in `range`, decimals allowed.
pub fn seconds(name: &str, value: &OsString, range: RangeInclusive<f64>) -> Result<Duration, UsageError> {
    let value = text(name, value)?;
    match value.parse::<f64>() {
        Ok(seconds) if range.contains(&seconds) => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(format!(
            "--{name}: '{value}' is not a number of seconds from {} to {}",
            range.start(),
            range.end()
        )
        .into()),
    }
}

/// A size in bytes, above zero: a whole number with an optional unit `b`,
/// `kb`, `mb`, `gb` or `tb`, in any case, each 1024 times the one before
/// (`512mb`, `4GB`, `65536`). Fractions such as `1.5gb` are refused rather
/// than rounded: `1536mb` says exactly what is meant.
pub fn byte_size(name: &str, value: &OsString) -> Result<u64, UsageError> {
    let size = text(name, value)?;
    let lower = size.to_ascii_lowercase();
    let (digits, unit) = lower.split_at(lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len()));
    let shift = match unit {
        "" | "b" => Some(0),
        "kb" => Some(10),
        "mb" => Some(20),
        "gb" => Some(30),
        "tb" => Some(40),
        _ => None,
    };
    let bytes =
        shift.zip(digits.parse::<u64>().ok()).and_then(|(shift, count)| count.checked_mul(1 << shift));
    match bytes {
        Some(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(format!(
            "--{name}: '{size}' is not a size: a whole number above 0 with an optional unit b, kb, mb, gb \
             or tb (powers of 1024), e.g. 512mb"
        )
        .into()),
    }
}

/// A `--chain` value: an absolute ZooKeeper path.
pub fn chain_path(name: &str, value: &OsString) -> Result<String, UsageError> {
    let path = text(name, value)?;
    if !path.starts_with('/') || path.ends_with('/') || path.contains("//") {
        return Err(format!("--{name}: '{path}' is not a ZooKeeper path like /chain").into());
    }
    Ok(path)
}

/// `words` as the arguments of a command line, for tests of parsers.
#[cfg(test)]
pub(crate) fn test_words(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(words: &[&str]) -> Vec<Arg> {
        ArgCursor::new(test_words(words)).collect()
    }

    #[test]
    fn the_cursor_tells_options_from_words() {
        let option = |name: &str, inline: Option<&str>| Arg::Option {
            name: name.to_owned(),
            inline: inline.map(OsString::from),
        };
        let word = |word: &str| Arg::Word(word.into());
        assert_eq!(
            read_all(&["--a", "--b=1", "--c=", "x", "--", "-d", "--e=f=g"]),
            vec![
                option("a", None),
                option("b", Some("1")),
                option("c", Some("")),
                word("x"),
                word("--"),
                word("-d"),
                option("e", Some("f=g")),
            ]
        );
    }

    #[test]
    fn values_come_inline_or_from_the_next_word() {
        let mut cursor = ArgCursor::new(test_words(&["--a", "--not-an-option", "--b"]));
        let Some(Arg::Option { name, inline }) = cursor.next() else { panic!("an option") };
        assert_eq!(cursor.value(&name, inline), Ok("--not-an-option".into()));
        let Some(Arg::Option { name, inline }) = cursor.next() else { panic!("an option") };
        assert_eq!(cursor.value(&name, inline), Err(UsageError::Invalid("--b needs a value".into())));
        assert_eq!(cursor.value("c", Some("inline".into())), Ok("inline".into()));
        assert_eq!(flag("d", Some("x".into())), Err(UsageError::Invalid("--d takes no value".into())));
    }

    #[test]
    fn parsing_stops_where_the_command_starts() {
        let parsed = parse_args(
            test_words(&["--x", "1", "w", "--f", "--x=2", "--y"]),
            &["x", "f"],
            &["f"],
            |_, words| words >= 2,
        );
        assert!(matches!(parsed, Err(UsageError::Invalid(message)) if message == "unknown option --y"));
        let parsed =
            parse_args(test_words(&["--x", "1", "w", "--f", "c", "--y"]), &["x", "f"], &["f"], |_, words| {
                words >= 2
            })
            .unwrap();
        assert_eq!(parsed.options, vec![("x".into(), "1".into()), ("f".into(), OsString::new())]);
        assert_eq!(parsed.positionals, test_words(&["w", "c", "--y"]));
        assert_eq!(
            parse_args(test_words(&["--x=1", "--help"]), &["x"], &[], |_, _| false).err(),
            Some(UsageError::HelpRequested)
        );
    }

    #[test]
    fn short_forms_and_stray_dashes() {
        let option = |name: &str| Arg::Option { name: name.to_owned(), inline: None };
        assert_eq!(
            read_all(&["-h", "-V", "-x"]),
            vec![option("help"), option("version"), Arg::Word("-x".into())]
        );
        const SHORT: &[ShortOption] = &[("-h", "help"), ("-V", "version"), ("-x", "stdin")];
        let parse = |words: &[&str]| {
            parse_args_seeing_words(test_words(words), &["stdin"], &["stdin"], SHORT, |_, words| {
                !words.is_empty()
            })
        };
        assert_eq!(parse(&["-V"]).err(), Some(UsageError::VersionRequested));
        assert_eq!(parse(&["-h"]).err(), Some(UsageError::HelpRequested));
        assert_eq!(parse(&["-q", "w"]).err(), Some(UsageError::Invalid("unknown option -q".into())));
        let parsed = parse(&["-x", "w", "-q", "-h"]).unwrap();
        assert_eq!(parsed.options, vec![("stdin".into(), OsString::new())]);
        assert_eq!(parsed.positionals, test_words(&["w", "-q", "-h"]), "the command's words are its own");
        let server_like = parse_args(test_words(&["-x"]), &[], &[], |_, _| false);
        assert_eq!(server_like.err(), Some(UsageError::Invalid("unknown option -x".into())));
        assert_eq!(
            usage_error_text("table-x", "unknown option --y"),
            "table-x: unknown option --y\nTry 'table-x --help' for more information."
        );
    }

    #[test]
    fn typed_values_name_the_option() {
        let value = |text: &str| OsString::from(text);
        assert_eq!(
            number::<u16>("<port>", &value("x")),
            Err("<port>: 'x' is not a valid number".to_owned().into())
        );
        assert_eq!(positive::<u64>("n", &value("0")), Err("--n must be positive".to_owned().into()));
        assert_eq!(within("k", &value("7"), 1..=9), Ok(7));
        assert_eq!(
            within("k", &value("10"), 1..=9),
            Err("--k: '10' is not a whole number from 1 to 9".to_owned().into())
        );
        assert_eq!(seconds("s", &value("0.5"), 0.0..=1.0), Ok(Duration::from_millis(500)));
        assert!(seconds("s", &value("2"), 0.0..=1.0).is_err());
        for (size, bytes) in [("65536", 65536), ("512b", 512), ("64kb", 64 << 10), ("512MB", 512 << 20)] {
            assert_eq!(byte_size("max-memory", &value(size)), Ok(bytes), "{size}");
        }
        assert_eq!(byte_size("m", &value("4Gb")), Ok(4 << 30));
        assert_eq!(byte_size("m", &value("16777215tb")), Ok(16_777_215 << 40));
        assert_eq!(
            byte_size("max-memory", &value("1.5gb")),
            Err("--max-memory: '1.5gb' is not a size: a whole number above 0 with an optional unit b, kb, mb, \
                 gb or tb (powers of 1024), e.g. 512mb"
                .to_owned()
                .into())
        );
        for bad in ["", "0", "0mb", "mb", "-1", "+1", "1 mb", "1k", "1mib", "1mbb", "16777216tb"] {
            assert!(byte_size("m", &value(bad)).is_err(), "{bad}");
        }
        assert_eq!(chain_path("chain", &value("/a/b")), Ok("/a/b".into()));
        for bad in ["a", "/a/", "/a//b"] {
            assert!(chain_path("chain", &value(bad)).is_err(), "{bad}");
        }
    }
}
