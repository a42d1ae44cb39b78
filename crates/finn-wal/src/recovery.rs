//! Open = recovery: list the directory, drop leftovers of interrupted operations, scan every
//! segment with CRC checks, find the true tail (last LSN, largest ULID), and repair damage as the
//! [`RecoveryMode`] allows. Every repair is logged with `tracing` and listed in the
//! [`RecoveryReport`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use ulid::Ulid;

use crate::compaction::KeyIndex;
use crate::error::Corruption;
use crate::reader::{FrameReader, Next};
use crate::record::BodyRecords;
use crate::segment::{
    HEADER_LEN, Segment, SegmentHeader, TEMP_SUFFIX, parse_segment_name, read_header,
    segment_file_name,
};
use crate::{Error, Lsn, Options, RecoveryMode, fs as wal_fs};

/// What [`Wal::open`](crate::Wal::open) found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// The mode recovery ran in.
    pub mode: RecoveryMode,
    /// Segment files scanned.
    pub segments: usize,
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

///
/// A damaged frame counts as a torn tail only if it is in the newest segment and no valid frame
/// with a following LSN comes after it: a crash mid-append can only damage what was never made
/// durable, and anything durable after the damage means the damage is not a torn tail.
fn on_damage(mode: RecoveryMode, newest_segment: bool, valid_after: bool) -> Action {
    match (mode, newest_segment && !valid_after) {
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
    let mut candidates = list_dir(dir, writable, &mut report)?;
    candidates.sort_by_key(|c| c.name_lsn);

    // Open and check headers.
    let mut opened: Vec<(PathBuf, File, SegmentHeader)> = Vec::new();
    for c in candidates {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&c.path)
            .map_err(|e| Error::io(&c.path, e))?;
        let header = read_header(&file, &c.path).and_then(|h| {
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
            Err(Error::Corrupt { kind, .. }) if mode == RecoveryMode::SalvageAll => {
                tracing::warn!(segment = %c.path.display(), cause = %kind, "segment header unreadable; setting it aside");
                if writable {
                    set_aside(dir, &c.path)?;
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
    let mut kept: Vec<(PathBuf, File, SegmentHeader)> = Vec::new();
    let mut covered: Option<(u64, PathBuf)> = None;
    for (path, file, header) in opened {
        if let Some((through, by)) = &covered
            && header.first_lsn <= *through
        {
            tracing::warn!(segment = %path.display(), covered_by = %by.display(), "removing segment superseded by compaction");
            if writable {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                wal_fs::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
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
        let outcome = scan_segment(
            &mut segment,
            mode == RecoveryMode::SalvageAll,
            &mut prev_lsn,
            next_bound,
            &mut keys,
            &mut max_ulid,
        )?;
        for damage in outcome.damages {
            let action = on_damage(mode, newest, damage.valid_after);
            match action {
                Action::Fail => {
                    return Err(Error::corrupt(&segment.path, damage.offset, damage.cause));
                }
                Action::TruncateHere => {
                    let discarded = if writable {
                        zero_tail(&segment.file, damage.offset, outcome.file_len)
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
        segments.push(Arc::new(segment));
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
    dir: &Path,
    writable: bool,
    report: &mut RecoveryReport,
) -> Result<Vec<Candidate>, Error> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut removed_any = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if let Some(lsn) = parse_segment_name(name) {
            out.push(Candidate {
                path,
                name_lsn: lsn,
            });
        } else if name.ends_with(TEMP_SUFFIX) && writable {
            tracing::warn!(path = %path.display(), "removing temp file of an interrupted operation");
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            removed_any = true;
            report.repairs.push(Repair::RemovedTempFile { path });
        }
    }
    if removed_any {
        wal_fs::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(out)
}

struct Damage {
    offset: u64,
    len: u64,
    cause: Corruption,
    /// A valid frame with a following LSN exists after the damaged bytes.
    valid_after: bool,
}

struct ScanOutcome {
    records: u64,
    file_len: u64,
    damages: Vec<Damage>,
}

/// Scans one segment, registering valid frames on it. Damage is returned, not acted on. After
/// a damage the scan looks for the next valid frame: `SalvageAll` continues from there, the
/// other modes stop and only note whether one exists.
fn scan_segment(
    segment: &mut Segment,
    salvage: bool,
    prev_lsn: &mut u64,
    next_bound: u64,
    keys: &mut KeyIndex,
    max_ulid: &mut Ulid,
) -> Result<ScanOutcome, Error> {
    let file_len = segment
        .file
        .metadata()
        .map_err(|e| Error::io(&segment.path, e))?
        .len();
    let mut outcome = ScanOutcome {
        records: 0,
        file_len,
        damages: Vec::new(),
    };
    let mut reader = FrameReader::new(HEADER_LEN, file_len);
    let lower = segment.header.first_lsn;
    let mut largest_frame = 0u64;
    loop {
        let next = reader
            .next_frame(&segment.file)
            .map_err(|e| Error::io(&segment.path, e))?;
        let damage_at = match next {
            Next::Frame { offset, len, body } => {
                match check_body(body, *prev_lsn, lower, next_bound) {
                    Ok(records) => {
                        let (first, last) = (records.first_lsn, records.last_lsn);
                        for r in records {
                            if let (Some(code), Some(key)) = (r.kind.code(), r.key)
                                && r.op != crate::Op::Event
                            {
                                keys.observe(code, key, r.lsn, r.encoded_len() as u64);
                            }
                            *max_ulid = (*max_ulid).max(r.id);
                            outcome.records += 1;
                        }
                        largest_frame = largest_frame.max(len);
                        segment.note_frame(offset, offset + len, first, last);
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
                first_nonzero(&segment.file, offset, probe_end)
                    .map_err(|e| Error::io(&segment.path, e))?
                    .map(|_| (offset, Corruption::DataAfterEnd))
            }
            Next::Bad { offset, kind } => Some((offset, kind)),
        };
        let Some((offset, cause)) = damage_at else {
            break;
        };
        // Resynchronise (salvage only): the next offset where a frame with a following LSN
        // checks out. Other modes accept nothing after the first damage.
        let resume = resync(
            &segment.file,
            offset,
            file_len,
            *prev_lsn,
            lower,
            next_bound,
        )
        .map_err(|e| Error::io(&segment.path, e))?;
        let end = resume.unwrap_or(file_len);
        outcome.damages.push(Damage {
            offset,
            len: end - offset,
            cause,
            valid_after: resume.is_some(),
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

fn resync(
    file: &File,
    from: u64,
    file_len: u64,
    prev_lsn: u64,
    lower: u64,
    next_bound: u64,
) -> std::io::Result<Option<u64>> {
    if from + 1 >= file_len {
        return Ok(None);
    }
    let mut rest = vec![0u8; (file_len - from) as usize];
    file.read_exact_at(&mut rest, from)?;
    for p in 1..rest.len().saturating_sub(8) {
        let len = u32::from_le_bytes([rest[p], rest[p + 1], rest[p + 2], rest[p + 3]]) as usize;
        if len == 0 || p + 8 + len > rest.len() {
            continue;
        }
        let mut header = [0u8; 8];
        header.copy_from_slice(&rest[p..p + 8]);
        let body = &rest[p + 8..p + 8 + len];
        // The structural check first: it rejects random bytes far more cheaply than a CRC.
        if check_body(body, prev_lsn, lower, next_bound).is_ok()
            && crate::record::check_crc(&header, body).is_ok()
        {
            return Ok(Some(from + p as u64));
        }
    }
    Ok(None)
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
pub(crate) fn first_nonzero(file: &File, from: u64, to: u64) -> std::io::Result<Option<u64>> {
    const CHUNK: usize = 1024 * 1024;
    let mut buf = vec![0u8; CHUNK];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(CHUNK);
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
}

/// Zeroes `[from, last non-zero byte]` and syncs; returns how many bytes were non-zero-bounded.
fn zero_tail(file: &File, from: u64, file_len: u64) -> std::io::Result<u64> {
    const CHUNK: usize = 1024 * 1024;
    let mut buf = vec![0u8; CHUNK];
    let mut at = from;
    let mut last_dirty_end = from;
    while at < file_len {
        let n = ((file_len - at) as usize).min(CHUNK);
        file.read_exact_at(&mut buf[..n], at)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            last_dirty_end = at + i as u64 + 1;
        }
        at += n as u64;
    }
    if last_dirty_end > from {
        crate::segment::zero_fill(file, from, last_dirty_end)?;
        file.sync_data()?;
    }
    Ok(last_dirty_end - from)
}

/// Renames a damaged segment so that it is no longer part of the log but stays on disk.
fn set_aside(dir: &Path, path: &Path) -> Result<PathBuf, Error> {
    let target = damaged_name(path);
    std::fs::rename(path, &target).map_err(|e| Error::io(path, e))?;
    wal_fs::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
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
    let write = || -> std::io::Result<()> {
        let out = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        out.write_all_at(&seg.header.encode(), 0)?;
        let mut at = HEADER_LEN;
        let mut reader = FrameReader::new(HEADER_LEN, seg.end());
        loop {
            if let Some(&(_, end)) = seg.holes.iter().find(|h| h.0 == reader.pos()) {
                reader.seek(end);
            }
            match reader.next_frame(&seg.file)? {
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
            crate::segment::zero_fill(&out, at, size)?;
        }
        out.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    let kept = damaged_name(&seg.path);
    std::fs::rename(&seg.path, &kept).map_err(|e| Error::io(&seg.path, e))?;
    std::fs::rename(&tmp, &seg.path).map_err(|e| Error::io(&seg.path, e))?;
    wal_fs::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(kept)
}
