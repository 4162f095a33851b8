//! Predecessor side of a replication link: one thread that drains the
//! replica's queue into a blocking connection to the current successor, in
//! batches, keeps the Sent list (writes forwarded and not yet committed),
//! resends it after a successor change, and streams a snapshot to a joining
//! successor. A helper thread per link reads the successor's cumulative acks.

use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use protobuf::Message;

use super::LinkSettings;
use super::{LinkError, handshake};
use crate::chain::sent::SentList;
use crate::limits::{
    REPLICATION_ACK_READ_BUFFER_BYTES, REPLICATION_BATCH_MAX, REPLICATION_CONNECT_TIMEOUT,
    REPLICATION_HEARTBEAT_INTERVAL, REPLICATION_QUEUE_POLL, REPLICATION_RECONNECT_PAUSE,
    REPLICATION_WRITE_TIMEOUT, SNAPSHOT_CHUNK_ENTRIES, UNAUTHENTICATED_LOG_PERIOD,
};
use crate::proto::{ClientRecord, Downstream, Entry, ReplicaHello, SnapshotChunk, Upstream, Write};
use crate::replica::transfers::TransferCount;
use crate::replica::{Replica, Snapshot};
use crate::throttle::{Every, suppressed_note};
use crate::view::Member;
use crate::wire::{self, FrameWriter};

/// The successor's latest cumulative ack, shared with the ack reader.
#[derive(Default)]
struct Acks {
    applied: AtomicU64,
    committed: AtomicU64,
    /// The ack stream ended: the link is broken.
    closed: AtomicBool,
}

/// A successor that fails its proof is retried often; it is logged once
/// in a while.
static UNAUTHENTICATED_LOG: Every = Every::new(UNAUTHENTICATED_LOG_PERIOD);

/// Runs until `stopping` is set.
pub fn run(replica: &Replica, stopping: &AtomicBool, settings: &LinkSettings) {
    let mut sent = SentList::default();
    while !stopping.load(Ordering::SeqCst) {
        let successor = replica
            .position()
            .filter(|_| replica.may_replicate())
            .and_then(|position| Some((position.me, position.successor?)));
        let Some((me, successor)) = successor else {
            if !replica.is_forwarding() || !replica.may_replicate() {
                // Nobody to forward to: what was queued will never be sent.
                replica.outbox().clear();
                sent.forget();
                replica.set_sent_list_len(0);
            }
            thread::sleep(REPLICATION_QUEUE_POLL);
            continue;
        };
        match replicate_to(replica, &me.name, &successor, &mut sent, stopping, settings) {
            Ok(()) => {}
            Err(error @ LinkError::Unauthenticated(_)) => {
                if let Some(suppressed) = UNAUTHENTICATED_LOG.due() {
                    warn!("replication to {successor}: {error}{}", suppressed_note(suppressed));
                }
                thread::sleep(REPLICATION_RECONNECT_PAUSE);
            }
            Err(error) => {
                debug!("replication to {successor}: {error}");
                thread::sleep(REPLICATION_RECONNECT_PAUSE);
            }
        }
    }
}

/// One link to `successor`, until it breaks, the view changes or we stop.
fn replicate_to(
    replica: &Replica,
    me: &str,
    successor: &Member,
    sent: &mut SentList,
    stopping: &AtomicBool,
    settings: &LinkSettings,
) -> Result<(), LinkError> {
    let address = successor
        .address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| LinkError::Refused(format!("{} resolves to nothing", successor.address)))?;
    let stream = TcpStream::connect_timeout(&address, REPLICATION_CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(REPLICATION_WRITE_TIMEOUT))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let tls = match &settings.security.tls {
        None => None,
        Some(tls) => Some(tls.connect_peer(&stream, &successor.address)?),
    };
    let (mut reader, mut writer) =
        wire::split(stream, tls, settings.limits.frame_bytes_max, REPLICATION_ACK_READ_BUFFER_BYTES);
    let mut greeting = ReplicaHello::new();
    greeting.sender = me.to_owned();
    greeting.receiver = successor.name.clone();
    greeting.epoch = replica.view_epoch();
    greeting.max_memory = replica.limits.memory_bytes_max.unwrap_or(0);
    let key = settings.security.peer_key.as_ref();
    let welcome =
        handshake::open(greeting, key, &settings.chain_path, &mut reader, &mut writer, &successor.name)?;
    if !welcome.accepted {
        return Err(LinkError::Refused(format!("{successor} refused the link: {}", welcome.reason)));
    }
    reader.stream().set_read_timeout(None)?;

    let continuous = pull_queue(replica, sent, usize::MAX);
    if welcome.wants_snapshot || !continuous || !sent.can_resume_after(welcome.last_applied) {
        let Some(snapshot) = replica.snapshot() else {
            return Err(LinkError::NotReady("our own state transfer is not complete yet".into()));
        };
        sent.restart_at(snapshot.stream, snapshot.sequence);
        send_snapshot(&mut writer, snapshot, successor, &replica.transfers.sent)?;
    } else {
        info!("resuming replication to {successor} after write {}", welcome.last_applied);
        let resend: Vec<Write> = sent.after(welcome.last_applied).cloned().collect();
        for batch in resend.chunks(REPLICATION_BATCH_MAX) {
            let mut downstream = Downstream::new();
            downstream.writes = batch.to_vec();
            writer.send(&downstream)?;
        }
    }

    let acks = Acks::default();
    thread::scope(|scope| {
        let ack_reader =
            thread::Builder::new().name("replication-acks-in".into()).spawn_scoped(scope, || {
                // Commits are reported to the replica here, at once, so the
                // head's waiting clients do not wait for the sender's loop.
                while let Ok(Some(upstream)) = reader.receive::<Upstream>() {
                    acks.applied.fetch_max(upstream.applied, Ordering::SeqCst);
                    acks.committed.fetch_max(upstream.committed, Ordering::SeqCst);
                    if let Err(refusal) = replica.on_successor_progress(&successor.name, upstream.committed) {
                        warn!("replication to {successor}: {}", refusal.message);
                        break;
                    }
                }
                acks.closed.store(true, Ordering::SeqCst);
            })?;
        let result = stream_writes(replica, successor, sent, &mut writer, &acks, stopping);
        let _ = writer.stream().shutdown(Shutdown::Both);
        let _ = ack_reader.join();
        result
    })
}

/// Steady state: forward queued writes in batches, trim on acks, hand over
/// the tail role when a joining successor has caught up.
fn stream_writes(
    replica: &Replica,
    successor: &Member,
    sent: &mut SentList,
    writer: &mut FrameWriter,
    acks: &Acks,
    stopping: &AtomicBool,
) -> Result<(), LinkError> {
    let mut last_frame = Instant::now();
    let mut downstream = Downstream::new();
    while !stopping.load(Ordering::SeqCst) {
        if !replica.has_successor(&successor.name) {
            return Ok(());
        }
        if acks.closed.load(Ordering::SeqCst) {
            return Err(LinkError::Closed);
        }
        if let Err(beyond) = sent.trim(acks.committed.load(Ordering::SeqCst)) {
            return Err(LinkError::Protocol(format!(
                "{successor} acknowledged write {} but only {} were sent",
                beyond.acked, beyond.last_sent
            )));
        }
        replica.set_sent_list_len(sent.len());

        downstream.promote_at = replica.try_hand_over(&successor.name, acks.applied.load(Ordering::SeqCst));
        let room = replica.limits.sent_max.saturating_sub(sent.len()).min(REPLICATION_BATCH_MAX);
        let before = sent.len();
        if room == 0 {
            thread::sleep(Duration::from_millis(1));
        } else if !pull_queue_waiting(replica, sent, room) {
            return Err(LinkError::NotReady(
                "writes were not forwarded for a while; the successor needs a snapshot".into(),
            ));
        }
        let idle = last_frame.elapsed() >= REPLICATION_HEARTBEAT_INTERVAL;
        if sent.len() > before || downstream.promote_at.is_some() || idle {
            // The batch is lent to the frame and given back to the Sent
            // list, sent or not (a failed link resends it), without a copy.
            sent.lend(before, &mut downstream.writes);
            let result = writer.send(&downstream);
            sent.give_back(&mut downstream.writes);
            result?;
            last_frame = Instant::now();
        }
    }
    Ok(())
}

/// Moves up to `limit` queued writes into the Sent list without waiting.
/// Returns false if a new stream of writes began (the Sent list started
/// over: the successor needs a snapshot).
fn pull_queue(replica: &Replica, sent: &mut SentList, limit: usize) -> bool {
    let mut continuous = true;
    for (stream, write) in replica.outbox().try_iter().take(limit) {
        continuous &= sent.push(stream, write);
    }
    continuous
}

/// Like [`pull_queue`], but waits briefly for the first write.
fn pull_queue_waiting(replica: &Replica, sent: &mut SentList, limit: usize) -> bool {
    replica.outbox().wait_for_writes(REPLICATION_QUEUE_POLL);
    pull_queue(replica, sent, limit)
}

/// Streams `snapshot` in chunks.
fn send_snapshot(
    writer: &mut FrameWriter,
    snapshot: Snapshot,
    successor: &Member,
    sent: &TransferCount,
) -> Result<(), LinkError> {
    let started = Instant::now();
    let total_keys = snapshot.entries.len() as u64;
    info!("state transfer to {successor}: {total_keys} keys at write {}", snapshot.sequence);
    let mut clients: Vec<ClientRecord> = snapshot.clients;
    let mut entries = snapshot.entries.into_iter().peekable();
    let mut first = true;
    loop {
        let mut chunk = SnapshotChunk::new();
        chunk.sequence = snapshot.sequence;
        chunk.write_epoch = snapshot.write_epoch;
        chunk.total_keys = total_keys;
        chunk.entries = entries.by_ref().take(SNAPSHOT_CHUNK_ENTRIES).map(Entry::from_pair).collect();
        let client_count = clients.len().min(SNAPSHOT_CHUNK_ENTRIES);
        chunk.clients = clients.drain(..client_count).collect();
        chunk.last = entries.peek().is_none() && clients.is_empty();
        let last = chunk.last;
        let mut downstream = Downstream::new();
        downstream.snapshot = Some(chunk).into();
        writer.send(&downstream)?;
        sent.chunk(downstream.compute_size(), std::mem::take(&mut first));
        if last {
            break;
        }
    }
    info!("state transfer to {successor} sent in {} ms", started.elapsed().as_millis());
    Ok(())
}
