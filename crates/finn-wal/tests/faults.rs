//! Injected failures (fail points): fsync errors poison the WAL and are never retried, and a
//! crash between any two steps of rotation or compaction loses nothing and leaves no orphan
//! (anchors.md §2.7-4, §2.7-6, §12 (c)).
//!
//! Fail points are process-global; `FailScenario` serialises the tests of this binary.

mod common;

use common::{all_records, segment_files, small_options, stray_files};
use finn_wal::{Durability, Error, Kind, Lsn, NewRecord, Op, Wal};

fn put(key: &str, v: u32) -> NewRecord {
    NewRecord::put(Kind::Memory, key, v.to_le_bytes().to_vec())
}

#[test]
fn fsync_error_poisons_and_reopen_keeps_every_acknowledged_record() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
    let acked = wal.append(put("a", 1)).unwrap();
    fail::cfg("wal::writer::sync_data", "1*return").unwrap();
    assert!(matches!(wal.append(put("b", 2)), Err(Error::Io { .. })));
    // The fail point is exhausted, so a retried fsync would now succeed: it must not happen.
    assert!(matches!(wal.append(put("c", 3)), Err(Error::Poisoned)));
    assert!(matches!(wal.sync(), Err(Error::Poisoned)));
    assert!(matches!(
        wal.append_with(put("d", 4), Durability::None),
        Err(Error::Poisoned)
    ));
    assert!(wal.status().poisoned);
    assert_eq!(wal.durable_lsn(), acked);
    drop(wal);
    scenario.teardown();

    let (wal, report) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let recs = all_records(&wal);
    assert_eq!(recs[0].lsn, acked);
    assert_eq!(recs[0].payload, 1u32.to_le_bytes());
    // The record whose fsync failed may or may not have reached the disk; either way the
    // log continues after the true tail without reusing an LSN.
    let next = wal.append(put("e", 5)).unwrap();
    assert_eq!(next.get(), wal.last_lsn().get());
    assert!(next > recs.last().unwrap().lsn);
}

#[test]
fn write_error_poisons() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
    wal.append(put("a", 1)).unwrap();
    fail::cfg("wal::writer::write", "1*return").unwrap();
    assert!(matches!(wal.append(put("b", 2)), Err(Error::Io { .. })));
    assert!(matches!(wal.append(put("c", 3)), Err(Error::Poisoned)));
    drop(wal);
    scenario.teardown();
    let (wal, _) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
    assert_eq!(all_records(&wal).len(), 1);
    assert_eq!(wal.append(put("d", 4)).unwrap(), Lsn::new(2));
}

/// Fills a WAL with keyed history spread over several sealed segments.
fn history(wal: &Wal) -> Vec<(u64, String, u32)> {
    let mut acked = Vec::new();
    for i in 0..400u32 {
        let key = format!("k{}", i % 7);
        let lsn = wal.append_with(put(&key, i), Durability::None).unwrap();
        acked.push((lsn.get(), key, i));
    }
    wal.sync().unwrap();
    acked
}

fn keyed_state(records: &[finn_wal::Record]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut state = std::collections::BTreeMap::new();
    for r in records {
        match r.op {
            Op::Put => {
                state.insert(r.key.clone().unwrap(), r.payload.clone());
            }
            Op::Delete => {
                state.remove(r.key.as_deref().unwrap());
            }
            Op::Event => {}
        }
    }
    state
}

#[test]
fn crash_between_compaction_steps_loses_nothing_and_leaves_no_orphan() {
    for point in [
        "wal::compaction::sync",
        "wal::compaction::before_rename",
        "wal::compaction::after_rename",
    ] {
        let scenario = fail::FailScenario::setup();
        let dir = tempfile::tempdir().unwrap();
        let opts = finn_wal::Options {
            auto_compact: false,
            ..small_options(4096)
        };
        let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        history(&wal);
        let expected = keyed_state(&all_records(&wal));
        let last = wal.last_lsn();
        fail::cfg(point, "return").unwrap();
        assert!(wal.compact().is_err(), "{point}");
        // The "crash": the handle goes away at this point.
        drop(wal);
        scenario.teardown();

        let (wal, report) = Wal::open(dir.path(), opts.clone()).unwrap();
        let recs = all_records(&wal);
        assert_eq!(keyed_state(&recs), expected, "{point}");
        assert_eq!(wal.last_lsn(), last, "{point}");
        assert!(recs.windows(2).all(|w| w[0].lsn < w[1].lsn), "{point}");
        assert!(
            stray_files(dir.path()).is_empty(),
            "{point}: {:?}",
            stray_files(dir.path())
        );
        if point == "wal::compaction::after_rename" {
            assert!(
                report
                    .repairs
                    .iter()
                    .any(|r| matches!(r, finn_wal::Repair::RemovedSupersededSegment { .. })),
                "{report:?}"
            );
        }
        // A full compaction afterwards still works and keeps the same state.
        wal.compact().unwrap();
        assert_eq!(keyed_state(&all_records(&wal)), expected, "{point}");
    }
}

#[test]
fn crash_during_rotation_loses_nothing_and_leaves_no_orphan() {
    for point in ["wal::segment::create_sync", "wal::segment::create_rename"] {
        let scenario = fail::FailScenario::setup();
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
        let mut acked = Vec::new();
        fail::cfg(point, "return").unwrap();
        let err = loop {
            match wal.append(NewRecord::event(Kind::Audit, vec![1; 100])) {
                Ok(lsn) => acked.push(lsn),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::Io { .. }), "{point}: {err:?}");
        assert!(matches!(
            wal.append(NewRecord::event(Kind::Audit, vec![])),
            Err(Error::Poisoned)
        ));
        drop(wal);
        scenario.teardown();
        let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
        let lsns: Vec<Lsn> = all_records(&wal).iter().map(|r| r.lsn).collect();
        assert_eq!(lsns, acked, "{point}");
        assert!(stray_files(dir.path()).is_empty(), "{point}");
        // Rotation seals the full segment before it creates the next one, so the reopened WAL
        // starts a new segment after the sealed one.
        assert_eq!(segment_files(dir.path()).len(), 2, "{point}");
        assert!(
            wal.verify().unwrap().iter().all(|s| s.is_intact()),
            "{point}"
        );
        wal.append(NewRecord::event(Kind::Audit, vec![1; 100]))
            .unwrap();
    }
}

#[test]
fn crash_during_prune_leaves_a_prefix_of_the_log() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
    history(&wal);
    fail::cfg("wal::prune::remove", "return").unwrap();
    assert!(wal.prune_through(Lsn::new(300)).is_err());
    drop(wal);
    scenario.teardown();
    let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
    let lsns: Vec<u64> = all_records(&wal).iter().map(|r| r.lsn.get()).collect();
    let first = lsns[0];
    assert_eq!(lsns, (first..=400).collect::<Vec<_>>());
}
