//! The server's side of shards: whether this server's chain may answer a
//! request's keys in the shard map it knows, and the map it knows.
//!
//! The decision ([`verdict`]) is a pure function of the map, this chain
//! and the request's keys. The map is held by a [`ShardGuard`] that a
//! thread of its own keeps current (see `start_map_thread`). Without a
//! map a request costs one atomic load here; with one, a read lock, a
//! CRC16 of each key and one array read per key.
//!
//! Ready for migration (the next phase): a range `migrating-to` another
//! chain is still its source's here, and the source will refuse it only
//! once the map flips it; the check stays a function of (map, chain, keys).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{info, warn};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::coord::shard_watch::{MapReading, follow_map};
use crate::limits::{SHARD_MAP_CATCH_UP_WAIT, SHARD_MAP_POLL, SHARD_MAP_READ_WAIT, SHARD_MAP_REREAD};
use crate::proto::{ErrorCode, Moved, Opcode, Request, Response};
use crate::replica::migration::Markers;
use crate::shard::map::ShardMap;
use crate::shard::slot::slot_of;

/// What the map says of a request's keys.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// This chain owns them all (or the request names no key).
    Serve,
    /// Another chain owns them: ERR_MOVED.
    Moved { slot: u16, chain: String, version: u64 },
    /// They belong to different chains: ERR_CROSS_CHAIN, with a message.
    CrossChain(String),
}

/// Whether chain `own` (its index in the map; `None`: it owns nothing)
/// may answer a request for `keys`.
pub fn verdict<'key>(map: &ShardMap, own: Option<u16>, keys: impl IntoIterator<Item = &'key str>) -> Verdict {
    let mut first: Option<(u16, u16)> = None;
    for key in keys {
        let slot = slot_of(key);
        let owner = map.owner_index(slot);
        match first {
            None => first = Some((slot, owner)),
            Some((first_slot, first_owner)) if first_owner != owner => {
                return Verdict::CrossChain(format!(
                    "keys of slot {first_slot} (chain {}) and slot {slot} (chain {}) in one request; \
                     give keys that go together one {{tag}}",
                    map.owner(first_slot),
                    map.owner(slot)
                ));
            }
            Some(_) => {}
        }
    }
    match first {
        Some((slot, owner)) if Some(owner) != own => {
            Verdict::Moved { slot, chain: map.owner(slot).to_owned(), version: map.version }
        }
        _ => Verdict::Serve,
    }
}

/// The keys a request is about, for the check: none for table-wide
/// requests (size, scan, stats: each chain answers for its own part) and
/// for operators' local reads.
pub fn request_keys(request: &Request) -> Vec<&str> {
    if request.local_read || (request.opcode.enum_value() == Ok(Opcode::OP_WATCH) && request.watch_prefix) {
        return Vec::new();
    }
    match request.opcode.enum_value() {
        Ok(Opcode::OP_MGET) => request.keys.iter().map(String::as_str).collect(),
        Ok(Opcode::OP_MSET) => request.pairs.iter().map(|pair| pair.key.as_str()).collect(),
        Ok(
            Opcode::OP_PUT
            | Opcode::OP_GET
            | Opcode::OP_DEL
            | Opcode::OP_CAS
            | Opcode::OP_INCR
            | Opcode::OP_EXISTS
            | Opcode::OP_EXPIRE
            | Opcode::OP_TTL
            | Opcode::OP_PERSIST
            | Opcode::OP_WATCH,
        ) => request.key.as_deref().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The map as this server knows it.
#[derive(Default)]
struct Known {
    map: Option<Arc<ShardMap>>,
    /// This chain's index in `map`.
    own: Option<u16>,
    /// How many slots this chain owns in `map`, for `stats`.
    slots: u64,
}

/// The shard map this server knows, shared by the connection threads (who
/// check requests against it) and the map thread (who keeps it current).
pub struct ShardGuard {
    /// This server's chain path.
    chain: String,
    /// Whether a map is known: without one a request costs one load of it.
    active: AtomicBool,
    known: RwLock<Known>,
    /// The version last published (`None`: no map), and its change, for
    /// requests waiting for a newer map.
    published: Mutex<Option<u64>>,
    arrived: Condvar,
    /// Wakes the map thread to read the map now.
    wake: Sender<()>,
    /// The migration pause markers this member applied: a paused slot is
    /// refused (retryable) whatever the map says.
    markers: Arc<Markers>,
}

impl ShardGuard {
    /// A guard for the chain at `chain`, and the receiver that wakes its
    /// map thread.
    pub fn new(chain: &str, markers: Arc<Markers>) -> (Arc<ShardGuard>, Receiver<()>) {
        let (wake, woken) = crossbeam_channel::bounded(1);
        let guard = ShardGuard {
            chain: chain.to_owned(),
            active: AtomicBool::new(false),
            known: RwLock::default(),
            published: Mutex::new(None),
            arrived: Condvar::new(),
            wake,
            markers,
        };
        (Arc::new(guard), woken)
    }

    /// Makes `reading` the map requests are checked against. Junk keeps the
    /// last valid map (servers go on serving while an operator fixes it).
    pub fn publish(&self, reading: MapReading) {
        let map = match reading {
            MapReading::Absent => None,
            MapReading::Map(map) => Some(map),
            MapReading::Junk(error) => {
                warn!("{error}; keeping the map known before");
                return;
            }
        };
        let version = map.as_ref().map(|map| map.version);
        {
            let mut known = self.known.write();
            // By content, not version: a map node deleted and made again
            // starts again at version 0.
            if known.map.as_deref() == map.as_deref() {
                return;
            }
            let own = map.as_ref().and_then(|map| map.chain_index(&self.chain));
            let slots = map.as_ref().map_or(0, |map| {
                let owned = map.ranges().iter().filter(|range| range.chain == self.chain);
                owned.map(|range| range.last as u64 - range.first as u64 + 1).sum()
            });
            match &map {
                Some(map) => info!(
                    "shard map version {}: {} chains, this chain ({}) owns {slots} slots",
                    map.version,
                    map.chains().len(),
                    self.chain,
                ),
                None => info!("no shard map: this chain answers every key"),
            }
            *known = Known { map, own, slots };
            self.active.store(known.map.is_some(), Ordering::Release);
        }
        self.markers.set_map_version(version);
        *self.published.lock() = version;
        self.arrived.notify_all();
    }

    /// The map this server knows (`None`: no map).
    pub fn map(&self) -> Option<Arc<ShardMap>> {
        self.known.read().map.clone()
    }

    /// For `stats`: the slots this chain owns and the map's version (both
    /// 0 without a map).
    pub fn known(&self) -> (u64, u64) {
        let known = self.known.read();
        (known.slots, known.map.as_ref().map_or(0, |map| map.version))
    }

    /// The error reply to `request` if this chain may not answer it now;
    /// `None` to serve it.
    pub fn screen(&self, request: &Request) -> Option<Response> {
        if !self.active.load(Ordering::Acquire) && request.shard_map_version.is_none() {
            return None;
        }
        if let Some(wanted) = request.shard_map_version
            && !self.catch_up(wanted)
        {
            return Some(error(
                request,
                ErrorCode::ERR_UNAVAILABLE,
                format!(
                    "the client routed by shard map version {wanted}, newer than this server has read yet; retry"
                ),
            ));
        }
        let known = self.known.read();
        let map = known.map.as_ref()?;
        let keys = request_keys(request);
        match verdict(map, known.own, keys.iter().copied()) {
            Verdict::Serve => match self.markers.screen(keys) {
                Ok(()) => None,
                Err(refusal) => Some(error(request, refusal.code, refusal.message)),
            },
            Verdict::Moved { slot, chain, version } => {
                let mut response = error(
                    request,
                    ErrorCode::ERR_MOVED,
                    format!("slot {slot} belongs to chain {chain} in shard map version {version}"),
                );
                response.moved =
                    Some(Moved { slot: slot as u32, chain, map_version: version, ..Moved::default() }).into();
                Some(response)
            }
            Verdict::CrossChain(message) => Some(error(request, ErrorCode::ERR_CROSS_CHAIN, message)),
        }
    }

    /// Waits until the map known is at least version `wanted`, asking the
    /// map thread to read it; false if it is not within
    /// [`SHARD_MAP_CATCH_UP_WAIT`].
    fn catch_up(&self, wanted: u64) -> bool {
        let deadline = Instant::now() + SHARD_MAP_CATCH_UP_WAIT;
        let mut published = self.published.lock();
        while published.is_none_or(|version| version < wanted) {
            // Full: a reading is asked for already.
            let _ = self.wake.try_send(());
            if self.arrived.wait_until(&mut published, deadline).timed_out() {
                return published.is_some_and(|version| version >= wanted);
            }
        }
        true
    }
}

fn error(request: &Request, code: ErrorCode, message: String) -> Response {
    super::service::error_response(request.request_id, code, message)
}

/// Starts the thread that follows the map at `map_path` in `zk_hosts` and
/// publishes it to `guard`: at every change its watch sees, whenever a
/// request wakes it, and every [`SHARD_MAP_REREAD`].
pub fn start_map_thread(
    zk_hosts: &str,
    map_path: &str,
    guard: Arc<ShardGuard>,
    woken: Receiver<()>,
    stopping: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let watch = follow_map(zk_hosts, map_path)?;
    let map_path = map_path.to_owned();
    std::thread::Builder::new().name("shard-map-follower".into()).spawn(move || {
        let mut last_read: Option<Instant> = None;
        while !stopping.load(Ordering::SeqCst) {
            let asked = woken.recv_timeout(SHARD_MAP_POLL).is_ok();
            let due = last_read.is_none_or(|read| read.elapsed() >= SHARD_MAP_REREAD);
            if !(watch.take_changed() || asked || due) {
                continue;
            }
            match watch.read(SHARD_MAP_READ_WAIT) {
                Ok(reading) => {
                    last_read = Some(Instant::now());
                    guard.publish(reading);
                }
                Err(error) => {
                    warn!("cannot read the shard map {map_path}: {error}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Entry;

    fn two_chains() -> ShardMap {
        let mut map = ShardMap::split_evenly(&["/a".to_owned(), "/b".to_owned()]).unwrap();
        map.version = 3;
        map
    }

    #[test]
    fn a_chain_serves_its_slots_and_names_the_owner_of_others() {
        let map = two_chains();
        // "foo" is slot 12182 (chain /b), "bar" slot 5061 (chain /a).
        assert_eq!(verdict(&map, Some(1), ["foo"]), Verdict::Serve);
        assert_eq!(verdict(&map, Some(0), ["bar"]), Verdict::Serve);
        assert_eq!(
            verdict(&map, Some(0), ["foo"]),
            Verdict::Moved { slot: 12182, chain: "/b".into(), version: 3 }
        );
        assert_eq!(
            verdict(&map, None, ["bar"]),
            Verdict::Moved { slot: 5061, chain: "/a".into(), version: 3 },
            "a chain the map does not name owns nothing"
        );
        assert_eq!(verdict(&map, Some(0), []), Verdict::Serve, "no key: each chain answers for its part");
    }

    #[test]
    fn keys_of_two_chains_are_refused_together() {
        let map = two_chains();
        let Verdict::CrossChain(message) = verdict(&map, Some(0), ["bar", "foo"]) else {
            panic!("bar and foo are on different chains");
        };
        assert!(
            message.contains("slot 5061 (chain /a)") && message.contains("slot 12182 (chain /b)"),
            "{message}"
        );
        assert_eq!(verdict(&map, Some(1), ["{bar}x", "{bar}y"]), verdict(&map, Some(1), ["bar"]));
        assert!(matches!(verdict(&map, Some(1), ["{bar}x", "{bar}y"]), Verdict::Moved { slot: 5061, .. }));
    }

    #[test]
    fn the_keys_of_a_request() {
        let mut request = Request::new();
        request.opcode = Opcode::OP_MSET.into();
        request.pairs = vec![Entry::from_pair(("a".into(), b"1".to_vec()))];
        assert_eq!(request_keys(&request), ["a"]);
        request.opcode = Opcode::OP_GET.into();
        request.key = Some("k".into());
        assert_eq!(request_keys(&request), ["k"]);
        request.local_read = true;
        assert!(request_keys(&request).is_empty(), "an operator's local read is of this table");
        request.local_read = false;
        request.opcode = Opcode::OP_SCAN.into();
        assert!(request_keys(&request).is_empty());
        request.opcode = Opcode::OP_WATCH.into();
        assert_eq!(request_keys(&request), ["k"]);
        request.watch_prefix = true;
        assert!(request_keys(&request).is_empty());
    }

    #[test]
    fn the_guard_refuses_moved_keys_and_waits_for_a_newer_map() {
        let (guard, woken) = ShardGuard::new("/a", Arc::default());
        let mut request = Request::new();
        request.opcode = Opcode::OP_GET.into();
        request.key = Some("foo".into());
        assert!(guard.screen(&request).is_none(), "no map: every key");
        guard.publish(MapReading::Map(Arc::new(two_chains())));
        let moved = guard.screen(&request).expect("foo is /b's");
        assert_eq!(moved.error_code.enum_value(), Ok(ErrorCode::ERR_MOVED));
        let to = moved.moved.as_ref().expect("where it moved");
        assert_eq!((to.slot, to.chain.as_str(), to.map_version), (12182, "/b", 3));
        request.shard_map_version = Some(4);
        let started = Instant::now();
        let behind = guard.screen(&request).expect("version 4 never comes");
        assert_eq!(behind.error_code.enum_value(), Ok(ErrorCode::ERR_UNAVAILABLE));
        assert!(started.elapsed() >= SHARD_MAP_CATCH_UP_WAIT);
        assert!(woken.try_recv().is_ok(), "the map thread was asked to read the map");
        let publisher = {
            let guard = Arc::clone(&guard);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                let mut newer = ShardMap::split_evenly(&["/b".to_owned(), "/a".to_owned()]).unwrap();
                newer.version = 4;
                guard.publish(MapReading::Map(Arc::new(newer)));
            })
        };
        assert!(guard.screen(&request).is_none(), "in version 4, foo's slot is /a's");
        publisher.join().unwrap();
        guard.publish(MapReading::Junk(crate::shard::map::MapError("junk".into())));
        assert!(guard.screen(&request).is_none(), "junk keeps the last valid map");
    }
}
