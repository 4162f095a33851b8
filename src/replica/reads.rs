//! The read path's permission: whether this server may answer a read,
//! decided without the node's lock from what the node last published (its
//! role, the lease on its ZooKeeper session, and the read lease its
//! predecessor's heartbeats renew, see `chain::lease`).

use std::sync::atomic::Ordering;

use super::{ReadKeys, Replica};
use crate::chain::Refusal;
use crate::proto::ErrorCode;
use crate::store::table::Table;

impl Replica {
    /// Runs `read` if this server may answer reads, re-checking afterwards
    /// that the permission held throughout (a hand-over or fencing in
    /// between voids the answer).
    pub fn read_guard<T>(&self, read: impl FnOnce(&Table) -> T) -> Result<T, Refusal> {
        self.read_guard_of(ReadKeys::All, read)
    }

    /// [`Replica::read_guard`] of a read that shows only `keys`.
    pub fn read_guard_of<T>(&self, keys: ReadKeys<'_>, read: impl FnOnce(&Table) -> T) -> Result<T, Refusal> {
        let epoch = self.read_epoch.load(Ordering::SeqCst);
        self.check_may_read()?;
        let answer = read(&self.table);
        self.await_durable_read(keys)?;
        if self.read_epoch.load(Ordering::SeqCst) != epoch {
            return Err(Refusal::new(
                ErrorCode::ERR_WRONG_ROLE,
                "the chain changed during the read; look again",
            ));
        }
        self.check_may_read()?;
        Ok(answer)
    }

    /// The lock-free check of what the node last published; only a refusal
    /// takes the node's lock, to say why in the node's words.
    fn check_may_read(&self) -> Result<(), Refusal> {
        let leased = self.lease_valid() && self.now_ms() < self.read_lease_until_ms.load(Ordering::SeqCst);
        if self.standalone || (self.readable.load(Ordering::SeqCst) && leased) {
            return Ok(());
        }
        let now_ms = self.now_ms();
        match self.node.lock().check_may_read(now_ms) {
            // Published state said no a moment ago; the node may have moved
            // since, but the read epoch was taken before: refuse to be safe.
            Ok(()) => {
                Err(Refusal::new(ErrorCode::ERR_WRONG_ROLE, "the chain changed during the read; look again"))
            }
            Err(refusal) => Err(refusal),
        }
    }
}
