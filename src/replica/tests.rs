//! Protocol scenarios driven through the host: replicas built from views,
//! writes moved between them by hand.

use super::*;
use crate::proto::{ReplicaHello, SnapshotChunk, Write};
use crate::view::{CommitRecord, test_member as member};
use std::sync::Arc;
use std::thread;

/// The node's link events one by one, as the link threads once called
/// them: these tests drive a chain of replicas by hand, a step at a time.
impl Replica {
    fn apply_replicated(&self, sender: &str, link: u64, writes: Vec<Write>) -> Result<(), Refusal> {
        self.step(AckWriter::CallerAcks, |node, store, carry| {
            node.replicated_batch(sender, link, writes, store, carry)
        })
    }

    fn progress_for_predecessor(&self, sender: &str, link: u64) -> Option<Progress> {
        self.node.lock().progress_for(sender, link)
    }

    fn welcome(&self, hello: &ReplicaHello) -> Result<crate::chain::Welcome, Refusal> {
        self.node.lock().link_hello(hello)
    }

    fn install_chunk(
        &self,
        sender: &str,
        link: u64,
        chunk: SnapshotChunk,
        first: bool,
    ) -> Result<(), Refusal> {
        self.step(AckWriter::Wake, |node, store, carry| {
            node.snapshot_chunk(sender, link, chunk, first, store, carry)
        })
    }

    /// A heartbeat from the predecessor `sender` on `link`, echoing a
    /// stamp of now: the read lease is renewed.
    fn heartbeat(&self, sender: &str, link: u64) {
        let now_ms = self.now_ms();
        let renewed = self.step(AckWriter::Wake, |node, _, _| node.heartbeat(sender, link, now_ms, now_ms));
        renewed.expect("a heartbeat from the predecessor");
    }

    fn set_promote_at(&self, sender: &str, link: u64, sequence: u64) -> Result<(), Refusal> {
        self.step(AckWriter::Wake, |node, _, carry| node.hand_over_mark(sender, link, sequence, carry))
    }

    fn may_replicate(&self) -> bool {
        self.node.lock().may_replicate()
    }

    fn snapshot(&self) -> Option<Snapshot> {
        let node = self.node.lock();
        let point = node.snapshot_point()?;
        Some(self.snapshot_at(point, &node))
    }

    fn try_hand_over(&self, successor: &str, successor_applied: u64) -> Option<u64> {
        self.step(AckWriter::Wake, |node, _, carry| node.try_hand_over(successor, successor_applied, carry))
    }
}

impl Replica {
    /// A client write and its wait for the commit, as a server's
    /// connection does it, with the commit-expiry thread's periodic
    /// check. Returns whether the key existed.
    fn write_and_wait(
        &self,
        client_id: u64,
        request_id: u64,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<bool, Refusal> {
        let op = WriteOp::Set { key: key.to_owned(), value };
        let receipt = self.client_write(client_id, request_id, op)?;
        let (settle, settled) = crossbeam_channel::bounded(1);
        self.await_commit(
            &receipt,
            Box::new(move |outcome| {
                let _ = settle.send(outcome);
            }),
        );
        loop {
            match settled.recv_timeout(Duration::from_millis(10)) {
                Ok(outcome) => return commit_result(receipt.sequence, outcome).map(|()| receipt.found()),
                Err(_) => self.expire_overdue_writes(),
            }
        }
    }
}

/// `view` with the commit record of its own epoch, as the tail writes
/// it before committing.
fn recorded(view: ChainView) -> ChainView {
    let epoch = view.epoch;
    view.with_record(CommitRecord { epoch, ..CommitRecord::default() })
}

fn name(sequence: u64) -> String {
    format!("node{sequence:010}")
}

fn replica() -> Arc<Replica> {
    replica_leased_for(Duration::from_secs(60))
}

fn replica_leased_for(lease: Duration) -> Arc<Replica> {
    let (ready_sender, _) = crossbeam_channel::bounded(1);
    let limits = ReplicationLimits { commit_timeout: Duration::from_secs(2), ..ReplicationLimits::default() };
    let replica = Replica::new(8, false, limits, ready_sender);
    replica.renew_lease(Instant::now() + lease);
    Arc::new(replica)
}

/// Replicas for the members of `view`, each told the view.
fn chain(view: &ChainView) -> Vec<Arc<Replica>> {
    view.members
        .iter()
        .map(|member| {
            let replica = replica();
            if let Some(predecessor) =
                view.position_of(&member.name).and_then(|position| position.predecessor)
            {
                replica.node.lock().assume_handed_over_by(&predecessor.name);
            }
            replica.set_view(view, &member.name);
            replica
        })
        .collect()
}

/// Moves every queued write from `from` to `to`, then `to`'s commit
/// point back to `from`: one round of the replication threads' work.
fn forward(from: &Replica, from_name: &str, to: &Replica, to_name: &str) {
    let writes: Vec<Write> = from.outbox().try_iter().map(|(_, write)| write).collect();
    to.apply_replicated(from_name, 0, writes).unwrap();
    from.on_successor_progress(to_name, to.progress().committed).unwrap();
}

fn ready_view(sequences: &[u64]) -> ChainView {
    recorded(ChainView::new(
        sequences.iter().map(|&sequence| member(sequence, Readiness::Ready)).collect(),
        1,
    ))
}

#[test]
fn a_write_commits_only_when_the_tail_has_it() {
    let view = ready_view(&[1, 2, 3]);
    let replicas = chain(&view);
    let head = Arc::clone(&replicas[0]);
    let writer = thread::spawn(move || head.write_and_wait(7, 1, "k", Some(b"v".to_vec())));
    // Wait until the head applied it.
    while replicas[0].progress().applied < 1 {
        thread::yield_now();
    }
    assert_eq!(replicas[0].progress().committed, 0, "not committed before the tail has it");
    forward(&replicas[1], &name(2), &replicas[2], &name(3)); // nothing yet
    forward(&replicas[0], &name(1), &replicas[1], &name(2));
    assert_eq!(replicas[1].progress(), Progress { applied: 1, committed: 0 });
    forward(&replicas[1], &name(2), &replicas[2], &name(3));
    assert_eq!(replicas[2].progress(), Progress { applied: 1, committed: 1 });
    forward(&replicas[0], &name(1), &replicas[1], &name(2));
    assert_eq!(writer.join().unwrap(), Ok(false));
    for replica in &replicas {
        assert_eq!(replica.table.get("k"), Some(b"v".to_vec()));
    }
}

#[test]
fn roles_decide_who_reads_and_writes() {
    let replicas = chain(&ready_view(&[1, 2]));
    assert_eq!(replicas[0].role(), Role::Head);
    assert_eq!(replicas[1].role(), Role::Tail);
    assert_eq!(replicas[0].read_guard(|table| table.len()).unwrap_err().code, ErrorCode::ERR_WRONG_ROLE);
    let refusal = replicas[1].read_guard(|table| table.len()).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::ERR_UNAVAILABLE, "no read lease from its predecessor yet");
    replicas[1].heartbeat(&name(1), 0);
    assert_eq!(replicas[1].read_guard(|table| table.len()), Ok(0));
    let refusal = replicas[1].write_and_wait(1, 1, "k", None).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::ERR_WRONG_ROLE);
    assert!(refusal.message.contains("127.0.0.1:7001"), "names the head: {}", refusal.message);
}

#[test]
fn writes_only_from_the_current_predecessor_in_order() {
    let replicas = chain(&ready_view(&[1, 2, 3]));
    let mut write = Write::new();
    write.sequence = 1;
    write.key = "k".into();
    write.value = Some(b"v".to_vec());
    let refusal = replicas[2].apply_replicated(&name(1), 0, vec![write.clone()]).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::ERR_WRONG_ROLE);
    replicas[2].apply_replicated(&name(2), 0, vec![write.clone()]).unwrap();
    // A resend of what it has is skipped; a gap is refused.
    replicas[2].apply_replicated(&name(2), 0, vec![write.clone()]).unwrap();
    write.sequence = 3;
    assert!(replicas[2].apply_replicated(&name(2), 0, vec![write]).is_err());
    assert_eq!(replicas[2].progress().applied, 1);
}

#[test]
fn retried_write_after_head_failure_is_applied_once() {
    let replicas = chain(&ready_view(&[1, 2]));
    replicas[0].table.put("k", b"old");
    // The head applies and forwards a delete, then dies before answering.
    let head = Arc::clone(&replicas[0]);
    let writer = thread::spawn(move || head.write_and_wait(42, 7, "k", None));
    while replicas[0].progress().applied < 1 {
        thread::yield_now();
    }
    let writes: Vec<Write> = replicas[0].outbox().try_iter().map(|(_, write)| write).collect();
    replicas[1].table.put("k", b"old");
    replicas[1].apply_replicated(&name(1), 0, writes).unwrap();
    replicas[0].fence("killed in the test");
    assert!(writer.join().unwrap().is_err(), "the old head never answered");
    // The successor becomes the head; the client retries there.
    replicas[1].set_view(&ready_view(&[2]), &name(2));
    assert_eq!(replicas[1].role(), Role::HeadAndTail);
    assert_eq!(replicas[1].write_and_wait(42, 7, "k", None), Ok(true), "original answer: the key existed");
    assert_eq!(replicas[1].progress().applied, 1, "not applied twice");
    // A newer request from the same client is applied.
    assert_eq!(replicas[1].write_and_wait(42, 8, "k", None), Ok(false));
    let stale = replicas[1].write_and_wait(42, 7, "k", None).unwrap_err();
    assert_eq!(stale.code, ErrorCode::ERR_STALE_REQUEST);
}

/// A head is paused after applying a delete and before forwarding it;
/// ZooKeeper drops it, its successor becomes the head and commits a write
/// of its own under the same sequence number. When the old head resumes,
/// no ack may tell it that its delete committed.
#[test]
fn acks_never_cover_writes_the_old_predecessor_did_not_send() {
    let view = ready_view(&[1, 2]);
    let old_head = replica_leased_for(Duration::from_millis(300));
    old_head.set_view(&view, &name(1));
    let successor = replica();
    successor.set_view(&view, &name(2));
    let head = Arc::clone(&old_head);
    let writer = thread::spawn(move || head.write_and_wait(1, 1, "k", None));
    while old_head.progress().applied < 1 {
        thread::yield_now();
    }
    successor.set_view(&ready_view(&[2]), &name(2));
    assert_eq!(successor.write_and_wait(2, 1, "other", Some(b"v".to_vec())), Ok(false));
    assert_eq!(successor.progress().committed, 1, "its own write, sequence 1");
    assert_eq!(successor.progress_for_predecessor(&name(1), 0), None, "no ack to a former predecessor");
    // An ack sent before the check, read once the old head's lease is over.
    thread::sleep(Duration::from_millis(400));
    old_head.on_successor_progress(&name(2), 1).unwrap();
    assert_eq!(old_head.progress().committed, 0);
    let refusal = writer.join().unwrap().unwrap_err();
    assert_eq!(refusal.code, ErrorCode::ERR_UNAVAILABLE, "{refusal:?}");
}

#[test]
fn tail_failure_makes_the_predecessor_commit() {
    let replicas = chain(&ready_view(&[1, 2]));
    let head = Arc::clone(&replicas[0]);
    let writer = thread::spawn(move || head.write_and_wait(1, 1, "k", Some(b"v".to_vec())));
    while replicas[0].progress().applied < 1 {
        thread::yield_now();
    }
    replicas[0].set_view(&ready_view(&[1]), &name(1));
    assert_eq!(writer.join().unwrap(), Ok(false));
    assert_eq!(replicas[0].read_guard(|table| table.get("k")), Ok(Some(b"v".to_vec())));
}

#[test]
fn join_with_snapshot_and_hand_over() {
    let tail = replica();
    let ready = ready_view(&[1]);
    tail.set_view(&ready, &name(1));
    tail.write_and_wait(1, 1, "a", Some(b"1".to_vec())).unwrap();
    let joining_view =
        recorded(ChainView::new(vec![member(1, Readiness::Ready), member(2, Readiness::Joining)], 2));
    tail.set_view(&joining_view, &name(1));
    let (ready_sender, ready_requests) = crossbeam_channel::bounded(1);
    let joiner = Replica::new(8, false, ReplicationLimits::default(), ready_sender);
    joiner.renew_lease(Instant::now() + Duration::from_secs(60));
    joiner.set_view(&joining_view, &name(2));
    assert_eq!(joiner.role(), Role::Joining);
    let mut hello = ReplicaHello::new();
    hello.sender = name(1);
    hello.receiver = name(2);
    hello.epoch = 2;
    let welcome = joiner.welcome(&hello).unwrap();
    assert_eq!((welcome.last_applied, welcome.wants_snapshot), (0, true));
    let link = welcome.link;
    hello.epoch = 1;
    assert!(joiner.welcome(&hello).is_err(), "a predecessor with an older view is refused");
    hello.epoch = 2;
    hello.receiver = name(3);
    assert!(joiner.welcome(&hello).is_err(), "a link meant for another node is refused");

    // The tail keeps committing on its own while the joiner catches up.
    let snapshot = tail.snapshot().unwrap();
    assert_eq!(tail.write_and_wait(1, 2, "b", Some(b"2".to_vec())), Ok(false));
    let mut chunk = snapshot.point.chunk_header(snapshot.entries.len() as u64);
    chunk.last = true;
    chunk.entries = snapshot.entries.iter().map(crate::proto::Entry::from_stored).collect();
    joiner.install_chunk(&name(1), link, chunk, true).unwrap();
    assert!(tail.try_hand_over(&name(2), joiner.progress().applied).is_none(), "not caught up yet");
    let writes: Vec<Write> = tail.outbox().try_iter().map(|(_, write)| write).collect();
    assert_eq!(writes.len(), 1, "only the write after the snapshot is streamed");
    assert!(joiner.apply_replicated(&name(1), 0, writes.clone()).is_err(), "an older link is refused");
    joiner.apply_replicated(&name(1), link, writes).unwrap();
    assert_eq!(joiner.read_guard(|table| table.len()).unwrap_err().code, ErrorCode::ERR_WRONG_ROLE);

    let promote_at = tail.try_hand_over(&name(2), joiner.progress().applied).unwrap();
    assert_eq!(promote_at, 2);
    assert!(tail.read_guard(|table| table.len()).is_err(), "the old tail stops answering reads at once");
    joiner.set_promote_at(&name(1), link, promote_at).unwrap();
    assert!(ready_requests.try_recv().is_ok(), "the joiner asks to be announced ready");
    let promoted =
        recorded(ChainView::new(vec![member(1, Readiness::Ready), member(2, Readiness::Ready)], 2));
    joiner.set_view(&promoted, &name(2));
    tail.set_view(&promoted, &name(1));
    joiner.heartbeat(&name(1), link);
    assert_eq!(joiner.read_guard(|table| table.keys()), Ok(vec!["a".to_owned(), "b".to_owned()]));
    assert_eq!(tail.role(), Role::Head);
}

/// Seed 16806427444564262854 of `table-check sim`: a joiner handed the
/// tail role by a predecessor that then left must not serve as tail
/// behind a new predecessor that never handed over to it.
#[test]
fn ready_only_by_the_current_predecessors_hand_over() {
    let joiner = replica();
    joiner.node.lock().assume_handed_over_by(&name(2));
    let after_old_tail_left =
        recorded(ChainView::new(vec![member(1, Readiness::Ready), member(3, Readiness::Ready)], 4));
    joiner.set_view(&after_old_tail_left, &name(3));
    assert_eq!(joiner.read_guard(|table| table.len()).unwrap_err().code, ErrorCode::ERR_WRONG_ROLE);
    assert!(joiner.take_membership_requests().reregister.is_some(), "it registers again");
    let rightful = replica();
    rightful.node.lock().assume_handed_over_by(&name(1));
    rightful.set_view(&after_old_tail_left, &name(3));
    rightful.heartbeat(&name(1), 0);
    assert_eq!(rightful.read_guard(|table| table.len()), Ok(0));
    assert!(rightful.take_membership_requests().reregister.is_none());
}

#[test]
fn client_records_are_bounded() {
    let (ready_sender, _) = crossbeam_channel::bounded(1);
    let limits = ReplicationLimits { client_records_max: 20, ..ReplicationLimits::default() };
    let replica = Replica::new(4, true, limits, ready_sender);
    for client in 1..=100 {
        replica.write_and_wait(client, 1, "k", Some(vec![1])).unwrap();
    }
    let clients = replica.node.lock().client_records();
    assert!(clients <= 20, "{clients} records kept");
    // The most recent clients are still recognised.
    assert_eq!(replica.write_and_wait(100, 1, "k", None), Ok(true));
    assert_eq!(replica.progress().applied, 100, "the retry was not applied again");
}

#[test]
fn only_a_replica_holding_the_chains_state_replicates() {
    // A joining replica (fresh or reset) may not replicate or snapshot:
    // its table is not the chain's state.
    let joining_view = recorded(ChainView::new(
        vec![member(1, Readiness::Joining), member(2, Readiness::Recovering { last_applied: 9 })],
        1,
    ));
    let joiner = replica();
    joiner.set_view(&joining_view, &name(1));
    assert!(!joiner.may_replicate());
    assert!(joiner.snapshot().is_none(), "an empty joiner must not overwrite its successor");
    // Once it completed a transfer from the chain, it may.
    let mut chunk = SnapshotChunk::new();
    chunk.sequence = 3;
    chunk.last = true;
    let ready_then_joining =
        recorded(ChainView::new(vec![member(0, Readiness::Ready), member(1, Readiness::Joining)], 2));
    joiner.set_view(&ready_then_joining, &name(1));
    joiner.install_chunk(&name(0), 0, chunk, true).unwrap();
    assert!(joiner.may_replicate());
    // Fencing takes the right away again.
    joiner.fence("test");
    assert!(!joiner.may_replicate());
    // A ready member may.
    let ready = chain(&ready_view(&[1]));
    assert!(ready[0].may_replicate() && ready[0].snapshot().is_some());
}

#[test]
fn fenced_replica_serves_nothing() {
    let replicas = chain(&ready_view(&[1]));
    replicas[0].fence("test");
    assert_eq!(replicas[0].role(), Role::Fenced);
    assert_eq!(replicas[0].fencings(), 1);
    assert!(replicas[0].read_guard(|table| table.len()).is_err());
    assert!(replicas[0].write_and_wait(1, 1, "k", None).is_err());
    // An expired lease alone also stops service.
    let unleased = replica_leased_for(Duration::from_millis(1));
    unleased.set_view(&ready_view(&[1]), &name(1));
    thread::sleep(Duration::from_millis(5));
    assert_eq!(unleased.read_guard(|table| table.len()).unwrap_err().code, ErrorCode::ERR_UNAVAILABLE);
}

/// Durable: nothing is committed, and no read shows a write, before the
/// disk reports the write synced (the log thread is not started here, so
/// only the test reports it).
#[test]
fn a_durable_write_commits_and_shows_only_once_its_disk_reports_it() {
    let dir = std::env::temp_dir().join(format!("chaintable-replica-durable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (wake, _woken) = crossbeam_channel::bounded(1);
    let limits =
        ReplicationLimits { commit_timeout: Duration::from_millis(100), ..ReplicationLimits::default() };
    let mut replica = Replica::new(4, true, limits, wake);
    let options = durable::DurableOptions {
        dir: dir.clone(),
        fsync: crate::storage::syncer::FsyncPolicy::Batch,
        snapshot_log_bytes: u64::MAX,
    };
    replica.open_durable(options, "standalone").expect("a new data directory");
    let op = WriteOp::Set { key: "k".into(), value: Some(b"v".to_vec()) };
    let receipt = replica.client_write(1, 1, op).expect("a put");
    assert!(!replica.is_committed(&receipt), "not on disk yet");
    let refusal = replica.read_guard(|table| table.get("k")).expect_err("the read waits, then refuses");
    assert!(refusal.message.contains("not on disk yet"), "{}", refusal.message);
    let other = replica.read_guard_of(ReadKeys::One("other"), |table| table.get("other"));
    assert_eq!(other, Ok(None), "a read of another key does not wait for it");
    let same = replica.read_guard_of(ReadKeys::One("k"), |table| table.get("k"));
    assert!(same.is_err(), "a read of its key waits for it: {same:?}");
    let history = replica.node.lock().history();
    replica.disk_synced(history, receipt.sequence);
    assert!(replica.is_committed(&receipt));
    assert_eq!(replica.read_guard(|table| table.get("k")), Ok(Some(b"v".to_vec())));
    std::fs::remove_dir_all(&dir).expect("removing the directory");
}
