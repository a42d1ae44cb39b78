//! The public API end to end: appends, reads, reopen, locking, batches, replication.

use finn_wal::{Durability, Error, Kind, Lsn, NewRecord, Op, Options, Wal};

fn small() -> Options {
    Options {
        segment_size: 64 * 1024,
        ..Options::default()
    }
}

#[test]
fn appends_get_incrementing_lsns_and_replay_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, report) = Wal::open(dir.path(), small()).unwrap();
        assert!(report.is_clean());
        assert_eq!(wal.last_lsn(), Lsn::ZERO);
        assert_eq!(wal.first_lsn(), None);
        for (i, path) in ["a", "b", "c"].iter().enumerate() {
            let lsn = wal
                .append(NewRecord::put(Kind::Session, *path, vec![i as u8]))
                .unwrap();
            assert_eq!(lsn, Lsn::new(i as u64 + 1));
        }
        assert_eq!(wal.last_lsn(), Lsn::new(3));
        assert_eq!(wal.durable_lsn(), Lsn::new(3));
        assert_eq!(wal.status().last_lsn, Lsn::new(3));
    }
    let (wal, report) = Wal::open(dir.path(), small()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.last_lsn, Lsn::new(3));
    let all: Vec<_> = wal
        .iter_from(Lsn::ZERO)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].key.as_deref(), Some("a"));
    assert_eq!(all[2].payload, vec![2]);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(
        wal.append(NewRecord::event(Kind::Audit, b"x".to_vec()))
            .unwrap(),
        Lsn::new(4)
    );
}

#[test]
fn entries_since_and_limits_paginate() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small()).unwrap();
    for i in 0..10u8 {
        wal.append_with(NewRecord::event(Kind::Memory, vec![i]), Durability::None)
            .unwrap();
    }
    let page = wal.entries_since(Lsn::ZERO, Some(3)).unwrap();
    assert_eq!(
        page.iter().map(|r| r.lsn.get()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let page = wal.entries_since(Lsn::new(3), Some(3)).unwrap();
    assert_eq!(page[0].lsn, Lsn::new(4));
    let page = wal.entries_since(Lsn::new(7), Some(2)).unwrap();
    assert_eq!(page.iter().map(|r| r.lsn.get()).collect::<Vec<_>>(), [8, 9]);
    assert_eq!(wal.entries_since(Lsn::new(7), None).unwrap().len(), 3);
    assert_eq!(wal.read(Lsn::new(5)).unwrap().unwrap().payload, vec![4]);
    assert_eq!(wal.read(Lsn::new(11)).unwrap(), None);
    assert_eq!(wal.sync().unwrap(), Lsn::new(10));
}

#[test]
fn rotation_keeps_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 4096,
        ..Options::default()
    };
    {
        let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        for i in 0..200u32 {
            wal.append_with(
                NewRecord::event(Kind::Bead, vec![0u8; 100 + (i % 7) as usize]),
                Durability::None,
            )
            .unwrap();
        }
        assert!(wal.status().segments > 5);
    }
    let (wal, report) = Wal::open(dir.path(), opts).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let lsns: Vec<u64> = wal
        .iter_from(Lsn::ZERO)
        .unwrap()
        .map(|r| r.unwrap().lsn.get())
        .collect();
    assert_eq!(lsns, (1..=200).collect::<Vec<_>>());
    for probe in [1, 57, 123, 200] {
        assert_eq!(wal.read(Lsn::new(probe)).unwrap().unwrap().lsn.get(), probe);
    }
}

#[test]
fn second_opener_in_the_same_process_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small()).unwrap();
    match Wal::open(dir.path(), small()) {
        Err(Error::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(wal);
    Wal::open(dir.path(), small()).unwrap();
}

#[test]
fn read_only_open_sees_records_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small()).unwrap();
    wal.append(NewRecord::event(Kind::Config, b"x".to_vec()))
        .unwrap();
    let ro = Wal::open_read_only(dir.path(), small()).unwrap();
    assert_eq!(ro.last_lsn(), Lsn::new(1));
    assert_eq!(ro.read(Lsn::new(1)).unwrap().unwrap().payload, b"x");
    assert!(matches!(
        ro.append(NewRecord::event(Kind::Config, b"y".to_vec())),
        Err(Error::ReadOnly)
    ));
    assert!(matches!(ro.sync(), Err(Error::ReadOnly)));
}

#[test]
fn batches_get_consecutive_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small()).unwrap();
    wal.append(NewRecord::event(Kind::State, b"0".to_vec()))
        .unwrap();
    let lsns = wal
        .append_batch(
            vec![
                NewRecord::put(Kind::Bead, "b1", b"1".to_vec()),
                NewRecord::delete(Kind::Bead, "b0"),
                NewRecord::event(Kind::Audit, b"3".to_vec()),
            ],
            Durability::Sync,
        )
        .unwrap();
    assert_eq!(lsns, vec![Lsn::new(2), Lsn::new(3), Lsn::new(4)]);
    assert_eq!(wal.append_batch(vec![], Durability::Sync).unwrap(), vec![]);
    let r = wal.read(Lsn::new(3)).unwrap().unwrap();
    assert_eq!(r.op, Op::Delete);
    assert_eq!(r.key.as_deref(), Some("b0"));
}

#[test]
fn invalid_records_are_rejected_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small()).unwrap();
    let keyless_put = NewRecord {
        kind: Kind::Bead,
        op: Op::Put,
        key: None,
        payload: vec![],
    };
    assert!(matches!(
        wal.append(keyless_put),
        Err(Error::InvalidRecord { .. })
    ));
    assert!(matches!(
        wal.append(NewRecord::event(Kind::User(0x8000), vec![])),
        Err(Error::InvalidRecord { .. })
    ));
    assert!(matches!(
        wal.append(NewRecord::event(Kind::Bead, vec![0u8; 70 * 1024])),
        Err(Error::TooLarge { .. })
    ));
    assert_eq!(wal.last_lsn(), Lsn::ZERO);
}

#[test]
fn replication_keeps_lsn_ulid_and_timestamp() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let (src, _) = Wal::open(src_dir.path(), small()).unwrap();
    for i in 0..5u8 {
        src.append(NewRecord::put(Kind::Memory, format!("k{i}"), vec![i]))
            .unwrap();
    }
    let records = src.entries_since(Lsn::new(2), None).unwrap();
    let shipped =
        finn_wal::batch::decode_records(&finn_wal::batch::encode_records(&records)).unwrap();
    assert_eq!(shipped, records);

    let (dst, _) = Wal::open(dst_dir.path(), small()).unwrap();
    // An empty WAL accepts a gap before the first replicated record.
    dst.append_replicated(&shipped).unwrap();
    assert_eq!(dst.last_lsn(), Lsn::new(5));
    assert_eq!(dst.durable_lsn(), Lsn::new(5));
    assert_eq!(dst.entries_since(Lsn::ZERO, None).unwrap(), records);
    // Replaying the same records again is refused.
    assert!(matches!(
        dst.append_replicated(&shipped),
        Err(Error::InvalidLsn { .. })
    ));
    // A later own append continues after them with a larger ULID.
    let lsn = dst.append(NewRecord::event(Kind::Audit, vec![])).unwrap();
    assert_eq!(lsn, Lsn::new(6));
    assert!(dst.read(lsn).unwrap().unwrap().id > records[2].id);
}

#[test]
fn advance_to_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), small()).unwrap();
        wal.append(NewRecord::event(Kind::State, vec![])).unwrap();
        wal.advance_to(Lsn::new(100)).unwrap();
    }
    let (wal, _) = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(
        wal.append(NewRecord::event(Kind::State, vec![])).unwrap(),
        Lsn::new(100)
    );
    let lsns: Vec<u64> = wal
        .iter_from(Lsn::ZERO)
        .unwrap()
        .map(|r| r.unwrap().lsn.get())
        .collect();
    assert_eq!(lsns, [1, 100]);
}

#[test]
fn codec_roundtrips_serde_values() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct S {
        a: u64,
        b: Vec<String>,
    }
    let v = S {
        a: 9,
        b: vec!["x".into()],
    };
    let bytes = finn_wal::codec::encode(&v).unwrap();
    assert_eq!(finn_wal::codec::decode::<S>(&bytes).unwrap(), v);
    assert!(finn_wal::codec::decode::<S>(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn status_counts_appends_and_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small()).unwrap();
    for _ in 0..4 {
        wal.append(NewRecord::event(Kind::Audit, vec![1; 10]))
            .unwrap();
    }
    let s = wal.status();
    assert_eq!(s.appends, 4);
    assert_eq!(s.syncs, 4);
    assert!((s.average_group_size - 1.0).abs() < 1e-9);
    assert!(s.bytes_written > 40);
    assert!(!s.poisoned);
    assert_eq!(s.segments, 1);
}

#[test]
fn batch_durability_is_flushed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small()).unwrap();
    let lsn = wal
        .append_with(
            NewRecord::event(Kind::Audit, vec![1]),
            Durability::Batch {
                max_delay: std::time::Duration::from_millis(5),
            },
        )
        .unwrap();
    // Poll: the background flusher must cover it soon; no timing is asserted.
    while wal.durable_lsn() < lsn {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Open folds keys lazily (the active segment's up to where it stopped reading, sealed
/// segments' whole), and appends, prune, truncation and compaction keep the count of
/// superseded bytes up to date: at any moment it must equal what a fresh open of the same
/// files counts, whether the log was reopened in between or never closed.
#[test]
fn superseded_bytes_always_match_a_fresh_count_across_reopens() {
    let options = || Options {
        segment_size: 16 * 1024,
        auto_compact: false,
        ..Options::default()
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut wals: Vec<Wal> = dirs
        .iter()
        .map(|d| Wal::open(d.path(), options()).unwrap().0)
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for step in 0..1500u64 {
        let op = next(100);
        let key = format!("k{}", next(40));
        let len = 16 + next(200) as usize;
        for wal in &wals {
            match op {
                0..55 => {
                    let put = NewRecord::put(Kind::State, &key, vec![1; len]);
                    wal.append_with(put, Durability::None).unwrap();
                }
                55..70 => {
                    let delete = NewRecord::delete(Kind::State, &key);
                    wal.append_with(delete, Durability::None).unwrap();
                }
                70..85 => {
                    let event = NewRecord::event(Kind::Audit, vec![2; len]);
                    wal.append_with(event, Durability::None).unwrap();
                }
                85..90 => wal.rotate().unwrap(),
                90..96 => {
                    let cut = wal.last_lsn().get().saturating_sub(50);
                    wal.prune_through(Lsn::new(cut)).unwrap();
                }
                96..98 => {
                    let last = wal.last_lsn().get();
                    let first = wal.first_lsn().map_or(last, |l| l.get());
                    let to = last.saturating_sub(3).max(first);
                    match wal.truncate_after(Lsn::new(to)) {
                        // Compacted records cannot be cut apart; the log is unchanged.
                        Ok(()) | Err(Error::InvalidLsn { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                _ => {
                    wal.compact().unwrap();
                }
            }
        }
        // Asking folds every pending key in, so ask now and then: several operations meet
        // the pending segments first.
        if next(8) == 0 {
            for (wal, dir) in wals.iter().zip(&dirs) {
                let fresh = Wal::open_read_only(dir.path(), options()).unwrap();
                assert_eq!(
                    wal.status().garbage_bytes,
                    fresh.status().garbage_bytes,
                    "step {step}, op {op}"
                );
            }
        }
        // The second log is reopened now and then; the first never is.
        if next(6) == 0 {
            wals.pop();
            wals.push(Wal::open(dirs[1].path(), options()).unwrap().0);
        }
    }
}

/// Group commit: eight writers appending with `Sync` share fdatasyncs (one sync per record
/// would be the naive log), and every append is durable when it returns.
#[test]
fn concurrent_sync_appends_share_fdatasyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), Options::default()).unwrap();
    let before = wal.status();
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let wal = &wal;
            s.spawn(move || {
                for _ in 0..100 {
                    let lsn = wal
                        .append(NewRecord::event(Kind::Audit, vec![t; 256]))
                        .unwrap();
                    assert!(wal.durable_lsn() >= lsn);
                }
            });
        }
    });
    let after = wal.status();
    let syncs = after.syncs - before.syncs;
    assert_eq!(wal.last_lsn(), Lsn::new(800));
    assert!(
        syncs <= 400,
        "800 appends took {syncs} fdatasyncs: writers did not share them"
    );
}
