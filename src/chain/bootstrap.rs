//! Restarting a chain that has no ready member: a new chain, or one whose
//! members all lost their ZooKeeper sessions (a total outage). Exactly one
//! member starts it ([`ChainView::bootstrap_candidate`]: the recovering one
//! with the longest history, else the first joining one); everyone else
//! waits for it and then joins by state transfer.

use crate::view::{ChainView, Readiness};

/// What a member does when it looks at a view.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// A ready member exists, someone else is the candidate, or it is too
    /// early: nothing to do.
    NotDue,
    /// Announce ourselves ready: the chain starts from our table.
    Start,
    /// We are the candidate, but our table is no longer what our
    /// registration offered: register again to offer what we hold now.
    Reregister,
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

/// Decides for member `me`, registered `registered_ms` ago. A recovering
/// member waits one session timeout after registering, so every survivor
/// of an outage has registered again and the longest history wins.
pub fn decide(view: &ChainView, me: &str, holding: Holding, registered_ms: u64, session_timeout_ms: u64) -> Bootstrap {
    let Some(candidate) = view.bootstrap_candidate() else {
        return Bootstrap::NotDue;
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
        return Bootstrap::Reregister;
    }
    let recovering = matches!(candidate.readiness, Readiness::Recovering { .. });
    if recovering && registered_ms < session_timeout_ms {
        return Bootstrap::NotDue;
    }
    Bootstrap::Start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::test_member as member;

    const EMPTY: Holding = Holding { recoverable_history: None, installed_history: Some(0), table_empty: true };

    #[test]
    fn the_longest_history_restarts_after_a_session_timeout() {
        let view = ChainView::new(
            vec![member(1, Readiness::Joining), member(2, Readiness::Recovering { last_applied: 9 })],
            1,
        );
        let holding = Holding { recoverable_history: Some(9), installed_history: Some(9), table_empty: false };
        assert_eq!(decide(&view, "node0000000001", EMPTY, 10_000, 1000), Bootstrap::NotDue);
        assert_eq!(decide(&view, "node0000000002", holding, 999, 1000), Bootstrap::NotDue);
        assert_eq!(decide(&view, "node0000000002", holding, 1000, 1000), Bootstrap::Start);
        let changed = Holding { recoverable_history: Some(12), ..holding };
        assert_eq!(decide(&view, "node0000000002", changed, 1000, 1000), Bootstrap::Reregister);
    }

    #[test]
    fn a_new_chain_starts_from_the_first_empty_member() {
        let view = ChainView::new(vec![member(1, Readiness::Joining), member(2, Readiness::Joining)], 1);
        assert_eq!(decide(&view, "node0000000001", EMPTY, 0, 1000), Bootstrap::Start);
        assert_eq!(decide(&view, "node0000000002", EMPTY, 0, 1000), Bootstrap::NotDue);
        let holding_data = Holding { table_empty: false, ..EMPTY };
        assert_eq!(decide(&view, "node0000000001", holding_data, 0, 1000), Bootstrap::Reregister);
        let ready = ChainView::new(vec![member(1, Readiness::Ready), member(2, Readiness::Joining)], 1);
        assert_eq!(decide(&ready, "node0000000002", EMPTY, 0, 1000), Bootstrap::NotDue);
    }
}
