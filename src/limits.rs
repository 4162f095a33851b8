//! Every limit the server enforces, with its default. Each one has a
//! command-line option (see [`crate::cli::server_args`]) so an operator can change it.

use std::time::Duration;

/// Largest frame accepted or sent, header excluded. Big enough for a 1 MiB
/// value with room to spare and for `gettable` on tables of moderate size;
/// small enough that one connection cannot make the server allocate without
/// bound (the length is checked before any allocation).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// Largest key. Keys are identifiers, not payloads; 16 KiB is generous.
pub const KEY_BYTES_MAX_DEFAULT: usize = 16 * 1024;

/// Largest value: half the frame, so a PUT with its envelope always fits.
pub const VALUE_BYTES_MAX_DEFAULT: usize = 32 * 1024 * 1024;

/// Concurrent client connections (Redis's default too). Each one is an OS
/// thread with a small stack (an idle one costs about 20 KiB of memory,
/// see BENCHMARKS.md) and three file descriptors; past this a newcomer gets an
/// error reply and is closed.
pub const CLIENTS_MAX_DEFAULT: usize = 10_000;

/// A connection silent for this long is closed, so a vanished peer cannot pin
/// a thread forever. Clients reconnect transparently.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 300_000;

/// A reply that cannot be written for this long (peer not reading) ends the
/// connection.
pub const WRITE_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Upper bound of `<table-size>`, the number of lock stripes.
pub const TABLE_STRIPES_MAX: usize = 1 << 20;

/// Stack of a connection thread: request handling is shallow and keeps its
/// buffers on the heap, so thousands of connections stay cheap.
pub const CONNECTION_STACK_BYTES: usize = 256 * 1024;

/// The server's limits, all in one place so the connection code and the
/// request handler agree.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest frame body in either direction.
    pub frame_bytes_max: usize,
    /// Largest key in a request.
    pub key_bytes_max: usize,
    /// Largest value in a PUT.
    pub value_bytes_max: usize,
    /// Concurrent client connections.
    pub clients_max: usize,
    /// How long a connection may stay silent.
    pub idle_timeout: Duration,
    /// How long one reply may take to write.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            key_bytes_max: KEY_BYTES_MAX_DEFAULT,
            value_bytes_max: VALUE_BYTES_MAX_DEFAULT,
            clients_max: CLIENTS_MAX_DEFAULT,
            idle_timeout: Duration::from_millis(IDLE_TIMEOUT_MS_DEFAULT),
            write_timeout: Duration::from_millis(WRITE_TIMEOUT_MS_DEFAULT),
        }
    }
}
