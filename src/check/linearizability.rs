//! A linearizability checker for one key's history against a register model,
//! in the style of Wing & Gong with Lowe's memoisation (as in Porcupine):
//! a depth-first search for an order of the operations that respects real
//! time and the register's semantics, remembering the (operations
//! linearized, register state) pairs that failed (module `search`).
//!
//! Operations on different keys never constrain each other (a register per
//! key is a local property), so histories are checked key by key.
//!
//! An operation whose outcome is unknown (the client gave up) may have taken
//! effect at any time after its call, or never: it has no return time, and
//! it is linearized only where it takes effect (one that took effect after
//! everything else is the same as one that never did). Tens of those on a
//! key made the plain search run out of steps; the rules in [`check_from`]
//! prune it without changing any verdict. Hundreds of them over a long
//! run still did: puts of unknown outcome whose values nothing observed
//! are merged into one kind first (`merge_unobserved_puts`), and where the
//! depth-first search still runs out, a breadth-first one (module
//! `frontier`) takes over (see `check_within`).

mod frontier;
mod rules;
mod search;

use self::search::search;
use crate::limits::{
    CHECK_FRONTIER_CONFIGURATIONS_MAX, CHECK_MINIMIZE_STEPS_MAX, CHECK_MINIMIZE_TIME_MAX,
    CHECK_SEARCH_STEPS_MAX,
};

/// What an operation did and what it returned. Every put writes a value no
/// other put writes, so a read names the write it saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Set the register; `value` is unique in the history.
    Put { value: u64 },
    /// Read the register: `Some(value)` or `None` (absent). Reads whose
    /// outcome is unknown are left out of histories: they tell nothing.
    Get { observed: Option<u64> },
    /// Delete; `found` is what the server answered (whether the key existed),
    /// or `None` when the outcome is unknown.
    Del { found: Option<bool> },
    /// Compare-and-set: to `value` if the register holds `expected` (`None`:
    /// absent); `result` is what the server answered, `None` when unknown
    /// (then it takes effect where the register matches: one that never
    /// did can be placed after everything else, where it constrains
    /// nothing).
    Cas { expected: Option<u64>, value: u64, result: Option<CasResult> },
    /// Add `delta` to the register read as a number (absent: 0); `result`
    /// is the new value the server answered, `None` when unknown.
    Incr { delta: u64, result: Option<u64> },
}

/// What a compare-and-set answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CasResult {
    Swapped,
    /// It did not match: the value it saw (`None`: absent).
    Saw(Option<u64>),
}

impl Action {
    /// Whether it may change the register (put, del, cas, incr).
    fn writes(&self) -> bool {
        !matches!(self, Action::Get { .. })
    }

    /// Forgets what the server answered: the outcome becomes unknown.
    fn forget_result(&mut self) {
        match self {
            Action::Del { found } => *found = None,
            Action::Cas { result, .. } => *result = None,
            Action::Incr { result, .. } => *result = None,
            Action::Put { .. } | Action::Get { .. } => {}
        }
    }
}

/// One operation with its real-time interval, in any unit (microseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub action: Action,
    pub call: u64,
    /// `None`: outcome unknown, possibly applied at any later time.
    pub ret: Option<u64>,
}

/// Register state: the value id present, or absent.
type State = Option<u64>;

/// Applies `action` to `state` if the result it reported is possible there.
fn step(state: State, action: &Action) -> Option<State> {
    match action {
        Action::Put { value } => Some(Some(*value)),
        Action::Get { observed } => (state == *observed).then_some(state),
        Action::Del { found: None } => Some(None),
        Action::Del { found: Some(found) } => (state.is_some() == *found).then_some(None),
        Action::Cas { expected, value, result } => match result {
            None => Some(if state == *expected { Some(*value) } else { state }),
            Some(CasResult::Swapped) => (state == *expected).then_some(Some(*value)),
            Some(CasResult::Saw(seen)) => (state != *expected && state == *seen).then_some(state),
        },
        Action::Incr { delta, result } => {
            let sum = state.unwrap_or(0).checked_add(*delta)?;
            result.is_none_or(|result| result == sum).then_some(Some(sum))
        }
    }
}

/// The verdict on one history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No valid order exists. `stuck_at` is an operation that could not be
    /// placed in the deepest partial order the search reached.
    NotLinearizable {
        stuck_at: usize,
    },
    /// The search gave up after its step budget; nothing is proven.
    Unknown,
}

/// Checks one key's history, starting from an absent key.
pub fn check(history: &[Operation]) -> Verdict {
    check_from(history, None)
}

/// Checks one key's history from `initial`.
///
/// The search looks for an order of the operations in which every
/// operation of known outcome is linearized; those of unknown outcome are
/// linearized only where they take effect, and the rest never took effect
/// (or did after everything, which is the same for a register). It explores
/// only orders of a canonical form, and every linearization can be rewritten
/// into one of that form, so no verdict changes (the rules are "the search
/// finds a linearization if there is one"). A *run* is a maximal stretch of
/// consecutive unknown operations in the order.
///
/// 1. *An unknown operation is linearized only where it changes the
///    register.* Dropping one that does not leaves every state, so every
///    other operation's outcome, as it was.
/// 2. *The operation right after an unknown one must tell it happened*: it
///    must not be allowed, with the same result, in the register before the
///    unknown one, nor before the whole run (a put after it, a delete after
///    it, a read of the new value after a put of it...). Otherwise drop the
///    unknown one, or the run: the next operation leaves the same register
///    without it, and everything after is unchanged. Dropping never breaks
///    real-time order, and an unknown operation never has to precede
///    anything (it never returned). So a run is followed by a known
///    operation, and after its first operation holds only compare-and-sets
///    and increments; the search lets a run start or go on only if it can
///    still end in a register a known candidate accepts (`Search::targets`).
/// 3. *Adjacent unknown increments come in increasing delta order*: they
///    commute (the sum is the same), and swapping two adjacent operations
///    that never returned breaks no real-time constraint.
/// 4. *Identical unknown operations (same action: e.g. two increments by 2)
///    are linearized in call order*: give the positions they occupy to the
///    earliest-called ones, in call order. The states are unchanged; the
///    one placed i-th was called no later than one of the i that occupied
///    the first i positions before, so whatever had to precede that one
///    (ended before its call) precedes it too.
/// 5. *A delete that found the key follows a run of one operation.* By 2
///    the run started from an absent key, so its first operation made the
///    key present: drop the rest of the run.
///
/// Applying 1, 2 and 5 until none applies (each drop shortens the order),
/// then 3 (if that makes an operation droppable, drop it and start again;
/// this ends since orders only shorten), then 4 (which keeps the actions in
/// place) gives an order of the canonical form. Each rule depends only on
/// the known operations linearized, the unknown ones pending, the register
/// and the run under way (a node's key), so the search remembers failed
/// nodes:
///
/// 6. *A node fails if one with the same known operations, register and run
///    under way, and fewer unknown operations linearized, failed.* Any
///    completion of this node completes that one too, with each identical
///    unknown operation swapped for an earlier-called one still pending
///    (rule 4); more pending operations only allow more (rules 2 and 5
///    look at actions and registers only).
pub fn check_from(history: &[Operation], initial: Option<u64>) -> Verdict {
    check_within(history, initial, CHECK_SEARCH_STEPS_MAX)
}

/// Like [`check_from`], giving up after `steps_max` search steps (of each
/// search).
///
/// The depth-first search (module `search`) decides most histories fast; it
/// can run out of steps when a wrong choice shows only far later (an
/// unknown increment applied early that a result much later needs applied
/// late), since it then backtracks over everything in between. The
/// breadth-first search (module `frontier`) then takes over: it carries all
/// the choices side by side, in time proportional to the history's length
/// times the ways alive at once. Both are exact, so a verdict either
/// reaches is the verdict.
fn check_within(history: &[Operation], initial: Option<u64>, steps_max: u64) -> Verdict {
    let history = &merge_unobserved_puts(history);
    match search(history, initial, steps_max).0 {
        Verdict::Unknown => frontier::search(history, initial, steps_max, CHECK_FRONTIER_CONFIGURATIONS_MAX)
            .0
            .unwrap_or(Verdict::Unknown),
        verdict => verdict,
    }
}

/// Gives every put of unknown outcome whose value nothing observed the same
/// value, so that they become identical operations (rule 4 then tries only
/// the earliest-called one where any would do) and the registers they leave
/// compare equal. A value `v` is unobserved when no operation observes a
/// value from `v` to `v + u`, where `u` adds up the deltas of the increments
/// of unknown outcome (what they can add to it unseen): no read returned
/// one, no compare-and-set expected or saw one, no increment that returned
/// started from one. (Observing the key present is not observing a value:
/// such a put may still explain a delete that found the key.)
///
/// The verdict does not change: map a linearization of either history onto
/// the other, same order. The registers differ only where one holds an
/// unobserved value plus unknown increments (`v + k`, `k <= u`) and the
/// other the shared one plus the same; at such a point every operation
/// behaves the same in both (a read or compare-and-set that could tell them
/// apart would observe one of these values; a delete sees the key present
/// in both; a write overwrites both, an unknown increment moves both on).
fn merge_unobserved_puts(history: &[Operation]) -> std::borrow::Cow<'_, [Operation]> {
    let mut unseen_room = 0u64;
    let mut observed: Vec<u64> = Vec::new();
    for operation in history {
        match operation.action {
            Action::Get { observed: Some(value) } => observed.push(value),
            Action::Cas { expected, result, .. } => {
                observed.extend(expected);
                if let Some(CasResult::Saw(Some(seen))) = result {
                    observed.push(seen);
                }
            }
            Action::Incr { delta, result: Some(result) } => observed.extend(result.checked_sub(delta)),
            Action::Incr { delta, result: None } => unseen_room = unseen_room.saturating_add(delta),
            Action::Get { observed: None } | Action::Put { .. } | Action::Del { .. } => {}
        }
    }
    observed.sort_unstable();
    let unobserved = |value: u64| {
        let first_above = observed.partition_point(|&seen| seen < value);
        observed.get(first_above).is_none_or(|&seen| seen > value.saturating_add(unseen_room))
    };
    let merged: Vec<usize> = (0..history.len())
        .filter(|&index| history[index].ret.is_none())
        .filter(|&index| matches!(history[index].action, Action::Put { value } if unobserved(value)))
        .collect();
    let Some(&first) = merged.first() else { return history.into() };
    let shared = history[first].action.clone();
    let mut history = history.to_vec();
    for index in merged {
        history[index].action = shared.clone();
    }
    history.into()
}

/// Shrinks a non-linearizable history to a small sub-history that is still
/// not linearizable, with steps that can never create a violation out of
/// nothing, so the result explains the original:
/// - a read can be dropped (that only removes constraints);
/// - a write can be relaxed to "outcome unknown" (it may then take effect at
///   any time after its call, or never: more freedom);
/// - a relaxed write that no remaining operation could have observed after
///   its call can be dropped (it can only ever be linearized harmlessly).
///
/// Returns the remaining operations with their indices in `history`; a
/// write whose `ret` is now `None` but was not before was relaxed.
pub fn minimize(history: &[Operation]) -> Vec<(usize, Operation)> {
    let deadline = std::time::Instant::now() + CHECK_MINIMIZE_TIME_MAX;
    let violates = |operations: &[(usize, Operation)]| {
        let plain: Vec<Operation> = operations.iter().map(|(_, operation)| operation.clone()).collect();
        matches!(check_within(&plain, None, CHECK_MINIMIZE_STEPS_MAX), Verdict::NotLinearizable { .. })
    };
    let mut kept = shortest_violating_prefix(history);
    loop {
        let before = kept.clone();
        for step in [Shrink::DropReads, Shrink::RelaxWrites, Shrink::DropUnobservedWrites] {
            // Delta debugging: whole chunks first, then smaller ones, from
            // the end backwards.
            let mut chunk = kept.len().div_ceil(2).max(1);
            loop {
                let mut end = kept.len();
                while end > 0 && std::time::Instant::now() < deadline {
                    let start = end.saturating_sub(chunk);
                    let candidate = shrink_range(&kept, start..end, step);
                    if candidate != kept && violates(&candidate) {
                        kept = candidate;
                    }
                    end = start.min(kept.len());
                }
                if chunk == 1 || std::time::Instant::now() >= deadline {
                    break;
                }
                chunk = chunk.div_ceil(2);
            }
        }
        if kept == before || std::time::Instant::now() >= deadline {
            return kept;
        }
    }
}

/// The kinds of shrinking step, tried in this order: dropping reads first
/// keeps writes definite wherever a read does not need them relaxed.
#[derive(Clone, Copy)]
enum Shrink {
    DropReads,
    RelaxWrites,
    DropUnobservedWrites,
}

/// Applies `step` to every operation in `range`.
fn shrink_range(
    operations: &[(usize, Operation)],
    range: std::ops::Range<usize>,
    step: Shrink,
) -> Vec<(usize, Operation)> {
    let mut shrunk = Vec::with_capacity(operations.len());
    for (position, (index, operation)) in operations.iter().enumerate() {
        let keep = (*index, operation.clone());
        if !range.contains(&position) {
            shrunk.push(keep);
            continue;
        }
        match (step, &operation.action, operation.ret) {
            (Shrink::DropReads, Action::Get { .. }, _) => {}
            (Shrink::RelaxWrites, action, Some(_)) if action.writes() => {
                let mut relaxed = keep;
                relaxed.1.ret = None;
                relaxed.1.action.forget_result();
                shrunk.push(relaxed);
            }
            (Shrink::DropUnobservedWrites, action, None)
                if action.writes() && !could_be_observed(operations, position) => {}
            _ => shrunk.push(keep),
        }
    }
    shrunk
}

/// The shortest prefix, in call order, that is already not linearizable:
/// operations called up to some instant, those still running then counted
/// as of unknown outcome (found by bisection). A prefix of a linearizable
/// history is linearizable, so this is a sound cut.
fn shortest_violating_prefix(history: &[Operation]) -> Vec<(usize, Operation)> {
    let mut order: Vec<usize> = (0..history.len()).collect();
    order.sort_by_key(|&index| history[index].call);
    let prefix = |length: usize| -> Vec<(usize, Operation)> {
        let cut = history[order[length - 1]].call;
        order[..length]
            .iter()
            .map(|&index| {
                let mut operation = history[index].clone();
                if operation.ret.is_some_and(|ret| ret > cut) {
                    if matches!(operation.action, Action::Get { .. }) {
                        // A read still running at the cut has told nothing yet.
                        operation.ret = Some(u64::MAX);
                    } else {
                        operation.ret = None;
                        operation.action.forget_result();
                    }
                }
                (index, operation)
            })
            .filter(|(_, operation)| operation.ret != Some(u64::MAX))
            .collect()
    };
    let violates = |operations: &[(usize, Operation)]| {
        let plain: Vec<Operation> = operations.iter().map(|(_, operation)| operation.clone()).collect();
        matches!(check(&plain), Verdict::NotLinearizable { .. })
    };
    let (mut low, mut high) = (1, history.len());
    while low < high {
        let middle = (low + high) / 2;
        if violates(&prefix(middle)) { high = middle } else { low = middle + 1 }
    }
    let shortest = prefix(high.max(1));
    if violates(&shortest) { shortest } else { history.iter().cloned().enumerate().collect() }
}

/// Whether some other remaining operation, ending after write `index` was
/// called, could owe its result to that write.
fn could_be_observed(operations: &[(usize, Operation)], index: usize) -> bool {
    let write = &operations[index].1;
    operations.iter().enumerate().any(|(other_index, (_, other))| {
        other_index != index
            && other.ret.is_none_or(|ret| ret >= write.call)
            && match (&write.action, &other.action) {
                (Action::Put { value }, Action::Get { observed }) => *observed == Some(*value),
                (Action::Put { .. }, Action::Del { found }) => *found != Some(false),
                (Action::Del { .. }, Action::Get { observed }) => observed.is_none(),
                (Action::Del { .. }, Action::Del { found }) => *found != Some(true),
                // What a cas or an incr leaves is followed by more than a
                // value's identity: such writes are kept.
                (Action::Cas { .. } | Action::Incr { .. }, _) => true,
                (_, Action::Cas { .. } | Action::Incr { .. }) => true,
                _ => false,
            }
    })
}

#[cfg(test)]
mod tests;
