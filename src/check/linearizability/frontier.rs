//! The breadth-first search behind [`super::check_from`], after Lowe's
//! just-in-time linearization ("Testing for linearizability", 2017): the
//! history is read in time order, and at each return the search keeps every
//! way the operations returned so far can have been linearized, as a set of
//! *configurations*. Its work grows with the history's length times its
//! concurrency, where the depth-first search's can grow exponentially with
//! the distance between a wrong choice and the operation that shows it
//! wrong (an unknown increment applied early that a result much later needs
//! applied late, say): both choices are carried side by side here, and
//! collapse once the register forgets the difference.
//!
//! A configuration is a partial linearization, reduced to what its
//! completions depend on: the register, the operations still running that it
//! already linearized (`early`), and the unknown operations it applied
//! (`applied`). Between two returns nothing changes; at the return of
//! operation `o`, a configuration that linearized `o` already is kept, and
//! any other is extended, in every way the pruning rules allow, by
//! operations called so far until `o` is linearized. A history is
//! linearizable if and only if a configuration survives its last return:
//!
//! - *Sound*: every configuration is a valid partial linearization of the
//!   operations called so far that holds every operation returned so far.
//! - *Complete*: take any linearization in the canonical form of
//!   [`super::check_from`]. Before the first return the search holds its
//!   empty prefix. If it holds a prefix `P` (with every operation returned
//!   before `o`) when `o` returns, either `P` holds `o`, or extending `P` along
//!   the linearization up to `o` only uses operations called by then (one
//!   called later would have to follow `o`), it passes the rules (they are
//!   properties of the canonical form), and it ends with `o`: a known
//!   operation, so no run of unknown operations is cut in two.
//! - *Dominance*: of two configurations with the same register and early
//!   operations, the one whose applied set is a subset of the other's is
//!   kept. Every completion of the other completes it too, once each
//!   identical unknown operation it uses is swapped for the earliest-called
//!   one still pending (rule 4; the applied ones of a kind are always the
//!   earliest-called, so the swap only moves operations to earlier calls,
//!   which keeps real-time order); the result is still canonical.
//! - An unknown operation that every configuration applied is *consumed*:
//!   it leaves the sets and the candidates, which changes nothing.

use std::collections::{HashMap, HashSet};

use super::rules::{Fresh, Point, twins};
use super::{Action, Operation, State, Verdict};

/// The unknown operations a configuration applied, as sorted indices.
type Applied = Vec<usize>;

/// A configuration's register and early operations (sorted indices).
type Shape = (State, Vec<usize>);

/// The configurations after a return: per shape, the applied sets none of
/// which contains another.
#[derive(Default)]
struct Frontier {
    shapes: HashMap<Shape, Vec<Applied>>,
    /// How many configurations there are.
    size: usize,
}

impl Frontier {
    /// Adds a configuration unless one of the same shape dominates it, and
    /// drops those of the same shape it dominates (see [`dominates`]).
    fn insert(&mut self, history: &[Operation], shape: Shape, applied: Applied) {
        let sets = self.shapes.entry(shape).or_default();
        if sets.iter().any(|set| dominates(history, set, &applied)) {
            return;
        }
        let before = sets.len();
        sets.retain(|set| !dominates(history, &applied, set));
        self.size = self.size + 1 + sets.len() - before;
        sets.push(applied);
    }

    /// The unknown operations every configuration applied, taken out of the
    /// sets (they are consumed).
    fn take_common(&mut self) -> Vec<usize> {
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for index in self.shapes.values().flatten().flatten() {
            *counts.entry(*index).or_default() += 1;
        }
        let common: Vec<usize> =
            counts.into_iter().filter(|&(_, count)| count == self.size).map(|(index, _)| index).collect();
        if !common.is_empty() {
            for set in self.shapes.values_mut().flatten() {
                set.retain(|index| !common.contains(index));
            }
        }
        common
    }
}

/// Whether a configuration that applied `strong` can do whatever one of the
/// same shape that applied `weak` can: every unknown operation `strong`
/// applied and `weak` did not is an increment, and each can be matched with
/// increments of its delta's total that `weak` applied and `strong` did not
/// (disjoint groups). Then a completion of the weak one completes the strong
/// one with each matched increment replaced by its group (in delta order
/// within its run: increments commute, and every one of them changes the
/// register). A subset is the plain case: nothing to match. The matching
/// is greedy, so it may miss one: that only keeps a configuration more.
fn dominates(history: &[Operation], strong: &[usize], weak: &[usize]) -> bool {
    let delta = |index: usize| match history[index].action {
        Action::Incr { delta, .. } => Some(delta),
        _ => None,
    };
    let mut owed = Vec::new();
    for &index in strong.iter().filter(|index| weak.binary_search(index).is_err()) {
        match delta(index) {
            Some(delta) => owed.push(delta),
            None => return false,
        }
    }
    if owed.is_empty() {
        return true;
    }
    let mut spare: Vec<u64> = weak
        .iter()
        .filter(|index| strong.binary_search(index).is_err())
        .filter_map(|&index| delta(index))
        .collect();
    owed.sort_unstable_by(|a, b| b.cmp(a));
    spare.sort_unstable_by(|a, b| b.cmp(a));
    owed.into_iter().all(|total| take_sum(&mut spare, total))
}

/// Removes from `spare` (in decreasing order) a few numbers adding up to
/// `total`, taking each greedily, largest first; false if that fails.
fn take_sum(spare: &mut Vec<u64>, total: u64) -> bool {
    let mut left = total;
    let mut taken = Vec::new();
    for (place, &number) in spare.iter().enumerate() {
        if number <= left {
            left -= number;
            taken.push(place);
            if left == 0 {
                break;
            }
        }
    }
    if left != 0 {
        return false;
    }
    for place in taken.into_iter().rev() {
        spare.remove(place);
    }
    true
}

/// What the search knows at a return: the operations that may be
/// linearized, and the return's operation.
struct Moment<'a> {
    history: &'a [Operation],
    /// Known operations called and not returned before now (with `target`).
    running: &'a [usize],
    /// Unknown operations called so far and not consumed, in call order.
    available: &'a [usize],
    /// For an unknown operation, the one with the same action called just
    /// before it (rule 4: it must be applied first).
    twin_before: &'a [Option<usize>],
    consumed: &'a [bool],
    /// The operation returning now.
    target: usize,
}

/// The extension of configurations at one return: a depth-first walk over
/// partial linearizations, ending wherever the returning operation is
/// linearized.
struct Walk<'a> {
    moment: Moment<'a>,
    /// The nodes walked already at this return (from any configuration).
    seen: HashSet<(State, Vec<usize>, Applied, Option<Fresh>)>,
    /// The configurations reached, each with `target` linearized.
    reached: Vec<(Shape, Applied)>,
    steps: u64,
    steps_max: u64,
}

impl Walk<'_> {
    /// Walks on from the node with the register, fresh run, early and
    /// applied operations given; false once out of steps.
    fn walk(
        &mut self,
        state: State,
        fresh: Option<Fresh>,
        early: &mut Vec<usize>,
        applied: &mut Applied,
    ) -> bool {
        if !self.seen.insert((state, early.clone(), applied.clone(), fresh)) {
            return true;
        }
        self.steps += 1;
        if self.steps > self.steps_max {
            return false;
        }
        let moment = &self.moment;
        let history = moment.history;
        let pending: Vec<usize> =
            moment.available.iter().copied().filter(|index| applied.binary_search(index).is_err()).collect();
        let incr_room = pending
            .iter()
            .map(|&index| match history[index].action {
                Action::Incr { delta, .. } => delta,
                _ => 0,
            })
            .fold(0u64, u64::saturating_add);
        let known: Vec<usize> =
            moment.running.iter().copied().filter(|index| early.binary_search(index).is_err()).collect();
        let mut point = Point::new(state, fresh, incr_room);
        for &index in known.iter().chain(&pending) {
            let operation = &history[index];
            let is_unknown = operation.ret.is_none();
            let moment = &self.moment;
            if is_unknown
                && moment.twin_before[index]
                    .is_some_and(|twin| !moment.consumed[twin] && applied.binary_search(&twin).is_err())
            {
                continue;
            }
            let candidates =
                || (known.iter().map(|&index| &history[index]), pending.iter().map(|&index| &history[index]));
            let Some(next) = point.allowed(operation, candidates) else { continue };
            if index == moment.target {
                self.reached.push(((next, early.clone()), applied.clone()));
                continue;
            }
            let set = if is_unknown { &mut *applied } else { &mut *early };
            let place = set.binary_search(&index).unwrap_err();
            set.insert(place, index);
            let fresh = point.fresh_after(operation);
            let going_on = self.walk(next, fresh, early, applied);
            let set = if is_unknown { &mut *applied } else { &mut *early };
            set.remove(place);
            if !going_on {
                return false;
            }
        }
        true
    }
}

/// The search; `None` when it gave up (more than `configurations_max`
/// configurations, or `steps_max` steps). Also returns the steps taken.
pub(super) fn search(
    history: &[Operation],
    initial: State,
    steps_max: u64,
    configurations_max: usize,
) -> (Option<Verdict>, u64) {
    // Calls before returns at equal times, as in the depth-first search:
    // such operations count as concurrent, which is the more permissive.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(history.len() * 2);
    for (index, operation) in history.iter().enumerate() {
        events.push((operation.call, false, index));
        if let Some(ret) = operation.ret {
            events.push((ret, true, index));
        }
    }
    events.sort_unstable();
    let twin_before = twins(history);
    let mut consumed = vec![false; history.len()];
    let (mut running, mut available) = (Vec::new(), Vec::new());
    let mut frontier = Frontier::default();
    frontier.insert(history, (initial, Vec::new()), Vec::new());
    let mut steps = 0u64;
    for (_, is_return, target) in events {
        if !is_return {
            if history[target].ret.is_some() {
                running.push(target)
            } else {
                available.push(target)
            }
            continue;
        }
        let moment = Moment {
            history,
            running: &running,
            available: &available,
            twin_before: &twin_before,
            consumed: &consumed,
            target,
        };
        let mut walk = Walk { moment, seen: HashSet::new(), reached: Vec::new(), steps, steps_max };
        let mut next = Frontier::default();
        for ((state, mut early), sets) in frontier.shapes {
            for mut applied in sets {
                if let Ok(place) = early.binary_search(&target) {
                    let mut early = early.clone();
                    early.remove(place);
                    next.insert(history, (state, early), applied);
                } else if !walk.walk(state, None, &mut early, &mut applied) {
                    return (None, walk.steps);
                }
            }
        }
        steps = walk.steps;
        for (shape, applied) in walk.reached {
            next.insert(history, shape, applied);
        }
        if next.size == 0 {
            return (Some(Verdict::NotLinearizable { stuck_at: target }), steps);
        }
        if next.size > configurations_max {
            return (None, steps);
        }
        running.retain(|&index| index != target);
        for index in next.take_common() {
            consumed[index] = true;
        }
        available.retain(|&index| !consumed[index]);
        frontier = next;
    }
    (Some(Verdict::Linearizable), steps)
}
