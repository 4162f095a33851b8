//! Keys that expire: `put` with a time to live, `expire`, `ttl` and
//! `persist`. The head turns a time to live into a deadline on its own
//! clock and deletes the key once it passes (see `chain::expiry`).

use std::time::Duration;

use super::Client;
use super::error::ClientError;
use crate::proto::{Opcode, Request};

/// What `ttl` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeToLive {
    /// The key is absent (or its deadline passed).
    Absent,
    /// The key exists and does not expire.
    Forever,
    /// The key expires after this long (on the tail's clock).
    Left(Duration),
}

/// A time to live as the protocol carries it: ms, at least 1.
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn keyed(key: &str) -> Request {
    let mut request = Request::new();
    request.key = Some(key.to_owned());
    request
}

impl Client {
    /// Sets `key` to `value`, to be deleted `ttl` after the head sets it.
    pub fn put_with_ttl(
        &mut self,
        key: &str,
        value: impl Into<Vec<u8>>,
        ttl: Duration,
    ) -> Result<(), ClientError> {
        let mut request = keyed(key);
        request.value = Some(value.into());
        request.ttl_ms = Some(ttl_ms(ttl));
        self.call(Opcode::OP_PUT, request).map(drop)
    }

    /// Makes `key` expire `ttl` from now; false (nothing written) if the
    /// key is absent.
    pub fn expire(&mut self, key: &str, ttl: Duration) -> Result<bool, ClientError> {
        let mut request = keyed(key);
        request.ttl_ms = Some(ttl_ms(ttl));
        Ok(self.call(Opcode::OP_EXPIRE, request)?.found)
    }

    /// Removes `key`'s deadline; false if the key is absent.
    pub fn persist(&mut self, key: &str) -> Result<bool, ClientError> {
        Ok(self.call(Opcode::OP_PERSIST, keyed(key))?.found)
    }

    /// How long `key` has left.
    pub fn ttl(&mut self, key: &str) -> Result<TimeToLive, ClientError> {
        let ttl_ms = self.call(Opcode::OP_TTL, keyed(key))?.ttl_ms;
        Ok(match ttl_ms {
            -1 => TimeToLive::Forever,
            left if left >= 0 => TimeToLive::Left(Duration::from_millis(left as u64)),
            _ => TimeToLive::Absent,
        })
    }
}
