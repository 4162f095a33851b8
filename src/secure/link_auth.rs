//! A replication link's mutual authentication as pure steps (no I/O, no
//! randomness: nonces come in), so the real link (`replication::handshake`)
//! and the simulator (`table-check sim`) run the same code.
//!
//! 1. The sender's hello carries its nonce.
//! 2. The receiver answers with its nonce and proof: [`LinkAuth::challenge`].
//! 3. The sender checks it and answers with its proof: [`LinkAuth::answer`].
//! 4. The receiver checks that: [`LinkAuth::sender_proved`].
//!
//! Both proofs cover both nonces, both node names, the chain path and the
//! sender's epoch, so a proof is good for this one link only.

use super::challenge::{NONCE_BYTES, Prover, Transcript};
use super::frame_seal::FrameSeal;
use super::secret::AuthKey;
use crate::proto::{AuthStep, ReplicaHello};

/// Labels of the two directions' frame keys.
const DOWNSTREAM_SEAL: &[u8] = b"link frames downstream";
const UPSTREAM_SEAL: &[u8] = b"link frames upstream";

/// One link's handshake, from either end.
pub struct LinkAuth {
    key: AuthKey,
    sender_nonce: Vec<u8>,
    receiver_nonce: Vec<u8>,
    /// Sender, receiver, chain path, epoch.
    context: [Vec<u8>; 4],
}

impl LinkAuth {
    fn new(key: &AuthKey, hello: &ReplicaHello, chain_path: &str, receiver_nonce: &[u8]) -> LinkAuth {
        LinkAuth {
            key: key.clone(),
            sender_nonce: hello.nonce.clone(),
            receiver_nonce: receiver_nonce.to_vec(),
            context: [
                hello.sender.as_bytes().to_vec(),
                hello.receiver.as_bytes().to_vec(),
                chain_path.as_bytes().to_vec(),
                hello.epoch.to_be_bytes().to_vec(),
            ],
        }
    }

    fn with_transcript<T>(&self, use_it: impl FnOnce(&Transcript) -> T) -> T {
        let context: Vec<&[u8]> = self.context.iter().map(Vec::as_slice).collect();
        use_it(&Transcript {
            initiator_nonce: &self.sender_nonce,
            responder_nonce: &self.receiver_nonce,
            context: &context,
        })
    }

    /// Step 2, the receiver's: its nonce and proof for `hello`, or why the
    /// hello cannot be authenticated (it offers no nonce).
    pub fn challenge(
        key: &AuthKey,
        hello: &ReplicaHello,
        chain_path: &str,
        receiver_nonce: &[u8],
    ) -> Result<(LinkAuth, AuthStep), String> {
        if hello.nonce.len() != NONCE_BYTES {
            return Err(format!("a link claiming to be from {} did not offer to authenticate", hello.sender));
        }
        let auth = LinkAuth::new(key, hello, chain_path, receiver_nonce);
        let proof = auth.with_transcript(|transcript| transcript.prove(key, Prover::LinkReceiver));
        Ok((auth, AuthStep { nonce: receiver_nonce.to_vec(), proof, ..AuthStep::new() }))
    }

    /// Step 3, the sender's: checks the receiver's `challenge` to our
    /// `hello` (which carried our nonce), and returns our proof.
    pub fn answer(
        key: &AuthKey,
        hello: &ReplicaHello,
        chain_path: &str,
        challenge: &AuthStep,
    ) -> Result<(LinkAuth, AuthStep), String> {
        let auth = LinkAuth::new(key, hello, chain_path, &challenge.nonce);
        if !auth.with_transcript(|transcript| transcript.verify(key, Prover::LinkReceiver, &challenge.proof))
        {
            return Err(format!(
                "{} failed to prove the peer secret: not replicating to it (no writes, no state transfer)",
                hello.receiver
            ));
        }
        let proof = auth.with_transcript(|transcript| transcript.prove(key, Prover::LinkSender));
        Ok((auth, AuthStep { proof, ..AuthStep::new() }))
    }

    /// Step 4, the receiver's: whether `answer` proves the secret.
    pub fn sender_proved(&self, answer: &AuthStep) -> bool {
        self.with_transcript(|transcript| transcript.verify(&self.key, Prover::LinkSender, &answer.proof))
    }

    /// The seals of the link's frames without TLS: (what we send, what we
    /// receive).
    pub fn seals(&self, we_send_downstream: bool) -> (FrameSeal, FrameSeal) {
        let (downstream, upstream) = self.with_transcript(|transcript| {
            (
                FrameSeal::new(transcript.session_key(&self.key, DOWNSTREAM_SEAL)),
                FrameSeal::new(transcript.session_key(&self.key, UPSTREAM_SEAL)),
            )
        });
        if we_send_downstream { (downstream, upstream) } else { (upstream, downstream) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::secret::Secret;

    fn hello(nonce: &[u8]) -> ReplicaHello {
        ReplicaHello {
            sender: "node1".into(),
            receiver: "node2".into(),
            epoch: 4,
            nonce: nonce.to_vec(),
            ..ReplicaHello::new()
        }
    }

    #[test]
    fn peers_with_the_secret_pass_and_others_do_not() {
        let key = Secret::from_bytes(b"0123456789abcdef").unwrap().peer_key();
        let other = Secret::from_bytes(b"fedcba9876543210").unwrap().peer_key();
        let hello = hello(&[1; NONCE_BYTES]);
        let (receiver, challenge) = LinkAuth::challenge(&key, &hello, "/chain", &[2; NONCE_BYTES]).unwrap();
        let (sender, answer) = LinkAuth::answer(&key, &hello, "/chain", &challenge).unwrap();
        assert!(receiver.sender_proved(&answer));
        let (mut sent, _) = sender.seals(true);
        let (_, mut received) = receiver.seals(false);
        let tag = sent.seal(b"frame");
        assert_eq!(received.open(&[&b"frame"[..], &tag].concat()), Some(&b"frame"[..]));

        assert!(
            LinkAuth::answer(&other, &hello, "/chain", &challenge).is_err(),
            "a sender with another secret"
        );
        assert!(LinkAuth::answer(&key, &hello, "/other-chain", &challenge).is_err(), "another chain's link");
        assert!(!receiver.sender_proved(&AuthStep { proof: vec![0; 32], ..AuthStep::new() }));
        // A sender with another secret that ignored the challenge's proof.
        let (_, impostor_challenge) =
            LinkAuth::challenge(&other, &hello, "/chain", &[2; NONCE_BYTES]).unwrap();
        let (_, impostor_answer) = LinkAuth::answer(&other, &hello, "/chain", &impostor_challenge).unwrap();
        assert!(!receiver.sender_proved(&impostor_answer));
        assert!(LinkAuth::challenge(&key, &hello_without_nonce(), "/chain", &[2; NONCE_BYTES]).is_err());
    }

    fn hello_without_nonce() -> ReplicaHello {
        hello(&[])
    }
}
