//! Working around the `zookeeper` crate (0.8), for every part of the
//! project that talks to ZooKeeper.
//!
//! - [`connect`]: the crate's I/O thread panics on a peer that is not a
//!   ZooKeeper, panics when the first connection attempt fails at once (no
//!   route to the host), reconnects without a pause, and always starts with
//!   the first listed host. So every host is probed with a real handshake
//!   first (see [`handshake`]); the crate gets only hosts that may be a
//!   ZooKeeper, one that answered first; its reconnections are paused with
//!   backoff (see [`log_pace`]); and its panics are kept off stderr (logged
//!   as one line).
//! - [`BoundedZk`]: the crate waits for a reply with no time limit.

use std::hash::{BuildHasher, RandomState};
use std::panic::{AssertUnwindSafe, PanicHookInfo, catch_unwind};
use std::sync::Once;
use std::time::{Duration, Instant};

use crossbeam_channel::SendTimeoutError;
use log::warn;
use zookeeper::{Watcher, ZkError, ZkState, ZooKeeper};

use super::handshake::{Probed, probe_host, resolve};
use super::log_pace;
use crate::limits::ZK_CALLS_QUEUED_MAX;

/// Why ZooKeeper could not be used: no session could be opened, or what
/// was asked of it can never be there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordError {
    /// Retrying cannot help: a bad address, no host is a ZooKeeper, no such chain.
    Permanent(String),
    /// No host could be reached now; it may come back.
    Transient(String),
}

impl std::fmt::Display for CoordError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoordError::Permanent(reason) | CoordError::Transient(reason) => formatter.write_str(reason),
        }
    }
}

/// Opens a session with `hosts` (`host:port,...[/chroot]`), or says why not.
pub fn connect<W: Watcher + 'static>(
    hosts: &str,
    session_timeout: Duration,
    watcher: W,
) -> Result<ZooKeeper, CoordError> {
    keep_crate_panics_off_stderr();
    let usable = usable_hosts(hosts)?;
    let failed = |reason: String| CoordError::Transient(format!("ZooKeeper at {hosts}: {reason}"));
    let zk = match catch_unwind(AssertUnwindSafe(|| ZooKeeper::connect(&usable, session_timeout, watcher))) {
        Ok(Ok(zk)) => zk,
        Ok(Err(error)) => return Err(failed(format!("{error:?}"))),
        Err(_) => return Err(failed("the connection failed at once (no route?)".into())),
    };
    pause_reconnections(&zk);
    Ok(zk)
}

/// Probes every host of `hosts` at once and returns the connection string
/// for the crate: the hosts that answered the handshake, starting at a
/// random one of them, then the unreachable ones (in random order), then
/// the chroot. Hosts that are not a ZooKeeper are left out.
pub fn usable_hosts(hosts: &str) -> Result<String, CoordError> {
    let (list, chroot) = hosts.split_at(hosts.find('/').unwrap_or(hosts.len()));
    let names: Vec<&str> = list.split(',').map(str::trim).collect();
    for name in &names {
        resolve(name).map_err(|reason| CoordError::Permanent(format!("bad ZooKeeper address: {reason}")))?;
    }
    let probed: Vec<Probed> = std::thread::scope(|scope| {
        let probes: Vec<_> = names.iter().map(|name| scope.spawn(move || probe_host(name))).collect();
        probes
            .into_iter()
            .map(|probe| probe.join().unwrap_or(Probed::Unreachable("probe failed".into())))
            .collect()
    });
    let mut answered = Vec::new();
    let mut unreachable = Vec::new();
    let mut reasons = Vec::new();
    let mut silent = Vec::new();
    let mut not_zookeeper = Vec::new();
    for (name, probed) in names.iter().zip(probed) {
        match probed {
            Probed::ZooKeeper => answered.push(*name),
            Probed::Unreachable(reason) => {
                unreachable.push(*name);
                reasons.push(reason);
            }
            // Not handed to the crate (it would reconnect in a loop), but
            // it may come back: the error stays transient.
            Probed::Silent(reason) => silent.push(reason),
            Probed::NotZooKeeper(reason) => not_zookeeper.push(reason),
        }
    }
    if answered.is_empty() {
        let may_come_back = !unreachable.is_empty() || !silent.is_empty();
        reasons.extend(silent.iter().cloned());
        reasons.extend(not_zookeeper.iter().cloned());
        let reasons = reasons.join("; ");
        return Err(if !may_come_back {
            CoordError::Permanent(reasons)
        } else {
            CoordError::Transient(format!("ZooKeeper unreachable ({reasons})"))
        });
    }
    for reason in silent.iter().chain(&not_zookeeper) {
        warn!("leaving out {reason}");
    }
    let random = RandomState::new().hash_one(Instant::now()) as usize;
    let (answered_len, unreachable_len) = (answered.len(), unreachable.len().max(1));
    answered.rotate_left(random % answered_len);
    unreachable.rotate_left(random % unreachable_len);
    answered.extend(unreachable);
    Ok(format!("{}{chroot}", answered.join(",")))
}

/// Lets the log pacing (see [`log_pace`]) know when the crate is connected:
/// its next reconnection starts without a pause. The crate runs state
/// listeners on its I/O thread, the thread the pacing pauses.
fn pause_reconnections(zk: &ZooKeeper) {
    zk.add_listener(|state| {
        if matches!(state, ZkState::Connected | ZkState::ConnectedReadOnly) {
            log_pace::connected();
        }
    });
}

/// Keeps panics of the crate's own threads (`io`, `event`), and panics
/// raised inside its code on ours, off stderr: they are logged as one
/// warning instead. Every other panic goes to the hook that was there.
fn keep_crate_panics_off_stderr() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if is_crate_panic(info) {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                warn!("the ZooKeeper client library failed ({message}); its connection is dropped");
            } else {
                previous(info);
            }
        }));
    });
}

fn is_crate_panic(info: &PanicHookInfo) -> bool {
    let on_crate_thread = matches!(std::thread::current().name(), Some("io" | "event"));
    on_crate_thread || info.location().is_some_and(|location| location.file().contains("/zookeeper-0.8"))
}

/// A call waiting for the ZooKeeper worker thread.
type ZkCall = Box<dyn FnOnce(&ZooKeeper) + Send>;

/// Runs ZooKeeper calls on a worker thread, so that no call can block
/// membership for longer than the session timeout: the `zookeeper` crate
/// waits for a reply with no limit, and after a reconnection a request can
/// go unanswered forever (seen under ZooKeeper restarts). A call that times
/// out ends the session; the stuck worker and its handle are abandoned and
/// close themselves whenever the crate lets go.
pub struct BoundedZk {
    calls: crossbeam_channel::Sender<ZkCall>,
    limit: Duration,
}

impl BoundedZk {
    pub fn new(zk: ZooKeeper, limit: Duration) -> std::io::Result<BoundedZk> {
        let (calls, pending) = crossbeam_channel::bounded::<ZkCall>(ZK_CALLS_QUEUED_MAX);
        std::thread::Builder::new().name("zk-calls".into()).spawn(move || {
            for call in pending {
                call(&zk);
            }
        })?;
        Ok(BoundedZk { calls, limit })
    }

    /// Runs `call` with the session's handle; `OperationTimeout` if it does
    /// not finish within the limit, waiting in the queue included.
    pub fn call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&ZooKeeper) -> Result<T, ZkError> + Send + 'static,
    ) -> Result<T, ZkError> {
        let started = Instant::now();
        let (reply, result) = crossbeam_channel::bounded(1);
        let queued: ZkCall = Box::new(move |zk| {
            let _ = reply.send(call(zk));
        });
        match self.calls.send_timeout(queued, self.limit) {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) => return Err(ZkError::OperationTimeout),
            Err(SendTimeoutError::Disconnected(_)) => return Err(ZkError::ConnectionLoss),
        }
        let remaining = self.limit.saturating_sub(started.elapsed());
        result.recv_timeout(remaining).map_err(|_| ZkError::OperationTimeout)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn connecting_without_a_route_is_an_error_not_a_panic() {
        let Err(error) =
            connect("255.255.255.255:2181", Duration::from_secs(1), |_: zookeeper::WatchedEvent| {})
        else {
            panic!("connected to a broadcast address");
        };
        assert!(error.to_string().contains("255.255.255.255"), "{error}");
    }

    #[test]
    fn no_reachable_host_is_transient_and_says_why() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let CoordError::Transient(error) = usable_hosts(&format!("{closed}/chroot")).unwrap_err() else {
            panic!("a closed port is not permanent");
        };
        assert!(
            error.starts_with("ZooKeeper unreachable (") && error.contains(&closed.to_string()),
            "{error}"
        );
    }

    #[test]
    fn a_bad_address_is_permanent_at_once() {
        let started = Instant::now();
        let error = usable_hosts("127.0.0.1:2181,localhost/chain").unwrap_err();
        assert_eq!(
            error,
            CoordError::Permanent(
                "bad ZooKeeper address: 'localhost' has no port (expected host:port)".into()
            )
        );
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn a_host_that_is_not_a_zookeeper_is_permanent_unless_another_may_come_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let answerer = std::thread::spawn(move || {
            for _ in 0..2 {
                if let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
                }
            }
        });
        let alone = usable_hosts(&address.to_string()).unwrap_err();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let with_closed = usable_hosts(&format!("{address},{closed}")).unwrap_err();
        answerer.join().unwrap();
        assert!(
            matches!(alone, CoordError::Permanent(ref reason) if reason.contains("is not a ZooKeeper")),
            "{alone:?}"
        );
        assert!(matches!(with_closed, CoordError::Transient(_)), "{with_closed:?}");
    }

    /// A ZooKeeper without its quorum accepts a connection and closes it:
    /// waited for, never "not a ZooKeeper" for good.
    #[test]
    fn a_host_that_accepts_and_closes_may_come_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let closer = std::thread::spawn(move || drop(listener.accept()));
        let error = usable_hosts(&address.to_string()).unwrap_err();
        closer.join().unwrap();
        assert!(
            matches!(error, CoordError::Transient(ref reason) if reason.contains("did not answer the ZooKeeper handshake")),
            "{error:?}"
        );
    }
}
