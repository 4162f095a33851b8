//! The replication links' side of the host. Each link thread owns its end
//! of the link (the core's [`Downlink`] or [`Uplink`]); what that end
//! decides about the node runs here, under the node's lock, in one step per
//! event, and the thread carries out the answer on its socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::history::Recorded;
use super::{AckWriter, Replica, TableStore};
use crate::chain::eviction::{Evidence, Hold};
use crate::chain::link::{Ack, Aim, Downlink, Extras, LinkFault, Start, Uplink};
use crate::chain::{ChainNode, Progress, Refusal, SnapshotPoint, Welcome};
use crate::proto::{Downstream, ReplicaHello};
use crate::view::Member;

/// The full state of the table at one sequence number, for a joining server.
pub struct Snapshot {
    /// Its sequence number, generation, client records and deadlines.
    pub point: SnapshotPoint,
    /// The run of forwarded writes it was taken in (see [`ChainNode::stream`]).
    pub stream: u64,
    /// The table, copied as it was at the point, in no order.
    pub entries: Vec<crate::store::Entry>,
    /// The watch history through its sequence (see [`History::through`](super::history::History::through)).
    pub history: Vec<crate::proto::Write>,
}

/// How a welcomed link starts, with the table copied when it needs it.
pub enum LinkStart {
    /// Resend the Sent list's writes after this one (`rejoin`: resuming a
    /// rejoining successor's own table, see [`Start::Resume`]).
    Resume { after: u64, rejoin: bool },
    /// Stream this snapshot first.
    Snapshot(Snapshot),
    /// Our own table is not the chain's state yet.
    NotReady,
}

impl Replica {
    // ---- the predecessor's end ----

    /// Where our link to the successor should go now (see [`Downlink::aim`]).
    pub fn aim(&self, link: &mut Downlink) -> Aim {
        link.aim(&self.node.lock())
    }

    /// The successor welcomed our link: resume, or a snapshot taken
    /// atomically with its sequence number (from here on every applied
    /// write is queued for the successor).
    pub fn link_welcomed(&self, link: &mut Downlink, welcome: &Welcome, continuous: bool) -> LinkStart {
        let now_ms = self.now_ms();
        let node = self.node.lock();
        match link.welcomed(welcome, continuous, &node, now_ms) {
            Start::Resume { after, rejoin } => LinkStart::Resume { after, rejoin },
            Start::NotReady => LinkStart::NotReady,
            Start::Snapshot(point) => LinkStart::Snapshot(self.snapshot_at(point, &node)),
        }
    }

    /// The table at `point`, and the watch history through it, taken under
    /// the node lock `node` is held by, so no write is applied between the
    /// point and the copy.
    pub(super) fn snapshot_at(&self, point: SnapshotPoint, node: &ChainNode) -> Snapshot {
        let history = self.history.through(point.sequence);
        Snapshot { point, stream: node.stream(), entries: self.table.copy_entries(), history }
    }

    /// Steady state, once per batch (see [`Downlink::streaming_step`]):
    /// one step of the node for the successor check, the trim and the
    /// hand-over.
    pub fn link_streaming_step(&self, link: &mut Downlink) -> Result<Extras, LinkFault> {
        self.step(AckWriter::Wake, |node, _, carry| link.streaming_step(node, carry))
    }

    /// The successor reports its commit point (cumulative). An error means
    /// the successor acknowledged writes never applied here: the link is
    /// dropped.
    pub fn on_successor_progress(&self, successor: &str, committed: u64) -> Result<(), Refusal> {
        let now_ms = self.now_ms();
        self.step(AckWriter::Wake, |node, _, carry| node.successor_ack(successor, committed, now_ms, carry))
    }

    /// A neighbour could not be reached: ask for its removal if the
    /// evidence proves it dead (see [`ChainNode::peer_unreachable`]).
    pub fn peer_unreachable(&self, peer: &str, evidence: Evidence) -> Result<(), Hold> {
        let now_ms = self.now_ms();
        self.step(AckWriter::Wake, |node, _, carry| node.peer_unreachable(peer, evidence, now_ms, carry))
    }

    /// Our predecessor in the current view, if it is `name`.
    pub fn predecessor_named(&self, name: &str) -> Option<Member> {
        let node = self.node.lock();
        node.position()?.predecessor.clone().filter(|member| member.name == name)
    }

    pub fn set_sent_list_len(&self, length: usize) {
        self.sent_list_len.store(length as u64, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn sent_list_len(&self) -> u64 {
        self.sent_list_len.load(std::sync::atomic::Ordering::Relaxed)
    }

    // ---- the successor's end ----

    /// Answers a predecessor's hello (see [`Uplink::accept`]).
    pub fn accept_link(&self, hello: &ReplicaHello) -> Result<(Uplink, Welcome), Refusal> {
        Uplink::accept(&mut self.node.lock(), hello)
    }

    /// One frame from the predecessor (see [`Uplink::receive`]), after
    /// waiting for room in our own replication queue for its writes. A
    /// commit point this moves is not announced to the ack writer: the
    /// caller acknowledges it itself right away (at the tail every applied
    /// batch commits, and waking another thread for each ack cost a
    /// context switch per batch).
    ///
    /// A snapshot chunk's part of the predecessor's watch history is the
    /// host's, not the node's (which, durable, logs it with the chunk, so a
    /// restart replays it: see [`History::replaying`](super::history::History::replaying)): it is added to our
    /// history in the same step, after the chunk (whose first one cleared
    /// the history) and before the step's own writes and commit point are
    /// recorded.
    pub fn receive_frame(&self, uplink: &mut Uplink, frame: Downstream) -> Result<(), Refusal> {
        self.wait_for_queue_room(frame.writes.len())?;
        let carried = frame.snapshot.as_ref().map(|chunk| {
            let writes: Vec<Recorded> = chunk.history.iter().map(Recorded::of_write).collect();
            (writes, chunk.last.then_some(chunk.sequence))
        });
        let now_ms = self.now_ms();
        self.step(AckWriter::CallerAcks, |node, store: &mut TableStore<'_>, carry| {
            uplink.receive(node, frame, now_ms, store, carry)?;
            if let Some((writes, through)) = carried {
                self.history.extend(writes, through);
            }
            Ok(())
        })
    }

    /// Whether (and what) to acknowledge on `uplink` now.
    pub fn ack_due(&self, uplink: &mut Uplink) -> Ack {
        let now_ms = self.now_ms();
        uplink.ack_due(&self.node.lock(), now_ms)
    }

    /// Waits up to `timeout` for a commit point other than `seen`, and
    /// returns the progress then.
    pub fn wait_commit_change(&self, seen: u64, timeout: Duration) -> Progress {
        let mut progress = self.progress.lock();
        if progress.committed == seen {
            self.commit_changed.wait_for(&mut progress, timeout);
        }
        *progress
    }
}

/// Neighbours this server removed from the chain, by kind (see
/// `chain::eviction`), for `stats`.
#[derive(Default)]
pub struct Removals {
    by_proof: AtomicU64,
    by_lease: AtomicU64,
}

impl Removals {
    /// One removal on `evidence` went through.
    pub fn count(&self, evidence: Evidence) {
        let count = if evidence.is_proof() { &self.by_proof } else { &self.by_lease };
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// (by proof of death, by lease expiry).
    pub fn counts(&self) -> (u64, u64) {
        (self.by_proof.load(Ordering::Relaxed), self.by_lease.load(Ordering::Relaxed))
    }
}
