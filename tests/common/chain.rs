//! Chains of real servers on a test ZooKeeper, and convergence checks.

use std::thread;
use std::time::{Duration, Instant};

use chaintable::client::connection::ClientOptions;

use super::{ServerProcess, ZooKeeperProcess, start_server};

pub const SERVER_START: Duration = Duration::from_secs(30);

/// Starts a chain server registered in `zookeeper`; waits until it is a
/// ready member (the first one starts the chain, later ones join).
pub fn start_member(zookeeper: &ZooKeeperProcess, first: bool, extra: &[&str]) -> ServerProcess {
    start_member_with_session(zookeeper, first, 1000, extra)
}

/// Like [`start_member`], with a ZooKeeper session of `session_ms`.
pub fn start_member_with_session(
    zookeeper: &ZooKeeperProcess,
    first: bool,
    session_ms: u64,
    extra: &[&str],
) -> ServerProcess {
    let mut args = vec![zookeeper.address(), "--zk-timeout-ms".into(), session_ms.to_string()];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = start_server(64, &args);
    // A joiner announces itself ready, then reads the view that says so and
    // takes the tail's role: clients that look the chain up after this find
    // a tail that knows it is one. Asked of the server, not read in its log.
    let awaited = if first { "head+tail" } else { "tail" };
    assert!(
        server.wait_for_stats(SERVER_START, |statistics| statistics.role == awaited).is_some(),
        "{} never said it is the {awaited} (stats: {:?}):\n{}",
        server.address,
        server.stats(),
        server.log()
    );
    server
}

pub fn start_chain(zookeeper: &ZooKeeperProcess, length: usize) -> Vec<ServerProcess> {
    (0..length).map(|index| start_member(zookeeper, index == 0, &[])).collect()
}

/// The whole table of one server, read locally whatever its role.
pub fn local_table(address: &str) -> Vec<(String, Vec<u8>)> {
    local_table_with(address, &ClientOptions::default())
}

/// Like [`local_table`], as a client with `options` (a secret, TLS).
pub fn local_table_with(address: &str, options: &ClientOptions) -> Vec<(String, Vec<u8>)> {
    chaintable::check::run::local_table(address, options).expect("local gettable").into_iter().collect()
}

/// Waits until every server's table is the same, and returns it.
pub fn converged(servers: &[&ServerProcess]) -> Vec<(String, Vec<u8>)> {
    converged_with(servers, &ClientOptions::default())
}

/// Like [`converged`], as a client with `options`.
pub fn converged_with(servers: &[&ServerProcess], options: &ClientOptions) -> Vec<(String, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tables: Vec<_> =
            servers.iter().map(|server| local_table_with(&server.address, options)).collect();
        if tables.windows(2).all(|pair| pair[0] == pair[1]) {
            return tables.into_iter().next().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: sizes {:?}",
            tables.iter().map(Vec::len).collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(100));
    }
}
