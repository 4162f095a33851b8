//! A simulated ZooKeeper for the simulator: sessions that expire when their
//! owner stops pinging, ephemeral sequential member nodes under each chain's
//! node (one ensemble for every chain of a sharded table), and each chain's
//! child version as its view epoch. What the real
//! `zookeeper` crate does wrong (watches lost or late, a create whose reply
//! is lost) is done by the world around it (`world.rs`).

use std::collections::BTreeMap;

use crate::view::{ChainView, CommitRecord, MEMBER_PREFIX, Member, Readiness};

/// A ZooKeeper session.
struct Session {
    /// The process that owns it.
    owner: usize,
    /// Last time ZooKeeper heard from the owner (ms).
    heard_ms: u64,
}

/// The ensemble's state.
pub struct SimZk {
    /// Session timeout (ms): a session not heard from for this long expires.
    pub timeout_ms: u64,
    sessions: BTreeMap<u64, Session>,
    next_session: u64,
    /// Each chain's node, by chain index.
    chains: Vec<ChainZnode>,
}

/// One chain's node and its children.
#[derive(Default)]
struct ChainZnode {
    /// Member nodes by sequence number, with the session that owns each.
    members: BTreeMap<u64, (Member, u64)>,
    next_sequence: u64,
    /// The chain node's child version: bumped by every create and delete.
    cversion: u64,
    /// The chain node's data.
    record: CommitRecord,
}

impl SimZk {
    /// An ensemble holding `chains` chain nodes.
    pub fn new(timeout_ms: u64, chains: usize) -> SimZk {
        let chains = (0..chains.max(1)).map(|_| ChainZnode::default()).collect();
        SimZk { timeout_ms, sessions: BTreeMap::new(), next_session: 1, chains }
    }

    /// Opens a session for process `owner`.
    pub fn open_session(&mut self, owner: usize, now_ms: u64) -> u64 {
        let id = self.next_session;
        self.next_session += 1;
        self.sessions.insert(id, Session { owner, heard_ms: now_ms });
        id
    }

    pub fn session_alive(&self, session: u64) -> bool {
        self.sessions.contains_key(&session)
    }

    /// The owner of `session` was heard from.
    pub fn ping(&mut self, session: u64, now_ms: u64) {
        if let Some(session) = self.sessions.get_mut(&session) {
            session.heard_ms = session.heard_ms.max(now_ms);
        }
    }

    /// Expires the sessions not heard from for the timeout; returns the
    /// processes whose sessions ended (their nodes are gone).
    pub fn expire(&mut self, now_ms: u64) -> Vec<usize> {
        let expired: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, session)| now_ms >= session.heard_ms + self.timeout_ms)
            .map(|(id, _)| *id)
            .collect();
        expired.iter().filter_map(|id| self.close_session(*id)).collect()
    }

    /// Ends `session` (expired, or closed by its owner): its nodes go.
    pub fn close_session(&mut self, session: u64) -> Option<usize> {
        let owner = self.sessions.remove(&session)?.owner;
        for chain in &mut self.chains {
            let before = chain.members.len();
            chain.members.retain(|_, (_, owner_session)| *owner_session != session);
            if chain.members.len() != before {
                chain.cversion += 1;
            }
        }
        Some(owner)
    }

    /// Creates an ephemeral sequential member node of `chain` for server
    /// `server_id`; returns its name.
    pub fn create_member(
        &mut self,
        chain: usize,
        session: u64,
        address: &str,
        readiness: Readiness,
        server_id: u64,
    ) -> Option<String> {
        if !self.session_alive(session) {
            return None;
        }
        let chain = &mut self.chains[chain];
        let sequence = chain.next_sequence;
        chain.next_sequence += 1;
        let name = format!("{MEMBER_PREFIX}{sequence:010}");
        let token = format!("t{session}");
        let address = address.to_owned();
        let member = Member { name: name.clone(), sequence, address, readiness, token, server_id };
        chain.members.insert(sequence, (member, session));
        chain.cversion += 1;
        Some(name)
    }

    /// Deletes a member's node (a neighbour proved it dead): the child
    /// version moves; false if the node was gone already.
    pub fn remove_member(&mut self, chain: usize, name: &str) -> bool {
        let chain = &mut self.chains[chain];
        let before = chain.members.len();
        chain.members.retain(|_, (member, _)| member.name != name);
        let removed = chain.members.len() < before;
        chain.cversion += u64::from(removed);
        removed
    }

    /// Sets a member's readiness (a data change: the child version stays).
    /// False if the node is gone or the session is not its owner.
    pub fn set_readiness(&mut self, chain: usize, session: u64, name: &str, readiness: Readiness) -> bool {
        match self.chains[chain]
            .members
            .values_mut()
            .find(|(member, owner)| member.name == name && *owner == session)
        {
            Some((member, _)) => {
                member.readiness = readiness;
                true
            }
            None => false,
        }
    }

    /// Writes the chain node's record unless a newer one is there (the
    /// membership thread's compare-and-set); returns whether it did.
    pub fn set_record(&mut self, chain: usize, record: CommitRecord) -> bool {
        let chain = &mut self.chains[chain];
        let replaces = record.may_replace(&chain.record);
        if replaces {
            chain.record = record;
        }
        replaces
    }

    /// Chain `chain` as a reader sees it now.
    pub fn view(&self, chain: usize) -> ChainView {
        let chain = &self.chains[chain];
        let members = chain.members.values().map(|(member, _)| member.clone()).collect();
        ChainView::new(members, chain.cversion).with_record(chain.record.clone())
    }

    /// The processes with a live session, in session order.
    pub fn session_owners(&self) -> Vec<usize> {
        self.sessions.values().map(|session| session.owner).collect()
    }
}
