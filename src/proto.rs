//! Protobuf messages generated at build time from `proto/chaintable.proto`
//! (see `build.rs`), re-exported flat so callers write `proto::Request`.

include!(concat!(env!("OUT_DIR"), "/protos/mod.rs"));

pub use self::chaintable::*;

impl Entry {
    /// A table entry, as `gettable` replies and snapshot chunks carry it.
    pub fn from_pair((key, value): (String, Vec<u8>)) -> Entry {
        let mut entry = Entry::new();
        entry.key = key;
        entry.value = value;
        entry
    }

    /// A stored entry, as snapshot chunks carry it.
    pub fn from_stored(stored: &crate::store::Entry) -> Entry {
        Entry::from_pair((stored.key().to_owned(), stored.value().to_vec()))
    }
}

impl Opcode {
    /// Whether the request changes the table: the head orders it (clients
    /// route it there; a server runs it as a client write).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Opcode::OP_PUT
                | Opcode::OP_DEL
                | Opcode::OP_CAS
                | Opcode::OP_INCR
                | Opcode::OP_MSET
                | Opcode::OP_EXPIRE
                | Opcode::OP_PERSIST
        )
    }
}

#[cfg(test)]
impl Write {
    /// An empty write with sequence number `sequence`, for tests of the
    /// queue and the Sent list, which look at nothing else.
    pub fn numbered(sequence: u64) -> Write {
        let mut write = Write::new();
        write.sequence = sequence;
        write
    }
}
