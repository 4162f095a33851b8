//! Many chains, one table: the key space is cut into hash slots
//! ([`slot`]) and a versioned map ([`map`]) assigns ranges of them to
//! chains; [`moves`] checks the changes `migrate` asks of it. Pure: the
//! map's ZooKeeper I/O is in [`crate::coord::shard_watch`], the servers'
//! check in `server::slot_check`, the clients' routing in
//! `client::router`.

pub mod map;
pub mod moves;
pub mod slot;
