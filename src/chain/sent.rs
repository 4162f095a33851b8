//! The Sent list (van Renesse & Schneider, section 3): the writes a server
//! forwarded to its successor that the tail has not yet acknowledged, kept
//! so that after a middle server fails they can be resent to the new
//! successor, before anything new.

use std::collections::VecDeque;

use super::injected::{self, Check};
use crate::proto::Write;

/// Writes forwarded and not yet committed, contiguous in sequence numbers,
/// plus the range of history they continue.
#[derive(Default)]
pub struct SentList {
    writes: VecDeque<Write>,
    /// Every write after `base` up to `last` is in `writes` or committed;
    /// `None` before the first write or snapshot of a link's history, which
    /// a successor can only catch up on by a snapshot.
    range: Option<(u64, u64)>,
    /// The run of forwarded writes these belong to (see `ChainNode::stream`).
    stream: Option<u64>,
    /// A safety check switched off (testing the checkers only; see [`Check`]).
    bug: Option<Check>,
}

/// An ack for writes that were never sent: the successor is not following
/// our history (or is not a well-behaved peer).
#[derive(Debug, PartialEq, Eq)]
pub struct AckBeyondSent {
    pub acked: u64,
    pub last_sent: u64,
}

impl SentList {
    /// A Sent list with `bug` injected (`None`: the one a server uses).
    pub fn with_bug(bug: Option<Check>) -> SentList {
        SentList { bug, ..SentList::default() }
    }

    /// Takes `write` of `stream` from the replication queue. A write that
    /// a snapshot already covered is dropped. Returns false when `stream`
    /// is a new one: the list starts over, and a successor can only be
    /// brought up to date by a snapshot. Within one stream, continuity is
    /// an invariant of ours: the node forwards every write it applies in
    /// sequence order, and whoever empties the queue calls
    /// [`SentList::forget`].
    pub fn push(&mut self, stream: u64, write: Write) -> bool {
        let continues = !injected::enforced(self.bug, Check::SentContinuity)
            || self.stream.is_none_or(|held| held == stream);
        if !continues {
            self.forget();
        }
        self.stream = Some(stream);
        match self.range {
            Some((_, last)) if write.sequence <= last => {} // covered by a snapshot
            Some((base, last)) => {
                assert_eq!(write.sequence, last + 1, "the replication queue skipped writes after {last}");
                self.range = Some((base, write.sequence));
                self.writes.push_back(write);
            }
            None => {
                assert!(write.sequence > 0, "sequence numbers start at 1");
                self.range = Some((write.sequence - 1, write.sequence));
                self.writes.push_back(write);
            }
        }
        continues
    }

    /// Drops the writes up to `committed`. An ack beyond the last write
    /// sent is refused (it comes from the network: the link is closed, the
    /// server goes on).
    pub fn trim(&mut self, committed: u64) -> Result<(), AckBeyondSent> {
        let last_sent = self.last_sent();
        if committed > last_sent {
            return Err(AckBeyondSent { acked: committed, last_sent });
        }
        while self.writes.front().is_some_and(|write| write.sequence <= committed) {
            self.writes.pop_front();
        }
        Ok(())
    }

    /// Can a successor that applied up to `applied` resume from here?
    pub fn can_resume_after(&self, applied: u64) -> bool {
        match self.range {
            Some((base, last)) => {
                let first_held = self.writes.front().map_or(last + 1, |write| write.sequence);
                let covered = base <= applied && applied <= last && first_held <= applied + 1;
                covered || !injected::enforced(self.bug, Check::SentContinuity)
            }
            None => false,
        }
    }

    /// The writes a successor that applied up to `applied` is missing, in
    /// order (call after [`SentList::can_resume_after`] said yes).
    pub fn after(&self, applied: u64) -> impl Iterator<Item = &Write> {
        self.writes.iter().filter(move |write| write.sequence > applied)
    }

    /// Continuity is lost (the queue was emptied): only a snapshot can
    /// bring a successor up to date.
    pub fn forget(&mut self) {
        self.writes.clear();
        self.range = None;
        self.stream = None;
    }

    /// A snapshot at `sequence`, taken in `stream`, was sent: the list
    /// restarts there.
    pub fn restart_at(&mut self, stream: u64, sequence: u64) {
        self.writes.clear();
        self.range = Some((sequence, sequence));
        self.stream = Some(stream);
    }

    /// A rejoining successor's own table, up to `after`, is resumed in
    /// `stream`: the list restarts there, holding `writes` (the ones after
    /// it, in order) to be resent.
    pub fn restart_with(&mut self, stream: u64, after: u64, writes: Vec<Write>) {
        self.restart_at(stream, after);
        for write in writes {
            assert!(self.push(stream, write), "one stream");
        }
    }

    /// The last write sent (or covered by the snapshot sent), 0 if none.
    pub fn last_sent(&self) -> u64 {
        self.range.map_or(0, |(_, last)| last)
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Moves the writes from index `from` on into `frame`, to be sent
    /// without a copy; [`SentList::give_back`] returns them.
    pub fn lend(&mut self, from: usize, frame: &mut Vec<Write>) {
        frame.extend(self.writes.drain(from..));
    }

    /// Takes back writes lent by [`SentList::lend`], sent or not (a link
    /// that failed resends them).
    pub fn give_back(&mut self, frame: &mut Vec<Write>) {
        if let (Some(first), Some(held)) = (frame.first(), self.writes.back()) {
            assert_eq!(first.sequence, held.sequence + 1, "lent writes come back in place");
        }
        self.writes.extend(frame.drain(..));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_list_tracks_continuity() {
        let mut sent = SentList::default();
        assert!(!sent.can_resume_after(0), "nothing known yet: snapshot");
        sent.restart_at(0, 10);
        assert!(sent.can_resume_after(10));
        assert!(sent.push(0, Write::numbered(11)));
        assert!(sent.push(0, Write::numbered(12)));
        assert!(sent.push(0, Write::numbered(12))); // covered already: ignored
        assert_eq!(sent.len(), 2);
        assert!(sent.can_resume_after(10));
        assert!(sent.can_resume_after(12));
        assert!(!sent.can_resume_after(9), "write 10 is not held");
        assert!(!sent.can_resume_after(13), "the successor cannot be ahead of us");
        assert_eq!(sent.trim(11), Ok(()));
        assert_eq!(sent.after(10).map(|write| write.sequence).collect::<Vec<_>>(), [12]);
        assert!(sent.can_resume_after(11));
        assert!(!sent.can_resume_after(10), "write 11 was trimmed");
        assert_eq!(sent.trim(13), Err(AckBeyondSent { acked: 13, last_sent: 12 }));
        sent.forget();
        assert!(!sent.can_resume_after(12));
        assert!(sent.push(0, Write::numbered(20)));
        assert!(sent.can_resume_after(19));
        assert!(!sent.push(1, Write::numbered(5)), "a new stream starts over");
        assert!(!sent.can_resume_after(19));
        assert!(sent.can_resume_after(4));
    }

    #[test]
    #[should_panic(expected = "skipped writes")]
    fn a_gap_is_a_bug_of_ours() {
        let mut sent = SentList::default();
        sent.push(0, Write::numbered(1));
        sent.push(0, Write::numbered(3));
    }

    #[test]
    fn lent_writes_come_back() {
        let mut sent = SentList::default();
        (1..=4).for_each(|sequence| assert!(sent.push(0, Write::numbered(sequence))));
        let mut frame = Vec::new();
        sent.lend(2, &mut frame);
        assert_eq!(frame.iter().map(|write| write.sequence).collect::<Vec<_>>(), [3, 4]);
        sent.give_back(&mut frame);
        assert_eq!(sent.len(), 4);
        assert!(frame.is_empty());
    }
}
