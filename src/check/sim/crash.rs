//! Which server the simulator may crash: only one whose loss keeps every
//! committed write in a live server. Crashing the last server named in the
//! commit record (the servers holding every committed write) is more
//! faults than a chain survives, and the chain says so when it restarts
//! without them (it raises the generation); the simulator once crashed it
//! while other servers lived (seed 6408598025134507227: a bug of the
//! simulator, not of the protocol; the rule was "while two other servers
//! live").

use crate::view::CommitRecord;

/// Whether `server` may crash now, with `live` servers running and the
/// chain node holding `record` (server `i` has server id `i + 1`). Any
/// durable server may: it restarts on its disk, which holds every write it
/// counted committed, so the whole chain may crash at once.
pub fn may_crash(record: &CommitRecord, live: &[usize], server: usize, durable: bool) -> bool {
    durable || live.iter().any(|&other| other != server && record.includes(other as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed 6408598025134507227: s0 alone was named while s1 and s2
    /// lived, and the simulator crashed s0.
    #[test]
    fn the_last_live_server_named_in_the_record_is_not_crashed() {
        let record = CommitRecord { epoch: 4, servers: vec![1], generation: 1, committed: 9 };
        assert!(!may_crash(&record, &[0, 1, 2], 0, false), "s0 holds the only copy of committed writes");
        assert!(may_crash(&record, &[0, 1, 2], 1, false));
        let both = CommitRecord { servers: vec![1, 2], ..record };
        assert!(may_crash(&both, &[0, 1, 2], 0, false));
        assert!(!may_crash(&both, &[0, 2], 0, false), "s1, the other one named, is down");
        assert!(may_crash(&record, &[0], 0, true), "a durable server restarts on its disk");
    }
}
