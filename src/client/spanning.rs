//! Answers that span every chain of a sharded table, merged from each
//! chain's own answer: sizes add up, counters add up, and scan pages merge
//! in key order while keeping the one-cursor paging of one chain.
//!
//! Pure functions of the chains' replies, so each rule is unit-tested.

use protobuf::MessageFull;
use protobuf::reflect::{ReflectValueBox, RuntimeFieldType, RuntimeType};

use crate::proto::{Response, Statistics};

/// Statistics that describe one server's place in its chain: meaningless
/// added up over chains, so a merged `stats` leaves them 0.
const PER_CHAIN: [&str; 9] = [
    "shard_map_version",
    "chain_position",
    "chain_length",
    "last_applied",
    "committed",
    "generation",
    "synced",
    "watch_history_oldest",
    "uptime_s",
];

/// The chains' `stats` as one: counters summed, per-chain positions left
/// out (0), text fields (the roles, the nodes) joined with commas in chain
/// order.
pub fn merge_statistics(all: &[Statistics]) -> Statistics {
    let mut merged = Statistics::new();
    for field in Statistics::descriptor().fields() {
        if PER_CHAIN.contains(&field.name()) {
            continue;
        }
        let values = all.iter().map(|statistics| field.get_singular_field_or_default(statistics));
        match field.runtime_field_type() {
            RuntimeFieldType::Singular(RuntimeType::U64) => {
                let sum = values.filter_map(|value| value.to_u64()).fold(0u64, u64::saturating_add);
                field.set_singular_field(&mut merged, ReflectValueBox::U64(sum));
            }
            RuntimeFieldType::Singular(RuntimeType::String) => {
                let joined: Vec<String> =
                    values.filter_map(|value| value.to_str().map(str::to_owned)).collect();
                field.set_singular_field(&mut merged, ReflectValueBox::String(joined.join(",")));
            }
            _ => {}
        }
    }
    merged
}

/// One page of a scan over several chains, from each chain's page after
/// the same cursor. A chain's page ends at its own last key, and another
/// chain may hold keys just after it that its page did not reach: so the
/// merged page ends at the smallest last key of the pages that are not the
/// chain's last one (later keys are read again with the next cursor), and
/// is done when every chain's is.
pub fn merge_scan_pages(pages: Vec<Response>) -> Response {
    let limit = pages.iter().filter(|page| !page.done).filter_map(|page| page.next_cursor.clone()).min();
    let within = |key: &String| limit.as_ref().is_none_or(|limit| key <= limit);
    let mut merged = Response::new();
    merged.done = pages.iter().all(|page| page.done);
    for page in pages {
        merged.keys.extend(page.keys.into_iter().filter(&within));
        merged.entries.extend(page.entries.into_iter().filter(|entry| within(&entry.key)));
    }
    merged.keys.sort_unstable();
    merged.entries.sort_unstable_by(|left, right| left.key.cmp(&right.key));
    let last = merged.keys.last().or(merged.entries.last().map(|entry| &entry.key)).cloned();
    merged.next_cursor = limit.or(last);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(keys: &[&str], done: bool) -> Response {
        let mut page = Response::new();
        page.keys = keys.iter().map(|key| (*key).to_owned()).collect();
        page.next_cursor = page.keys.last().cloned();
        page.done = done;
        page
    }

    #[test]
    fn pages_merge_up_to_the_shortest_unfinished_page() {
        let merged =
            merge_scan_pages(vec![page(&["a", "c", "e"], false), page(&["b", "d", "f", "g"], false)]);
        assert_eq!(merged.keys, ["a", "b", "c", "d", "e"], "f and g come again after cursor e");
        assert_eq!(merged.next_cursor.as_deref(), Some("e"));
        assert!(!merged.done);
        let merged = merge_scan_pages(vec![page(&["a", "c"], true), page(&["b", "d", "f"], false)]);
        assert_eq!(merged.keys, ["a", "b", "c", "d", "f"], "a finished chain bounds nothing");
        assert!(!merged.done);
        let merged = merge_scan_pages(vec![page(&["x"], true), page(&[], true)]);
        assert_eq!((merged.keys.len(), merged.done, merged.next_cursor.as_deref()), (1, true, Some("x")));
        let empty = merge_scan_pages(vec![page(&[], true), page(&[], true)]);
        assert!(empty.done && empty.next_cursor.is_none());
    }

    #[test]
    fn counters_add_up_and_positions_do_not() {
        let mut one = Statistics::new();
        one.keys = 3;
        one.puts = 1;
        one.role = "head+tail".into();
        one.chain_length = 1;
        let mut two = one.clone();
        two.keys = 4;
        two.role = "head".into();
        let merged = merge_statistics(&[one, two]);
        assert_eq!((merged.keys, merged.puts, merged.chain_length), (7, 2, 0));
        assert_eq!(merged.role, "head+tail,head");
    }
}
