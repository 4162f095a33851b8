//! The requests beyond put/get/del: compare-and-set, increment and
//! multi-key set (head decisions, see `chain::writes`), and multi-key get
//! and exists (tail reads like `get`), and expiry (`expire`, `persist`,
//! `put` with a time to live, and `ttl`). Their inputs obey the same key,
//! value, frame and in-flight limits as a put's and a get's.

use super::inflight::Reservation;
use super::service::Service;
use crate::chain::{Decline, Outcome, Refusal, WriteOp};
use crate::limits::{REPLY_ENTRY_OVERHEAD_BYTES, REPLY_ENVELOPE_BYTES};
use crate::proto::{ErrorCode, Lookup, Opcode, Request, Response};
use crate::replica::{ReadKeys, wall_ms};

/// The reply to a committed client write (`outcome` as the head decided
/// it), or the error of a declined `incr`.
pub fn write_answer(opcode: Opcode, outcome: &Outcome) -> Result<Response, Refusal> {
    let mut response = Response::new();
    match outcome {
        Outcome::Applied { found, number } => {
            response.found =
                matches!(opcode, Opcode::OP_DEL | Opcode::OP_EXPIRE | Opcode::OP_PERSIST) && *found;
            response.swapped = opcode == Opcode::OP_CAS;
            response.number = *number;
        }
        Outcome::Declined(Decline::Mismatch(current)) => {
            response.found = current.is_some();
            if opcode == Opcode::OP_CAS {
                response.value = current.clone().unwrap_or_default();
            }
        }
        Outcome::Declined(Decline::WrongType(message)) => {
            return Err(Refusal::new(ErrorCode::ERR_WRONG_TYPE, format!("{message}; nothing was changed")));
        }
        Outcome::Declined(Decline::Earlier) => {
            return Err(Refusal::new(
                ErrorCode::ERR_DECLINED_EARLIER,
                "declined in an earlier attempt whose answer was lost; nothing was changed (read the key \
                 and decide again)",
            ));
        }
    }
    Ok(response)
}

impl Service {
    /// TTL: ms left before `key` expires on our clock; -1: it has no
    /// deadline; -2: it is absent (or its deadline passed).
    pub(super) fn ttl(&self, local: bool, key: &str) -> Result<i64, Refusal> {
        let (present, deadline) = self.read(local, ReadKeys::One(key), |table| {
            (table.value_len(key).is_some(), self.replica.deadline_of(key))
        })?;
        let now_ms = wall_ms();
        Ok(match deadline {
            _ if !present => -2,
            None => -1,
            Some(deadline) if deadline <= now_ms => -2,
            Some(deadline) => i64::try_from(deadline - now_ms).unwrap_or(i64::MAX),
        })
    }

    /// GET: `key`'s value, absent if its deadline passed on our
    /// clock even if its delete has not arrived yet.
    pub(super) fn lookup(&self, local: bool, key: &str) -> Result<Option<Vec<u8>>, Refusal> {
        Ok(self
            .read(local, ReadKeys::One(key), |table| table.get(key))?
            .filter(|_| !self.replica.expired(key)))
    }

    /// The write a PUT, DEL, CAS, INCR or MSET request asks for, its keys
    /// and values checked against the limits.
    pub(super) fn write_op(&self, opcode: Opcode, request: &mut Request) -> Result<WriteOp, Refusal> {
        Ok(match opcode {
            Opcode::OP_PUT => {
                let value = self.checked_value(request.value.take())?;
                let key = self.checked_key(request)?.to_owned();
                match request.ttl_ms {
                    Some(ttl_ms) => WriteOp::Expiring { key, value, deadline_ms: deadline_after(ttl_ms) },
                    None => WriteOp::Set { key, value: Some(value) },
                }
            }
            Opcode::OP_EXPIRE => {
                let ttl_ms = request.ttl_ms.ok_or_else(|| {
                    Refusal::new(ErrorCode::ERR_MISSING_FIELD, "expire needs a time to live")
                })?;
                WriteOp::Expire {
                    key: self.checked_key(request)?.to_owned(),
                    deadline_ms: deadline_after(ttl_ms),
                }
            }
            Opcode::OP_PERSIST => WriteOp::Persist { key: self.checked_key(request)?.to_owned() },
            Opcode::OP_DEL => WriteOp::Set { key: self.checked_key(request)?.to_owned(), value: None },
            Opcode::OP_CAS => {
                let value = self.checked_value(request.value.take())?;
                let expected = match request.expected.take() {
                    Some(expected) => Some(self.checked_value(Some(expected))?),
                    None => None,
                };
                WriteOp::Cas { key: self.checked_key(request)?.to_owned(), expected, value }
            }
            Opcode::OP_INCR => {
                WriteOp::Incr { key: self.checked_key(request)?.to_owned(), delta: request.delta }
            }
            Opcode::OP_MSET => {
                WriteOp::Mset { pairs: self.checked_pairs(std::mem::take(&mut request.pairs))? }
            }
            other => unreachable!("{other:?} is not a write"),
        })
    }

    /// MSET's pairs: at least one, every key and value within the limits,
    /// and all of them together no more than one value may be (the write
    /// travels down the chain in one frame, like a put's).
    fn checked_pairs(&self, pairs: Vec<crate::proto::Entry>) -> Result<Vec<(String, Vec<u8>)>, Refusal> {
        if pairs.is_empty() {
            return Err(Refusal::new(ErrorCode::ERR_MISSING_FIELD, "mset needs at least one key and value"));
        }
        let total: usize = pairs.iter().map(|pair| pair.key.len() + pair.value.len()).sum();
        if total > self.limits.value_bytes_max {
            return Err(Refusal::new(
                ErrorCode::ERR_TOO_LARGE,
                format!(
                    "mset of {total} bytes of keys and values is over the maximum of {} bytes (one value's)",
                    self.limits.value_bytes_max
                ),
            ));
        }
        let mut checked = Vec::with_capacity(pairs.len());
        for pair in pairs {
            let mut request = Request::new();
            request.key = Some(pair.key);
            self.checked_key(&request)?;
            let value = self.checked_value(Some(pair.value))?;
            checked.push((request.key.take().unwrap_or_default(), value));
        }
        Ok(checked)
    }

    /// MGET: every key's value, read at one moment at the tail (or here,
    /// for a `local_read`), with the in-flight bytes the reply holds. The
    /// reply's size is measured first, refused past a frame, and reserved
    /// before anything is copied.
    pub(super) fn mget(&self, local: bool, keys: &[String]) -> Result<(Vec<Lookup>, Reservation), Refusal> {
        if keys.is_empty() {
            return Err(Refusal::new(ErrorCode::ERR_MISSING_FIELD, "mget needs at least one key"));
        }
        for key in keys {
            let mut request = Request::new();
            request.key = Some(key.clone());
            self.checked_key(&request)?;
        }
        let bytes_max = self.limits.frame_bytes_max.saturating_sub(REPLY_ENVELOPE_BYTES) as u64;
        let bytes = self.read(local, ReadKeys::Many(keys), |table| table.lookup_bytes(keys))?;
        if bytes > bytes_max {
            return Err(too_large(bytes, bytes_max));
        }
        let reservation = self.reserve_reply(2 * bytes + keys.len() as u64 * REPLY_ENTRY_OVERHEAD_BYTES)?;
        // Values may have grown since they were measured: copied only if
        // they still fit what was reserved.
        let values =
            self.read(local, ReadKeys::Many(keys), |table| table.get_many(keys, bytes))?.map_err(|_| {
                Refusal::new(ErrorCode::ERR_UNAVAILABLE, "the values grew while mget read them; retry")
            })?;
        let lookups = values
            .into_iter()
            .zip(keys)
            .map(|(value, key)| value.filter(|_| !self.replica.expired(key)))
            .map(|value| {
                let mut lookup = Lookup::new();
                lookup.found = value.is_some();
                lookup.value = value.unwrap_or_default();
                lookup
            })
            .collect();
        Ok((lookups, reservation))
    }
}

/// The deadline `ttl_ms` from now on this server's wall clock: a write's
/// is decided at the head, so the head's clock decides.
fn deadline_after(ttl_ms: u64) -> u64 {
    wall_ms().saturating_add(ttl_ms)
}

fn too_large(bytes: u64, bytes_max: u64) -> Refusal {
    Refusal::new(
        ErrorCode::ERR_RESPONSE_TOO_LARGE,
        format!(
            "the mget reply would be about {bytes} bytes, over the maximum frame's {bytes_max}; ask for fewer keys"
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::limits::Limits;
    use crate::proto::Entry;
    use crate::replica::{Replica, ReplicationLimits};
    use crate::server::service::Reply;

    fn service(limits: Limits) -> Service {
        let (ready_sender, _) = crossbeam_channel::bounded(1);
        let replica = Replica::new(4, true, ReplicationLimits::default(), ready_sender);
        Service::new(Arc::new(replica), limits)
    }

    fn answer(service: &Service, opcode: Opcode, fill: impl FnOnce(&mut Request)) -> Response {
        let mut request = Request::new();
        request.opcode = opcode.into();
        fill(&mut request);
        match service.handle(request) {
            Reply::Now(response, _) => response,
            Reply::AfterCommit(_) => panic!("a standalone write commits at once"),
        }
    }

    fn error_code(response: &Response) -> Option<ErrorCode> {
        (response.opcode.enum_value() == Ok(Opcode::OP_ERROR))
            .then(|| response.error_code.enum_value().unwrap())
    }

    #[test]
    fn cas_incr_mset_mget_exists() {
        let service = service(Limits::default());
        let cas = |expected: Option<&[u8]>, value: &[u8]| {
            answer(&service, Opcode::OP_CAS, |request| {
                request.key = Some("k".into());
                request.expected = expected.map(<[u8]>::to_vec);
                request.value = Some(value.to_vec());
            })
        };
        assert!(cas(None, b"1").swapped);
        let mismatch = cas(Some(b"0"), b"2");
        assert!(!mismatch.swapped && mismatch.found && mismatch.value == b"1", "{mismatch:?}");
        assert!(cas(Some(b"1"), b"2").swapped);
        let incr = |key: &str, delta| {
            answer(&service, Opcode::OP_INCR, |request| {
                request.key = Some(key.into());
                request.delta = delta;
            })
        };
        assert_eq!(incr("n", 3).number, 3);
        assert_eq!(incr("n", -5).number, -2);
        assert_eq!(error_code(&incr("k", 1)), None, "\"2\" is a number");
        let mset = answer(&service, Opcode::OP_MSET, |request| {
            request.pairs = vec![
                Entry::from_pair(("a".into(), b"x".to_vec())),
                Entry::from_pair(("k".into(), b"y".to_vec())),
            ];
        });
        assert_eq!(error_code(&mset), None, "{mset:?}");
        assert_eq!(error_code(&incr("k", 1)), Some(ErrorCode::ERR_WRONG_TYPE));
        let mget = answer(&service, Opcode::OP_MGET, |request| {
            request.keys = vec!["a".into(), "nope".into(), "n".into()];
        });
        let values: Vec<_> = mget.values.iter().map(|lookup| (lookup.found, lookup.value.clone())).collect();
        assert_eq!(values, vec![(true, b"x".to_vec()), (false, Vec::new()), (true, b"-2".to_vec())]);
        let exists =
            |key: &str| answer(&service, Opcode::OP_EXISTS, |request| request.key = Some(key.into())).found;
        assert!(exists("a") && !exists("nope"));
        assert_eq!(service.statistics().incrs, 3, "the refused incr is not counted");
    }

    #[test]
    fn limits_hold_for_the_new_requests() {
        let limits =
            Limits { key_bytes_max: 4, value_bytes_max: 8, frame_bytes_max: 200, ..Limits::default() };
        let service = service(limits);
        let pair = |key: &str, value: &[u8]| Entry::from_pair((key.into(), value.to_vec()));
        type Fill = Box<dyn Fn(&mut Request)>;
        let cases: Vec<(Opcode, Fill, ErrorCode)> = vec![
            (Opcode::OP_MSET, Box::new(|_| {}), ErrorCode::ERR_MISSING_FIELD),
            (
                Opcode::OP_MSET,
                Box::new(move |r| r.pairs = vec![pair("toolong", b"v")]),
                ErrorCode::ERR_TOO_LARGE,
            ),
            (
                Opcode::OP_MSET,
                Box::new(move |r| r.pairs = vec![pair("a", b"123456"), pair("b", b"12")]),
                ErrorCode::ERR_TOO_LARGE,
            ),
            (
                Opcode::OP_CAS,
                Box::new(|r| {
                    r.key = Some("k".into());
                    r.value = Some(vec![0; 9]);
                }),
                ErrorCode::ERR_TOO_LARGE,
            ),
            (
                Opcode::OP_CAS,
                Box::new(|r| {
                    r.key = Some("k".into());
                    r.expected = Some(vec![0; 9]);
                    r.value = Some(vec![]);
                }),
                ErrorCode::ERR_TOO_LARGE,
            ),
            (Opcode::OP_CAS, Box::new(|r| r.key = Some("k".into())), ErrorCode::ERR_MISSING_FIELD),
            (Opcode::OP_INCR, Box::new(|_| {}), ErrorCode::ERR_MISSING_FIELD),
            (Opcode::OP_MGET, Box::new(|_| {}), ErrorCode::ERR_MISSING_FIELD),
            (Opcode::OP_MGET, Box::new(|r| r.keys = vec!["toolong".into()]), ErrorCode::ERR_TOO_LARGE),
            (Opcode::OP_EXISTS, Box::new(|_| {}), ErrorCode::ERR_MISSING_FIELD),
        ];
        for (opcode, fill, expected) in cases {
            let response = answer(&service, opcode, |request| fill(request));
            assert_eq!(error_code(&response), Some(expected), "{opcode:?}: {}", response.error_message);
        }
        assert!(service.replica.table.is_empty(), "no refused request changes the table");
        // Two values of 8 bytes fill most of a 200-byte frame; many of them do not fit.
        for key in ["a", "b"] {
            answer(&service, Opcode::OP_PUT, |r| {
                r.key = Some(key.into());
                r.value = Some(vec![1; 8]);
            });
        }
        let many = answer(&service, Opcode::OP_MGET, |r| r.keys = vec!["a".into(); 30]);
        assert_eq!(error_code(&many), Some(ErrorCode::ERR_RESPONSE_TOO_LARGE), "{}", many.error_message);
        assert_eq!(service.inflight.reserved_bytes(), 0);
    }
}
