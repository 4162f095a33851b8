//! The client's expiry commands: `put --ttl <duration> <key> <value>`,
//! `expire <key> <duration>`, `ttl <key>` and `persist <key>`.

use super::command::{Command, CommandError, Outcome, key_at};
use super::output::{Printer, Record};
use crate::client::Client;
use crate::client::expiry::TimeToLive;

/// The word before `put`'s duration.
pub const TTL_FLAG: &str = "--ttl";

/// Parses `expire`, `ttl`, `persist` and one-shot `put --ttl` (canonical
/// `name`) from their argument words; `None` for any other command.
pub fn parse(name: &str, arguments: &[Vec<u8>]) -> Option<Result<Command, String>> {
    let count = arguments.len();
    let key = |index: usize| key_at(name, arguments, index);
    let command = match name {
        "put" if arguments.first().is_some_and(|word| word == TTL_FLAG.as_bytes()) => {
            if count < 4 {
                return Some(Err(format!("usage: put {TTL_FLAG} <duration> <key> <value>")));
            }
            duration_ms(&arguments[1]).and_then(|ttl_ms| {
                Ok(Command::Expiring { key: key(2)?, value: arguments[3..].join(&b' '), ttl_ms })
            })
        }
        "expire" if count != 2 => Err("usage: expire <key> <duration>".to_owned()),
        "expire" => key(0).and_then(|key| Ok(Command::Expire { key, ttl_ms: duration_ms(&arguments[1])? })),
        "ttl" | "persist" if count != 1 => Err(format!("usage: {name} <key>")),
        "ttl" => key(0).map(|key| Command::Ttl { key }),
        "persist" => key(0).map(|key| Command::Persist { key }),
        _ => return None,
    };
    Some(command)
}

/// A time to live in ms: a positive whole number with a unit `ms`, `s`,
/// `m`, `h` or `d` (none: seconds, as Redis's EXPIRE).
pub fn duration_ms(word: &[u8]) -> Result<u64, String> {
    let text = String::from_utf8_lossy(word);
    let invalid = || {
        format!(
            "invalid duration {text:?}: a positive whole number with ms, s, m, h or d (e.g. 1500ms, 10s, 5m)"
        )
    };
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let scale: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    let number: u64 = number.parse().map_err(|_| invalid())?;
    match number.checked_mul(scale) {
        Some(0) | None => Err(invalid()),
        Some(ms) => Ok(ms),
    }
}

/// Runs an expiry command, printing its result: absent keys end with
/// [`Outcome::Absent`].
pub fn execute(
    client: &mut Client,
    command: &Command,
    printer: &mut Printer<'_>,
) -> Result<Outcome, CommandError> {
    let millis = std::time::Duration::from_millis;
    let done = |done: bool| if done { Outcome::Done } else { Outcome::Absent };
    Ok(match command {
        Command::Expiring { key, value, ttl_ms } => {
            client.put_with_ttl(key, value.clone(), millis(*ttl_ms))?;
            printer.print(&Record::Written)?;
            Outcome::Done
        }
        Command::Expire { key, ttl_ms } => {
            let set = client.expire(key, millis(*ttl_ms))?;
            printer.print(&Record::Changed { key, name: "expire", done: set })?;
            done(set)
        }
        Command::Persist { key } => {
            let found = client.persist(key)?;
            printer.print(&Record::Changed { key, name: "persist", done: found })?;
            done(found)
        }
        Command::Ttl { key } => {
            let left = client.ttl(key)?;
            printer.print(&Record::Ttl { key, left })?;
            done(left != TimeToLive::Absent)
        }
        other => unreachable!("{other:?} is not an expiry command"),
    })
}

/// `ttl`'s number: ms left, -1 for no deadline, -2 for absent (Redis's
/// PTTL answers).
pub fn ttl_number(left: TimeToLive) -> i64 {
    match left {
        TimeToLive::Absent => -2,
        TimeToLive::Forever => -1,
        TimeToLive::Left(left) => i64::try_from(left.as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|word| word.as_bytes().to_vec()).collect()
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms(b"1500ms"), Ok(1500));
        assert_eq!(duration_ms(b"10"), Ok(10_000));
        assert_eq!(duration_ms(b"2s"), Ok(2000));
        assert_eq!(duration_ms(b"5m"), Ok(300_000));
        assert_eq!(duration_ms(b"1h"), Ok(3_600_000));
        assert_eq!(duration_ms(b"1d"), Ok(86_400_000));
        for bad in ["0", "0s", "-1s", "1.5s", "s", "", "10x", "99999999999999999999d", "1 s"] {
            assert!(duration_ms(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_and_their_usage_errors() {
        let parsed = |list: &[&str]| parse(list[0], &words(&list[1..]));
        assert_eq!(
            parsed(&["put", "--ttl", "1s", "k", "a", "b"]),
            Some(Ok(Command::Expiring { key: "k".into(), value: b"a b".to_vec(), ttl_ms: 1000 }))
        );
        assert_eq!(parsed(&["put", "k", "v"]), None, "a plain put is not ours");
        assert_eq!(
            parsed(&["expire", "k", "2m"]),
            Some(Ok(Command::Expire { key: "k".into(), ttl_ms: 120_000 }))
        );
        assert_eq!(parsed(&["ttl", "k"]), Some(Ok(Command::Ttl { key: "k".into() })));
        assert_eq!(parsed(&["persist", "k"]), Some(Ok(Command::Persist { key: "k".into() })));
        for bad in [
            &["put", "--ttl", "1s", "k"][..],
            &["put", "--ttl", "soon", "k", "v"],
            &["expire", "k"],
            &["expire", "k", "0"],
            &["ttl"],
            &["ttl", "a", "b"],
            &["persist"],
        ] {
            assert!(matches!(parsed(bad), Some(Err(_))), "{bad:?}");
        }
    }
}
