//! Bringing the local WAL up to the latest acknowledged record after a base state was restored.
//!
//! The anchors restored the newest checkpoint and, at best, the newest shipped batch; records
//! written between the last checkpoint and the loss were gone, and restored batches landed where
//! the WAL never read them. Here the records after the base state's LSN are gathered from every
//! source that ships WAL (and from what the local WAL still holds), and the missing ones are
//! appended to the local WAL verbatim with `append_replicated` (same LSN, ULID and timestamp),
//! after `advance_to` moved the WAL past the base LSN, so new appends continue above them and
//! no LSN is ever reused.

use std::collections::BTreeMap;

use finn_wal::{Lsn, Record, Wal};

/// Records appended per `append_replicated` call (each call ends with an fdatasync).
pub const REPLAY_CHUNK: usize = 8192;

/// What [`restore_records`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplayOutcome {
    /// Records appended to the local WAL.
    pub restored: u64,
    /// `(last contiguous LSN, first missing LSN)` when records exist beyond a hole.
    pub gap: Option<(Lsn, Lsn)>,
}

/// Appends to `wal` the records of `shipped` that continue it above `base`, in LSN order, and
/// stops at the first hole.
pub(crate) fn restore_records(
    wal: &Wal,
    base: Lsn,
    shipped: impl IntoIterator<Item = Record>,
) -> Result<ReplayOutcome, finn_wal::Error> {
    let local_last = wal.last_lsn();
    if local_last < base {
        // The WAL ends below the checkpoint (empty, or older than it): records up to `base`
        // are in the restored files, so the WAL continues right after it.
        wal.advance_to(base.next())?;
    }
    let start = local_last.max(base).next();
    let mut by_lsn: BTreeMap<Lsn, Record> = BTreeMap::new();
    for record in shipped {
        if record.lsn >= start {
            // The first source listed wins for a given LSN; sources are asked best first.
            by_lsn.entry(record.lsn).or_insert(record);
        }
    }
    let mut out = ReplayOutcome::default();
    let mut expected = start;
    let mut chunk = Vec::with_capacity(REPLAY_CHUNK.min(by_lsn.len()));
    let mut leftover = false;
    for (lsn, record) in by_lsn {
        if lsn != expected {
            leftover = true;
            break;
        }
        chunk.push(record);
        expected = expected.next();
        if chunk.len() == REPLAY_CHUNK {
            wal.append_replicated(&chunk)?;
            out.restored += chunk.len() as u64;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        wal.append_replicated(&chunk)?;
        out.restored += chunk.len() as u64;
    }
    if leftover {
        out.gap = Some((Lsn::new(expected.get() - 1), expected));
    }
    Ok(out)
}
