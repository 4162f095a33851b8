//! Just enough of a Redis client to run the same workload against Redis:
//! SET, GET and DEL in RESP over one blocking `TcpStream`, one request at a
//! time, like the chaintable client. Written here rather than taken from the
//! `redis` crate so both sides of a comparison have the same shape: one
//! blocking socket, one buffered reader, one write per request.

use std::fmt;
use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::time::Duration;

use crate::limits::{REDIS_BULK_BYTES_MAX, REDIS_LINE_BYTES_MAX};
use crate::secure::tls::{ClientSocket, ClientTls};

/// One RESP reply, of the kinds SET, GET and DEL answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$3 abc`, or `$-1` (`None`) for an absent key.
    Bulk(Option<Vec<u8>>),
}

/// Why a Redis call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisError {
    /// Connecting, sending or receiving failed (or timed out).
    Unreachable(String),
    /// The bytes received are not the RESP reply expected.
    Protocol(String),
    /// Redis answered with an error reply.
    Server(String),
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Unreachable(message) => write!(f, "redis unreachable: {message}"),
            RedisError::Protocol(message) => write!(f, "redis protocol error: {message}"),
            RedisError::Server(message) => write!(f, "redis error: {message}"),
        }
    }
}

impl std::error::Error for RedisError {}

/// One connection to one Redis server.
pub struct RedisConnection {
    /// The socket (TLS with `--tls-ca`), read buffered so a reply costs one
    /// `read` in the common case.
    socket: ClientSocket,
    /// The encoded request, reused from call to call.
    outgoing: Vec<u8>,
}

impl RedisConnection {
    /// Connects to `address` (`host:port`), with TLS if given (Redis's own
    /// `--tls-port`); `timeout` limits connecting and every reply.
    pub fn open(
        address: &str,
        timeout: Duration,
        tls: Option<&ClientTls>,
    ) -> Result<RedisConnection, RedisError> {
        let socket = ClientSocket::connect(address, timeout, tls)
            .map_err(|error| RedisError::Unreachable(format!("{address}: {error}")))?;
        Ok(RedisConnection { socket, outgoing: Vec::new() })
    }

    pub fn set(&mut self, key: &str, value: &[u8]) -> Result<(), RedisError> {
        match self.call(&[b"SET", key.as_bytes(), value])? {
            Reply::Status(status) if status == "OK" => Ok(()),
            other => Err(unexpected("SET", &other)),
        }
    }

    /// The value of `key`, or `None` if absent.
    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        match self.call(&[b"GET", key.as_bytes()])? {
            Reply::Bulk(value) => Ok(value),
            other => Err(unexpected("GET", &other)),
        }
    }

    /// Deletes `key`; returns whether it existed.
    pub fn del(&mut self, key: &str) -> Result<bool, RedisError> {
        match self.call(&[b"DEL", key.as_bytes()])? {
            Reply::Integer(deleted) => Ok(deleted > 0),
            other => Err(unexpected("DEL", &other)),
        }
    }

    /// Adds 1 to the counter `key`; returns its new value.
    pub fn incr(&mut self, key: &str) -> Result<i64, RedisError> {
        match self.call(&[b"INCR", key.as_bytes()])? {
            Reply::Integer(value) => Ok(value),
            other => Err(unexpected("INCR", &other)),
        }
    }

    /// Sends one command and reads its reply; an error reply is an `Err`.
    fn call(&mut self, words: &[&[u8]]) -> Result<Reply, RedisError> {
        encode_command(words, &mut self.outgoing);
        self.socket.send(&self.outgoing).map_err(|error| RedisError::Unreachable(error.to_string()))?;
        match read_reply(self.socket.reader())? {
            Reply::Error(message) => Err(RedisError::Server(message)),
            reply => Ok(reply),
        }
    }
}

fn unexpected(command: &str, reply: &Reply) -> RedisError {
    RedisError::Protocol(format!("unexpected reply to {command}: {reply:?}"))
}

/// Encodes a command as a RESP array of bulk strings into `buffer`.
pub fn encode_command(words: &[&[u8]], buffer: &mut Vec<u8>) {
    buffer.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(buffer, "*{}\r\n", words.len());
    for word in words {
        let _ = write!(buffer, "${}\r\n", word.len());
        buffer.extend_from_slice(word);
        buffer.extend_from_slice(b"\r\n");
    }
}

/// Reads one reply: `+status`, `-error`, `:integer` or `$length` bulk
/// string. Lengths are checked before allocating; arrays and RESP3 types
/// are refused (SET, GET and DEL never answer with them).
pub fn read_reply(reader: &mut impl BufRead) -> Result<Reply, RedisError> {
    let line = read_line(reader)?;
    let (kind, rest) = line.split_at(1);
    let text = || String::from_utf8_lossy(rest).into_owned();
    let number = || {
        std::str::from_utf8(rest)
            .ok()
            .and_then(|digits| digits.parse::<i64>().ok())
            .ok_or_else(|| RedisError::Protocol(format!("not a number: {:?}", text())))
    };
    match kind[0] {
        b'+' => Ok(Reply::Status(text())),
        b'-' => Ok(Reply::Error(text())),
        b':' => Ok(Reply::Integer(number()?)),
        b'$' => match number()? {
            -1 => Ok(Reply::Bulk(None)),
            length if length < 0 || length as u64 > REDIS_BULK_BYTES_MAX as u64 => {
                Err(RedisError::Protocol(format!("bulk length {length} out of range")))
            }
            length => {
                let mut value = vec![0; length as usize + 2];
                reader.read_exact(&mut value).map_err(received)?;
                if !value.ends_with(b"\r\n") {
                    return Err(RedisError::Protocol("bulk string not followed by CRLF".into()));
                }
                value.truncate(length as usize);
                Ok(Reply::Bulk(Some(value)))
            }
        },
        other => Err(RedisError::Protocol(format!("unsupported reply type {:?}", other as char))),
    }
}

/// One line without its CRLF, at least one byte long.
fn read_line(reader: &mut impl BufRead) -> Result<Vec<u8>, RedisError> {
    let mut line = Vec::new();
    reader.by_ref().take(REDIS_LINE_BYTES_MAX).read_until(b'\n', &mut line).map_err(received)?;
    if line.is_empty() {
        return Err(RedisError::Unreachable("redis closed the connection".into()));
    }
    if !line.ends_with(b"\r\n") {
        return Err(RedisError::Protocol(format!(
            "reply line not ended by CRLF within {REDIS_LINE_BYTES_MAX} bytes: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    line.truncate(line.len() - 2);
    if line.is_empty() {
        return Err(RedisError::Protocol("empty reply line".into()));
    }
    Ok(line)
}

fn received(error: io::Error) -> RedisError {
    match error.kind() {
        ErrorKind::UnexpectedEof => RedisError::Unreachable("redis closed the connection mid-reply".into()),
        _ => RedisError::Unreachable(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn parse(bytes: &[u8]) -> Result<Reply, RedisError> {
        read_reply(&mut &bytes[..])
    }

    #[test]
    fn replies_parse() {
        assert_eq!(parse(b"+OK\r\n"), Ok(Reply::Status("OK".into())));
        assert_eq!(parse(b"-ERR wrong type\r\n"), Ok(Reply::Error("ERR wrong type".into())));
        assert_eq!(parse(b":1\r\n"), Ok(Reply::Integer(1)));
        assert_eq!(parse(b":-3\r\n"), Ok(Reply::Integer(-3)));
        assert_eq!(parse(b"$-1\r\n"), Ok(Reply::Bulk(None)));
        assert_eq!(parse(b"$0\r\n\r\n"), Ok(Reply::Bulk(Some(Vec::new()))));
        assert_eq!(parse(b"$5\r\na\r\nb!\r\n"), Ok(Reply::Bulk(Some(b"a\r\nb!".to_vec()))));
    }

    #[test]
    fn replies_follow_each_other_on_one_stream() {
        let mut stream = &b"+OK\r\n$3\r\nabc\r\n:0\r\n"[..];
        assert_eq!(read_reply(&mut stream), Ok(Reply::Status("OK".into())));
        assert_eq!(read_reply(&mut stream), Ok(Reply::Bulk(Some(b"abc".to_vec()))));
        assert_eq!(read_reply(&mut stream), Ok(Reply::Integer(0)));
        assert!(matches!(read_reply(&mut stream), Err(RedisError::Unreachable(_))));
    }

    #[test]
    fn malformed_replies_are_refused() {
        for bad in [
            &b"OK\r\n"[..],
            b"+OK\n",
            b"\r\n",
            b":x\r\n",
            b"$-2\r\n",
            b"$99999999999\r\n",
            b"$3\r\nabcd\r\n",
            b"*1\r\n$1\r\na\r\n",
        ] {
            assert!(matches!(parse(bad), Err(RedisError::Protocol(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(parse(b"$3\r\nab"), Err(RedisError::Unreachable(_))), "short bulk");
        assert!(matches!(parse(b"+OK"), Err(RedisError::Protocol(_))), "no CRLF");
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut buffer = b"left over".to_vec();
        encode_command(&[b"SET", b"key:1", b""], &mut buffer);
        assert_eq!(buffer, b"*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$0\r\n\r\n");
    }

    /// A fake Redis that checks each request and sends a canned reply.
    #[test]
    fn calls_against_a_scripted_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let script: [(&[u8], &[u8]); 5] = [
            (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n", b"+OK\r\n"),
            (b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"$2\r\nv1\r\n"),
            (b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n", b":1\r\n"),
            (b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"$-1\r\n"),
            (b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n", b"-ERR no\r\n"),
        ];
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            for (request, reply) in script {
                let mut received = vec![0; request.len()];
                socket.read_exact(&mut received).unwrap();
                assert_eq!(String::from_utf8_lossy(&received), String::from_utf8_lossy(request));
                socket.write_all(reply).unwrap();
            }
        });
        let mut redis = RedisConnection::open(&address, Duration::from_secs(5), None).unwrap();
        assert_eq!(redis.set("k", b"v1"), Ok(()));
        assert_eq!(redis.get("k"), Ok(Some(b"v1".to_vec())));
        assert_eq!(redis.del("k"), Ok(true));
        assert_eq!(redis.get("k"), Ok(None));
        assert_eq!(redis.del("k"), Err(RedisError::Server("ERR no".into())));
        server.join().unwrap();
        assert!(matches!(redis.get("k"), Err(RedisError::Unreachable(_))), "server gone");
    }
}
