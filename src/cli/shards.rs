//! The admin commands of a sharded table: `shards` prints the shard map
//! with each chain's head, tail and keys; `shards init <chain>...` makes
//! the first map, equal consecutive slot ranges in the order named.

use serde_json::{Value, json};

use super::command::{Command, CommandError, Outcome};
use super::output::{Printer, Record};
use crate::client::Client;
use crate::client::router::ShardReport;
use crate::shard::map::{RangeState, ShardMap, check_chain_path};

/// Parses `shards [init <chain>...]`; `None` for other commands.
pub fn parse(name: &str, arguments: &[Vec<u8>]) -> Option<Result<Command, String>> {
    if name != "shards" {
        return None;
    }
    let words: Result<Vec<&str>, String> = arguments
        .iter()
        .map(|word| std::str::from_utf8(word).map_err(|_| "shards: arguments must be UTF-8".to_owned()))
        .collect();
    Some(words.and_then(|words| match words.as_slice() {
        [] => Ok(Command::Shards),
        ["init"] => Err("usage: shards init <chain>... (e.g. shards init /chain1 /chain2)".to_owned()),
        ["init", chains @ ..] => {
            for chain in chains {
                check_chain_path(chain).map_err(|error| format!("shards init: {error}"))?;
            }
            Ok(Command::ShardsInit { chains: chains.iter().map(|chain| (*chain).to_owned()).collect() })
        }
        _ => Err("usage: shards | shards init <chain>...".to_owned()),
    }))
}

/// Runs `shards` or `shards init`; no map is [`Outcome::Absent`].
pub fn execute(
    client: &mut Client,
    command: &Command,
    printer: &mut Printer<'_>,
) -> Result<Outcome, CommandError> {
    match command {
        Command::Shards => match client.shards()? {
            Some(report) => printer.print(&Record::Shards(&report))?,
            None => {
                printer.note_not_found("no shard map (one chain, routed without a map)")?;
                return Ok(Outcome::Absent);
            }
        },
        Command::ShardsInit { chains } => {
            printer.print(&Record::ShardsCreated(&client.shards_init(chains)?))?
        }
        _ => unreachable!("not a shards command"),
    }
    Ok(Outcome::Done)
}

/// A range's slots as `first-last`, with its state when it is moving.
fn range_text(map: &ShardMap) -> Vec<(String, &str, String)> {
    map.ranges()
        .iter()
        .map(|range| {
            let state = match &range.state {
                RangeState::Stable => String::new(),
                RangeState::MigratingTo(target) => format!("migrating to {target}"),
            };
            (format!("{}-{}", range.first, range.last), range.chain.as_str(), state)
        })
        .collect()
}

/// `shards` as text: the version, then one line per range with its
/// chain's head, tail and keys (`-` where a chain did not say).
pub fn report_text(report: &ShardReport) -> String {
    let mut text = format!("shard map {} version {}\n", report.map_path, report.map.version);
    text.push_str("slots\tchain\thead\ttail\tkeys\n");
    for (slots, chain, state) in range_text(&report.map) {
        let about = report.chains.iter().find(|about| about.chain == chain);
        let head = about.and_then(|about| about.head.clone()).unwrap_or_else(|| "-".into());
        let tail = about.and_then(|about| about.tail.clone()).unwrap_or_else(|| "-".into());
        let keys = match about.map(|about| &about.keys) {
            Some(Ok(keys)) => keys.to_string(),
            _ => "-".into(),
        };
        let state = if state.is_empty() { state } else { format!("\t{state}") };
        text.push_str(&format!("{slots}\t{chain}\t{head}\t{tail}\t{keys}{state}\n"));
    }
    text
}

/// `shards --json`: one object.
pub fn report_json(report: &ShardReport) -> Value {
    let chains: Vec<Value> = report
        .chains
        .iter()
        .map(|chain| {
            json!({
                "chain": chain.chain,
                "head": chain.head,
                "tail": chain.tail,
                "keys": chain.keys.as_ref().ok(),
                "error": chain.keys.as_ref().err().map(ToString::to_string),
            })
        })
        .collect();
    json!({"path": report.map_path, "version": report.map.version, "ranges": ranges_json(&report.map), "chains": chains})
}

/// The ranges of a map, for JSON.
pub fn ranges_json(map: &ShardMap) -> Value {
    Value::Array(
        range_text(map)
            .into_iter()
            .zip(map.ranges())
            .map(|((_, chain, state), range)| {
                json!({"first": range.first, "last": range.last, "chain": chain, "state": if state.is_empty() { "stable".to_owned() } else { state }})
            })
            .collect(),
    )
}

/// `shards init` as text: `OK`, then each range and its chain.
pub fn created_text(map: &ShardMap) -> String {
    let mut text = format!("OK: shard map version {}\n", map.version);
    for (slots, chain, _) in range_text(map) {
        text.push_str(&format!("{slots}\t{chain}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &[&str]) -> Vec<Vec<u8>> {
        text.iter().map(|word| word.as_bytes().to_vec()).collect()
    }

    #[test]
    fn shards_commands_parse() {
        assert_eq!(parse("shards", &[]), Some(Ok(Command::Shards)));
        assert_eq!(
            parse("shards", &words(&["init", "/a", "/b"])),
            Some(Ok(Command::ShardsInit { chains: vec!["/a".into(), "/b".into()] }))
        );
        assert!(parse("shards", &words(&["init"])).unwrap().unwrap_err().contains("usage"));
        assert!(parse("shards", &words(&["init", "a"])).unwrap().unwrap_err().contains("not a chain path"));
        assert!(parse("shards", &words(&["grow"])).unwrap().is_err());
        assert_eq!(parse("get", &[]), None);
    }

    #[test]
    fn init_prints_the_ranges() {
        let map = ShardMap::split_evenly(&["/a".to_owned(), "/b".to_owned()]).unwrap();
        assert_eq!(created_text(&map), "OK: shard map version 0\n0-8191\t/a\n8192-16383\t/b\n");
        assert_eq!(ranges_json(&map)[1]["first"], 8192);
    }
}
