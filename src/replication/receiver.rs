//! Successor side of a replication link: apply what the predecessor sends,
//! in order, and report progress back (cumulative acks).

use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::SILENCE_TIMEOUT;
use crate::proto::{Downstream, Opcode, ReplicaWelcome, Request, Response, Upstream};
use crate::replica::{Progress, Replica};
use crate::wire::{FrameError, FrameReader, FrameWriter};

/// How long the ack writer waits for a commit before checking whether the
/// link is still open and reporting progress that is not a commit.
const ACK_POLL: Duration = Duration::from_millis(100);

/// Serves one replication link whose first frame was `hello`. Returns when
/// the link closes, the predecessor is no longer ours, or the server stops.
pub fn serve(
    hello: Request,
    mut reader: FrameReader,
    mut writer: FrameWriter,
    replica: &Arc<Replica>,
    stopping: &AtomicBool,
) -> Result<(), FrameError> {
    let sender = hello.replica_hello.sender.clone();
    let mut welcome = ReplicaWelcome::new();
    match replica.welcome(&sender) {
        Ok((last_applied, wants_snapshot)) => {
            welcome.accepted = true;
            welcome.last_applied = last_applied;
            welcome.wants_snapshot = wants_snapshot;
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
    reader.stream().set_read_timeout(Some(SILENCE_TIMEOUT)).map_err(FrameError::Io)?;
    let link_open = Arc::new(AtomicBool::new(true));
    let acks = {
        let (replica, link_open) = (Arc::clone(replica), Arc::clone(&link_open));
        thread::Builder::new()
            .name("replication-acks-up".into())
            .spawn({
                let sender = sender.clone();
                move || send_acks(&mut writer, &replica, &sender, &link_open)
            })
            .map_err(FrameError::Io)?
    };
    let result = receive_stream(&sender, &mut reader, replica, stopping);
    link_open.store(false, Ordering::SeqCst);
    let _ = reader.stream().shutdown(Shutdown::Both);
    let _ = acks.join();
    if let Err(error) = &result {
        warn!("replication link from {sender} closed: {error}");
    }
    result
}

fn receive_stream(
    sender: &str,
    reader: &mut FrameReader,
    replica: &Replica,
    stopping: &AtomicBool,
) -> Result<(), FrameError> {
    let refused = |refusal: crate::replica::Refusal| FrameError::Malformed(refusal.message);
    let mut snapshot_started = None;
    let mut snapshot_keys = 0u64;
    while !stopping.load(Ordering::SeqCst) {
        let Some(downstream) = reader.receive::<Downstream>()? else {
            return Ok(());
        };
        // Also on heartbeats: a predecessor replaced in the view is cut off
        // even when it has nothing to send.
        replica.accepts_from(sender).map_err(refused)?;
        if let Some(chunk) = downstream.snapshot.into_option() {
            let (total, last, sequence) = (chunk.total_keys, chunk.last, chunk.sequence);
            snapshot_keys += chunk.entries.len() as u64;
            replica.install_chunk(sender, chunk, snapshot_started.is_none()).map_err(refused)?;
            let started = *snapshot_started.get_or_insert_with(Instant::now);
            if last {
                info!(
                    "state transfer from {sender} complete: {snapshot_keys} keys at write {sequence} in {} ms",
                    started.elapsed().as_millis()
                );
            } else if snapshot_keys.is_multiple_of(super::SNAPSHOT_CHUNK_ENTRIES as u64 * 16) {
                info!("state transfer from {sender}: {snapshot_keys} of {total} keys");
            }
        }
        if !downstream.writes.is_empty() {
            replica.apply_replicated(sender, downstream.writes).map_err(refused)?;
        }
        if let Some(promote_at) = downstream.promote_at {
            replica.set_promote_at(sender, promote_at).map_err(refused)?;
        }
    }
    Ok(())
}

/// Sends `Upstream` whenever our commit point moves, and other progress
/// (writes applied, not yet committed) at the next poll, until the link
/// closes or `sender` stops being our predecessor (after that our progress
/// may count writes it never sent us). Only commits are urgent: `applied`
/// matters upstream only for the hand-over to a joining server, which
/// commits what it applies at once. Commits that arrive while a frame is
/// being sent go up together in the next one.
fn send_acks(writer: &mut FrameWriter, replica: &Replica, sender: &str, link_open: &AtomicBool) {
    let mut reported = Progress::default();
    while link_open.load(Ordering::SeqCst) {
        if replica.wait_commit_change(reported.committed, ACK_POLL) == reported {
            continue;
        }
        let Some(progress) = replica.progress_for_predecessor(sender) else {
            return;
        };
        let mut upstream = Upstream::new();
        upstream.applied = progress.applied;
        upstream.committed = progress.committed;
        if writer.send(&upstream).is_err() {
            return;
        }
        reported = progress;
    }
}
