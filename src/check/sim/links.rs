//! The replication links of a simulated server, as transports: the
//! decisions (where a link goes, resume or snapshot, trimming, hand-over,
//! heartbeats, what a frame does, when to ack) are the core's
//! [`Downlink`](crate::chain::link::Downlink) and
//! [`Uplink`](crate::chain::link::Uplink), the same code the server's link
//! threads run; this file only turns them into simulated messages.

use super::disk::Carry;
use super::server::{LinkMessage, server_of};
use super::world::World;
use crate::chain::eviction::Evidence;
use crate::chain::link::{Ack, Aim, Start, Uplink};
use crate::chain::{Progress, SnapshotPoint, Welcome};
use crate::proto::{Downstream, Entry, SnapshotChunk};

/// Entries per snapshot chunk: small, so transfers take several chunks.
const CHUNK_ENTRIES: usize = 2;
/// The simulated Sent list's bound and batch size: unbounded batches, as
/// the simulated chains are small.
const SENT_MAX: usize = usize::MAX;

/// The sending side's connection: which one, and whether it was welcomed.
pub(super) struct DownConnection {
    pub(super) connection: usize,
    pub(super) streaming: bool,
}

impl World {
    // ---- replication: sending side ----

    /// The replication sender's work: aim the link at the successor, then
    /// stream the queue through the Sent list.
    pub(super) fn sender_work(&mut self, index: usize) {
        let server = &mut self.servers[index];
        let aim = server.link.aim(&server.node);
        match aim {
            Aim::Idle => {
                // Nobody to forward to: what was queued will never be sent.
                server.outbox.clear();
                self.drop_downlink(index);
            }
            Aim::Open { successor, mut hello } => {
                if let Some(down) = self.servers[index].down.take() {
                    self.close(down.connection);
                }
                let Some(connection) = server_of(&successor.address).and_then(|to| self.connect(index, to))
                else {
                    self.servers[index].link.closed();
                    self.probe(index, &successor.name);
                    return;
                };
                hello.nonce = self.peer_auth.nonce();
                self.servers[index].down = Some(DownConnection { connection, streaming: false });
                self.send(connection, true, LinkMessage::Hello(*hello));
            }
            Aim::Keep => self.stream_writes(index),
        }
    }

    /// Steady state: trim, hand over, forward what was queued.
    fn stream_writes(&mut self, index: usize) {
        let Some(down) = &self.servers[index].down else { return };
        if !down.streaming {
            return;
        }
        let connection = down.connection;
        // A silent successor is probed, as the server's sender does.
        let now_ms = self.clock(index);
        if self.servers[index].link.probe_due(now_ms)
            && let Some(successor) = self.servers[index].link.successor().map(str::to_owned)
        {
            self.probe(index, &successor);
        }
        let mut actions = Carry::default();
        let server = &mut self.servers[index];
        let extras = match server.link.streaming_step(&mut server.node, &mut actions) {
            Ok(extras) => extras,
            Err(_) => {
                self.carry(index, actions);
                self.drop_downlink(index);
                return;
            }
        };
        self.carry(index, actions);
        let now_ms = self.clock(index);
        let server = &mut self.servers[index];
        let before = server.link.sent_len();
        let room = server.link.room(SENT_MAX, SENT_MAX).min(server.outbox.len());
        if !server.link.take_queued(server.outbox.drain(..room)) {
            self.drop_downlink(index);
            return;
        }
        if server.link.frame_due(before, &extras, now_ms) {
            let mut frame = Downstream::new();
            server.link.lend_frame(before, &extras, &mut frame);
            let sent = frame.clone();
            server.link.give_back(&mut frame);
            self.send(connection, true, LinkMessage::Frame(sent));
        }
    }

    fn drop_downlink(&mut self, index: usize) {
        self.servers[index].link.closed();
        if let Some(down) = self.servers[index].down.take() {
            self.close(down.connection);
        }
    }

    /// The successor answered our hello: resume from the Sent list, or
    /// stream a snapshot first.
    fn on_welcome(&mut self, index: usize, connection: usize, welcome: Result<Welcome, String>) {
        let Ok(welcome) = welcome else {
            self.drop_downlink(index);
            return;
        };
        let now_ms = self.clock(index);
        let server = &mut self.servers[index];
        let continuous = server.link.take_queued(server.outbox.drain(..));
        match server.link.welcomed(&welcome, continuous, &server.node, now_ms) {
            Start::NotReady => {
                self.drop_downlink(index);
                return;
            }
            Start::Resume { after, rejoin } => {
                for frame in server.link.resume_frames(after, rejoin, usize::MAX) {
                    self.send(connection, true, LinkMessage::Frame(frame));
                }
            }
            Start::Snapshot(point) => {
                for chunk in self.snapshot_chunks(index, point) {
                    let frame = Downstream { snapshot: Some(chunk).into(), ..Downstream::new() };
                    self.send(connection, true, LinkMessage::Frame(frame));
                }
            }
        }
        if let Some(down) = &mut self.servers[index].down {
            down.streaming = true;
        }
        self.after_step(index);
    }

    /// Server `index`'s table at `point`, in small chunks.
    fn snapshot_chunks(&self, index: usize, point: SnapshotPoint) -> Vec<SnapshotChunk> {
        let entries: Vec<Entry> = self.servers[index]
            .store
            .iter()
            .map(|(key, value)| Entry::from_pair((key.clone(), value.clone())))
            .collect();
        let total_keys = entries.len() as u64;
        let mut chunks: Vec<SnapshotChunk> = entries
            .chunks(CHUNK_ENTRIES)
            .map(|part| SnapshotChunk { entries: part.to_vec(), ..point.chunk_header(total_keys) })
            .collect();
        if chunks.is_empty() {
            chunks.push(point.chunk_header(0));
        }
        chunks[0].clients = point.clients;
        if let Some(last) = chunks.last_mut() {
            last.last = true;
        }
        chunks
    }

    fn on_ack(&mut self, index: usize, progress: Progress, stamp_ms: u64) {
        let now_ms = self.clock(index);
        let server = &mut self.servers[index];
        server.link.acked(progress);
        server.link.heard(now_ms, Some(stamp_ms));
        let Some(successor) = server.link.successor().map(str::to_owned) else { return };
        let mut actions = Carry::default();
        let result = server.node.successor_ack(&successor, progress.committed, now_ms, &mut actions);
        self.carry(index, actions);
        if result.is_err() {
            self.drop_downlink(index);
        }
        self.after_step(index);
    }

    // ---- replication: receiving side ----

    pub fn server_message(&mut self, connection: usize, to_successor: bool, message: LinkMessage) {
        let index = self.end(connection, to_successor);
        if !self.servers[index].alive {
            return;
        }
        if !to_successor {
            let ours = self.servers[index].down.as_ref().is_some_and(|down| down.connection == connection);
            match message {
                LinkMessage::Welcome(welcome) if ours => self.on_welcome(index, connection, welcome),
                LinkMessage::Ack(progress, stamp_ms) if ours => self.on_ack(index, progress, stamp_ms),
                _ => {}
            }
            return;
        }
        let result = match message {
            LinkMessage::Hello(hello) if !self.member_link_authenticated(&hello) => {
                self.send(connection, false, LinkMessage::Welcome(Err("peer authentication failed".into())));
                self.close(connection);
                Ok(())
            }
            LinkMessage::Hello(hello) => {
                match Uplink::accept(&mut self.servers[index].node, &hello) {
                    Ok((uplink, welcome)) => {
                        self.servers[index].uplinks.insert(connection, uplink);
                        self.send(connection, false, LinkMessage::Welcome(Ok(welcome)));
                    }
                    Err(refusal) => {
                        self.send(connection, false, LinkMessage::Welcome(Err(refusal.message)));
                        self.close(connection);
                    }
                }
                Ok(())
            }
            LinkMessage::Frame(frame) => self.receive(index, connection, frame),
            _ => Ok(()),
        };
        if result.is_err() {
            self.servers[index].uplinks.remove(&connection);
            self.close(connection);
        }
        self.after_step(index);
    }

    /// A frame on an accepted link from a predecessor.
    fn receive(&mut self, index: usize, connection: usize, frame: Downstream) -> Result<(), ()> {
        let now_ms = self.clock(index);
        let server = &mut self.servers[index];
        let Some(uplink) = server.uplinks.get_mut(&connection) else { return Err(()) };
        let mut actions = Carry::default();
        let result = uplink.receive(&mut server.node, frame, now_ms, &mut server.store, &mut actions);
        self.carry(index, actions);
        result.map_err(|_| ())
    }

    /// The ack writer's work: report progress up every link whose sender
    /// is still our predecessor; cut the others.
    pub(super) fn ack_work(&mut self, index: usize) {
        let connections: Vec<usize> = self.servers[index].uplinks.keys().copied().collect();
        let now_ms = self.clock(index);
        for connection in connections {
            let server = &mut self.servers[index];
            let Some(uplink) = server.uplinks.get_mut(&connection) else { continue };
            match uplink.ack_due(&server.node, now_ms) {
                Ack::Close => {
                    server.uplinks.remove(&connection);
                    self.close(connection);
                }
                Ack::Send { progress, stamp_ms } => {
                    self.send(connection, false, LinkMessage::Ack(progress, stamp_ms))
                }
                Ack::Nothing => {}
            }
        }
    }

    pub fn server_link_closed(&mut self, connection: usize, to_successor: bool) {
        let index = self.end(connection, to_successor);
        let server = &mut self.servers[index];
        let peer = if to_successor {
            server.uplinks.remove(&connection).map(|uplink| uplink.sender().to_owned())
        } else if server.down.as_ref().is_some_and(|down| down.connection == connection) {
            server.down = None;
            let successor = server.link.successor().map(str::to_owned);
            server.link.closed();
            successor
        } else {
            None
        };
        if let Some(peer) = peer {
            self.probe(index, &peer);
        }
    }

    /// Server `index` connects to `peer`'s listening port after its link
    /// closed: a crashed server's port refuses (proof of death), a paused
    /// or partitioned one times out, a live one answers (nothing learned).
    fn probe(&mut self, index: usize, peer: &str) {
        let Some(position) = self.servers[index].node.position() else { return };
        let neighbours = [&position.predecessor, &position.successor];
        let Some(target) = neighbours
            .into_iter()
            .flatten()
            .find(|member| member.name == peer)
            .and_then(|member| server_of(&member.address))
        else {
            return;
        };
        let evidence = if !self.servers[target].alive {
            Evidence::Refused
        } else if self.servers[target].paused_until_ms.is_some() || !self.reachable(index, target) {
            Evidence::TimedOut
        } else {
            return;
        };
        let mut actions = Vec::new();
        let now_ms = self.clock(index);
        let asked = self.servers[index].node.peer_unreachable(peer, evidence, now_ms, &mut actions);
        self.trace(|| format!("s{index} probes {peer}: {evidence:?}, {asked:?}"));
        self.carry_out(index, actions);
    }
}
