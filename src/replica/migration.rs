//! The replica's side of slot migrations (see `chain::migration`): the
//! pause markers every member applies ([`Markers`]), and at a head the
//! source's snapshot and tap of writes to the moving slots, and the
//! target's import writes.
//!
//! Markers are table keys (see `chain::slot_gate`), so a member learns them
//! as it applies them: the table store tells [`Markers`] of every key that
//! starts with a NUL, and a connection asks it before answering a slot.
//! The head checks it again under the node's lock as it sequences a client
//! write, so no write to a slot is sequenced after the slot's pause marker.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;

use super::{AckWriter, Replica, TableStore};
use crate::chain::migration::Span;
use crate::chain::slot_gate::{Importer, MARKER_PREFIX, Marker, SlotGate, parse_marker};
use crate::chain::{Outcome, Refusal, Role, Store, WriteOp};
use crate::limits::{MIGRATION_TAP_BYTES_MAX, MIGRATION_TAP_WRITES_MAX};
use crate::proto::{ClientRecord, ErrorCode, MigratedWrite};
use crate::shard::slot::slot_of;

/// The pause markers this member applied, as a gate.
#[derive(Default)]
pub struct Markers {
    gate: RwLock<SlotGate>,
    /// Some span is paused: without, a request costs one load here.
    any: AtomicBool,
    /// The shard map version this server knows plus one (0: none yet),
    /// published by the map thread: a pause holds only up to its attempt.
    map_version_after: AtomicU64,
}

impl Markers {
    /// Whether `key` is a marker's (no client key starts with a NUL).
    pub fn is_marker(key: &str) -> bool {
        key.starts_with(MARKER_PREFIX)
    }

    /// A key starting with a NUL was set (`Some`) or deleted.
    pub(super) fn note(&self, key: &str, value: Option<&[u8]>) {
        let marker = match value {
            Some(value) => parse_marker(key, value).map(|(span, attempt)| Marker::Pause { span, attempt }),
            None => parse_marker(key, b"0").map(|(span, _)| Marker::Resume(span)),
        };
        if let Some(marker) = marker {
            let mut gate = self.gate.write();
            gate.apply(marker);
            self.any.store(!gate.paused().is_empty(), Ordering::SeqCst);
        }
    }

    /// The table was emptied.
    pub(super) fn clear(&self) {
        *self.gate.write() = SlotGate::default();
        self.any.store(false, Ordering::SeqCst);
    }

    /// The shard map version this server knows now.
    pub fn set_map_version(&self, version: Option<u64>) {
        self.map_version_after.store(version.map_or(0, |version| version + 1), Ordering::SeqCst);
    }

    /// Whether a migration paused `slot` here.
    pub fn paused(&self, slot: u16) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let version = self.map_version_after.load(Ordering::SeqCst).checked_sub(1);
        self.gate.read().is_paused(slot, version)
    }

    /// Of `keys` held in the table, those that are clients' (every paused
    /// span has one marker key; listings, `size` and `stats` leave them out).
    pub fn client_keys(&self, keys: u64) -> u64 {
        keys.saturating_sub(self.gate.read().paused().len() as u64)
    }

    /// The spans paused, with their attempts.
    pub fn spans(&self) -> Vec<(Span, u64)> {
        self.gate.read().paused().to_vec()
    }

    /// Refuses `keys` if one of them is paused (or is a marker's).
    pub fn screen<'key>(&self, keys: impl IntoIterator<Item = &'key str>) -> Result<(), Refusal> {
        for key in keys {
            if Markers::is_marker(key) {
                return Err(Refusal::new(ErrorCode::ERR_MALFORMED, "that key is reserved for migrations"));
            }
            if self.paused(slot_of(key)) {
                let message = format!("slot {} is paused by a migration for a moment; retry", slot_of(key));
                return Err(Refusal::new(ErrorCode::ERR_UNAVAILABLE, message));
            }
        }
        Ok(())
    }
}

/// Writes to the moving slots a source head applied since its snapshot,
/// kept until they are committed and sent. Bounded: past the bound the
/// attempt ends (the driver claims again and streams a fresh snapshot).
pub(super) struct Tap {
    span: Span,
    writes: VecDeque<(u64, MigratedWrite)>,
    bytes: u64,
    overflowed: bool,
}

/// The keys a write changes (borrowed: a client write's screening costs
/// no allocation while nothing is migrating).
fn op_keys(op: &WriteOp) -> impl Iterator<Item = &str> {
    let (one, many) = match op {
        WriteOp::Set { key, .. }
        | WriteOp::Cas { key, .. }
        | WriteOp::Incr { key, .. }
        | WriteOp::Expiring { key, .. }
        | WriteOp::Expire { key, .. }
        | WriteOp::Persist { key } => (Some(key.as_str()), &[][..]),
        WriteOp::Mset { pairs } => (None, pairs.as_slice()),
    };
    one.into_iter().chain(many.iter().map(|(key, _)| key.as_str()))
}

/// A migration's snapshot: taken at `applied`, the slots' keys and every
/// client record.
pub struct SlotSnapshot {
    pub applied: u64,
    pub entries: Vec<(String, Vec<u8>)>,
    pub records: Vec<ClientRecord>,
}

/// One import write: a key's state (`""`: none, a record alone) and a record.
pub type ImportWrite = ((String, Option<Vec<u8>>), Option<ClientRecord>);

impl Replica {
    /// A client write at the head, as `client_write` runs it under the
    /// node's lock: refused if a migration paused a key's slot, and tapped
    /// if a migration streams the slot.
    pub(super) fn screened_write(
        &self,
        (client_id, request_id): (u64, u64),
        op: WriteOp,
        now_ms: u64,
        node: &mut crate::chain::ChainNode,
        (store, carry): (&mut TableStore<'_>, &mut super::Carry<'_>),
    ) -> Result<crate::chain::WriteReceipt, Refusal> {
        self.markers.screen(op_keys(&op))?;
        let tapping = self.tapping.load(Ordering::Acquire);
        let keys: Vec<String> = if tapping { op_keys(&op).map(str::to_owned).collect() } else { Vec::new() };
        let receipt = node.client_write(client_id, request_id, op, now_ms, store, carry)?;
        if tapping && let Outcome::Applied { found, number } = receipt.outcome {
            let record =
                crate::chain::clients::record(client_id, request_id, receipt.sequence, found, number);
            self.tap_write(receipt.sequence, &keys, record, store);
        }
        Ok(receipt)
    }

    fn tap_write(&self, sequence: u64, keys: &[String], record: ClientRecord, store: &TableStore<'_>) {
        let mut tap = self.tap.lock();
        let Some(tap) = tap.as_mut().filter(|tap| keys.iter().any(|key| tap.span.contains(slot_of(key))))
        else {
            return;
        };
        for key in keys.iter().filter(|key| tap.span.contains(slot_of(key))) {
            let value = store.value_of(key);
            tap.bytes += (key.len() + value.as_ref().map_or(0, Vec::len)) as u64;
            let write = MigratedWrite {
                key: key.clone(),
                value,
                record: Some(record.clone()).into(),
                ..Default::default()
            };
            tap.writes.push_back((sequence, write));
        }
        if tap.writes.len() > MIGRATION_TAP_WRITES_MAX || tap.bytes > MIGRATION_TAP_BYTES_MAX {
            tap.overflowed = true;
            tap.writes.clear();
        }
    }

    /// Source head: the moving slots' keys and every client record at one
    /// sequence number, and from it on every write to them tapped.
    pub fn migration_snapshot(&self, span: Span) -> Result<SlotSnapshot, Refusal> {
        self.step(AckWriter::Wake, |node, _, _| {
            if !matches!(node.role(), Role::Head | Role::HeadAndTail) {
                return Err(Refusal::new(ErrorCode::ERR_WRONG_ROLE, "no longer the head"));
            }
            let entries =
                self.table.entries_where(|key| !key.starts_with('\u{0}') && span.contains(slot_of(key)));
            *self.tap.lock() = Some(Tap { span, writes: VecDeque::new(), bytes: 0, overflowed: false });
            self.tapping.store(true, Ordering::Release);
            Ok(SlotSnapshot { applied: node.progress().applied, entries, records: node.client_records_all() })
        })
    }

    /// Source head: the tapped writes up to `committed`, in order; `None`
    /// if the tap overflowed (or was stopped).
    pub fn migration_tapped(&self, committed: u64) -> Option<Vec<MigratedWrite>> {
        let mut tap = self.tap.lock();
        let tap = tap.as_mut().filter(|tap| !tap.overflowed)?;
        let mut writes = Vec::new();
        while tap.writes.front().is_some_and(|(sequence, _)| *sequence <= committed) {
            let (_, write) = tap.writes.pop_front().expect("there");
            tap.bytes -= (write.key.len() + write.value.as_ref().map_or(0, Vec::len)) as u64;
            writes.push(write);
        }
        Some(writes)
    }

    /// The source's stream ended: no more tapping.
    pub fn stop_migration_tap(&self) {
        self.tapping.store(false, Ordering::Release);
        *self.tap.lock() = None;
    }

    /// A write of the migration's own (a pause or resume marker, a moved
    /// key's deletion) at the head: neither screened nor tapped. Returns
    /// its sequence number.
    pub fn migration_write(&self, key: String, value: Option<Vec<u8>>) -> Result<u64, Refusal> {
        self.wait_for_queue_room(1)?;
        let now_ms = self.now_ms();
        self.step(AckWriter::Wake, |node, store, carry| {
            let op = WriteOp::Set { key, value };
            node.client_write(0, 0, op, now_ms, store, carry).map(|receipt| receipt.sequence)
        })
    }

    /// Target head: sequences one frame's import writes as ours (see
    /// `ChainNode::import_write`); returns the last one's sequence number.
    pub fn import_writes(&self, writes: Vec<ImportWrite>, importer: &Importer) -> Result<u64, Refusal> {
        self.wait_for_queue_room(writes.len().min(self.limits.queue_max))?;
        let now_ms = self.now_ms();
        self.step(AckWriter::Wake, |node, store, carry| {
            let mut last = node.progress().applied;
            for ((key, value), record) in writes {
                last = node.import_write(
                    (&key, value),
                    record.as_ref(),
                    importer,
                    now_ms,
                    (&mut *store, &mut *carry),
                )?;
            }
            Ok(last)
        })
    }

    /// The client keys held of the slots `wanted` names.
    pub fn keys_in(&self, wanted: impl Fn(u16) -> bool) -> Vec<String> {
        let held = self.table.entries_where(|key| !key.starts_with('\u{0}') && wanted(slot_of(key)));
        held.into_iter().map(|(key, _)| key).collect()
    }
}
