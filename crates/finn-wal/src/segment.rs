//! Segment files: naming, the 64-byte header, creation with preallocation, and the in-memory
//! handle readers and the writer share.
//!
//! A segment is named `{first_lsn:020}.wal`, so the order of names is the order of LSNs. Its
//! header (all integers little-endian):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic `FINNWAL\0` |
//! | 8 | 2 | format version (2; version 1 segments are refused with `UnsupportedVersion`) |
//! | 10 | 2 | flags: bit 0 = written by compaction (sealed, never appended to) |
//! | 12 | 4 | reserved, zero |
//! | 16 | 8 | `first_lsn`: every record in the segment has an LSN at or above it |
//! | 24 | 8 | `covers_through`: compacted segments only, the last LSN of the range they replaced |
//! | 32 | 8 | creation time, Unix milliseconds |
//! | 40 | 16 | `prev_ulid`: the largest ULID handed out before this segment was created |
//! | 56 | 4 | reserved, zero |
//! | 60 | 4 | CRC-32 of bytes 0..60 |
//!
//! Frames ([`crate::record`]) follow from byte 64. In a preallocated segment the unused rest is
//! zeros, and a zero frame header marks the end.
//!
//! # Seal
//! When rotation retires a segment (and when compaction writes one) it is **sealed**: after
//! its data is fdatasynced, a seal frame (tag 5) goes at the end of the data and is
//! fdatasynced, then the file is cut to just after a 16-byte trailer (`seal_offset` u64 and
//! `FINNSEAL`) and fsynced. The seal body holds what a scan of the segment would find:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | tag 5 |
//! | 8 | `data_end`: offset of the seal frame, the end of the records |
//! | 8 | `first_record`: LSN of the first record, 0 if none |
//! | 8 | `last_record`: LSN of the last record, 0 if none |
//! | 8 | `records`: number of records |
//! | 8 | `keyed_records`: number of puts and deletes |
//! | 16 | `max_ulid`: the largest ULID handed out when the segment was sealed |
//! | 4 | `index_len` |
//! | 16 × `index_len` | sparse index: `(lsn of the frame's first record, frame offset)`, ascending |
//!
//! Open trusts a segment whose trailer, seal CRC and bounds check out (reading 64 bytes of
//! header and the seal) instead of scanning its records. A missing or torn seal (a crash while
//! sealing) makes the segment unsealed: it is scanned, and a writable open seals it again.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ulid::Ulid;

use crate::Error;
use crate::error::Corruption;
use crate::fs::{Io, IoFile, OpenMode};
use crate::record::{FRAME_HEADER_LEN, TAG_SEAL, check_crc, frame_crc};

/// Magic bytes at the start of every segment.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"FINNWAL\0";
/// Format version written and read by this crate (version 1 had no seals or `synced_to`).
pub(crate) const FORMAT_VERSION: u16 = 2;
/// Bytes of the segment header.
pub(crate) const HEADER_LEN: u64 = 64;
/// Header flag: the segment was written by compaction.
pub(crate) const FLAG_COMPACTED: u16 = 1;
/// Suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".wal";
/// Suffix of files that are being created and are not yet part of the log.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";
/// Spacing of the sparse in-memory index that `read` and `iter_from` seek with.
const INDEX_SPACING: u64 = 16 * 1024;
/// Magic at the very end of a sealed segment.
pub(crate) const SEAL_MAGIC: [u8; 8] = *b"FINNSEAL";
/// Bytes of the trailer after the seal frame: `seal_offset` u64 + magic.
pub(crate) const SEAL_TRAILER_LEN: u64 = 16;
/// Bytes of the fixed part of a seal body.
const SEAL_FIXED_LEN: usize = 1 + 8 * 5 + 16 + 4;

/// The summary a sealed segment carries (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seal {
    pub(crate) data_end: u64,
    pub(crate) first_record: u64,
    pub(crate) last_record: u64,
    pub(crate) records: u64,
    pub(crate) keyed_records: u64,
    pub(crate) max_ulid: Ulid,
    pub(crate) index: Vec<(u64, u64)>,
}

impl Seal {
    /// The whole seal frame: frame header, body.
    pub(crate) fn encode_frame(&self) -> Vec<u8> {
        let body_len = SEAL_FIXED_LEN + 16 * self.index.len();
        let mut b = Vec::with_capacity(FRAME_HEADER_LEN + body_len);
        b.extend_from_slice(&(body_len as u32).to_le_bytes());
        b.extend_from_slice(&[0u8; 4]);
        b.push(TAG_SEAL);
        for v in [
            self.data_end,
            self.first_record,
            self.last_record,
            self.records,
            self.keyed_records,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.max_ulid.to_bytes());
        b.extend_from_slice(&(self.index.len() as u32).to_le_bytes());
        for &(lsn, at) in &self.index {
            b.extend_from_slice(&lsn.to_le_bytes());
            b.extend_from_slice(&at.to_le_bytes());
        }
        let len_bytes = (body_len as u32).to_le_bytes();
        let crc = frame_crc(&len_bytes, &b[FRAME_HEADER_LEN..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a seal body (CRC already checked) found at `offset`; `None` if it is not a
    /// consistent seal for that place.
    pub(crate) fn decode_body(body: &[u8], offset: u64) -> Option<Seal> {
        if body.len() < SEAL_FIXED_LEN || body[0] != TAG_SEAL {
            return None;
        }
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&body[at..at + 8]);
            u64::from_le_bytes(a)
        };
        let mut ulid = [0u8; 16];
        ulid.copy_from_slice(&body[41..57]);
        let index_len = u32::from_le_bytes([body[57], body[58], body[59], body[60]]) as usize;
        if body.len() != SEAL_FIXED_LEN + 16 * index_len {
            return None;
        }
        let seal = Seal {
            data_end: u64_at(1),
            first_record: u64_at(9),
            last_record: u64_at(17),
            records: u64_at(25),
            keyed_records: u64_at(33),
            max_ulid: Ulid::from_bytes(ulid),
            index: (0..index_len)
                .map(|i| {
                    let at = SEAL_FIXED_LEN + 16 * i;
                    (u64_at(at), u64_at(at + 8))
                })
                .collect(),
        };
        let bounds_ok = seal.data_end == offset
            && seal.data_end >= HEADER_LEN
            && (seal.records == 0) == (seal.first_record == 0)
            && seal.first_record <= seal.last_record
            && seal.keyed_records <= seal.records
            && seal
                .index
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && seal.index.iter().all(|&(lsn, at)| {
                at >= HEADER_LEN
                    && at < seal.data_end
                    && lsn >= seal.first_record
                    && lsn <= seal.last_record
            });
        bounds_ok.then_some(seal)
    }
}

/// Reads the seal of a segment file of length `file_len`: `None` unless the trailer, the seal
/// frame's CRC and its bounds all check out.
pub(crate) fn read_seal(file: &dyn IoFile, file_len: u64) -> std::io::Result<Option<Seal>> {
    if file_len < HEADER_LEN + FRAME_HEADER_LEN as u64 + SEAL_TRAILER_LEN {
        return Ok(None);
    }
    let mut trailer = [0u8; SEAL_TRAILER_LEN as usize];
    file.read_exact_at(&mut trailer, file_len - SEAL_TRAILER_LEN)?;
    if trailer[8..] != SEAL_MAGIC {
        return Ok(None);
    }
    let mut at = [0u8; 8];
    at.copy_from_slice(&trailer[..8]);
    let offset = u64::from_le_bytes(at);
    let Some(frame_len) = (file_len - SEAL_TRAILER_LEN).checked_sub(offset) else {
        return Ok(None);
    };
    if offset < HEADER_LEN || frame_len < (FRAME_HEADER_LEN + SEAL_FIXED_LEN) as u64 {
        return Ok(None);
    }
    let mut frame = vec![0u8; frame_len as usize];
    file.read_exact_at(&mut frame, offset)?;
    let mut header = [0u8; FRAME_HEADER_LEN];
    header.copy_from_slice(&frame[..FRAME_HEADER_LEN]);
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
    if body_len + FRAME_HEADER_LEN as u64 != frame_len {
        return Ok(None);
    }
    let body = &frame[FRAME_HEADER_LEN..];
    if check_crc(&header, body).is_err() {
        return Ok(None);
    }
    Ok(Seal::decode_body(body, offset))
}

/// The decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) flags: u16,
    pub(crate) first_lsn: u64,
    pub(crate) covers_through: u64,
    pub(crate) created_ms: u64,
    pub(crate) prev_ulid: Ulid,
}

impl SegmentHeader {
    pub(crate) fn is_compacted(&self) -> bool {
        self.flags & FLAG_COMPACTED != 0
    }

    pub(crate) fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[24..32].copy_from_slice(&self.covers_through.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_ms.to_le_bytes());
        b[40..56].copy_from_slice(&self.prev_ulid.to_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<SegmentHeader, Corruption> {
        if b.len() < HEADER_LEN as usize || b[0..8] != SEGMENT_MAGIC {
            return Err(Corruption::BadHeader);
        }
        let stored = u32::from_le_bytes([b[60], b[61], b[62], b[63]]);
        if crc32fast::hash(&b[0..60]) != stored {
            return Err(Corruption::BadHeader);
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != FORMAT_VERSION {
            return Err(Corruption::UnsupportedVersion { version });
        }
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(a)
        };
        let mut ulid = [0u8; 16];
        ulid.copy_from_slice(&b[40..56]);
        Ok(SegmentHeader {
            flags: u16::from_le_bytes([b[10], b[11]]),
            first_lsn: u64_at(16),
            covers_through: u64_at(24),
            created_ms: u64_at(32),
            prev_ulid: Ulid::from_bytes(ulid),
        })
    }
}

/// File name of the segment whose first LSN is `first_lsn`.
pub(crate) fn segment_file_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name back into its first LSN.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A segment as the running WAL knows it. Shared (`Arc`) between the writer, readers and
/// maintenance; an unlinked segment stays readable through its open descriptor until the last
/// reader drops it.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    pub(crate) file: Box<dyn IoFile>,
    pub(crate) header: SegmentHeader,
    /// Offset just past the last valid frame.
    end: AtomicU64,
    /// LSN of the first record, 0 if none.
    first_record: AtomicU64,
    /// LSN of the last record, 0 if none.
    last_record: AtomicU64,
    /// Records and keyed records (puts and deletes) held.
    records: AtomicU64,
    keyed_records: AtomicU64,
    /// Whether the file ends in a valid seal (see the module doc).
    sealed: AtomicBool,
    /// Sparse `(lsn of first record in frame, frame offset)` points, ascending.
    index: Mutex<Vec<(u64, u64)>>,
    /// Damaged byte ranges skipped by `SalvageAll` recovery; readers jump over them.
    pub(crate) holes: Vec<(u64, u64)>,
}

impl Segment {
    pub(crate) fn new(path: PathBuf, file: Box<dyn IoFile>, header: SegmentHeader) -> Segment {
        Segment {
            path,
            file,
            header,
            end: AtomicU64::new(HEADER_LEN),
            first_record: AtomicU64::new(0),
            last_record: AtomicU64::new(0),
            records: AtomicU64::new(0),
            keyed_records: AtomicU64::new(0),
            sealed: AtomicBool::new(false),
            index: Mutex::new(Vec::new()),
            holes: Vec::new(),
        }
    }

    pub(crate) fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    pub(crate) fn first_record(&self) -> Option<u64> {
        match self.first_record.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }

    pub(crate) fn last_record(&self) -> Option<u64> {
        match self.last_record.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first_record().is_none()
    }

    /// Bytes of records held (header excluded).
    pub(crate) fn data_bytes(&self) -> u64 {
        self.end().saturating_sub(HEADER_LEN)
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// Notes that the file ends in a seal (found by a scan).
    pub(crate) fn mark_sealed(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    pub(crate) fn keyed_records(&self) -> u64 {
        self.keyed_records.load(Ordering::Acquire)
    }

    pub(crate) fn records(&self) -> u64 {
        self.records.load(Ordering::Acquire)
    }

    /// Takes the state a seal describes instead of scanning the frames.
    pub(crate) fn load_seal(&self, seal: &Seal) {
        self.first_record
            .store(seal.first_record, Ordering::Release);
        self.last_record.store(seal.last_record, Ordering::Release);
        self.records.store(seal.records, Ordering::Release);
        self.keyed_records
            .store(seal.keyed_records, Ordering::Release);
        *self.index.lock().unwrap_or_else(|e| e.into_inner()) = seal.index.clone();
        self.end.store(seal.data_end, Ordering::Release);
        self.sealed.store(true, Ordering::Release);
    }

    /// The seal describing the segment as it stands.
    pub(crate) fn seal(&self, max_ulid: Ulid) -> Seal {
        Seal {
            data_end: self.end(),
            first_record: self.first_record.load(Ordering::Acquire),
            last_record: self.last_record.load(Ordering::Acquire),
            records: self.records(),
            keyed_records: self.keyed_records(),
            max_ulid,
            index: self.index.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Seals the segment durably (its data must already be durable): seal frame at the end of
    /// the data, fdatasync, cut the file after the trailer, fsync.
    pub(crate) fn write_seal(&self, max_ulid: Ulid) -> std::io::Result<()> {
        fail::fail_point!("wal::segment::seal", |_| Err(std::io::Error::other(
            "fail point wal::segment::seal"
        )));
        let seal = self.seal(max_ulid);
        let frame = seal.encode_frame();
        self.file.write_all_at(&frame, seal.data_end)?;
        self.file.sync_data()?;
        let trailer_at = seal.data_end + frame.len() as u64;
        let mut trailer = [0u8; SEAL_TRAILER_LEN as usize];
        trailer[..8].copy_from_slice(&seal.data_end.to_le_bytes());
        trailer[8..].copy_from_slice(&SEAL_MAGIC);
        self.file.set_len(trailer_at + SEAL_TRAILER_LEN)?;
        self.file.write_all_at(&trailer, trailer_at)?;
        self.file.sync_all()?;
        self.sealed.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes the seal (zeroes everything after the data, durably) so that the segment can be
    /// appended to again (`truncate_after` into a sealed segment).
    pub(crate) fn unseal(&self) -> std::io::Result<()> {
        let len = self.file.size()?;
        if len > self.end() {
            zero_fill(&*self.file, self.end(), len)?;
            self.file.sync_data()?;
        }
        self.sealed.store(false, Ordering::Release);
        Ok(())
    }

    /// Records that a frame `[offset, new_end)` holding `count` records with LSNs
    /// `first..=last`, `keyed` of them puts or deletes, is now part of the segment. Called in
    /// offset order.
    pub(crate) fn note_frame(
        &self,
        offset: u64,
        new_end: u64,
        first: u64,
        last: u64,
        count: u64,
        keyed: u64,
    ) {
        if self.first_record.load(Ordering::Relaxed) == 0 {
            self.first_record.store(first, Ordering::Release);
        }
        self.records.fetch_add(count, Ordering::AcqRel);
        self.keyed_records.fetch_add(keyed, Ordering::AcqRel);
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let due = index
            .last()
            .is_none_or(|&(_, at)| offset >= at + INDEX_SPACING);
        if due {
            index.push((first, offset));
        }
        drop(index);
        self.last_record.store(last, Ordering::Release);
        self.end.store(new_end, Ordering::Release);
    }

    /// Forgets every frame at or after `offset` (used by `truncate_after`); `counts` are the
    /// records and keyed records that remain.
    pub(crate) fn cut(&self, offset: u64, last: Option<u64>, counts: (u64, u64)) {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        index.retain(|&(_, at)| at < offset);
        drop(index);
        self.last_record.store(last.unwrap_or(0), Ordering::Release);
        if last.is_none() {
            self.first_record.store(0, Ordering::Release);
        }
        self.end.store(offset, Ordering::Release);
        self.records.store(counts.0, Ordering::Release);
        self.keyed_records.store(counts.1, Ordering::Release);
    }

    /// The offset of a frame at or before the one holding `lsn`, to start a scan from.
    pub(crate) fn seek_hint(&self, lsn: u64) -> u64 {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let pos = index.partition_point(|&(first, _)| first <= lsn);
        if pos == 0 {
            HEADER_LEN
        } else {
            index[pos - 1].1
        }
    }
}

/// Reads and validates the header of an open segment file.
pub(crate) fn read_header(file: &dyn IoFile, path: &Path) -> Result<SegmentHeader, Error> {
    let mut b = [0u8; HEADER_LEN as usize];
    match file.read_exact_at(&mut b, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(Error::corrupt(path, 0, Corruption::BadHeader));
        }
        Err(e) => return Err(Error::io(path, e)),
    }
    SegmentHeader::decode(&b).map_err(|kind| Error::corrupt(path, 0, kind))
}

/// Creates segment `{first_lsn}.wal` durably: a temp file gets the header (and zeros up to
/// `size` if `preallocate`), is synced, renamed into place, and the directory is synced.
/// Returns the file opened for reading and writing.
pub(crate) fn create_segment(
    io: &dyn Io,
    dir: &Path,
    header: &SegmentHeader,
    size: u64,
    preallocate: bool,
) -> Result<(PathBuf, Box<dyn IoFile>), Error> {
    let name = segment_file_name(header.first_lsn);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let result = (|| -> std::io::Result<Box<dyn IoFile>> {
        let file = io.open(&tmp, OpenMode::Truncate)?;
        file.write_all_at(&header.encode(), 0)?;
        if preallocate && size > HEADER_LEN {
            zero_fill(&*file, HEADER_LEN, size)?;
        }
        fail::fail_point!("wal::segment::create_sync", |_| Err(std::io::Error::other(
            "fail point wal::segment::create_sync"
        )));
        file.sync_all()?;
        Ok(file)
    })();
    let file = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = io.remove_file(&tmp);
            return Err(Error::io(&tmp, e));
        }
    };
    fail::fail_point!("wal::segment::create_rename", |_| Err(Error::io(
        &tmp,
        std::io::Error::other("fail point wal::segment::create_rename")
    )));
    io.rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    io.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok((path, file))
}

/// The next segment, prepared ahead of need by the background thread: an anonymous
/// (`O_TMPFILE`) file in the WAL directory, zero-filled to the segment size and fsynced, so
/// that rotation under the writer lock costs a header write, an fdatasync, a link and a
/// directory fsync instead of writing and syncing the whole preallocation. Being anonymous it
/// is invisible to directory walkers and vanishes with the process if never used.
#[derive(Debug)]
pub(crate) struct Spare {
    file: Box<dyn IoFile>,
    pub(crate) size: u64,
}

/// Prepares a [`Spare`] of `size` bytes in `dir`; fails where the [`Io`] has no unnamed files
/// (`O_TMPFILE`, `/proc`), and the caller then creates segments the portable way
/// ([`create_segment`]).
pub(crate) fn prepare_spare(io: &dyn Io, dir: &Path, size: u64) -> std::io::Result<Spare> {
    let file = io.create_unnamed(dir)?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the file system has no unnamed files",
        )
    })?;
    zero_fill(&*file, 0, size)?;
    file.sync_all()?;
    Ok(Spare { file, size })
}

/// Turns a [`Spare`] into segment `{first_lsn}.wal` durably: header written and fdatasynced,
/// the file linked into the directory under its name, the directory fsynced.
pub(crate) fn install_spare(
    io: &dyn Io,
    dir: &Path,
    header: &SegmentHeader,
    spare: Spare,
) -> Result<(PathBuf, Box<dyn IoFile>), Error> {
    let path = dir.join(segment_file_name(header.first_lsn));
    let file = spare.file;
    let write = || -> std::io::Result<()> {
        file.write_all_at(&header.encode(), 0)?;
        fail::fail_point!("wal::segment::create_sync", |_| Err(std::io::Error::other(
            "fail point wal::segment::create_sync"
        )));
        file.sync_data()
    };
    write().map_err(|e| Error::io(&path, e))?;
    fail::fail_point!("wal::segment::create_rename", |_| Err(Error::io(
        &path,
        std::io::Error::other("fail point wal::segment::create_rename")
    )));
    io.link_unnamed(&*file, &path)
        .map_err(|e| Error::io(&path, e))?;
    io.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok((path, file))
}

/// Writes zeros over `[from, to)`.
pub(crate) fn zero_fill(file: &dyn IoFile, from: u64, to: u64) -> std::io::Result<()> {
    const CHUNK: usize = 1024 * 1024;
    let zeros = vec![0u8; CHUNK.min((to - from) as usize)];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(zeros.len());
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Deletes a file and syncs its directory.
pub(crate) fn remove_durably(io: &dyn Io, dir: &Path, path: &Path) -> Result<(), Error> {
    io.remove_file(path).map_err(|e| Error::io(path, e))?;
    io.sync_dir(dir).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_damage() {
        let h = SegmentHeader {
            flags: FLAG_COMPACTED,
            first_lsn: 42,
            covers_through: 99,
            created_ms: 7,
            prev_ulid: Ulid::from_parts(5, 6),
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..b.len() {
            let mut d = b;
            d[i] ^= 0x10;
            assert!(SegmentHeader::decode(&d).is_err(), "byte {i}");
        }
    }

    #[test]
    fn names_sort_by_lsn() {
        assert_eq!(segment_file_name(12), "00000000000000000012.wal");
        assert_eq!(parse_segment_name("00000000000000000012.wal"), Some(12));
        assert_eq!(parse_segment_name("12.wal"), None);
        assert_eq!(parse_segment_name("00000000000000000012.wal.tmp"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }
}
