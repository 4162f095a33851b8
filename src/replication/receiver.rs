//! Successor side of a replication link: apply what the predecessor sends,
//! in order, and report progress back (cumulative acks).

use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use log::{info, warn};
use parking_lot::Mutex;
use protobuf::Message;

use super::{LinkError, LinkSettings, handshake};
use crate::chain::{Progress, Refusal};
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
    if writer.tls().is_some_and(|session| !session.peer_has_certificate()) {
        return Err(LinkError::Refused(format!(
            "a link claiming to be from {sender} showed no TLS certificate; peers must (mutual TLS)"
        )));
    }
    let key = settings.security.peer_key.as_ref();
    handshake::accept(&hello, key, &settings.chain_path, &mut reader, &mut writer)?;
    // Proved (or nothing to prove): the predecessor's frames are paced by
    // the chain, not by a deadline.
    reader.set_frame_timeout(None);
    let mut welcome = ReplicaWelcome::new();
    let mut link = 0;
    match replica.welcome(&hello.replica_hello) {
        Ok(accepted) => {
            welcome.accepted = true;
            welcome.last_applied = accepted.last_applied;
            welcome.wants_snapshot = accepted.wants_snapshot;
            link = accepted.link;
        }
        Err(refusal) => welcome.reason = refusal.message,
    }
    let mut response = Response::new();
    response.opcode = Opcode::OP_REPLICATE.into();
    response.request_id = hello.request_id;
    response.replica_welcome = Some(welcome.clone()).into();
    writer.send(&response)?;
    if !welcome.accepted {
        return Ok(());
    }
    info!(
        "replication link from {sender}: last applied {}, {}",
        welcome.last_applied,
        if welcome.wants_snapshot { "state transfer first" } else { "resuming" }
    );
    warn_if_memory_limits_differ(&sender, hello.replica_hello.max_memory, replica);
    reader.stream().set_read_timeout(Some(REPLICATION_SILENCE_TIMEOUT))?;
    let link_open = Arc::new(AtomicBool::new(true));
    let peer = Peer { name: sender.clone(), link };
    let upstream =
        Arc::new(AckChannel { peer: peer.clone(), writer: Mutex::new((writer, Progress::default())) });
    let acks = {
        let (replica, link_open, upstream) =
            (Arc::clone(replica), Arc::clone(&link_open), Arc::clone(&upstream));
        thread::Builder::new()
            .name("replication-acks-up".into())
            .spawn(move || send_acks(&upstream, &replica, &link_open))?
    };
    let result = receive_stream(&peer, &mut reader, replica, &settings.limits, &upstream, stopping);
    link_open.store(false, Ordering::SeqCst);
    let _ = reader.stream().shutdown(Shutdown::Both);
    let _ = acks.join();
    if let Err(error) = &result {
        warn!("replication link from {sender} closed: {error}");
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

/// The predecessor at the other end of a link, and the link's number
/// (frames are accepted only on its latest link).
#[derive(Clone)]
struct Peer {
    name: String,
    link: u64,
}

fn receive_stream(
    peer: &Peer,
    reader: &mut FrameReader,
    replica: &Replica,
    limits: &Limits,
    upstream: &AckChannel,
    stopping: &AtomicBool,
) -> Result<(), LinkError> {
    let refused = |refusal: Refusal| LinkError::Refused(refusal.message);
    let mut snapshot_started = None;
    let mut snapshot_keys = 0u64;
    while !stopping.load(Ordering::SeqCst) {
        let Some(downstream) = reader.receive::<Downstream>()? else {
            return Ok(());
        };
        // Also on heartbeats: a predecessor replaced in the view is cut off
        // even when it has nothing to send.
        let (sender, link) = (peer.name.as_str(), peer.link);
        replica.accepts_from(sender, link).map_err(refused)?;
        within_limits(&downstream, limits)?;
        if let Some(chunk) = downstream.snapshot.into_option() {
            let (total, last, sequence) = (chunk.total_keys, chunk.last, chunk.sequence);
            snapshot_keys += chunk.entries.len() as u64;
            let (bytes, first) = (chunk.compute_size(), snapshot_started.is_none());
            replica.install_chunk(sender, link, chunk, first).map_err(refused)?;
            replica.transfers.received.chunk(bytes, first);
            let started = *snapshot_started.get_or_insert_with(Instant::now);
            if last {
                info!(
                    "state transfer from {sender} complete: {snapshot_keys} keys at write {sequence} in {} ms",
                    started.elapsed().as_millis()
                );
            } else if snapshot_keys.is_multiple_of(SNAPSHOT_CHUNK_ENTRIES as u64 * 16) {
                info!("state transfer from {sender}: {snapshot_keys} of {total} keys");
            }
        }
        if !downstream.writes.is_empty() {
            replica.apply_replicated(sender, link, downstream.writes).map_err(refused)?;
            // At the tail the batch committed: say so now, from this thread.
            if replica.progress().committed > upstream.reported().committed && !upstream.report(replica) {
                return Err(LinkError::Closed);
            }
        }
        if let Some(promote_at) = downstream.promote_at {
            replica.set_promote_at(sender, link, promote_at).map_err(refused)?;
        }
    }
    Ok(())
}

/// Refuses keys and values over the limits a client's are held to: an
/// authenticated peer applies the same rules, so this fails only against a
/// predecessor with larger limits (which its log and ours then show).
fn within_limits(downstream: &Downstream, limits: &Limits) -> Result<(), LinkError> {
    let snapshot = downstream.snapshot.as_ref().map(|chunk| chunk.entries.as_slice()).unwrap_or_default();
    let pairs = downstream
        .writes
        .iter()
        .flat_map(|write| {
            let first = (write.key.as_str(), write.value.as_deref().unwrap_or_default());
            std::iter::once(first)
                .chain(write.more.iter().map(|entry| (entry.key.as_str(), entry.value.as_slice())))
        })
        .chain(snapshot.iter().map(|entry| (entry.key.as_str(), entry.value.as_slice())));
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

/// The upstream half of a link: cumulative acks to the predecessor, sent
/// by the receiving thread for commits its own batches made (at the tail)
/// and by the ack thread for the rest. The lock keeps frames whole and the
/// reported progress monotonic.
struct AckChannel {
    /// The predecessor and the link.
    peer: Peer,
    /// The link's writing half and the progress last sent on it.
    writer: Mutex<(FrameWriter, Progress)>,
}

impl AckChannel {
    fn reported(&self) -> Progress {
        self.writer.lock().1
    }

    /// Sends our progress if it moved since the last ack. False when the
    /// link is unusable: the write failed, or `sender` is no longer our
    /// predecessor (after that our progress may count writes it never sent
    /// us).
    fn report(&self, replica: &Replica) -> bool {
        let mut link = self.writer.lock();
        let Some(progress) = replica.progress_for_predecessor(&self.peer.name, self.peer.link) else {
            return false;
        };
        if progress == link.1 {
            return true;
        }
        let mut upstream = Upstream::new();
        upstream.applied = progress.applied;
        upstream.committed = progress.committed;
        if link.0.send(&upstream).is_err() {
            return false;
        }
        link.1 = progress;
        true
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
        if replica.wait_commit_change(reported.committed, REPLICATION_ACK_POLL) == reported {
            continue;
        }
        if !upstream.report(replica) {
            return;
        }
    }
}
