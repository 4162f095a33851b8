//! Idle connections held open through a run (`--idle-connections N`): what
//! a server pays for clients that are connected but silent (with one thread
//! per connection, a thread and its stack each), and whether it keeps
//! serving the active clients meanwhile. Read the server's RSS and thread
//! count from outside while they are held (`scripts/bench.sh` does).

use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::BenchError;

/// Connections that send nothing.
pub struct IdleConnections {
    streams: Vec<TcpStream>,
}

impl IdleConnections {
    pub fn none() -> IdleConnections {
        IdleConnections { streams: Vec::new() }
    }

    /// Opens `count` connections to `address`, one after another.
    pub fn open(address: &str, count: usize, timeout: Duration) -> Result<IdleConnections, BenchError> {
        let unreachable = |error: std::io::Error| BenchError::Unreachable(format!("{address}: {error}"));
        let socket_address = address
            .to_socket_addrs()
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| BenchError::Unreachable(format!("{address}: no address")))?;
        let mut streams = Vec::with_capacity(count);
        for opened in 0..count {
            let stream = TcpStream::connect_timeout(&socket_address, timeout).map_err(|error| {
                BenchError::Setup(format!("idle connection {} of {count} to {address}: {error}", opened + 1))
            })?;
            stream.set_nonblocking(true).map_err(unreachable)?;
            streams.push(stream);
        }
        Ok(IdleConnections { streams })
    }

    /// How many connections are still open and unanswered: a server that
    /// refused one (over its client limit) has sent an error and closed it.
    pub fn still_open(&self) -> usize {
        let mut byte = [0u8; 1];
        self.streams
            .iter()
            .filter(|stream| matches!(stream.peek(&mut byte), Err(error) if error.kind() == ErrorKind::WouldBlock))
            .count()
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn counts_connections_the_server_answered_or_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let idle = IdleConnections::open(&address, 3, Duration::from_secs(5)).unwrap();
        let mut accepted: Vec<TcpStream> = (0..3).map(|_| listener.accept().unwrap().0).collect();
        assert_eq!(idle.len(), 3);
        accepted[0].write_all(b"refused").unwrap();
        drop(accepted.remove(1));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while idle.still_open() != 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(idle.still_open(), 1);
    }
}
