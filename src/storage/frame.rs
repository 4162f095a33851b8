//! One record on disk, in the log and in snapshots alike:
//!
//! ```text
//! length: u32 LE   bytes of the body
//! crc:    u32 LE   CRC-32C of the body
//! body:   kind u8, sequence u64 LE, generation u64 LE, payload
//! ```
//!
//! The payload is a protobuf message (a `Write`, a `SnapshotChunk`) or
//! nothing. Reading tells a torn end (the last record cut short, or its
//! checksum wrong with nothing after it: a crash in the middle of an
//! append) from corruption (a bad record with more after it), because only
//! the first may be cut off quietly.

use super::crc::crc32c;

/// Bytes before the body.
const PREFIX: usize = 8;
/// Bytes of the body before the payload.
const BODY_HEADER: usize = 17;
/// The largest body accepted: a state transfer's chunk is far smaller (the
/// frame limit bounds it), so anything larger is a damaged length.
pub const BODY_MAX: usize = 1 << 30;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A write applied (payload: the `Write`).
    Write = 1,
    /// The history starts over: forget everything before (no payload).
    Reset = 2,
    /// Part of a table's contents (payload: a `SnapshotChunk`).
    Chunk = 3,
    /// A snapshot file's header (payload: see `snapshot`).
    Header = 4,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        [Kind::Write, Kind::Reset, Kind::Chunk, Kind::Header].into_iter().find(|kind| *kind as u8 == byte)
    }
}

/// One record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub sequence: u64,
    pub generation: u64,
    pub payload: Vec<u8>,
}

/// Appends one record to `out`.
pub fn encode(kind: Kind, sequence: u64, generation: u64, payload: &[u8], out: &mut Vec<u8>) {
    let length = BODY_HEADER + payload.len();
    assert!(length <= BODY_MAX, "a record of {length} bytes");
    let start = out.len();
    out.extend_from_slice(&(length as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind as u8);
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c(&out[start + PREFIX..]);
    out[start + 4..start + PREFIX].copy_from_slice(&crc.to_le_bytes());
}

/// How the records of a file end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every byte belongs to a whole, checked record.
    Clean,
    /// The last record, from byte `at` on, is incomplete or fails its
    /// checksum with nothing after it.
    Torn { at: usize },
    /// The record at byte `at` is damaged and more follows it.
    Corrupt { at: usize, why: String },
}

/// Every whole record of `bytes`, and how they end.
pub fn decode_all(bytes: &[u8]) -> (Vec<Record>, Ending) {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match decode_one(&bytes[at..]) {
            Ok((record, used)) => {
                records.push(record);
                at += used;
            }
            Err(Damage::Short) => return (records, Ending::Torn { at }),
            Err(Damage::Checksum { reaches_end: true }) => return (records, Ending::Torn { at }),
            Err(Damage::Checksum { reaches_end: false }) => {
                let why = "checksum mismatch".to_owned();
                return (records, Ending::Corrupt { at, why });
            }
            Err(Damage::Invalid(why)) => return (records, Ending::Corrupt { at, why }),
        }
    }
    (records, Ending::Clean)
}

enum Damage {
    /// The bytes end inside the record.
    Short,
    Checksum {
        reaches_end: bool,
    },
    Invalid(String),
}

fn decode_one(bytes: &[u8]) -> Result<(Record, usize), Damage> {
    if bytes.len() < PREFIX {
        return Err(Damage::Short);
    }
    let length = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if !(BODY_HEADER..=BODY_MAX).contains(&length) {
        // Zeros to the end: the file grew and its data never landed (a
        // crash during the append), which is a torn end, not damage.
        if bytes.iter().all(|&byte| byte == 0) {
            return Err(Damage::Short);
        }
        return Err(Damage::Invalid(format!("record length {length}")));
    }
    let Some(body) = bytes.get(PREFIX..PREFIX + length) else {
        return Err(Damage::Short);
    };
    if crc32c(body) != crc {
        return Err(Damage::Checksum { reaches_end: PREFIX + length == bytes.len() });
    }
    let kind = Kind::from_byte(body[0]).ok_or_else(|| Damage::Invalid(format!("record kind {}", body[0])))?;
    let record = Record {
        kind,
        sequence: u64::from_le_bytes(body[1..9].try_into().expect("8 bytes")),
        generation: u64::from_le_bytes(body[9..17].try_into().expect("8 bytes")),
        payload: body[BODY_HEADER..].to_vec(),
    };
    Ok((record, PREFIX + length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_records() -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(Kind::Write, 1, 7, b"first", &mut bytes);
        encode(Kind::Reset, 0, 7, b"", &mut bytes);
        encode(Kind::Write, 2, 7, b"third", &mut bytes);
        bytes
    }

    #[test]
    fn records_read_back_as_written() {
        let (records, ending) = decode_all(&three_records());
        assert_eq!(ending, Ending::Clean);
        assert_eq!(records.len(), 3);
        assert_eq!(
            records[2],
            Record { kind: Kind::Write, sequence: 2, generation: 7, payload: b"third".to_vec() }
        );
        assert_eq!(records[1].kind, Kind::Reset);
    }

    #[test]
    fn a_cut_or_garbled_last_record_is_torn() {
        let bytes = three_records();
        let last = bytes.len() - (PREFIX + BODY_HEADER + 5);
        for cut in [bytes.len() - 1, last + 3, last + PREFIX + 2] {
            let (records, ending) = decode_all(&bytes[..cut]);
            assert_eq!((records.len(), ending), (2, Ending::Torn { at: last }), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode_all(&flipped).1, Ending::Torn { at: last });
    }

    #[test]
    fn a_bad_record_with_more_after_it_is_corruption() {
        let mut bytes = three_records();
        bytes[PREFIX + BODY_HEADER] ^= 0x10; // the first payload's first byte
        let (records, ending) = decode_all(&bytes);
        assert!(records.is_empty());
        assert!(matches!(ending, Ending::Corrupt { at: 0, .. }), "{ending:?}");
    }
}
