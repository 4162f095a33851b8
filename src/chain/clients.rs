//! Each client's latest write, so a write retried after a head failure is
//! applied once and gets its original answer. The records travel down the
//! chain with the writes and in snapshots, so every replica has them.

use std::collections::HashMap;

use crate::proto::ClientRecord;

/// The records, bounded.
pub struct ClientRecords {
    records: HashMap<u64, ClientRecord>,
    /// Clients remembered; past this the oldest tenth is forgotten (a retry
    /// from a client idle that long could then be applied twice).
    limit: usize,
}

/// What the records say about a client's write.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// Never seen (or anonymous, client id 0): apply it.
    New,
    /// The client's latest write: answer as it was answered.
    Retry { sequence: u64, found: bool, number: i64 },
    /// The client's latest write, declined at `sequence`. Its answer may
    /// have been seen: a copy of an earlier attempt can arrive late (left in
    /// a paused server's socket buffer, or behind a slow link) after the
    /// client saw "declined" and went on. Deciding the copy again could
    /// apply it then (swarm testing found one: seed 5825337620275552581, a
    /// cas answered "declined" whose late copy swapped after a delete), so
    /// it stays declined.
    Declined { sequence: u64 },
    /// Older than the client's latest write: the client moved on.
    Stale { latest: u64 },
}

impl ClientRecords {
    pub fn new(limit: usize) -> ClientRecords {
        assert!(limit > 0, "at least one client record");
        ClientRecords { records: HashMap::new(), limit }
    }

    /// Whether request `request_id` of `client_id` was applied already.
    pub fn seen(&self, client_id: u64, request_id: u64) -> Seen {
        if client_id == 0 {
            return Seen::New;
        }
        match self.records.get(&client_id) {
            Some(record) if record.request_id == request_id && record.declined => {
                Seen::Declined { sequence: record.sequence }
            }
            Some(record) if record.request_id == request_id => {
                Seen::Retry { sequence: record.sequence, found: record.found, number: record.number }
            }
            Some(record) if record.request_id > request_id => Seen::Stale { latest: record.request_id },
            _ => Seen::New,
        }
    }

    /// The record of `client_id`'s latest write, if remembered.
    pub fn get(&self, client_id: u64) -> Option<&ClientRecord> {
        self.records.get(&client_id)
    }

    /// Records a client's latest write. Over the limit, forgets the oldest
    /// tenth by sequence number: every replica applies the same writes in
    /// the same order, so they all forget the same clients.
    pub fn remember(&mut self, record: ClientRecord) {
        if record.client_id == 0 {
            return;
        }
        self.records.insert(record.client_id, record);
        if self.records.len() > self.limit {
            let mut sequences: Vec<u64> = self.records.values().map(|record| record.sequence).collect();
            let forget = (self.limit / 10).max(1);
            let (_, threshold, _) = sequences.select_nth_unstable(forget - 1);
            let threshold = *threshold;
            self.records.retain(|_, record| record.sequence > threshold);
        }
    }

    /// Whether remembering a write of `client_id` adds a record: the client
    /// is not remembered yet (anonymous writes never are). The head counts
    /// the record in what a put would add under `--max-memory`.
    pub fn adds_record(&self, client_id: u64) -> bool {
        client_id != 0 && !self.records.contains_key(&client_id)
    }

    pub fn clear(&mut self) {
        self.records.clear();
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record, for a snapshot, in client order (so a simulated run
    /// replays byte for byte).
    pub fn all(&self) -> Vec<ClientRecord> {
        let mut all: Vec<ClientRecord> = self.records.values().cloned().collect();
        all.sort_unstable_by_key(|record| record.client_id);
        all
    }
}

/// The record of a write just applied.
pub fn record(client_id: u64, request_id: u64, sequence: u64, found: bool, number: i64) -> ClientRecord {
    let mut record = ClientRecord::new();
    record.client_id = client_id;
    record.request_id = request_id;
    record.sequence = sequence;
    record.found = found;
    record.number = number;
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stale_requests_and_the_bound() {
        let mut records = ClientRecords::new(20);
        records.remember(record(7, 3, 10, true, -4));
        assert_eq!(records.seen(7, 3), Seen::Retry { sequence: 10, found: true, number: -4 });
        assert_eq!(records.seen(7, 2), Seen::Stale { latest: 3 });
        assert_eq!(records.seen(7, 4), Seen::New);
        assert_eq!(records.seen(0, 3), Seen::New, "anonymous writes are never deduplicated");
        assert!(!records.adds_record(7) && records.adds_record(8) && !records.adds_record(0));
        for client in 100..200 {
            records.remember(record(client, 1, client, false, 0));
        }
        assert!(records.len() <= 20, "{} records kept", records.len());
        assert_eq!(
            records.seen(199, 1),
            Seen::Retry { sequence: 199, found: false, number: 0 },
            "the newest stay"
        );
        assert_eq!(records.seen(7, 3), Seen::New, "the oldest went");
    }

    /// Exactly `limit` clients are kept; one more forgets the oldest tenth
    /// (by sequence), and no other.
    #[test]
    fn one_client_past_the_limit_forgets_the_oldest_tenth() {
        let mut records = ClientRecords::new(20);
        assert!(records.is_empty());
        for client in 1..=20 {
            records.remember(record(client, 1, client, false, 0));
        }
        assert_eq!(records.len(), 20, "up to the limit, every client is kept");
        assert!(!records.is_empty());
        records.remember(record(21, 1, 21, false, 0));
        assert_eq!(records.len(), 19, "two of 21 forgotten");
        assert_eq!(records.seen(2, 1), Seen::New);
        assert_eq!(records.seen(3, 1), Seen::Retry { sequence: 3, found: false, number: 0 });
    }
}
