//! The clients of a `table-check` run: random puts, gets, deletes,
//! compare-and-sets and increments over a small key set, each put and cas
//! writing a value no other writes, through the project's own chain client
//! with the retries users get. Every operation is recorded with its call
//! and return time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::Duration;

use super::history::{Clock, OpKind, Record};
use super::random::SplitMix64;
use crate::client::Client;
use crate::client::connection::ClientOptions;
use crate::client::error::ClientError;

/// What the clients do.
#[derive(Clone, Debug)]
pub struct Workload {
    pub zk_hosts: String,
    pub chain_path: String,
    /// Keys `k0` .. `k<keys-1>`: few keys, so operations collide.
    pub keys: u64,
    /// Each client waits up to this long between operations, so histories
    /// stay small enough to check quickly.
    pub think_max: Duration,
    /// The clients' options: how long one operation may take, retries
    /// included, before its outcome counts as unknown; the client secret.
    pub client: ClientOptions,
    /// Broken-mode runs: send reads to any live server instead of the tail
    /// (with `--unsafe-read-anywhere` servers), to show the checker notices.
    pub read_anywhere: Option<Arc<RwLock<Vec<String>>>>,
}

/// Percentages of gets, puts, deletes and compare-and-sets; the rest are
/// increments.
const GET_PERCENT: u64 = 35;
const PUT_PERCENT: u64 = 25;
const DEL_PERCENT: u64 = 10;
const CAS_PERCENT: u64 = 20;

/// Runs client `number` (from 1) until `stop`; returns what it did.
pub fn run_client(
    number: u64,
    workload: &Workload,
    seed: u64,
    clock: Clock,
    stop: &AtomicBool,
) -> Vec<Record> {
    let options = workload.client.clone();
    let mut random = SplitMix64::derive(seed, number);
    let mut records = Vec::new();
    let mut client = loop {
        match Client::chain(&workload.zk_hosts, &workload.chain_path, options.clone()) {
            Ok(client) => break client,
            Err(_) if !stop.load(Ordering::SeqCst) => thread::sleep(Duration::from_millis(100)),
            Err(_) => return records,
        }
    };
    let mut written = 0u64;
    // The value each key was last seen holding: what a cas expects.
    let mut known: HashMap<String, Option<u64>> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        let key = format!("k{}", random.below(workload.keys));
        let dice = random.below(100);
        let mut record = Record::called(number, key.clone(), OpKind::Get, clock.now_us());
        if dice < GET_PERCENT {
            let result = match &workload.read_anywhere {
                Some(addresses) => read_anywhere(addresses, &key, &options, &mut random),
                None => client.get(&key),
            };
            if let Ok(value) = result {
                record.observed = value.map(|bytes| decode_value(&bytes));
                record.return_us = Some(clock.now_us());
            }
        } else if dice < GET_PERCENT + PUT_PERCENT + DEL_PERCENT + CAS_PERCENT {
            record.op = match dice - GET_PERCENT {
                under if under < PUT_PERCENT => OpKind::Put,
                under if under < PUT_PERCENT + DEL_PERCENT => OpKind::Del,
                _ => OpKind::Cas,
            };
            written += 1;
            // Unique in the run, with room below for increments of it.
            record.value = Some((number << 40) | (written << 10));
            record.expected = known.get(&key).copied().flatten();
            write(&mut client, &mut record, &clock);
        } else {
            record.op = OpKind::Incr;
            record.value = Some(random.between(1, 3));
            write(&mut client, &mut record, &clock);
        }
        if record.return_us.is_some() {
            known.insert(key, learnt(&record));
        }
        records.push(record);
        let think = random.below(workload.think_max.as_micros() as u64 + 1);
        thread::sleep(Duration::from_micros(think));
    }
    records
}

/// Starts clients 1 to `count` in `scope`, each running [`run_client`]
/// until `stop` and then returning what it did.
pub fn spawn_clients<'scope>(
    scope: &'scope thread::Scope<'scope, '_>,
    count: u64,
    workload: &'scope Workload,
    (seed, clock): (u64, Clock),
    stop: &'scope AtomicBool,
) -> Vec<thread::ScopedJoinHandle<'scope, Vec<Record>>> {
    (1..=count).map(|number| scope.spawn(move || run_client(number, workload, seed, clock, stop))).collect()
}

/// Carries out a put, delete, cas or incr `record` asks for and records its
/// answer and return time (none if it failed: the outcome is unknown).
fn write(client: &mut Client, record: &mut Record, clock: &Clock) {
    let key = record.key.as_str();
    let value = record.value.unwrap_or_default();
    let done = match record.op {
        OpKind::Put => client.put(key, value.to_string()).is_ok(),
        OpKind::Del => client.delete(key).map(|found| record.found = Some(found)).is_ok(),
        OpKind::Cas => {
            let expected = record.expected.map(|expected| expected.to_string().into_bytes());
            client
                .cas(key, expected.as_deref(), value.to_string())
                .map(|answer| {
                    record.swapped = Some(answer.is_ok());
                    record.observed = answer.err().flatten().map(|bytes| decode_value(&bytes));
                })
                .is_ok()
        }
        OpKind::Incr => client
            .incr(key, value as i64)
            .map(|number| record.observed = Some(u64::try_from(number).unwrap_or(u64::MAX)))
            .is_ok(),
        OpKind::Get => unreachable!("reads are not writes"),
    };
    if done {
        record.return_us = Some(clock.now_us());
    }
}

/// The value a completed operation leaves its key with, as far as its
/// client can tell.
pub fn learnt(record: &Record) -> Option<u64> {
    match record.op {
        OpKind::Put => record.value,
        OpKind::Del => None,
        OpKind::Cas if record.swapped == Some(true) => record.value,
        OpKind::Get | OpKind::Cas | OpKind::Incr => record.observed,
    }
}

/// A value as the workload wrote it; anything else maps to a value no put
/// ever wrote, which the checker reports.
pub fn decode_value(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes).ok().and_then(|text| text.parse().ok()).unwrap_or(u64::MAX)
}

fn read_anywhere(
    addresses: &RwLock<Vec<String>>,
    key: &str,
    options: &ClientOptions,
    random: &mut SplitMix64,
) -> Result<Option<Vec<u8>>, ClientError> {
    let address = {
        let addresses = addresses.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if addresses.is_empty() {
            return Err(ClientError::Unreachable("no server".into()));
        }
        addresses[random.below(addresses.len() as u64) as usize].clone()
    };
    Client::new(&address, options.clone()).get(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_decode_or_map_to_an_impossible_value() {
        assert_eq!(decode_value(b"1099511627777"), 1_099_511_627_777);
        assert_eq!(decode_value(b"garbage"), u64::MAX);
        assert_eq!(decode_value(&[0xff]), u64::MAX);
    }
}
