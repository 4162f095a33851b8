//! The replication queue between the threads that apply writes and the one
//! sender thread that forwards them to the successor.
//!
//! A crossbeam channel carries the writes. It is crossbeam's unbounded
//! (linked-list) flavour, which allocates blocks of 31 slots as writes
//! arrive and frees them as they leave, instead of the bounded flavour that
//! allocates every slot at start (65,536 slots of a `Write`: 8 MB on every
//! server, standalone ones included). The bound is ours: writers wait for
//! room before they apply (`Replica::wait_for_queue_room`), and [`Outbox::push`]
//! asserts the capacity the queue was sized for. Pushing stays one lock-free
//! enqueue.
//!
//! What this adds beyond the channel is how the sender waits when the queue
//! is empty. crossbeam's blocking receive first spins
//! (~130 `pause` loops), then yields, then parks: on a machine with more
//! busy threads than cores the spin only burns CPU (2 % of the machine in a
//! chain of 3 on 2 cores, perf). Parking at once instead cost 15 % of
//! throughput: every push then woke the sender, which sent one or two writes
//! per frame. So the sender yields a few times (letting the connection
//! threads that are about to queue writes run, which makes batches), and
//! then parks; every push unparks it, an atomic swap while it is awake and a
//! futex wake only while it sleeps. The park token makes a push between the
//! sender's last look and its park wake it at once: no write waits for the
//! poll timeout.

use std::thread::{self, Thread};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryIter};
use parking_lot::Mutex;

use crate::proto::Write;

/// How often an idle sender yields before it parks: 2 and 4 measured the
/// same (chain of 3, 50 clients, 100 % put), 8 no better.
const YIELDS_BEFORE_PARK: usize = 2;

/// A write applied here, with the run of forwarded writes it belongs to
/// (see `ChainNode::stream`).
pub type Queued = (u64, Write);

pub struct Outbox {
    /// Most writes ever queued at once (see [`Outbox::new`]).
    capacity: usize,
    sender: Sender<Queued>,
    receiver: Receiver<Queued>,
    /// The thread that waits in [`Outbox::wait_for_writes`], if any has yet.
    consumer: Mutex<Option<Thread>>,
}

impl Outbox {
    /// A queue of at most `capacity` writes; its memory grows with what it
    /// holds, not with `capacity`.
    pub fn new(capacity: usize) -> Outbox {
        let (sender, receiver) = crossbeam_channel::unbounded();
        Outbox { capacity, sender, receiver, consumer: Mutex::new(None) }
    }

    /// Queues `write` of `stream` and wakes the consumer. The caller
    /// reserved room (see `Replica::new`), so this never blocks.
    pub fn push(&self, stream: u64, write: Write) {
        assert!(self.receiver.len() < self.capacity, "the replication queue has room reserved");
        self.sender.send((stream, write)).expect("the receiver lives as long as the sender");
        self.wake();
    }

    /// Wakes the consumer from [`Outbox::wait_for_writes`] without a write:
    /// it has something else to send (a durable node's synced report).
    pub fn wake(&self) {
        if let Some(consumer) = self.consumer.lock().as_ref() {
            consumer.unpark();
        }
    }

    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }

    /// Takes the queued writes, in order, without waiting.
    pub fn try_iter(&self) -> TryIter<'_, Queued> {
        self.receiver.try_iter()
    }

    /// Drops every queued write.
    pub fn clear(&self) {
        while self.receiver.try_recv().is_ok() {}
    }

    /// Waits until a write is queued or `timeout` passes; returns whether
    /// the queue holds a write. One consumer thread at a time.
    pub fn wait_for_writes(&self, timeout: Duration) -> bool {
        for _ in 0..YIELDS_BEFORE_PARK {
            if !self.is_empty() {
                return true;
            }
            thread::yield_now();
        }
        if !self.is_empty() {
            return true;
        }
        {
            let mut consumer = self.consumer.lock();
            if consumer.as_ref().is_none_or(|thread| thread.id() != thread::current().id()) {
                *consumer = Some(thread::current());
            }
        }
        // A push after the registration above unparks us; if it came before
        // this check, we see the write here. Either way none is missed.
        if self.is_empty() {
            thread::park_timeout(timeout);
        }
        !self.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    #[test]
    fn an_empty_queue_waits_for_the_timeout() {
        let outbox = Outbox::new(4);
        let started = Instant::now();
        assert!(!outbox.wait_for_writes(Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_push_wakes_the_waiting_consumer_at_once() {
        let outbox = Arc::new(Outbox::new(1024));
        // Register the consumer first, so the pushes below have one to wake.
        assert!(!outbox.wait_for_writes(Duration::from_millis(1)));
        let consumer = {
            let outbox = Arc::clone(&outbox);
            thread::spawn(move || {
                let mut received = Vec::new();
                let started = Instant::now();
                while received.len() < 1000 && started.elapsed() < Duration::from_secs(20) {
                    // A timeout far above the test's whole run: a missed
                    // wake-up would show as a stall of 10 s per write.
                    if outbox.wait_for_writes(Duration::from_secs(10)) {
                        received.extend(outbox.try_iter().map(|(_, write)| write.sequence));
                    }
                }
                (received, started.elapsed())
            })
        };
        for sequence in 1..=1000 {
            outbox.push(0, Write::numbered(sequence));
            if sequence % 100 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        let (received, elapsed) = consumer.join().unwrap();
        assert_eq!(received, (1..=1000).collect::<Vec<_>>(), "every write, once, in order");
        assert!(elapsed < Duration::from_secs(10), "no push waited for the poll timeout: {elapsed:?}");
    }

    #[test]
    #[should_panic(expected = "room reserved")]
    fn pushing_past_the_capacity_is_a_bug() {
        let outbox = Outbox::new(2);
        for sequence in 1..=3 {
            outbox.push(0, Write::numbered(sequence));
        }
    }

    #[test]
    fn clear_drops_what_was_queued() {
        let outbox = Outbox::new(4);
        outbox.push(0, Write::numbered(1));
        outbox.push(0, Write::numbered(2));
        assert_eq!(outbox.len(), 2);
        outbox.clear();
        assert!(outbox.is_empty());
        assert!(!outbox.wait_for_writes(Duration::from_millis(1)));
    }
}
