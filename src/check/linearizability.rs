//! A linearizability checker for one key's history against a register model,
//! in the style of Wing & Gong with Lowe's memoisation (as in Porcupine):
//! a depth-first search for an order of the operations that respects real
//! time and the register's semantics, remembering every (set of operations
//! linearized, register state) pair already explored.
//!
//! Operations on different keys never constrain each other (a register per
//! key is a local property), so histories are checked key by key.
//!
//! An operation whose outcome is unknown (the client gave up) may have taken
//! effect at any time after its call, or never: it is given an infinite
//! return time, which is the same thing for a register, since an operation
//! linearized after everything else constrains nothing.

use std::collections::HashSet;

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

/// Search steps allowed per history before giving up.
pub const SEARCH_STEPS_MAX: u64 = 20_000_000;

/// Call and return events in time order, as a doubly linked list the search
/// can cut operations out of and splice them back into.
struct Events {
    /// (operation index, is_call), in time order; index `len` is the head sentinel.
    kinds: Vec<(usize, bool)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each operation, the position of its return event.
    return_of: Vec<usize>,
}

impl Events {
    fn new(history: &[Operation]) -> Events {
        // Calls before returns at equal times: treating such operations as
        // concurrent can only make the check more permissive, never report a
        // false violation.
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(history.len() * 2);
        for (index, operation) in history.iter().enumerate() {
            order.push((operation.call, 0, index));
            order.push((operation.ret.unwrap_or(u64::MAX), 1, index));
        }
        order.sort_unstable();
        let count = order.len();
        let sentinel = count;
        let mut return_of = vec![0; history.len()];
        let kinds: Vec<(usize, bool)> = order.iter().map(|&(_, kind, index)| (index, kind == 0)).collect();
        for (position, &(index, is_call)) in kinds.iter().enumerate() {
            if !is_call {
                return_of[index] = position;
            }
        }
        let next = (0..=count).map(|position| if position == sentinel { 0 } else { position + 1 }).collect();
        let prev = (0..=count).map(|position| if position == 0 { sentinel } else { position - 1 }).collect();
        let mut events = Events { kinds, next, prev, return_of };
        if count == 0 {
            events.next[sentinel] = sentinel;
        } else {
            events.next[count - 1] = sentinel;
            events.prev[sentinel] = count - 1;
        }
        events
    }

    fn first(&self) -> usize {
        self.next[self.kinds.len()]
    }

    fn is_end(&self, position: usize) -> bool {
        position == self.kinds.len()
    }

    fn unlink(&mut self, position: usize) {
        let (before, after) = (self.prev[position], self.next[position]);
        self.next[before] = after;
        self.prev[after] = before;
    }

    fn relink(&mut self, position: usize) {
        let (before, after) = (self.prev[position], self.next[position]);
        self.next[before] = position;
        self.prev[after] = position;
    }

    /// Removes an operation's call (at `call`) and return from the list.
    fn lift(&mut self, call: usize) {
        let ret = self.return_of[self.kinds[call].0];
        self.unlink(call);
        self.unlink(ret);
    }

    /// Undoes [`Events::lift`] (in reverse order of removal).
    fn unlift(&mut self, call: usize) {
        let ret = self.return_of[self.kinds[call].0];
        self.relink(ret);
        self.relink(call);
    }
}

/// Checks one key's history, starting from an absent key.
pub fn check(history: &[Operation]) -> Verdict {
    check_from(history, None)
}

/// Checks one key's history from `initial`.
pub fn check_from(history: &[Operation], initial: Option<u64>) -> Verdict {
    let mut events = Events::new(history);
    let words = history.len().div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut explored: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = initial;
    let mut position = events.first();
    let mut deepest = (0usize, 0usize);
    let mut steps = 0u64;
    loop {
        if events.is_end(events.first()) {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > SEARCH_STEPS_MAX {
            return Verdict::Unknown;
        }
        let (operation, is_call) = events.kinds[position];
        if is_call {
            if let Some(next_state) = step(state, &history[operation].action) {
                linearized[operation / 64] |= 1 << (operation % 64);
                if explored.insert((linearized.clone(), next_state)) {
                    stack.push((position, state));
                    state = next_state;
                    events.lift(position);
                    position = events.first();
                    continue;
                }
                linearized[operation / 64] &= !(1 << (operation % 64));
            }
            position = events.next[position];
        } else {
            if stack.len() >= deepest.0 {
                deepest = (stack.len(), operation);
            }
            let Some((call, previous)) = stack.pop() else {
                return Verdict::NotLinearizable { stuck_at: deepest.1 };
            };
            let undone = events.kinds[call].0;
            linearized[undone / 64] &= !(1 << (undone % 64));
            state = previous;
            events.unlift(call);
            position = events.next[call];
        }
    }
}

/// Shrinks a non-linearizable history to a small one that is still not
/// linearizable, by dropping operations one at a time (keeping every put
/// whose value a remaining read observed, so the result stays meaningful).
pub fn minimize(history: &[Operation]) -> Vec<Operation> {
    let mut kept: Vec<Operation> = history.to_vec();
    let mut index = 0;
    while index < kept.len() {
        let removable = match kept[index].action {
            Action::Put { value } => {
                !kept.iter().any(|other| other.action == Action::Get { observed: Some(value) })
            }
            _ => true,
        };
        if removable {
            let mut candidate = kept.clone();
            candidate.remove(index);
            if matches!(check(&candidate), Verdict::NotLinearizable { .. }) {
                kept = candidate;
                continue;
            }
        }
        index += 1;
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let small = minimize(&history);
        assert!(matches!(check(&small), Verdict::NotLinearizable { .. }));
        assert!(small.len() <= 3, "{small:?}");
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
}
