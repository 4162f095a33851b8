//! Successor side of a replication link, as a transport: each frame from
//! the predecessor goes to our end of the link (the core's [`Uplink`]),
//! which applies it in order; acks go back when it says so.

use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use log::{info, warn};
use parking_lot::Mutex;
use protobuf::Message;

use super::{LinkError, LinkSettings, handshake, probe};
use crate::chain::Progress;
use crate::chain::link::{Ack, Uplink};
use crate::limits::{
    Limits, REPLICATION_ACK_POLL, REPLICATION_SILENCE_TIMEOUT, SNAPSHOT_CHUNK_ENTRIES, display_bytes,
};
use crate::proto::{Downstream, Opcode, ReplicaWelcome, Request, Response, Upstream};
use crate::replica::Replica;
use crate::wire::{FrameReader, FrameWriter};

/// Serves one replication link whose first frame was `hello`. Returns when
/// the link closes, the predecessor is no longer ours, or the server stops.
pub fn serve(
    hello: Request,
    mut reader: FrameReader,
    mut writer: FrameWriter,
    replica: &Arc<Replica>,
    settings: &LinkSettings,
    stopping: &AtomicBool,
) -> Result<(), LinkError> {
    let sender = hello.replica_hello.sender.clone();
    handshake::admit(&hello, settings, &mut reader, &mut writer)?;
    let mut welcome = ReplicaWelcome::new();
    let mut uplink = None;
    match replica.accept_link(&hello.replica_hello) {
        Ok((accepted, answer)) => {
            welcome.accepted = true;
            welcome.last_applied = answer.last_applied;
            welcome.wants_snapshot = answer.wants_snapshot;
            if let Some(offer) = answer.rejoin {
                welcome.rejoin_generation = offer.generation;
                (welcome.rejoin_origin_epoch, welcome.rejoin_digest) = (offer.last.origin, offer.last.digest);
            }
            uplink = Some(accepted);
        }
        Err(refusal) => welcome.reason = refusal.message,
    }
    let mut response = Response::new();
    response.opcode = Opcode::OP_REPLICATE.into();
    response.request_id = hello.request_id;
    response.replica_welcome = Some(welcome.clone()).into();
    writer.send(&response)?;
    let Some(uplink) = uplink else {
        return Ok(());
    };
    info!(
        "replication link from {sender}: last applied {}, {}",
        welcome.last_applied,
        if welcome.wants_snapshot { "state transfer first" } else { "resuming" }
    );
    warn_if_memory_limits_differ(&sender, hello.replica_hello.max_memory, replica);
    reader.stream().set_read_timeout(Some(REPLICATION_SILENCE_TIMEOUT))?;
    let link_open = Arc::new(AtomicBool::new(true));
    let upstream = Arc::new(AckChannel { link: Mutex::new((writer, uplink)) });
    let acks = {
        let (replica, link_open, upstream) =
            (Arc::clone(replica), Arc::clone(&link_open), Arc::clone(&upstream));
        thread::Builder::new()
            .name("replication-acks-up".into())
            .spawn(move || send_acks(&upstream, &replica, &link_open))?
    };
    let result = receive_stream(&sender, &mut reader, replica, &settings.limits, &upstream, stopping);
    link_open.store(false, Ordering::SeqCst);
    let _ = reader.stream().shutdown(Shutdown::Both);
    let _ = acks.join();
    if let Err(error) = &result {
        warn!("replication link from {sender} closed: {error}");
    }
    // Our predecessor's link ended: if its port refuses us now, it is gone.
    if !stopping.load(Ordering::SeqCst)
        && let Some(predecessor) = replica.predecessor_named(&sender)
    {
        probe::probe_and_report(replica, &predecessor);
    }
    result
}

/// Warns (once per link) when our predecessor's `--max-memory` is not
/// ours: only the head's limit decides what the chain holds, and every
/// replica applies what it is sent, so ours may be passed, or never reached.
fn warn_if_memory_limits_differ(sender: &str, theirs: u64, replica: &Replica) {
    let ours = replica.limits.memory_bytes_max.unwrap_or(0);
    if theirs != ours {
        let shown = |bytes: u64| if bytes == 0 { "none".to_owned() } else { display_bytes(bytes) };
        warn!(
            "predecessor {sender} has --max-memory {}, this server {}: only the head's limit counts, and \
             replicated writes are applied whatever this server's limit",
            shown(theirs),
            shown(ours)
        );
    }
}

/// Carries out each frame through our end of the link, then acknowledges
/// what it committed.
fn receive_stream(
    sender: &str,
    reader: &mut FrameReader,
    replica: &Replica,
    limits: &Limits,
    upstream: &AckChannel,
    stopping: &AtomicBool,
) -> Result<(), LinkError> {
    let mut snapshot_started = None;
    let mut snapshot_keys = 0u64;
    while !stopping.load(Ordering::SeqCst) {
        let Some(downstream) = reader.receive::<Downstream>()? else {
            return Ok(());
        };
        within_limits(&downstream, limits)?;
        let chunk = downstream.snapshot.as_ref().map(|chunk| {
            (chunk.compute_size(), chunk.entries.len() as u64, chunk.total_keys, chunk.last, chunk.sequence)
        });
        let reported = upstream.reported();
        upstream.receive(replica, downstream).map_err(|refusal| LinkError::Refused(refusal.message))?;
        if let Some((bytes, keys, total, last, sequence)) = chunk {
            replica.transfers.received.chunk(bytes, snapshot_started.is_none());
            let started = *snapshot_started.get_or_insert_with(Instant::now);
            snapshot_keys += keys;
            if last {
                info!(
                    "state transfer from {sender} complete: {snapshot_keys} keys at write {sequence} in {} ms",
                    started.elapsed().as_millis()
                );
            } else if snapshot_keys.is_multiple_of(SNAPSHOT_CHUNK_ENTRIES as u64 * 16) {
                info!("state transfer from {sender}: {snapshot_keys} of {total} keys");
            }
        }
        // What this frame committed (at the tail, every batch): say so now,
        // from this thread.
        if replica.progress().committed > reported.committed && !upstream.report(replica) {
            return Err(LinkError::Closed);
        }
    }
    Ok(())
}

/// Refuses keys and values over the limits a client's are held to: an
/// authenticated peer applies the same rules, so this fails only against a
/// predecessor with larger limits (which its log and ours then show).
/// The same holds for the writes of a snapshot's watch history, which
/// watchers are sent as they are.
fn within_limits(downstream: &Downstream, limits: &Limits) -> Result<(), LinkError> {
    let snapshot = downstream.snapshot.as_ref();
    let entries = snapshot.map(|chunk| chunk.entries.as_slice()).unwrap_or_default();
    let history = snapshot.map(|chunk| chunk.history.as_slice()).unwrap_or_default();
    let pairs = downstream
        .writes
        .iter()
        .chain(history)
        .flat_map(|write| {
            let first = (write.key.as_str(), write.value.as_deref().unwrap_or_default());
            std::iter::once(first)
                .chain(write.more.iter().map(|entry| (entry.key.as_str(), entry.value.as_slice())))
        })
        .chain(entries.iter().map(|entry| (entry.key.as_str(), entry.value.as_slice())));
    for (key, value) in pairs {
        if key.len() > limits.key_bytes_max || value.len() > limits.value_bytes_max {
            return Err(LinkError::Protocol(format!(
                "a replicated key of {} bytes or value of {} bytes is over this server's limits ({} and {}                  bytes): give every member the same --max-key and --max-value",
                key.len(),
                value.len(),
                limits.key_bytes_max,
                limits.value_bytes_max
            )));
        }
    }
    Ok(())
}

/// Our end of the link and its upstream half (cumulative acks to the
/// predecessor), shared by the receiving thread (frames in, and acks for
/// commits its own frames made) and the ack thread (the rest). The lock
/// keeps frames whole and the reported progress monotonic.
struct AckChannel {
    link: Mutex<(FrameWriter, Uplink)>,
}

impl AckChannel {
    fn reported(&self) -> Progress {
        self.link.lock().1.reported()
    }

    /// Carries out one frame from the predecessor.
    fn receive(&self, replica: &Replica, frame: Downstream) -> Result<(), crate::chain::Refusal> {
        replica.receive_frame(&mut self.link.lock().1, frame)
    }

    /// Sends our progress if our end of the link says so. False when the
    /// link is unusable: the write failed, or the sender is no longer our
    /// predecessor.
    fn report(&self, replica: &Replica) -> bool {
        let mut link = self.link.lock();
        let (writer, uplink) = &mut *link;
        match replica.ack_due(uplink) {
            Ack::Close => false,
            Ack::Nothing => true,
            Ack::Send { progress, stamp_ms } => {
                let mut upstream = Upstream::new();
                upstream.applied = progress.applied;
                upstream.committed = progress.committed;
                upstream.stamp_ms = Some(stamp_ms);
                writer.send(&upstream).is_ok()
            }
        }
    }
}

/// The ack thread: sends `Upstream` whenever our commit point moves by our
/// successor's acks (a middle server), and other progress (writes applied,
/// not yet committed) at the next poll, until the link closes. Only commits
/// are urgent: `applied` matters upstream only for the hand-over to a
/// joining server, which commits what it applies at once. Commits that
/// arrive while a frame is being sent go up together in the next one.
fn send_acks(upstream: &AckChannel, replica: &Replica, link_open: &AtomicBool) {
    while link_open.load(Ordering::SeqCst) {
        let reported = upstream.reported();
        // Unchanged progress still goes up once an interval: the heartbeat
        // our end of the link decides on.
        replica.wait_commit_change(reported.committed, REPLICATION_ACK_POLL);
        if !upstream.report(replica) {
            return;
        }
    }
}
