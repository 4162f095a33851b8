//! The chain node's side of a migration (see [`migration`](super::migration)):
//! what the source head's snapshot carries, and the target head's import
//! writes, which go down the target chain as ordinary writes.

use super::clients;
use super::effects::{AppliedWrite, Effects, Store};
use super::node::{ChainNode, Refusal};
use super::slot_gate::Importer;
use super::writes::apply_state;
use crate::proto::ClientRecord;

impl ChainNode {
    /// Source head: every client record held, for a migration's snapshot
    /// (records are per client, not per key; see `migration`).
    pub fn client_records_all(&self) -> Vec<ClientRecord> {
        self.clients.all()
    }

    /// Target head: sequences a migrated key's state (`value`; `None`:
    /// absent) as our next write, carrying `record` (a moved client's
    /// latest answer, from the snapshot or from the streamed write) when
    /// `importer` keeps it over ours. The key `""` (never a client's key)
    /// carries a record alone. Every member of our chain remembers the
    /// record as it applies the write, so a retry of that client's write
    /// is answered from it here, wherever it was first applied. Returns
    /// the write's sequence number (the stream's ack waits for its commit).
    pub fn import_write(
        &mut self,
        (key, value): (&str, Option<Vec<u8>>),
        record: Option<&ClientRecord>,
        importer: &Importer,
        now_ms: u64,
        (store, effects): (&mut impl Store, &mut impl Effects),
    ) -> Result<u64, Refusal> {
        self.check_may_write(now_ms)?;
        let sequence = self.last_applied + 1;
        let held = record.and_then(|record| self.clients.get(record.client_id));
        let kept = record.and_then(|record| importer.merged(held, record, sequence));
        let (client_id, request_id) = kept.as_ref().map_or((0, 0), |kept| (kept.client_id, kept.request_id));
        let (found, number, declined) =
            kept.as_ref().map_or((false, 0, false), |kept| (kept.found, kept.number, kept.declined));
        let mut write = self.next_write(client_id, request_id);
        self.note_deadlines(key, None, &[]);
        let only_record = key.is_empty();
        effects.applied(AppliedWrite {
            sequence,
            key,
            value: value.as_deref(),
            more: &[],
            expired: false,
            declined: only_record,
        });
        if !only_record {
            apply_state(store, key, value.clone(), &[]);
        }
        if let Some(write) = &mut write {
            (write.key, write.value, write.found, write.number) = (key.to_owned(), value, found, number);
            write.declined = declined;
        }
        let mut record = clients::record(client_id, request_id, sequence, found, number);
        record.declined = declined;
        self.settle_write(sequence, record, write, effects);
        Ok(sequence)
    }
}

#[cfg(test)]
mod tests {
    use crate::chain::clients::Seen;
    use crate::chain::migration::Span;
    use crate::chain::slot_gate::Importer;
    use crate::chain::{ChainNode, Check, NodeConfig, Outcome, WriteOp};
    use crate::check::sim::server::SimStore;

    fn node(bug: Option<Check>) -> ChainNode {
        ChainNode::new(NodeConfig {
            standalone: true,
            chain_path: "/chain".into(),
            client_records_max: 100,
            bug,
            server_id: 1,
            memory_bytes_max: None,
        })
    }

    /// An increment applied at the source, whose answer was lost, moves
    /// with its key and its client's record; retried at the target after
    /// the flip, it is answered from the record and not applied again.
    /// With `forget-dedup-on-move` the retry adds the delta twice.
    #[test]
    fn a_retried_increment_is_applied_once_across_a_move() {
        for (bug, expected) in [(None, b"5".to_vec()), (Some(Check::ForgetDedupOnMove), b"10".to_vec())] {
            let (mut source, mut target) = (node(bug), node(bug));
            let (mut source_store, mut target_store, mut effects) =
                (SimStore::new(), SimStore::new(), Vec::new());
            let incr = || WriteOp::Incr { key: "{u}n".into(), delta: 5 };
            source.client_write(7, 3, incr(), 0, &mut source_store, &mut effects).expect("applied");
            let importer = Importer::new(Span { first: 0, last: 16383 }, bug);
            let moved = ("{u}n", source_store.get("{u}n").cloned());
            let stores = (&mut target_store, &mut effects);
            assert_eq!(target.import_write(moved, None, &importer, 0, stores), Ok(1));
            for record in source.client_records_all() {
                let stores = (&mut target_store, &mut effects);
                target.import_write(("", None), Some(&record), &importer, 0, stores).expect("imported");
            }
            assert!(!target_store.contains_key(""), "a record alone changes no key");
            let retried = target.client_write(7, 3, incr(), 0, &mut target_store, &mut effects).unwrap();
            assert_eq!(target_store.get("{u}n"), Some(&expected), "{bug:?}");
            if bug.is_none() {
                assert_eq!(retried.outcome, Outcome::Applied { found: false, number: 5 }, "the first answer");
                assert_eq!(retried.sequence, 2, "waits for the target's import write");
                assert_eq!(
                    target
                        .client_write(7, 2, incr(), 0, &mut target_store, &mut effects)
                        .map(|_| ())
                        .unwrap_err()
                        .code,
                    crate::proto::ErrorCode::ERR_STALE_REQUEST
                );
            }
        }
    }

    /// A record older than the one the target holds for that client is not
    /// taken (the client wrote to the target's own slots since).
    #[test]
    fn an_older_moved_record_does_not_replace_a_newer_one() {
        let mut target = node(None);
        let (mut store, mut effects) = (SimStore::new(), Vec::new());
        target
            .client_write(
                7,
                9,
                WriteOp::Set { key: "a".into(), value: Some(b"1".to_vec()) },
                0,
                &mut store,
                &mut effects,
            )
            .unwrap();
        let older = crate::chain::clients::record(7, 4, 55, true, 0);
        let importer = Importer::new(Span { first: 0, last: 16383 }, None);
        target.import_write(("", None), Some(&older), &importer, 0, (&mut store, &mut effects)).unwrap();
        assert_eq!(target.clients.seen(7, 9), Seen::Retry { sequence: 1, found: false, number: 0 });
        assert_eq!(target.clients.seen(7, 4), Seen::Stale { latest: 9 });
    }
}
