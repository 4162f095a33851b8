//! Why a client call failed. The one error type that every part of the
//! client (connection, chain routing, locator, retry policy) shares, kept in
//! a file of its own so those parts depend on it and not on each other.

use std::fmt;

use crate::proto::ErrorCode;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// The server could not be reached, or the connection failed or timed out
    /// before a reply arrived (a write may or may not have been applied).
    Unreachable(String),
    /// The server answered with an error reply.
    Server { code: ErrorCode, message: String },
    /// The reply was not a valid answer to the request.
    Protocol(String),
    /// Chain mode: no server to send to (ZooKeeper did not answer, or the
    /// chain has no ready server).
    NoChain(String),
    /// Chain mode: no server can ever be found this way (a bad ZooKeeper
    /// address, a host that is not a ZooKeeper, a chain path that does not
    /// exist): retrying cannot help.
    NoChainEver(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable(message) => write!(f, "server unreachable: {message}"),
            ClientError::Server { code, message } => write!(f, "server error ({code:?}): {message}"),
            ClientError::Protocol(message) => write!(f, "protocol error: {message}"),
            ClientError::NoChain(message) | ClientError::NoChainEver(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for ClientError {}
