//! Bringing the local WAL up to the latest acknowledged record after a base state was restored.
//!
//! The anchors restored the newest checkpoint and, at best, the newest shipped batch; records
//! written between the last checkpoint and the loss were gone, and restored batches landed where
//! the WAL never read them. Here the records after the base state's LSN are gathered from every
//! source that ships WAL (and from what the local WAL still holds), and the missing ones are
//! appended to the local WAL verbatim with `append_replicated` (same LSN, ULID and timestamp),
//! after `advance_to` moved the WAL past the base LSN, so new appends continue above them and
//! no LSN is ever reused.
//!
//! The work is split in two so that nothing is installed before the outcome is known: [`plan`]
//! (before the swap) decides which records will be appended, where the first hole is, and
//! whether the local WAL disagrees with the shipped history; [`apply`] (after the swap) appends.

use std::collections::BTreeMap;

use finn_wal::{Lsn, Record, Wal};

/// Records appended per `append_replicated` call (each call ends with an fdatasync).
pub const REPLAY_CHUNK: usize = 8192;

/// What [`plan`] decided.
#[derive(Debug, Default)]
pub(crate) struct ReplayPlan {
    /// Records to append, contiguous, in LSN order.
    pub records: Vec<Record>,
    /// `(last contiguous LSN, first missing LSN)` when records are known to exist beyond a hole.
    pub gap: Option<(Lsn, Lsn)>,
    /// The first LSN at which the local WAL holds a record that differs from the shipped one.
    /// The plan then ignores the local WAL: the caller sets it aside and applies to a new one.
    pub diverged: Option<Lsn>,
}

/// Decides which of `shipped` continue `wal` above `base`, in LSN order, up to the first hole.
///
/// `reported_gaps` are holes the sources saw themselves (first and last missing LSN); one that
/// starts right after the contiguous run is the plan's gap even with no record beyond it.
///
/// The local WAL's records above `base` are compared with the shipped records at the same LSNs:
/// equal records are the same history (the local copy is kept and shipping continues after
/// it); a different record means another writer continued this lineage while this machine was
/// away, and the local WAL is not part of the restored history ([`ReplayPlan::diverged`]).
pub(crate) fn plan(
    wal: &Wal,
    base: Lsn,
    shipped: impl IntoIterator<Item = Record>,
    reported_gaps: &[(Lsn, Lsn)],
) -> Result<ReplayPlan, finn_wal::Error> {
    let mut by_lsn: BTreeMap<Lsn, Record> = BTreeMap::new();
    for record in shipped {
        if record.lsn > base {
            // The first source listed wins for a given LSN; sources are asked best first.
            by_lsn.entry(record.lsn).or_insert(record);
        }
    }
    let local_last = wal.last_lsn();
    let mut out = ReplayPlan::default();
    if local_last > base {
        let from = wal.first_lsn().map_or(base.next(), |f| f.max(base.next()));
        for local in wal.iter_from(from)? {
            let local = local?;
            if let Some(remote) = by_lsn.get(&local.lsn)
                && *remote != local
            {
                out.diverged = Some(local.lsn);
                break;
            }
        }
    }
    let local_end = if out.diverged.is_some() {
        Lsn::ZERO
    } else {
        local_last
    };
    let start = local_end.max(base).next();
    let mut expected = start;
    let mut leftover = false;
    for (lsn, record) in by_lsn.range(start..) {
        if *lsn != expected {
            leftover = true;
            break;
        }
        out.records.push(record.clone());
        expected = expected.next();
    }
    if leftover
        || reported_gaps
            .iter()
            .any(|(first, last)| *first <= expected && expected <= *last)
    {
        out.gap = Some((Lsn::new(expected.get() - 1), expected));
    }
    Ok(out)
}

/// Appends the planned records to `wal` (moving it past `base` first if it ends below it).
/// Returns the number of records appended.
pub(crate) fn apply(wal: &Wal, base: Lsn, records: &[Record]) -> Result<u64, finn_wal::Error> {
    if wal.last_lsn() < base {
        // The WAL ends below the checkpoint (empty, or older than it): records up to `base`
        // are in the restored files, so the WAL continues right after it.
        wal.advance_to(base.next())?;
    }
    let mut restored = 0;
    for chunk in records.chunks(REPLAY_CHUNK) {
        wal.append_replicated(chunk)?;
        restored += chunk.len() as u64;
    }
    Ok(restored)
}
