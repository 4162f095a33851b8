//! The search behind [`super::check_from`]: a depth-first search over
//! partial linearizations with the pruning rules documented there, and the
//! memory of failed nodes (rule 6).

use std::collections::HashMap;

use super::rules::{Fresh, Point, twins};
use super::{Action, Operation, State, Verdict};
use crate::check::random::SplitMix64;

/// Calls and returns of the operations whose outcome is known, in time
/// order, as a doubly linked list the search cuts operations out of and
/// splices them back into. (Operations of unknown outcome never return, so
/// they never bound what may come next: the search keeps them apart.)
struct Events {
    /// (operation index, is_call, time), in time order; index `len` is the
    /// head sentinel.
    kinds: Vec<(usize, bool, u64)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each operation, the positions of its call and return events.
    call_of: Vec<usize>,
    return_of: Vec<usize>,
}

impl Events {
    fn new(history: &[Operation]) -> Events {
        // Calls before returns at equal times: treating such operations as
        // concurrent can only make the check more permissive, never report a
        // false violation.
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(history.len() * 2);
        for (index, operation) in history.iter().enumerate() {
            if let Some(ret) = operation.ret {
                order.push((operation.call, 0, index));
                order.push((ret, 1, index));
            }
        }
        order.sort_unstable();
        let count = order.len();
        let sentinel = count;
        let (mut call_of, mut return_of) = (vec![0; history.len()], vec![0; history.len()]);
        let kinds: Vec<(usize, bool, u64)> =
            order.iter().map(|&(time, kind, index)| (index, kind == 0, time)).collect();
        for (position, &(index, is_call, _)) in kinds.iter().enumerate() {
            if is_call { call_of[index] = position } else { return_of[index] = position }
        }
        let next = (0..=count).map(|position| if position == sentinel { 0 } else { position + 1 }).collect();
        let prev = (0..=count).map(|position| if position == 0 { sentinel } else { position - 1 }).collect();
        let mut events = Events { kinds, next, prev, call_of, return_of };
        if count == 0 {
            events.next[sentinel] = sentinel;
        } else {
            events.next[count - 1] = sentinel;
            events.prev[sentinel] = count - 1;
        }
        events
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

    /// Removes operation `index`'s call and return from the list.
    fn lift(&mut self, index: usize) {
        self.unlink(self.call_of[index]);
        self.unlink(self.return_of[index]);
    }

    /// Undoes [`Events::lift`] (in reverse order of removal).
    fn unlift(&mut self, index: usize) {
        self.relink(self.return_of[index]);
        self.relink(self.call_of[index]);
    }

    /// The calls before the first remaining return, and that return's
    /// operation and time: what may be linearized next, and what bounds it.
    /// `None` when no operation is left.
    fn frontier(&self, calls: &mut Vec<usize>) -> Option<(usize, u64)> {
        let mut position = self.next[self.kinds.len()];
        while let Some(&(index, is_call, time)) = self.kinds.get(position) {
            if !is_call {
                return Some((index, time));
            }
            calls.push(index);
            position = self.next[position];
        }
        None
    }
}

/// One node of the depth-first search: the end of a partial linearization.
struct Node {
    /// The register, the run under way and the pending increments' room.
    point: Point,
    /// The operation linearized to get here (`None` at the root).
    via: Option<usize>,
    /// What may be linearized next: known outcomes first (unknown ones are
    /// rarely needed, so a linearizable history is found sooner), then
    /// unknown ones in call order.
    candidates: Vec<usize>,
    /// How many candidates were tried.
    tried: usize,
    /// The known operation whose return bounds the candidates: the one that
    /// could not be placed if none of them fits.
    blocker: usize,
    /// How many candidates have a known outcome (they come first).
    known: usize,
    /// The time of the blocker's return: operations called later wait.
    bound: u64,
}

/// The search's view of a history: which operations are linearized, and
/// the rules that prune its tree without losing any linearization (see
/// [`super::check_from`]).
struct Search<'a> {
    history: &'a [Operation],
    events: Events,
    /// Operations of unknown outcome, in call order.
    unknown: Vec<usize>,
    /// For an operation of unknown outcome, the one with the same action
    /// and unknown outcome called just before it.
    twin_before: Vec<Option<usize>>,
    linearized: Vec<bool>,
    /// Known-outcome operations not linearized yet.
    known_left: usize,
    /// For an operation of unknown outcome, its place in `unknown`.
    rank: Vec<usize>,
    /// The unknown operations linearized, as a bit set by rank.
    unknown_linearized: Vec<u64>,
}

impl<'a> Search<'a> {
    fn new(history: &'a [Operation]) -> Search<'a> {
        let mut unknown: Vec<usize> =
            (0..history.len()).filter(|&index| history[index].ret.is_none()).collect();
        unknown.sort_by_key(|&index| (history[index].call, index));
        let mut rank = vec![0; history.len()];
        for (place, &index) in unknown.iter().enumerate() {
            rank[index] = place;
        }
        Search {
            history,
            events: Events::new(history),
            known_left: history.len() - unknown.len(),
            unknown_linearized: vec![0; unknown.len().div_ceil(64)],
            unknown,
            twin_before: twins(history),
            linearized: vec![false; history.len()],
            rank,
        }
    }

    /// The node reached in `state` after linearizing `via`.
    fn node(&self, state: State, fresh: Option<Fresh>, via: Option<usize>) -> Node {
        let mut candidates = Vec::new();
        let (blocker, bound) = self.events.frontier(&mut candidates).unwrap_or((0, u64::MAX));
        let known = candidates.len();
        let mut incr_room = 0u64;
        for index in self.pending(bound) {
            if let Action::Incr { delta, .. } = self.history[index].action {
                incr_room = incr_room.saturating_add(delta);
            }
            if self.twin_before[index].is_none_or(|twin| self.linearized[twin]) {
                candidates.push(index);
            }
        }
        Node { point: Point::new(state, fresh, incr_room), via, candidates, tried: 0, blocker, known, bound }
    }

    /// The unknown operations not linearized that may be, called by `bound`.
    fn pending(&self, bound: u64) -> impl Iterator<Item = usize> + '_ {
        let called = self.unknown.iter().copied().take_while(move |&index| self.history[index].call <= bound);
        called.filter(|&index| !self.linearized[index])
    }

    /// The register after linearizing `index` at `node`, if the register
    /// allows it there and the pruning rules do.
    fn allowed(&self, node: &mut Node, index: usize) -> Option<State> {
        let history = self.history;
        let (known, bound) = (&node.candidates[..node.known], node.bound);
        node.point.allowed(&history[index], || {
            (
                known.iter().map(move |&index| &history[index]),
                self.pending(bound).map(move |index| &history[index]),
            )
        })
    }

    fn linearize(&mut self, index: usize) {
        self.linearized[index] = true;
        self.toggle(index);
    }

    fn undo(&mut self, index: usize) {
        self.linearized[index] = false;
        self.toggle(index);
    }

    fn toggle(&mut self, index: usize) {
        let rank = self.rank[index];
        match (self.history[index].ret.is_some(), self.linearized[index]) {
            (true, true) => {
                self.events.lift(index);
                self.known_left -= 1;
            }
            (true, false) => {
                self.events.unlift(index);
                self.known_left += 1;
            }
            (false, _) => self.unknown_linearized[rank / 64] ^= 1 << (rank % 64),
        }
    }

    /// Whether every unknown operation in `set` is linearized.
    fn covers(&self, set: &[u64]) -> bool {
        set.iter().zip(&self.unknown_linearized).all(|(wanted, done)| wanted & !done == 0)
    }
}

/// The search itself; also returns the steps it took.
pub(super) fn search(history: &[Operation], initial: Option<u64>, steps_max: u64) -> (Verdict, u64) {
    let mut search = Search::new(history);
    if search.known_left == 0 {
        return (Verdict::Linearizable, 0);
    }
    // The known operations linearized are kept as a 128-bit hash (the XOR of
    // a random tag per operation), so a failed node costs little to
    // remember whatever the history's length; a false match needs a 128-bit
    // collision. The unknown ones are kept as a bit set, for rule 6.
    let tags: Vec<u128> = (0..history.len() as u64).map(operation_tag).collect();
    let mut known: u128 = 0;
    type Failed = HashMap<(u128, State, Option<Fresh>), Vec<Box<[u64]>>>;
    let mut failed: Failed = HashMap::new();
    let mut path = vec![search.node(initial, None, None)];
    let mut deepest = (0usize, path[0].blocker);
    let mut steps = 0u64;
    // The path empties once the root's candidates are all tried.
    while let Some(depth) = path.len().checked_sub(1) {
        let Some(node) = path.last_mut() else { break };
        let Some(&index) = node.candidates.get(node.tried) else {
            // None of the candidates fits: the blocker cannot be placed.
            if depth >= deepest.0 {
                deepest = (depth, node.blocker);
            }
            if let Some(via) = node.via {
                let set = search.unknown_linearized.clone().into_boxed_slice();
                failed.entry((known, node.point.state, node.point.fresh)).or_default().push(set);
                if history[via].ret.is_some() {
                    known ^= tags[via];
                }
                search.undo(via);
            }
            path.pop();
            continue;
        };
        node.tried += 1;
        steps += 1;
        if steps > steps_max {
            return (Verdict::Unknown, steps);
        }
        let Some(next) = search.allowed(node, index) else { continue };
        let fresh = node.point.fresh_after(&history[index]);
        let known_after = if history[index].ret.is_some() { known ^ tags[index] } else { known };
        search.linearize(index);
        let sets = failed.get(&(known_after, next, fresh));
        if sets.is_some_and(|sets| sets.iter().any(|set| search.covers(set))) {
            search.undo(index);
            continue;
        }
        known = known_after;
        if search.known_left == 0 {
            return (Verdict::Linearizable, steps);
        }
        path.push(search.node(next, fresh, Some(index)));
    }
    (Verdict::NotLinearizable { stuck_at: deepest.1 }, steps)
}

/// A random 128-bit tag for operation `index`.
fn operation_tag(index: u64) -> u128 {
    let mut random = SplitMix64::derive(0x11ea_71ab, index);
    ((random.next_u64() as u128) << 64) | random.next_u64() as u128
}
