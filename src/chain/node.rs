//! [`ChainNode`]: one server's side of the chain protocol.
//!
//! What must hold (DESIGN.md, "The chain protocol"): the head gives every
//! write the next sequence number and every server applies writes in that
//! order, so a server's history is a prefix of its predecessor's; a write is
//! committed when the tail has applied it, and its client is answered only
//! then; a server accepts writes, snapshot chunks and the hand-over mark
//! only from its current predecessor, and acks only from its current
//! successor; a server that is not the committing tail, or not sure of its
//! ZooKeeper session, answers no read.
//!
//! Paired assertions (TigerBeetle's style) guard what we produce: the head
//! asserts each write's sequence number follows the last when it applies and
//! forwards it, and every server asserts the same again when it applies a
//! replicated write (after checking the network's input, which is refused
//! with an error, never asserted). The commit point never passes what was
//! applied here.

use super::clients::{self, ClientRecords, Seen};
use super::effects::{Action, Effects, Store};
use super::injected::{self, Check};
use super::lifecycle::Lifecycle;
use crate::limits::{CLIENT_RECORD_BYTES, ENTRY_OVERHEAD_BYTES, display_bytes};
use crate::proto::{ClientRecord, ErrorCode, Write};
use crate::view::{CommitRecord, Member, Position};

/// How a request was refused: the error code and a message for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }

    fn unavailable() -> Refusal {
        Refusal::new(ErrorCode::ERR_UNAVAILABLE, "no confirmed ZooKeeper session; not serving")
    }
}

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// No chain: every write commits at once and every read is allowed.
    pub standalone: bool,
    /// Clients whose latest write is remembered for exactly-once retries.
    pub client_records_max: usize,
    /// A safety check switched off, a deliberate bug (testing the
    /// checkers only; see [`Check`]).
    pub bug: Option<Check>,
    /// This server's id in member data and commit records (not 0).
    pub server_id: u64,
    /// `--max-memory`: as the head, refuse a put that would take
    /// [`ChainNode::used_memory`] past it (`None`: no limit). Only the head
    /// decides, before it sequences the write; every replica applies what it
    /// is sent, whatever its own limit, so the replicas stay identical.
    pub memory_bytes_max: Option<u64>,
}

/// A client write applied at the head: where it is in the history and the
/// answer its client gets once it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReceipt {
    pub sequence: u64,
    /// The key existed before.
    pub found: bool,
}

/// A node's progress: what it applied, and what the tail applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub applied: u64,
    pub committed: u64,
}

/// The answer to a predecessor's hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The link's number: frames are accepted only on the latest link
    /// accepted (see [`ChainNode::check_link`]).
    pub link: u64,
    /// Last write applied here: the predecessor resumes after it.
    pub last_applied: u64,
    /// Our table is not (yet) the chain's: send a snapshot first.
    pub wants_snapshot: bool,
}

/// Where a snapshot for a successor is taken (see
/// [`ChainNode::snapshot_point`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotPoint {
    pub sequence: u64,
    /// The newest `Write.epoch` among the writes it holds.
    pub write_epoch: u64,
    pub clients: Vec<ClientRecord>,
}

/// Chain role, derived from the view and the lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Standalone,
    Head,
    Middle,
    Tail,
    HeadAndTail,
    Joining,
    /// Not (or no longer) a member: session lost, or not registered yet.
    Fenced,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Standalone,
        Role::Head,
        Role::Middle,
        Role::Tail,
        Role::HeadAndTail,
        Role::Joining,
        Role::Fenced,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Head => "head",
            Role::Middle => "middle",
            Role::Tail => "tail",
            Role::HeadAndTail => "head+tail",
            Role::Joining => "joining",
            Role::Fenced => "fenced",
        }
    }
}

/// One server's protocol state. See the module doc.
pub struct ChainNode {
    pub(super) config: NodeConfig,
    /// Last sequence number applied to the table.
    pub(super) last_applied: u64,
    /// The newest view epoch in which a write applied here was accepted by
    /// its head (`Write.epoch`). We commit on our own only once our view is
    /// at least that new: a head with a newer view may have left out a
    /// member that our older view (and the commit record written in it)
    /// still names (the simulator found a tail cut off from ZooKeeper
    /// committing writes of a new head, and the old head, still named,
    /// restarting the chain without them).
    pub(super) applied_epoch: u64,
    /// Highest sequence number known applied by the tail (0 after a reset).
    pub(super) committed: u64,
    /// Highest commit point our successor reported.
    pub(super) successor_committed: u64,
    pub(super) clients: ClientRecords,
    pub(super) lifecycle: Lifecycle,
    /// Our node name in ZooKeeper, once registered.
    pub(super) name: Option<String>,
    /// Our place in the latest view; `None` when we are not a member.
    pub(super) position: Option<Position>,
    /// Epoch of the latest view we acted on; older views are ignored, and a
    /// link from a predecessor with an older view is refused.
    pub(super) view_epoch: u64,
    /// The latest link accepted from a predecessor; frames on any other
    /// link are refused.
    pub(super) current_link: u64,
    /// The chain node's commit record in the latest view.
    pub(super) record: CommitRecord,
    /// The server ids of the ready members in the latest view (empty: no
    /// live chain).
    pub(super) ready_servers: Vec<u64>,
    /// Addresses of the head and tail in the latest view, named in
    /// refusals so a client can see where to go.
    pub(super) head_address: Option<String>,
    pub(super) tail_address: Option<String>,
    /// A state transfer into our table is under way: it holds part of a
    /// history. Any member may be sent one (a new predecessor whose Sent
    /// list cannot cover us), so this is not part of the lifecycle.
    pub(super) installing: bool,
    /// Our table is a former ready member's complete history up to
    /// `last_applied`: kept through fencing, so a chain whose members all
    /// lost their sessions can restart from the longest one.
    pub(super) recoverable: bool,
    /// The ZooKeeper session is known alive until this time (ms on the
    /// caller's clock); 0 = no lease.
    pub(super) lease_until_ms: u64,
    /// Numbers the unbroken runs of forwarded writes: a new one begins
    /// when we start forwarding again after a time without a successor
    /// (writes applied meanwhile were not forwarded) and when our table's
    /// history is replaced (a state transfer began, or a reset). Forwarded
    /// writes carry it, so the sender can tell a new run, which only a
    /// snapshot can bridge, from a gap within one (a bug of ours).
    pub(super) stream: u64,
    /// The chain generation our table's history belongs to (see
    /// [`CommitRecord`]): set when we start a chain, taken from the chain
    /// node's record while our table is the live chain's, 0 after a reset.
    pub(super) generation: u64,
    /// The generation of the chain we asked to be announced ready as its
    /// first member ([`ChainNode::starting_chain`]); ours once the view
    /// shows us ready without a predecessor.
    pub(super) starting_generation: Option<u64>,
    /// Time (ms) from which the tail may write its commit point into the
    /// record again: at most every
    /// [`RECORD_PROGRESS_INTERVAL_MS`](crate::limits::RECORD_PROGRESS_INTERVAL_MS), so a busy
    /// chain does not write ZooKeeper at the rate of its writes.
    pub(super) record_progress_due_ms: u64,
}

impl ChainNode {
    pub fn new(config: NodeConfig) -> ChainNode {
        let lifecycle = if config.standalone { Lifecycle::Standalone } else { Lifecycle::Outside };
        ChainNode {
            clients: ClientRecords::new(config.client_records_max),
            config,
            last_applied: 0,
            applied_epoch: 0,
            committed: 0,
            successor_committed: 0,
            lifecycle,
            name: None,
            position: None,
            view_epoch: 0,
            current_link: 0,
            record: CommitRecord::default(),
            ready_servers: Vec::new(),
            head_address: None,
            tail_address: None,
            installing: false,
            recoverable: false,
            lease_until_ms: 0,
            stream: 0,
            generation: 0,
            starting_generation: None,
            record_progress_due_ms: 0,
        }
    }

    // ---- client requests ----

    /// A client's put (`value` given) or delete, at the head. A retry (same
    /// client and request id) is not applied again: it gets the original
    /// write's receipt.
    #[allow(clippy::too_many_arguments)]
    pub fn client_write(
        &mut self,
        client_id: u64,
        request_id: u64,
        key: &str,
        value: Option<Vec<u8>>,
        now_ms: u64,
        store: &mut impl Store,
        effects: &mut impl Effects,
    ) -> Result<WriteReceipt, Refusal> {
        self.check_may_write(now_ms)?;
        let seen = if self.enforces(Check::ExactlyOnce) {
            self.clients.seen(client_id, request_id)
        } else {
            Seen::New
        };
        match seen {
            Seen::Retry { sequence, found } => return Ok(WriteReceipt { sequence, found }),
            Seen::Stale { latest } => {
                return Err(Refusal::new(
                    ErrorCode::ERR_STALE_REQUEST,
                    format!("request {request_id} is older than this client's latest write {latest}"),
                ));
            }
            Seen::New => {}
        }
        self.check_memory(client_id, key, value.as_deref(), store)?;
        let sequence = self.last_applied + 1;
        let forward = self.forwards();
        let mut write = forward.then(|| {
            let mut write = Write::new();
            write.key = key.to_owned();
            write.value = value.clone();
            write.client_id = client_id;
            write.request_id = request_id;
            write.sequence = sequence;
            write.epoch = self.view_epoch;
            write
        });
        self.applied_epoch = self.applied_epoch.max(self.view_epoch);
        let found = store.apply(key, value);
        if let Some(write) = &mut write {
            write.found = found;
        }
        self.record_applied(
            sequence,
            clients::record(client_id, request_id, sequence, found),
            write,
            effects,
        );
        self.publish_commit(effects);
        Ok(WriteReceipt { sequence, found })
    }

    fn check_may_write(&self, now_ms: u64) -> Result<(), Refusal> {
        if self.config.standalone {
            return Ok(());
        }
        if !self.lease_valid(now_ms) {
            return Err(Refusal::unavailable());
        }
        match &self.position {
            Some(position) if self.requires(Check::HeadWrites, position.is_head) => Ok(()),
            _ => Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!(
                    "not the head; writes go to the head ({})",
                    self.head_address.as_deref().unwrap_or("unknown")
                ),
            )),
        }
    }

    /// Refuses a put that would take our memory past `--max-memory`. A
    /// delete, and an overwrite whose value is not longer than the old one,
    /// always pass: they are how a full table is made room in.
    fn check_memory(
        &self,
        client_id: u64,
        key: &str,
        value: Option<&[u8]>,
        store: &impl Store,
    ) -> Result<(), Refusal> {
        let (Some(max), Some(value)) = (self.config.memory_bytes_max, value) else {
            return Ok(());
        };
        let entry_growth = match store.value_len(key) {
            Some(old) if value.len() <= old => return Ok(()),
            Some(old) => (value.len() - old) as u64,
            None => (key.len() + value.len()) as u64 + ENTRY_OVERHEAD_BYTES,
        };
        let record_growth = if self.clients.adds_record(client_id) { CLIENT_RECORD_BYTES } else { 0 };
        let used = self.used_memory(store);
        if used + entry_growth + record_growth <= max {
            return Ok(());
        }
        Err(Refusal::new(
            ErrorCode::ERR_OUT_OF_MEMORY,
            format!(
                "out of memory: used {} of --max-memory {}, and this put needs {} more; \
                 deletes and overwrites that do not grow a value are still accepted",
                display_bytes(used),
                display_bytes(max),
                display_bytes(entry_growth + record_growth)
            ),
        ))
    }

    /// The memory our replica holds, as `--max-memory` counts it: keys and
    /// values, plus the measured overhead of each key and client record
    /// (see [`ENTRY_OVERHEAD_BYTES`] and [`CLIENT_RECORD_BYTES`]).
    pub fn used_memory(&self, store: &impl Store) -> u64 {
        store.bytes_stored()
            + store.key_count() * ENTRY_OVERHEAD_BYTES
            + self.clients.len() as u64 * CLIENT_RECORD_BYTES
    }

    /// Whether a read may be answered here now: we are the committing tail
    /// (or standalone), no state transfer is under way, and the lease holds.
    pub fn check_may_read(&self, now_ms: u64) -> Result<(), Refusal> {
        if self.config.standalone {
            return Ok(());
        }
        if !self.lease_valid(now_ms) {
            return Err(Refusal::unavailable());
        }
        if !self.readable() {
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                format!(
                    "not the tail; reads go to the tail ({})",
                    self.tail_address.as_deref().unwrap_or("unknown")
                ),
            ));
        }
        Ok(())
    }

    /// Reads are ours to answer (lease aside): we are the tail, we still
    /// commit on our own (no hand-over), and our table is complete.
    pub fn readable(&self) -> bool {
        if self.config.standalone {
            return true;
        }
        if !self.enforces(Check::ReadAtTail) && self.position.is_some() {
            return !self.installing;
        }
        // A tail waiting for its commit record holds writes it applied and
        // did not commit: it may not show them (the simulator found such a
        // tail answering a read with a write that was then lost).
        !self.installing
            && matches!(self.lifecycle, Lifecycle::Ready { .. })
            && self.position.as_ref().is_some_and(|position| position.is_tail)
            && self.commits_locally()
            && self.requires(Check::CommitRecord, self.recorded())
    }

    // ---- applying writes ----

    /// Book-keeping after a write was applied to the table: sequence, client
    /// record, and the copy for the successor.
    pub(super) fn record_applied(
        &mut self,
        sequence: u64,
        record: ClientRecord,
        forward: Option<Write>,
        effects: &mut impl Effects,
    ) {
        assert_eq!(sequence, self.last_applied + 1, "writes are applied in sequence order");
        self.last_applied = sequence;
        self.clients.remember(record);
        if let Some(write) = forward {
            assert_eq!(write.sequence, sequence, "a write is forwarded as it was applied");
            effects.act(Action::Forward { stream: self.stream, write });
        }
    }

    /// Whether writes applied here are committed at once: we are the end of
    /// the chain, or the tail with a joining successor not yet handed over.
    pub(super) fn commits_locally(&self) -> bool {
        if self.config.standalone {
            return true;
        }
        match self.position.as_ref().and_then(|position| position.successor.as_ref()) {
            None => true,
            Some(successor) => {
                !successor.readiness.is_ready()
                    && self.lifecycle.handed_over_to() != Some(successor.name.as_str())
            }
        }
    }

    /// Raises the commit point to what is now known committed, and says so.
    /// Writes are committed here on our own only in the epoch the chain
    /// node records (see [`CommitRecord`]); until then they wait.
    pub(super) fn publish_commit(&mut self, effects: &mut impl Effects) {
        let early = !self.enforces(Check::CommitAtTail)
            && self.position.as_ref().is_some_and(|position| position.is_head);
        let committed = if early {
            self.last_applied
        } else if self.commits_locally() {
            if self.recorded() { self.last_applied } else { self.committed }
        } else {
            self.successor_committed.min(self.last_applied)
        };
        if committed > self.committed {
            assert!(committed <= self.last_applied, "the commit point never passes what was applied");
            self.committed = committed;
            effects.act(Action::Committed(committed));
        }
    }

    /// Whether the chain node records the epoch and the generation we
    /// commit in (always so standalone): no write is committed in a
    /// generation that the record does not show yet.
    pub(super) fn recorded(&self) -> bool {
        self.config.standalone
            || (self.requires(Check::CommitRecord, self.record.epoch == self.view_epoch)
                && self.requires(Check::Generation, self.record.generation == self.generation)
                && self.requires(Check::AppliedEpoch, self.applied_epoch <= self.view_epoch))
    }

    /// The one hook of the injected bugs: whether `check` is enforced (it
    /// is, unless its bug is injected; see [`Check`]).
    pub(super) fn enforces(&self, check: Check) -> bool {
        injected::enforced(self.config.bug, check)
    }

    /// Whether a condition that `check` demands is met: `holds`, or the
    /// check is switched off.
    pub(super) fn requires(&self, check: Check, holds: bool) -> bool {
        holds || !self.enforces(check)
    }

    // ---- queries ----

    /// Applied writes are forwarded: we have a successor.
    pub fn forwards(&self) -> bool {
        self.successor().is_some()
    }

    /// We may replicate to a successor: a member whose table is the live
    /// chain's state. A joiner that caught up holds a prefix of the chain's
    /// history only while a chain lives: once no member is ready, a
    /// recovering successor may hold more, and a snapshot from us would wipe
    /// it (the simulator found a caught-up joiner overwriting the one server
    /// named in the commit record after the chain's last member expired).
    pub fn may_replicate(&self) -> bool {
        self.position.is_some()
            && self.requires(Check::ChainState, self.lifecycle.holds_chain_state())
            && !self.installing
            && self.requires(Check::ChainState, !self.ready_servers.is_empty() || self.config.standalone)
    }

    pub fn successor(&self) -> Option<&Member> {
        self.position.as_ref().and_then(|position| position.successor.as_ref())
    }

    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    /// The current run of forwarded writes (see the field).
    pub fn stream(&self) -> u64 {
        self.stream
    }

    pub fn view_epoch(&self) -> u64 {
        self.view_epoch
    }

    pub fn progress(&self) -> Progress {
        Progress { applied: self.last_applied, committed: self.committed }
    }

    /// The chain generation of our table's history (0: none yet).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Tests build chains directly from views in which every member is
    /// ready: as if each had caught up and been handed the tail role by
    /// the predecessor `giver`.
    #[cfg(test)]
    pub fn assume_handed_over_by(&mut self, giver: &str) {
        self.lifecycle = Lifecycle::CatchingUp { promote_at: None, handed_over_by: Some(giver.to_owned()) };
    }

    #[cfg(test)]
    pub fn client_records(&self) -> usize {
        self.clients.len()
    }

    pub fn role(&self) -> Role {
        if self.config.standalone {
            return Role::Standalone;
        }
        match &self.position {
            None => Role::Fenced,
            Some(position) if !position.me.readiness.is_ready() => Role::Joining,
            Some(position) => match (position.is_head, position.is_tail) {
                (true, true) => Role::HeadAndTail,
                (true, false) => Role::Head,
                (false, true) => Role::Tail,
                (false, false) => Role::Middle,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::sim::server::SimStore;
    use crate::proto::ReplicaHello;
    use crate::view::{ChainView, Readiness, test_member};

    fn node(standalone: bool, memory_bytes_max: u64) -> ChainNode {
        ChainNode::new(NodeConfig {
            standalone,
            client_records_max: 100,
            bug: None,
            server_id: 1,
            memory_bytes_max: Some(memory_bytes_max),
        })
    }

    /// What a put of a new key adds: its data and the entry's overhead.
    fn entry_bytes(key: &str, value_bytes: usize) -> u64 {
        (key.len() + value_bytes) as u64 + ENTRY_OVERHEAD_BYTES
    }

    #[test]
    fn the_head_refuses_a_put_past_max_memory_before_sequencing_it() {
        // Room for two keys of 100 bytes and one client's record.
        let limit = 2 * entry_bytes("a", 100) + CLIENT_RECORD_BYTES;
        let mut head = node(true, limit);
        let (mut store, mut effects) = (SimStore::new(), Vec::new());
        let mut put = |head: &mut ChainNode, store: &mut SimStore, client, request, key: &str, bytes| {
            head.client_write(client, request, key, Some(vec![b'v'; bytes]), 0, store, &mut effects)
        };
        assert!(put(&mut head, &mut store, 1, 1, "a", 100).is_ok());
        assert!(put(&mut head, &mut store, 1, 2, "b", 100).is_ok(), "up to the limit exactly");
        assert_eq!(head.used_memory(&store), limit);

        let refusal = put(&mut head, &mut store, 1, 3, "c", 0).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::ERR_OUT_OF_MEMORY);
        assert!(
            refusal.message.contains(&format!("of --max-memory {}", display_bytes(limit))),
            "names the limit: {}",
            refusal.message
        );
        assert_eq!(
            put(&mut head, &mut store, 1, 4, "a", 101).unwrap_err().code,
            ErrorCode::ERR_OUT_OF_MEMORY,
            "an overwrite that grows the value"
        );
        assert_eq!(head.progress().applied, 2, "refused puts get no sequence number");
        assert_eq!(store.len(), 2);
        // A retry of an applied put gets its answer, full or not.
        assert_eq!(
            put(&mut head, &mut store, 1, 2, "b", 100),
            Ok(WriteReceipt { sequence: 2, found: false })
        );
    }

    #[test]
    fn deletes_and_overwrites_that_do_not_grow_pass_a_full_head() {
        let limit = entry_bytes("a", 100) + CLIENT_RECORD_BYTES;
        let mut head = node(true, limit);
        let (mut store, mut effects) = (SimStore::new(), Vec::new());
        head.client_write(1, 1, "a", Some(vec![1; 100]), 0, &mut store, &mut effects).unwrap();
        // Each from a new client, whose record takes the head past the limit.
        head.client_write(2, 1, "a", Some(vec![2; 100]), 0, &mut store, &mut effects).unwrap();
        head.client_write(3, 1, "a", Some(vec![3; 10]), 0, &mut store, &mut effects).unwrap();
        assert!(head.used_memory(&store) > limit);
        let delete = head.client_write(4, 1, "a", None, 0, &mut store, &mut effects).unwrap();
        assert_eq!(delete, WriteReceipt { sequence: 4, found: true });
        assert!(store.is_empty());
        assert_eq!(head.used_memory(&store), 4 * CLIENT_RECORD_BYTES, "the records stay");
    }

    /// A write forwarded by a member in a newer view than its head's goes
    /// on carrying the newer epoch, so a tail still in the older view does
    /// not commit it under the older record.
    #[test]
    fn a_middle_forwards_a_write_with_its_newer_view_epoch() {
        let mut middle = node(false, u64::MAX);
        let (mut store, mut effects) = (SimStore::new(), Vec::new());
        let members = (1..=3).map(|index| test_member(index, Readiness::Ready)).collect();
        middle.view_changed(
            &ChainView::new(members, 5),
            &test_member(2, Readiness::Ready).name,
            &mut effects,
        );
        let mut hello = ReplicaHello::new();
        hello.sender = test_member(1, Readiness::Ready).name;
        hello.receiver = test_member(2, Readiness::Ready).name;
        hello.epoch = 5;
        let link = middle.link_hello(&hello).unwrap().link;
        let mut write = Write::numbered(1);
        write.epoch = 4;
        effects.clear();
        middle.replicated_batch(&hello.sender, link, vec![write], &mut store, &mut effects).unwrap();
        let forwarded: Vec<u64> = effects
            .iter()
            .filter_map(|action| match action {
                Action::Forward { write, .. } => Some(write.epoch),
                _ => None,
            })
            .collect();
        assert_eq!(forwarded, [5]);
    }

    #[test]
    fn a_replica_applies_replicated_writes_past_its_own_limit() {
        let mut tail = node(false, 1);
        let (mut store, mut effects) = (SimStore::new(), Vec::new());
        let view =
            ChainView::new(vec![test_member(1, Readiness::Ready), test_member(2, Readiness::Ready)], 1);
        tail.view_changed(&view, &test_member(2, Readiness::Ready).name, &mut effects);
        let mut hello = ReplicaHello::new();
        hello.sender = test_member(1, Readiness::Ready).name;
        hello.receiver = test_member(2, Readiness::Ready).name;
        hello.epoch = 1;
        let link = tail.link_hello(&hello).unwrap().link;
        let mut write = Write::new();
        write.sequence = 1;
        write.key = "k".into();
        write.value = Some(vec![0; 1000]);
        write.client_id = 9;
        write.request_id = 1;
        tail.replicated_batch(&hello.sender, link, vec![write], &mut store, &mut effects).unwrap();
        assert_eq!(store.get("k").map(Vec::len), Some(1000));
        assert_eq!(tail.used_memory(&store), entry_bytes("k", 1000) + CLIENT_RECORD_BYTES);
    }
}
