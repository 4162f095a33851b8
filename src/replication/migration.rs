//! The migration stream between two chains' heads (see `chain::migration`),
//! as a transport: the source head's [`SourceLink`] and the target head's
//! [`serve_import`].
//!
//! It opens like a replication link: the source connects to the target
//! head's client port and sends `Request{OP_REPLICATE, replica_hello{migration}}`;
//! with a peer secret both prove it ([`handshake`], over the target's chain
//! path), and without TLS the frames after it are sealed. Then
//! `MigrationFrame`s flow down (snapshot chunks, then committed writes),
//! each one item of the driver's count, and cumulative `MigrationAck`s come
//! up once the target chain committed the items' import writes. A frame
//! holds at most [`MIGRATION_FRAME_ITEMS_MAX`] keys and stops growing past
//! [`MIGRATION_FRAME_BYTES_MAX`], so a big value costs one frame.

use std::collections::VecDeque;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use log::{debug, info};

use super::{LinkError, LinkSettings, handshake};
use crate::chain::migration::Span;
use crate::chain::slot_gate::{Import, Importer};
use crate::limits::{
    MIGRATION_CONNECT_TIMEOUT, MIGRATION_FRAME_BYTES_MAX, MIGRATION_FRAME_ITEMS_MAX,
    MIGRATION_SILENCE_TIMEOUT, REPLICATION_ACK_POLL, REPLICATION_ACK_READ_BUFFER_BYTES,
    REPLICATION_WRITE_TIMEOUT,
};
use crate::proto::{MigrationAck, MigrationFrame, Opcode, ReplicaHello, ReplicaWelcome, Request, Response};
use crate::replica::Replica;
use crate::replica::migration::ImportWrite;
use crate::view::Member;
use crate::wire::{self, FrameReader, FrameWriter};

/// The source head's end of one attempt's stream.
pub struct SourceLink {
    writer: FrameWriter,
    attempt: u64,
    span: Span,
    /// Items the target acked (cumulative), from the ack reader.
    acked: Arc<AtomicU64>,
    /// The ack stream ended: the link is broken.
    closed: Arc<AtomicBool>,
    ack_reader: Option<JoinHandle<()>>,
}

impl SourceLink {
    /// Opens the stream of `attempt` for `span` to `head`, the head of the
    /// chain at `target_chain`; `me` names us in the hello.
    pub fn open(
        head: &Member,
        target_chain: &str,
        (attempt, span): (u64, Span),
        me: &str,
        settings: &LinkSettings,
    ) -> Result<SourceLink, LinkError> {
        let address = head
            .address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| LinkError::Refused(format!("{} resolves to nothing", head.address)))?;
        let stream = TcpStream::connect_timeout(&address, MIGRATION_CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(REPLICATION_WRITE_TIMEOUT))?;
        stream.set_read_timeout(Some(MIGRATION_SILENCE_TIMEOUT))?;
        let tls = match &settings.security.tls {
            None => None,
            Some(tls) => Some(tls.connect_peer(&stream, &head.address)?),
        };
        let (mut reader, mut writer) =
            wire::split(stream, tls, settings.limits.frame_bytes_max, REPLICATION_ACK_READ_BUFFER_BYTES);
        let hello = ReplicaHello {
            sender: me.to_owned(),
            receiver: head.name.clone(),
            migration: true,
            ..ReplicaHello::new()
        };
        let key = settings.security.peer_key.as_ref();
        let welcome = handshake::open(hello, key, target_chain, &mut reader, &mut writer, &head.name)?;
        if !welcome.accepted {
            return Err(LinkError::Refused(format!("{head} refused the migration: {}", welcome.reason)));
        }
        let (acked, closed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let ack_reader = {
            let (acked, closed) = (Arc::clone(&acked), Arc::clone(&closed));
            thread::Builder::new().name("migration-acks-in".into()).spawn(move || {
                while let Ok(Some(ack)) = reader.receive::<MigrationAck>() {
                    if ack.attempt == attempt {
                        acked.fetch_max(ack.items, Ordering::SeqCst);
                    }
                }
                closed.store(true, Ordering::SeqCst);
            })?
        };
        info!("migration of slots {}-{} (attempt {attempt}) streams to {head}", span.first, span.last);
        Ok(SourceLink { writer, attempt, span, acked, closed, ack_reader: Some(ack_reader) })
    }

    pub fn attempt(&self) -> u64 {
        self.attempt
    }

    /// Items the target acked, in all.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sends one frame (one item) of snapshot keys and records, or of writes.
    pub fn send(&mut self, mut frame: MigrationFrame) -> Result<(), LinkError> {
        (frame.attempt, frame.first_slot, frame.last_slot) =
            (self.attempt, u32::from(self.span.first), u32::from(self.span.last));
        self.writer.send(&frame)?;
        Ok(())
    }
}

impl Drop for SourceLink {
    fn drop(&mut self) {
        let _ = self.writer.stream().shutdown(Shutdown::Both);
        if let Some(reader) = self.ack_reader.take() {
            let _ = reader.join();
        }
    }
}

/// Cuts `items` into frames' worth: at most [`MIGRATION_FRAME_ITEMS_MAX`]
/// each, and no more once past [`MIGRATION_FRAME_BYTES_MAX`] (`bytes_of`
/// each), so one big value goes alone.
pub fn frames_of<T>(items: Vec<T>, bytes_of: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut frames = Vec::new();
    let (mut frame, mut bytes) = (Vec::new(), 0);
    for item in items {
        bytes += bytes_of(&item);
        frame.push(item);
        if frame.len() >= MIGRATION_FRAME_ITEMS_MAX || bytes >= MIGRATION_FRAME_BYTES_MAX {
            frames.push(std::mem::take(&mut frame));
            bytes = 0;
        }
    }
    if !frame.is_empty() {
        frames.push(frame);
    }
    frames
}

/// Serves one migration stream whose first frame was `hello`, at the
/// target chain's head, until it closes or the server stops.
pub fn serve_import(
    hello: Request,
    mut reader: FrameReader,
    mut writer: FrameWriter,
    replica: &Arc<Replica>,
    settings: &LinkSettings,
    stopping: &AtomicBool,
) -> Result<(), LinkError> {
    let sender = hello.replica_hello.sender.clone();
    handshake::admit(&hello, settings, &mut reader, &mut writer)?;
    let head = replica.is_head();
    let mut response = Response::new();
    response.opcode = Opcode::OP_REPLICATE.into();
    response.request_id = hello.request_id;
    let reason = if head { String::new() } else { "not this chain's head".to_owned() };
    response.replica_welcome =
        Some(ReplicaWelcome { accepted: head, reason, ..ReplicaWelcome::new() }).into();
    writer.send(&response)?;
    if !head {
        return Ok(());
    }
    reader.stream().set_read_timeout(Some(MIGRATION_SILENCE_TIMEOUT))?;
    let (pending, acks) = crossbeam_channel::unbounded::<(u64, u64, u64)>();
    thread::scope(|scope| {
        let acker = thread::Builder::new()
            .name("migration-acks-up".into())
            .spawn_scoped(scope, || send_acks(&acks, &mut writer, replica))?;
        let result = import_frames(&mut reader, replica, &pending, stopping);
        drop(pending);
        let _ = reader.stream().shutdown(Shutdown::Both);
        let _ = acker.join();
        if let Err(error) = &result {
            debug!("migration stream from {sender}: {error}");
        }
        result
    })
}

/// Imports each frame as writes of ours; tells the acker the last one's
/// sequence number, the attempt and the items taken by then.
fn import_frames(
    reader: &mut FrameReader,
    replica: &Replica,
    pending: &crossbeam_channel::Sender<(u64, u64, u64)>,
    stopping: &AtomicBool,
) -> Result<(), LinkError> {
    let mut items = 0u64;
    while !stopping.load(Ordering::SeqCst) {
        let Some(frame) = reader.receive::<MigrationFrame>()? else { return Ok(()) };
        let (first, last) = (u16::try_from(frame.first_slot), u16::try_from(frame.last_slot));
        let span = match (first, last) {
            (Ok(first), Ok(last)) if first <= last && last < crate::shard::slot::SLOT_COUNT => {
                Span { first, last }
            }
            _ => return Err(LinkError::Protocol(format!("slots {}-{}", frame.first_slot, frame.last_slot))),
        };
        let mut importer = replica.importer.lock();
        let importer = match importer.as_mut() {
            Some(importer) if importer.span() == span => importer,
            _ => importer.insert(Importer::new(span, None)),
        };
        let mut writes: Vec<ImportWrite> = Vec::new();
        match importer.frame(frame.attempt) {
            Import::Refuse => return Err(LinkError::Refused(format!("attempt {} is over", frame.attempt))),
            Import::StartOver => {
                info!(
                    "importing slots {}-{} (attempt {}): starting over",
                    span.first, span.last, frame.attempt
                );
                items = 0;
                writes.extend(
                    replica.keys_in(|slot| span.contains(slot)).into_iter().map(|key| ((key, None), None)),
                );
            }
            Import::Take => {}
        }
        writes.extend(frame.entries.into_iter().map(|entry| ((entry.key, Some(entry.value)), None)));
        writes.extend(frame.records.into_iter().map(|record| ((String::new(), None), Some(record))));
        writes.extend(
            frame.writes.into_iter().map(|write| ((write.key, write.value), write.record.into_option())),
        );
        let last = import_in_steps(replica, writes, importer)?;
        items += 1;
        if pending.send((last, frame.attempt, items)).is_err() {
            return Err(LinkError::Closed);
        }
    }
    Ok(())
}

/// Sequences `writes` a frame's worth at a time (one step each), so the
/// replication queue's room is waited for between them.
fn import_in_steps(
    replica: &Replica,
    mut writes: Vec<ImportWrite>,
    importer: &Importer,
) -> Result<u64, LinkError> {
    let mut last = 0;
    while !writes.is_empty() {
        let rest = writes.split_off(writes.len().min(MIGRATION_FRAME_ITEMS_MAX));
        last = replica
            .import_writes(std::mem::replace(&mut writes, rest), importer)
            .map_err(|refusal| LinkError::Refused(format!("importing: {}", refusal.message)))?;
    }
    Ok(last)
}

/// Acks each frame once our chain committed its writes, until the
/// importing side is done (the link closed: nobody reads acks any more).
fn send_acks(
    acks: &crossbeam_channel::Receiver<(u64, u64, u64)>,
    writer: &mut FrameWriter,
    replica: &Replica,
) {
    let mut waiting: VecDeque<(u64, u64, u64)> = VecDeque::new();
    loop {
        match acks.recv_timeout(Duration::from_millis(1)) {
            Ok(pending) => waiting.push_back(pending),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        }
        waiting.extend(acks.try_iter());
        let committed = replica.progress().committed;
        let mut due = None;
        while waiting.front().is_some_and(|(sequence, _, _)| *sequence <= committed) {
            due = waiting.pop_front();
        }
        if let Some((_, attempt, items)) = due
            && writer.send(&MigrationAck { attempt, items, ..MigrationAck::new() }).is_err()
        {
            return;
        }
        if !waiting.is_empty() {
            replica.wait_commit_change(committed, REPLICATION_ACK_POLL);
        }
    }
}
