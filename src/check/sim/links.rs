//! The replication threads of a simulated server: the sender (connect,
//! resume from the Sent list or stream a snapshot, hand over, forward) and
//! the receiver (accept a link, apply frames, acknowledge).

use super::server::{Downlink, LinkMessage, Uplink, server_of};
use super::world::World;
use crate::chain::{Progress, Welcome};
use crate::proto::{Entry, ReplicaHello, SnapshotChunk, Write};

/// Entries per snapshot chunk: small, so transfers take several chunks.
const CHUNK_ENTRIES: usize = 2;

impl World {
    // ---- replication: sending side ----

    /// The replication sender's work: (re)connect to the successor, stream
    /// the queue through the Sent list, hand the tail role over.
    pub(super) fn sender_work(&mut self, index: usize) {
        let server = &self.servers[index];
        let successor = server.node.successor().filter(|_| server.node.may_replicate()).cloned();
        let Some(successor) = successor else {
            let server = &mut self.servers[index];
            if !server.node.forwards() || !server.node.may_replicate() {
                // Nobody to forward to: what was queued will never be sent.
                server.outbox.clear();
                server.sent.forget();
            }
            if let Some(downlink) = server.downlink.take() {
                self.close(downlink.connection);
            }
            return;
        };
        if let Some(downlink) = &self.servers[index].downlink
            && downlink.successor != successor.name
        {
            let connection = downlink.connection;
            self.servers[index].downlink = None;
            self.close(connection);
        }
        let Some(downlink) = &self.servers[index].downlink else {
            let Some(target) = server_of(&successor.address) else { return };
            let Some(connection) = self.connect(index, target) else { return };
            let server = &mut self.servers[index];
            let mut hello = ReplicaHello::new();
            hello.sender = server.name.clone();
            hello.receiver = successor.name.clone();
            hello.epoch = server.node.view_epoch();
            hello.nonce = self.peer_auth.nonce();
            let server = &mut self.servers[index];
            server.downlink = Some(Downlink {
                connection,
                successor: successor.name,
                streaming: false,
                acked: Progress::default(),
            });
            self.send(connection, true, LinkMessage::Hello(hello));
            return;
        };
        if !downlink.streaming {
            return;
        }
        let (connection, acked) = (downlink.connection, downlink.acked);
        if self.servers[index].sent.trim(acked.committed).is_err() {
            self.drop_downlink(index);
            return;
        }
        let mut actions = Vec::new();
        let promote_at = self.servers[index].node.try_hand_over(&successor.name, acked.applied, &mut actions);
        self.carry_out(index, actions);
        let server = &mut self.servers[index];
        let before = server.sent.len();
        let mut continuous = true;
        while let Some((stream, write)) = server.outbox.pop_front() {
            continuous &= server.sent.push(stream, write);
        }
        if !continuous {
            self.drop_downlink(index);
            return;
        }
        let writes: Vec<Write> = server.sent.after(0).skip(before).cloned().collect();
        if !writes.is_empty() || promote_at.is_some() {
            self.send(connection, true, LinkMessage::Batch { writes, promote_at });
        }
    }

    fn drop_downlink(&mut self, index: usize) {
        if let Some(downlink) = self.servers[index].downlink.take() {
            self.close(downlink.connection);
        }
    }

    /// The successor answered our hello: resume from the Sent list, or
    /// stream a snapshot first.
    fn on_welcome(&mut self, index: usize, connection: usize, welcome: Result<Welcome, String>) {
        let Ok(welcome) = welcome else {
            self.drop_downlink(index);
            return;
        };
        let server = &mut self.servers[index];
        let mut continuous = true;
        while let Some((stream, write)) = server.outbox.pop_front() {
            continuous &= server.sent.push(stream, write);
        }
        if welcome.wants_snapshot || !continuous || !server.sent.can_resume_after(welcome.last_applied) {
            let Some(point) = server.node.snapshot_point() else {
                self.drop_downlink(index);
                return;
            };
            let (sequence, write_epoch) = (point.sequence, point.write_epoch);
            server.sent.restart_at(server.node.stream(), sequence);
            let entries: Vec<Entry> = server
                .store
                .iter()
                .map(|(key, value)| Entry::from_pair((key.clone(), value.clone())))
                .collect();
            let total_keys = entries.len() as u64;
            let mut chunks: Vec<SnapshotChunk> = entries
                .chunks(CHUNK_ENTRIES)
                .map(|part| {
                    let mut chunk = SnapshotChunk::new();
                    chunk.sequence = sequence;
                    chunk.write_epoch = write_epoch;
                    chunk.total_keys = total_keys;
                    chunk.entries = part.to_vec();
                    chunk
                })
                .collect();
            if chunks.is_empty() {
                chunks.push(SnapshotChunk { sequence, write_epoch, ..SnapshotChunk::new() });
            }
            chunks[0].clients = point.clients;
            if let Some(last) = chunks.last_mut() {
                last.last = true;
            }
            for chunk in chunks {
                self.send(connection, true, LinkMessage::Chunk(chunk));
            }
        } else {
            let writes: Vec<Write> = server.sent.after(welcome.last_applied).cloned().collect();
            if !writes.is_empty() {
                self.send(connection, true, LinkMessage::Batch { writes, promote_at: None });
            }
        }
        if let Some(downlink) = &mut self.servers[index].downlink {
            downlink.streaming = true;
        }
        self.after_step(index);
    }

    fn on_ack(&mut self, index: usize, progress: Progress) {
        let Some(downlink) = &mut self.servers[index].downlink else { return };
        downlink.acked.applied = downlink.acked.applied.max(progress.applied);
        downlink.acked.committed = downlink.acked.committed.max(progress.committed);
        let successor = downlink.successor.clone();
        let now = self.now_ms;
        let mut actions = Vec::new();
        let result =
            self.servers[index].node.successor_ack(&successor, progress.committed, now, &mut actions);
        self.carry_out(index, actions);
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
            let ours =
                self.servers[index].downlink.as_ref().is_some_and(|link| link.connection == connection);
            match message {
                LinkMessage::Welcome(welcome) if ours => self.on_welcome(index, connection, welcome),
                LinkMessage::Ack(progress) if ours => self.on_ack(index, progress),
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
                match self.servers[index].node.link_hello(&hello) {
                    Ok(welcome) => {
                        let (sender, link, reported) = (hello.sender, welcome.link, Progress::default());
                        let uplink = Uplink { sender, link, first_chunk: true, reported };
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
            message => self.receive(index, connection, message),
        };
        if result.is_err() {
            self.servers[index].uplinks.remove(&connection);
            self.close(connection);
        }
        self.after_step(index);
    }

    /// A frame on an accepted link from a predecessor.
    fn receive(&mut self, index: usize, connection: usize, message: LinkMessage) -> Result<(), ()> {
        let Some(uplink) = self.servers[index].uplinks.get_mut(&connection) else { return Err(()) };
        let (sender, link) = (uplink.sender.clone(), uplink.link);
        let first =
            matches!(message, LinkMessage::Chunk(_)) && std::mem::replace(&mut uplink.first_chunk, false);
        let server = &mut self.servers[index];
        server.node.check_link(&sender, link).map_err(|_| ())?;
        let mut actions = Vec::new();
        let result = match message {
            LinkMessage::Batch { writes, promote_at } => {
                let mut result =
                    server.node.replicated_batch(&sender, link, writes, &mut server.store, &mut actions);
                if let (Ok(()), Some(sequence)) = (&result, promote_at) {
                    result = server.node.hand_over_mark(&sender, link, sequence, &mut actions);
                }
                result
            }
            LinkMessage::Chunk(chunk) => {
                server.node.snapshot_chunk(&sender, link, chunk, first, &mut server.store, &mut actions)
            }
            _ => Ok(()),
        };
        self.carry_out(index, actions);
        result.map_err(|_| ())
    }

    /// The ack writer's work: report progress up every link whose sender
    /// is still our predecessor; cut the others.
    pub(super) fn ack_work(&mut self, index: usize) {
        let connections: Vec<usize> = self.servers[index].uplinks.keys().copied().collect();
        for connection in connections {
            let server = &mut self.servers[index];
            let Some(uplink) = server.uplinks.get_mut(&connection) else { continue };
            match server.node.progress_for(&uplink.sender, uplink.link) {
                None => {
                    server.uplinks.remove(&connection);
                    self.close(connection);
                }
                Some(progress) if progress != uplink.reported => {
                    uplink.reported = progress;
                    self.send(connection, false, LinkMessage::Ack(progress));
                }
                Some(_) => {}
            }
        }
    }

    pub fn server_link_closed(&mut self, connection: usize, to_successor: bool) {
        let index = self.end(connection, to_successor);
        let server = &mut self.servers[index];
        if to_successor {
            server.uplinks.remove(&connection);
        } else if server.downlink.as_ref().is_some_and(|link| link.connection == connection) {
            server.downlink = None;
        }
    }
}
