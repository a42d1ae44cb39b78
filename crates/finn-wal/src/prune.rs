//! Removing records: [`prune_through`] (whole segments the caller confirmed as checkpointed),
//! configured retention (never past the confirmed mark) and [`truncate_after`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::compaction::{KeyIndex, PendingKeys};
use crate::id::now_ms;
use crate::reader::{FrameReader, Next};
use crate::record::BodyRecords;
use crate::segment::{HEADER_LEN, Segment, SegmentHeader, create_segment, zero_fill};
use crate::status::PruneReport;
use crate::writer::Inner;
use crate::{Error, Lsn, Op};

/// Deletes sealed segments whose records are all `<= lsn`, oldest first.
pub(crate) fn prune_through(inner: &Inner, lsn: u64) -> Result<PruneReport, Error> {
    inner.check_writable()?;
    let mut maintenance = inner.maintenance.lock().unwrap_or_else(|e| e.into_inner());
    maintenance.confirmed = maintenance.confirmed.max(lsn);
    let snapshot = sealed_segments(inner);
    let victims: Vec<Arc<Segment>> = snapshot
        .into_iter()
        .take_while(|s| {
            s.last_record()
                .map_or(s.header.first_lsn <= lsn, |last| last <= lsn)
        })
        .collect();
    let report = remove_segments(inner, &victims)?;
    drop(maintenance);
    Ok(report)
}

/// Applies [`Options::retention`](crate::Options::retention) to sealed segments at or below the
/// confirmed mark.
pub(crate) fn apply_retention(inner: &Inner) -> Result<PruneReport, Error> {
    let retention = inner.options.retention;
    if !retention.is_enabled() || inner.read_only {
        return Ok(PruneReport::default());
    }
    let maintenance = inner.maintenance.lock().unwrap_or_else(|e| e.into_inner());
    let confirmed = maintenance.confirmed;
    let sealed = sealed_segments(inner);
    let now = now_ms();
    let mut victims = Vec::new();
    for (i, s) in sealed.iter().enumerate() {
        let confirmed_ok = s.last_record().is_none_or(|last| last <= confirmed) && confirmed > 0;
        if !confirmed_ok {
            break;
        }
        let over_count = retention
            .max_segments
            .is_some_and(|max| sealed.len() - i > max);
        let too_old = retention
            .max_age
            .is_some_and(|age| now.saturating_sub(s.header.created_ms) > age.as_millis() as u64);
        if over_count || too_old {
            victims.push(Arc::clone(s));
        } else {
            break;
        }
    }
    let report = remove_segments(inner, &victims)?;
    drop(maintenance);
    Ok(report)
}

fn sealed_segments(inner: &Inner) -> Vec<Arc<Segment>> {
    let segments = inner.segments.read().unwrap_or_else(|e| e.into_inner());
    let n = segments.len().saturating_sub(1);
    segments[..n].to_vec()
}

/// Removes `victims` (a prefix of the sealed segments) from the list and from disk.
fn remove_segments(inner: &Inner, victims: &[Arc<Segment>]) -> Result<PruneReport, Error> {
    let mut report = PruneReport::default();
    if !victims.is_empty() {
        // Keyed records leaving the log no longer count as live or as garbage.
        {
            let mut keys = inner.keys.lock().unwrap_or_else(|e| e.into_inner());
            for v in victims {
                let counted_from = keys.take_pending(v);
                if counted_from < v.end() {
                    forget_keys(v, counted_from, &mut keys)?;
                }
            }
        }
        {
            let mut segments = inner.segments.write().unwrap_or_else(|e| e.into_inner());
            segments.retain(|s| !victims.iter().any(|v| Arc::ptr_eq(s, v)));
        }
        for v in victims {
            fail::fail_point!("wal::prune::remove", |_| Err(Error::io(
                &v.path,
                std::io::Error::other("fail point wal::prune::remove")
            )));
            inner
                .options
                .io
                .remove_file(&v.path)
                .map_err(|e| Error::io(&v.path, e))?;
            report.segments_removed += 1;
            report.bytes_removed += v.data_bytes();
            tracing::info!(segment = %v.path.display(), "pruned segment");
        }
        inner
            .options
            .io
            .sync_dir(&inner.dir)
            .map_err(|e| Error::io(&inner.dir, e))?;
        inner
            .wal_bytes
            .fetch_sub(report.bytes_removed, Ordering::Relaxed);
    }
    report.first_lsn = inner
        .segments
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find_map(|s| s.first_record())
        .map(Lsn::new);
    Ok(report)
}

/// Forgets the keys of `segment`'s records in frames from byte offset `from` on.
fn forget_keys(segment: &Segment, from: u64, keys: &mut KeyIndex) -> Result<(), Error> {
    for_each_frame(segment, |offset, _, body| {
        if offset < from {
            return true;
        }
        if let Ok(records) = BodyRecords::parse(body) {
            for r in records {
                if let (Op::Put | Op::Delete, Some(key), Some(code)) = (r.op, r.key, r.kind.code())
                {
                    keys.forget(code, key, r.lsn, r.encoded_len() as u64);
                }
            }
        }
        true
    })
}

/// Calls `f(offset, len, body)` for each frame until it returns false.
fn for_each_frame(
    segment: &Segment,
    mut f: impl FnMut(u64, u64, &[u8]) -> bool,
) -> Result<(), Error> {
    let mut reader = FrameReader::new(HEADER_LEN, segment.end());
    loop {
        match reader
            .next_frame(&*segment.file)
            .map_err(|e| Error::io(&segment.path, e))?
        {
            Next::Frame { offset, len, body } => {
                if !f(offset, len, body) {
                    return Ok(());
                }
            }
            Next::End { .. } => return Ok(()),
            Next::Bad { offset, kind } => return Err(Error::corrupt(&segment.path, offset, kind)),
        }
    }
}

/// Removes every record above `lsn`.
pub(crate) fn truncate_after(inner: &Inner, lsn: u64) -> Result<(), Error> {
    inner.check_writable()?;
    let _maintenance = inner.maintenance.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = inner.lock_writer();
    if lsn >= inner.last_lsn.load(Ordering::Acquire) {
        return Ok(());
    }
    let snapshot = inner.segments_now();
    if snapshot.iter().any(|s| {
        s.header.is_compacted()
            && s.header.covers_through > lsn
            && s.first_record().is_some_and(|f| f <= lsn)
    }) {
        return Err(Error::InvalidLsn {
            lsn: Lsn::new(lsn),
            reason: "it falls inside a compacted range",
        });
    }
    // The boundary segment keeps records <= lsn; all later segments go.
    let boundary = snapshot
        .iter()
        .rposition(|s| s.first_record().is_some_and(|f| f <= lsn));
    let victims: Vec<Arc<Segment>> = match boundary {
        Some(b) => snapshot[b + 1..].to_vec(),
        None => snapshot.clone(),
    };
    let mut cut: Option<(u64, Option<u64>, (u64, u64))> = None;
    if let Some(b) = boundary {
        let seg = &snapshot[b];
        let mut last_kept = None;
        let mut straddle = false;
        let mut counts = (0u64, 0u64);
        for_each_frame(seg, |offset, _, body| {
            let Ok(records) = BodyRecords::parse(body) else {
                return false;
            };
            let (first, last, count) = (records.first_lsn, records.last_lsn, records.count);
            if last <= lsn {
                last_kept = Some(last);
                counts.0 += u64::from(count);
                counts.1 += records.filter(|r| r.op != Op::Event).count() as u64;
                true
            } else if first > lsn {
                cut = Some((offset, last_kept, counts));
                false
            } else {
                straddle = true;
                false
            }
        })?;
        if straddle {
            return Err(Error::InvalidLsn {
                lsn: Lsn::new(lsn),
                reason: "it falls inside an atomic batch",
            });
        }
    }

    // Newest first, so a crash leaves a prefix of the log.
    for v in victims.iter().rev() {
        inner
            .options
            .io
            .remove_file(&v.path)
            .map_err(|e| Error::io(&v.path, e))?;
    }
    if !victims.is_empty() {
        inner
            .options
            .io
            .sync_dir(&inner.dir)
            .map_err(|e| Error::io(&inner.dir, e))?;
    }
    {
        let mut segments = inner.segments.write().unwrap_or_else(|e| e.into_inner());
        segments.retain(|s| !victims.iter().any(|v| Arc::ptr_eq(s, v)));
    }
    // The boundary segment becomes the active one unless it is a compacted one.
    let reuse = boundary.filter(|&b| !snapshot[b].header.is_compacted());
    if let Some(b) = reuse {
        // Appending to it again: its seal (if any) goes first, so that no stale seal or trailer
        // is left behind the new frames.
        let seg = &snapshot[b];
        if seg.is_sealed() {
            seg.unseal().map_err(|e| {
                inner.poison("unsealing", &seg.path, &e);
                Error::io(&seg.path, e)
            })?;
        }
    }
    if let (Some(b), Some((offset, last_kept, counts))) = (boundary, cut) {
        let seg = &snapshot[b];
        let end = seg.end();
        zero_fill(&*seg.file, offset, end)
            .and_then(|()| seg.file.sync_data())
            .map_err(|e| {
                inner.poison("truncate", &seg.path, &e);
                Error::io(&seg.path, e)
            })?;
        seg.cut(offset, last_kept, counts);
    }

    match reuse {
        Some(b) => {
            let seg = Arc::clone(&snapshot[b]);
            let len = seg.file.size().map_err(|e| Error::io(&seg.path, e))?;
            w.capacity = len.max(seg.end());
            w.write_offset = seg.end();
            // Everything kept was synced: sealed data, or the cut's fdatasync above.
            w.synced_offset = seg.end();
            w.active = seg;
        }
        None => {
            let header = SegmentHeader {
                flags: 0,
                first_lsn: lsn + 1,
                covers_through: 0,
                created_ms: now_ms(),
                prev_ulid: w.ulid.last(),
            };
            let (path, file) = create_segment(
                &*inner.options.io,
                &inner.dir,
                &header,
                inner.options.segment_size,
                inner.options.preallocate,
            )?;
            let seg = Arc::new(Segment::new(path, file, header));
            inner
                .segments
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::clone(&seg));
            w.capacity = inner.options.segment_size;
            w.write_offset = HEADER_LEN;
            w.synced_offset = HEADER_LEN;
            w.active = seg;
        }
    }
    w.next_lsn = lsn + 1;
    w.gap_allowed = lsn == 0;
    inner.last_lsn.store(lsn, Ordering::Release);
    inner.durable_lsn.fetch_min(lsn, Ordering::AcqRel);

    // Rebuild the key index and the size from what is left (truncation is rare). Every
    // segment's keys are folded in lazily, the active one's up to where appends resume.
    let mut keys = KeyIndex::default();
    let mut total = 0;
    for seg in inner
        .segments
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        total += seg.data_bytes();
        keys.pending.push(PendingKeys::whole(seg));
    }
    *inner.keys.lock().unwrap_or_else(|e| e.into_inner()) = keys;
    inner.wal_bytes.store(total, Ordering::Relaxed);
    Ok(())
}
