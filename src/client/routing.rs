//! The client side of chain mode: sends each request to the server whose
//! role may answer it (writes to the head, reads to the tail), and when the
//! chain refuses or a server is gone, looks up the chain again and retries
//! the same request (same request id, so the head applies a write once)
//! until the deadline.

use std::time::Duration;

use log::debug;

use super::connection::{ClientOptions, Endpoint};
use super::error::ClientError;
use super::locator::Locator;
use super::retry::{Backoff, Deadline, is_retryable};
use crate::proto::{ErrorCode, Opcode, Request, Response};
use crate::view::{ChainView, Member};

/// The chain role that may answer a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Writes: the head orders them.
    Head,
    /// Reads (and `stats`): the tail holds only committed writes.
    Tail,
}

impl Role {
    pub fn for_opcode(opcode: Opcode) -> Role {
        if opcode.writes() { Role::Head } else { Role::Tail }
    }

    fn member(self, view: &ChainView) -> Option<&Member> {
        match self {
            Role::Head => view.head(),
            Role::Tail => view.tail(),
        }
    }
}

/// Told of every retry, with why the attempt failed in a few words ("head
/// changed", "tail unreachable"), e.g. to show a status line while the chain
/// changes, and the failure itself.
pub type RetryObserver = Box<dyn Fn(&str, &ClientError) + Send>;

/// A chain found through ZooKeeper, with one connection per role.
pub struct ChainTarget {
    locator: Locator,
    head: Option<Endpoint>,
    tail: Option<Endpoint>,
    /// Told of each retry.
    observer: Option<RetryObserver>,
}

impl ChainTarget {
    pub fn new(locator: Locator) -> ChainTarget {
        ChainTarget { locator, head: None, tail: None, observer: None }
    }

    /// From now on, `observer` is told of every retry.
    pub fn observe_retries(&mut self, observer: RetryObserver) {
        self.observer = Some(observer);
    }

    /// Tells the retry observer that a call at the tail is retried after
    /// `error` (a watch resuming at the next tail).
    pub fn note_retry(&self, error: &ClientError) {
        if let Some(observer) = &self.observer {
            observer(&retry_reason(Role::Tail, error), error);
        }
    }

    /// The chain read afresh from ZooKeeper, waiting at most `wait`.
    pub fn fresh_view(&mut self, wait: Duration) -> Result<ChainView, ClientError> {
        self.locator.mark_stale();
        self.locator.view(wait).cloned()
    }

    /// `<hosts><path>` of the chain.
    pub fn name(&self) -> &str {
        self.locator.name()
    }

    /// Sends `request` (ids already set) to the server of its role, retrying
    /// refusals and lost connections within `options.timeout`.
    pub fn call(&mut self, request: &Request, options: &ClientOptions) -> Result<Response, ClientError> {
        let role = Role::for_opcode(request.opcode.enum_value_or(Opcode::OP_UNSPECIFIED));
        let deadline = Deadline::starting_now(options.timeout);
        let mut backoff = Backoff::default();
        let mut attempts = 1u32;
        loop {
            let error = match self.attempt(role, request, options, &deadline) {
                Ok(response) => return Ok(response),
                Err(error) if !is_retryable(&error) => return Err(error),
                Err(error) => error,
            };
            let Some(pause) = backoff.pause(deadline.remaining()) else {
                return Err(gave_up(error, attempts, options.timeout));
            };
            debug!("attempt {attempts} at the {role:?} failed ({error}); retrying in {pause:?}");
            if let Some(observer) = &self.observer {
                observer(&retry_reason(role, &error), &error);
            }
            // Back at once when ZooKeeper's watch fires: the new view is
            // what the next attempt needs.
            self.locator.wait_for_change(pause);
            attempts += 1;
        }
    }

    fn attempt(
        &mut self,
        role: Role,
        request: &Request,
        options: &ClientOptions,
        deadline: &Deadline,
    ) -> Result<Response, ClientError> {
        let view = self.locator.view(deadline.remaining())?;
        let address = match role.member(view) {
            Some(member) => member.address.clone(),
            None => {
                return Err(ClientError::NoChain(format!("no chain at {}: no ready server", self.name())));
            }
        };
        let slot = match role {
            Role::Head => &mut self.head,
            Role::Tail => &mut self.tail,
        };
        let endpoint = match slot {
            Some(endpoint) if endpoint.address() == address => endpoint,
            _ => slot.insert(Endpoint::new(&address)),
        };
        let attempt_options = ClientOptions { timeout: deadline.attempt_timeout(), ..options.clone() };
        endpoint.call(request, &attempt_options)
    }
}

/// Why an attempt at `role` failed, in a few words for a status line.
fn retry_reason(role: Role, error: &ClientError) -> String {
    let role = match role {
        Role::Head => "head",
        Role::Tail => "tail",
    };
    match error {
        ClientError::Server { code: ErrorCode::ERR_WRONG_ROLE, .. } => format!("{role} changed"),
        ClientError::Server { code: ErrorCode::ERR_SHUTTING_DOWN, .. } => format!("{role} shutting down"),
        ClientError::Server { code: ErrorCode::ERR_UNAVAILABLE, .. } => "chain unavailable".to_owned(),
        ClientError::Unreachable(_) => format!("{role} unreachable"),
        ClientError::NoChain(_) | ClientError::NoChainEver(_) => "no chain".to_owned(),
        ClientError::Server { code, .. } => format!("{role} refused ({code:?})"),
        ClientError::Protocol(_) => format!("{role} answered wrongly"),
    }
}

/// The last error of a call that ran out of time, saying so.
fn gave_up(error: ClientError, attempts: u32, limit: Duration) -> ClientError {
    let plural = if attempts == 1 { "" } else { "s" };
    let context = |message: String| {
        format!("{message} (gave up after {attempts} attempt{plural} in {} ms)", limit.as_millis())
    };
    match error {
        ClientError::Unreachable(message) => ClientError::Unreachable(context(message)),
        ClientError::NoChain(message) => ClientError::NoChain(context(message)),
        ClientError::Server { code, message } => ClientError::Server { code, message: context(message) },
        ClientError::Protocol(message) => ClientError::Protocol(context(message)),
        ClientError::NoChainEver(message) => ClientError::NoChainEver(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{ChainView, Readiness, parse_member};

    #[test]
    fn writes_go_to_the_head_and_everything_else_to_the_tail() {
        assert_eq!(Role::for_opcode(Opcode::OP_PUT), Role::Head);
        for write in [Opcode::OP_DEL, Opcode::OP_CAS, Opcode::OP_INCR, Opcode::OP_MSET] {
            assert_eq!(Role::for_opcode(write), Role::Head, "{write:?}");
        }
        for read in [
            Opcode::OP_GET,
            Opcode::OP_SIZE,
            Opcode::OP_GETKEYS,
            Opcode::OP_GETTABLE,
            Opcode::OP_STATS,
            Opcode::OP_SCAN,
            Opcode::OP_MGET,
            Opcode::OP_EXISTS,
        ] {
            assert_eq!(Role::for_opcode(read), Role::Tail, "{read:?}");
        }
    }

    #[test]
    fn roles_pick_the_ends_of_the_ready_chain() {
        let member = |sequence: u64, state: &str| {
            parse_member(&format!("node{sequence:010}"), format!("h:{sequence} {state} t").as_bytes())
                .expect("well-formed member")
        };
        let view = ChainView::new(vec![member(4, "joining"), member(2, "ready"), member(3, "ready")], 1);
        assert_eq!(Role::Head.member(&view).map(|member| member.address.as_str()), Some("h:2"));
        assert_eq!(Role::Tail.member(&view).map(|member| member.address.as_str()), Some("h:3"));
        let only_joining = ChainView::new(vec![member(5, "joining")], 2);
        assert_eq!(only_joining.members[0].readiness, Readiness::Joining);
        assert!(Role::Head.member(&only_joining).is_none() && Role::Tail.member(&only_joining).is_none());
    }

    #[test]
    fn retry_reasons_name_the_role() {
        let refused = |code| ClientError::Server { code, message: String::new() };
        assert_eq!(retry_reason(Role::Head, &refused(ErrorCode::ERR_WRONG_ROLE)), "head changed");
        assert_eq!(retry_reason(Role::Tail, &ClientError::Unreachable("x".into())), "tail unreachable");
        assert_eq!(retry_reason(Role::Head, &refused(ErrorCode::ERR_UNAVAILABLE)), "chain unavailable");
        assert_eq!(retry_reason(Role::Tail, &ClientError::NoChain("x".into())), "no chain");
    }

    #[test]
    fn giving_up_keeps_the_kind_of_error_and_says_why() {
        let error = gave_up(
            ClientError::Server { code: ErrorCode::ERR_WRONG_ROLE, message: "not the head".into() },
            7,
            Duration::from_millis(1500),
        );
        assert_eq!(
            error,
            ClientError::Server {
                code: ErrorCode::ERR_WRONG_ROLE,
                message: "not the head (gave up after 7 attempts in 1500 ms)".into()
            }
        );
    }
}
