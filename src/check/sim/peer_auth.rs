//! Peer authentication in the simulator. Every link's handshake runs the
//! real steps (`secure::link_auth`) with nonces from a generator of its
//! own, and an impostor that knows the chain's node names and epochs (as
//! anyone reading ZooKeeper does) but not the peer secret keeps trying to
//! open links to members and to feed them a forged write. With
//! authentication nothing it sends gets in; `--inject-bug skip-peer-auth`
//! lets it in, and the run's checks must catch the forged write.
//!
//! The sender's answer (step 3) is modeled as instantaneous: a link opens
//! in as many simulated messages as before, and the handshake draws
//! nothing from the world's generator, so every schedule (and every seed in
//! `FOUND`) is what it was without it.

use super::disk::Carry;
use super::world::{Event, World};
use crate::chain::Check;
use crate::chain::injected::enforced;
use crate::check::random::SplitMix64;
use crate::proto::{AuthStep, ReplicaHello, Write};
use crate::secure::challenge::NONCE_BYTES;
use crate::secure::link_auth::LinkAuth;
use crate::secure::secret::{AuthKey, Secret};

/// The chain path every simulated link proves.
const CHAIN_PATH: &str = "/chain";
/// A value no simulated client ever writes (theirs are client × 10^6 + n).
pub const FORGED_VALUE: u64 = 999_999_999_999;
/// The generator stream of the handshake's nonces and the impostor.
const AUTH_STREAM: u64 = 0x0a07;

/// The chain's peer key, the impostor's (another secret) and their own
/// generator.
pub struct PeerAuth {
    key: AuthKey,
    impostor_key: AuthKey,
    rng: SplitMix64,
}

impl PeerAuth {
    pub fn new(seed: u64) -> PeerAuth {
        let secret = |text: &[u8]| Secret::from_bytes(text).expect("a long enough secret").peer_key();
        PeerAuth {
            key: secret(b"the simulated chain's peer secret"),
            impostor_key: secret(b"a secret the impostor made up"),
            rng: SplitMix64::derive(seed, AUTH_STREAM),
        }
    }

    pub fn nonce(&mut self) -> Vec<u8> {
        (0..NONCE_BYTES / 8).flat_map(|_| self.rng.next_u64().to_be_bytes()).collect()
    }

    /// Steps 2 to 4 for `hello` from a sender holding `sender_key`: true
    /// if it proved the chain's secret (or the injected bug skips the check).
    fn authenticated(&mut self, hello: &ReplicaHello, sender_key: &AuthKey, bug: Option<Check>) -> bool {
        let nonce = self.nonce();
        let Ok((receiver, challenge)) = LinkAuth::challenge(&self.key, hello, CHAIN_PATH, &nonce) else {
            return false;
        };
        // A sender without the secret cannot check the receiver's proof
        // either, and answers with what it can make up.
        let answer = LinkAuth::answer(sender_key, hello, CHAIN_PATH, &challenge)
            .map_or_else(|_| AuthStep { proof: vec![0; 32], ..AuthStep::new() }, |(_, answer)| answer);
        receiver.sender_proved(&answer) || !enforced(bug, Check::PeerAuth)
    }
}

impl World {
    /// A member's link from a member: the chain's secret on both ends.
    pub(super) fn member_link_authenticated(&mut self, hello: &ReplicaHello) -> bool {
        let key = self.peer_auth.key.clone();
        self.peer_auth.authenticated(hello, &key, self.config.bug)
    }

    /// The impostor's next try: a hello that names a member's predecessor
    /// as the sender, then (if it got in) a forged write.
    pub fn impostor(&mut self) {
        if self.quiet_since_ms.is_some() {
            return;
        }
        let next = self.peer_auth.rng.between(200, 2000);
        self.schedule(next, Event::Impostor);
        let view = self.zk.view(0);
        let ready: Vec<_> = view.ready().cloned().collect();
        if ready.len() < 2 {
            return;
        }
        let at = 1 + self.peer_auth.rng.below(ready.len() as u64 - 1) as usize;
        let (sender, receiver) = (&ready[at - 1], &ready[at]);
        let Some(target) = super::server::server_of(&receiver.address) else { return };
        if !self.servers[target].alive || self.servers[target].paused_until_ms.is_some() {
            return;
        }
        let mut hello = ReplicaHello::new();
        hello.sender = sender.name.clone();
        hello.receiver = receiver.name.clone();
        hello.epoch = self.servers[target].node.view_epoch();
        hello.nonce = self.peer_auth.nonce();
        let impostor_key = self.peer_auth.impostor_key.clone();
        if !self.peer_auth.authenticated(&hello, &impostor_key, self.config.bug) {
            self.trace(|| format!("impostor: link to s{target} as {} refused", hello.sender));
            return;
        }
        let Ok(welcome) = self.servers[target].node.link_hello(&hello) else { return };
        let forged = Write {
            sequence: welcome.last_applied + 1,
            key: "k0".into(),
            value: Some(FORGED_VALUE.to_string().into_bytes()),
            epoch: self.servers[target].node.view_epoch(),
            ..Write::new()
        };
        self.trace(|| {
            format!("impostor: got in at s{target} as {}; forging write {}", hello.sender, forged.sequence)
        });
        let mut actions = Carry::default();
        let server = &mut self.servers[target];
        let _ = server.node.replicated_batch(
            &hello.sender,
            welcome.link,
            vec![forged],
            &mut server.store,
            &mut actions,
        );
        self.carry(target, actions);
        self.after_step(target);
    }
}
