//! Probing ZooKeeper hosts with a real session handshake before the
//! `zookeeper` crate sees them: the crate's I/O thread panics on a reply
//! that is not a ZooKeeper `ConnectResponse` and, on a peer that accepts and
//! closes, reconnects in a loop without a pause. A host is handed to the
//! crate only if it may be a ZooKeeper: it answered the handshake, or it
//! could not be reached at all (it may come back). The probe's session is
//! closed again at once.
//!
//! A host that accepts the connection and then closes it, or does not
//! answer in time, is not handed to the crate either, but it is not given
//! up for good: a ZooKeeper that is starting, or that lost its quorum,
//! does exactly that ("ZooKeeperServer not running"), and comes back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::limits::ZK_PROBE_TIMEOUT;

/// What a probe learned about one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probed {
    /// It answered the handshake like a ZooKeeper.
    ZooKeeper,
    /// No connection (refused, timed out, no route): it may come back.
    Unreachable(String),
    /// It accepted the connection but closed it, or did not answer within
    /// the probe's timeout: not a ZooKeeper, or one that is not serving
    /// yet; it may come back.
    Silent(String),
    /// It answered, but not as a ZooKeeper, or the address is bad:
    /// retrying cannot help.
    NotZooKeeper(String),
}

/// Session timeout the probe asks for; the session is closed at once, this
/// only bounds its life if the close is lost.
const PROBE_SESSION_TIMEOUT_MS: i32 = 4000;

/// Largest `ConnectResponse` a ZooKeeper sends: version, timeout, session
/// id, a 16-byte password with its length, the read-only flag.
const CONNECT_RESPONSE_MAX: usize = 4 + 4 + 8 + 4 + 16 + 1;

/// Opcode of `closeSession` in ZooKeeper's protocol.
const OP_CLOSE_SESSION: i32 = -11;

/// Probes `host` (`host:port`) within [`ZK_PROBE_TIMEOUT`].
pub fn probe_host(host: &str) -> Probed {
    let address = match resolve(host) {
        Ok(address) => address,
        Err(reason) => return Probed::NotZooKeeper(reason),
    };
    let deadline = Instant::now() + ZK_PROBE_TIMEOUT;
    let mut stream = match TcpStream::connect_timeout(&address, ZK_PROBE_TIMEOUT) {
        Ok(stream) => stream,
        Err(error) => return Probed::Unreachable(format!("{host}: {error}")),
    };
    match handshake(&mut stream, deadline) {
        Ok(()) => Probed::ZooKeeper,
        Err(Failure::Silent(reason)) => Probed::Silent(format!(
            "{host} accepted the connection but did not answer the ZooKeeper handshake ({reason}): not a \
             ZooKeeper, or one that is starting or has lost its quorum"
        )),
        Err(Failure::Answered(reason)) => {
            Probed::NotZooKeeper(format!("{host} is not a ZooKeeper ({reason})"))
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, PartialEq)]
enum Failure {
    /// No answer: the peer closed the connection or said nothing in time.
    Silent(String),
    /// An answer that is not a ZooKeeper's.
    Answered(String),
}

/// `host:port` to one socket address; an error names what is wrong.
pub fn resolve(host: &str) -> Result<SocketAddr, String> {
    check_host_syntax(host)?;
    let mut addresses = host.to_socket_addrs().map_err(|error| format!("'{host}': {error}"))?;
    addresses.next().ok_or_else(|| format!("'{host}' resolves to no address"))
}

/// Whether `host` is written `host:port` (nothing is resolved); an error
/// names what is wrong.
pub fn check_host_syntax(host: &str) -> Result<(), String> {
    let Some((name, port)) = host.rsplit_once(':') else {
        return Err(format!("'{host}' has no port (expected host:port)"));
    };
    if name.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("'{host}' is not a host:port address"));
    }
    Ok(())
}

/// Whether `hosts` is written like a ZooKeeper connection string,
/// `host:port,...[/chroot]` (nothing is resolved); an error names the first
/// host that is not. A command-line word that is not cannot be meant as one.
pub fn check_hosts_syntax(hosts: &str) -> Result<(), String> {
    let list = hosts.split('/').next().unwrap_or_default();
    list.split(',').try_for_each(|host| check_host_syntax(host.trim()))
}

/// Sends a `ConnectRequest`, checks the reply is a `ConnectResponse`, and
/// closes the new session.
fn handshake(stream: &mut TcpStream, deadline: Instant) -> Result<(), Failure> {
    let mut request = Vec::with_capacity(48);
    request.extend_from_slice(&0i32.to_be_bytes()); // protocol version
    request.extend_from_slice(&0i64.to_be_bytes()); // last zxid seen
    request.extend_from_slice(&PROBE_SESSION_TIMEOUT_MS.to_be_bytes());
    request.extend_from_slice(&0i64.to_be_bytes()); // session id: a new one
    request.extend_from_slice(&16i32.to_be_bytes()); // password
    request.extend_from_slice(&[0; 16]);
    request.push(0); // not read-only
    write_frame(stream, &request, deadline).map_err(Failure::Silent)?;
    let reply = read_frame(stream, deadline)?;
    let session_id = parse_connect_response(&reply).map_err(Failure::Answered)?;
    if session_id != 0 {
        let mut close = Vec::with_capacity(8);
        close.extend_from_slice(&1i32.to_be_bytes()); // xid
        close.extend_from_slice(&OP_CLOSE_SESSION.to_be_bytes());
        // The session expires on its own if this is lost.
        let _ = write_frame(stream, &close, deadline);
        let _ = read_frame(stream, deadline);
    }
    Ok(())
}

/// Checks a `ConnectResponse` (after its length prefix) and returns its
/// session id (0: the server refused the session, still a ZooKeeper).
fn parse_connect_response(reply: &[u8]) -> Result<i64, String> {
    let field = |at: usize, len: usize| reply.get(at..at + len).ok_or("its reply is too short");
    let int = |at: usize| field(at, 4).map(|bytes| i32::from_be_bytes(bytes.try_into().unwrap_or_default()));
    let protocol_version = int(0)?;
    let timeout = int(4)?;
    let session_id = i64::from_be_bytes(field(8, 8)?.try_into().unwrap_or_default());
    let password_len = int(16)?;
    if protocol_version != 0 || timeout < 0 || password_len != 16 || field(20, 16).is_err() {
        return Err("its reply is not a ZooKeeper ConnectResponse".into());
    }
    Ok(session_id)
}

fn write_frame(stream: &mut TcpStream, payload: &[u8], deadline: Instant) -> Result<(), String> {
    stream.set_write_timeout(Some(remaining(deadline)?)).map_err(|error| error.to_string())?;
    let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    stream.write_all(&frame).map_err(|error| format!("sending the handshake: {error}"))
}

/// Reads one length-prefixed frame of at most [`CONNECT_RESPONSE_MAX`]
/// bytes. Silent until the first byte of an answer came.
fn read_frame(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, Failure> {
    let mut len = [0; 4];
    read_exact_by(stream, &mut len[..1], deadline).map_err(Failure::Silent)?;
    read_exact_by(stream, &mut len[1..], deadline).map_err(Failure::Answered)?;
    let len = i32::from_be_bytes(len);
    if !(0..=CONNECT_RESPONSE_MAX as i32).contains(&len) {
        return Err(Failure::Answered(format!("its reply announces {len} bytes")));
    }
    let mut payload = vec![0; len as usize];
    read_exact_by(stream, &mut payload, deadline).map_err(Failure::Answered)?;
    Ok(payload)
}

fn read_exact_by(stream: &mut TcpStream, buffer: &mut [u8], deadline: Instant) -> Result<(), String> {
    let mut filled = 0;
    while filled < buffer.len() {
        stream.set_read_timeout(Some(remaining(deadline)?)).map_err(|error| error.to_string())?;
        match stream.read(&mut buffer[filled..]) {
            Ok(0) => return Err("it closed the connection".into()),
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error)
                if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                return Err(format!("no reply within {} ms", ZK_PROBE_TIMEOUT.as_millis()));
            }
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(())
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(format!("no reply within {} ms", ZK_PROBE_TIMEOUT.as_millis()));
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn addresses_without_a_port_or_host_are_refused_by_name() {
        assert_eq!(resolve("localhost"), Err("'localhost' has no port (expected host:port)".into()));
        assert_eq!(resolve(":2181"), Err("':2181' is not a host:port address".into()));
        assert_eq!(resolve("host:port"), Err("'host:port' is not a host:port address".into()));
        assert_eq!(resolve("127.0.0.1:2181"), Ok("127.0.0.1:2181".parse().unwrap()));
    }

    #[test]
    fn connection_strings_are_told_from_other_words() {
        for hosts in ["zk:2181", "a:1,b:2", "a:1, b:2/tables", "[::1]:2181", "127.0.0.1:2181/x/y"] {
            assert_eq!(check_hosts_syntax(hosts), Ok(()), "{hosts}");
        }
        for word in ["gettabel", "", "a:1,b", "zk:port", ":2181", "/chain", "a:70000"] {
            assert!(check_hosts_syntax(word).is_err(), "{word}");
        }
        assert_eq!(check_hosts_syntax("a:1,:2"), Err("':2' is not a host:port address".into()));
    }

    #[test]
    fn a_listener_that_accepts_and_closes_is_silent() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let closer = std::thread::spawn(move || drop(listener.accept()));
        let probed = probe_host(&address);
        closer.join().unwrap();
        // Closed before or after reading the request: a clean close or a reset.
        let expected =
            format!("{address} accepted the connection but did not answer the ZooKeeper handshake (");
        assert!(matches!(&probed, Probed::Silent(reason) if reason.starts_with(&expected)), "{probed:?}");
    }

    #[test]
    fn a_listener_that_answers_garbage_is_not_a_zookeeper() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let answerer = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = stream.write_all(b"-ERR unknown command\r\n");
            std::thread::sleep(Duration::from_millis(200));
        });
        let probed = probe_host(&address);
        answerer.join().unwrap();
        let expected = format!("{address} is not a ZooKeeper (its reply announces");
        assert!(
            matches!(&probed, Probed::NotZooKeeper(reason) if reason.starts_with(&expected)),
            "{probed:?}"
        );
    }

    #[test]
    fn a_listener_that_never_answers_is_silent_within_the_probe_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let started = Instant::now();
        let probed = probe_host(&address);
        assert!(started.elapsed() < ZK_PROBE_TIMEOUT + Duration::from_millis(500));
        assert!(matches!(probed, Probed::Silent(reason) if reason.contains("no reply")));
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        assert!(matches!(probe_host(&closed), Probed::Unreachable(reason) if reason.starts_with(&closed)));
    }

    #[test]
    fn connect_responses_are_checked_field_by_field() {
        let mut reply = Vec::new();
        reply.extend_from_slice(&0i32.to_be_bytes());
        reply.extend_from_slice(&4000i32.to_be_bytes());
        reply.extend_from_slice(&77i64.to_be_bytes());
        reply.extend_from_slice(&16i32.to_be_bytes());
        reply.extend_from_slice(&[1; 16]);
        assert_eq!(parse_connect_response(&reply), Ok(77));
        assert!(parse_connect_response(&reply[..30]).is_err());
        reply[3] = 1; // protocol version 1
        assert!(parse_connect_response(&reply).is_err());
        assert!(parse_connect_response(b"-ERR unknown command").is_err());
    }
}
