//! Restarting a chain that has no ready member: a new chain, or one whose
//! members all lost their ZooKeeper sessions (a total outage).
//!
//! Exactly one member starts it; everyone else waits for it and then joins
//! by state transfer. Which one: a recovering member that the chain node's
//! [`CommitRecord`](crate::view::CommitRecord) names (it holds every
//! committed write), the longest history first. A recovering member it does
//! not name left the chain while it went on committing: restarting from it
//! would lose acknowledged writes (the simulator found this: a server paused
//! past its session timeout restarted the chain from its old table after the
//! members holding the newer writes were gone for a moment). So the others
//! wait for a named member to come back. Only when none has come back for
//! [`RESTART_FALLBACK_TIMEOUTS`](crate::limits::RESTART_FALLBACK_TIMEOUTS) session timeouts does the chain restart from the
//! longest history there is, or empty, and says loudly that writes may have
//! been lost. A chain node without a record (a new chain) starts at once.

use crate::limits::RESTART_FALLBACK_TIMEOUTS;
use crate::view::{ChainView, CommitRecord, Member, Readiness};

/// What a member does when it looks at a view.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// A ready member exists, someone else is the candidate, or it is too
    /// early: nothing to do.
    NotDue,
    /// Announce ourselves ready: the chain starts from our table, which
    /// holds every committed write.
    Start,
    /// Announce ourselves ready although no server named in the commit
    /// record came back: writes committed after our history are lost.
    StartLosingWrites,
    /// Register again (a new node, a new sequence number), for this reason:
    /// our table is no longer what our registration offered, or we are a
    /// joining member placed before a ready one.
    Reregister(&'static str),
}

impl Bootstrap {
    /// The generation of the chain this decision starts, given the chain
    /// node's `record`; `None` if it starts none. A first-ever start (no
    /// record) is generation 1; a restart from a member named in the record
    /// keeps the record's generation (that member holds every committed
    /// write); a restart that may have lost writes raises it by one, so
    /// clients can tell a reset from an empty store. A record from before
    /// generations counts as generation 1.
    pub fn generation(&self, record: &CommitRecord) -> Option<u64> {
        let previous = record.generation.max(1);
        match self {
            Bootstrap::Start => Some(previous),
            Bootstrap::StartLosingWrites => Some(previous + 1),
            Bootstrap::NotDue | Bootstrap::Reregister(_) => None,
        }
    }
}

/// What our table holds, as the node says.
#[derive(Clone, Copy, Debug)]
pub struct Holding {
    /// See `ChainNode::recoverable_history`.
    pub recoverable_history: Option<u64>,
    /// See `ChainNode::installed_history`.
    pub installed_history: Option<u64>,
    pub table_empty: bool,
}

/// The member to start the chain when no member is ready: the recovering
/// one with the longest history (lowest sequence on ties) among those
/// `eligible`, else (`empty_allowed`) the first member, which starts empty.
fn candidate(view: &ChainView, eligible: impl Fn(&Member) -> bool, empty_allowed: bool) -> Option<&Member> {
    let recovering = view
        .members
        .iter()
        .filter(|member| eligible(member))
        .filter_map(|member| match member.readiness {
            Readiness::Recovering { last_applied } => Some((member, last_applied)),
            _ => None,
        })
        .max_by_key(|(member, last_applied)| (*last_applied, std::cmp::Reverse(member.sequence)));
    match recovering {
        Some((member, _)) => Some(member),
        None if empty_allowed => view.members.first(),
        None => None,
    }
}

/// Whether a chain that existed has no ready member and no member here
/// that the commit record names: unless one comes back within the
/// fallback wait, the chain restarts losing writes (operators should know
/// while they can still bring one back).
pub fn awaiting_named_member(view: &ChainView) -> bool {
    view.head().is_none()
        && view.record.epoch != 0
        && !view.members.iter().any(|member| {
            view.record.includes(member.server_id) && matches!(member.readiness, Readiness::Recovering { .. })
        })
}

/// Whether `me` is a member that is not ready with a lower sequence number
/// than a ready one. Ready members are ordered by sequence, so once ready it
/// would take a place before that member, which has writes it lacks: the
/// simulator found a recovering server that registered before the one that
/// restarted the chain, joined behind it, and on becoming ready became the
/// head, ahead of writes the old head had applied and then committed as the
/// new tail.
fn misplaced(view: &ChainView, me: &str) -> bool {
    let Some(member) = view.members.iter().find(|member| member.name == me) else {
        return false;
    };
    !member.readiness.is_ready() && view.ready().any(|ready| ready.sequence > member.sequence)
}

/// Decides for member `me`, registered `registered_ms` ago. A recovering
/// member waits one session timeout after registering, so every survivor
/// of an outage has registered again and the longest history wins.
pub fn decide(
    view: &ChainView,
    me: &str,
    holding: Holding,
    registered_ms: u64,
    session_timeout_ms: u64,
) -> Bootstrap {
    if misplaced(view, me) {
        return Bootstrap::Reregister(
            "a ready member registered after us; joining behind it needs a newer node",
        );
    }
    if view.head().is_some() {
        return Bootstrap::NotDue;
    }
    let new_chain = view.record.epoch == 0;
    let (candidate, losing) =
        match candidate(view, |member| new_chain || view.record.includes(member.server_id), new_chain) {
            Some(member) => (member, false),
            None if registered_ms >= RESTART_FALLBACK_TIMEOUTS * session_timeout_ms => {
                match candidate(view, |_| true, true) {
                    Some(member) => (member, true),
                    None => return Bootstrap::NotDue,
                }
            }
            None => return Bootstrap::NotDue,
        };
    if candidate.name != me {
        return Bootstrap::NotDue;
    }
    // Start only from exactly what we offered: a recovering member whose
    // table changed since (a state transfer replaced it), or a joining
    // member that holds data, registers again.
    let offered_still_held = match candidate.readiness {
        Readiness::Recovering { last_applied } => holding.recoverable_history == Some(last_applied),
        _ => holding.installed_history == Some(0) && holding.table_empty,
    };
    if !offered_still_held {
        return Bootstrap::Reregister("no ready member, and our table changed since we registered");
    }
    let recovering = matches!(candidate.readiness, Readiness::Recovering { .. });
    if recovering && registered_ms < session_timeout_ms {
        return Bootstrap::NotDue;
    }
    if losing { Bootstrap::StartLosingWrites } else { Bootstrap::Start }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::test_member as member;

    const EMPTY: Holding =
        Holding { recoverable_history: None, installed_history: Some(0), table_empty: true };

    fn holding(last_applied: u64) -> Holding {
        Holding {
            recoverable_history: Some(last_applied),
            installed_history: Some(last_applied),
            table_empty: false,
        }
    }

    #[test]
    fn the_longest_history_restarts_after_a_session_timeout() {
        let view = ChainView::new(
            vec![member(1, Readiness::Joining), member(2, Readiness::Recovering { last_applied: 9 })],
            1,
        );
        assert_eq!(decide(&view, "node0000000001", EMPTY, 10_000, 1000), Bootstrap::NotDue);
        assert_eq!(decide(&view, "node0000000002", holding(9), 999, 1000), Bootstrap::NotDue);
        assert_eq!(decide(&view, "node0000000002", holding(9), 1000, 1000), Bootstrap::Start);
        assert!(matches!(decide(&view, "node0000000002", holding(12), 1000, 1000), Bootstrap::Reregister(_)));
    }

    #[test]
    fn a_new_chain_starts_from_the_first_empty_member() {
        let view = ChainView::new(vec![member(1, Readiness::Joining), member(2, Readiness::Joining)], 1);
        assert_eq!(decide(&view, "node0000000001", EMPTY, 0, 1000), Bootstrap::Start);
        assert_eq!(decide(&view, "node0000000002", EMPTY, 0, 1000), Bootstrap::NotDue);
        let holding_data = Holding { table_empty: false, ..EMPTY };
        assert!(matches!(decide(&view, "node0000000001", holding_data, 0, 1000), Bootstrap::Reregister(_)));
        let ready = ChainView::new(vec![member(1, Readiness::Ready), member(2, Readiness::Joining)], 1);
        assert_eq!(decide(&ready, "node0000000002", EMPTY, 0, 1000), Bootstrap::NotDue);
    }

    /// Seeds 10957441510175221598 and 2 of `table-check sim` (base seed 1):
    /// a member that left while the chain went on must not restart it.
    #[test]
    fn only_a_member_named_in_the_commit_record_restarts_at_once() {
        // Member 2 (server 102) is named; member 3 (server 103) left earlier
        // with a longer-looking but older history.
        let record = CommitRecord { epoch: 7, servers: vec![101, 102], ..CommitRecord::default() };
        let view = ChainView::new(
            vec![
                member(3, Readiness::Recovering { last_applied: 50 }),
                member(4, Readiness::Recovering { last_applied: 40 }),
            ],
            9,
        )
        .with_record(record.clone());
        assert_eq!(
            decide(&view, "node0000000003", holding(50), 59_999, 1000),
            Bootstrap::NotDue,
            "not named"
        );
        assert_eq!(decide(&view, "node0000000003", holding(50), 60_000, 1000), Bootstrap::StartLosingWrites);
        let named = ChainView::new(
            vec![
                member(2, Readiness::Recovering { last_applied: 45 }),
                member(3, Readiness::Recovering { last_applied: 50 }),
            ],
            9,
        )
        .with_record(record);
        assert_eq!(decide(&named, "node0000000002", holding(45), 1000, 1000), Bootstrap::Start);
        assert_eq!(decide(&named, "node0000000003", holding(50), 60_000, 1000), Bootstrap::NotDue);
        // Nobody is recovering and a chain existed: an empty start loses writes.
        let empty = ChainView::new(vec![member(5, Readiness::Joining)], 9).with_record(CommitRecord {
            epoch: 7,
            servers: vec![101],
            ..CommitRecord::default()
        });
        assert_eq!(decide(&empty, "node0000000005", EMPTY, 59_999, 1000), Bootstrap::NotDue);
        assert_eq!(decide(&empty, "node0000000005", EMPTY, 60_000, 1000), Bootstrap::StartLosingWrites);
    }

    #[test]
    fn a_chain_without_a_named_member_is_awaiting_one() {
        let record = CommitRecord { epoch: 7, servers: vec![102], ..CommitRecord::default() };
        let stranger = ChainView::new(vec![member(5, Readiness::Joining)], 9).with_record(record.clone());
        assert!(awaiting_named_member(&stranger));
        let named = ChainView::new(vec![member(2, Readiness::Recovering { last_applied: 4 })], 9)
            .with_record(record.clone());
        assert!(!awaiting_named_member(&named));
        // Named but back empty, and recovering but not named: neither holds
        // every committed write.
        let neither = ChainView::new(
            vec![member(2, Readiness::Joining), member(5, Readiness::Recovering { last_applied: 4 })],
            9,
        )
        .with_record(record.clone());
        assert!(awaiting_named_member(&neither));
        let live = ChainView::new(vec![member(5, Readiness::Ready)], 9).with_record(record);
        assert!(!awaiting_named_member(&live), "a live chain");
        let new_chain = ChainView::new(vec![member(5, Readiness::Joining)], 1);
        assert!(!awaiting_named_member(&new_chain), "no record: a new chain starts at once");
    }

    #[test]
    fn generations_start_at_one_and_rise_only_with_a_loss() {
        let none = CommitRecord::default();
        assert_eq!(Bootstrap::Start.generation(&none), Some(1), "a first-ever start");
        let record = CommitRecord { epoch: 7, servers: vec![101], generation: 3, committed: 90 };
        assert_eq!(Bootstrap::Start.generation(&record), Some(3));
        assert_eq!(Bootstrap::StartLosingWrites.generation(&record), Some(4));
        let before_generations = CommitRecord { epoch: 7, servers: vec![101], ..CommitRecord::default() };
        assert_eq!(Bootstrap::StartLosingWrites.generation(&before_generations), Some(2));
        assert_eq!(Bootstrap::NotDue.generation(&record), None);
    }

    /// Seed 6845672590148449974 of `table-check sim`: a joining member
    /// before a ready one by sequence registers again.
    #[test]
    fn a_joiner_before_a_ready_member_registers_again() {
        let view = ChainView::new(
            vec![member(4, Readiness::Recovering { last_applied: 85 }), member(5, Readiness::Ready)],
            10,
        );
        assert!(matches!(decide(&view, "node0000000004", holding(85), 0, 1000), Bootstrap::Reregister(_)));
        assert_eq!(decide(&view, "node0000000005", holding(130), 0, 1000), Bootstrap::NotDue);
        let behind = ChainView::new(vec![member(5, Readiness::Ready), member(6, Readiness::Joining)], 11);
        assert_eq!(decide(&behind, "node0000000006", EMPTY, 0, 1000), Bootstrap::NotDue);
    }
}
