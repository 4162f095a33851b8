//! Working around the `zookeeper` crate (0.8), for every part of the
//! project that talks to ZooKeeper.
//!
//! - [`connect`]: the crate panics when the first connection attempt fails
//!   at once (no route to the host: `EINVAL`/`ENETUNREACH`, seen when a
//!   server is cut off from ZooKeeper) and retries a refused connection in a
//!   tight loop; so a connection is only asked of it once some host accepts
//!   TCP, and a panic in it is caught and reported as an error.
//! - [`BoundedZk`]: the crate waits for a reply with no time limit.

use std::net::{TcpStream, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crossbeam_channel::SendTimeoutError;
use zookeeper::{Watcher, ZkError, ZooKeeper};

use crate::limits::{ZK_CALLS_QUEUED_MAX, ZK_PROBE_TIMEOUT};

/// Opens a session with `hosts` (`host:port,...[/chroot]`), or says why not.
pub fn connect<W: Watcher + 'static>(
    hosts: &str,
    session_timeout: Duration,
    watcher: W,
) -> Result<ZooKeeper, String> {
    probe(hosts)?;
    match catch_unwind(AssertUnwindSafe(|| ZooKeeper::connect(hosts, session_timeout, watcher))) {
        Ok(Ok(zk)) => Ok(zk),
        Ok(Err(error)) => Err(format!("ZooKeeper at {hosts}: {error:?}")),
        Err(_) => Err(format!("ZooKeeper at {hosts}: the connection failed at once (no route?)")),
    }
}

/// Succeeds when some host of `hosts` (`host:port,...`, optionally followed
/// by a chroot path) accepts a TCP connection; otherwise says why not.
pub fn probe(hosts: &str) -> Result<(), String> {
    let hosts = hosts.split('/').next().unwrap_or_default();
    let mut failures = Vec::new();
    for host in hosts.split(',').map(str::trim) {
        let addresses = match host.to_socket_addrs() {
            Ok(addresses) => addresses,
            Err(error) => {
                failures.push(format!("{host}: {error}"));
                continue;
            }
        };
        for address in addresses {
            match TcpStream::connect_timeout(&address, ZK_PROBE_TIMEOUT) {
                Ok(_) => return Ok(()),
                Err(error) => failures.push(format!("{host}: {error}")),
            }
        }
    }
    Err(format!("ZooKeeper unreachable ({})", failures.join("; ")))
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
    use std::net::TcpListener;

    #[test]
    fn probe_finds_a_listening_host_among_several() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let listening = listener.local_addr().unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert_eq!(probe(&format!("{closed},{listening}/chroot/path")), Ok(()));
    }

    #[test]
    fn connecting_without_a_route_is_an_error_not_a_panic() {
        let Err(error) =
            connect("255.255.255.255:2181", Duration::from_secs(1), |_: zookeeper::WatchedEvent| {})
        else {
            panic!("connected to a broadcast address");
        };
        assert!(error.contains("255.255.255.255"), "{error}");
    }

    #[test]
    fn probe_says_why_no_host_answers() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let error = probe(&format!("{closed}, not-an-address")).unwrap_err();
        assert!(error.starts_with("ZooKeeper unreachable ("), "{error}");
        assert!(error.contains(&closed.to_string()) && error.contains("not-an-address"), "{error}");
    }
}
