//! `table-bench`: a closed-loop load generator for chaintable, and for Redis
//! to compare with.
//!
//! Each of N threads owns one connection (one [`Client`], or one
//! [`RedisConnection`]) and sends operations back to back: the next leaves
//! as soon as the previous is answered, so throughput and latency are those
//! of N users who each wait for their answer. A run has three phases, all
//! threads together: fill the key space (skipped with `--no-fill`), warm up
//! (unmeasured), then measure for the given duration. The coordinating
//! thread switches phases and prints progress; the load threads record into
//! their own histograms, merged at the end, so measuring adds no sharing
//! between them beyond two relaxed counters for the progress line.
//!
//! Chain mode looks the chain up in ZooKeeper once, at the start, and gives
//! every thread plain connections to the head (writes) and the tail (reads).
//! One [`Client::chain`] per thread would open one ZooKeeper session per
//! thread, and ZooKeeper refuses more than 60 connections from one address
//! by default (`maxClientCnxns`), so 200 clients could not even start. The
//! price: no retries if the chain changes during the run; failures then
//! show as errors, which is what a benchmark should show anyway.
//!
//! - [`args`]: its command line.
//! - [`workload`]: the operation mix, key choice and values, from a seeded generator.
//! - [`histogram`]: log-linear latency histogram and its percentiles.
//! - [`redis`]: a minimal RESP client (SET, GET, DEL) to compare with Redis.
//! - [`report`]: the results as a table and as one JSON line.
//! - [`idle`]: connections held open without sending, to measure what idle clients cost.
//! - `sharded`: many chains: each key to the chain the shard map gives its slot.

pub mod args;
pub mod histogram;
pub mod idle;
pub mod redis;
pub mod report;
mod sharded;
pub mod watchers;
pub mod workload;

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::args::client_security;
use crate::client::Client;
use crate::client::connection::ClientOptions;
use crate::client::error::ClientError;
use crate::client::locator::Locator;
use crate::limits::{BENCH_FILL_ERRORS_MAX, BENCH_PROGRESS_EVERY, BENCH_TICK, BENCH_WORKER_STACK_BYTES};

use args::{BenchArgs, BenchTarget};
use histogram::Histogram;
use idle::IdleConnections;
use redis::RedisConnection;
use report::Report;
use watchers::Watchers;
use workload::{Op, SplitMix64, counter_name, key_name, value_of};

/// Why a run could not be done at all.
#[derive(Debug, Clone, PartialEq)]
pub enum BenchError {
    /// The target could not be reached (or the chain not found) before the
    /// run started; exit code 2.
    Unreachable(String),
    /// The run could not be set up (e.g. too many threads for the system).
    Setup(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Unreachable(message) | BenchError::Setup(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for BenchError {}

/// What a load thread does to the target; one implementation per kind of
/// target, errors flattened to text because they are only counted and shown.
trait Store: Send {
    /// Whether `key` was found.
    fn get(&mut self, key: &str) -> Result<bool, String>;
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String>;
    /// Whether `key` existed.
    fn del(&mut self, key: &str) -> Result<bool, String>;
    /// Compare-and-set of `key` from `value` to `value`; whether it swapped.
    fn cas(&mut self, key: &str, value: &[u8]) -> Result<bool, String>;
    /// Adds 1 to the counter `key`.
    fn incr(&mut self, key: &str) -> Result<(), String>;
}

/// One table-server (`--server`), or a chain whose head is also its tail.
impl Store for Client {
    fn get(&mut self, key: &str) -> Result<bool, String> {
        Client::get(self, key).map(|value| value.is_some()).map_err(|error| error.to_string())
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        Client::put(self, key, value).map_err(|error| error.to_string())
    }

    fn del(&mut self, key: &str) -> Result<bool, String> {
        Client::delete(self, key).map_err(|error| error.to_string())
    }

    fn cas(&mut self, key: &str, value: &[u8]) -> Result<bool, String> {
        Client::cas(self, key, Some(value), value)
            .map(|swapped| swapped.is_ok())
            .map_err(|error| error.to_string())
    }

    fn incr(&mut self, key: &str) -> Result<(), String> {
        Client::incr(self, key, 1).map(drop).map_err(|error| error.to_string())
    }
}

/// A chain of two or more servers: writes to the head, reads to the tail.
struct ChainStore {
    head: Client,
    tail: Client,
}

impl Store for ChainStore {
    fn get(&mut self, key: &str) -> Result<bool, String> {
        Store::get(&mut self.tail, key)
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        Store::put(&mut self.head, key, value)
    }

    fn del(&mut self, key: &str) -> Result<bool, String> {
        Store::del(&mut self.head, key)
    }

    fn cas(&mut self, key: &str, value: &[u8]) -> Result<bool, String> {
        Store::cas(&mut self.head, key, value)
    }

    fn incr(&mut self, key: &str) -> Result<(), String> {
        Store::incr(&mut self.head, key)
    }
}

impl Store for RedisConnection {
    fn get(&mut self, key: &str) -> Result<bool, String> {
        RedisConnection::get(self, key).map(|value| value.is_some()).map_err(|error| error.to_string())
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.set(key, value).map_err(|error| error.to_string())
    }

    fn del(&mut self, key: &str) -> Result<bool, String> {
        RedisConnection::del(self, key).map_err(|error| error.to_string())
    }

    /// Redis has no compare-and-set command (WATCH/MULTI/EXEC takes more
    /// round trips: not the same operation); `--redis` refuses a cas weight.
    fn cas(&mut self, _key: &str, _value: &[u8]) -> Result<bool, String> {
        Err("Redis has no compare-and-set command".to_owned())
    }

    fn incr(&mut self, key: &str) -> Result<(), String> {
        RedisConnection::incr(self, key).map(drop).map_err(|error| error.to_string())
    }
}

/// Opens one load thread's connection(s) to the target.
type OpenStore<'a> = dyn Fn() -> Result<Box<dyn Store>, BenchError> + 'a;

/// The options of every connection: the timeout, the client secret, TLS.
fn client_options(args: &BenchArgs) -> Result<ClientOptions, BenchError> {
    let mut options = ClientOptions { timeout: args.timeout, ..ClientOptions::default() };
    client_security(
        args.secret_file.clone(),
        args.tls_ca.clone(),
        |name| std::env::var_os(name),
        &mut options,
    )
    .map_err(BenchError::Setup)?;
    Ok(options)
}

/// The load threads' connections, and where the others go.
struct Connected {
    stores: Vec<Box<dyn Store>>,
    /// The server that takes the writes (a chain's head): idle connections go there.
    writes_to: String,
    /// The server that answers reads (a chain's tail): watchers go there.
    reads_from: String,
}

/// Opens one connection per client, each checked with a GET, so an
/// unreachable target is reported before any phase starts.
fn connect_all(args: &BenchArgs) -> Result<Connected, BenchError> {
    let options = client_options(args)?;
    let mut reads_from = String::new();
    let (open, writes_to): (Box<OpenStore>, String) = match &args.target {
        BenchTarget::Redis(address) => {
            let open = move || -> Result<Box<dyn Store>, BenchError> {
                let connection = RedisConnection::open(address, args.timeout, options.tls.as_ref())
                    .map_err(|error| BenchError::Unreachable(error.to_string()))?;
                Ok(Box::new(connection))
            };
            (Box::new(open), address.clone())
        }
        BenchTarget::Server(address) => {
            reads_from = address.clone();
            (Box::new(move || Ok(Box::new(Client::new(address, options.clone())))), address.clone())
        }
        BenchTarget::Chain { zk_hosts, path } => {
            let map = sharded::read_map(zk_hosts, args.timeout)?;
            let paths = map.as_ref().map_or_else(|| vec![path.clone()], |map| map.chains().to_vec());
            let ends = paths
                .iter()
                .map(|path| find_chain(zk_hosts, path, args.timeout))
                .collect::<Result<Vec<_>, _>>()?;
            // Idle connections and watchers go to the first chain.
            let writes_to = ends[0].0.clone();
            reads_from = ends[0].1.clone();
            let open = move || -> Result<Box<dyn Store>, BenchError> {
                let mut chains = ends.iter().map(|(head, tail)| chain_store(head, tail, &options));
                Ok(match &map {
                    Some(map) => {
                        Box::new(sharded::ShardedStore { map: Arc::clone(map), chains: chains.collect() })
                    }
                    None => chains.next().expect("one chain"),
                })
            };
            (Box::new(open), writes_to)
        }
    };
    let mut stores = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let mut store = open()?;
        // Connects (the table client connects lazily) and checks the target answers.
        store.get("key:0").map_err(|error| BenchError::Unreachable(format!("{}: {error}", args.target)))?;
        stores.push(store);
    }
    Ok(Connected { stores, writes_to, reads_from })
}

/// Connections to a chain's head and tail (one when they are one server).
fn chain_store(head: &str, tail: &str, options: &ClientOptions) -> Box<dyn Store> {
    let head_client = Client::new(head, options.clone());
    if head == tail {
        return Box::new(head_client);
    }
    Box::new(ChainStore { head: head_client, tail: Client::new(tail, options.clone()) })
}

/// The addresses of the chain's head and tail, read once from ZooKeeper.
fn find_chain(zk_hosts: &str, path: &str, timeout: Duration) -> Result<(String, String), BenchError> {
    let unreachable = |error: ClientError| BenchError::Unreachable(error.to_string());
    let mut locator = Locator::start(zk_hosts, path).map_err(unreachable)?;
    let view = locator.view(timeout).map_err(unreachable)?;
    match (view.head(), view.tail()) {
        (Some(head), Some(tail)) => Ok((head.address.clone(), tail.address.clone())),
        _ => Err(BenchError::Unreachable(format!("no chain at {zk_hosts}{path}: no ready server"))),
    }
}

/// The phase every load thread is in, switched by the coordinator only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Fill,
    Warmup,
    Measure,
    Stop,
}

/// What the coordinator and the load threads share.
struct Shared {
    /// A [`Phase`] as `u8`.
    phase: AtomicU8,
    /// Load threads done filling (and waiting for the warm-up).
    filled_threads: AtomicUsize,
    /// Keys filled so far, for the progress line.
    filled_keys: AtomicU64,
    /// Operations answered (successfully or not) since the warm-up began,
    /// and of those the failed ones: for the progress line only; the report
    /// is made from the threads' own tallies.
    answered: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Fill,
            1 => Phase::Warmup,
            2 => Phase::Measure,
            _ => Phase::Stop,
        }
    }

    fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }
}

/// What one load thread saw while measuring, plus its fill errors.
#[derive(Default)]
struct Tally {
    latencies: Histogram,
    gets: u64,
    puts: u64,
    dels: u64,
    cas: u64,
    incrs: u64,
    absent: u64,
    errors: u64,
    fill_errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn note_error(&mut self, error: String) {
        self.first_error.get_or_insert(error);
    }
}

/// The body of load thread `index`: fill its share of the keys, then run
/// operations until the coordinator says stop.
fn load(index: usize, mut store: Box<dyn Store>, args: &BenchArgs, shared: &Shared) -> Tally {
    let mut rng = SplitMix64::derive(args.seed, index as u64);
    let value = value_of(args.value_bytes, &mut rng);
    let mut key = String::new();
    let mut tally = Tally::default();
    if args.fill {
        // Thread i fills keys i, i + N, i + 2N, ...: every key once, in parallel.
        for key_index in (index as u64..args.keys).step_by(args.clients) {
            if tally.fill_errors >= BENCH_FILL_ERRORS_MAX || shared.phase() == Phase::Stop {
                break;
            }
            key_name(key_index, &mut key);
            match store.put(&key, &value) {
                Ok(()) => {
                    shared.filled_keys.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    tally.fill_errors += 1;
                    tally.note_error(format!("filling: {error}"));
                }
            }
        }
    }
    shared.filled_threads.fetch_add(1, Ordering::AcqRel);
    while shared.phase() == Phase::Fill {
        thread::sleep(Duration::from_millis(1));
    }
    loop {
        // An operation counts if it started while measuring: at most one per
        // thread straddles each end of the phase, out of thousands.
        let phase = shared.phase();
        if phase == Phase::Stop {
            break;
        }
        let op = args.mix.pick(&mut rng);
        if op == Op::Incr {
            counter_name(rng.below(args.keys), &mut key);
        } else {
            key_name(rng.below(args.keys), &mut key);
        }
        let started = Instant::now();
        let outcome = match op {
            Op::Get => store.get(&key),
            Op::Put => store.put(&key, &value).map(|()| true),
            Op::Del => store.del(&key),
            Op::Cas => store.cas(&key, &value),
            Op::Incr => store.incr(&key).map(|()| true),
        };
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        shared.answered.fetch_add(1, Ordering::Relaxed);
        if outcome.is_err() {
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        if phase != Phase::Measure {
            continue;
        }
        match outcome {
            Ok(found) => {
                tally.latencies.record(elapsed_us);
                tally.absent += u64::from(!found);
                match op {
                    Op::Get => tally.gets += 1,
                    Op::Put => tally.puts += 1,
                    Op::Del => tally.dels += 1,
                    Op::Cas => tally.cas += 1,
                    Op::Incr => tally.incrs += 1,
                }
            }
            Err(error) => {
                tally.errors += 1;
                tally.note_error(error);
            }
        }
    }
    tally
}

/// Runs the benchmark `args` describes, writing progress lines to
/// `progress`, and returns what the measured phase saw.
pub fn run(args: &BenchArgs, progress: &mut dyn Write) -> Result<Report, BenchError> {
    let Connected { stores, writes_to, reads_from } = connect_all(args)?;
    let idle = hold_idle_connections(args, &writes_to, progress)?;
    let watchers = match args.watchers {
        0 => Watchers::none(),
        count => Watchers::start(&reads_from, count, &client_options(args)?)?,
    };
    let shared = Shared {
        phase: AtomicU8::new(Phase::Fill as u8),
        filled_threads: AtomicUsize::new(0),
        filled_keys: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    };
    let (tallies, measured) = thread::scope(|scope| {
        let mut threads = Vec::with_capacity(args.clients);
        for (index, store) in stores.into_iter().enumerate() {
            let shared = &shared;
            let spawned = thread::Builder::new()
                .name(format!("bench-{index}"))
                .stack_size(BENCH_WORKER_STACK_BYTES)
                .spawn_scoped(scope, move || load(index, store, args, shared));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    // The scope waits for the threads already started: stop them.
                    shared.enter(Phase::Stop);
                    return Err(BenchError::Setup(format!("cannot start load thread {index}: {error}")));
                }
            }
        }
        let measured = coordinate(args, &shared, progress, &idle);
        let tallies: Vec<Tally> = threads
            .into_iter()
            .map(|thread| thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect();
        Ok((tallies, measured))
    })?;
    let watcher_count = watchers.len();
    let (watch_events, watchers_open) = watchers.finish();
    let mut total = Tally::default();
    for tally in tallies {
        total.latencies.merge(&tally.latencies);
        total.gets += tally.gets;
        total.puts += tally.puts;
        total.dels += tally.dels;
        total.cas += tally.cas;
        total.incrs += tally.incrs;
        total.absent += tally.absent;
        total.errors += tally.errors;
        total.fill_errors += tally.fill_errors;
        if let Some(error) = tally.first_error {
            total.note_error(error);
        }
    }
    if total.fill_errors > 0 {
        let _ = writeln!(progress, "table-bench: {} PUTs failed while filling the keys", total.fill_errors);
    }
    Ok(Report {
        target: args.target.clone(),
        clients: args.clients,
        duration: measured,
        keys: args.keys,
        value_bytes: args.value_bytes,
        mix: args.mix,
        ops: total.latencies.count(),
        errors: total.errors,
        gets: total.gets,
        puts: total.puts,
        dels: total.dels,
        cas: total.cas,
        incrs: total.incrs,
        absent: total.absent,
        latency_us: total.latencies.percentiles(),
        first_error: total.first_error,
        idle_connections: idle.len(),
        idle_open: idle.still_open(),
        watchers: watcher_count,
        watch_events,
        watchers_open,
    })
}

/// Opens `--idle-connections` to `address` after the load threads' own
/// connections, so that a server's client limit refuses idle ones rather
/// than active ones.
fn hold_idle_connections(
    args: &BenchArgs,
    address: &str,
    progress: &mut dyn Write,
) -> Result<IdleConnections, BenchError> {
    if args.idle_connections == 0 {
        return Ok(IdleConnections::none());
    }
    let idle = IdleConnections::open(address, args.idle_connections, args.timeout)?;
    let _ = writeln!(progress, "table-bench: holding {} idle connections to {address}", idle.len());
    Ok(idle)
}

/// Leads the load threads through the phases: waits for the fill, then runs
/// the warm-up and the measured phase, printing progress every second.
/// Returns how long the measured phase really lasted.
fn coordinate(
    args: &BenchArgs,
    shared: &Shared,
    progress: &mut dyn Write,
    idle: &IdleConnections,
) -> Duration {
    let fill_started = Instant::now();
    let mut next_line = fill_started + BENCH_PROGRESS_EVERY;
    while shared.filled_threads.load(Ordering::Acquire) < args.clients {
        thread::sleep(BENCH_TICK);
        if Instant::now() >= next_line {
            let filled = shared.filled_keys.load(Ordering::Relaxed);
            let _ = writeln!(progress, "table-bench: filling: {filled} of {} keys", args.keys);
            next_line += BENCH_PROGRESS_EVERY;
        }
    }
    if args.fill {
        let _ = writeln!(
            progress,
            "table-bench: filled {} of {} keys in {:.1} s",
            shared.filled_keys.load(Ordering::Relaxed),
            args.keys,
            fill_started.elapsed().as_secs_f64()
        );
    }
    shared.enter(Phase::Warmup);
    run_phase(shared, args.warmup, "warm-up", progress);
    if !idle.is_empty() {
        let _ = writeln!(
            progress,
            "table-bench: {} of {} idle connections still open",
            idle.still_open(),
            idle.len()
        );
    }
    shared.enter(Phase::Measure);
    let measure_started = Instant::now();
    run_phase(shared, args.duration, "measuring", progress);
    shared.enter(Phase::Stop);
    measure_started.elapsed()
}

/// Waits `length`, printing the rate of answers so far in this phase once a second.
fn run_phase(shared: &Shared, length: Duration, label: &str, progress: &mut dyn Write) {
    let started = Instant::now();
    let end = started + length;
    let answered_before = shared.answered.load(Ordering::Relaxed);
    let failed_before = shared.failed.load(Ordering::Relaxed);
    if !length.is_zero() {
        let _ = writeln!(progress, "table-bench: {label} for {:.1} s", length.as_secs_f64());
    }
    let mut next_line = started + BENCH_PROGRESS_EVERY;
    loop {
        let now = Instant::now();
        if now >= end {
            return;
        }
        thread::sleep(end.min(next_line) - now);
        if Instant::now() >= next_line && next_line < end {
            let seconds = started.elapsed().as_secs_f64();
            let answered = shared.answered.load(Ordering::Relaxed) - answered_before;
            let failed = shared.failed.load(Ordering::Relaxed) - failed_before;
            let _ = writeln!(
                progress,
                "table-bench: {label} {seconds:.0}/{:.0} s: {:.0} ops/s so far, {failed} failed",
                length.as_secs_f64(),
                answered as f64 / seconds
            );
            next_line += BENCH_PROGRESS_EVERY;
        }
    }
}
