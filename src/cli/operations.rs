//! The commands Redis and etcd users reach for beyond put/get/del:
//! `cas`, `incr`, `mget`, `mset`, `exists` and `getkeys [<prefix>]`,
//! parsed from the same words in the shell and in one-shot mode, and run
//! against a [`Client`].

use super::command::{Command, CommandError, Outcome, key_at};
use super::output::{Printer, Record};
use crate::client::Client;

/// The word that stands for "the key must be absent" in place of `cas`'s
/// expected value.
pub const ABSENT_FLAG: &str = "--absent";

/// Parses command `name` (canonical) from its argument words, if it is one
/// of these commands; `None` otherwise.
pub fn parse(name: &str, arguments: &[Vec<u8>]) -> Option<Result<Command, String>> {
    let count = arguments.len();
    let key = |index: usize| key_at(name, arguments, index);
    let command = match name {
        "cas" if count != 3 => Err(format!("usage: cas <key> <expected>|{ABSENT_FLAG} <new>")),
        "cas" => key(0).map(|key| Command::Cas {
            key,
            expected: (arguments[1] != ABSENT_FLAG.as_bytes()).then(|| arguments[1].clone()),
            value: arguments[2].clone(),
        }),
        "incr" if !(1..=2).contains(&count) => Err("usage: incr <key> [<delta>]".to_owned()),
        "incr" => key(0).and_then(|key| Ok(Command::Incr { key, delta: delta(arguments.get(1))? })),
        "mget" if count == 0 => Err("usage: mget <key>...".to_owned()),
        "mget" => (0..count).map(key).collect::<Result<_, _>>().map(|keys| Command::Mget { keys }),
        "mset" if count == 0 || count % 2 == 1 => {
            Err("usage: mset <key> <value> [<key> <value>...]".to_owned())
        }
        "mset" => (0..count)
            .step_by(2)
            .map(|index| Ok((key(index)?, arguments[index + 1].clone())))
            .collect::<Result<_, String>>()
            .map(|pairs| Command::Mset { pairs }),
        "exists" if count != 1 => Err("usage: exists <key>".to_owned()),
        "exists" => key(0).map(|key| Command::Exists { key }),
        "getkeys" if count > 1 => Err("usage: getkeys [<prefix>]".to_owned()),
        "getkeys" if count == 0 => Ok(Command::GetKeys { prefix: String::new() }),
        "getkeys" => key(0).map(|prefix| Command::GetKeys { prefix }),
        _ => return None,
    };
    Some(command)
}

/// `incr`'s delta: a signed 64-bit decimal, 1 when not given.
fn delta(word: Option<&Vec<u8>>) -> Result<i64, String> {
    let Some(word) = word else { return Ok(1) };
    std::str::from_utf8(word).ok().and_then(|text| text.parse().ok()).ok_or_else(|| {
        format!("incr: the delta must be a signed 64-bit decimal, not {:?}", String::from_utf8_lossy(word))
    })
}

/// Runs `cas`, `incr`, `mget`, `mset` or `exists`, printing its results;
/// a mismatched `cas` and an absent key end with [`Outcome::Absent`].
pub fn execute(
    client: &mut Client,
    command: &Command,
    printer: &mut Printer<'_>,
) -> Result<Outcome, CommandError> {
    Ok(match command {
        Command::Cas { key, expected, value } => match client.cas(key, expected.as_deref(), value.clone())? {
            Ok(()) => {
                printer.print(&Record::Swapped { key })?;
                Outcome::Done
            }
            Err(current) => {
                printer.print(&Record::NotSwapped { key, current: current.as_deref() })?;
                Outcome::Absent
            }
        },
        Command::Incr { key, delta } => {
            printer.print(&Record::Number { key, number: client.incr(key, *delta)? })?;
            Outcome::Done
        }
        Command::Mget { keys } => {
            let values = client.mget(keys)?;
            for (key, value) in keys.iter().zip(&values) {
                printer.print(&Record::Lookup { key, value: value.as_deref() })?;
            }
            if values.iter().all(Option::is_some) { Outcome::Done } else { Outcome::Absent }
        }
        Command::Mset { pairs } => {
            client.mset(pairs)?;
            printer.print(&Record::Written)?;
            Outcome::Done
        }
        Command::Exists { key } => {
            let exists = client.exists(key)?;
            printer.print(&Record::Exists { key, exists })?;
            if exists { Outcome::Done } else { Outcome::Absent }
        }
        other => unreachable!("{other:?} is not one of this module's commands"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(words: &[&str]) -> Option<Result<Command, String>> {
        let words: Vec<Vec<u8>> = words.iter().map(|word| word.as_bytes().to_vec()).collect();
        parse(std::str::from_utf8(&words[0]).unwrap(), &words[1..])
    }

    #[test]
    fn words_become_commands() {
        let cas = Command::Cas { key: "k".into(), expected: Some(b"a".to_vec()), value: b"b".to_vec() };
        assert_eq!(parsed(&["cas", "k", "a", "b"]), Some(Ok(cas)));
        let absent = Command::Cas { key: "k".into(), expected: None, value: b"b".to_vec() };
        assert_eq!(parsed(&["cas", "k", "--absent", "b"]), Some(Ok(absent)));
        assert_eq!(parsed(&["incr", "n"]), Some(Ok(Command::Incr { key: "n".into(), delta: 1 })));
        assert_eq!(parsed(&["incr", "n", "-5"]), Some(Ok(Command::Incr { key: "n".into(), delta: -5 })));
        let mget = Command::Mget { keys: vec!["a".into(), "b".into()] };
        assert_eq!(parsed(&["mget", "a", "b"]), Some(Ok(mget)));
        let mset = Command::Mset { pairs: vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())] };
        assert_eq!(parsed(&["mset", "a", "1", "b", "2"]), Some(Ok(mset)));
        assert_eq!(parsed(&["exists", "a"]), Some(Ok(Command::Exists { key: "a".into() })));
        assert_eq!(parsed(&["getkeys", "u:"]), Some(Ok(Command::GetKeys { prefix: "u:".into() })));
        assert_eq!(parsed(&["getkeys"]), Some(Ok(Command::GetKeys { prefix: String::new() })));
        assert_eq!(parsed(&["get", "a"]), None, "not one of these");
    }

    #[test]
    fn bad_words_are_usage_errors() {
        for words in [
            &["cas", "k", "a"][..],
            &["cas", "k", "a", "b", "c"],
            &["incr"],
            &["incr", "n", "x"],
            &["incr", "n", "9223372036854775808"],
            &["incr", "n", "1", "2"],
            &["mget"],
            &["mset"],
            &["mset", "a", "1", "b"],
            &["exists"],
            &["exists", "a", "b"],
            &["getkeys", "a", "b"],
        ] {
            assert!(matches!(parsed(words), Some(Err(_))), "{words:?}");
        }
        let bad_key = parse("mget", &[vec![0xff]]);
        assert_eq!(bad_key, Some(Err("mget: the key must be UTF-8".into())));
    }
}
