//! Every member of a chain with its own figures, for `members`: the chain
//! as ZooKeeper lists it, and each member's `stats`, asked of every member
//! at once so one that does not answer costs one timeout, not one each.

use super::connection::{ClientOptions, Endpoint};
use super::error::ClientError;
use crate::limits::MEMBER_STATS_TIMEOUT_MAX;
use crate::proto::{Opcode, Request, Statistics};
use crate::view::{ChainView, Member};

/// One member: as registered in ZooKeeper, and what it said about itself.
#[derive(Debug, Clone)]
pub struct MemberReport {
    pub member: Member,
    /// Its `stats`, or why it did not answer.
    pub statistics: Result<Statistics, ClientError>,
    /// How many writes it has applied fewer than the head; `None` when it or
    /// the head did not answer.
    pub lag: Option<u64>,
}

/// Asks every member of `view`, in replication order (ready members from
/// head to tail, then joining ones), for its `stats`; each gets at most
/// `options.timeout` or [`MEMBER_STATS_TIMEOUT_MAX`], whichever is shorter.
pub fn member_reports(view: &ChainView, options: &ClientOptions, client_id: u64) -> Vec<MemberReport> {
    let options = ClientOptions { timeout: options.timeout.min(MEMBER_STATS_TIMEOUT_MAX), ..options.clone() };
    let members: Vec<Member> = view.replication_order().into_iter().cloned().collect();
    let answers: Vec<Result<Statistics, ClientError>> = std::thread::scope(|scope| {
        let askers: Vec<_> = members
            .iter()
            .enumerate()
            .map(|(index, member)| {
                let options = &options;
                std::thread::Builder::new()
                    .name(format!("members-{index}"))
                    .spawn_scoped(scope, move || member_statistics(&member.address, options, client_id))
            })
            .collect();
        askers
            .into_iter()
            .map(|asker| match asker {
                Ok(thread) => thread.join().unwrap_or_else(|_| Err(thread_failed())),
                Err(error) => Err(ClientError::Unreachable(format!("cannot start a thread: {error}"))),
            })
            .collect()
    });
    let head_applied = members
        .iter()
        .zip(&answers)
        .find(|(member, _)| member.readiness.is_ready())
        .and_then(|(_, answer)| answer.as_ref().ok())
        .map(|statistics| statistics.last_applied);
    members
        .into_iter()
        .zip(answers)
        .map(|(member, statistics)| {
            let lag = lag_behind(head_applied, statistics.as_ref().ok());
            MemberReport { member, statistics, lag }
        })
        .collect()
}

fn thread_failed() -> ClientError {
    ClientError::Protocol("the thread asking for stats panicked".into())
}

/// Writes the head applied that a member has not: `None` unless both answered.
fn lag_behind(head_applied: Option<u64>, member: Option<&Statistics>) -> Option<u64> {
    Some(head_applied?.saturating_sub(member?.last_applied))
}

/// One member's `stats` (answered by a member in any role and state).
fn member_statistics(
    address: &str,
    options: &ClientOptions,
    client_id: u64,
) -> Result<Statistics, ClientError> {
    let mut request = Request::new();
    request.opcode = Opcode::OP_STATS.into();
    request.client_id = client_id;
    request.request_id = 1;
    request.local_read = true;
    Endpoint::new(address)
        .call(&request, options)?
        .statistics
        .into_option()
        .ok_or_else(|| ClientError::Protocol("stats reply without statistics".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_counted_from_the_head() {
        let mut member = Statistics::new();
        member.last_applied = 7;
        assert_eq!(lag_behind(Some(10), Some(&member)), Some(3));
        assert_eq!(lag_behind(Some(7), Some(&member)), Some(0));
        assert_eq!(lag_behind(Some(5), Some(&member)), Some(0), "a member ahead of an old reading");
        assert_eq!(lag_behind(None, Some(&member)), None, "the head did not answer");
        assert_eq!(lag_behind(Some(10), None), None, "the member did not answer");
    }
}
