//! A client connection's proof of the client secret (`--client-secret-file`):
//! the server's side of `OP_AUTH`. Until a connection has proved it, every
//! request is answered with `ERR_AUTH` and the connection closes.

use crate::limits::UNAUTHENTICATED_LOG_PERIOD;

use log::warn;

use super::service::error_response;
use crate::proto::{AuthStep, ErrorCode, Opcode, Request, Response};
use crate::secure::challenge::{NONCE_BYTES, Prover, Transcript, fresh_nonce};
use crate::secure::secret::AuthKey;
use crate::throttle::{Every, suppressed_note};

/// Where one connection stands.
pub(super) enum ClientAuth<'a> {
    /// Nothing (more) to prove: no client secret, or proved.
    Open,
    /// The secret is required and the client has not started.
    Required(&'a AuthKey),
    /// We sent our nonce and proof; the client's proof comes next.
    Challenged { key: &'a AuthKey, client_nonce: Vec<u8>, server_nonce: Vec<u8> },
}

/// What to do with a request.
pub(super) enum Screened {
    /// Serve it.
    Serve(Request),
    /// It was an authentication step: send this reply and go on.
    Reply(Response),
    /// Send this refusal and close the connection.
    Refuse(Response),
}

impl<'a> ClientAuth<'a> {
    pub(super) fn new(key: Option<&'a AuthKey>) -> ClientAuth<'a> {
        key.map_or(ClientAuth::Open, ClientAuth::Required)
    }

    /// Lets `request` through, or takes it as a step of authentication.
    pub(super) fn screen(&mut self, request: Request) -> Screened {
        let is_auth = request.opcode.enum_value() == Ok(Opcode::OP_AUTH);
        match std::mem::replace(self, ClientAuth::Open) {
            ClientAuth::Open if !is_auth => Screened::Serve(request),
            // Nothing to prove here: say so with a reply without a proof.
            ClientAuth::Open => Screened::Reply(auth_reply(&request, None)),
            ClientAuth::Required(key) => {
                let client_nonce = request.auth.nonce.clone();
                if !is_auth || client_nonce.len() != NONCE_BYTES {
                    return Screened::Refuse(refusal(
                        &request,
                        "this server requires the client secret: give the client --secret-file (or \
                         CHAINTABLE_SECRET_FILE)",
                    ));
                }
                let Ok(server_nonce) = fresh_nonce() else {
                    return Screened::Refuse(refusal(&request, "the server cannot make a nonce"));
                };
                let transcript = Transcript {
                    initiator_nonce: &client_nonce,
                    responder_nonce: &server_nonce,
                    context: &[],
                };
                let step = AuthStep {
                    nonce: server_nonce.clone(),
                    proof: transcript.prove(key, Prover::Server),
                    ..AuthStep::new()
                };
                *self = ClientAuth::Challenged { key, client_nonce, server_nonce };
                Screened::Reply(auth_reply(&request, Some(step)))
            }
            ClientAuth::Challenged { key, client_nonce, server_nonce } => {
                let transcript = Transcript {
                    initiator_nonce: &client_nonce,
                    responder_nonce: &server_nonce,
                    context: &[],
                };
                if is_auth && transcript.verify(key, Prover::Client, &request.auth.proof) {
                    return Screened::Reply(auth_reply(&request, None));
                }
                if let Some(suppressed) = FAILED_PROOFS.due() {
                    warn!(
                        "a client failed to prove the client secret (wrong --secret-file?); closing its \
                         connection{}",
                        suppressed_note(suppressed)
                    );
                }
                Screened::Refuse(refusal(&request, "authentication failed: wrong client secret"))
            }
        }
    }
}

fn auth_reply(request: &Request, step: Option<AuthStep>) -> Response {
    let mut response = Response::new();
    response.opcode = Opcode::OP_AUTH.into();
    response.request_id = request.request_id;
    response.auth = step.into();
    response
}

fn refusal(request: &Request, message: &str) -> Response {
    error_response(request.request_id, ErrorCode::ERR_AUTH, message)
}

/// Failed proofs are logged at most once a period, whoever sends how
/// many: each is counted in `stats` as an error anyway.
static FAILED_PROOFS: Every = Every::new(UNAUTHENTICATED_LOG_PERIOD);
