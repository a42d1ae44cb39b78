//! One test per weakness of the anchors' WAL (anchors.md §2.7 and §12), named after it.
//! Process-level ones (seq reuse after a real crash, two processes racing for the lock) live
//! in `crash.rs`; fsync-failure ones in `faults.rs`.

mod common;

use std::time::Duration;

use common::{all_records, segment_files, small_options, stray_files};
use finn_wal::{
    Durability, Error, Kind, Lsn, NewRecord, Op, Options, PressureReason, Retention, Wal,
};

fn put(key: &str, v: u8) -> NewRecord {
    NewRecord::put(Kind::Session, key, vec![v])
}

/// §2.7-2 / §12 (b): a torn last record must not make the next append unreadable.
#[test]
fn torn_tail_does_not_swallow_next_entry() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
        for i in 0..3 {
            wal.append(put("a", i)).unwrap();
        }
    }
    // Tear the last record: keep only its first 20 bytes (a crash mid-write).
    let seg = segment_files(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    // header + tag + synced_to + record header + key "a" + payload
    let frame_len = 8 + 1 + 8 + 42 + 1 + 1;
    let last_start = end - frame_len;
    let mut torn = bytes.clone();
    for b in &mut torn[last_start + 20..end] {
        *b = 0;
    }
    std::fs::write(&seg, &torn).unwrap();

    {
        let (wal, report) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
        assert_eq!(report.repairs.len(), 1, "{report:?}");
        assert!(
            matches!(report.repairs[0], finn_wal::Repair::TruncatedTail { offset, .. } if offset == last_start as u64)
        );
        assert_eq!(wal.last_lsn(), Lsn::new(2));
        assert_eq!(wal.append(put("next", 9)).unwrap(), Lsn::new(3));
    }
    let (wal, report) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let recs = all_records(&wal);
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[2].key.as_deref(), Some("next"));
    assert_eq!(recs[2].payload, vec![9]);
}

/// §2.7-3 / §12-6: after compaction the replay order is LSN order, not file-creation time.
#[test]
fn replay_order_is_lsn_order_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
    // The anchors' scenario: x, y, x, x, delete(y) → x@4 then y-delete@5.
    wal.append(put("x", 1)).unwrap();
    wal.append(put("y", 2)).unwrap();
    wal.rotate().unwrap();
    wal.append(put("x", 3)).unwrap();
    wal.append(put("x", 4)).unwrap();
    wal.rotate().unwrap();
    wal.append(NewRecord::delete(Kind::Session, "y")).unwrap();
    wal.rotate().unwrap();
    wal.append(put("z", 6)).unwrap(); // stays in the active segment
    let report = wal.compact().unwrap();
    assert_eq!(report.records_in, 5);
    assert_eq!(report.records_out, 2);
    let order: Vec<u64> = all_records(&wal).iter().map(|r| r.lsn.get()).collect();
    assert_eq!(order, [4, 5, 6]);
    // New appends go after, and the order survives reopen (the compacted file is newest on disk).
    wal.append(put("w", 7)).unwrap();
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let recs = all_records(&wal);
    assert_eq!(
        recs.iter().map(|r| r.lsn.get()).collect::<Vec<_>>(),
        [4, 5, 6, 7]
    );
    assert_eq!(recs[0].payload, vec![4]);
    assert_eq!(recs[1].op, Op::Delete);
    assert!(recs.windows(2).all(|w| w[0].id < w[1].id));
}

/// §2.7-4: compaction keeps the newest write per key, loads no whole history, and under
/// warning pressure does not run on every append.
#[test]
fn compaction_is_not_run_on_every_append_under_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 8 * 1024,
        wal_size_warning: 1024,
        wal_size_critical: u64::MAX,
        ..Options::default()
    };
    let (wal, _) = Wal::open(dir.path(), opts).unwrap();
    for i in 0..2000u32 {
        wal.append_with(put(&format!("k{}", i % 10), i as u8), Durability::None)
            .unwrap();
    }
    wal.sync().unwrap();
    // Give the background thread a chance to run what was requested.
    for _ in 0..200 {
        if wal.status().compactions > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = wal.status();
    assert!(
        s.compactions >= 1,
        "warning pressure should trigger compaction"
    );
    // At most one compaction per rotation, never one per append.
    assert!(s.compactions < 200, "compactions: {}", s.compactions);
    // Every key still has its newest value.
    let mut latest = std::collections::HashMap::new();
    for r in all_records(&wal) {
        latest.insert(r.key.clone().unwrap(), r.payload[0]);
    }
    for k in 0..10u32 {
        let newest = (1990 + k) as u8;
        assert_eq!(latest[&format!("k{k}")], newest);
    }
}

/// §2.7-5 / §12-2: retention never deletes what the caller has not confirmed as checkpointed.
#[test]
fn retention_never_deletes_unconfirmed_records() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 4096,
        retention: Retention {
            max_segments: Some(1),
            max_age: None,
        },
        ..Options::default()
    };
    let (wal, _) = Wal::open(dir.path(), opts).unwrap();
    for i in 0..200u32 {
        wal.append_with(
            NewRecord::event(Kind::Audit, vec![i as u8; 64]),
            Durability::None,
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    // Nothing confirmed: everything is still there.
    assert_eq!(all_records(&wal).len(), 200);
    assert_eq!(wal.first_lsn(), Some(Lsn::new(1)));

    wal.confirm_checkpointed(Lsn::new(100));
    wal.rotate().unwrap(); // retention runs after a rotation
    for _ in 0..200 {
        if wal.first_lsn() > Some(Lsn::new(1)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = wal.first_lsn().unwrap();
    assert!(
        first > Lsn::new(1),
        "retention should delete confirmed segments"
    );
    assert!(
        first <= Lsn::new(101),
        "retention passed the confirmed mark: {first}"
    );
    let recs = all_records(&wal);
    assert_eq!(recs.last().unwrap().lsn, Lsn::new(200));
    assert!(recs.iter().any(|r| r.lsn == Lsn::new(101)));
}

/// §2.6 / §2.7-5: prune deletes only whole segments at or below the confirmed LSN, never the
/// active one, and never a record above it.
#[test]
fn prune_deletes_only_confirmed_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
    for i in 0..120u32 {
        wal.append_with(
            NewRecord::event(Kind::Audit, vec![i as u8; 64]),
            Durability::None,
        )
        .unwrap();
    }
    let before = segment_files(dir.path()).len();
    let report = wal.prune_through(Lsn::new(50)).unwrap();
    assert!(report.segments_removed >= 1);
    assert!(segment_files(dir.path()).len() < before);
    let first = wal.first_lsn().unwrap();
    assert!(first <= Lsn::new(51) && first > Lsn::new(1));
    let lsns: Vec<u64> = all_records(&wal).iter().map(|r| r.lsn.get()).collect();
    assert_eq!(lsns, (first.get()..=120).collect::<Vec<_>>());
    // Pruning everything keeps the active segment and the LSN sequence.
    wal.prune_through(Lsn::new(1000)).unwrap();
    assert_eq!(
        wal.append(NewRecord::event(Kind::Audit, vec![])).unwrap(),
        Lsn::new(121)
    );
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
    assert_eq!(
        wal.append(NewRecord::event(Kind::Audit, vec![])).unwrap(),
        Lsn::new(122)
    );
}

/// §2.7-7 / §12-10: the lock is an OS lock; a stale or reused pid in the pid file does not
/// matter (the anchors refused to start when the pid file named any live process).
#[test]
fn stale_pid_file_does_not_block_and_live_lock_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wal.pid"), "1").unwrap(); // pid 1 is always alive
    let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("wal.pid")).unwrap(),
        std::process::id().to_string()
    );
    assert!(matches!(
        Wal::open(dir.path(), small_options(4096)),
        Err(Error::Locked { .. })
    ));
    drop(wal);
    assert!(!dir.path().join("wal.pid").exists());
}

/// §12 (d) / §2.7-8: no metadata file can hide the history; state is rebuilt from segments.
#[test]
fn no_metadata_file_can_hide_history() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
        for i in 0..50u8 {
            wal.append(put("k", i)).unwrap();
        }
    }
    std::fs::write(dir.path().join("wal.pid"), "garbage").unwrap();
    std::fs::write(dir.path().join("wal.lock"), "garbage").unwrap();
    std::fs::write(dir.path().join("checkpoint.json"), "{not json").unwrap();
    let (wal, report) = Wal::open(dir.path(), small_options(4096)).unwrap();
    assert!(report.is_clean());
    assert_eq!(all_records(&wal).len(), 50);
    assert_eq!(wal.last_lsn(), Lsn::new(50));
}

/// §2.7-8: reads verify every record; damage found while reading is an error, never
/// unverified data (the anchors' getEntriesSince skipped verification).
#[test]
fn entries_since_returns_only_verified_records() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
    for i in 0..100u32 {
        wal.append_with(
            NewRecord::event(Kind::Audit, vec![i as u8; 64]),
            Durability::None,
        )
        .unwrap();
    }
    wal.sync().unwrap();
    // Damage a payload byte of the first (sealed) segment behind the WAL's back.
    let seg = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(seg).unwrap();
    bytes[64 + 8 + 1 + 8 + 42 + 10] ^= 0xff;
    std::fs::write(seg, &bytes).unwrap();
    let err = wal.entries_since(Lsn::ZERO, None).unwrap_err();
    assert!(matches!(err, Error::Corrupt { offset: 64, .. }), "{err:?}");
    drop(wal);
    // On reopen the default mode trusts the sealed segment's seal, so the damage is still
    // found by reading (never hidden) and by `verify`; the strict mode refuses to open.
    let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
    let err = wal.entries_since(Lsn::ZERO, None).unwrap_err();
    assert!(matches!(err, Error::Corrupt { offset: 64, .. }), "{err:?}");
    let checks = wal.verify().unwrap();
    assert!(
        matches!(
            checks[0].damage,
            Some((64, finn_wal::Corruption::Checksum { .. }))
        ),
        "{checks:?}"
    );
    drop(wal);
    let strict = Options {
        recovery_mode: finn_wal::RecoveryMode::AbsoluteConsistency,
        ..small_options(4096)
    };
    assert!(matches!(
        Wal::open(dir.path(), strict),
        Err(Error::Corrupt { .. })
    ));
}

/// §2.7-9: pressure comes from real sizes and the filesystem's `f_bavail`; critical rejects
/// appends with a typed error and loses nothing already written.
#[test]
fn disk_pressure_critical_rejects_appends_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 4096,
        wal_size_warning: 2000,
        wal_size_critical: 4000,
        auto_compact: false,
        ..Options::default()
    };
    let (wal, _) = Wal::open(dir.path(), opts).unwrap();
    let mut acked = Vec::new();
    let err = loop {
        match wal.append(NewRecord::event(Kind::Audit, vec![7; 100])) {
            Ok(lsn) => acked.push(lsn),
            Err(e) => break e,
        }
    };
    assert!(matches!(
        err,
        Error::DiskPressureCritical {
            reason: PressureReason::WalSize,
            ..
        }
    ));
    let status = wal.status();
    assert!(status.wal_bytes >= 4000);
    assert_eq!(status.pressure, finn_wal::Pressure::Critical);
    assert_eq!(all_records(&wal).len(), acked.len());
    // Pruning confirmed segments relieves the pressure.
    wal.prune_through(*acked.last().unwrap()).unwrap();
    wal.append(NewRecord::event(Kind::Audit, vec![7; 100]))
        .unwrap();

    // Free space: with a critical threshold above any real free space, appends are refused.
    let dir2 = tempfile::tempdir().unwrap();
    let opts = Options {
        free_space_warning: u64::MAX,
        free_space_critical: u64::MAX - 1,
        ..small_options(4096)
    };
    let (wal, _) = Wal::open(dir2.path(), opts).unwrap();
    let err = wal
        .append(NewRecord::event(Kind::Audit, vec![]))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::DiskPressureCritical {
            reason: PressureReason::FreeSpace,
            free_bytes: Some(_),
            ..
        }
    ));
    assert!(wal.status().free_bytes.is_some());
}

/// §2.7-10: ULIDs are monotonic across restarts even when the clock is behind the newest ULID.
#[test]
fn ulids_increase_across_restarts_even_if_clock_steps_back() {
    let dir = tempfile::tempdir().unwrap();
    let future_ms = 4_000_000_000_000; // year 2096: the wall clock is "behind" this record
    {
        let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
        wal.append_replicated(&[finn_wal::Record {
            lsn: Lsn::new(1),
            id: finn_wal::Ulid::from_parts(future_ms, 5),
            timestamp_ms: future_ms,
            kind: Kind::State,
            op: Op::Event,
            key: None,
            payload: vec![],
        }])
        .unwrap();
        wal.rotate().unwrap();
        // The segment with the future ULID is pruned: the tail still remembers it.
        wal.prune_through(Lsn::new(1)).unwrap();
        assert_eq!(wal.first_lsn(), None);
    }
    let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
    let lsn = wal.append(NewRecord::event(Kind::State, vec![])).unwrap();
    assert_eq!(lsn, Lsn::new(2));
    let r = wal.read(lsn).unwrap().unwrap();
    assert!(r.id > finn_wal::Ulid::from_parts(future_ms, 5));
    assert!(r.timestamp_ms >= future_ms);
}

/// §2.7-6: directory entries are durable: no temp files are left behind by normal operation.
#[test]
fn normal_operation_leaves_no_stray_files() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
    for i in 0..300u32 {
        wal.append_with(put(&format!("k{}", i % 3), i as u8), Durability::None)
            .unwrap();
    }
    wal.compact().unwrap();
    wal.prune_through(Lsn::new(100)).unwrap();
    assert!(
        stray_files(dir.path()).is_empty(),
        "{:?}",
        stray_files(dir.path())
    );
}
