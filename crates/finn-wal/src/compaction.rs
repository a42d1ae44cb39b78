//! Compaction of keyed records: the newest put or delete of each `(kind, key)` wins, events are
//! kept, LSNs are kept, and the sealed segments are replaced crash-safely.
//!
//! Steps, each safe to crash after:
//! 1. write `{first}.wal.compact.tmp` (header flag "compacted", `covers_through` = the last LSN of
//!    the range) and fsync it — a crash leaves a temp file that the next open deletes;
//! 2. rename it over the first sealed segment and fsync the directory — the next open sees a
//!    compacted segment whose range covers the remaining old segments and deletes them;
//! 3. delete the other old segments and fsync the directory.
//!
//! The liveness decision uses an in-memory index of the newest LSN per key (memory proportional
//! to live keys). Automatic compaction runs only when superseded bytes reach a ratio of the log,
//! so each byte is rewritten a bounded number of times: amortized O(1) work per append.

use std::collections::HashMap;

/// A map with a fast, per-process randomly seeded hasher (foldhash): the index is filled from
/// every keyed record on open, where SipHash cost a quarter of the time.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use crate::fs::{IoFile, OpenMode};
use crate::id::now_ms;
use crate::reader::{FrameReader, Next};
use crate::record::TAG_SEAL;
use crate::record::{BodyRecords, FrameBuilder, RecordRef};
use crate::segment::{
    FLAG_COMPACTED, HEADER_LEN, Segment, SegmentHeader, TEMP_SUFFIX, read_header, read_seal,
    segment_file_name,
};
use crate::status::{CompactionReport, Metrics};
use crate::writer::Inner;
use crate::{Error, Op};

/// Newest LSN per `(kind code, key)`, plus how many bytes of superseded keyed records exist.
///
/// Open does not fold keys: a trusted seal spares reading a sealed segment's records at all,
/// and the scanned segments' keys would cost open a hash insert and an allocation per keyed
/// record (about 40% of reopening a 10,000-key store). `pending` lists the segments whose
/// keys are not yet in the map, each up to the byte offset open found (appends after open
/// observe their own keys). Anything that decides liveness or garbage goes through
/// [`Inner::loaded_keys`], which folds them first. Folding order does not matter:
/// [`KeyIndex::observe`] keeps the highest LSN per key.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    map: FastMap<u16, FastMap<Box<str>, KeyEntry>>,
    garbage_bytes: u64,
    pub(crate) pending: Vec<PendingKeys>,
}

/// A segment whose keyed records below `through` (a byte offset) are not in the map yet.
#[derive(Debug, Clone)]
pub(crate) struct PendingKeys {
    pub(crate) segment: Arc<Segment>,
    pub(crate) through: u64,
}

impl PendingKeys {
    /// All of `segment`'s records as they stand.
    pub(crate) fn whole(segment: &Arc<Segment>) -> Self {
        PendingKeys {
            segment: Arc::clone(segment),
            through: segment.end(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct KeyEntry {
    lsn: u64,
    bytes: u64,
}

impl KeyIndex {
    /// A keyed record was appended (or found on open) at `lsn`.
    pub(crate) fn observe(&mut self, kind: u16, key: &str, lsn: u64, bytes: u64) {
        let keys = self.map.entry(kind).or_default();
        match keys.get_mut(key) {
            Some(entry) if entry.lsn == lsn => {}
            Some(entry) => {
                if lsn > entry.lsn {
                    self.garbage_bytes += entry.bytes;
                    *entry = KeyEntry { lsn, bytes };
                } else {
                    self.garbage_bytes += bytes;
                }
            }
            None => {
                keys.insert(key.into(), KeyEntry { lsn, bytes });
            }
        }
    }

    /// LSN of the newest record for the key, if the index holds one.
    pub(crate) fn newest(&self, kind: u16, key: &str) -> Option<u64> {
        self.map.get(&kind).and_then(|k| k.get(key)).map(|e| e.lsn)
    }

    /// A keyed record left the log (compacted away, pruned, truncated).
    pub(crate) fn forget(&mut self, kind: u16, key: &str, lsn: u64, bytes: u64) {
        if let Some(keys) = self.map.get_mut(&kind)
            && keys.get(key).is_some_and(|e| e.lsn == lsn)
        {
            keys.remove(key);
            return;
        }
        self.garbage_bytes = self.garbage_bytes.saturating_sub(bytes);
    }

    pub(crate) fn garbage_bytes(&self) -> u64 {
        self.garbage_bytes
    }

    /// Reads the keyed records of every pending segment into the map.
    pub(crate) fn fold_pending(&mut self) -> Result<(), Error> {
        while let Some(PendingKeys {
            segment: seg,
            through,
        }) = self.pending.last().cloned()
        {
            let mut reader = FrameReader::new(HEADER_LEN, through.min(seg.end()));
            loop {
                match reader
                    .next_frame(&*seg.file)
                    .map_err(|e| Error::io(&seg.path, e))?
                {
                    Next::Frame { offset, body, .. } => {
                        let records = BodyRecords::parse(body)
                            .map_err(|kind| Error::corrupt(&seg.path, offset, kind))?;
                        for r in records {
                            if let (Op::Put | Op::Delete, Some(key), Some(code)) =
                                (r.op, r.key, r.kind.code())
                            {
                                self.observe(code, key, r.lsn, r.encoded_len() as u64);
                            }
                        }
                    }
                    Next::End { .. } => break,
                    Next::Bad { offset, kind } => {
                        return Err(Error::corrupt(&seg.path, offset, kind));
                    }
                }
            }
            self.pending.pop();
        }
        Ok(())
    }

    /// Drops `segment` from the pending list. Returns the byte offset from which its keys were
    /// counted (and need forgetting when it leaves the log): 0 if it was not pending, where
    /// open stopped reading it if it was.
    pub(crate) fn take_pending(&mut self, segment: &Arc<Segment>) -> u64 {
        let mut counted_from = 0;
        self.pending.retain(|p| {
            let same = Arc::ptr_eq(&p.segment, segment);
            if same {
                counted_from = p.through;
            }
            !same
        });
        counted_from
    }
}

impl KeyIndex {
    /// Adds what another index saw (of records this one has not seen).
    fn merge(&mut self, other: KeyIndex) {
        for (kind, keys) in other.map {
            for (key, e) in keys {
                self.observe(kind, &key, e.lsn, e.bytes);
            }
        }
        self.garbage_bytes += other.garbage_bytes;
    }
}

impl Inner {
    /// The key index with every sealed segment's keys folded in.
    ///
    /// The pending segments are read without holding the index lock (appends of keyed records
    /// take it under the writer lock, so reading under it would stall every append) and merged
    /// afterwards, unless pruning took one of them meanwhile; then the fold is redone.
    pub(crate) fn loaded_keys(&self) -> Result<MutexGuard<'_, KeyIndex>, Error> {
        loop {
            let snapshot = {
                let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
                if keys.pending.is_empty() {
                    return Ok(keys);
                }
                keys.pending.clone()
            };
            let started = std::time::Instant::now();
            let mut folded = KeyIndex {
                pending: snapshot.clone(),
                ..KeyIndex::default()
            };
            folded.fold_pending()?;
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            let still_pending = snapshot.iter().all(|s| {
                keys.pending
                    .iter()
                    .any(|p| Arc::ptr_eq(&p.segment, &s.segment))
            });
            if still_pending {
                keys.pending
                    .retain(|p| !snapshot.iter().any(|s| Arc::ptr_eq(&p.segment, &s.segment)));
                keys.merge(folded);
                tracing::debug!(segments = snapshot.len(), elapsed = ?started.elapsed(), "folded keys of sealed segments");
                if keys.pending.is_empty() {
                    return Ok(keys);
                }
            }
        }
    }
}

/// Registers every frame of a freshly written segment on its handle (up to its seal, if it
/// has one).
pub(crate) fn load_frames(segment: &Segment) -> Result<(), Error> {
    let len = segment
        .file
        .size()
        .map_err(|e| Error::io(&segment.path, e))?;
    if let Some(seal) = read_seal(&*segment.file, len).map_err(|e| Error::io(&segment.path, e))? {
        segment.load_seal(&seal);
        return Ok(());
    }
    let mut reader = FrameReader::new(HEADER_LEN, len);
    loop {
        match reader
            .next_frame(&*segment.file)
            .map_err(|e| Error::io(&segment.path, e))?
        {
            Next::Frame { offset, len, body } => {
                if body.first() == Some(&TAG_SEAL) {
                    return Ok(());
                }
                let records = BodyRecords::parse(body)
                    .map_err(|kind| Error::corrupt(&segment.path, offset, kind))?;
                let (first, last, count) = (records.first_lsn, records.last_lsn, records.count);
                let keyed = records.filter(|r| r.op != Op::Event).count() as u64;
                segment.note_frame(offset, offset + len, first, last, u64::from(count), keyed);
            }
            Next::End { .. } => return Ok(()),
            Next::Bad { offset, kind } => return Err(Error::corrupt(&segment.path, offset, kind)),
        }
    }
}

/// Compacts every sealed segment (all but the active one).
pub(crate) fn compact(inner: &Inner) -> Result<CompactionReport, Error> {
    let _maintenance = inner.maintenance.lock().unwrap_or_else(|e| e.into_inner());
    let snapshot = inner.segments_now();
    let mut report = CompactionReport::default();
    if snapshot.len() < 2 {
        return Ok(report);
    }
    let sealed = &snapshot[..snapshot.len() - 1];
    let following = &snapshot[snapshot.len() - 1];
    report.segments_in = sealed.len();
    let first = &sealed[0];
    let header = SegmentHeader {
        flags: FLAG_COMPACTED,
        first_lsn: first.header.first_lsn,
        covers_through: following.header.first_lsn.saturating_sub(1),
        created_ms: now_ms(),
        prev_ulid: first.header.prev_ulid,
    };
    let tmp = inner.dir.join(format!(
        "{}.compact{TEMP_SUFFIX}",
        segment_file_name(header.first_lsn)
    ));
    let io = &*inner.options.io;
    let out = io
        .open(&tmp, OpenMode::Truncate)
        .map_err(|e| Error::io(&tmp, e))?;
    let cleanup = |e: Error| {
        let _ = io.remove_file(&tmp);
        e
    };
    out.write_all_at(&header.encode(), 0)
        .map_err(|e| cleanup(Error::io(&tmp, e)))?;
    let mut at = HEADER_LEN;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut dropped: Vec<(u16, Box<str>, u64, u64)> = Vec::new();
    for seg in sealed {
        report.bytes_in += seg.data_bytes();
        let mut reader = FrameReader::new(HEADER_LEN, seg.end());
        loop {
            let next = reader
                .next_frame(&*seg.file)
                .map_err(|e| cleanup(Error::io(&seg.path, e)))?;
            let (offset, body) = match next {
                Next::Frame { offset, body, .. } => (offset, body),
                Next::End { .. } => break,
                Next::Bad { offset, kind } => {
                    return Err(cleanup(Error::corrupt(&seg.path, offset, kind)));
                }
            };
            let records = BodyRecords::parse(body)
                .map_err(|kind| cleanup(Error::corrupt(&seg.path, offset, kind)))?;
            let mut live: Vec<RecordRef<'_>> = Vec::new();
            {
                let keys = inner.loaded_keys().map_err(&cleanup)?;
                // A record is superseded only by a durable one: the newer put of a `None`
                // append may still be lost to a power failure, and the acknowledged record it
                // replaces must survive that (found by tests/sim_power_loss.rs).
                let durable = inner.durable_lsn.load(Ordering::Acquire);
                for r in records {
                    report.records_in += 1;
                    let keep = match (r.op, r.key, r.kind.code()) {
                        (Op::Put | Op::Delete, Some(key), Some(code)) => {
                            let keep = keys
                                .newest(code, key)
                                .is_none_or(|n| n == r.lsn || n > durable);
                            if !keep {
                                dropped.push((code, key.into(), r.lsn, r.encoded_len() as u64));
                            }
                            keep
                        }
                        _ => true,
                    };
                    if keep {
                        live.push(r);
                    }
                }
            }
            if live.is_empty() {
                continue;
            }
            report.records_out += live.len() as u64;
            // The output is synced as a whole before it becomes part of the log, so every
            // frame's bytes before it count as durable.
            let synced_to = at + buf.len() as u64;
            let builder = FrameBuilder::begin(
                &mut buf,
                (live.len() > 1).then_some(live.len() as u32),
                Some(synced_to),
            );
            for r in &live {
                builder.push(&mut buf, r);
            }
            builder.finish(&mut buf);
            if buf.len() >= 1 << 20 {
                out.write_all_at(&buf, at)
                    .map_err(|e| cleanup(Error::io(&tmp, e)))?;
                at += buf.len() as u64;
                buf.clear();
            }
        }
    }
    if !buf.is_empty() {
        out.write_all_at(&buf, at)
            .map_err(|e| cleanup(Error::io(&tmp, e)))?;
        at += buf.len() as u64;
    }
    report.bytes_out = at - HEADER_LEN;
    // Every ULID of the compacted range was handed out before the following segment began.
    let max_ulid = following.header.prev_ulid;
    if dropped.is_empty() {
        // Nothing superseded in the sealed range: leave the files alone.
        let _ = io.remove_file(&tmp);
        report.records_out = report.records_in;
        report.bytes_out = report.bytes_in;
        return Ok(report);
    }
    // Seal the output like a rotated segment, so that opening never scans it.
    let staged = Segment::new(tmp.clone(), out, header);
    load_frames(&staged).map_err(&cleanup)?;
    let synced = sync_output(&*staged.file).and_then(|()| staged.write_seal(max_ulid));
    synced.map_err(|e| cleanup(Error::io(&tmp, e)))?;
    drop(staged);
    fail::fail_point!("wal::compaction::before_rename", |_| Err(Error::io(
        &tmp,
        std::io::Error::other("fail point wal::compaction::before_rename")
    )));
    io.rename(&tmp, &first.path)
        .map_err(|e| cleanup(Error::io(&first.path, e)))?;
    io.sync_dir(&inner.dir)
        .map_err(|e| Error::io(&inner.dir, e))?;
    fail::fail_point!("wal::compaction::after_rename", |_| Err(Error::io(
        &first.path,
        std::io::Error::other("fail point wal::compaction::after_rename")
    )));

    // Swap the new segment in before deleting the old files, so readers that list segments
    // from now on never miss a record.
    let file = io
        .open(&first.path, OpenMode::ReadWrite)
        .map_err(|e| Error::io(&first.path, e))?;
    let header = read_header(&*file, &first.path)?;
    let segment = Arc::new(Segment::new(first.path.clone(), file, header));
    load_frames(&segment)?;
    {
        let mut segments = inner.segments.write().unwrap_or_else(|e| e.into_inner());
        let prefix_intact = segments.len() > sealed.len()
            && segments.iter().zip(sealed).all(|(a, b)| Arc::ptr_eq(a, b));
        if !prefix_intact {
            // Only maintenance removes segments and it is serialised with us; this cannot
            // happen, but if it did the on-disk state is still consistent.
            return Err(Error::InvalidOptions {
                field: "segments",
                reason: "segment list changed during compaction",
            });
        }
        segments.splice(0..sealed.len(), [segment]);
    }
    for seg in &sealed[1..] {
        io.remove_file(&seg.path)
            .map_err(|e| Error::io(&seg.path, e))?;
    }
    io.sync_dir(&inner.dir)
        .map_err(|e| Error::io(&inner.dir, e))?;

    {
        let mut keys = inner.keys.lock().unwrap_or_else(|e| e.into_inner());
        for seg in sealed {
            keys.take_pending(seg);
        }
        for (code, key, lsn, bytes) in &dropped {
            keys.forget(*code, key, *lsn, *bytes);
        }
    }
    inner
        .wal_bytes
        .fetch_sub(report.bytes_in - report.bytes_out, Ordering::Relaxed);
    Metrics::add(&inner.metrics.compactions, 1);
    tracing::info!(
        records_in = report.records_in,
        records_out = report.records_out,
        bytes_in = report.bytes_in,
        bytes_out = report.bytes_out,
        "compacted sealed segments"
    );
    Ok(report)
}

/// fsync of the compacted output with a fail point in front of it.
fn sync_output(out: &dyn IoFile) -> std::io::Result<()> {
    fail::fail_point!("wal::compaction::sync", |_| Err(std::io::Error::other(
        "fail point wal::compaction::sync"
    )));
    out.sync_all()
}
