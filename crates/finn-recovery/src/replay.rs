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
    /// Records to append, in LSN order. LSNs may jump where the shipped history does (a
    /// lineage forked by a restore to the past continues above its prefix's high-water mark).
    pub records: Vec<Record>,
    /// `(last LSN restored, first missing LSN)` when a source reported a hole right after the
    /// planned records.
    pub gap: Option<(Lsn, Lsn)>,
    /// The first LSN at which the local WAL holds a record that differs from the shipped one.
    /// The plan then ignores the local WAL: the caller sets it aside and applies to a new one.
    pub diverged: Option<Lsn>,
}

/// Decides which of `shipped` continue `wal` above `base`, in LSN order.
///
/// `shipped` is what the sources verified: each source follows the chain of its batches (every
/// batch names the LSN it follows) and stops at the first hole, which it reports in
/// `reported_gaps` (first and last missing LSN). A jump in LSNs inside that stream is therefore
/// not a hole but the lineage's own history: a restore to the past forks and continues
/// numbering above the prefix's high-water mark, and the records after the jump are
/// acknowledged writes like any other. A reported hole that starts right after the planned
/// records is the plan's gap.
///
/// The local WAL's records above `base` are compared with the shipped records at the same LSNs:
/// equal records are the same history (the local copy is kept and shipping continues after
/// it); a different record, or a local record at an LSN the shipped history jumps over, means
/// another writer continued this lineage while this machine was away, and the local WAL is not
/// part of the restored history ([`ReplayPlan::diverged`]).
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
            let differs = match by_lsn.get(&local.lsn) {
                Some(remote) => *remote != local,
                // The verified shipped history goes on above this LSN without it: it jumped
                // over a record this WAL holds.
                None => by_lsn.range(local.lsn..).next().is_some(),
            };
            if differs {
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
    // The LSN after the last record the WAL will hold once the plan is applied.
    let mut expected = start;
    for (lsn, record) in by_lsn.range(start..) {
        out.records.push(record.clone());
        expected = lsn.next();
    }
    if reported_gaps
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
        // Only a call's first record must continue the WAL (later ones may skip LSNs), and it
        // may skip only right after `advance_to`: a jump in the shipped history (a fork
        // continuing above its prefix's high-water mark) is carried over that way.
        if let Some(first) = chunk.first()
            && first.lsn > wal.last_lsn().next()
        {
            wal.advance_to(first.lsn)?;
        }
        wal.append_replicated(chunk)?;
        restored += chunk.len() as u64;
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> Wal {
        let options = finn_wal::Options {
            segment_size: 1 << 20,
            preallocate: false,
            free_space_warning: 0,
            free_space_critical: 0,
            ..finn_wal::Options::default()
        };
        Wal::open(dir, options).unwrap().0
    }

    /// A WAL holding one record at each LSN of `lsns` (in order), advanced over the jumps.
    fn wal_with(dir: &std::path::Path, lsns: &[u64], tag: &str) -> Wal {
        let wal = open(dir);
        for &lsn in lsns {
            wal.advance_to(Lsn::new(lsn)).unwrap();
            let got = wal
                .append(finn_wal::NewRecord::put(
                    finn_wal::Kind::State,
                    format!("k{lsn}"),
                    format!("{tag} {lsn}"),
                ))
                .unwrap();
            assert_eq!(got.get(), lsn);
        }
        wal
    }

    fn all(wal: &Wal) -> Vec<Record> {
        wal.iter_from(Lsn::new(1))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    fn forked() -> Vec<u64> {
        (1..=10).chain(20..=25).collect()
    }

    #[test]
    fn a_jump_in_the_shipped_history_is_planned_and_applied_across() {
        let writer = tempfile::tempdir().unwrap();
        let shipped = all(&wal_with(writer.path(), &forked(), "v"));
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path());
        let planned = plan(&wal, Lsn::new(3), shipped.clone(), &[]).unwrap();
        assert_eq!(planned.gap, None);
        assert_eq!(planned.diverged, None);
        assert_eq!(planned.records, shipped[3..]);
        assert_eq!(apply(&wal, Lsn::new(3), &planned.records).unwrap(), 13);
        assert_eq!(all(&wal), shipped[3..]);
        let next = wal
            .append(finn_wal::NewRecord::event(finn_wal::Kind::Session, "next"))
            .unwrap();
        assert_eq!(next.get(), 26);
    }

    #[test]
    fn a_jump_inside_one_replay_chunk_is_applied() {
        // The jump is not at a chunk boundary: later records of one call may skip LSNs.
        let writer = tempfile::tempdir().unwrap();
        let shipped = all(&wal_with(writer.path(), &[1, 2, 7, 8, 30], "v"));
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path());
        apply(&wal, Lsn::ZERO, &shipped).unwrap();
        assert_eq!(all(&wal), shipped);
        assert_eq!(wal.last_lsn().get(), 30);
    }

    #[test]
    fn a_reported_hole_is_still_the_plans_gap() {
        let writer = tempfile::tempdir().unwrap();
        let shipped = all(&wal_with(writer.path(), &forked(), "v"));
        let before_hole: Vec<Record> = shipped[..10].to_vec();
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path());
        let planned = plan(
            &wal,
            Lsn::ZERO,
            before_hole.clone(),
            &[(Lsn::new(11), Lsn::new(19))],
        )
        .unwrap();
        assert_eq!(planned.records, before_hole);
        assert_eq!(planned.gap, Some((Lsn::new(10), Lsn::new(11))));
    }

    #[test]
    fn a_local_wal_on_the_same_forked_history_is_kept_and_continued() {
        let writer = tempfile::tempdir().unwrap();
        let shipped = all(&wal_with(writer.path(), &forked(), "v"));
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path());
        wal.append_replicated(&shipped[..12]).unwrap(); // 1..=10, 20, 21
        let planned = plan(&wal, Lsn::ZERO, shipped.clone(), &[]).unwrap();
        assert_eq!(planned.diverged, None);
        assert_eq!(planned.records, shipped[12..]);
        apply(&wal, Lsn::ZERO, &planned.records).unwrap();
        assert_eq!(all(&wal), shipped);
    }

    #[test]
    fn a_local_record_the_shipped_history_jumps_over_is_divergence() {
        // This machine wrote 11 and 12; meanwhile the lineage went on elsewhere at 20.
        let writer = tempfile::tempdir().unwrap();
        let shipped = all(&wal_with(writer.path(), &forked(), "v"));
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path());
        wal.append_replicated(&shipped[..10]).unwrap();
        wal.append(finn_wal::NewRecord::event(
            finn_wal::Kind::Session,
            "local 11",
        ))
        .unwrap();
        wal.append(finn_wal::NewRecord::event(
            finn_wal::Kind::Session,
            "local 12",
        ))
        .unwrap();
        let planned = plan(&wal, Lsn::ZERO, shipped.clone(), &[]).unwrap();
        assert_eq!(planned.diverged, Some(Lsn::new(11)));
        assert_eq!(planned.records, shipped, "planned against a fresh WAL");
        // Records the shipped history has not reached yet are not divergence.
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path());
        wal.append_replicated(&shipped).unwrap();
        wal.append(finn_wal::NewRecord::event(
            finn_wal::Kind::Session,
            "local 26",
        ))
        .unwrap();
        let planned = plan(&wal, Lsn::ZERO, shipped, &[]).unwrap();
        assert_eq!(planned.diverged, None);
        assert!(planned.records.is_empty());
    }
}
