//! The two ends of a replication link, as pure state machines: what a
//! predecessor sends its successor and when ([`Downlink`]), and what a
//! successor does with each frame and when it acknowledges ([`Uplink`]).
//!
//! These were decisions of the server's link threads and, a second time,
//! of the simulator's model of them; now both run this code and carry out
//! what it decides. The threads (`replication::sender`, `receiver`) and the
//! simulator (`check::sim::links`) only move bytes: frame in → event here,
//! decision here → frame out.
//!
//! A link goes: aimed at the node's successor ([`Downlink::aim`]) → opened
//! with a hello → welcomed (resume from the Sent list, or a snapshot first:
//! [`Downlink::welcomed`]) → streaming (trim on acks, hand over the tail
//! role, batch queued writes, heartbeat when idle:
//! [`Downlink::streaming_step`], [`Downlink::frame_due`]).

use super::durable::SyncedReport;
use super::effects::Effects;
use super::injected::Check;
use super::liveness::{Liveness, heartbeat_due};
use super::node::{ChainNode, Progress, Refusal, SnapshotPoint, Welcome};
use super::sent::SentList;
use crate::proto::{Downstream, ErrorCode, ReplicaHello, Write};
use crate::view::Member;

/// Where the predecessor's link should be, from the node's view.
#[derive(Debug, PartialEq)]
pub enum Aim {
    /// No successor we may replicate to: the queued writes will never be
    /// sent (drop them), and no link is held.
    Idle,
    /// Open a link to this successor with this hello (any other link is
    /// closed first).
    Open { successor: Box<Member>, hello: Box<ReplicaHello> },
    /// The link held goes to the right successor.
    Keep,
}

/// How a welcomed link starts.
#[derive(Debug, PartialEq)]
pub enum Start {
    /// The successor holds our history up to `after`: resend the Sent
    /// list's writes after it ([`Downlink::resume_frames`]), then stream.
    /// `rejoin`: the successor asked for a snapshot but offered its own
    /// table, which we resume (see `rejoin`): the first frame says so.
    Resume { after: u64, rejoin: bool },
    /// Send the table as of this point first (copied before the node's next
    /// event), then stream.
    Snapshot(SnapshotPoint),
    /// Our own table is not the chain's state: we cannot serve the link.
    NotReady,
}

/// Why a streaming link must be dropped.
#[derive(Debug, PartialEq)]
pub enum LinkFault {
    /// The node's successor is another server now.
    Retarget,
    /// The successor acknowledged writes we never sent it.
    AckBeyondSent { acked: u64, last_sent: u64 },
    /// A new stream of writes began (our history started over): the
    /// successor needs a snapshot.
    StreamRestarted,
}

/// What a streaming round adds to the next frame besides writes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Extras {
    /// The hand-over mark to send, if any.
    pub promote_at: Option<u64>,
    /// What the disks up to ours hold (see [`SyncedReport`]).
    pub synced: SyncedReport,
    /// A durable sender sends a new report at once (a durable tail's
    /// commit waits for it); others send theirs with their next frame.
    pub report_at_once: bool,
}

/// The predecessor's end: the Sent list and the state of the link to the
/// successor. Owned by whoever moves the link's bytes.
#[derive(Default)]
pub struct Downlink {
    sent: SentList,
    /// The successor the held link goes to (or is being opened to).
    successor: Option<String>,
    /// The successor's latest cumulative ack on this link.
    acked: Progress,
    /// When the last frame went out (for heartbeats).
    last_frame_ms: u64,
    /// The synced report the last frame carried (a new one is sent at
    /// once: the tail's commit waits for it).
    last_synced: SyncedReport,
    /// What we heard of the successor on the held link (acks are its
    /// heartbeats).
    heard: Liveness,
    /// The newest stamp of the successor's acks: echoed in every frame, it
    /// renews the successor's read lease (see `lease`).
    echo_ms: Option<u64>,
}

impl Downlink {
    /// A link end whose Sent list has `bug`'s check switched off, if any
    /// (testing the checkers only).
    pub fn with_bug(bug: Option<Check>) -> Downlink {
        Downlink { sent: SentList::with_bug(bug), ..Downlink::default() }
    }

    /// Decides where the link should go now. A changed successor drops the
    /// held link; no successor (or a table that is not the chain's state)
    /// drops the Sent list too: continuity is lost, and only a snapshot can
    /// bring a successor up to date later.
    pub fn aim(&mut self, node: &ChainNode) -> Aim {
        let target = node.successor().filter(|_| node.may_replicate());
        let Some(successor) = target else {
            self.successor = None;
            self.sent.forget();
            return Aim::Idle;
        };
        if self.successor.as_deref() == Some(successor.name.as_str()) {
            return Aim::Keep;
        }
        self.successor = Some(successor.name.clone());
        self.acked = Progress::default();
        self.last_synced = SyncedReport::default();
        self.echo_ms = None;
        let mut hello = ReplicaHello::new();
        hello.sender = node.name().unwrap_or_default().to_owned();
        hello.receiver = successor.name.clone();
        hello.epoch = node.view_epoch();
        Aim::Open { successor: Box::new(successor.clone()), hello: Box::new(hello) }
    }

    /// The held link broke or was refused: the next [`Downlink::aim`] opens
    /// a new one. The Sent list stays: a new link resumes from it.
    pub fn closed(&mut self) {
        self.successor = None;
    }

    /// Takes queued writes into the Sent list; false when a new stream of
    /// writes began (see [`SentList::push`]).
    pub fn take_queued(&mut self, writes: impl IntoIterator<Item = (u64, Write)>) -> bool {
        let mut continuous = true;
        for (stream, write) in writes {
            continuous &= self.sent.push(stream, write);
        }
        continuous
    }

    /// The successor answered our hello: resume from the Sent list if it
    /// holds everything the successor lacks (and no new stream began since,
    /// `continuous`); or resume a rejoining successor's own table from the
    /// writes we kept, if it is a prefix of ours ([`ChainNode::rejoin_writes`]);
    /// else a snapshot. Never resumes past what the successor applied.
    pub fn welcomed(&mut self, welcome: &Welcome, continuous: bool, node: &ChainNode, now_ms: u64) -> Start {
        self.last_frame_ms = now_ms;
        self.heard.heard(now_ms);
        let resumable =
            continuous && !welcome.wants_snapshot && self.sent.can_resume_after(welcome.last_applied);
        if resumable && !node.enforces(Check::ResumePoint) {
            return Start::Resume { after: self.sent.last_sent(), rejoin: false };
        }
        if resumable {
            return Start::Resume { after: welcome.last_applied, rejoin: false };
        }
        let after = welcome.last_applied;
        let rejoin = welcome.rejoin.filter(|_| welcome.wants_snapshot);
        if let Some(writes) = rejoin.and_then(|offer| node.rejoin_writes(after, &offer)) {
            self.sent.restart_with(node.stream(), after, writes);
            return Start::Resume { after, rejoin: true };
        }
        match node.snapshot_point() {
            Some(point) => {
                self.sent.restart_at(node.stream(), point.sequence);
                Start::Snapshot(point)
            }
            None => Start::NotReady,
        }
    }

    /// The frames that resume a link after `after` (see [`Start::Resume`]):
    /// the Sent list's writes after it, `batch_max` a frame; a rejoin's
    /// first frame (sent even without writes) says where it resumes.
    pub fn resume_frames(&self, after: u64, rejoin: bool, batch_max: usize) -> Vec<Downstream> {
        let writes: Vec<Write> = self.sent.after(after).cloned().collect();
        let mut frames: Vec<Downstream> = writes
            .chunks(batch_max.max(1))
            .map(|batch| Downstream { writes: batch.to_vec(), ..Downstream::new() })
            .collect();
        if rejoin {
            if frames.is_empty() {
                frames.push(Downstream::new());
            }
            frames[0].resumed_after = Some(after);
        }
        frames
    }

    /// The successor's cumulative ack arrived.
    pub fn acked(&mut self, progress: Progress) {
        self.acked.applied = self.acked.applied.max(progress.applied);
        self.acked.committed = self.acked.committed.max(progress.committed);
    }

    /// Steady state, before taking more queued writes: the link still goes
    /// to the node's successor, the Sent list is trimmed to the successor's
    /// commit point, and the tail role is handed over if the joining
    /// successor has caught up. Returns what the next frame carries besides
    /// writes: the hand-over mark, if any, and the synced report.
    pub fn streaming_step(
        &mut self,
        node: &mut ChainNode,
        effects: &mut impl Effects,
    ) -> Result<Extras, LinkFault> {
        let successor = self.successor.clone().ok_or(LinkFault::Retarget)?;
        if node.successor().is_none_or(|member| member.name != successor) {
            return Err(LinkFault::Retarget);
        }
        self.sent.trim(self.acked.committed).map_err(|beyond| LinkFault::AckBeyondSent {
            acked: beyond.acked,
            last_sent: beyond.last_sent,
        })?;
        let promote_at = node.try_hand_over(&successor, self.acked.applied, effects);
        Ok(Extras { promote_at, synced: node.synced_report(), report_at_once: node.is_durable() })
    }

    /// Room in the Sent list for more writes, at most `batch_max`.
    pub fn room(&self, sent_max: usize, batch_max: usize) -> usize {
        sent_max.saturating_sub(self.sent.len()).min(batch_max)
    }

    /// Whether a frame goes out now: new writes since the Sent list held
    /// `held_before`, a hand-over mark, a new synced report, or a heartbeat
    /// that is due.
    pub fn frame_due(&mut self, held_before: usize, extras: &Extras, now_ms: u64) -> bool {
        let idle = heartbeat_due(self.last_frame_ms, now_ms);
        let news =
            extras.promote_at.is_some() || (extras.report_at_once && extras.synced != self.last_synced);
        let due = self.sent.len() > held_before || news || idle;
        if due {
            self.last_frame_ms = now_ms;
            self.last_synced = extras.synced;
        }
        due
    }

    /// The frame of writes taken since the Sent list held `held_before`,
    /// lent out of the list without a copy; give it back with
    /// [`Downlink::give_back`], sent or not (a failed link resends it).
    pub fn lend_frame(&mut self, held_before: usize, extras: &Extras, frame: &mut Downstream) {
        frame.promote_at = extras.promote_at;
        (frame.synced, frame.synced_epoch) = (extras.synced.sequence, extras.synced.epoch);
        frame.lease_echo_ms = self.echo_ms;
        self.sent.lend(held_before, &mut frame.writes);
    }

    pub fn give_back(&mut self, frame: &mut Downstream) {
        self.sent.give_back(&mut frame.writes);
    }

    /// A frame (an ack or an ack heartbeat) arrived from the successor,
    /// the newest stamped `stamp_ms` (echoed from now on).
    pub fn heard(&mut self, now_ms: u64, stamp_ms: Option<u64>) {
        self.heard.heard(now_ms);
        self.echo_ms = self.echo_ms.max(stamp_ms);
    }

    /// Whether to probe the silent successor's listening port now (see
    /// [`Liveness::probe_due`]); a refused probe is proof it is gone.
    pub fn probe_due(&mut self, now_ms: u64) -> bool {
        self.heard.probe_due(now_ms)
    }

    /// Writes forwarded and not yet committed.
    pub fn sent_len(&self) -> usize {
        self.sent.len()
    }

    /// The successor of the held link.
    pub fn successor(&self) -> Option<&str> {
        self.successor.as_deref()
    }
}

/// What the successor's end should tell the predecessor.
#[derive(Debug, PartialEq)]
pub enum Ack {
    /// Nothing new since the last ack.
    Nothing,
    /// Send this cumulative progress, stamped with our clock (the stamp
    /// our predecessor echoes to renew our read lease, see `lease`).
    Send { progress: Progress, stamp_ms: u64 },
    /// The sender is not our predecessor (or this link was replaced): close
    /// the link. Our progress may now count writes it never sent us.
    Close,
}

/// The successor's end of one accepted link.
pub struct Uplink {
    /// The predecessor that opened it.
    sender: String,
    /// The link's number (see [`ChainNode::check_link`]).
    link: u64,
    /// No snapshot chunk arrived yet on this link.
    first_chunk: bool,
    /// The progress last acknowledged on it.
    reported: Progress,
    /// When the last ack went up (for heartbeats).
    last_ack_ms: u64,
}

impl Uplink {
    /// Answers a predecessor's hello; an accepted link gets its [`Uplink`].
    pub fn accept(node: &mut ChainNode, hello: &ReplicaHello) -> Result<(Uplink, Welcome), Refusal> {
        let welcome = node.link_hello(hello)?;
        let uplink = Uplink {
            sender: hello.sender.clone(),
            link: welcome.link,
            first_chunk: true,
            reported: Progress::default(),
            last_ack_ms: 0,
        };
        Ok((uplink, welcome))
    }

    /// One frame from the predecessor, arrived at `now_ms`, in the order
    /// its parts must be applied: resume of our own table, read lease,
    /// snapshot chunk, writes, hand-over mark. An empty frame (a heartbeat) is checked too, so a
    /// predecessor replaced in the view is cut off even when it has nothing
    /// to send.
    pub fn receive(
        &mut self,
        node: &mut ChainNode,
        frame: Downstream,
        now_ms: u64,
        store: &mut impl super::Store,
        effects: &mut impl Effects,
    ) -> Result<(), Refusal> {
        let (sender, link) = (self.sender.as_str(), self.link);
        node.check_link(sender, link)?;
        if let Some(after) = frame.resumed_after {
            node.rejoin_resumed(sender, link, after, effects)?;
        }
        if let Some(stamp_ms) = frame.lease_echo_ms {
            node.lease_echoed(stamp_ms, now_ms);
        }
        if let Some(chunk) = frame.snapshot.into_option() {
            let first = std::mem::replace(&mut self.first_chunk, false);
            node.snapshot_chunk(sender, link, chunk, first, store, effects)?;
        }
        if !frame.writes.is_empty() {
            node.replicated_batch(sender, link, frame.writes, store, effects)?;
        }
        if let Some(sequence) = frame.promote_at {
            node.hand_over_mark(sender, link, sequence, effects)?;
        }
        if frame.synced_epoch != 0 {
            node.upstream_synced(SyncedReport { epoch: frame.synced_epoch, sequence: frame.synced }, effects);
        }
        Ok(())
    }

    /// Whether (and what) to acknowledge now: new progress, or the same
    /// again as a heartbeat when nothing went up for an interval.
    pub fn ack_due(&mut self, node: &ChainNode, now_ms: u64) -> Ack {
        match node.progress_for(&self.sender, self.link) {
            None => Ack::Close,
            Some(progress) if progress == self.reported && !heartbeat_due(self.last_ack_ms, now_ms) => {
                Ack::Nothing
            }
            Some(progress) => {
                self.reported = progress;
                self.last_ack_ms = now_ms;
                Ack::Send { progress, stamp_ms: now_ms }
            }
        }
    }

    /// The predecessor at the other end.
    pub fn sender(&self) -> &str {
        &self.sender
    }

    /// The progress last acknowledged.
    pub fn reported(&self) -> Progress {
        self.reported
    }
}

/// A refusal for a link fault, for the link's log line.
impl LinkFault {
    pub fn describe(&self, successor: &str) -> Refusal {
        let message = match self {
            LinkFault::Retarget => format!("{successor} is no longer our successor"),
            LinkFault::AckBeyondSent { acked, last_sent } => {
                format!("{successor} acknowledged write {acked} but only {last_sent} were sent")
            }
            LinkFault::StreamRestarted => {
                "writes were not forwarded for a while; the successor needs a snapshot".to_owned()
            }
        };
        Refusal::new(ErrorCode::ERR_INTERNAL, message)
    }
}
