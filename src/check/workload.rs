//! The clients of a `table-check` run: random puts, gets and deletes over a
//! small key set, each put writing a value no other put writes, through the
//! project's own chain client with the retries users get. Every operation is
//! recorded with its call and return time.

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

/// Percentages of gets and puts; the rest are deletes.
const GET_PERCENT: u64 = 45;
const PUT_PERCENT: u64 = 40;

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
    while !stop.load(Ordering::SeqCst) {
        let key = format!("k{}", random.below(workload.keys));
        let dice = random.below(100);
        let call_us = clock.now_us();
        let mut record = Record {
            client: number,
            key: key.clone(),
            op: OpKind::Get,
            value: None,
            observed: None,
            found: None,
            call_us,
            return_us: None,
        };
        if dice < GET_PERCENT {
            let result = match &workload.read_anywhere {
                Some(addresses) => read_anywhere(addresses, &key, &options, &mut random),
                None => client.get(&key),
            };
            if let Ok(value) = result {
                record.observed = value.map(|bytes| decode_value(&bytes));
                record.return_us = Some(clock.now_us());
            }
        } else if dice < GET_PERCENT + PUT_PERCENT {
            written += 1;
            let value = (number << 40) | written;
            record.op = OpKind::Put;
            record.value = Some(value);
            if client.put(&key, value.to_string()).is_ok() {
                record.return_us = Some(clock.now_us());
            }
        } else {
            record.op = OpKind::Del;
            if let Ok(found) = client.delete(&key) {
                record.found = Some(found);
                record.return_us = Some(clock.now_us());
            }
        }
        records.push(record);
        let think = random.below(workload.think_max.as_micros() as u64 + 1);
        thread::sleep(Duration::from_micros(think));
    }
    records
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
