//! The chain client's retry policy, as pure functions: which failures a new
//! look at the chain can cure, how long to pause between attempts, and how
//! the one time limit the user gives (`--timeout-ms`) is shared between the
//! overall deadline and each attempt.
//!
//! Kept apart from the sockets and ZooKeeper so every rule is unit-tested.

use std::time::{Duration, Instant};

use super::error::ClientError;
use crate::limits::{ATTEMPT_SHARE, ATTEMPT_TIMEOUT_MIN, BACKOFF_FIRST, BACKOFF_MAX};
use crate::proto::ErrorCode;

/// Whether `error` may go away after looking up the chain again: the server
/// refused because of its role or state, the connection failed or timed out,
/// or no chain was found (yet). Anything else (a request too large, a missing
/// field, a stale request id, a reply that makes no sense) would fail again.
pub fn is_retryable(error: &ClientError) -> bool {
    match error {
        ClientError::Unreachable(_) | ClientError::NoChain(_) => true,
        ClientError::Server { code, .. } => matches!(
            code,
            ErrorCode::ERR_WRONG_ROLE | ErrorCode::ERR_UNAVAILABLE | ErrorCode::ERR_SHUTTING_DOWN
        ),
        ClientError::Protocol(_) | ClientError::NoChainEver(_) => false,
    }
}

/// Exponentially growing pauses: [`BACKOFF_FIRST`], doubling up to [`BACKOFF_MAX`].
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_FIRST }
    }
}

impl Backoff {
    /// The pause before the next attempt, or `None` when the pause would end
    /// at or after the deadline (nothing would be left for the attempt).
    pub fn pause(&mut self, remaining: Duration) -> Option<Duration> {
        let pause = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        (pause < remaining).then_some(pause)
    }
}

/// The overall deadline of one call, retries included.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub started: Instant,
    pub limit: Duration,
}

impl Deadline {
    pub fn starting_now(limit: Duration) -> Deadline {
        Deadline { started: Instant::now(), limit }
    }

    pub fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.started.elapsed())
    }

    /// The reply timeout for an attempt starting now: see [`attempt_timeout`].
    pub fn attempt_timeout(&self) -> Duration {
        attempt_timeout(self.limit, self.remaining())
    }
}

/// The reply timeout of one attempt: a quarter of the time `limit`, at least
/// [`ATTEMPT_TIMEOUT_MIN`], never more than the limit nor the time
/// `remaining`, and never zero (sockets refuse a zero timeout).
pub fn attempt_timeout(limit: Duration, remaining: Duration) -> Duration {
    (limit / ATTEMPT_SHARE).max(ATTEMPT_TIMEOUT_MIN).min(limit).min(remaining).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: ErrorCode) -> ClientError {
        ClientError::Server { code, message: String::new() }
    }

    #[test]
    fn refusals_of_role_and_state_are_retried() {
        assert!(is_retryable(&refused(ErrorCode::ERR_WRONG_ROLE)));
        assert!(is_retryable(&refused(ErrorCode::ERR_UNAVAILABLE)));
        assert!(is_retryable(&refused(ErrorCode::ERR_SHUTTING_DOWN)));
        assert!(is_retryable(&ClientError::Unreachable("timed out".into())));
        assert!(is_retryable(&ClientError::NoChain("no ready server".into())));
    }

    #[test]
    fn errors_about_the_request_are_not_retried() {
        for code in [
            ErrorCode::ERR_TOO_LARGE,
            ErrorCode::ERR_MISSING_FIELD,
            ErrorCode::ERR_STALE_REQUEST,
            ErrorCode::ERR_MALFORMED,
            ErrorCode::ERR_UNKNOWN_OPCODE,
            ErrorCode::ERR_TOO_MANY_CLIENTS,
            ErrorCode::ERR_RESPONSE_TOO_LARGE,
            ErrorCode::ERR_INTERNAL,
            ErrorCode::ERR_OUT_OF_MEMORY,
            ErrorCode::ERR_DECLINED_EARLIER,
        ] {
            assert!(!is_retryable(&refused(code)), "{code:?}");
        }
        assert!(!is_retryable(&ClientError::Protocol("reply to another request".into())));
        assert!(!is_retryable(&ClientError::NoChainEver("the chain path /x does not exist".into())));
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let mut backoff = Backoff::default();
        let plenty = Duration::from_secs(60);
        let pauses: Vec<u64> = (0..9).map(|_| backoff.pause(plenty).unwrap().as_millis() as u64).collect();
        assert_eq!(pauses, [2, 4, 8, 16, 32, 64, 100, 100, 100]);
    }

    #[test]
    fn backoff_stops_at_the_deadline() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.pause(Duration::from_millis(3)), Some(Duration::from_millis(2)));
        // The next pause (4 ms) would use up all that is left.
        assert_eq!(backoff.pause(Duration::from_millis(4)), None);
        assert_eq!(backoff.pause(Duration::ZERO), None);
    }

    #[test]
    fn attempts_share_the_time_limit() {
        let ms = Duration::from_millis;
        // Default 10 s: 2.5 s per attempt, so about four attempts fit.
        assert_eq!(attempt_timeout(ms(10_000), ms(10_000)), ms(2_500));
        // Short limits: at least 2 s, but never more than the limit.
        assert_eq!(attempt_timeout(ms(4_000), ms(4_000)), ms(2_000));
        assert_eq!(attempt_timeout(ms(300), ms(300)), ms(300));
        // Long limits: a quarter each.
        assert_eq!(attempt_timeout(ms(60_000), ms(60_000)), ms(15_000));
        // Never past the deadline, never zero.
        assert_eq!(attempt_timeout(ms(10_000), ms(700)), ms(700));
        assert_eq!(attempt_timeout(ms(10_000), Duration::ZERO), ms(1));
    }

    #[test]
    fn deadline_counts_down() {
        let deadline = Deadline::starting_now(Duration::from_secs(60));
        assert!(deadline.remaining() <= Duration::from_secs(60));
        assert!(deadline.remaining() > Duration::from_secs(59));
        let expired = Deadline { started: Instant::now(), limit: Duration::ZERO };
        assert_eq!(expired.remaining(), Duration::ZERO);
        assert_eq!(expired.attempt_timeout(), Duration::from_millis(1));
    }
}
