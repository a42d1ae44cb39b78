//! A self-checking encoding of a run of records, for shipping WAL contents to object stores.
//!
//! Layout (little-endian): magic `FWALBAT\0` (8 bytes), version u16 (1), reserved u16 (0),
//! record count u32, then one frame per record exactly as in a segment (length, CRC-32, body;
//! see `docs/formats/finn-wal.md`), then a CRC-32 of every preceding byte. Records keep their LSN, ULID
//! and timestamp, so [`Wal::append_replicated`](crate::Wal::append_replicated) can restore them.
//!
//! ```
//! use finn_wal::{Kind, Lsn, Op, Record, batch};
//! let r = Record { lsn: Lsn::new(1), id: ulid::Ulid::nil(), timestamp_ms: 0, kind: Kind::Memory,
//!                  op: Op::Event, key: None, payload: b"x".to_vec() };
//! let bytes = batch::encode_records(std::slice::from_ref(&r));
//! assert_eq!(batch::decode_records(&bytes)?, vec![r]);
//! # Ok::<(), finn_wal::Error>(())
//! ```

use crate::error::Corruption;
use crate::record::{BodyRecords, FRAME_HEADER_LEN, FrameBuilder, check_crc};
use crate::{Error, Record};

const BATCH_MAGIC: [u8; 8] = *b"FWALBAT\0";
const BATCH_VERSION: u16 = 1;
const PREFIX_LEN: usize = 16;

/// Encodes records (in the given order) with a CRC per record and one over the whole.
pub fn encode_records(records: &[Record]) -> Vec<u8> {
    let size: usize = records
        .iter()
        .map(|r| crate::record::single_frame_len(r.encoded_len()))
        .sum();
    let mut out = Vec::with_capacity(PREFIX_LEN + size + 4);
    out.extend_from_slice(&BATCH_MAGIC);
    out.extend_from_slice(&BATCH_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        let builder = FrameBuilder::begin(&mut out, None, None);
        builder.push(&mut out, &r.as_ref());
        builder.finish(&mut out);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes [`encode_records`] output, checking every CRC; any damage is [`Error::CorruptBatch`].
pub fn decode_records(bytes: &[u8]) -> Result<Vec<Record>, Error> {
    let bad = |offset: usize, kind| Error::CorruptBatch {
        offset: offset as u64,
        kind,
    };
    if bytes.len() < PREFIX_LEN + 4 || bytes[..8] != BATCH_MAGIC {
        return Err(bad(0, Corruption::BadHeader));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version == 0 || version > BATCH_VERSION {
        return Err(bad(8, Corruption::UnsupportedVersion { version }));
    }
    let body_end = bytes.len() - 4;
    let stored = u32::from_le_bytes([
        bytes[body_end],
        bytes[body_end + 1],
        bytes[body_end + 2],
        bytes[body_end + 3],
    ]);
    let computed = crc32fast::hash(&bytes[..body_end]);
    if stored != computed {
        return Err(bad(body_end, Corruption::Checksum { stored, computed }));
    }
    let count = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    let mut out = Vec::with_capacity(count.min(1 << 20));
    let mut at = PREFIX_LEN;
    while at < body_end {
        if body_end - at < FRAME_HEADER_LEN {
            return Err(bad(at, Corruption::Malformed));
        }
        let mut header = [0u8; FRAME_HEADER_LEN];
        header.copy_from_slice(&bytes[at..at + FRAME_HEADER_LEN]);
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let start = at + FRAME_HEADER_LEN;
        if len > body_end - start {
            return Err(bad(
                at,
                Corruption::Truncated {
                    expected: len as u64,
                    available: (body_end - start) as u64,
                },
            ));
        }
        let body = &bytes[start..start + len];
        check_crc(&header, body).map_err(|kind| bad(at, kind))?;
        let records = BodyRecords::parse(body).map_err(|kind| bad(at, kind))?;
        out.extend(records.map(|r| r.to_record()));
        at = start + len;
    }
    if out.len() != count {
        return Err(bad(12, Corruption::Malformed));
    }
    Ok(out)
}
