//! One registration in ZooKeeper, as a pure state machine: when the
//! session is confirmed (and when an unconfirmed one is given up), when
//! readiness is announced and the commit record written (again until
//! ZooKeeper took them), when to register again, and whether a view lets us
//! start the chain.
//!
//! These were decisions of the server's membership thread and, a second
//! time, of the simulator's model of it; now both run this code. The
//! membership thread (`coord::membership`) and the simulator
//! (`check::sim::server`) only do the ZooKeeper reads and writes that
//! [`Registration::duties`] lists and report back how they went.

use super::bootstrap::{self, Bootstrap, Holding};
use crate::view::{ChainView, CommitRecord};

/// How often a registration confirms its session and how long a
/// confirmation holds, as shares of the session timeout.
#[derive(Clone, Copy, Debug)]
pub struct SessionTiming {
    pub timeout_ms: u64,
    /// Confirm the session every this many ms.
    pub confirm_interval_ms: u64,
    /// A confirmation sent at `t` keeps the lease until `t + lease_ms`.
    pub lease_ms: u64,
    /// A failed confirmation (or ZooKeeper write) is tried again after this.
    pub retry_ms: u64,
}

/// Something the membership transport must do in ZooKeeper now.
#[derive(Clone, Debug, PartialEq)]
pub enum Duty {
    /// Read our own node to confirm the session is alive.
    Confirm,
    /// Write our node's data as ready.
    Announce,
    /// Write this commit record into the chain node (version-checked).
    WriteRecord(CommitRecord),
}

/// What a view of the chain means for this registration.
#[derive(Debug, PartialEq)]
pub enum ViewVerdict {
    /// Our node is not in the chain: register again.
    Leave(&'static str),
    /// Follow the chain: nothing more to do.
    Follow,
    /// No ready member and we are the one to start the chain: tell the node
    /// ([`ChainNode::starting_chain`](super::ChainNode::starting_chain)) and
    /// announce ourselves ready; log it as `decision` says.
    Start { decision: Bootstrap, generation: u64 },
    /// No ready member, and none of the servers that held every committed
    /// write is here: we wait for one to come back (said once per
    /// registration).
    AwaitingNamedMember,
}

/// One registration: its name and what is owed to ZooKeeper.
pub struct Registration {
    /// Our node's name, as peers see it.
    name: String,
    timing: SessionTiming,
    /// When we registered (a recovering member waits before restarting a
    /// chain without the servers the commit record names).
    registered_ms: u64,
    next_confirm_ms: u64,
    last_confirmed_ms: u64,
    /// The node asked to be announced ready and ZooKeeper has not taken it.
    ready_pending: bool,
    /// The node asked for this commit record and ZooKeeper has not taken it.
    record_pending: Option<CommitRecord>,
    /// We said that the chain waits for a server named in the record.
    warned_of_loss: bool,
}

impl Registration {
    /// A registration made at `now_ms` under `name`: its session is
    /// confirmed at once.
    pub fn new(name: String, timing: SessionTiming, now_ms: u64) -> Registration {
        Registration {
            name,
            timing,
            registered_ms: now_ms,
            next_confirm_ms: now_ms,
            last_confirmed_ms: now_ms,
            ready_pending: false,
            record_pending: None,
            warned_of_loss: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node asked to be announced ready (a joiner reached the
    /// hand-over mark).
    pub fn announce_requested(&mut self) {
        self.ready_pending = true;
    }

    /// The node asked for a commit record; a newer request replaces an
    /// older one not yet written.
    pub fn record_requested(&mut self, record: CommitRecord) {
        self.record_pending = Some(record);
    }

    /// What is owed to ZooKeeper at `now_ms`, in the order to do it.
    pub fn duties(&self, now_ms: u64) -> Vec<Duty> {
        let mut duties = Vec::new();
        if now_ms >= self.next_confirm_ms {
            duties.push(Duty::Confirm);
        }
        if self.ready_pending {
            duties.push(Duty::Announce);
        }
        if let Some(record) = &self.record_pending {
            duties.push(Duty::WriteRecord(record.clone()));
        }
        duties
    }

    /// When the next duty falls due, for the transport's wait (`None`:
    /// nothing is owed but the next confirmation).
    pub fn next_due_ms(&self, now_ms: u64) -> u64 {
        if self.ready_pending || self.record_pending.is_some() {
            self.next_confirm_ms.min(now_ms + self.timing.retry_ms)
        } else {
            self.next_confirm_ms
        }
    }

    /// A confirmation sent at `sent_ms` found the session alive: the lease
    /// holds until the returned time.
    pub fn confirmed(&mut self, sent_ms: u64) -> u64 {
        assert!(sent_ms >= self.registered_ms, "a confirmation belongs to its registration");
        self.last_confirmed_ms = self.last_confirmed_ms.max(sent_ms);
        self.next_confirm_ms = sent_ms + self.timing.confirm_interval_ms;
        sent_ms + self.timing.lease_ms
    }

    /// A confirmation got no answer at `now_ms`: soon again, before the
    /// lease runs out; after a whole session timeout without one, the
    /// session is given up (the ZooKeeper client may be gone for good).
    pub fn confirm_failed(&mut self, now_ms: u64) -> Result<(), &'static str> {
        if now_ms.saturating_sub(self.last_confirmed_ms) > self.timing.timeout_ms {
            return Err("no confirmation of the session within its timeout");
        }
        self.next_confirm_ms = now_ms + self.timing.retry_ms;
        Ok(())
    }

    /// Confirm the session at once (after a reconnection).
    pub fn confirm_now(&mut self, now_ms: u64) {
        self.next_confirm_ms = now_ms;
    }

    /// ZooKeeper took our readiness.
    pub fn announced(&mut self) {
        self.ready_pending = false;
    }

    /// ZooKeeper took `record` (or holds a newer one).
    pub fn record_written(&mut self, record: &CommitRecord) {
        if self.record_pending.as_ref() == Some(record) {
            self.record_pending = None;
        }
    }

    /// Whether our node is in `view` (checked before the node sees it).
    pub fn listed_in(&self, view: &ChainView) -> Result<(), &'static str> {
        match view.position_of(&self.name) {
            Some(_) => Ok(()),
            None => Err("our node is not in the chain"),
        }
    }

    /// After the node took `view`: whether we start the chain (see
    /// [`bootstrap::decide`]).
    pub fn bootstrap(&mut self, view: &ChainView, holding: Holding, now_ms: u64) -> ViewVerdict {
        let registered_ms = now_ms.saturating_sub(self.registered_ms);
        let decision = bootstrap::decide(view, &self.name, holding, registered_ms, self.timing.timeout_ms);
        match decision {
            Bootstrap::Reregister(reason) => ViewVerdict::Leave(reason),
            Bootstrap::NotDue if bootstrap::awaiting_named_member(view) && !self.warned_of_loss => {
                self.warned_of_loss = true;
                ViewVerdict::AwaitingNamedMember
            }
            Bootstrap::NotDue => ViewVerdict::Follow,
            decision => {
                let generation = decision.generation(&view.record).expect("a start has a generation");
                ViewVerdict::Start { decision, generation }
            }
        }
    }

    /// How long ago we registered (for the restart's log line).
    pub fn registered_for_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.registered_ms)
    }
}
