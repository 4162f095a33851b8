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
//! prune it without changing any verdict.

mod rules;
mod search;

use self::search::search;
use crate::limits::{CHECK_MINIMIZE_STEPS_MAX, CHECK_MINIMIZE_TIME_MAX, CHECK_SEARCH_STEPS_MAX};

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

/// Like [`check_from`], giving up after `steps_max` search steps.
fn check_within(history: &[Operation], initial: Option<u64>, steps_max: u64) -> Verdict {
    search(history, initial, steps_max).0
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
mod tests {
    use super::*;
    use crate::check::random::SplitMix64;

    fn op(action: Action, call: u64, ret: Option<u64>) -> Operation {
        Operation { action, call, ret }
    }
    fn put(value: u64, call: u64, ret: u64) -> Operation {
        op(Action::Put { value }, call, Some(ret))
    }
    fn get(observed: Option<u64>, call: u64, ret: u64) -> Operation {
        op(Action::Get { observed }, call, Some(ret))
    }
    fn del(found: bool, call: u64, ret: u64) -> Operation {
        op(Action::Del { found: Some(found) }, call, Some(ret))
    }

    fn cas(expected: Option<u64>, value: u64, result: CasResult, call: u64, ret: u64) -> Operation {
        op(Action::Cas { expected, value, result: Some(result) }, call, Some(ret))
    }
    fn incr(delta: u64, result: u64, call: u64, ret: u64) -> Operation {
        op(Action::Incr { delta, result: Some(result) }, call, Some(ret))
    }

    #[test]
    fn cas_and_incr_follow_the_register() {
        use CasResult::{Saw, Swapped};
        let history = [
            cas(None, 1, Swapped, 0, 1),
            cas(None, 2, Saw(Some(1)), 2, 3),
            cas(Some(1), 3, Swapped, 4, 5),
            incr(2, 5, 6, 7),
            get(Some(5), 8, 9),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
        // Two cas from the same value cannot both swap.
        let both = [put(1, 0, 1), cas(Some(1), 2, Swapped, 2, 10), cas(Some(1), 3, Swapped, 3, 11)];
        assert!(matches!(check(&both), Verdict::NotLinearizable { .. }));
        // A cas that saw a value older than an acknowledged write.
        let stale = [put(1, 0, 1), put(2, 2, 3), cas(Some(7), 9, Saw(Some(1)), 4, 5)];
        assert!(matches!(check(&stale), Verdict::NotLinearizable { .. }));
        // A cas that swapped against a stale value and then is seen.
        let stale = [put(1, 0, 1), put(2, 2, 3), cas(Some(1), 9, Swapped, 4, 5), get(Some(9), 6, 7)];
        assert!(matches!(check(&stale), Verdict::NotLinearizable { .. }));
        // Increments applied twice, or answered out of order, are caught.
        let twice = [incr(1, 1, 0, 1), incr(1, 3, 2, 3)];
        assert!(matches!(check(&twice), Verdict::NotLinearizable { .. }));
        let concurrent = [incr(1, 2, 0, 10), incr(1, 1, 1, 11), get(Some(2), 12, 13)];
        assert_eq!(check(&concurrent), Verdict::Linearizable);
        // An increment of unknown outcome may apply once, late, or never.
        let unknown = [op(Action::Incr { delta: 1, result: None }, 0, None), incr(1, 2, 5, 6)];
        assert_eq!(check(&unknown), Verdict::Linearizable);
        let unknown_cas =
            [put(1, 0, 1), op(Action::Cas { expected: Some(1), value: 2, result: None }, 2, None)];
        assert_eq!(
            check(&[unknown_cas[0].clone(), unknown_cas[1].clone(), get(Some(1), 3, 4)]),
            Verdict::Linearizable
        );
        assert_eq!(
            check(&[unknown_cas[0].clone(), unknown_cas[1].clone(), get(Some(2), 3, 4)]),
            Verdict::Linearizable
        );
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let history = [put(1, 0, 1), get(Some(1), 2, 3), del(true, 4, 5), get(None, 6, 7), del(false, 8, 9)];
        assert_eq!(check(&history), Verdict::Linearizable);
        assert_eq!(check(&[]), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_acknowledged_write() {
        let history = [put(1, 0, 1), put(2, 2, 3), get(Some(1), 4, 5)];
        assert!(matches!(check(&history), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn read_of_a_value_never_written() {
        let history = [put(1, 0, 1), get(Some(9), 2, 3)];
        assert_eq!(check(&history), Verdict::NotLinearizable { stuck_at: 1 });
    }

    #[test]
    fn lost_acknowledged_write() {
        // The put was acknowledged, then a read finds the key absent.
        let history = [put(1, 0, 1), get(None, 2, 3)];
        assert!(matches!(check(&history), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn double_applied_delete() {
        // A retried delete applied twice would delete the later put.
        let history = [put(1, 0, 1), del(true, 2, 3), put(2, 4, 5), get(None, 6, 7)];
        assert!(matches!(check(&history), Verdict::NotLinearizable { .. }));
        // Reporting "not found" for a key that was there is also a violation.
        let history = [put(1, 0, 1), del(false, 2, 3)];
        assert!(matches!(check(&history), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn concurrent_overlapping_operations_are_fine() {
        // The read overlaps both puts: it may see either.
        let history = [put(1, 0, 10), put(2, 1, 11), get(Some(1), 2, 12), get(Some(2), 13, 14)];
        assert_eq!(check(&history), Verdict::Linearizable);
        // A read overlapping a delete may see the value or nothing.
        let history = [put(1, 0, 1), del(true, 2, 10), get(Some(1), 3, 4), get(None, 5, 11)];
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    #[test]
    fn reads_cannot_go_back_in_time() {
        // Two sequential reads during a long write: new value, then old value.
        let history = [put(1, 0, 1), put(2, 2, 20), get(Some(2), 3, 4), get(Some(1), 5, 6)];
        assert!(matches!(check(&history), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn unknown_outcomes_may_apply_late_or_never() {
        // A put that failed may show up much later...
        let history = [op(Action::Put { value: 1 }, 0, None), get(None, 5, 6), get(Some(1), 7, 8)];
        assert_eq!(check(&history), Verdict::Linearizable);
        // ...or never.
        let history = [op(Action::Put { value: 1 }, 0, None), get(None, 5, 6)];
        assert_eq!(check(&history), Verdict::Linearizable);
        // But not before its call.
        let history = [get(Some(1), 0, 1), op(Action::Put { value: 1 }, 2, None)];
        assert!(matches!(check(&history), Verdict::NotLinearizable { .. }));
        // A delete of unknown outcome may remove the key at any later time.
        let history =
            [put(1, 0, 1), op(Action::Del { found: None }, 2, None), get(Some(1), 3, 4), get(None, 5, 6)];
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    #[test]
    fn minimize_keeps_a_violation() {
        let mut history = vec![put(1, 0, 1), put(2, 2, 3)];
        for index in 0..20 {
            history.push(get(Some(2), 4 + index * 2, 5 + index * 2));
        }
        history.push(get(Some(1), 100, 101));
        let small: Vec<Operation> = minimize(&history).into_iter().map(|(_, operation)| operation).collect();
        assert!(matches!(check(&small), Verdict::NotLinearizable { .. }));
        assert!(small.len() <= 3, "{small:?}");
    }

    #[test]
    fn minimize_does_not_invent_violations() {
        // The last read sees a value deleted and overwritten long before:
        // the explanation keeps the read, the write it saw and a later write
        // it missed, and nothing unrelated.
        let history = [put(1, 0, 1), del(true, 2, 3), get(None, 4, 5), put(2, 6, 7), get(Some(1), 8, 9)];
        let small = minimize(&history);
        let indices: Vec<usize> = small.iter().map(|(index, _)| *index).collect();
        assert!(indices.contains(&4), "the stale read is the violation: {small:?}");
        assert!(indices.contains(&0), "the write it read stays: {small:?}");
        assert!(indices.contains(&1) || indices.contains(&3), "a later write it missed stays: {small:?}");
        assert!(!indices.contains(&2), "an unrelated read goes: {small:?}");
        assert!(small.len() <= 3, "{small:?}");
        let plain: Vec<Operation> = small.into_iter().map(|(_, operation)| operation).collect();
        assert!(matches!(check(&plain), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn many_concurrent_writers_check_quickly() {
        // 8 clients, each put then get its own value, all overlapping: fine.
        let mut history = Vec::new();
        for client in 0..8u64 {
            history.push(put(client + 1, client, 100 + client));
            history.push(get(Some(client + 1), 100 + client, 101 + client));
        }
        // Gets overlap later puts, so each may be linearized right after its put.
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    /// A history of one key as `clients` clients of a correct register
    /// record it under faults: `operations` operations in the workload's mix
    /// (increments of 1..3, cas expecting what the client last learnt), each
    /// taking effect at a random instant of its interval. Every
    /// `OUTAGE_EVERY` time units the register is unreachable for
    /// `OUTAGE_LENGTH`: a write called then has an unknown outcome and took
    /// effect before the outage ended or, half the time, never; a read
    /// called then failed and is left out, as the checker's callers do.
    fn simulated_register(seed: u64, clients: usize, operations: usize) -> Vec<Operation> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        const OUTAGE_EVERY: u64 = 4000;
        const OUTAGE_LENGTH: u64 = 600;
        const GIVE_UP_AFTER: u64 = 100;
        // Events as (time, kind, operation or client); at equal times an
        // effect comes before a return, and a return before a call.
        const EFFECT: u8 = 0;
        const RETURN: u8 = 1;
        const CALL: u8 = 2;
        let mut random = SplitMix64::new(seed);
        let mut events: BinaryHeap<Reverse<(u64, u8, usize)>> =
            (0..clients).map(|client| Reverse((random.below(10), CALL, client))).collect();
        let mut history: Vec<Operation> = Vec::new();
        let mut caller: Vec<usize> = Vec::new();
        let mut failed_reads: Vec<usize> = Vec::new();
        let mut learnt: Vec<State> = vec![None; clients];
        let mut register: State = None;
        while let Some(Reverse((time, kind, who))) = events.pop() {
            match kind {
                CALL if history.len() < operations => {
                    let value = 1_000_000 * (history.len() as u64 + 1);
                    let action = match random.below(100) {
                        0..=34 => Action::Get { observed: None },
                        35..=49 => Action::Put { value },
                        50..=54 => Action::Del { found: None },
                        55..=69 => Action::Cas { expected: learnt[who], value, result: None },
                        _ => Action::Incr { delta: random.between(1, 3), result: None },
                    };
                    let outage_end = (time / OUTAGE_EVERY) * OUTAGE_EVERY + OUTAGE_LENGTH;
                    let (duration, effect) = if time < outage_end {
                        (GIVE_UP_AFTER, (random.below(2) == 0).then(|| random.between(time, outage_end)))
                    } else {
                        let duration = if random.below(10) == 0 {
                            random.between(50, 300)
                        } else {
                            random.between(1, 40)
                        };
                        (duration, Some(time + random.below(duration + 1)))
                    };
                    if let Some(effect) = effect {
                        events.push(Reverse((effect, EFFECT, history.len())));
                    }
                    events.push(Reverse((time + duration, RETURN, history.len())));
                    let lost = time < outage_end;
                    if lost && !action.writes() {
                        failed_reads.push(history.len());
                    }
                    history.push(Operation { action, call: time, ret: (!lost).then_some(time + duration) });
                    caller.push(who);
                }
                EFFECT => register = apply_correctly(register, &mut history[who].action),
                RETURN => {
                    let operation = &history[who];
                    if operation.ret.is_some() {
                        learnt[caller[who]] = match operation.action {
                            Action::Put { value }
                            | Action::Cas { value, result: Some(CasResult::Swapped), .. } => Some(value),
                            Action::Get { observed }
                            | Action::Cas { result: Some(CasResult::Saw(observed)), .. } => observed,
                            Action::Incr { result, .. } => result,
                            Action::Del { .. } | Action::Cas { result: None, .. } => None,
                        };
                    }
                    events.push(Reverse((time + random.between(1, 30), CALL, caller[who])));
                }
                _ => {}
            }
        }
        for operation in history.iter_mut().filter(|operation| operation.ret.is_none()) {
            operation.action.forget_result();
        }
        history
            .into_iter()
            .enumerate()
            .filter(|(index, _)| !failed_reads.contains(index))
            .map(|(_, operation)| operation)
            .collect()
    }

    /// Applies `action` to a correct register and fills in its result.
    fn apply_correctly(state: State, action: &mut Action) -> State {
        match action {
            Action::Put { value } => Some(*value),
            Action::Get { observed } => {
                *observed = state;
                state
            }
            Action::Del { found } => {
                *found = Some(state.is_some());
                None
            }
            Action::Cas { expected, value, result } => {
                if state == *expected {
                    *result = Some(CasResult::Swapped);
                    Some(*value)
                } else {
                    *result = Some(CasResult::Saw(state));
                    state
                }
            }
            Action::Incr { delta, result } => {
                let sum = state.unwrap_or(0) + *delta;
                *result = Some(sum);
                Some(sum)
            }
        }
    }

    fn unknown_counts(history: &[Operation]) -> (usize, usize) {
        let unknown = history.iter().filter(|operation| operation.ret.is_none());
        let incrs =
            unknown.clone().filter(|operation| matches!(operation.action, Action::Incr { .. })).count();
        (incrs, unknown.count())
    }

    /// Whether some order of `history` is a linearization, found by trying
    /// every order, remembering only the (operations linearized, register)
    /// pairs that failed: the reference for small histories.
    fn linearizable_by_brute_force(
        history: &[Operation],
        linearized: u32,
        state: State,
        failed: &mut std::collections::HashSet<(u32, State)>,
    ) -> bool {
        let done = |index: usize| linearized & (1 << index) != 0;
        if (0..history.len()).all(|index| done(index) || history[index].ret.is_none()) {
            return true;
        }
        if failed.contains(&(linearized, state)) {
            return false;
        }
        for index in (0..history.len()).filter(|&index| !done(index)) {
            let must_wait = (0..history.len())
                .any(|other| !done(other) && history[other].ret.is_some_and(|ret| ret < history[index].call));
            if must_wait {
                continue;
            }
            if let Some(next) = step(state, &history[index].action)
                && linearizable_by_brute_force(history, linearized | (1 << index), next, failed)
            {
                return true;
            }
        }
        failed.insert((linearized, state));
        false
    }

    /// A small random history over a few values, so that identical
    /// operations, repeated values and unknown outcomes are common: a third
    /// with random results, the rest with the results of a correct register
    /// (taking effect inside the operations' intervals, unknown ones late or
    /// never), half of those with one result made random.
    fn random_small_history(random: &mut SplitMix64) -> Vec<Operation> {
        let random_results = random_operations(random);
        if random.below(3) == 0 {
            return random_results;
        }
        let mut history = random_results.clone();
        let mut effects = Vec::new();
        for (index, operation) in history.iter().enumerate() {
            match operation.ret {
                Some(ret) => effects.push((random.between(operation.call, ret), index)),
                None if random.below(2) == 0 => effects.push((operation.call + random.below(20), index)),
                None => {}
            }
        }
        effects.sort_unstable();
        let mut register = None;
        for (_, index) in effects {
            register = apply_correctly(register, &mut history[index].action);
        }
        for operation in history.iter_mut().filter(|operation| operation.ret.is_none()) {
            operation.action.forget_result();
        }
        if random.below(2) == 0 {
            let index = random.below(history.len() as u64) as usize;
            history[index] = random_results[index].clone();
        }
        history
    }

    /// Random operations with random results.
    fn random_operations(random: &mut SplitMix64) -> Vec<Operation> {
        let value = |random: &mut SplitMix64| {
            [None, Some(1), Some(2), Some(3), Some(5), Some(10), Some(12)][random.below(7) as usize]
        };
        (0..random.between(2, 11))
            .map(|_| {
                let action = match random.below(5) {
                    0 => Action::Get { observed: value(random) },
                    1 => Action::Put { value: [1, 2, 10][random.below(3) as usize] },
                    2 => Action::Del { found: Some(random.below(2) == 0) },
                    3 => {
                        let result = match random.below(2) {
                            0 => CasResult::Swapped,
                            _ => CasResult::Saw(value(random)),
                        };
                        Action::Cas {
                            expected: value(random),
                            value: [2, 10][random.below(2) as usize],
                            result: Some(result),
                        }
                    }
                    _ => Action::Incr { delta: random.between(1, 3), result: Some(random.between(1, 12)) },
                };
                let call = random.below(16);
                let ret = call + random.below(6);
                let mut operation = Operation { action, call, ret: Some(ret) };
                if operation.action.writes() && random.below(3) == 0 {
                    operation.ret = None;
                    operation.action.forget_result();
                }
                operation
            })
            .collect()
    }

    #[test]
    fn pruned_search_agrees_with_trying_every_order() {
        let mut random = SplitMix64::new(20261207);
        let mut verdicts = [0usize; 2];
        for round in 0..20_000 {
            let history = random_small_history(&mut random);
            let expected = linearizable_by_brute_force(&history, 0, None, &mut Default::default());
            let verdict = check(&history);
            assert_eq!(
                verdict == Verdict::Linearizable,
                expected,
                "round {round}: {verdict:?} for {history:#?}"
            );
            assert_ne!(verdict, Verdict::Unknown);
            verdicts[usize::from(expected)] += 1;
        }
        assert!(verdicts.iter().all(|&count| count > 2000), "both verdicts well covered: {verdicts:?}");
    }

    /// Seeds and client counts of [`simulated_register`] histories; the
    /// search before the pruning rules ran out of steps on the second (and
    /// on all four with a stale read).
    const SIMULATED: [(u64, usize); 4] = [(1, 5), (2, 5), (3, 5), (4, 5)];

    /// The shape of the histories that ran out of steps: ~2,000 operations
    /// on one key by a few clients, tens of increments and a few more writes
    /// of unknown outcome, many of which never took effect.
    #[test]
    fn many_unknown_increments_are_decided_well_within_the_budget() {
        for (seed, clients) in SIMULATED {
            let history = simulated_register(seed, clients, 2000);
            let (unknown_increments, unknown) = unknown_counts(&history);
            assert!(
                unknown_increments >= 30 && unknown > unknown_increments + 30,
                "{unknown_increments} of {unknown}"
            );
            let (verdict, steps) = search(&history, None, CHECK_SEARCH_STEPS_MAX);
            assert_eq!(verdict, Verdict::Linearizable, "seed {seed}");
            eprintln!("seed {seed}, {clients} clients: {verdict:?} in {steps} steps");
            assert!(steps < CHECK_SEARCH_STEPS_MAX / 20, "seed {seed}: {steps} steps");
        }
    }

    /// The same histories with one read made stale: it sees the first
    /// value ever put, overwritten long before.
    #[test]
    fn a_stale_read_among_unknown_increments_is_found() {
        for (seed, clients) in SIMULATED {
            let mut history = simulated_register(seed, clients, 2000);
            let first_put = history
                .iter()
                .find(|operation| operation.ret.is_some() && matches!(operation.action, Action::Put { .. }));
            let Some(Operation { action: Action::Put { value }, .. }) = first_put.cloned() else {
                panic!("no put")
            };
            let read = (history.len() / 10..)
                .find(|&index| matches!(history[index].action, Action::Get { observed: Some(_) }))
                .expect("a read");
            history[read].action = Action::Get { observed: Some(value) };
            let (verdict, steps) = search(&history, None, CHECK_SEARCH_STEPS_MAX);
            assert!(matches!(verdict, Verdict::NotLinearizable { .. }), "seed {seed}: {verdict:?}");
            eprintln!("seed {seed}, {clients} clients, read {read} stale: {verdict:?} in {steps} steps");
            assert!(steps < CHECK_SEARCH_STEPS_MAX / 20, "seed {seed}: {steps} steps");
        }
    }
}
