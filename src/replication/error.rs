//! Why a replication link ended: its own error type, so a link's log line
//! says whether the network failed, the peer refused, or the peer broke the
//! protocol, instead of all of them passing as a malformed frame.

use std::{fmt, io};

use crate::wire::FrameError;

#[derive(Debug)]
pub enum LinkError {
    /// The socket failed (including timeouts).
    Io(io::Error),
    /// The other end closed the link.
    Closed,
    /// A frame could not be read or written whole (see [`FrameError`]).
    Frame(FrameError),
    /// The other end refused the link or a frame (not its predecessor, an
    /// older view, a replaced link...): a view change usually settles it.
    Refused(String),
    /// The other end sent what the protocol does not allow (an ack for
    /// writes never sent): the link is dropped, the server goes on.
    Protocol(String),
    /// The other end did not prove the peer secret (or does not use one
    /// while we do): nothing was sent to it or taken from it.
    Unauthenticated(String),
    /// This server cannot go on with the link (its own state transfer is
    /// not complete, or writes were not forwarded for a while).
    NotReady(String),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Io(error) => write!(f, "network: {error}"),
            LinkError::Closed => write!(f, "the other end closed the link"),
            LinkError::Frame(error) => write!(f, "frame: {error}"),
            LinkError::Refused(reason) => write!(f, "refused: {reason}"),
            LinkError::Protocol(reason) => write!(f, "protocol violation: {reason}"),
            LinkError::NotReady(reason) => write!(f, "not ready: {reason}"),
            LinkError::Unauthenticated(reason) => write!(f, "not authenticated: {reason}"),
        }
    }
}

impl std::error::Error for LinkError {}

impl From<io::Error> for LinkError {
    fn from(error: io::Error) -> LinkError {
        LinkError::Io(error)
    }
}

impl From<FrameError> for LinkError {
    fn from(error: FrameError) -> LinkError {
        match error {
            FrameError::Io(error) => LinkError::Io(error),
            FrameError::Truncated => LinkError::Closed,
            FrameError::Forged => {
                LinkError::Unauthenticated(format!("{}: closing the link", FrameError::Forged))
            }
            other => LinkError::Frame(other),
        }
    }
}
