//! Records and their framing.
//!
//! All integers are little-endian. A frame is
//!
//! | bytes | field |
//! |---|---|
//! | 4 | `body_len` (u32): length of the body; 0 together with a zero CRC marks the end of the log |
//! | 4 | `crc` (u32): CRC-32 (IEEE, crc32fast) over the 4 `body_len` bytes followed by the body |
//! | 1 | `tag`: 3 = one record, 4 = an atomic batch, 5 = a segment seal ([`crate::segment`]); 1 and 2 are the same without `synced_to` (only in [`crate::batch`] encodings) |
//! | 8 | `synced_to` (u64, tags 3 and 4): the segment offset known durable when the frame was written |
//! | 4 | `count` (u32, batch frames only): number of records, at least 1 |
//! | … | the record(s), back to back |
//!
//! and a record is
//!
//! | bytes | field |
//! |---|---|
//! | 8 | `lsn` (u64) |
//! | 16 | `id`: the ULID's 16 bytes, big-endian (its natural sort order) |
//! | 8 | `timestamp_ms` (u64), Unix milliseconds |
//! | 2 | `kind` (u16), see [`Kind::code`] |
//! | 1 | `op`: 0 event, 1 put, 2 delete |
//! | 1 | `flags`: bit 0 = has key; other bits zero |
//! | 2 | `key_len` (u16) |
//! | 4 | `payload_len` (u32) |
//! | `key_len` | key, UTF-8 |
//! | `payload_len` | payload |
//!
//! Records inside one frame have strictly increasing LSNs. A batch frame is written and
//! checked as one unit, which is what makes [`Wal::append_batch`](crate::Wal::append_batch) atomic.
//!
//! `synced_to` lets recovery tell a torn tail from corruption after a power loss that wrote
//! back unsynced pages out of order: damage at offset `x` followed only by frames whose
//! `synced_to <= x` lies entirely in bytes that were never made durable, while a later frame
//! with `synced_to > x` proves that `x` had been synced.

use ulid::Ulid;

use crate::error::Corruption;
use crate::{Error, Kind, Lsn, Op};

/// Bytes of the frame header (`body_len` + `crc`).
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Bytes of the fixed part of a record.
pub(crate) const RECORD_HEADER_LEN: usize = 42;
/// Smallest allowed segment size.
pub(crate) const MIN_SEGMENT_SIZE: u64 = 4096;

const TAG_SINGLE: u8 = 1;
const TAG_BATCH: u8 = 2;
const TAG_SINGLE_MARKED: u8 = 3;
const TAG_BATCH_MARKED: u8 = 4;
/// Tag of a seal frame (see [`crate::segment::Seal`]).
pub(crate) const TAG_SEAL: u8 = 5;
/// Bytes of the `synced_to` marker of tags 3 and 4.
const MARKER_LEN: usize = 8;
const FLAG_HAS_KEY: u8 = 1;

/// A record to append. Payload bytes are the caller's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecord {
    /// What the record is about.
    pub kind: Kind,
    /// Event, put or delete.
    pub op: Op,
    /// The key of a put or delete (required for those); optional for events, where it is
    /// informational only.
    pub key: Option<String>,
    /// The caller's bytes.
    pub payload: Vec<u8>,
}

impl NewRecord {
    /// A plain event.
    ///
    /// ```
    /// use finn_wal::{Kind, NewRecord};
    /// let r = NewRecord::event(Kind::Session, b"started".to_vec());
    /// assert!(r.key.is_none());
    /// ```
    pub fn event(kind: Kind, payload: impl Into<Vec<u8>>) -> Self {
        NewRecord {
            kind,
            op: Op::Event,
            key: None,
            payload: payload.into(),
        }
    }

    /// A keyed put: the newest put or delete of `(kind, key)` wins in compaction.
    pub fn put(kind: Kind, key: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        NewRecord {
            kind,
            op: Op::Put,
            key: Some(key.into()),
            payload: payload.into(),
        }
    }

    /// A keyed delete (a tombstone for `(kind, key)`).
    pub fn delete(kind: Kind, key: impl Into<String>) -> Self {
        NewRecord {
            kind,
            op: Op::Delete,
            key: Some(key.into()),
            payload: Vec::new(),
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.key.as_ref().map_or(0, String::len) + self.payload.len()
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        validate_parts(self.kind, self.op, self.key.as_deref(), self.payload.len())
    }
}

/// A record as stored and read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its position in the log.
    pub lsn: Lsn,
    /// Its ULID; ULIDs strictly increase with LSN.
    pub id: Ulid,
    /// Append time in Unix milliseconds, never lower than the previous record's (it is the
    /// ULID's time part, so a clock stepping back does not make it go backwards).
    pub timestamp_ms: u64,
    /// What the record is about.
    pub kind: Kind,
    /// Event, put or delete.
    pub op: Op,
    /// Key of a put or delete.
    pub key: Option<String>,
    /// The caller's bytes.
    pub payload: Vec<u8>,
}

impl Record {
    pub(crate) fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.key.as_ref().map_or(0, String::len) + self.payload.len()
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        validate_parts(self.kind, self.op, self.key.as_deref(), self.payload.len())
    }

    pub(crate) fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            lsn: self.lsn.get(),
            id: self.id,
            timestamp_ms: self.timestamp_ms,
            kind: self.kind,
            op: self.op,
            key: self.key.as_deref(),
            payload: &self.payload,
        }
    }
}

fn validate_parts(kind: Kind, op: Op, key: Option<&str>, payload_len: usize) -> Result<(), Error> {
    if kind.code().is_none() {
        return Err(Error::InvalidRecord {
            reason: "Kind::User(n) needs n < 0x8000",
        });
    }
    if op != Op::Event && key.is_none() {
        return Err(Error::InvalidRecord {
            reason: "a put or delete needs a key",
        });
    }
    if let Some(key) = key
        && key.len() > usize::from(u16::MAX)
    {
        return Err(Error::TooLarge {
            what: "record key",
            len: key.len() as u64,
            max: u64::from(u16::MAX),
        });
    }
    if payload_len > u32::MAX as usize {
        return Err(Error::TooLarge {
            what: "record payload",
            len: payload_len as u64,
            max: u64::from(u32::MAX),
        });
    }
    Ok(())
}

/// A decoded record borrowing its key and payload from the frame buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordRef<'a> {
    pub(crate) lsn: u64,
    pub(crate) id: Ulid,
    pub(crate) timestamp_ms: u64,
    pub(crate) kind: Kind,
    pub(crate) op: Op,
    pub(crate) key: Option<&'a str>,
    pub(crate) payload: &'a [u8],
}

impl RecordRef<'_> {
    pub(crate) fn to_record(self) -> Record {
        Record {
            lsn: Lsn::new(self.lsn),
            id: self.id,
            timestamp_ms: self.timestamp_ms,
            kind: self.kind,
            op: self.op,
            key: self.key.map(str::to_owned),
            payload: self.payload.to_vec(),
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.key.map_or(0, str::len) + self.payload.len()
    }
}

/// Size of an unmarked frame (batch encoding) holding one record of `record_len` bytes.
pub(crate) fn single_frame_len(record_len: usize) -> usize {
    FRAME_HEADER_LEN + 1 + record_len
}

/// Size of a segment frame (with `synced_to`) holding one record of `record_len` bytes.
pub(crate) fn marked_single_frame_len(record_len: usize) -> usize {
    FRAME_HEADER_LEN + 1 + MARKER_LEN + record_len
}

/// Size of a segment batch frame (with `synced_to`) whose records total `records_len` bytes.
pub(crate) fn marked_batch_frame_len(records_len: usize) -> usize {
    FRAME_HEADER_LEN + 1 + MARKER_LEN + 4 + records_len
}

/// Builds one frame at the end of a buffer without intermediate allocations.
pub(crate) struct FrameBuilder {
    start: usize,
}

impl FrameBuilder {
    /// Starts a frame; `batch_count` is `Some(n)` for a batch frame of `n` records. Segment
    /// frames carry `synced_to` (`Some`); the batch encoding for shipping does not (`None`).
    pub(crate) fn begin(
        buf: &mut Vec<u8>,
        batch_count: Option<u32>,
        synced_to: Option<u64>,
    ) -> FrameBuilder {
        let start = buf.len();
        buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
        let tag = match (batch_count, synced_to) {
            (None, None) => TAG_SINGLE,
            (Some(_), None) => TAG_BATCH,
            (None, Some(_)) => TAG_SINGLE_MARKED,
            (Some(_), Some(_)) => TAG_BATCH_MARKED,
        };
        buf.push(tag);
        if let Some(marker) = synced_to {
            buf.extend_from_slice(&marker.to_le_bytes());
        }
        if let Some(n) = batch_count {
            buf.extend_from_slice(&n.to_le_bytes());
        }
        FrameBuilder { start }
    }

    /// Appends one record (already validated).
    pub(crate) fn push(&self, buf: &mut Vec<u8>, r: &RecordRef<'_>) {
        let key = r.key.unwrap_or("");
        let kind = r.kind.code().unwrap_or(0);
        buf.extend_from_slice(&r.lsn.to_le_bytes());
        buf.extend_from_slice(&r.id.to_bytes());
        buf.extend_from_slice(&r.timestamp_ms.to_le_bytes());
        buf.extend_from_slice(&kind.to_le_bytes());
        buf.push(r.op.code());
        buf.push(if r.key.is_some() { FLAG_HAS_KEY } else { 0 });
        buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
        buf.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(r.payload);
    }

    /// Fills in the length and CRC.
    pub(crate) fn finish(self, buf: &mut [u8]) {
        let body_len = (buf.len() - self.start - FRAME_HEADER_LEN) as u32;
        let len_bytes = body_len.to_le_bytes();
        buf[self.start..self.start + 4].copy_from_slice(&len_bytes);
        let crc = frame_crc(&len_bytes, &buf[self.start + FRAME_HEADER_LEN..]);
        buf[self.start + 4..self.start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

pub(crate) fn frame_crc(len_bytes: &[u8; 4], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len_bytes);
    hasher.update(body);
    hasher.finalize()
}

/// Checks a frame's CRC. `header` is the 8 frame-header bytes.
pub(crate) fn check_crc(header: &[u8; 8], body: &[u8]) -> Result<(), Corruption> {
    let len_bytes = [header[0], header[1], header[2], header[3]];
    let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let computed = frame_crc(&len_bytes, body);
    if stored == computed {
        Ok(())
    } else {
        Err(Corruption::Checksum { stored, computed })
    }
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parses one record at the start of `b`; returns it and its encoded length.
fn parse_record(b: &[u8]) -> Result<(RecordRef<'_>, usize), Corruption> {
    if b.len() < RECORD_HEADER_LEN {
        return Err(Corruption::Malformed);
    }
    let lsn = read_u64(b, 0);
    let mut id = [0u8; 16];
    id.copy_from_slice(&b[8..24]);
    let timestamp_ms = read_u64(b, 24);
    let code = read_u16(b, 32);
    let kind = Kind::from_code(code).ok_or(Corruption::UnknownKind { code })?;
    let op = Op::from_code(b[34]).ok_or(Corruption::Malformed)?;
    let flags = b[35];
    if flags & !FLAG_HAS_KEY != 0 {
        return Err(Corruption::Malformed);
    }
    let key_len = usize::from(read_u16(b, 36));
    let payload_len = read_u32(b, 38) as usize;
    let total = RECORD_HEADER_LEN + key_len + payload_len;
    if b.len() < total {
        return Err(Corruption::Malformed);
    }
    let key = if flags & FLAG_HAS_KEY != 0 {
        let raw = &b[RECORD_HEADER_LEN..RECORD_HEADER_LEN + key_len];
        Some(std::str::from_utf8(raw).map_err(|_| Corruption::KeyNotUtf8)?)
    } else if key_len != 0 {
        return Err(Corruption::Malformed);
    } else {
        None
    };
    if op != Op::Event && key.is_none() {
        return Err(Corruption::Malformed);
    }
    let payload = &b[RECORD_HEADER_LEN + key_len..total];
    Ok((
        RecordRef {
            lsn,
            id: Ulid::from_bytes(id),
            timestamp_ms,
            kind,
            op,
            key,
            payload,
        },
        total,
    ))
}

/// The records of a frame body, validated as a whole before the first one is handed out, so
/// a damaged batch yields nothing at all. Each record is decoded once, by the validation (a
/// key's UTF-8 check is a tenth of a replay), and handed out from what it decoded.
pub(crate) struct BodyRecords<'a> {
    records: Decoded<'a>,
    /// Offset in the body of the first record.
    pub(crate) start: usize,
    /// LSN of the first and of the last record (found while validating).
    pub(crate) first_lsn: u64,
    pub(crate) last_lsn: u64,
    /// Number of records in the frame.
    pub(crate) count: u32,
    /// The frame's `synced_to` marker; `None` for unmarked frames (batch encoding).
    pub(crate) synced_to: Option<u64>,
}

/// A single record's frame (the common case) needs no allocation.
enum Decoded<'a> {
    One(Option<RecordRef<'a>>),
    Many(std::vec::IntoIter<RecordRef<'a>>),
}

impl<'a> BodyRecords<'a> {
    /// Validates `body` completely (tag, count, every record, strictly increasing LSNs, no
    /// trailing bytes) and returns an iterator over its records.
    pub(crate) fn parse(body: &'a [u8]) -> Result<BodyRecords<'a>, Corruption> {
        let (&tag, rest) = body.split_first().ok_or(Corruption::Malformed)?;
        let (synced_to, rest) = match tag {
            TAG_SINGLE_MARKED | TAG_BATCH_MARKED => {
                if rest.len() < MARKER_LEN {
                    return Err(Corruption::Malformed);
                }
                (Some(read_u64(rest, 0)), &rest[MARKER_LEN..])
            }
            _ => (None, rest),
        };
        let (count, rest) = match tag {
            TAG_SINGLE | TAG_SINGLE_MARKED => (1u32, rest),
            TAG_BATCH | TAG_BATCH_MARKED => {
                if rest.len() < 4 {
                    return Err(Corruption::Malformed);
                }
                let n = read_u32(rest, 0);
                if n == 0 {
                    return Err(Corruption::Malformed);
                }
                (n, &rest[4..])
            }
            _ => return Err(Corruption::Malformed),
        };
        let (records, first_lsn, last_lsn) = if count == 1 {
            let (r, len) = parse_record(rest)?;
            if len != rest.len() {
                return Err(Corruption::Malformed);
            }
            let lsn = r.lsn;
            (Decoded::One(Some(r)), lsn, lsn)
        } else {
            // A count read from damaged bytes must not size the allocation: every record
            // takes at least a header.
            let mut records =
                Vec::with_capacity((count as usize).min(rest.len() / RECORD_HEADER_LEN));
            let mut cursor = rest;
            for _ in 0..count {
                let (r, len) = parse_record(cursor)?;
                if let Some(p) = records.last().map(|p: &RecordRef<'_>| p.lsn)
                    && r.lsn <= p
                {
                    return Err(Corruption::LsnOrder {
                        previous: p,
                        found: r.lsn,
                    });
                }
                records.push(r);
                cursor = &cursor[len..];
            }
            if !cursor.is_empty() {
                return Err(Corruption::Malformed);
            }
            let first = records.first().map_or(0, |r| r.lsn);
            let last = records.last().map_or(first, |r| r.lsn);
            (Decoded::Many(records.into_iter()), first, last)
        };
        Ok(BodyRecords {
            records,
            start: body.len() - rest.len(),
            first_lsn,
            last_lsn,
            count,
            synced_to,
        })
    }
}

/// Decodes the record at the start of `b` in a body that [`BodyRecords::parse`] has validated;
/// returns it and its encoded length.
pub(crate) fn next_validated_record(b: &[u8]) -> Option<(RecordRef<'_>, usize)> {
    parse_record(b).ok()
}

impl<'a> Iterator for BodyRecords<'a> {
    type Item = RecordRef<'a>;

    fn next(&mut self) -> Option<RecordRef<'a>> {
        match &mut self.records {
            Decoded::One(r) => r.take(),
            Decoded::Many(rs) => rs.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(lsn: u64, key: Option<&'static str>, payload: &'static [u8]) -> RecordRef<'static> {
        RecordRef {
            lsn,
            id: Ulid::from_parts(1234, u128::from(lsn)),
            timestamp_ms: 1234,
            kind: Kind::Bead,
            op: if key.is_some() { Op::Put } else { Op::Event },
            key,
            payload,
        }
    }

    fn frame(records: &[RecordRef<'_>]) -> Vec<u8> {
        let mut buf = Vec::new();
        let count = if records.len() == 1 {
            None
        } else {
            Some(records.len() as u32)
        };
        let b = FrameBuilder::begin(&mut buf, count, None);
        for r in records {
            b.push(&mut buf, r);
        }
        b.finish(&mut buf);
        buf
    }

    fn decode(buf: &[u8]) -> Result<Vec<Record>, Corruption> {
        let header: [u8; 8] = buf[..8].try_into().unwrap();
        let len = read_u32(buf, 0) as usize;
        if buf.len() != 8 + len {
            return Err(Corruption::Truncated {
                expected: len as u64,
                available: (buf.len() - 8) as u64,
            });
        }
        check_crc(&header, &buf[8..])?;
        Ok(BodyRecords::parse(&buf[8..])?
            .map(RecordRef::to_record)
            .collect())
    }

    #[test]
    fn roundtrip_single_and_batch() {
        let one = frame(&[sample(7, Some("k"), b"v")]);
        assert_eq!(one.len(), single_frame_len(RECORD_HEADER_LEN + 2));
        let got = decode(&one).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].lsn, Lsn::new(7));
        assert_eq!(got[0].key.as_deref(), Some("k"));
        assert_eq!(got[0].payload, b"v");

        let many = frame(&[sample(1, None, b"a"), sample(2, Some(""), b"")]);
        let got = decode(&many).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].key.as_deref(), Some(""));
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let buf = frame(&[sample(1, Some("key"), b"payload"), sample(2, None, b"x")]);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[byte] ^= 1 << bit;
                assert!(decode(&damaged).is_err(), "flip at {byte}:{bit} undetected");
            }
        }
    }

    #[test]
    fn lsns_inside_a_batch_must_increase() {
        let buf = frame(&[sample(5, None, b"a"), sample(5, None, b"b")]);
        assert!(matches!(decode(&buf), Err(Corruption::LsnOrder { .. })));
    }
}
