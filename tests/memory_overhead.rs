//! What a table entry and a client record really cost in memory beyond
//! their data, measured as the process's resident memory (RSS) growth, and
//! checked against the constants `--max-memory` counts with
//! ([`ENTRY_OVERHEAD_BYTES`], [`CLIENT_RECORD_BYTES`]). A binary of its own
//! with one test: RSS is the whole process's, so nothing may run beside it.
//! `cargo test --release --test memory_overhead -- --nocapture` prints the
//! measurements.

use chaintable::bench::workload::key_name;
use chaintable::chain::clients::{ClientRecords, record};
use chaintable::limits::{CLIENT_RECORD_BYTES, CLIENT_RECORDS_MAX_DEFAULT, ENTRY_OVERHEAD_BYTES};
use chaintable::store::table::Table;

/// The table of BENCHMARKS.md's memory measurement: 1,000,000 keys
/// `key:<n>` of 100-byte values over 1024 stripes.
const KEYS: u64 = 1_000_000;
const VALUE_BYTES: usize = 100;
const STRIPES: usize = 1024;

/// How far a constant may be from the measurement before this test asks
/// for it to be measured again (the layout of entries or records changed).
const TOLERANCE: f64 = 0.2;

/// The resident memory of this process.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("a VmRSS line");
    let kilobytes: u64 = line.split_whitespace().nth(1).and_then(|kb| kb.parse().ok()).expect("VmRSS in kB");
    kilobytes * 1024
}

#[track_caller]
fn assert_close(name: &str, constant: u64, measured: f64) {
    let error = (constant as f64 - measured).abs() / measured;
    assert!(
        error <= TOLERANCE,
        "{name} is {constant} B but {measured:.1} B was measured: measure again and update src/limits.rs"
    );
}

#[test]
fn entry_and_client_record_overheads_match_the_limits() {
    // Client records first, kept alive while the table grows, so neither
    // reuses memory the other freed.
    let before = resident_bytes();
    let mut records = ClientRecords::new(CLIENT_RECORDS_MAX_DEFAULT);
    for client in 1..=CLIENT_RECORDS_MAX_DEFAULT as u64 {
        records.remember(record(client, 1, client, false, 0));
    }
    let per_record = (resident_bytes() - before) as f64 / records.len() as f64;
    println!("client records: {} cost {per_record:.1} B each", records.len());

    let before = resident_bytes();
    let table = Table::new(STRIPES);
    let mut key = String::new();
    let value = [b'x'; VALUE_BYTES];
    for index in 0..KEYS {
        key_name(index, &mut key);
        table.put(&key, value);
        if (index + 1) % (KEYS / 10) == 0 {
            let keys = index + 1;
            let grown = (resident_bytes() - before) as f64 / keys as f64;
            let data = table.bytes_stored() as f64 / keys as f64;
            println!(
                "{keys} keys: {grown:.1} B each, {data:.1} B of key and value, {:.1} B overhead",
                grown - data
            );
        }
    }
    let grown = (resident_bytes() - before) as f64 / KEYS as f64;
    let overhead = grown - table.bytes_stored() as f64 / KEYS as f64;

    assert_close("ENTRY_OVERHEAD_BYTES", ENTRY_OVERHEAD_BYTES, overhead);
    assert_close("CLIENT_RECORD_BYTES", CLIENT_RECORD_BYTES, per_record);
    assert_eq!(records.len(), CLIENT_RECORDS_MAX_DEFAULT);
}
