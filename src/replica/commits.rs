//! The commit point and the client writes waiting for it.
//!
//! At the head, every client write is answered only once the tail has
//! applied it. A writer does not wait for that with its own thread: it
//! leaves a callback here (in the server, one that sends the reply on the
//! client's socket) and its connection thread goes back to reading. Whoever
//! advances the commit point takes the callbacks it reaches and runs them
//! after releasing every lock. A connection thread parked until its commit
//! cost the head a second sleep and wake-up per write, on top of the one
//! waiting for the next request; on two cores that scheduling work was most
//! of the head's time.
//!
//! The callbacks of one commit (one ack from the successor can settle
//! dozens of writes) are not all run by the thread that settled them:
//! they go into a queue that it drains, and connection threads on their
//! way back to reading take a few each ([`Commits::run_settled`]). On a
//! chain's head the ack reader that ran them all was always runnable and
//! kept being preempted by the clients its replies woke, so replies waited
//! for it; sharing the work raised a chain of 3's puts by 7-9 % (16 and 50
//! clients on 2 cores).
//!
//! A write also ends without a commit: when this server is fenced or reset
//! (the write's fate is unknown here), when its deadline passes, or when the
//! lease runs out. The last two are found by [`Commits::expire`], which the
//! server calls periodically.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::chain::Refusal;
use crate::proto::ErrorCode;

/// How a write's wait for its commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// Fenced or reset while waiting: the write's fate is unknown here.
    Abandoned,
    /// The lease ran out before the commit: we may no longer be in the chain.
    LeaseLost,
    /// Not committed by its deadline.
    TimedOut,
}

/// What runs when a write's wait ends; called once, holding no lock.
pub type OnSettled = Box<dyn FnOnce(CommitOutcome) + Send>;

/// A write waiting for its commit. Ordered by sequence number only (the
/// heap needs an order; callbacks have none).
struct Waiting {
    sequence: u64,
    deadline: Instant,
    on_settled: OnSettled,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Waiting) -> bool {
        self.sequence == other.sequence
    }
}

impl Eq for Waiting {}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Waiting) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiting {
    fn cmp(&self, other: &Waiting) -> std::cmp::Ordering {
        self.sequence.cmp(&other.sequence)
    }
}

/// A settled wait whose callback has not run yet.
type Settled = (OnSettled, CommitOutcome);

/// The commit point plus the writes waiting for it to reach them.
pub struct Commits {
    /// Last committed sequence number, readable without the lock. Raised
    /// under `waiting`'s lock, so a write registering under that lock either
    /// sees itself committed or is settled when it is.
    committed: AtomicU64,
    /// Bumped when every wait must end (fencing, reset), so a write never
    /// mistakes a commit in a later history for its own.
    generation: AtomicU64,
    /// Waiting writes, lowest sequence number first.
    waiting: Mutex<BinaryHeap<Reverse<Waiting>>>,
    /// Settled waits whose callbacks no thread has taken yet, in the order
    /// they were settled.
    settled_sender: Sender<Settled>,
    settled: Receiver<Settled>,
}

/// Waits that have ended, with how; their callbacks run from
/// [`Settlements::deliver`], once the caller holds no lock.
#[must_use = "the settled writes must be told"]
pub struct Settlements<'a> {
    commits: &'a Commits,
    settled: Vec<Settled>,
}

impl Settlements<'_> {
    /// Queues the callbacks and runs every queued one that no other thread
    /// takes first: when this returns, each has run or is running.
    pub fn deliver(self) {
        if self.settled.is_empty() {
            return;
        }
        for settled in self.settled {
            // A full queue (every connection thread busy) makes this thread
            // run the callback itself: nothing waits and nothing is lost.
            if let Err(error) = self.commits.settled_sender.try_send(settled) {
                let (on_settled, outcome) = error.into_inner();
                on_settled(outcome);
            }
        }
        self.commits.run_settled(usize::MAX);
    }
}

impl Commits {
    /// Commit waits whose settled callbacks queue for at most `queued_max`
    /// at a time (more run on the settling thread at once).
    pub fn new(queued_max: usize) -> Commits {
        let (settled_sender, settled) = crossbeam_channel::bounded(queued_max.max(1));
        Commits {
            committed: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            waiting: Mutex::new(BinaryHeap::new()),
            settled_sender,
            settled,
        }
    }

    fn settlements(
        &self,
        waiting: impl IntoIterator<Item = Waiting>,
        outcome: CommitOutcome,
    ) -> Settlements<'_> {
        Settlements {
            commits: self,
            settled: waiting.into_iter().map(|waiting| (waiting.on_settled, outcome)).collect(),
        }
    }

    /// Runs up to `limit` callbacks of settled waits that no thread has
    /// taken yet; returns how many it ran. The caller must hold no lock a
    /// callback might take.
    pub fn run_settled(&self, limit: usize) -> usize {
        let mut ran = 0;
        while ran < limit {
            let Ok((on_settled, outcome)) = self.settled.try_recv() else { break };
            on_settled(outcome);
            ran += 1;
        }
        ran
    }

    /// Last committed sequence number.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// The generation a write must quote when it waits; taken under the
    /// same lock that assigned its sequence number.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether `sequence` (assigned in `generation`) is committed now.
    pub fn is_committed(&self, sequence: u64, generation: u64) -> bool {
        self.settled(sequence, generation) == Some(CommitOutcome::Committed)
    }

    /// Raises the commit point to `committed` and takes off the writes it
    /// reaches. Lower values are ignored (the commit point never moves back
    /// except by [`Commits::reset`]).
    pub fn advance(&self, committed: u64) -> Settlements<'_> {
        if committed <= self.committed() {
            return self.settlements([], CommitOutcome::Committed);
        }
        let mut waiting = self.waiting.lock();
        self.committed.fetch_max(committed, Ordering::SeqCst);
        let mut reached = Vec::new();
        while waiting.peek().is_some_and(|Reverse(write)| write.sequence <= committed) {
            if let Some(Reverse(write)) = waiting.pop() {
                reached.push(write);
            }
        }
        self.settlements(reached, CommitOutcome::Committed)
    }

    /// Every wait ends unresolved (we were fenced); the commit point stays.
    pub fn abandon_all(&self) -> Settlements<'_> {
        let mut waiting = self.waiting.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.settlements(waiting.drain().map(|Reverse(write)| write), CommitOutcome::Abandoned)
    }

    /// Back to an empty history: waits end unresolved, the commit point is 0.
    pub fn reset(&self) -> Settlements<'_> {
        let settlements = self.abandon_all();
        self.committed.store(0, Ordering::SeqCst);
        settlements
    }

    /// Ends the waits whose deadline is past `now` and, when the lease has
    /// run out (`lease_valid` false), every wait.
    pub fn expire(&self, now: Instant, lease_valid: bool) -> Settlements<'_> {
        let mut waiting = self.waiting.lock();
        if !lease_valid {
            return self.settlements(waiting.drain().map(|Reverse(write)| write), CommitOutcome::LeaseLost);
        }
        if waiting.iter().all(|Reverse(write)| write.deadline > now) {
            return self.settlements([], CommitOutcome::TimedOut);
        }
        let (overdue, still): (Vec<_>, Vec<_>) =
            std::mem::take(&mut *waiting).into_iter().partition(|Reverse(write)| write.deadline <= now);
        *waiting = still.into_iter().collect();
        self.settlements(overdue.into_iter().map(|Reverse(write)| write), CommitOutcome::TimedOut)
    }

    /// Calls `on_settled` once `sequence` (assigned in `generation`) is
    /// committed or its wait ends otherwise (at the latest at `deadline`,
    /// give or take the period of [`Commits::expire`]'s caller). If that is
    /// already so, it runs at once, on the calling thread.
    pub fn await_commit(&self, sequence: u64, generation: u64, deadline: Instant, on_settled: OnSettled) {
        let outcome = {
            let mut waiting = self.waiting.lock();
            match self.settled(sequence, generation) {
                Some(outcome) => outcome,
                None => {
                    waiting.push(Reverse(Waiting { sequence, deadline, on_settled }));
                    return;
                }
            }
        };
        on_settled(outcome);
    }

    /// The outcome if the wait is over. The commit point is read before
    /// the generation: if the generation is still ours, the commit point we
    /// read belongs to our history.
    fn settled(&self, sequence: u64, generation: u64) -> Option<CommitOutcome> {
        let committed = self.committed();
        if self.generation() != generation {
            Some(CommitOutcome::Abandoned)
        } else if committed >= sequence {
            Some(CommitOutcome::Committed)
        } else {
            None
        }
    }

    #[cfg(test)]
    pub fn waiting_count(&self) -> usize {
        self.waiting.lock().len()
    }
}

/// What a write's client is told when the wait for its commit ends.
pub fn commit_result(sequence: u64, outcome: CommitOutcome) -> Result<(), Refusal> {
    let message = match outcome {
        CommitOutcome::Committed => return Ok(()),
        CommitOutcome::Abandoned | CommitOutcome::LeaseLost => {
            format!("lost the ZooKeeper session before write {sequence} was confirmed; retry")
        }
        CommitOutcome::TimedOut => format!("write {sequence} not confirmed by the tail in time; retry"),
    };
    Err(Refusal::new(ErrorCode::ERR_UNAVAILABLE, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    /// Registers a wait for `sequence` that records its outcome in the
    /// returned list, tagged with the sequence number.
    fn waiting(commits: &Commits, sequence: u64, deadline: Instant) -> Arc<Mutex<Vec<(u64, CommitOutcome)>>> {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&outcomes);
        commits.await_commit(
            sequence,
            commits.generation(),
            deadline,
            Box::new(move |outcome| record.lock().push((sequence, outcome))),
        );
        outcomes
    }

    #[test]
    fn a_commit_settles_exactly_the_writes_it_reaches() {
        let commits = Commits::new(64);
        let writes: Vec<_> = (1..=4).map(|sequence| waiting(&commits, sequence, far())).collect();
        assert_eq!(commits.waiting_count(), 4);
        commits.advance(2).deliver();
        assert_eq!(*writes[0].lock(), [(1, CommitOutcome::Committed)]);
        assert_eq!(*writes[1].lock(), [(2, CommitOutcome::Committed)]);
        assert!(writes[2].lock().is_empty() && writes[3].lock().is_empty(), "3 and 4 still wait");
        commits.advance(1).deliver(); // old news changes nothing
        commits.advance(4).deliver();
        assert_eq!(*writes[3].lock(), [(4, CommitOutcome::Committed)]);
        assert_eq!(commits.waiting_count(), 0);
        assert!(writes.iter().all(|write| write.lock().len() == 1), "each told exactly once");
    }

    #[test]
    fn another_thread_runs_callbacks_the_settling_thread_has_not_reached() {
        let commits = Arc::new(Commits::new(64));
        let (release, held) = crossbeam_channel::bounded::<()>(0);
        let (ran_first, first_running) = crossbeam_channel::bounded::<()>(1);
        commits.await_commit(
            1,
            commits.generation(),
            far(),
            Box::new(move |_| {
                ran_first.send(()).unwrap();
                held.recv().unwrap(); // the settling thread is stuck here
            }),
        );
        let others: Vec<_> = (2..=3).map(|sequence| waiting(&commits, sequence, far())).collect();
        let settling = {
            let commits = Arc::clone(&commits);
            std::thread::spawn(move || commits.advance(3).deliver())
        };
        first_running
            .recv_timeout(Duration::from_secs(10))
            .expect("the settling thread runs the first callback");
        let mut ran = 0;
        let started = Instant::now();
        while ran < 2 && started.elapsed() < Duration::from_secs(10) {
            ran += commits.run_settled(8);
        }
        assert_eq!(ran, 2, "this thread ran the two callbacks the settling thread had not reached");
        assert_eq!(*others[0].lock(), [(2, CommitOutcome::Committed)]);
        assert_eq!(*others[1].lock(), [(3, CommitOutcome::Committed)]);
        release.send(()).unwrap();
        settling.join().unwrap();
        assert_eq!(commits.run_settled(8), 0, "every callback ran once");
    }

    #[test]
    fn an_already_committed_write_is_told_at_once() {
        let commits = Commits::new(64);
        commits.advance(5).deliver();
        assert!(commits.is_committed(3, commits.generation()));
        let write = waiting(&commits, 3, far());
        assert_eq!(*write.lock(), [(3, CommitOutcome::Committed)]);
        assert_eq!(commits.waiting_count(), 0);
    }

    #[test]
    fn fencing_and_reset_abandon_waits() {
        let commits = Commits::new(64);
        let write = waiting(&commits, 1, far());
        commits.abandon_all().deliver();
        assert_eq!(*write.lock(), [(1, CommitOutcome::Abandoned)]);

        commits.advance(10).deliver();
        let generation = commits.generation();
        commits.reset().deliver();
        assert_eq!(commits.committed(), 0);
        commits.advance(10).deliver();
        assert!(!commits.is_committed(10, generation), "a commit in the new history is not the old write's");
        let outcome = Arc::new(Mutex::new(None));
        let record = Arc::clone(&outcome);
        commits.await_commit(10, generation, far(), Box::new(move |settled| *record.lock() = Some(settled)));
        assert_eq!(*outcome.lock(), Some(CommitOutcome::Abandoned));
    }

    #[test]
    fn deadlines_and_the_lease_end_waits() {
        let commits = Commits::new(64);
        let now = Instant::now();
        let soon = waiting(&commits, 1, now + Duration::from_millis(10));
        let later = waiting(&commits, 2, far());
        commits.expire(now, true).deliver();
        assert!(soon.lock().is_empty(), "not overdue yet");
        commits.expire(now + Duration::from_millis(10), true).deliver();
        assert_eq!(*soon.lock(), [(1, CommitOutcome::TimedOut)]);
        assert!(later.lock().is_empty());
        assert_eq!(commits.waiting_count(), 1);
        commits.expire(now, false).deliver();
        assert_eq!(*later.lock(), [(2, CommitOutcome::LeaseLost)]);
        assert_eq!(commits.waiting_count(), 0);
        commits.advance(2).deliver();
        assert_eq!(soon.lock().len() + later.lock().len(), 2, "a commit after the end tells nobody twice");
    }
}
