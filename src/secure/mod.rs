//! Who may talk to a server: secrets and what is derived from them
//! ([`secret`]), the challenge-response both peers and clients use
//! ([`challenge`]), the per-link frame authentication of replication links
//! ([`frame_seal`]) and TLS over our blocking sockets ([`tls`]).
//!
//! One crypto crate, `ring`, does the HMACs, the random nonces and (through
//! rustls) TLS. Secrets never cross the wire: each side proves it holds one
//! with an HMAC over fresh nonces from both sides, under a key derived from
//! the secret for that one purpose, so a client secret can never pass as a
//! peer secret and a proof is good for one connection only.

pub mod challenge;
pub mod frame_seal;
pub mod link_auth;
pub mod secret;
pub mod tls;

use std::sync::Arc;

use secret::AuthKey;
use tls::ServerTls;

/// What a server demands of whoever connects to it, and shows them.
#[derive(Clone, Default)]
pub struct ServerSecurity {
    /// `--peer-secret-file`: replication links prove it both ways, and
    /// their frames are sealed with keys derived from it.
    pub peer_key: Option<AuthKey>,
    /// `--client-secret-file`: clients prove it before their first request.
    pub client_key: Option<AuthKey>,
    /// `--tls-cert`, `--tls-key`, `--tls-ca`: every connection is TLS;
    /// replication links are mutual TLS.
    pub tls: Option<Arc<ServerTls>>,
}

impl std::fmt::Debug for ServerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSecurity")
            .field("peer_secret", &self.peer_key.is_some())
            .field("client_secret", &self.client_key.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}
