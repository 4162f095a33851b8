//! What the node logs ([`Durable`]) as records, and back.

use protobuf::Message;

use super::frame::{self, Kind, Record};
use crate::chain::Durable;
use crate::proto::{SnapshotChunk, Write};

/// Appends `item` to `out` as one record; returns the write's sequence
/// number it brings the log to, if it moves it (a write, a last chunk).
pub fn encode(item: &Durable, out: &mut Vec<u8>) -> Option<u64> {
    match item {
        Durable::Write { generation, write } => {
            let payload = write.write_to_bytes().expect("a Write always encodes");
            frame::encode(Kind::Write, write.sequence, *generation, &payload, out);
            Some(write.sequence)
        }
        Durable::Chunk(chunk) => {
            let payload = chunk.write_to_bytes().expect("a SnapshotChunk always encodes");
            frame::encode(Kind::Chunk, chunk.sequence, 0, &payload, out);
            chunk.last.then_some(chunk.sequence)
        }
        Durable::Reset => {
            frame::encode(Kind::Reset, 0, 0, &[], out);
            None
        }
    }
}

/// The item a record holds.
pub fn decode(record: Record) -> Result<Durable, String> {
    match record.kind {
        Kind::Write => {
            let write = Write::parse_from_bytes(&record.payload)
                .map_err(|error| format!("write {} does not decode: {error}", record.sequence))?;
            if write.sequence != record.sequence {
                return Err(format!("record of write {} holds write {}", record.sequence, write.sequence));
            }
            Ok(Durable::Write { generation: record.generation, write })
        }
        Kind::Chunk => SnapshotChunk::parse_from_bytes(&record.payload)
            .map(Durable::Chunk)
            .map_err(|error| format!("a snapshot chunk does not decode: {error}")),
        Kind::Reset => Ok(Durable::Reset),
        Kind::Header => Err("a snapshot header inside the log".to_owned()),
    }
}
