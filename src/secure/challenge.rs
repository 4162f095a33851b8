//! The challenge-response of client and peer authentication, as pure
//! functions of the key, both nonces and the context (node names, chain,
//! epoch): the wire steps around it live with the client, the server's
//! connection and the replication link.

use ring::rand::{SecureRandom, SystemRandom};

use super::secret::AuthKey;

/// Bytes of a nonce: enough that one never repeats.
pub const NONCE_BYTES: usize = 32;

/// Who proves: each side's proof has its own label, so a proof one side
/// sent can never be replayed as the other side's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prover {
    /// A server answering a client's OP_AUTH.
    Server,
    /// A client.
    Client,
    /// The receiving end of a replication link (the successor).
    LinkReceiver,
    /// The sending end of a replication link (the predecessor).
    LinkSender,
}

impl Prover {
    fn label(self) -> &'static [u8] {
        match self {
            Prover::Server => b"server proof",
            Prover::Client => b"client proof",
            Prover::LinkReceiver => b"link receiver proof",
            Prover::LinkSender => b"link sender proof",
        }
    }
}

/// A fresh random nonce, or an error if the system has no randomness.
pub fn fresh_nonce() -> Result<Vec<u8>, String> {
    let mut nonce = vec![0u8; NONCE_BYTES];
    SystemRandom::new().fill(&mut nonce).map_err(|_| "the system random generator failed".to_owned())?;
    Ok(nonce)
}

/// What both sides of one handshake agree on: the nonces and the context.
pub struct Transcript<'a> {
    /// The connecting side's nonce (client, link sender).
    pub initiator_nonce: &'a [u8],
    /// The accepting side's nonce (server, link receiver).
    pub responder_nonce: &'a [u8],
    /// Node names, chain path and epoch on a link; empty for a client.
    pub context: &'a [&'a [u8]],
}

impl Transcript<'_> {
    fn parts(&self, label: &'static [u8]) -> Vec<&[u8]> {
        let mut parts = vec![label, self.initiator_nonce, self.responder_nonce];
        parts.extend_from_slice(self.context);
        parts
    }

    /// `prover`'s proof.
    pub fn prove(&self, key: &AuthKey, prover: Prover) -> Vec<u8> {
        key.tag(&self.parts(prover.label())).as_ref().to_vec()
    }

    /// Whether `proof` is `prover`'s. Nonces of the wrong length never pass.
    pub fn verify(&self, key: &AuthKey, prover: Prover, proof: &[u8]) -> bool {
        self.initiator_nonce.len() == NONCE_BYTES
            && self.responder_nonce.len() == NONCE_BYTES
            && key.verify(&self.parts(prover.label()), proof)
    }

    /// A key for this connection only, for one purpose (e.g. one direction
    /// of a link's frames).
    pub fn session_key(&self, key: &AuthKey, purpose: &'static [u8]) -> AuthKey {
        key.derive(&self.parts(purpose))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::secret::Secret;

    #[test]
    fn proofs_bind_nonces_context_and_prover() {
        let key = Secret::from_bytes(b"0123456789abcdef").unwrap().peer_key();
        let (a, b) = (fresh_nonce().unwrap(), fresh_nonce().unwrap());
        assert_ne!(a, b);
        let context: &[&[u8]] = &[b"node1", b"node2", b"/chain", b"7"];
        let transcript = Transcript { initiator_nonce: &a, responder_nonce: &b, context };
        let proof = transcript.prove(&key, Prover::LinkReceiver);
        assert!(transcript.verify(&key, Prover::LinkReceiver, &proof));
        assert!(
            !transcript.verify(&key, Prover::LinkSender, &proof),
            "a receiver proof must not pass as a sender's"
        );
        let other_epoch: &[&[u8]] = &[b"node1", b"node2", b"/chain", b"8"];
        let moved = Transcript { initiator_nonce: &a, responder_nonce: &b, context: other_epoch };
        assert!(!moved.verify(&key, Prover::LinkReceiver, &proof));
        let swapped = Transcript { initiator_nonce: &b, responder_nonce: &a, context };
        assert!(!swapped.verify(&key, Prover::LinkReceiver, &proof));
        let short = Transcript { initiator_nonce: b"", responder_nonce: &b, context };
        assert!(!short.verify(&key, Prover::LinkReceiver, &short.prove(&key, Prover::LinkReceiver)));
    }
}
