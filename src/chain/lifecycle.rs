//! A member's join and hand-over lifecycle, as one enum.
//!
//! ```text
//!            view lists us            state transfer done       hand-over mark reached
//!  Outside ───────────────► Joining ─────────────────► CatchingUp ───────────────────► (AnnounceReady)
//!     ▲                        │                                                            │
//!     │ fenced                 │ no ready member and we are the candidate                   │ view shows us ready
//!     │                        ▼                                                            ▼
//!     └──────────────────── Ready { handed_over_to } ◄──────────────────────────────────────┘
//! ```
//!
//! Two facts about the table are not part of this lifecycle because they
//! cut across it (see [`ChainNode`](super::ChainNode)): whether a state
//! transfer into it is under way (any member may be sent one), and whether
//! it holds a former ready member's history (kept through fencing, so a
//! chain whose members all lost their sessions can restart from it).

/// Where a server stands in joining the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// No chain: every write commits at once, every read is allowed.
    Standalone,
    /// Not a member: not registered yet, or fenced.
    Outside,
    /// Listed in the view, but our table is not the chain's state yet: we
    /// wait for a state transfer (or to start a chain ourselves). We may
    /// neither replicate to a successor nor be snapshotted.
    Joining,
    /// A state transfer in this registration completed; we follow our
    /// predecessor's stream and may replicate. `promote_at`: once the old
    /// tail handed its role over, the write we must have applied before we
    /// announce ourselves ready (taken back to `None` once announced).
    /// `handed_over`: the predecessor that handed the tail role to us, and
    /// the last view in which it still was our predecessor.
    CatchingUp { promote_at: Option<u64>, handed_over: Option<HandOver> },
    /// A ready member, as the view shows. `handed_over_to`: we are the tail
    /// and gave the tail role to this joining successor (we no longer commit
    /// on our own or answer reads).
    Ready { handed_over_to: Option<String> },
}

/// A hand-over of the tail role to us, as a joiner keeps it until a view
/// shows us ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOver {
    /// The predecessor that handed over: we become ready while it is still
    /// our predecessor.
    pub giver: String,
    /// The newest view epoch in which `giver` was our predecessor, so no
    /// member committed on its own. Once the giver left, we may become the
    /// first member only if no later epoch was recorded: a tail that
    /// records a later epoch may commit writes we never got (the simulator
    /// found a joiner, handed over by a tail that was then removed, become
    /// the lone tail without the writes the head had committed alone since).
    pub epoch: u64,
}

impl Lifecycle {
    /// A joiner that caught up by a state transfer, with no hand-over yet.
    pub fn caught_up() -> Lifecycle {
        Lifecycle::CatchingUp { promote_at: None, handed_over: None }
    }

    /// Our table is the live chain's state: ready, or caught up by a state
    /// transfer in this registration. Only then may we replicate to a
    /// successor or snapshot our table for one (table-check found a joining
    /// server with an empty table wiping a recovering one that held the only
    /// copy of the data).
    pub fn holds_chain_state(&self) -> bool {
        matches!(self, Lifecycle::Standalone | Lifecycle::CatchingUp { .. } | Lifecycle::Ready { .. })
    }

    /// The joining successor we handed the tail role to, if any.
    pub fn handed_over_to(&self) -> Option<&str> {
        match self {
            Lifecycle::Ready { handed_over_to } => handed_over_to.as_deref(),
            _ => None,
        }
    }
}
