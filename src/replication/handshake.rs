//! The opening of a replication link: the predecessor's hello, and with a
//! peer secret (`--peer-secret-file`) a mutual challenge-response before
//! anything else. Each side proves the peer secret with an HMAC over both
//! nonces, both node names, the chain path and the sender's epoch; the
//! receiver says nothing about its state (no `last_applied`) and the sender
//! sends no write or snapshot before the other side's proof checks out.
//! Without TLS the frames after it are sealed (see `secure::frame_seal`)
//! with keys derived from the same transcript, one per direction.
//!
//! The steps, predecessor (sender) S and successor (receiver) R:
//! 1. S → R `Request{OP_REPLICATE, replica_hello{…, nonce: ns}}`
//! 2. R → S `Response{OP_REPLICATE, auth{nonce: nr, proof: R's}}`
//! 3. S → R `Request{OP_REPLICATE, auth{proof: S's}}`
//! 4. R → S `Response{OP_REPLICATE, replica_welcome}` (sealed without TLS)

use super::LinkError;
use crate::proto::{AuthStep, Opcode, ReplicaHello, ReplicaWelcome, Request, Response};
use crate::secure::challenge::{NONCE_BYTES, Prover, Transcript, fresh_nonce};
use crate::secure::frame_seal::FrameSeal;
use crate::secure::secret::AuthKey;
use crate::wire::{FrameReader, FrameWriter};

/// Labels of the two directions' frame keys.
const DOWNSTREAM_SEAL: &[u8] = b"link frames downstream";
const UPSTREAM_SEAL: &[u8] = b"link frames upstream";

/// What both ends of a link prove they agree on, beside the nonces.
struct LinkContext {
    epoch: Vec<u8>,
    sender: String,
    receiver: String,
    chain_path: String,
}

impl LinkContext {
    fn of(hello: &ReplicaHello, chain_path: &str) -> LinkContext {
        LinkContext {
            epoch: hello.epoch.to_be_bytes().to_vec(),
            sender: hello.sender.clone(),
            receiver: hello.receiver.clone(),
            chain_path: chain_path.to_owned(),
        }
    }

    fn parts(&self) -> [&[u8]; 4] {
        [self.sender.as_bytes(), self.receiver.as_bytes(), self.chain_path.as_bytes(), &self.epoch]
    }
}

/// Seals both directions of an authenticated link without TLS.
fn seal_link(
    key: &AuthKey,
    transcript: &Transcript,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
    we_send_downstream: bool,
) {
    let downstream = FrameSeal::new(transcript.session_key(key, DOWNSTREAM_SEAL));
    let upstream = FrameSeal::new(transcript.session_key(key, UPSTREAM_SEAL));
    if we_send_downstream {
        writer.add_seal(downstream);
        reader.require_seal(upstream);
    } else {
        writer.add_seal(upstream);
        reader.require_seal(downstream);
    }
}

/// The sender's side: sends `hello` (with our nonce when we have a peer
/// key), proves the secret if the link asks for it, and returns the
/// receiver's welcome. `successor` names the receiver in errors.
pub fn open(
    mut hello: ReplicaHello,
    key: Option<&AuthKey>,
    chain_path: &str,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
    successor: &str,
) -> Result<ReplicaWelcome, LinkError> {
    let nonce = key.map(|_| fresh_nonce()).transpose().map_err(LinkError::Refused)?.unwrap_or_default();
    hello.nonce = nonce.clone();
    let context = LinkContext::of(&hello, chain_path);
    let mut request = Request::new();
    request.opcode = Opcode::OP_REPLICATE.into();
    request.replica_hello = Some(hello).into();
    writer.send(&request)?;
    let response = reader.receive::<Response>()?.ok_or(LinkError::Closed)?;
    let Some(key) = key else {
        return Ok(response.replica_welcome.into_option().unwrap_or_default());
    };
    let Some(challenge) = response.auth.into_option() else {
        let welcome = response.replica_welcome.into_option().unwrap_or_default();
        return Err(if welcome.accepted {
            LinkError::Unauthenticated(format!(
                "{successor} does not authenticate links (no --peer-secret-file?): not replicating to it"
            ))
        } else {
            LinkError::Refused(format!("{successor} refused the link: {}", welcome.reason))
        });
    };
    let parts = context.parts();
    let transcript =
        Transcript { initiator_nonce: &nonce, responder_nonce: &challenge.nonce, context: &parts };
    if !transcript.verify(key, Prover::LinkReceiver, &challenge.proof) {
        return Err(LinkError::Unauthenticated(format!(
            "{successor} failed to prove the peer secret: not replicating to it (no writes, no state transfer)"
        )));
    }
    let mut proof = Request::new();
    proof.opcode = Opcode::OP_REPLICATE.into();
    proof.auth =
        Some(AuthStep { proof: transcript.prove(key, Prover::LinkSender), ..AuthStep::new() }).into();
    writer.send(&proof)?;
    if writer.tls().is_none() {
        seal_link(key, &transcript, reader, writer, true);
    }
    let response = reader.receive::<Response>()?.ok_or(LinkError::Closed)?;
    Ok(response.replica_welcome.into_option().unwrap_or_default())
}

/// The receiver's side, after the sender's `hello`: with a peer key, runs
/// steps 2 and 3 and returns once the sender has proved the secret; a
/// sender that does not is refused (and learns nothing). Without a key
/// there is nothing to prove.
pub fn accept(
    hello: &Request,
    key: Option<&AuthKey>,
    chain_path: &str,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
) -> Result<(), LinkError> {
    let Some(key) = key else {
        return Ok(());
    };
    let claimed = &hello.replica_hello.sender;
    if hello.replica_hello.nonce.len() != NONCE_BYTES {
        refuse(writer, hello, "this server requires peer authentication (--peer-secret-file)")?;
        return Err(LinkError::Unauthenticated(format!(
            "a link claiming to be from {claimed} did not offer to authenticate; refused"
        )));
    }
    let nonce = fresh_nonce().map_err(LinkError::Refused)?;
    let context = LinkContext::of(&hello.replica_hello, chain_path);
    let parts = context.parts();
    let transcript =
        Transcript { initiator_nonce: &hello.replica_hello.nonce, responder_nonce: &nonce, context: &parts };
    let mut challenge = Response::new();
    challenge.opcode = Opcode::OP_REPLICATE.into();
    challenge.request_id = hello.request_id;
    challenge.auth = Some(AuthStep {
        nonce: nonce.clone(),
        proof: transcript.prove(key, Prover::LinkReceiver),
        ..AuthStep::new()
    })
    .into();
    writer.send(&challenge)?;
    let answer = reader.receive::<Request>()?.ok_or(LinkError::Closed)?;
    let proved = answer.opcode.enum_value() == Ok(Opcode::OP_REPLICATE)
        && transcript.verify(key, Prover::LinkSender, &answer.auth.proof);
    if !proved {
        refuse(writer, hello, "peer authentication failed")?;
        return Err(LinkError::Unauthenticated(format!(
            "a link claiming to be from {claimed} failed to prove the peer secret; refused"
        )));
    }
    if writer.tls().is_none() {
        seal_link(key, &transcript, reader, writer, false);
    }
    Ok(())
}

/// Tells the sender its link is refused and why (nothing else).
fn refuse(writer: &mut FrameWriter, hello: &Request, reason: &str) -> Result<(), LinkError> {
    let mut response = Response::new();
    response.opcode = Opcode::OP_REPLICATE.into();
    response.request_id = hello.request_id;
    response.replica_welcome =
        Some(ReplicaWelcome { reason: reason.to_owned(), ..ReplicaWelcome::new() }).into();
    writer.send(&response)?;
    Ok(())
}
