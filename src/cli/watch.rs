//! The client's `watch [--prefix] <key> [--from <sequence>]`: prints every
//! committed change of a key, or of every key starting with a prefix, as it
//! happens, one line each (`<sequence>\tPUT\t<key>\t<value>`,
//! `<sequence>\tDELETE\t<key>`, `<sequence>\tEXPIRED\t<key>`), until Ctrl-C
//! or an error that ends it (the history from `--from` is gone, the watcher
//! fell too far behind): exit 2.

use super::command::{Command, CommandError, Outcome};
use super::output::{Printer, Record};
use crate::client::Client;
use crate::client::watch::WatchRequest;

pub const USAGE: &str = "usage: watch [--prefix] <key> [--from <sequence>]";

/// Parses `watch`'s argument words; `None` for any other command.
pub fn parse(name: &str, arguments: &[Vec<u8>]) -> Option<Result<Command, String>> {
    (name == "watch").then(|| parse_watch(arguments))
}

fn parse_watch(arguments: &[Vec<u8>]) -> Result<Command, String> {
    let (mut keys, mut prefix, mut from) = (None, false, None);
    let mut words = arguments.iter();
    while let Some(word) = words.next() {
        match word.as_slice() {
            b"--prefix" if !prefix => prefix = true,
            b"--from" if from.is_none() => {
                let number =
                    words.next().ok_or_else(|| format!("watch: --from needs a sequence ({USAGE})"))?;
                let text = String::from_utf8_lossy(number);
                from = Some(
                    text.parse::<u64>()
                        .map_err(|_| format!("watch: --from {text:?} is not a sequence number"))?,
                );
            }
            _ if keys.is_none() => {
                keys = Some(
                    String::from_utf8(word.clone()).map_err(|_| "watch: the key must be UTF-8".to_owned())?,
                )
            }
            _ => return Err(format!("watch: too many arguments ({USAGE})")),
        }
    }
    match keys {
        Some(keys) if prefix || !keys.is_empty() => Ok(Command::Watch { keys, prefix, from }),
        _ => Err(USAGE.to_owned()),
    }
}

/// Runs `watch`: prints each event as it comes, flushing after each frame
/// (a heartbeat about every second too, which is when a cancelled shell
/// request finds its output shut and stops).
pub fn execute(
    client: &mut Client,
    command: &Command,
    printer: &mut Printer<'_>,
) -> Result<Outcome, CommandError> {
    let Command::Watch { keys, prefix, from } = command else {
        unreachable!("{command:?} is not a watch");
    };
    let request = WatchRequest { keys: keys.clone(), prefix: *prefix, from: *from };
    client.watch(&request, |events, _| -> Result<(), CommandError> {
        for event in events {
            printer.print(&Record::Event(event))?;
        }
        printer.flush()?;
        Ok(())
    })?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(words: &[&str]) -> Result<Command, String> {
        let words: Vec<Vec<u8>> = words.iter().map(|word| word.as_bytes().to_vec()).collect();
        parse("watch", &words).expect("watch is ours")
    }

    #[test]
    fn keys_prefixes_and_starting_points() {
        let watch = |keys: &str, prefix, from| Ok(Command::Watch { keys: keys.into(), prefix, from });
        assert_eq!(parsed(&["k"]), watch("k", false, None));
        assert_eq!(parsed(&["--prefix", "p/"]), watch("p/", true, None));
        assert_eq!(parsed(&["--prefix", "", "--from", "7"]), watch("", true, Some(7)), "every key");
        assert_eq!(parsed(&["k", "--from", "12"]), watch("k", false, Some(12)));
        assert_eq!(parse("get", &[]), None);
        for bad in [
            &[][..],
            &[""],
            &["--prefix"],
            &["a", "b"],
            &["k", "--from"],
            &["k", "--from", "x"],
            &["k", "--from", "-1"],
        ] {
            assert!(parsed(bad).is_err(), "{bad:?}");
        }
    }
}
