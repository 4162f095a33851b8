//! The pruning rules of [`super::check_from`], shared by both searches
//! (the depth-first `search` and the breadth-first `frontier`): which
//! operation may come next at a point of a partial linearization, given the
//! register, the run of unknown operations under way and what is pending.

use std::collections::HashMap;

use super::{Action, CasResult, Operation, State, step};

/// The last operation linearized, when its outcome is unknown: the next one
/// must tell it happened (see [`super::check_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Fresh {
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
pub(super) enum Target {
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

/// A point of a partial linearization, as the rules see it.
pub(super) struct Point {
    pub state: State,
    pub fresh: Option<Fresh>,
    /// The sum of the deltas of the unknown increments pending.
    pub incr_room: u64,
    /// Where a run of unknown operations through here can end, computed
    /// when an unknown candidate is first tried (see [`targets`]).
    pub targets: Option<Vec<Target>>,
}

impl Point {
    pub fn new(state: State, fresh: Option<Fresh>, incr_room: u64) -> Point {
        Point { state, fresh, incr_room, targets: None }
    }

    /// The register after linearizing `operation` here, if the register
    /// allows it and the pruning rules do. `targets` gives, when first
    /// needed, the known operations that may come next and the unknown ones
    /// pending.
    pub fn allowed<'h, K, U>(
        &mut self,
        operation: &Operation,
        targets: impl FnOnce() -> (K, U),
    ) -> Option<State>
    where
        K: Iterator<Item = &'h Operation>,
        U: Iterator<Item = &'h Operation>,
    {
        let action = &operation.action;
        let next = step(self.state, action)?;
        let unknown = operation.ret.is_none();
        if unknown && next == self.state {
            return None;
        }
        if let Some(fresh) = self.fresh
            && (step(fresh.before, action) == Some(next)
                || step(fresh.run_start, action) == Some(next)
                || (*action == Action::Del { found: Some(true) } && !fresh.first))
        {
            return None;
        }
        if unknown {
            let mut room = self.incr_room;
            if let Action::Incr { delta, .. } = action {
                if self.fresh.is_some_and(|fresh| *delta < fresh.incr_delta) {
                    return None;
                }
                room = room.saturating_sub(*delta);
            }
            if self.targets.is_none() {
                let (known, pending) = targets();
                self.targets = Some(self.targets_of(known, pending));
            }
            if !self.targets.iter().flatten().any(|target| target.reached(next, room)) {
                return None;
            }
        }
        Some(next)
    }

    /// What the point after `operation` must know about it.
    pub fn fresh_after(&self, operation: &Operation) -> Option<Fresh> {
        operation.ret.is_none().then(|| Fresh {
            before: self.state,
            run_start: self.fresh.map_or(self.state, |fresh| fresh.run_start),
            first: self.fresh.is_none(),
            incr_delta: if let Action::Incr { delta, .. } = operation.action { delta } else { 0 },
        })
    }

    /// Where a run of unknown operations through here can end. After its
    /// first operation a run holds only compare-and-sets and increments
    /// (rule 2 rules out a put or a delete after an unknown operation), and
    /// it ends before a known candidate (one of these stays next until the
    /// run ends). So: the registers a known candidate can follow the run
    /// in, and the expected value of every pending compare-and-set whose
    /// new value can lead on to one of those (through increments adding up
    /// to at most the room, and such compare-and-sets).
    fn targets_of<'h>(
        &self,
        known: impl Iterator<Item = &'h Operation>,
        pending: impl Iterator<Item = &'h Operation>,
    ) -> Vec<Target> {
        let run_start = self.fresh.is_none().then_some(self.state);
        let mut targets = Vec::new();
        for operation in known {
            Target::add_of(operation, run_start, &mut targets);
        }
        let mut swaps: Vec<(State, u64)> = pending
            .filter_map(|operation| match operation.action {
                Action::Cas { expected, value, .. } => Some((expected, value)),
                _ => None,
            })
            .collect();
        loop {
            let before = swaps.len();
            swaps.retain(|&(expected, value)| {
                let useful = targets.iter().any(|target| target.reached(Some(value), self.incr_room));
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
}

/// For each operation of unknown outcome, the one with the same action and
/// unknown outcome called just before it (rule 4: it is linearized first).
pub(super) fn twins(history: &[Operation]) -> Vec<Option<usize>> {
    let mut unknown: Vec<usize> = (0..history.len()).filter(|&index| history[index].ret.is_none()).collect();
    unknown.sort_by_key(|&index| (history[index].call, index));
    let mut twin_before = vec![None; history.len()];
    let mut latest: HashMap<&Action, usize> = HashMap::new();
    for index in unknown {
        twin_before[index] = latest.insert(&history[index].action, index);
    }
    twin_before
}
