//! The opening of a replication link: the predecessor's hello, and with a
//! peer secret (`--peer-secret-file`) a mutual challenge-response before
//! anything else. Each side proves the peer secret with an HMAC over both
//! nonces, both node names, the chain path and the sender's epoch; the
//! receiver says nothing about its state (no `last_applied`) and the sender
//! sends no write or snapshot before the other side's proof checks out.
//! Without TLS the frames after it are sealed (see `secure::frame_seal`)
//! with keys derived from the same transcript, one per direction. The
//! steps themselves are pure (`secure::link_auth`), shared with the
//! simulator; this module does their I/O.
//!
//! The steps, predecessor (sender) S and successor (receiver) R:
//! 1. S → R `Request{OP_REPLICATE, replica_hello{…, nonce: ns}}`
//! 2. R → S `Response{OP_REPLICATE, auth{nonce: nr, proof: R's}}`
//! 3. S → R `Request{OP_REPLICATE, auth{proof: S's}}`
//! 4. R → S `Response{OP_REPLICATE, replica_welcome}` (sealed without TLS)

use super::{LinkError, LinkSettings};
use crate::limits::HANDSHAKE_FRAME_BYTES_MAX;
use crate::proto::{Opcode, ReplicaHello, ReplicaWelcome, Request, Response};
use crate::secure::challenge::fresh_nonce;
use crate::secure::link_auth::LinkAuth;
use crate::secure::secret::AuthKey;
use crate::wire::{FrameReader, FrameWriter};

/// Seals both directions of an authenticated link without TLS.
fn seal_link(auth: &LinkAuth, reader: &mut FrameReader, writer: &mut FrameWriter, we_send_downstream: bool) {
    if writer.tls().is_none() {
        let (sending, receiving) = auth.seals(we_send_downstream);
        writer.add_seal(sending);
        reader.require_seal(receiving);
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
    if key.is_some() {
        hello.nonce = fresh_nonce().map_err(LinkError::Refused)?;
    }
    let mut request = Request::new();
    request.opcode = Opcode::OP_REPLICATE.into();
    request.replica_hello = Some(hello.clone()).into();
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
    let (auth, answer) =
        LinkAuth::answer(key, &hello, chain_path, &challenge).map_err(LinkError::Unauthenticated)?;
    let mut proof = Request::new();
    proof.opcode = Opcode::OP_REPLICATE.into();
    proof.auth = Some(answer).into();
    writer.send(&proof)?;
    seal_link(&auth, reader, writer, true);
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
    let nonce = fresh_nonce().map_err(LinkError::Refused)?;
    let (auth, step) = match LinkAuth::challenge(key, &hello.replica_hello, chain_path, &nonce) {
        Ok(challenge) => challenge,
        Err(reason) => {
            refuse(writer, hello, "this server requires peer authentication (--peer-secret-file)")?;
            return Err(LinkError::Unauthenticated(format!("{reason}; refused")));
        }
    };
    let mut challenge = Response::new();
    challenge.opcode = Opcode::OP_REPLICATE.into();
    challenge.request_id = hello.request_id;
    challenge.auth = Some(step).into();
    writer.send(&challenge)?;
    // Whoever this is has proved nothing yet: its answer is one small frame.
    let frame_bytes_max = reader.set_frame_bytes_max(HANDSHAKE_FRAME_BYTES_MAX);
    let answer = reader.receive::<Request>();
    reader.set_frame_bytes_max(frame_bytes_max);
    let answer = answer?.ok_or(LinkError::Closed)?;
    if answer.opcode.enum_value() != Ok(Opcode::OP_REPLICATE) || !auth.sender_proved(&answer.auth) {
        refuse(writer, hello, "peer authentication failed")?;
        return Err(LinkError::Unauthenticated(format!(
            "a link claiming to be from {} failed to prove the peer secret; refused",
            hello.replica_hello.sender
        )));
    }
    seal_link(&auth, reader, writer, false);
    Ok(())
}

/// The receiver's admission of a peer, for a replication link or a
/// migration stream alike: over TLS the peer must show a certificate
/// (mutual TLS), then [`accept`] with our key over our chain path. Once
/// proved, frames are paced by the peer, not by a deadline.
pub fn admit(
    hello: &Request,
    settings: &LinkSettings,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
) -> Result<(), LinkError> {
    if writer.tls().is_some_and(|session| !session.peer_has_certificate()) {
        return Err(LinkError::Refused(format!(
            "a link claiming to be from {} showed no TLS certificate; peers must (mutual TLS)",
            hello.replica_hello.sender
        )));
    }
    accept(hello, settings.security.peer_key.as_ref(), &settings.chain_path, reader, writer)?;
    reader.set_frame_timeout(None);
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
