//! Predecessor side of a replication link, as a transport: one thread that
//! carries out what its end of the link (the core's [`Downlink`]) decides —
//! open a link to the successor, resume from the Sent list or stream a
//! snapshot, forward queued writes in batches, hand the tail role over,
//! send heartbeats — over a blocking connection. A helper thread per link
//! reads the successor's cumulative acks.

use std::iter::Peekable;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use std::vec;

use log::{debug, info, warn};
use protobuf::Message;

use super::LinkSettings;
use super::{LinkError, handshake, probe};
use crate::chain::link::{Aim, Downlink, LinkFault};
use crate::chain::rejoin::{RejoinOffer, WriteId};
use crate::chain::{Progress, Welcome};
use crate::limits::{
    REPLICATION_ACK_READ_BUFFER_BYTES, REPLICATION_BATCH_MAX, REPLICATION_CONNECT_TIMEOUT,
    REPLICATION_QUEUE_POLL, REPLICATION_RECONNECT_PAUSE, REPLICATION_WRITE_TIMEOUT, SNAPSHOT_CHUNK_ENTRIES,
    SNAPSHOT_CHUNK_HISTORY_BYTES, UNAUTHENTICATED_LOG_PERIOD,
};
use crate::proto::{
    ClientRecord, Deadline, Downstream, Entry, ReplicaHello, ReplicaWelcome, Upstream, Write,
};
use crate::replica::transfers::TransferCount;
use crate::replica::{LinkStart, Replica, Snapshot};
use crate::throttle::{Every, suppressed_note};
use crate::view::Member;
use crate::wire::{self, FrameWriter};

/// The successor's latest cumulative ack, shared with the ack reader.
#[derive(Default)]
struct Acks {
    applied: AtomicU64,
    committed: AtomicU64,
    /// Frames received (acks and ack heartbeats): the successor is alive.
    frames: AtomicU64,
    /// The newest stamp on them plus one (0: none yet), echoed to renew
    /// the successor's read lease (see `chain::lease`).
    stamp_after: AtomicU64,
    /// The ack stream ended: the link is broken.
    closed: AtomicBool,
}

/// A successor that fails its proof is retried often; it is logged once
/// in a while.
static UNAUTHENTICATED_LOG: Every = Every::new(UNAUTHENTICATED_LOG_PERIOD);

/// Runs until `stopping` is set.
pub fn run(replica: &Replica, stopping: &AtomicBool, settings: &LinkSettings) {
    let mut link = Downlink::default();
    while !stopping.load(Ordering::SeqCst) {
        let (successor, hello) = match replica.aim(&mut link) {
            Aim::Open { successor, hello } => (*successor, *hello),
            Aim::Keep => {
                // Only a link that ended gets here; the next aim reopens.
                link.closed();
                continue;
            }
            Aim::Idle => {
                // Nobody to forward to: what was queued will never be sent.
                replica.outbox().clear();
                replica.set_sent_list_len(0);
                thread::sleep(REPLICATION_QUEUE_POLL);
                continue;
            }
        };
        match replicate_to(replica, &mut link, &successor, hello, stopping, settings) {
            Ok(()) => {}
            Err(error @ LinkError::Unauthenticated(_)) => {
                replica.peer_auth_failures.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = UNAUTHENTICATED_LOG.due() {
                    warn!("replication to {successor}: {error}{}", suppressed_note(suppressed));
                }
                thread::sleep(REPLICATION_RECONNECT_PAUSE);
            }
            Err(error) => {
                debug!("replication to {successor}: {error}");
                // A successor whose port refuses us now is gone.
                probe::probe_and_report(replica, &successor);
                thread::sleep(REPLICATION_RECONNECT_PAUSE);
            }
        }
        link.closed();
    }
}

/// One link to `successor`, until it breaks, the view changes or we stop.
fn replicate_to(
    replica: &Replica,
    link: &mut Downlink,
    successor: &Member,
    mut hello: ReplicaHello,
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
    hello.max_memory = replica.limits.memory_bytes_max.unwrap_or(0);
    let key = settings.security.peer_key.as_ref();
    let welcome =
        handshake::open(hello, key, &settings.chain_path, &mut reader, &mut writer, &successor.name)?;
    if !welcome.accepted {
        return Err(LinkError::Refused(format!("{successor} refused the link: {}", welcome.reason)));
    }
    reader.stream().set_read_timeout(None)?;

    let continuous = link.take_queued(replica.outbox().try_iter());
    let welcome = welcome_of(&welcome);
    match replica.link_welcomed(link, &welcome, continuous) {
        LinkStart::NotReady => {
            return Err(LinkError::NotReady("our own state transfer is not complete yet".into()));
        }
        LinkStart::Snapshot(snapshot) => {
            send_snapshot(&mut writer, snapshot, successor, &replica.transfers.sent)?;
        }
        LinkStart::Resume { after, rejoin } => {
            let what = if rejoin { "its own table (a rejoin, no state transfer)" } else { "replication" };
            info!("resuming {what} to {successor} after write {after}");
            for frame in link.resume_frames(after, rejoin, REPLICATION_BATCH_MAX) {
                writer.send(&frame)?;
            }
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
                    if let Some(stamp_ms) = upstream.stamp_ms {
                        acks.stamp_after.fetch_max(stamp_ms.saturating_add(1), Ordering::SeqCst);
                    }
                    acks.frames.fetch_add(1, Ordering::SeqCst);
                    if let Err(refusal) = replica.on_successor_progress(&successor.name, upstream.committed) {
                        warn!("replication to {successor}: {}", refusal.message);
                        break;
                    }
                }
                acks.closed.store(true, Ordering::SeqCst);
            })?;
        let result = stream_writes(replica, link, successor, &mut writer, &acks, stopping);
        let _ = writer.stream().shutdown(Shutdown::Both);
        let _ = ack_reader.join();
        result
    })
}

/// Steady state: what the link's end decides each round (successor
/// check, trim, hand-over, whether a frame is due), carried out.
fn stream_writes(
    replica: &Replica,
    link: &mut Downlink,
    successor: &Member,
    writer: &mut FrameWriter,
    acks: &Acks,
    stopping: &AtomicBool,
) -> Result<(), LinkError> {
    let mut downstream = Downstream::new();
    let mut frames_seen = 0;
    while !stopping.load(Ordering::SeqCst) {
        if acks.closed.load(Ordering::SeqCst) {
            return Err(LinkError::Closed);
        }
        let frames = acks.frames.load(Ordering::SeqCst);
        if frames != std::mem::replace(&mut frames_seen, frames) {
            let stamp_ms = acks.stamp_after.load(Ordering::SeqCst).checked_sub(1);
            link.heard(replica.now_ms(), stamp_ms);
        }
        if link.probe_due(replica.now_ms()) {
            probe::probe_and_report(replica, successor);
        }
        link.acked(Progress {
            applied: acks.applied.load(Ordering::SeqCst),
            committed: acks.committed.load(Ordering::SeqCst),
        });
        let extras = match replica.link_streaming_step(link) {
            Ok(extras) => extras,
            Err(LinkFault::Retarget) => return Ok(()),
            Err(fault) => return Err(LinkError::Protocol(fault.describe(&successor.name).message)),
        };
        replica.set_sent_list_len(link.sent_len());
        let room = link.room(replica.limits.sent_max, REPLICATION_BATCH_MAX);
        let before = link.sent_len();
        if room == 0 {
            thread::sleep(Duration::from_millis(1));
        } else {
            replica.outbox().wait_for_writes(REPLICATION_QUEUE_POLL);
            if !link.take_queued(replica.outbox().try_iter().take(room)) {
                return Err(LinkError::NotReady(
                    LinkFault::StreamRestarted.describe(&successor.name).message,
                ));
            }
        }
        if link.frame_due(before, &extras, replica.now_ms()) {
            // The batch is lent to the frame and given back to the Sent
            // list, sent or not (a failed link resends it), without a copy.
            link.lend_frame(before, &extras, &mut downstream);
            let result = writer.send(&downstream);
            link.give_back(&mut downstream);
            result?;
        }
    }
    Ok(())
}

/// One expiring key's deadline, for a snapshot chunk.
fn deadline_of((key, deadline_ms): (String, u64)) -> Deadline {
    let mut deadline = Deadline::new();
    deadline.key = key;
    deadline.deadline_ms = deadline_ms;
    deadline
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
    let mut point = snapshot.point;
    info!("state transfer to {successor}: {total_keys} keys at write {}", point.sequence);
    let mut clients: Vec<ClientRecord> = std::mem::take(&mut point.clients);
    let mut deadlines = std::mem::take(&mut point.deadlines).into_iter().peekable();
    let mut entries = snapshot.entries.into_iter().peekable();
    let mut history = snapshot.history.into_iter().peekable();
    let mut first = true;
    loop {
        let mut chunk = point.chunk_header(total_keys);
        chunk.entries =
            entries.by_ref().take(SNAPSHOT_CHUNK_ENTRIES).map(|stored| Entry::from_stored(&stored)).collect();
        let client_count = clients.len().min(SNAPSHOT_CHUNK_ENTRIES);
        chunk.clients = clients.drain(..client_count).collect();
        chunk.deadlines = deadlines.by_ref().take(SNAPSHOT_CHUNK_ENTRIES).map(deadline_of).collect();
        chunk.history = history_part(&mut history);
        chunk.last = entries.peek().is_none()
            && clients.is_empty()
            && deadlines.peek().is_none()
            && history.peek().is_none();
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

/// A chunk's part of the watch history: at most as many writes as a
/// chunk's entries, and none past the first once they hold
/// `SNAPSHOT_CHUNK_HISTORY_BYTES`, so a history of large values is spread
/// over frames rather than sent as one.
fn history_part(history: &mut Peekable<vec::IntoIter<Write>>) -> Vec<Write> {
    let mut part = Vec::new();
    let mut bytes = 0;
    while part.len() < SNAPSHOT_CHUNK_ENTRIES && bytes < SNAPSHOT_CHUNK_HISTORY_BYTES {
        let Some(write) = history.next() else { break };
        bytes += write.compute_size();
        part.push(write);
    }
    part
}

/// The core's view of a successor's welcome.
fn welcome_of(welcome: &ReplicaWelcome) -> Welcome {
    let last = WriteId { origin: welcome.rejoin_origin_epoch, digest: welcome.rejoin_digest };
    let offered = welcome.rejoin_generation != 0 && last.origin != 0;
    Welcome {
        link: 0,
        last_applied: welcome.last_applied,
        wants_snapshot: welcome.wants_snapshot,
        rejoin: offered.then_some(RejoinOffer { generation: welcome.rejoin_generation, last }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts of a history of `count` writes of `value_bytes` each.
    fn parts(count: u64, value_bytes: usize) -> Vec<usize> {
        let write =
            |sequence| Write { sequence, key: "k".into(), value: Some(vec![0; value_bytes]), ..Write::new() };
        let mut history = (1..=count).map(write).collect::<Vec<_>>().into_iter().peekable();
        std::iter::from_fn(|| Some(history_part(&mut history)).filter(|part| !part.is_empty()))
            .map(|part| part.len())
            .collect()
    }

    #[test]
    fn a_history_is_spread_over_chunks_by_count_and_bytes() {
        assert_eq!(parts(20_000, 1), [8192, 8192, 3616], "at most a chunk's entries");
        assert_eq!(parts(10, 1 << 20), [4, 4, 2], "no more once 4 MiB are in");
        assert_eq!(parts(2, 5 << 20), [1, 1], "a write larger than that alone");
    }
}
