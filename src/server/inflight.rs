//! The in-flight budget (`--max-inflight`): one server-wide count of the
//! bytes held by partly received request frames and by replies being built.
//!
//! A connection reserves a frame's declared length after reading its 4-byte
//! header and before allocating its body; a reply reserves its size before
//! copying anything out of the table. When the budget is used up the
//! connection waits, and does not read its socket meanwhile, so a crowd of
//! clients announcing large frames costs at most the budget, not
//! `--max-clients` × `--max-frame`. Every wait is bounded by a deadline (the
//! frame's), so bytes held by a stalled client are released when its frame
//! times out. A reservation is released when it is dropped.
//!
//! Every request reserves and releases, so while there is room both are one
//! atomic operation on a shared counter, with no lock; only a connection
//! that has to wait takes the lock, and a release takes it only to wake
//! such a waiter.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Bytes in flight, shared by every connection thread.
pub struct InflightBudget {
    /// `--max-inflight`.
    capacity_bytes: u64,
    /// Bytes reserved now.
    reserved_bytes: AtomicU64,
    /// Threads waiting for room; a release wakes them only if there are any.
    waiters: AtomicUsize,
    /// Held by waiters between their last look and their sleep, so a
    /// release in between cannot be missed.
    waiting: Mutex<()>,
    released: Condvar,
}

/// Why a reservation was not granted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// More than the whole budget: no amount of waiting can make room.
    OverCapacity { bytes: u64, capacity_bytes: u64 },
    /// The deadline passed before others released enough.
    TimedOut { bytes: u64 },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::OverCapacity { bytes, capacity_bytes } => {
                write!(
                    f,
                    "{bytes} bytes are over the in-flight budget of {capacity_bytes} bytes (--max-inflight)"
                )
            }
            Refused::TimedOut { bytes } => {
                write!(f, "no room for {bytes} bytes in the in-flight budget in time (--max-inflight)")
            }
        }
    }
}

/// Bytes held from the budget until this is dropped.
#[must_use = "the bytes are released when the reservation is dropped"]
pub struct Reservation {
    budget: Arc<InflightBudget>,
    bytes: u64,
}

impl InflightBudget {
    pub fn new(capacity_bytes: u64) -> Arc<InflightBudget> {
        Arc::new(InflightBudget {
            capacity_bytes,
            reserved_bytes: AtomicU64::new(0),
            waiters: AtomicUsize::new(0),
            waiting: Mutex::new(()),
            released: Condvar::new(),
        })
    }

    /// Reserves `bytes`, waiting until others release enough or `deadline`
    /// passes. Zero bytes are granted at once.
    pub fn reserve(self: &Arc<Self>, bytes: u64, deadline: Instant) -> Result<Reservation, Refused> {
        if bytes > self.capacity_bytes {
            return Err(Refused::OverCapacity { bytes, capacity_bytes: self.capacity_bytes });
        }
        if !self.try_take(bytes) {
            self.wait_and_take(bytes, deadline)?;
        }
        Ok(Reservation { budget: Arc::clone(self), bytes })
    }

    /// Takes `bytes` if they fit now.
    fn try_take(&self, bytes: u64) -> bool {
        let mut reserved = self.reserved_bytes.load(Ordering::SeqCst);
        while reserved + bytes <= self.capacity_bytes {
            match self.reserved_bytes.compare_exchange_weak(
                reserved,
                reserved + bytes,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(current) => reserved = current,
            }
        }
        false
    }

    /// The slow path of [`InflightBudget::reserve`]. A waiter counts itself
    /// in `waiters` before it looks again, and a release subtracts before it
    /// looks at `waiters`: so either the waiter sees the room, or the
    /// release sees the waiter and wakes it (under the lock the waiter holds
    /// until it sleeps).
    fn wait_and_take(&self, bytes: u64, deadline: Instant) -> Result<(), Refused> {
        let mut waiting = self.waiting.lock();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let taken = loop {
            if self.try_take(bytes) {
                break true;
            }
            if self.released.wait_until(&mut waiting, deadline).timed_out() {
                break self.try_take(bytes);
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        if taken { Ok(()) } else { Err(Refused::TimedOut { bytes }) }
    }

    /// Bytes reserved now.
    pub fn reserved_bytes(&self) -> u64 {
        self.reserved_bytes.load(Ordering::SeqCst)
    }
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let before = self.budget.reserved_bytes.fetch_sub(self.bytes, Ordering::SeqCst);
        assert!(before >= self.bytes, "released more than was reserved");
        if self.budget.waiters.load(Ordering::SeqCst) > 0 {
            let _waiting = self.budget.waiting.lock();
            // Waiters want different amounts: wake them all, each checks its own.
            self.budget.released.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Duration;

    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[test]
    fn reservations_add_up_and_release_on_drop() {
        let budget = InflightBudget::new(100);
        let first = budget.reserve(60, soon()).unwrap();
        let second = budget.reserve(40, soon()).unwrap();
        assert_eq!(budget.reserved_bytes(), 100);
        assert_eq!(budget.reserve(1, soon()).err(), Some(Refused::TimedOut { bytes: 1 }));
        assert_eq!(budget.reserve(0, soon()).unwrap().bytes(), 0, "nothing is always granted");
        drop(first);
        assert_eq!(budget.reserved_bytes(), 40);
        let third = budget.reserve(60, soon()).unwrap();
        drop((second, third));
        assert_eq!(budget.reserved_bytes(), 0);
    }

    #[test]
    fn more_than_the_whole_budget_is_refused_at_once() {
        let budget = InflightBudget::new(100);
        let far = Instant::now() + Duration::from_secs(60);
        let started = Instant::now();
        assert_eq!(
            budget.reserve(101, far).err(),
            Some(Refused::OverCapacity { bytes: 101, capacity_bytes: 100 })
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_waiter_gets_its_bytes_when_another_releases() {
        let budget = InflightBudget::new(100);
        let held = budget.reserve(80, soon()).unwrap();
        let waiter = {
            let budget = Arc::clone(&budget);
            thread::spawn(move || {
                let reservation = budget.reserve(50, Instant::now() + Duration::from_secs(20))?;
                Ok::<u64, Refused>(reservation.bytes())
            })
        };
        thread::sleep(Duration::from_millis(50));
        assert_eq!(budget.reserved_bytes(), 80, "the waiter holds nothing while it waits");
        drop(held);
        assert_eq!(waiter.join().unwrap(), Ok(50));
        assert_eq!(budget.reserved_bytes(), 0);
    }

    #[test]
    fn many_threads_never_pass_the_budget() {
        let budget = InflightBudget::new(1000);
        let peak = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..8u64)
            .map(|index| {
                let (budget, peak) = (Arc::clone(&budget), Arc::clone(&peak));
                thread::spawn(move || {
                    for round in 0..200u64 {
                        let bytes = 100 + (index * 37 + round * 11) % 400;
                        let deadline = Instant::now() + Duration::from_secs(20);
                        let reservation = budget.reserve(bytes, deadline).expect("room comes in time");
                        let now = budget.reserved_bytes();
                        let mut peak = peak.lock();
                        *peak = (*peak).max(now);
                        drop(peak);
                        if round % 16 == 0 {
                            // Hold it a moment, so others have to wait.
                            thread::sleep(Duration::from_micros(200));
                        }
                        drop(reservation);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(*peak.lock() <= 1000 && *peak.lock() >= 100, "peak {}", *peak.lock());
        assert_eq!(budget.reserved_bytes(), 0);
    }
}
