//! The search behind [`super::check_from`]: a depth-first search over
//! partial linearizations with the pruning rules documented there, and the
//! memory of failed nodes (rule 6).

use std::collections::HashMap;

use super::{Action, CasResult, Operation, State, Verdict, step};
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

/// The last operation linearized, when its outcome is unknown: the next one
/// must tell it happened (see [`super::check_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Fresh {
    /// The register before it.
    before: State,
    /// The register before the run of unknown operations it ends.
    run_start: State,
    /// Whether it is the run's first operation.
    first: bool,
    /// Its delta if it was an increment, else 0.
    incr_delta: u64,
}

/// A register an operation can follow a run of unknown operations in, and
/// tell the run happened (rule 2 of [`super::check_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Exactly(State),
    /// Any number, right away (a delete that found the key, after a single
    /// unknown operation from absent: rule 5).
    Present,
    /// Anything (an increment that returned but whose result is unknown).
    Any,
}

impl Target {
    /// Adds where `operation` can come after a run of unknown operations
    /// that starts here (`run_start: Some(register)`) or is under way
    /// (`None`). A put or a delete of unknown outcome never does: it would do
    /// the same without the run. An unknown increment continues the run
    /// instead: [`Target::reached`] allows for it.
    fn add_of(operation: &Operation, run_start: Option<State>, targets: &mut Vec<Target>) {
        match operation.action {
            Action::Get { observed } => targets.push(Target::Exactly(observed)),
            Action::Incr { delta, result: Some(result) } if result == delta => {
                targets.extend([Target::Exactly(None), Target::Exactly(Some(0))])
            }
            Action::Incr { delta, result: Some(result) } => {
                targets.extend(result.checked_sub(delta).map(|before| Target::Exactly(Some(before))))
            }
            Action::Incr { result: None, .. } if operation.ret.is_some() => targets.push(Target::Any),
            Action::Cas { expected, result: None | Some(CasResult::Swapped), .. } => {
                targets.push(Target::Exactly(expected))
            }
            Action::Cas { result: Some(CasResult::Saw(seen)), .. } => targets.push(Target::Exactly(seen)),
            Action::Del { found: Some(false) } => targets.push(Target::Exactly(None)),
            Action::Del { found: Some(true) } if run_start == Some(None) => targets.push(Target::Present),
            Action::Del { .. } | Action::Put { .. } | Action::Incr { .. } => {}
        }
    }

    /// Whether a run of unknown increments adding up to at most `room` can
    /// take the register from `state` to this target.
    fn reached(&self, state: State, room: u64) -> bool {
        match (*self, state) {
            (Target::Any, _) | (Target::Present, Some(_)) => true,
            (Target::Present, None) => false,
            (Target::Exactly(target), state) => {
                let base = state.unwrap_or(0);
                target == state || target.is_some_and(|target| target > base && target - base <= room)
            }
        }
    }
}

/// One node of the depth-first search: the end of a partial linearization.
struct Node {
    state: State,
    fresh: Option<Fresh>,
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
    /// The sum of the deltas of the unknown increments pending.
    incr_room: u64,
    /// Where a run of unknown operations through here can end (computed
    /// when an unknown candidate is first tried: see [`Search::targets`]).
    targets: Option<Vec<Target>>,
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
        let mut twin_before = vec![None; history.len()];
        let mut rank = vec![0; history.len()];
        let mut latest: HashMap<&Action, usize> = HashMap::new();
        for (place, &index) in unknown.iter().enumerate() {
            twin_before[index] = latest.insert(&history[index].action, index);
            rank[index] = place;
        }
        Search {
            history,
            events: Events::new(history),
            known_left: history.len() - unknown.len(),
            unknown_linearized: vec![0; unknown.len().div_ceil(64)],
            unknown,
            twin_before,
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
        Node { state, fresh, via, candidates, tried: 0, blocker, known, bound, incr_room, targets: None }
    }

    /// The unknown operations not linearized that may be, called by `bound`.
    fn pending(&self, bound: u64) -> impl Iterator<Item = usize> + '_ {
        let called = self.unknown.iter().copied().take_while(move |&index| self.history[index].call <= bound);
        called.filter(|&index| !self.linearized[index])
    }

    /// Where a run of unknown operations through `node` can end. After its
    /// first operation a run holds only compare-and-sets and increments
    /// (rule 2 rules out a put or a delete after an unknown operation), and
    /// it ends before a known candidate (one of these stays next until the
    /// run ends). So: the registers a known candidate can follow the run
    /// in, and the expected value of every pending compare-and-set whose
    /// new value can lead on to one of those (through increments adding up
    /// to at most the room, and such compare-and-sets).
    fn targets(&self, node: &Node) -> Vec<Target> {
        let run_start = node.fresh.is_none().then_some(node.state);
        let mut targets = Vec::new();
        for &index in &node.candidates[..node.known] {
            Target::add_of(&self.history[index], run_start, &mut targets);
        }
        let mut swaps: Vec<(State, u64)> = (self.pending(node.bound))
            .filter_map(|index| match self.history[index].action {
                Action::Cas { expected, value, .. } => Some((expected, value)),
                _ => None,
            })
            .collect();
        loop {
            let before = swaps.len();
            swaps.retain(|&(expected, value)| {
                let useful = targets.iter().any(|target| target.reached(Some(value), node.incr_room));
                if useful {
                    targets.push(Target::Exactly(expected));
                }
                !useful
            });
            if swaps.len() == before {
                return targets;
            }
        }
    }

    /// The register after linearizing `index` at `node`, if the register
    /// allows it there and the pruning rules do.
    fn allowed(&self, node: &mut Node, index: usize) -> Option<State> {
        let action = &self.history[index].action;
        let next = step(node.state, action)?;
        if self.history[index].ret.is_none() && next == node.state {
            return None;
        }
        if let Some(fresh) = node.fresh
            && (step(fresh.before, action) == Some(next)
                || step(fresh.run_start, action) == Some(next)
                || (*action == Action::Del { found: Some(true) } && !fresh.first))
        {
            return None;
        }
        if self.history[index].ret.is_none() {
            let mut room = node.incr_room;
            if let Action::Incr { delta, .. } = action {
                if node.fresh.is_some_and(|fresh| *delta < fresh.incr_delta) {
                    return None;
                }
                room = room.saturating_sub(*delta);
            }
            if node.targets.is_none() {
                node.targets = Some(self.targets(node));
            }
            if !node.targets.iter().flatten().any(|target| target.reached(next, room)) {
                return None;
            }
        }
        Some(next)
    }

    /// What the node after `index` must know about it.
    fn fresh_after(&self, node: &Node, index: usize) -> Option<Fresh> {
        let operation = &self.history[index];
        operation.ret.is_none().then(|| Fresh {
            before: node.state,
            run_start: node.fresh.map_or(node.state, |fresh| fresh.run_start),
            first: node.fresh.is_none(),
            incr_delta: if let Action::Incr { delta, .. } = operation.action { delta } else { 0 },
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
                failed.entry((known, node.state, node.fresh)).or_default().push(set);
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
        let fresh = search.fresh_after(node, index);
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
