//! The commit point and the writers waiting for it.
//!
//! At the head, every client write waits until the tail has applied it. A
//! single condvar notified on every change of the commit point woke all
//! waiting writers for every acknowledgement, most of them only to sleep
//! again (with 50 writers on two cores the head spent most of its time
//! switching threads). Here each waiter registers its sequence number, and
//! whoever advances the commit point wakes exactly the waiters it
//! committed, after releasing every lock, so a woken writer never blocks on
//! the thread that woke it.
//!
//! Waiters use `std::thread::park`: an unpark that arrives before the park
//! is remembered, so no wake-up is lost, and a spurious or stale one only
//! makes a waiter look at the commit point once more.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, Thread};
use std::time::Instant;

use parking_lot::Mutex;

/// A waiting writer: its sequence number and its thread. Ordered by
/// sequence number only (the heap needs an order; threads have none).
struct Waiter {
    sequence: u64,
    thread: Thread,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Waiter) -> bool {
        self.sequence == other.sequence
    }
}

impl Eq for Waiter {}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Waiter) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiter {
    fn cmp(&self, other: &Waiter) -> std::cmp::Ordering {
        self.sequence.cmp(&other.sequence)
    }
}

/// The commit point plus the writers waiting for it to reach their write.
#[derive(Default)]
pub struct Commits {
    /// Last committed sequence number, readable without the lock. Raised
    /// under `waiters`' lock, so a writer registering under that lock either
    /// sees its write committed or is woken when it is.
    committed: AtomicU64,
    /// Bumped when waiters must give up (fencing, reset), so a writer never
    /// mistakes a commit in a later history for its own.
    generation: AtomicU64,
    /// Waiting writers, lowest sequence number first.
    waiters: Mutex<BinaryHeap<Reverse<Waiter>>>,
}

/// Waiters taken off the list by a commit, to wake once the caller holds no
/// lock.
#[must_use = "the committed writers must be woken"]
#[derive(Default)]
pub struct Wakeups(Vec<Thread>);

impl Wakeups {
    pub fn wake(self) {
        for thread in self.0 {
            thread.unpark();
        }
    }
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    Committed,
    /// Fenced or reset while waiting: the write's fate is unknown here.
    Abandoned,
    /// `deadline` passed, or `keep_waiting` said no.
    GaveUp,
}

impl Commits {
    /// Last committed sequence number.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// The generation a writer must quote when it waits; taken under the
    /// same lock that assigned its sequence number.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Raises the commit point to `committed` and takes off the waiters it
    /// reaches. Lower values are ignored (the commit point never moves back
    /// except by [`Commits::reset`]).
    pub fn advance(&self, committed: u64) -> Wakeups {
        if committed <= self.committed() {
            return Wakeups::default();
        }
        let mut waiters = self.waiters.lock();
        self.committed.fetch_max(committed, Ordering::SeqCst);
        let mut woken = Vec::new();
        while waiters.peek().is_some_and(|Reverse(waiter)| waiter.sequence <= committed) {
            if let Some(Reverse(waiter)) = waiters.pop() {
                woken.push(waiter.thread);
            }
        }
        Wakeups(woken)
    }

    /// Every waiter gives up (we were fenced); the commit point stays.
    pub fn abandon_all(&self) -> Wakeups {
        let mut waiters = self.waiters.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        Wakeups(waiters.drain().map(|Reverse(waiter)| waiter.thread).collect())
    }

    /// Back to an empty history: waiters give up, the commit point is 0.
    pub fn reset(&self) -> Wakeups {
        let wakeups = self.abandon_all();
        self.committed.store(0, Ordering::SeqCst);
        wakeups
    }

    /// Blocks until `sequence` (assigned in `generation`) is committed, the
    /// waiters are abandoned, `deadline` passes, or `keep_waiting` (asked on
    /// every wake-up and at least at each instant it returns) says to stop.
    /// `keep_waiting` returns `None` to give up, or the latest instant at
    /// which it wants to be asked again.
    pub fn wait(
        &self,
        sequence: u64,
        generation: u64,
        deadline: Instant,
        mut keep_waiting: impl FnMut() -> Option<Instant>,
    ) -> WaitOutcome {
        if let Some(outcome) = self.settled(sequence, generation) {
            return outcome;
        }
        {
            let mut waiters = self.waiters.lock();
            if let Some(outcome) = self.settled(sequence, generation) {
                return outcome;
            }
            waiters.push(Reverse(Waiter { sequence, thread: thread::current() }));
        }
        loop {
            if let Some(outcome) = self.settled(sequence, generation) {
                return outcome;
            }
            let now = Instant::now();
            let recheck = match keep_waiting() {
                Some(recheck) if now < deadline => recheck,
                _ => {
                    self.forget(sequence);
                    return WaitOutcome::GaveUp;
                }
            };
            thread::park_timeout(recheck.min(deadline).saturating_duration_since(now));
        }
    }

    /// Takes the calling thread's entry for `sequence` off the list, so
    /// writers that give up on a stuck chain do not pile up.
    fn forget(&self, sequence: u64) {
        let me = thread::current().id();
        self.waiters.lock().retain(|Reverse(waiter)| waiter.sequence != sequence || waiter.thread.id() != me);
    }

    /// The outcome if the wait is over. The commit point is read before
    /// the generation: if the generation is still ours, the commit point we
    /// read belongs to our history.
    fn settled(&self, sequence: u64, generation: u64) -> Option<WaitOutcome> {
        let committed = self.committed();
        if self.generation() != generation {
            Some(WaitOutcome::Abandoned)
        } else if committed >= sequence {
            Some(WaitOutcome::Committed)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    fn waiting(commits: &Arc<Commits>, sequence: u64) -> thread::JoinHandle<WaitOutcome> {
        let commits = Arc::clone(commits);
        let generation = commits.generation();
        thread::spawn(move || commits.wait(sequence, generation, far(), || Some(far())))
    }

    fn wait_until_registered(commits: &Commits, count: usize) {
        while commits.waiters.lock().len() < count {
            thread::yield_now();
        }
    }

    #[test]
    fn a_commit_wakes_exactly_the_writers_it_reaches() {
        let commits = Arc::new(Commits::default());
        let writers: Vec<_> = (1..=4).map(|sequence| waiting(&commits, sequence)).collect();
        wait_until_registered(&commits, 4);
        commits.advance(2).wake();
        let mut writers = writers.into_iter();
        assert_eq!(writers.next().unwrap().join().unwrap(), WaitOutcome::Committed);
        assert_eq!(writers.next().unwrap().join().unwrap(), WaitOutcome::Committed);
        assert_eq!(commits.waiters.lock().len(), 2, "writes 3 and 4 still wait");
        commits.advance(1).wake(); // old news changes nothing
        commits.advance(4).wake();
        for writer in writers {
            assert_eq!(writer.join().unwrap(), WaitOutcome::Committed);
        }
        assert!(commits.waiters.lock().is_empty());
    }

    #[test]
    fn an_already_committed_write_does_not_wait() {
        let commits = Commits::default();
        commits.advance(5).wake();
        assert_eq!(commits.wait(3, commits.generation(), far(), || None), WaitOutcome::Committed);
        assert!(commits.waiters.lock().is_empty());
    }

    #[test]
    fn fencing_and_reset_abandon_waiters() {
        let commits = Arc::new(Commits::default());
        let writer = waiting(&commits, 1);
        wait_until_registered(&commits, 1);
        commits.abandon_all().wake();
        assert_eq!(writer.join().unwrap(), WaitOutcome::Abandoned);

        commits.advance(10).wake();
        let generation = commits.generation();
        commits.reset().wake();
        assert_eq!(commits.committed(), 0);
        commits.advance(10).wake();
        assert_eq!(
            commits.wait(10, generation, far(), || None),
            WaitOutcome::Abandoned,
            "a commit in the new history is not the old write's"
        );
    }

    #[test]
    fn deadline_and_keep_waiting_end_a_wait() {
        let commits = Commits::default();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(commits.wait(1, 0, soon, || Some(far())), WaitOutcome::GaveUp);
        assert!(commits.waiters.lock().is_empty(), "a writer that gave up is forgotten");
        let mut asked = 0;
        let outcome = commits.wait(1, 0, far(), || {
            asked += 1;
            (asked < 3).then(|| Instant::now() + Duration::from_millis(1))
        });
        assert_eq!(outcome, WaitOutcome::GaveUp);
        assert_eq!(asked, 3, "asked again at the instant it named");
    }
}
