//! Simulated clients, behaving like the real chain client: they find the
//! head and tail in (a possibly stale reading of) ZooKeeper, send writes
//! to the head and reads to the tail, and after a refusal or a timeout read
//! the chain again and retry the same request, with the same request id,
//! until their deadline. A few reads go to a random server, as a client
//! with an old view or a wrong address would send them: only the
//! committing tail may answer those.

use std::collections::BTreeMap;

use super::server::server_of;
use super::world::{Event, World};
use crate::chain::{Decline, Outcome, WriteOp};
use crate::check::history::{OpKind, Record};
use crate::check::workload::{decode_value, learnt};
use crate::proto::ErrorCode;
use crate::shard::slot::slot_of;
use crate::view::ChainView;

/// Keys the clients share, per chain: few, so operations on them contend.
const KEYS: u64 = 3;
/// How long one attempt waits for its reply (ms).
const ATTEMPT_TIMEOUT_MS: u64 = 400;
/// How long an operation is retried before its outcome counts as unknown.
const OPERATION_DEADLINE_MS: u64 = 4000;
/// A client's pause between operations (ms): long enough that a run spans
/// many session timeouts and faults.
const THINK_MS_MIN: u64 = 10;
const THINK_MS_MAX: u64 = 250;

#[derive(Debug, Clone)]
pub enum Request {
    Write { client_id: u64, request_id: u64, op: WriteOp },
    Read { key: String },
}

#[derive(Debug)]
pub enum Reply {
    Written(Outcome),
    Read(Option<Vec<u8>>),
    Refused(ErrorCode),
}

/// The operation a client is carrying out.
struct Operation {
    /// Its record in the history.
    record: usize,
    request_id: u64,
    deadline_ms: u64,
    /// Reads only: sent to this server instead of the tail.
    misrouted_to: Option<usize>,
}

pub struct Client {
    index: usize,
    /// Its reading of a chain (by index); `None` when it must read again.
    view: Option<(usize, ChainView)>,
    operation: Option<Operation>,
    /// The attempt whose reply is awaited.
    attempt: u64,
    next_request_id: u64,
    /// Values it has written (each unique in the run).
    written: u64,
    /// The value it last learnt each key held (`None`: absent): what its
    /// compare-and-sets expect.
    known: BTreeMap<String, Option<u64>>,
    done: bool,
}

impl Client {
    pub fn new(index: usize) -> Client {
        Client {
            index,
            view: None,
            operation: None,
            attempt: 0,
            next_request_id: 1,
            written: 0,
            known: BTreeMap::new(),
            done: false,
        }
    }

    fn id(&self) -> u64 {
        self.index as u64 + 1
    }
}

impl World {
    /// Starts the client's next operation, or sends its current one again.
    pub fn client_next(&mut self, index: usize) {
        if self.clients[index].operation.is_none() && !self.start_operation(index) {
            return;
        }
        let now = self.now_ms;
        let client = &mut self.clients[index];
        let operation = client.operation.as_ref().expect("an operation is under way");
        if now >= operation.deadline_ms {
            self.give_up(index);
            return;
        }
        let record = &self.history.records[operation.record];
        // The chain of the key, by the map (one chain: no map).
        let chain = self.map.as_ref().map_or(0, |map| map.owner_index(slot_of(&record.key)) as usize);
        if client.view.as_ref().is_none_or(|(read, _)| *read != chain) {
            client.view = Some((chain, self.zk.view(chain)));
        }
        let (_, view) = client.view.as_ref().expect("read just now");
        let target = match record.op {
            OpKind::Get => {
                operation.misrouted_to.or_else(|| view.tail().and_then(|tail| server_of(&tail.address)))
            }
            _ => view.head().and_then(|head| server_of(&head.address)),
        };
        let (client_id, request_id) = (client.id(), operation.request_id);
        let request = match write_op(record) {
            None => Request::Read { key: record.key.clone() },
            Some(op) => Request::Write { client_id, request_id, op },
        };
        client.attempt += 1;
        let attempt = client.attempt;
        let Some(server) = target else {
            // No chain in this reading: read again after a pause.
            self.retry(index, attempt);
            return;
        };
        self.trace(|| format!("client {index} attempt {attempt} -> s{server}: {request:?}"));
        let delay = self.rng.between(0, 3);
        if let Some(late_ms) = self.trap_on_request(server, &request) {
            let copy = request.clone();
            self.schedule(delay + late_ms, Event::Request { server, client: index, attempt, request: copy });
        }
        self.schedule(delay, Event::Request { server, client: index, attempt, request });
        self.schedule(ATTEMPT_TIMEOUT_MS, Event::AttemptTimeout { client: index, attempt });
    }

    /// Picks and records the next operation; false when the client is done.
    fn start_operation(&mut self, index: usize) -> bool {
        if self.operations_started >= self.config.steps {
            self.clients[index].done = true;
            if self.clients.iter().all(|client| client.done) {
                self.go_quiet();
            }
            return false;
        }
        self.operations_started += 1;
        let key = format!("k{}", self.rng.below(key_count(self.config.chains)));
        let op = match self.rng.below(100) {
            0..=34 => OpKind::Get,
            35..=59 => OpKind::Put,
            60..=69 => OpKind::Del,
            70..=89 => OpKind::Cas,
            _ => OpKind::Incr,
        };
        let live: Vec<usize> = (0..self.servers.len()).filter(|&server| self.servers[server].alive).collect();
        // (Nobody may be live: a durable chain crashed whole.)
        let misrouted_to = (op == OpKind::Get && self.rng.below(10) == 0 && !live.is_empty())
            .then(|| live[self.rng.below(live.len() as u64) as usize]);
        let delta = self.rng.between(1, 3);
        let client = &mut self.clients[index];
        let mut record = Record::called(client.id(), key, op, self.now_ms * 1000);
        record.value = match op {
            OpKind::Put | OpKind::Cas => {
                client.written += 1;
                // Unique, with room below for increments of it.
                Some(client.id() * 1_000_000_000 + client.written * 1000)
            }
            OpKind::Incr => Some(delta),
            OpKind::Get | OpKind::Del => None,
        };
        record.expected = client.known.get(&record.key).copied().flatten();
        let request_id = client.next_request_id;
        client.next_request_id += 1;
        self.history.records.push(record);
        let deadline_ms = self.now_ms + OPERATION_DEADLINE_MS;
        let record = self.history.records.len() - 1;
        self.clients[index].operation = Some(Operation { record, request_id, deadline_ms, misrouted_to });
        true
    }

    pub fn client_reply(&mut self, index: usize, attempt: u64, reply: Reply) {
        let client = &self.clients[index];
        if client.attempt != attempt {
            return;
        }
        let Some(operation) = &client.operation else { return };
        let record = &mut self.history.records[operation.record];
        match reply {
            Reply::Written(Outcome::Applied { found, number }) => match record.op {
                OpKind::Del => record.found = Some(found),
                OpKind::Cas => record.swapped = Some(true),
                OpKind::Incr => record.observed = Some(number as u64),
                _ => {}
            },
            Reply::Written(Outcome::Declined(Decline::Mismatch(current))) => {
                record.swapped = Some(false);
                record.observed = current.map(|bytes| decode_value(&bytes));
            }
            Reply::Read(value) => record.observed = value.map(|bytes| decode_value(&bytes)),
            Reply::Written(Outcome::Declined(Decline::Earlier)) => {
                // Declined, but what the decision saw is not told: recorded
                // as of unknown outcome, which allows more than happened.
                self.give_up(index);
                return;
            }
            Reply::Written(Outcome::Declined(Decline::WrongType(_))) | Reply::Refused(_) => {
                self.retry(index, attempt);
                return;
            }
        }
        let learnt = learnt(record);
        self.clients[index].known.insert(record.key.clone(), learnt);
        record.return_us = Some(self.now_ms * 1000);
        self.clients[index].operation = None;
        let think = self.rng.between(THINK_MS_MIN, THINK_MS_MAX);
        self.schedule(think, Event::ClientNext(index));
    }

    pub fn client_timeout(&mut self, index: usize, attempt: u64) {
        if self.clients[index].attempt == attempt && self.clients[index].operation.is_some() {
            self.retry(index, attempt);
        }
    }

    /// The client goes on to its next operation without an answer to this
    /// one: a write's outcome stays unknown (it may still apply).
    fn give_up(&mut self, index: usize) {
        self.trace(|| format!("client {index} gives up"));
        self.clients[index].operation = None;
        let think = self.rng.between(THINK_MS_MIN, THINK_MS_MAX);
        self.schedule(think, Event::ClientNext(index));
    }

    /// The attempt failed: read the chain again and retry after a pause.
    fn retry(&mut self, index: usize, attempt: u64) {
        let client = &mut self.clients[index];
        client.view = None;
        client.attempt = attempt + 1;
        if let Some(operation) = &mut client.operation {
            operation.misrouted_to = None;
        }
        let pause = self.rng.between(10, 60);
        self.schedule(pause, Event::ClientNext(index));
    }
}

/// Keys the clients of a run of `chains` chains share.
pub(super) fn key_count(chains: usize) -> u64 {
    KEYS * chains.max(1) as u64
}

/// The write a record asks for (`None`: a read).
fn write_op(record: &Record) -> Option<WriteOp> {
    let text = |value: u64| value.to_string().into_bytes();
    let key = record.key.clone();
    Some(match record.op {
        OpKind::Get => return None,
        OpKind::Put => WriteOp::Set { key, value: record.value.map(text) },
        OpKind::Del => WriteOp::Set { key, value: None },
        OpKind::Cas => WriteOp::Cas {
            key,
            expected: record.expected.map(text),
            value: text(record.value.unwrap_or_default()),
        },
        OpKind::Incr => WriteOp::Incr { key, delta: record.value.unwrap_or_default() as i64 },
    })
}
