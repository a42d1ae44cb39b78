//! Open = recovery: list the directory, drop leftovers of interrupted operations, check every
//! segment header, take sealed segments from their seals and scan the others with CRC checks,
//! find the true tail (last LSN, largest ULID), and repair damage as the [`RecoveryMode`]
//! allows. Every repair is logged with `tracing` and listed in the [`RecoveryReport`].
//!
//! [`RecoveryMode::TolerateTornTail`] trusts a segment's seal (header CRC, trailer, seal CRC,
//! bounds and LSN order against its neighbours) instead of reading its records; damage inside
//! such a segment surfaces when it is read ([`crate::Iter`] yields the error) and in
//! [`Wal::verify`](crate::Wal::verify). The other two modes scan every segment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use ulid::Ulid;

use crate::compaction::{KeyIndex, PendingKeys};
use crate::error::Corruption;
use crate::fs::{Io, IoFile, OpenMode};
use crate::reader::{FrameReader, Next, spare};
use crate::record::{BodyRecords, TAG_SEAL};
use crate::segment::{
    HEADER_LEN, Seal, Segment, SegmentHeader, TEMP_SUFFIX, parse_segment_name, read_header,
    read_seal, segment_file_name,
};
use crate::{Error, Lsn, Options, RecoveryMode};

/// What [`Wal::open`](crate::Wal::open) found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// The mode recovery ran in.
    pub mode: RecoveryMode,
    /// Segment files in the log.
    pub segments: usize,
    /// Of those, segments taken from their seal without reading their records.
    pub trusted_seals: usize,
    /// Records found.
    pub records: u64,
    /// Oldest record retained, if any.
    pub first_lsn: Option<Lsn>,
    /// Newest record found (the true tail), [`Lsn::ZERO`] if none.
    pub last_lsn: Lsn,
    /// Every repair, in the order it was made. Empty after a clean shutdown.
    pub repairs: Vec<Repair>,
}

impl RecoveryReport {
    /// Whether recovery changed nothing on disk.
    pub fn is_clean(&self) -> bool {
        self.repairs.is_empty()
    }
}

/// One repair made while opening.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Repair {
    /// The newest segment ended in a torn or damaged frame (what a crash mid-append leaves);
    /// bytes from `offset` on were zeroed, so the next append is readable.
    TruncatedTail {
        /// The segment.
        segment: PathBuf,
        /// Where the valid log ends now.
        offset: u64,
        /// Non-zero bytes discarded.
        discarded_bytes: u64,
        /// Why the first discarded frame was rejected.
        #[serde(skip)]
        cause: Corruption,
    },
    /// `SalvageAll`: damaged bytes were skipped. The segment was rewritten without them and the
    /// original kept as `damaged_copy` (read-only opens skip them in memory only).
    SkippedDamage {
        /// The segment.
        segment: PathBuf,
        /// Start of the damaged range.
        offset: u64,
        /// Length of the damaged range.
        len: u64,
        /// Why it was rejected.
        #[serde(skip)]
        cause: Corruption,
    },
    /// `SalvageAll`: a segment whose header is unreadable was set aside under a `.damaged` name.
    SkippedSegment {
        /// The segment.
        segment: PathBuf,
        /// Why it was rejected.
        #[serde(skip)]
        cause: Corruption,
    },
    /// `SalvageAll`: the original of a rewritten segment was kept here for inspection.
    KeptDamagedCopy {
        /// Where the original bytes now live.
        path: PathBuf,
    },
    /// A segment whose seal was missing or unreadable (a crash while sealing, or damage to
    /// the seal) was scanned, found intact, and sealed again.
    Resealed {
        /// The segment.
        segment: PathBuf,
    },
    /// A temp file of an interrupted segment creation, compaction or pid write was removed.
    RemovedTempFile {
        /// The file.
        path: PathBuf,
    },
    /// A segment whose records a completed compaction already holds was removed (the crash came
    /// between the compaction's rename and its deletions).
    RemovedSupersededSegment {
        /// The removed segment.
        path: PathBuf,
        /// The compacted segment that holds its live records.
        covered_by: PathBuf,
    },
}

/// The outcome of recovery: the segments in LSN order, ready for the writer and readers.
pub(crate) struct Recovered {
    pub(crate) segments: Vec<Arc<Segment>>,
    pub(crate) last_lsn: u64,
    pub(crate) max_ulid: Ulid,
    pub(crate) keys: KeyIndex,
    pub(crate) report: RecoveryReport,
}

/// What to do about one damaged spot. The single place that decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Fail,
    TruncateHere,
    Skip,
}

/// A damaged frame counts as a torn tail only if it is in the newest segment and nothing after
/// it proves that it had been made durable: a crash (or a power loss writing back unsynced
/// pages in any order) can only damage what was never synced. The proof is a valid frame with
/// a following LSN whose `synced_to` marker lies beyond the damage.
fn on_damage(mode: RecoveryMode, newest_segment: bool, durable_after: bool) -> Action {
    match (mode, newest_segment && !durable_after) {
        (RecoveryMode::AbsoluteConsistency, _) | (RecoveryMode::TolerateTornTail, false) => {
            Action::Fail
        }
        (RecoveryMode::TolerateTornTail, true) => Action::TruncateHere,
        (RecoveryMode::SalvageAll, _) => Action::Skip,
    }
}

struct Candidate {
    path: PathBuf,
    name_lsn: u64,
}

/// Scans `dir`. With `writable`, repairs are applied to disk; without, the same decisions are
/// taken in memory only (read-only opens never change a byte).
pub(crate) fn recover(dir: &Path, options: &Options, writable: bool) -> Result<Recovered, Error> {
    let mode = options.recovery_mode;
    let mut report = RecoveryReport {
        mode,
        ..RecoveryReport::default()
    };
    let io = &*options.io;
    let mut candidates = list_dir(io, dir, writable, &mut report)?;
    candidates.sort_by_key(|c| c.name_lsn);

    // Open and check headers.
    let mut opened: Vec<(PathBuf, Box<dyn IoFile>, SegmentHeader)> = Vec::new();
    for c in candidates {
        let open_mode = if writable {
            OpenMode::ReadWrite
        } else {
            OpenMode::Read
        };
        let file = io
            .open(&c.path, open_mode)
            .map_err(|e| Error::io(&c.path, e))?;
        let header = read_header(&*file, &c.path).and_then(|h| {
            if h.first_lsn == c.name_lsn {
                Ok(h)
            } else {
                Err(Error::corrupt(
                    &c.path,
                    0,
                    Corruption::NameMismatch {
                        name: c.name_lsn,
                        header: h.first_lsn,
                    },
                ))
            }
        });
        match header {
            Ok(h) => opened.push((c.path, file, h)),
            // A segment of another format version is not damage: never set it aside.
            Err(
                e @ Error::Corrupt {
                    kind: Corruption::UnsupportedVersion { .. },
                    ..
                },
            ) => return Err(e),
            Err(Error::Corrupt { kind, .. }) if mode == RecoveryMode::SalvageAll => {
                tracing::warn!(segment = %c.path.display(), cause = %kind, "segment header unreadable; setting it aside");
                if writable {
                    set_aside(io, dir, &c.path)?;
                }
                report.repairs.push(Repair::SkippedSegment {
                    segment: c.path,
                    cause: kind,
                });
            }
            Err(e) => return Err(e),
        }
    }

    // Drop segments superseded by a completed compaction.
    let mut kept: Vec<(PathBuf, Box<dyn IoFile>, SegmentHeader)> = Vec::new();
    let mut covered: Option<(u64, PathBuf)> = None;
    for (path, file, header) in opened {
        if let Some((through, by)) = &covered
            && header.first_lsn <= *through
        {
            tracing::warn!(segment = %path.display(), covered_by = %by.display(), "removing segment superseded by compaction");
            if writable {
                io.remove_file(&path).map_err(|e| Error::io(&path, e))?;
                io.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
            }
            report.repairs.push(Repair::RemovedSupersededSegment {
                path,
                covered_by: by.clone(),
            });
            continue;
        }
        if header.is_compacted() {
            covered = Some((header.covers_through, path.clone()));
        }
        kept.push((path, file, header));
    }

    // Scan.
    let mut keys = KeyIndex::default();
    let mut max_ulid = Ulid::nil();
    let mut prev_lsn = 0u64;
    let mut segments = Vec::with_capacity(kept.len());
    let mut needs_rewrite = false;
    let count = kept.len();
    let bounds: Vec<u64> = kept.iter().map(|(_, _, h)| h.first_lsn).collect();
    for (i, (path, file, header)) in kept.into_iter().enumerate() {
        let newest = i + 1 == count;
        let next_bound = bounds.get(i + 1).copied().unwrap_or(u64::MAX);
        max_ulid = max_ulid.max(header.prev_ulid);
        let mut segment = Segment::new(path, file, header);
        let file_len = segment
            .file
            .size()
            .map_err(|e| Error::io(&segment.path, e))?;
        let seal = read_seal(&*segment.file, file_len).map_err(|e| Error::io(&segment.path, e))?;
        if mode == RecoveryMode::TolerateTornTail
            && let Some(seal) = seal.as_ref()
            && seal_fits(seal, &header, prev_lsn, next_bound)
        {
            segment.load_seal(seal);
            if seal.records > 0 {
                prev_lsn = seal.last_record;
            }
            max_ulid = max_ulid.max(seal.max_ulid);
            report.records += seal.records;
            report.trusted_seals += 1;
            let segment = Arc::new(segment);
            if seal.keyed_records > 0 {
                keys.pending.push(PendingKeys::whole(&segment));
            }
            segments.push(segment);
            continue;
        }
        let salvage = mode == RecoveryMode::SalvageAll;
        // Keys are folded lazily from what the scan accepted, except where salvage may leave
        // holes a later read would stop at.
        let mut outcome = scan_segment(
            &mut segment,
            salvage,
            &mut prev_lsn,
            next_bound,
            salvage.then_some(&mut keys),
            &mut max_ulid,
        )?;
        if outcome.sealed {
            // A full scan that ended at a seal: the seal must agree with the records, and in
            // the strict mode a missing trailer (a crash while sealing) is damage too.
            let agrees = seal.as_ref().map(|seal| {
                seal.records == outcome.records
                    && seal.last_record == segment.last_record().unwrap_or(0)
            });
            if agrees == Some(false)
                || (agrees.is_none() && mode == RecoveryMode::AbsoluteConsistency)
            {
                outcome.damages.push(Damage {
                    offset: segment.end(),
                    len: 0,
                    cause: Corruption::SealMismatch,
                    durable_after: true,
                });
            }
        }
        let damaged = !outcome.damages.is_empty();
        for damage in outcome.damages {
            let action = on_damage(mode, newest, damage.durable_after);
            match action {
                Action::Fail => {
                    return Err(Error::corrupt(&segment.path, damage.offset, damage.cause));
                }
                Action::TruncateHere => {
                    let discarded = if writable {
                        zero_tail(&*segment.file, damage.offset, outcome.file_len)
                            .map_err(|e| Error::io(&segment.path, e))?
                    } else {
                        damage.len
                    };
                    tracing::warn!(
                        segment = %segment.path.display(),
                        offset = damage.offset,
                        discarded_bytes = discarded,
                        cause = %damage.cause,
                        "truncated torn tail"
                    );
                    report.repairs.push(Repair::TruncatedTail {
                        segment: segment.path.clone(),
                        offset: damage.offset,
                        discarded_bytes: discarded,
                        cause: damage.cause,
                    });
                    // A torn tail is the end of the scan; nothing after it was accepted.
                    break;
                }
                Action::Skip => {
                    tracing::warn!(
                        segment = %segment.path.display(),
                        offset = damage.offset,
                        len = damage.len,
                        cause = %damage.cause,
                        "skipping damaged bytes"
                    );
                    report.repairs.push(Repair::SkippedDamage {
                        segment: segment.path.clone(),
                        offset: damage.offset,
                        len: damage.len,
                        cause: damage.cause,
                    });
                    if damage.len > 0 {
                        segment
                            .holes
                            .push((damage.offset, damage.offset + damage.len));
                        needs_rewrite = true;
                    }
                }
            }
        }
        report.records += outcome.records;
        // Seal what a crash left unsealed (during sealing, or before rotation could seal it),
        // so that the next open need not scan it: every segment but the newest, and the
        // newest if the scan ended at a seal whose trailer is missing.
        let reseal = writable
            && !damaged
            && segment.holes.is_empty()
            && !segment.is_empty()
            && seal.is_none()
            && (!newest || outcome.sealed);
        if reseal {
            segment
                .write_seal(max_ulid)
                .map_err(|e| Error::io(&segment.path, e))?;
            tracing::warn!(segment = %segment.path.display(), "sealed a segment whose seal was missing or unreadable");
            report.repairs.push(Repair::Resealed {
                segment: segment.path.clone(),
            });
        } else if outcome.sealed {
            segment.mark_sealed();
        }
        let segment = Arc::new(segment);
        if !salvage && segment.keyed_records() > 0 {
            keys.pending.push(PendingKeys::whole(&segment));
        }
        segments.push(segment);
    }

    if writable && needs_rewrite {
        // Rewrite damaged segments without their holes, keep the originals, then scan again so
        // that the in-memory state comes from the clean files.
        let mut extra = Vec::new();
        for seg in &segments {
            if !seg.holes.is_empty() {
                let kept_copy = rewrite_without_holes(dir, seg, options)?;
                extra.push(Repair::KeptDamagedCopy { path: kept_copy });
            }
        }
        drop(segments);
        let mut again = recover(dir, options, writable)?;
        let mut repairs = report.repairs;
        repairs.extend(extra);
        repairs.extend(again.report.repairs);
        again.report.repairs = repairs;
        return Ok(again);
    }

    if writable && prev_lsn > 0 {
        // What the scan accepted may so far live only in the page cache of a crashed process;
        // make it durable before anyone is told it is.
        if let Some(last) = segments.last() {
            last.file
                .sync_data()
                .map_err(|e| Error::io(&last.path, e))?;
        }
    }

    report.segments = segments.len();
    report.first_lsn = segments.iter().find_map(|s| s.first_record()).map(Lsn::new);
    report.last_lsn = Lsn::new(prev_lsn);
    Ok(Recovered {
        segments,
        last_lsn: prev_lsn,
        max_ulid,
        keys,
        report,
    })
}

fn list_dir(
    io: &dyn Io,
    dir: &Path,
    writable: bool,
    report: &mut RecoveryReport,
) -> Result<Vec<Candidate>, Error> {
    let mut out = Vec::new();
    let entries = io.read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut removed_any = false;
    for name in entries {
        let Some(name) = name.to_str() else { continue };
        let path = dir.join(name);
        if let Some(lsn) = parse_segment_name(name) {
            out.push(Candidate {
                path,
                name_lsn: lsn,
            });
        } else if name.ends_with(TEMP_SUFFIX) && writable {
            tracing::warn!(path = %path.display(), "removing temp file of an interrupted operation");
            io.remove_file(&path).map_err(|e| Error::io(&path, e))?;
            removed_any = true;
            report.repairs.push(Repair::RemovedTempFile { path });
        }
    }
    if removed_any {
        io.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(out)
}

struct Damage {
    offset: u64,
    len: u64,
    cause: Corruption,
    /// A valid frame with a following LSN after the damaged bytes proves (by its `synced_to`
    /// marker) that the damaged bytes had been made durable.
    durable_after: bool,
}

struct ScanOutcome {
    records: u64,
    file_len: u64,
    damages: Vec<Damage>,
    /// The scan ended at a valid seal frame.
    sealed: bool,
}

/// Whether a seal can stand for its segment: its records lie inside the segment's LSN range
/// and follow the previous segment's.
fn seal_fits(seal: &Seal, header: &SegmentHeader, prev_lsn: u64, next_bound: u64) -> bool {
    if header.is_compacted() && seal.records == 0 {
        return true;
    }
    seal.records > 0
        && seal.first_record >= header.first_lsn
        && seal.first_record > prev_lsn
        && seal.last_record < next_bound
}

/// Scans one segment, registering valid frames on it. Damage is returned, not acted on. After
/// a damage the scan looks for the next valid frame: `SalvageAll` continues from there, the
/// other modes stop and only note whether one exists.
fn scan_segment(
    segment: &mut Segment,
    salvage: bool,
    prev_lsn: &mut u64,
    next_bound: u64,
    mut keys: Option<&mut KeyIndex>,
    max_ulid: &mut Ulid,
) -> Result<ScanOutcome, Error> {
    let file_len = segment
        .file
        .size()
        .map_err(|e| Error::io(&segment.path, e))?;
    let mut outcome = ScanOutcome {
        records: 0,
        file_len,
        damages: Vec::new(),
        sealed: false,
    };
    let mut reader = FrameReader::new(HEADER_LEN, file_len);
    let lower = segment.header.first_lsn;
    let mut largest_frame = 0u64;
    loop {
        let next = reader
            .next_frame(&*segment.file)
            .map_err(|e| Error::io(&segment.path, e))?;
        let damage_at = match next {
            Next::Frame { offset, body, .. } if body.first() == Some(&TAG_SEAL) => {
                // The end of the data of a segment sealed by rotation or compaction; a seal
                // that does not describe this place is damage.
                match Seal::decode_body(body, offset) {
                    Some(_) => {
                        outcome.sealed = true;
                        break;
                    }
                    None => Some((offset, Corruption::Malformed)),
                }
            }
            Next::Frame { offset, len, body } => {
                match check_body(body, *prev_lsn, lower, next_bound) {
                    Ok(records) => {
                        let (first, last, count) =
                            (records.first_lsn, records.last_lsn, records.count);
                        let mut keyed = 0;
                        for r in records {
                            if let (Some(code), Some(key)) = (r.kind.code(), r.key)
                                && r.op != crate::Op::Event
                            {
                                if let Some(keys) = keys.as_deref_mut() {
                                    keys.observe(code, key, r.lsn, r.encoded_len() as u64);
                                }
                                keyed += 1;
                            }
                            *max_ulid = (*max_ulid).max(r.id);
                            outcome.records += 1;
                        }
                        largest_frame = largest_frame.max(len);
                        segment.note_frame(
                            offset,
                            offset + len,
                            first,
                            last,
                            u64::from(count),
                            keyed,
                        );
                        *prev_lsn = last;
                        continue;
                    }
                    Err(cause) => Some((offset, cause)),
                }
            }
            Next::End { offset } => {
                // Only a bounded window after the end marker is checked, so that opening
                // costs the data, not the preallocation (see `tail_probe_end`).
                let probe_end = tail_probe_end(offset, file_len, largest_frame);
                first_nonzero(&*segment.file, offset, probe_end)
                    .map_err(|e| Error::io(&segment.path, e))?
                    .map(|_| (offset, Corruption::DataAfterEnd))
            }
            Next::Bad { offset, kind } => Some((offset, kind)),
        };
        let Some((offset, cause)) = damage_at else {
            break;
        };
        // Resynchronise: the next offset where a frame with a following LSN checks out
        // (salvage continues there; other modes accept nothing after the first damage), and
        // whether any valid frame after the damage proves it durable.
        let after = resync(
            &*segment.file,
            offset,
            file_len,
            *prev_lsn,
            lower,
            next_bound,
        )
        .map_err(|e| Error::io(&segment.path, e))?;
        let resume = after.resume;
        let end = resume.unwrap_or(file_len);
        outcome.damages.push(Damage {
            offset,
            len: end - offset,
            cause,
            durable_after: after.durable,
        });
        match resume {
            Some(at) if salvage => reader.seek(at),
            _ => break,
        }
    }
    Ok(outcome)
}

/// Validates a frame body against the LSN order; returns its first and last LSN.
fn check_body(
    body: &[u8],
    prev_lsn: u64,
    lower: u64,
    next_bound: u64,
) -> Result<BodyRecords<'_>, Corruption> {
    let records = BodyRecords::parse(body)?;
    let (first, last) = (records.first_lsn, records.last_lsn);
    let floor = prev_lsn.max(lower.saturating_sub(1));
    if first <= floor || last >= next_bound {
        return Err(Corruption::LsnOrder {
            previous: floor,
            found: first,
        });
    }
    Ok(records)
}

/// What lies after a damaged spot.
struct After {
    /// Offset of the first valid frame with a following LSN.
    resume: Option<u64>,
    /// Some valid frame after the damage carries a `synced_to` beyond it: the damaged bytes had
    /// been made durable, so the damage is not a torn tail.
    durable: bool,
}

/// Looks for valid frames after damage at `from`: every such frame (each later one following
/// the previous one's LSNs) is checked for a `synced_to` marker beyond `from`.
fn resync(
    file: &dyn IoFile,
    from: u64,
    file_len: u64,
    prev_lsn: u64,
    lower: u64,
    next_bound: u64,
) -> std::io::Result<After> {
    let mut after = After {
        resume: None,
        durable: false,
    };
    if from + 1 >= file_len {
        return Ok(after);
    }
    let mut rest = vec![0u8; (file_len - from) as usize];
    file.read_exact_at(&mut rest, from)?;
    let mut prev = prev_lsn;
    let mut p = 1;
    while p + 8 < rest.len() {
        let len = u32::from_le_bytes([rest[p], rest[p + 1], rest[p + 2], rest[p + 3]]) as usize;
        if len == 0 || p + 8 + len > rest.len() {
            p += 1;
            continue;
        }
        let mut header = [0u8; 8];
        header.copy_from_slice(&rest[p..p + 8]);
        let body = &rest[p + 8..p + 8 + len];
        // The structural check first: it rejects random bytes far more cheaply than a CRC.
        let valid = match check_body(body, prev, lower, next_bound) {
            Ok(records) if crate::record::check_crc(&header, body).is_ok() => Some(records),
            _ => None,
        };
        let Some(records) = valid else {
            p += 1;
            continue;
        };
        after.resume.get_or_insert(from + p as u64);
        // A frame without a marker (not written by this format's writer) proves nothing
        // either way; count it as proof, the safe side.
        if records.synced_to.is_none_or(|synced| synced > from) {
            after.durable = true;
            return Ok(after);
        }
        prev = records.last_lsn;
        p += 8 + len;
    }
    Ok(after)
}

/// Bytes after the end marker that must be zero at the least.
const TAIL_PROBE: u64 = 1024 * 1024;

/// End of the window after an end marker at `end` that must read as zeros.
///
/// The rest of a preallocated segment is zeros that no append ever wrote, so reading all of
/// it (64 MiB by default) on every open would cost the preallocation instead of the data.
/// Damage that makes a frame header read as an end marker while durable frames follow shows up
/// within the window: the damaged frame's own body is non-zero right after its header, and a
/// frame zeroed entirely is followed by the next frame's header at most one frame length
/// later. The window is therefore at least [`TAIL_PROBE`] (1 MiB) and twice the largest frame
/// seen in the segment. Only a zeroed run longer than that inside durable data would read as
/// the end of the log.
fn tail_probe_end(end: u64, file_len: u64, largest_frame: u64) -> u64 {
    let window = TAIL_PROBE.max(largest_frame.saturating_mul(2));
    end.saturating_add(window).min(file_len)
}

/// Offset of the first non-zero byte in `[from, to)`, if any.
pub(crate) fn first_nonzero(file: &dyn IoFile, from: u64, to: u64) -> std::io::Result<Option<u64>> {
    let mut buf = spare::take();
    let found = (|| {
        let mut at = from;
        while at < to {
            let n = ((to - at) as usize).min(buf.len());
            file.read_exact_at(&mut buf[..n], at)?;
            // An OR-reduction vectorises; locate the exact byte only when there is one.
            if buf[..n].iter().fold(0u8, |acc, &b| acc | b) != 0
                && let Some(i) = buf[..n].iter().position(|&b| b != 0)
            {
                return Ok(Some(at + i as u64));
            }
            at += n as u64;
        }
        Ok(None)
    })();
    spare::give(buf);
    found
}

/// Zeroes `[from, last non-zero byte]` and syncs; returns how many bytes were non-zero-bounded.
fn zero_tail(file: &dyn IoFile, from: u64, file_len: u64) -> std::io::Result<u64> {
    let mut buf = spare::take();
    let mut at = from;
    let mut last_dirty_end = from;
    while at < file_len {
        let n = ((file_len - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            last_dirty_end = at + i as u64 + 1;
        }
        at += n as u64;
    }
    spare::give(buf);
    if last_dirty_end > from {
        crate::segment::zero_fill(file, from, last_dirty_end)?;
        file.sync_data()?;
    }
    Ok(last_dirty_end - from)
}

/// Renames a damaged segment so that it is no longer part of the log but stays on disk.
fn set_aside(io: &dyn Io, dir: &Path, path: &Path) -> Result<PathBuf, Error> {
    let target = damaged_name(path);
    io.rename(path, &target).map_err(|e| Error::io(path, e))?;
    io.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(target)
}

fn damaged_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".damaged-{}", crate::id::now_ms()));
    PathBuf::from(name)
}

/// Writes a copy of `seg` without its holes, keeps the original under a `.damaged` name and
/// puts the copy in its place. Returns the kept original's path.
fn rewrite_without_holes(dir: &Path, seg: &Segment, options: &Options) -> Result<PathBuf, Error> {
    let tmp = dir.join(format!(
        "{}.salvage{TEMP_SUFFIX}",
        segment_file_name(seg.header.first_lsn)
    ));
    let io = &*options.io;
    let write = || -> std::io::Result<()> {
        let out = io.open(&tmp, OpenMode::Truncate)?;
        out.write_all_at(&seg.header.encode(), 0)?;
        let mut at = HEADER_LEN;
        let mut reader = FrameReader::new(HEADER_LEN, seg.end());
        loop {
            if let Some(&(_, end)) = seg.holes.iter().find(|h| h.0 == reader.pos()) {
                reader.seek(end);
            }
            match reader.next_frame(&*seg.file)? {
                Next::Frame { offset, len, .. } => {
                    let mut frame = vec![0u8; len as usize];
                    seg.file.read_exact_at(&mut frame, offset)?;
                    out.write_all_at(&frame, at)?;
                    at += len;
                }
                Next::End { .. } | Next::Bad { .. } => break,
            }
        }
        if options.preallocate && !seg.header.is_compacted() {
            let size = options.segment_size.max(at);
            crate::segment::zero_fill(&*out, at, size)?;
        }
        out.sync_all()
    };
    if let Err(e) = write() {
        let _ = io.remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    let kept = damaged_name(&seg.path);
    io.rename(&seg.path, &kept)
        .map_err(|e| Error::io(&seg.path, e))?;
    io.rename(&tmp, &seg.path)
        .map_err(|e| Error::io(&seg.path, e))?;
    io.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(kept)
}

/// Reads every frame of `segment` (up to the end open or the writer knows) with CRC, structure
/// and LSN-order checks, and compares a seal with what the frames hold.
pub(crate) fn verify_segment(segment: &Segment) -> Result<crate::SegmentCheck, Error> {
    let mut check = crate::SegmentCheck {
        path: segment.path.clone(),
        sealed: segment.is_sealed(),
        records: 0,
        first_lsn: None,
        last_lsn: None,
        damage: None,
    };
    let end = segment.end();
    let mut reader = FrameReader::new(HEADER_LEN, end);
    let lower = segment.header.first_lsn;
    let mut prev = 0u64;
    loop {
        if let Some(&(_, hole_end)) = segment.holes.iter().find(|h| h.0 == reader.pos()) {
            reader.seek(hole_end);
        }
        let next = reader
            .next_frame(&*segment.file)
            .map_err(|e| Error::io(&segment.path, e))?;
        match next {
            Next::Frame { offset, body, .. } => match check_body(body, prev, lower, u64::MAX) {
                Ok(records) => {
                    check.first_lsn.get_or_insert(Lsn::new(records.first_lsn));
                    check.last_lsn = Some(Lsn::new(records.last_lsn));
                    check.records += u64::from(records.count);
                    prev = records.last_lsn;
                }
                Err(cause) => {
                    check.damage = Some((offset, cause));
                    return Ok(check);
                }
            },
            Next::End { offset } => {
                if offset < end {
                    check.damage = Some((
                        offset,
                        Corruption::Truncated {
                            expected: end - offset,
                            available: 0,
                        },
                    ));
                    return Ok(check);
                }
                break;
            }
            Next::Bad { offset, kind } => {
                check.damage = Some((offset, kind));
                return Ok(check);
            }
        }
    }
    if check.sealed {
        let len = segment
            .file
            .size()
            .map_err(|e| Error::io(&segment.path, e))?;
        let seal = read_seal(&*segment.file, len).map_err(|e| Error::io(&segment.path, e))?;
        let agrees = seal.is_some_and(|seal| {
            seal.data_end == end
                && seal.records == check.records
                && seal.first_record == check.first_lsn.map_or(0, Lsn::get)
                && seal.last_record == check.last_lsn.map_or(0, Lsn::get)
        });
        if !agrees {
            check.damage = Some((end, Corruption::SealMismatch));
        }
    }
    Ok(check)
}
