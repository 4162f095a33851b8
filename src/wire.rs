//! Framing: every message is a 4-byte big-endian length followed by that many
//! bytes of one protobuf message.
//!
//! The announced length is checked against the maximum before anything is
//! allocated, and the body buffer grows only as bytes actually arrive, so a
//! peer that announces a large frame and sends nothing costs nothing. A
//! server also admits each frame's length (its in-flight budget) before
//! reading the body, and gives a frame a deadline from its first byte.

use std::fmt;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protobuf::Message;

use crate::limits::{FRAME_BUFFER_KEEP_BYTES, FRAME_RESERVE_BYTES};
use crate::secure::frame_seal::{FrameSeal, TAG_BYTES};
use crate::secure::tls::{SocketReader, TlsSession};

/// Size of the length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Why a frame could not be read. Every variant ends the connection: after a
/// short or oversized frame the stream cannot be resynchronised.
#[derive(Debug)]
pub enum FrameError {
    /// The stream ended inside a frame (header or body).
    Truncated,
    /// The announced length is over the maximum.
    TooLarge { length: u64, max: usize },
    /// The socket failed (including read timeouts).
    Io(io::Error),
    /// A whole frame arrived but is not the expected message.
    Malformed(String),
    /// The frame did not complete within its deadline, counted from its
    /// first byte (a client sending a byte now and then cannot keep it open).
    Late { timeout: Duration },
    /// On a sealed link: the frame's authentication tag is wrong (forged,
    /// replayed or reordered).
    Forged,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated => write!(f, "stream ended inside a frame"),
            FrameError::TooLarge { length, max } => {
                write!(f, "frame of {length} bytes is over the maximum of {max} bytes")
            }
            FrameError::Io(error) => write!(f, "{error}"),
            FrameError::Malformed(reason) => write!(f, "frame does not decode: {reason}"),
            FrameError::Late { timeout } => {
                write!(f, "frame not complete within {} ms of its first byte", timeout.as_millis())
            }
            FrameError::Forged => {
                write!(f, "a frame's authentication tag is wrong (forged, replayed or reordered)")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads one frame body into `body` (replacing its contents).
///
/// Returns `Ok(false)` when the peer closed the stream cleanly between
/// frames, `Ok(true)` when `body` holds a whole frame.
pub fn read_frame<R: Read>(
    reader: &mut R,
    frame_bytes_max: usize,
    body: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    Ok(read_admitted_frame(reader, frame_bytes_max, body, |_| Ok(()))?.is_some())
}

/// Like [`read_frame`], but calls `admit` with the announced length once it
/// is known to be within the maximum and before any of the body is
/// allocated or read; an error from `admit` ends the read. Returns what
/// `admit` gave (e.g. a reservation held while the frame is in memory), or
/// `None` when the peer closed cleanly between frames.
pub fn read_admitted_frame<R: Read, T>(
    reader: &mut R,
    frame_bytes_max: usize,
    body: &mut Vec<u8>,
    admit: impl FnOnce(u64) -> Result<T, FrameError>,
) -> Result<Option<T>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let mut filled = 0;
    while filled < FRAME_HEADER_BYTES {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(FrameError::Io(error)),
        }
    }
    let length = u32::from_be_bytes(header) as u64;
    if length > frame_bytes_max as u64 {
        return Err(FrameError::TooLarge { length, max: frame_bytes_max });
    }
    let admitted = admit(length)?;
    body.clear();
    body.reserve((length as usize).min(FRAME_RESERVE_BYTES));
    let received = reader.take(length).read_to_end(body).map_err(FrameError::Io)?;
    if (received as u64) < length {
        return Err(FrameError::Truncated);
    }
    Ok(Some(admitted))
}

/// Encodes `message` as one frame into `out` (replacing its contents), so the
/// caller can send it with a single write.
///
/// Fails with [`FrameError::TooLarge`] when the message is over the maximum;
/// `out` is then left empty.
pub fn encode_frame<M: Message>(
    message: &M,
    frame_bytes_max: usize,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    out.clear();
    let length = message.compute_size();
    if length > frame_bytes_max as u64 || length > u32::MAX as u64 {
        return Err(FrameError::TooLarge { length, max: frame_bytes_max });
    }
    out.reserve(FRAME_HEADER_BYTES + length as usize);
    out.extend_from_slice(&(length as u32).to_be_bytes());
    // compute_size() above cached the sizes write_to_vec relies on.
    message.write_to_vec(out).map_err(|error| FrameError::Io(io::Error::other(error)))?;
    debug_assert_eq!(out.len(), FRAME_HEADER_BYTES + length as usize);
    Ok(())
}

/// A TCP socket shared by the two halves of a connection (and whoever may
/// shut it down) through an `Arc`, so a connection costs one file
/// descriptor, not one per clone. Reading it can be bounded by a deadline.
pub struct SharedSocket {
    socket: Arc<TcpStream>,
    /// While a frame is being read: when it must be complete.
    deadline: Option<Instant>,
    /// The socket's own read timeout, replaced while a deadline is set and
    /// put back when it ends.
    saved_timeout: Option<Option<Duration>>,
}

impl SharedSocket {
    /// Ends the deadline, putting the socket's own read timeout back.
    fn end_deadline(&mut self) -> io::Result<()> {
        self.deadline = None;
        match self.saved_timeout.take() {
            Some(saved) => self.socket.set_read_timeout(saved),
            None => Ok(()),
        }
    }
}

impl Read for SharedSocket {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(io::Error::new(ErrorKind::TimedOut, "the frame's deadline passed"));
            }
            if self.saved_timeout.is_none() {
                self.saved_timeout = Some(self.socket.read_timeout()?);
            }
            self.socket.set_read_timeout(Some(remaining))?;
        }
        (&*self.socket).read(buffer)
    }
}

/// The reading half of a framed TCP connection, buffered.
pub struct FrameReader {
    reader: BufReader<SocketReader<SharedSocket>>,
    frame_bytes_max: usize,
    /// How long a frame may take from its first byte; `None`: no limit
    /// beyond the socket's read timeout.
    frame_timeout: Option<Duration>,
    /// The last frame's body, reused.
    body: Vec<u8>,
    /// On a replication link without TLS, after its handshake: every frame
    /// must carry the right tag (see [`FrameSeal`]).
    seal: Option<FrameSeal>,
}

impl FrameReader {
    fn new(
        socket: Arc<TcpStream>,
        tls: Option<Arc<TlsSession>>,
        frame_bytes_max: usize,
        buffer_bytes: usize,
    ) -> FrameReader {
        let socket = SharedSocket { socket, deadline: None, saved_timeout: None };
        FrameReader {
            reader: BufReader::with_capacity(buffer_bytes, SocketReader::new(socket, tls)),
            seal: None,
            frame_bytes_max,
            frame_timeout: None,
            body: Vec::new(),
        }
    }

    /// Gives every later frame `timeout` from its first byte to complete
    /// (`None`: no limit).
    pub fn set_frame_timeout(&mut self, timeout: Option<Duration>) {
        self.frame_timeout = timeout;
    }

    /// Changes the largest frame accepted; returns the one before.
    pub fn set_frame_bytes_max(&mut self, frame_bytes_max: usize) -> usize {
        std::mem::replace(&mut self.frame_bytes_max, frame_bytes_max)
    }

    /// From the next frame on, every frame must carry `seal`'s tag.
    pub fn require_seal(&mut self, seal: FrameSeal) {
        self.seal = Some(seal);
    }

    /// The next frame's body; `None` when the peer closed between frames.
    pub fn next_body(&mut self) -> Result<Option<&[u8]>, FrameError> {
        Ok(self.next_admitted_body(|_, _| Ok(()))?.map(|(body, ())| body))
    }

    /// The next frame's body, with what `admit` gave for its announced
    /// length and its deadline (see [`read_admitted_frame`]); `None` when
    /// the peer closed between frames.
    pub fn next_admitted_body<T>(
        &mut self,
        admit: impl FnOnce(u64, Option<Instant>) -> Result<T, FrameError>,
    ) -> Result<Option<(&[u8], T)>, FrameError> {
        if self.body.capacity() > FRAME_BUFFER_KEEP_BYTES {
            self.body = Vec::new();
        }
        let deadline = match self.frame_timeout {
            Some(timeout) => {
                // The wait for a frame's first byte is the socket's (idle)
                // timeout; the frame's own deadline starts with that byte.
                if !self.wait_for_first_byte()? {
                    return Ok(None);
                }
                let deadline = Instant::now() + timeout;
                // A frame already whole in the buffer (most requests) is
                // read without the socket: no timeouts to set and reset.
                if !self.buffered_frame_is_whole() {
                    self.reader.get_mut().raw_mut().deadline = Some(deadline);
                }
                Some(deadline)
            }
            None => None,
        };
        let max = self.frame_bytes_max + if self.seal.is_some() { TAG_BYTES } else { 0 };
        let result =
            read_admitted_frame(&mut self.reader, max, &mut self.body, |length| admit(length, deadline));
        self.reader.get_mut().raw_mut().end_deadline().map_err(FrameError::Io)?;
        match result {
            Ok(None) => Ok(None),
            Ok(Some(admitted)) => match &mut self.seal {
                None => Ok(Some((&self.body[..], admitted))),
                Some(seal) => match seal.open(&self.body) {
                    Some(body) => Ok(Some((body, admitted))),
                    None => Err(FrameError::Forged),
                },
            },
            Err(FrameError::Io(error))
                if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                    && deadline.is_some_and(|deadline| Instant::now() >= deadline) =>
            {
                Err(FrameError::Late { timeout: self.frame_timeout.unwrap_or_default() })
            }
            Err(error) => Err(error),
        }
    }

    /// Whether the buffer holds the next frame's header and all its body.
    fn buffered_frame_is_whole(&self) -> bool {
        let buffered = self.reader.buffer();
        buffered.len() >= FRAME_HEADER_BYTES && {
            let header: [u8; FRAME_HEADER_BYTES] =
                buffered[..FRAME_HEADER_BYTES].try_into().expect("4 bytes");
            buffered.len() - FRAME_HEADER_BYTES >= u32::from_be_bytes(header) as usize
        }
    }

    /// Waits (as long as the socket's read timeout allows) until a byte can
    /// be read; `false` when the peer closed instead.
    fn wait_for_first_byte(&mut self) -> Result<bool, FrameError> {
        loop {
            match self.reader.fill_buf() {
                Ok(buffered) => return Ok(!buffered.is_empty()),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(FrameError::Io(error)),
            }
        }
    }

    /// The next frame decoded as `M`; `None` when the peer closed.
    pub fn receive<M: Message>(&mut self) -> Result<Option<M>, FrameError> {
        Ok(self.receive_admitted(|_, _| Ok(()))?.map(|(message, ())| message))
    }

    /// The next frame decoded as `M`, with what `admit` gave (see
    /// [`FrameReader::next_admitted_body`]); `None` when the peer closed. A
    /// body over [`FRAME_BUFFER_KEEP_BYTES`] is freed once decoded, so what
    /// `admit` reserved stands for the decoded message from then on.
    pub fn receive_admitted<M: Message, T>(
        &mut self,
        admit: impl FnOnce(u64, Option<Instant>) -> Result<T, FrameError>,
    ) -> Result<Option<(M, T)>, FrameError> {
        let decoded = match self.next_admitted_body(admit)? {
            None => return Ok(None),
            Some((body, admitted)) => M::parse_from_bytes(body)
                .map(|message| Some((message, admitted)))
                .map_err(|error| FrameError::Malformed(error.to_string())),
        };
        if self.body.capacity() > FRAME_BUFFER_KEEP_BYTES {
            self.body = Vec::new();
        }
        decoded
    }

    /// Whether bytes arrived that nobody asked for yet.
    pub fn has_buffered_bytes(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    pub fn stream(&self) -> &TcpStream {
        &self.reader.get_ref().raw().socket
    }
}

/// The writing half of a framed TCP connection: one write per frame.
pub struct FrameWriter {
    /// The connection's TLS session: frames are sealed through it.
    tls: Option<Arc<TlsSession>>,
    /// After a replication link's handshake without TLS: every frame
    /// carries a tag (see [`FrameSeal`]).
    seal: Option<FrameSeal>,
    /// Shared with whoever else may write whole frames on this connection
    /// (see [`FrameWriter::shared_stream`]), without another descriptor.
    stream: Arc<TcpStream>,
    frame_bytes_max: usize,
    /// The frame being sent, reused.
    frame: Vec<u8>,
}

impl FrameWriter {
    fn new(stream: Arc<TcpStream>, tls: Option<Arc<TlsSession>>, frame_bytes_max: usize) -> FrameWriter {
        FrameWriter { tls, seal: None, stream, frame_bytes_max, frame: Vec::new() }
    }

    /// From the next frame on, every frame carries `seal`'s tag.
    pub fn add_seal(&mut self, seal: FrameSeal) {
        self.seal = Some(seal);
    }

    /// Encodes and sends `message` with a single write.
    pub fn send<M: Message>(&mut self, message: &M) -> Result<(), FrameError> {
        if self.frame.capacity() > FRAME_BUFFER_KEEP_BYTES {
            self.frame = Vec::new();
        }
        encode_frame(message, self.frame_bytes_max, &mut self.frame)?;
        if let Some(seal) = &mut self.seal {
            let tag = seal.seal(&self.frame[FRAME_HEADER_BYTES..]);
            self.frame.extend_from_slice(&tag);
            let length = (self.frame.len() - FRAME_HEADER_BYTES) as u32;
            self.frame[..FRAME_HEADER_BYTES].copy_from_slice(&length.to_be_bytes());
        }
        match &self.tls {
            None => (&*self.stream).write_all(&self.frame),
            Some(session) => {
                session.seal(&self.frame).and_then(|records| (&*self.stream).write_all(&records))
            }
        }
        .map_err(FrameError::Io)
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The socket, for another thread that writes whole frames on it; the
    /// two must take turns (see `reply_port`).
    pub fn shared_stream(&self) -> Arc<TcpStream> {
        Arc::clone(&self.stream)
    }

    /// The connection's TLS session, if it has one: whoever else writes on
    /// the socket must seal through it.
    pub fn tls(&self) -> Option<Arc<TlsSession>> {
        self.tls.clone()
    }

    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }
}

/// Both halves of a framed connection over one socket, sharing its one file
/// descriptor (pass an `Arc` to share it with others too).
pub fn split(
    stream: impl Into<Arc<TcpStream>>,
    tls: Option<Arc<TlsSession>>,
    frame_bytes_max: usize,
    buffer_bytes: usize,
) -> (FrameReader, FrameWriter) {
    let stream = stream.into();
    let reader = FrameReader::new(Arc::clone(&stream), tls.clone(), frame_bytes_max, buffer_bytes);
    (reader, FrameWriter::new(stream, tls, frame_bytes_max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Opcode, Request};
    use std::io::Cursor;

    fn sample_request() -> Request {
        let mut request = Request::new();
        request.opcode = Opcode::OP_PUT.into();
        request.client_id = 7;
        request.request_id = 42;
        request.key = Some("key".to_owned());
        request.value = Some(vec![0, 1, 2, 255]);
        request
    }

    #[test]
    fn round_trip() {
        let request = sample_request();
        let mut out = Vec::new();
        encode_frame(&request, 1024, &mut out).unwrap();
        let mut body = Vec::new();
        let mut cursor = Cursor::new(out);
        assert!(read_frame(&mut cursor, 1024, &mut body).unwrap());
        assert_eq!(Request::parse_from_bytes(&body).unwrap(), request);
        // The stream is now at a clean end.
        assert!(!read_frame(&mut cursor, 1024, &mut body).unwrap());
    }

    #[test]
    fn several_frames_in_one_stream() {
        let mut stream = Vec::new();
        let mut out = Vec::new();
        for id in 0..3 {
            let mut request = sample_request();
            request.request_id = id;
            encode_frame(&request, 1024, &mut out).unwrap();
            stream.extend_from_slice(&out);
        }
        let mut cursor = Cursor::new(stream);
        let mut body = Vec::new();
        for id in 0..3 {
            assert!(read_frame(&mut cursor, 1024, &mut body).unwrap());
            assert_eq!(Request::parse_from_bytes(&body).unwrap().request_id, id);
        }
    }

    #[test]
    fn truncated_header_and_body() {
        let mut body = Vec::new();
        let result = read_frame(&mut Cursor::new(vec![0, 0]), 1024, &mut body);
        assert!(matches!(result, Err(FrameError::Truncated)));
        let result = read_frame(&mut Cursor::new(vec![0, 0, 0, 10, 1, 2, 3]), 1024, &mut body);
        assert!(matches!(result, Err(FrameError::Truncated)));
    }

    #[test]
    fn oversized_length_refused_before_reading_body() {
        let mut body = Vec::new();
        let header = u32::MAX.to_be_bytes().to_vec();
        let result = read_frame(&mut Cursor::new(header), 1024, &mut body);
        assert!(matches!(
            result,
            Err(FrameError::TooLarge { length, max: 1024 }) if length == u32::MAX as u64
        ));
        assert_eq!(body.capacity(), 0, "nothing may be allocated for a refused frame");
    }

    #[test]
    fn oversized_message_not_encoded() {
        let mut request = sample_request();
        request.value = Some(vec![7; 2000]);
        let mut out = Vec::new();
        assert!(matches!(encode_frame(&request, 1024, &mut out), Err(FrameError::TooLarge { .. })));
        assert!(out.is_empty());
    }

    #[test]
    fn garbage_body_does_not_decode() {
        let garbage = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x00];
        let mut framed = (garbage.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&garbage);
        let mut body = Vec::new();
        assert!(read_frame(&mut Cursor::new(framed), 1024, &mut body).unwrap());
        assert!(Request::parse_from_bytes(&body).is_err());
    }

    #[test]
    fn key_that_is_not_utf8_does_not_decode() {
        // Field 4 (key), wire type 2, length 2, bytes 0xff 0xfe.
        let body = [0x22, 0x02, 0xff, 0xfe];
        assert!(Request::parse_from_bytes(&body).is_err());
    }

    #[test]
    fn empty_frame_is_a_default_message() {
        let mut body = Vec::new();
        assert!(read_frame(&mut Cursor::new(vec![0, 0, 0, 0]), 1024, &mut body).unwrap());
        assert!(body.is_empty());
        let request = Request::parse_from_bytes(&body).unwrap();
        assert_eq!(request.opcode.value(), 0);
    }
}
