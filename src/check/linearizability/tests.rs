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
    let unknown_cas = [put(1, 0, 1), op(Action::Cas { expected: Some(1), value: 2, result: None }, 2, None)];
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

/// When a simulated register is unreachable, and how late a write of
/// unknown outcome may still take effect.
#[derive(Clone, Copy)]
struct Outages {
    /// An outage starts every this many time units.
    every: u64,
    /// A write of unknown outcome takes effect at most this long after
    /// its outage ended (a server that was paused applies it late).
    late_max: u64,
}

/// Frequent outages, each write of unknown outcome applied before the end
/// of its outage if at all.
const SHORT_OUTAGES: Outages = Outages { every: 4000, late_max: 0 };

/// A history of one key as `clients` clients of a correct register
/// record it under faults: `operations` operations in the workload's mix
/// (increments of 1..3, cas expecting what the client last learnt), each
/// taking effect at a random instant of its interval. Every
/// `outages.every` time units the register is unreachable for
/// `OUTAGE_LENGTH`: a write called then has an unknown outcome and took
/// effect at most `outages.late_max` after the outage ended or, half the
/// time, never; a read called then failed and is left out, as the
/// checker's callers do.
fn simulated_register(seed: u64, clients: usize, operations: usize, outages: Outages) -> Vec<Operation> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
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
                let outage_end = (time / outages.every) * outages.every + OUTAGE_LENGTH;
                let (duration, effect) = if time < outage_end {
                    let latest = outage_end + outages.late_max;
                    (GIVE_UP_AFTER, (random.below(2) == 0).then(|| random.between(time, latest)))
                } else {
                    let duration =
                        if random.below(10) == 0 { random.between(50, 300) } else { random.between(1, 40) };
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
    let incrs = unknown.clone().filter(|operation| matches!(operation.action, Action::Incr { .. })).count();
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
        assert_eq!(verdict == Verdict::Linearizable, expected, "round {round}: {verdict:?} for {history:#?}");
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
        let history = simulated_register(seed, clients, 2000, SHORT_OUTAGES);
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
        let mut history = simulated_register(seed, clients, 2000, SHORT_OUTAGES);
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

/// The breadth-first search alone.
fn frontier_verdict(history: &[Operation]) -> Verdict {
    let (verdict, _) =
        frontier::search(history, None, CHECK_SEARCH_STEPS_MAX, CHECK_FRONTIER_CONFIGURATIONS_MAX);
    verdict.expect("decided")
}

/// Each search alone, after merging unobserved puts: their verdicts must
/// agree; returns it.
fn both_searches(history: &[Operation]) -> Verdict {
    let merged = merge_unobserved_puts(history);
    let (depth_first, _) = search(&merged, None, CHECK_SEARCH_STEPS_MAX);
    let breadth_first = frontier_verdict(&merged);
    assert_eq!(depth_first == Verdict::Linearizable, breadth_first == Verdict::Linearizable, "{history:?}");
    assert_eq!(check(history) == Verdict::Linearizable, breadth_first == Verdict::Linearizable);
    breadth_first
}

fn unknown(action: Action, call: u64) -> Operation {
    op(action, call, None)
}

#[test]
fn unobserved_puts_are_merged_and_still_explain_a_delete() {
    let put = |value| unknown(Action::Put { value }, 0);
    let two = [put(5), put(6), del(true, 1, 2), get(None, 3, 4), del(true, 5, 6)];
    let merged = merge_unobserved_puts(&two);
    assert_eq!(merged[0], merged[1], "nothing observed 5 or 6: one kind of put");
    assert_eq!(both_searches(&two), Verdict::Linearizable, "each delete found one of them");
    let one = [put(5), del(true, 1, 2), get(None, 3, 4), del(true, 5, 6)];
    assert!(matches!(both_searches(&one), Verdict::NotLinearizable { .. }), "a put applies once");
    // An unknown increment could make 5 into 6, which a read saw: not merged.
    let incremented =
        [put(5), put(9), unknown(Action::Incr { delta: 1, result: None }, 0), get(Some(6), 1, 2)];
    assert_ne!(merge_unobserved_puts(&incremented)[0], merge_unobserved_puts(&incremented)[1]);
    assert_eq!(both_searches(&incremented), Verdict::Linearizable);
}

#[test]
fn an_observed_unknown_put_applies_once_across_a_quiet_point() {
    // Nothing runs between the read of 5 and the put of 7: a stale read
    // after it must still be caught.
    let history =
        [unknown(Action::Put { value: 5 }, 0), get(Some(5), 1, 2), put(7, 3, 4), get(Some(5), 5, 6)];
    assert!(matches!(both_searches(&history), Verdict::NotLinearizable { stuck_at: 3 }));
    let fine = [unknown(Action::Put { value: 5 }, 0), get(Some(5), 1, 2), put(7, 3, 4), get(Some(7), 5, 6)];
    assert_eq!(both_searches(&fine), Verdict::Linearizable);
}

#[test]
fn concurrent_writes_leave_either_value_across_a_quiet_point() {
    // Two overlapping puts, then nothing runs: either value may be the
    // register, but reads after must agree on one.
    let puts = [put(1, 0, 10), put(2, 1, 11)];
    let either = |reads: &[Operation]| [&puts[..], reads].concat();
    assert_eq!(both_searches(&either(&[get(Some(1), 13, 14), get(Some(1), 15, 16)])), Verdict::Linearizable);
    assert_eq!(both_searches(&either(&[get(Some(2), 13, 14), get(Some(2), 15, 16)])), Verdict::Linearizable);
    let flip = either(&[get(Some(1), 13, 14), get(Some(2), 15, 16), get(Some(1), 17, 18)]);
    assert!(matches!(both_searches(&flip), Verdict::NotLinearizable { .. }));
    // A long put must be linearized before a short one that returned: only
    // a read much later shows it.
    let early = [put(1, 0, 100), put(2, 1, 5), get(Some(2), 6, 7), get(Some(2), 200, 201)];
    assert_eq!(both_searches(&early), Verdict::Linearizable);
    let late =
        [put(1, 0, 100), put(2, 1, 5), get(Some(2), 6, 7), get(Some(1), 200, 201), get(Some(2), 202, 203)];
    assert!(matches!(both_searches(&late), Verdict::NotLinearizable { .. }));
}

#[test]
fn an_unknown_operation_stays_pending_where_another_explained_a_read() {
    // 11 is either the unknown put or 10 plus the unknown increment: the
    // search keeps both, and a read much later needs the increment still
    // pending (so it must not count as applied everywhere).
    let start = [
        put(10, 0, 1),
        unknown(Action::Incr { delta: 1, result: None }, 2),
        unknown(Action::Put { value: 11 }, 2),
        get(Some(11), 3, 4),
        put(20, 5, 6),
    ];
    let then = |reads: &[Operation]| [&start[..], reads].concat();
    assert_eq!(both_searches(&then(&[get(Some(21), 7, 8)])), Verdict::Linearizable);
    assert!(matches!(
        both_searches(&then(&[get(Some(21), 7, 8), put(30, 9, 10), get(Some(31), 11, 12)])),
        Verdict::NotLinearizable { .. }
    ));
}

#[test]
fn unknown_increments_count_by_their_sum() {
    // 100 + 3 can be made of the unknown 3 or of 1 and 2; only the first
    // leaves a 1 for the second observation, which the breadth-first search
    // must keep (a configuration that used 3 outranks one that used 1 + 2).
    let incr = |delta| unknown(Action::Incr { delta, result: None }, 2);
    let start = [put(100, 0, 1), incr(1), incr(2), incr(3), get(Some(103), 10, 11), put(200, 12, 13)];
    let then = |reads: &[Operation]| [&start[..], reads].concat();
    assert_eq!(both_searches(&then(&[get(Some(201), 14, 15)])), Verdict::Linearizable);
    assert_eq!(both_searches(&then(&[get(Some(203), 14, 15)])), Verdict::Linearizable);
    assert!(matches!(both_searches(&then(&[get(Some(206), 14, 15)])), Verdict::NotLinearizable { .. }));
    assert!(matches!(
        both_searches(&then(&[get(Some(201), 14, 15), get(Some(204), 16, 17)])),
        Verdict::NotLinearizable { .. }
    ));
}

/// A long history of one key, as a 300-second real-process run records
/// it: 100,000 operations by five clients, an outage every 40,000 time
/// units leaving ~450 writes of unknown outcome (~220 increments). The
/// depth-first search on the history as it is runs out of steps; with
/// unobserved puts merged the check decides it in about a second (release
/// build), and finds a stale read put into its first thousand operations.
#[test]
fn a_long_history_with_hundreds_of_unknown_writes_is_decided() {
    let history = simulated_register(1, 5, 100_000, Outages { every: 40_000, late_max: 0 });
    let (unknown_increments, unknown) = unknown_counts(&history);
    assert!(
        history.len() > 99_000 && unknown >= 300 && unknown_increments >= 100,
        "{unknown_increments} of {unknown}"
    );
    assert_eq!(
        search(&history, None, CHECK_SEARCH_STEPS_MAX).0,
        Verdict::Unknown,
        "the search before merging"
    );
    assert_eq!(check(&history), Verdict::Linearizable);
    let mut stale = history.clone();
    let put = history
        .iter()
        .position(|operation| operation.ret.is_some() && matches!(operation.action, Action::Put { .. }));
    let Some(Action::Put { value }) = put.map(|index| history[index].action.clone()) else {
        panic!("no put")
    };
    let read = (1000..)
        .find(|&index| matches!(history[index].action, Action::Get { observed: Some(_) }))
        .expect("a read");
    stale[read].action = Action::Get { observed: Some(value) };
    assert!(matches!(check(&stale), Verdict::NotLinearizable { .. }));
}
