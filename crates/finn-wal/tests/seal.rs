//! Format version 2: seals written at rotation and trusted by open, torn or missing seals,
//! damage inside sealed segments, version 1 segments, and the `synced_to` marker that tells a
//! torn tail from corruption after a power loss.

mod common;

use std::path::Path;

use common::{all_records, copy_dir, segment_files, small_options};
use finn_wal::{
    Corruption, Durability, Error, Kind, Lsn, NewRecord, Options, RecoveryMode, Repair, Wal,
};

const PAYLOAD: usize = 100;
/// Bytes of a single-record event frame: frame header + tag + `synced_to` + record header +
/// payload (docs/formats/finn-wal.md).
const FRAME: usize = 8 + 1 + 8 + 42 + PAYLOAD;
const HEADER: usize = 64;

fn event(i: u64) -> NewRecord {
    NewRecord::event(Kind::Audit, vec![i as u8; PAYLOAD])
}

fn with_mode(mode: RecoveryMode, segment_size: u64) -> Options {
    Options {
        recovery_mode: mode,
        ..small_options(segment_size)
    }
}

/// A WAL of `n` events over several 4 KiB segments, closed cleanly.
fn sealed_log(dir: &Path, n: u64) {
    let (wal, _) = Wal::open(dir, small_options(4096)).unwrap();
    for i in 1..=n {
        wal.append_with(event(i), Durability::None).unwrap();
    }
    wal.sync().unwrap();
}

fn ends_in_seal(path: &Path) -> bool {
    std::fs::read(path).unwrap().ends_with(b"FINNSEAL")
}

#[test]
fn rotation_writes_a_seal_that_open_trusts() {
    let dir = tempfile::tempdir().unwrap();
    sealed_log(dir.path(), 120);
    let files = segment_files(dir.path());
    assert!(files.len() >= 4, "{files:?}");
    let (newest, sealed) = files.split_last().unwrap();
    assert!(sealed.iter().all(|p| ends_in_seal(p)), "{files:?}");
    assert!(!ends_in_seal(newest));

    let (wal, report) = Wal::open(dir.path(), small_options(4096)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.trusted_seals, sealed.len());
    assert_eq!(report.records, 120);
    assert_eq!(wal.last_lsn(), Lsn::new(120));
    let recs = all_records(&wal);
    assert_eq!(recs.len(), 120);
    assert!(recs.iter().zip(1..).all(|(r, i)| r.lsn == Lsn::new(i)));
    // Point reads seek with the index the seal carries.
    for lsn in [1, 37, 64, 119] {
        let r = wal.read(Lsn::new(lsn)).unwrap().unwrap();
        assert_eq!(r.payload, vec![lsn as u8; PAYLOAD]);
    }
    assert!(wal.verify().unwrap().iter().all(|c| c.is_intact()));
    // LSNs continue from the seals' tail.
    assert_eq!(wal.append(event(121)).unwrap(), Lsn::new(121));

    // The strict mode reads everything and agrees.
    drop(wal);
    let (wal, report) = Wal::open(
        dir.path(),
        with_mode(RecoveryMode::AbsoluteConsistency, 4096),
    )
    .unwrap();
    assert_eq!(report.trusted_seals, 0);
    assert_eq!(report.records, 121);
    assert_eq!(all_records(&wal).len(), 121);
}

#[test]
fn a_missing_seal_trailer_is_scanned_and_sealed_again() {
    let dir = tempfile::tempdir().unwrap();
    sealed_log(dir.path(), 60);
    let first = segment_files(dir.path())[0].clone();
    // A crash after the seal frame was synced but before the trailer and the cut landed.
    let len = std::fs::metadata(&first).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap();
    f.set_len(len - 16).unwrap();
    drop(f);
    assert!(!ends_in_seal(&first));

    let (wal, report) = Wal::open(dir.path(), small_options(4096)).unwrap();
    assert!(
        report
            .repairs
            .iter()
            .any(|r| matches!(r, Repair::Resealed { segment } if *segment == first)),
        "{report:?}"
    );
    assert_eq!(all_records(&wal).len(), 60);
    assert!(ends_in_seal(&first));
    drop(wal);
    let (_, report) = Wal::open(dir.path(), small_options(4096)).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn a_torn_seal_of_the_newest_segment_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
        for i in 1..=10 {
            wal.append(event(i)).unwrap();
        }
        wal.rotate().unwrap();
    }
    // The crash came while sealing: the next segment does not exist yet and the seal frame is
    // torn (only its first bytes landed, no trailer).
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 2);
    std::fs::remove_file(&files[1]).unwrap();
    let data_end = HEADER + 10 * FRAME;
    let mut bytes = std::fs::read(&files[0]).unwrap();
    assert_eq!(&bytes[bytes.len() - 8..], b"FINNSEAL");
    for b in &mut bytes[data_end + 12..] {
        *b = 0;
    }
    std::fs::write(&files[0], &bytes).unwrap();

    let (wal, report) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
    assert!(
        matches!(report.repairs[..], [Repair::TruncatedTail { offset, .. }] if offset == data_end as u64),
        "{report:?}"
    );
    assert_eq!(report.trusted_seals, 0);
    assert_eq!(all_records(&wal).len(), 10);
    // The unsealed segment is the active one again and the log goes on.
    assert_eq!(wal.append(event(11)).unwrap(), Lsn::new(11));
    assert_eq!(segment_files(dir.path()).len(), 1);
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(all_records(&wal).len(), 11);
}

#[test]
fn a_failed_seal_poisons_and_the_segment_is_reused_unsealed() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
    for i in 1..=5 {
        wal.append(event(i)).unwrap();
    }
    fail::cfg("wal::segment::seal", "return").unwrap();
    assert!(matches!(wal.rotate(), Err(Error::Io { .. })));
    assert!(matches!(wal.append(event(6)), Err(Error::Poisoned)));
    drop(wal);
    scenario.teardown();
    let (wal, report) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(all_records(&wal).len(), 5);
    assert_eq!(wal.append(event(6)).unwrap(), Lsn::new(6));
}

#[test]
fn a_bit_flip_in_a_sealed_segment_is_found_by_iteration_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    sealed_log(dir.path(), 60);
    let first = segment_files(dir.path())[0].clone();
    // A payload byte of the second frame.
    let victim = HEADER + FRAME + FRAME - 5;
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[victim] ^= 0x04;
    std::fs::write(&first, &bytes).unwrap();

    // The default mode takes the segment from its seal ...
    let (wal, report) = Wal::open(dir.path(), small_options(4096)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    // ... but reading it never returns the damaged record,
    let mut iter = wal.iter_from(Lsn::ZERO).unwrap();
    assert_eq!(iter.next().unwrap().unwrap().lsn, Lsn::new(1));
    let err = iter.next().unwrap().unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { offset, kind: Corruption::Checksum { .. }, .. } if offset == (HEADER + FRAME) as u64),
        "{err:?}"
    );
    assert!(iter.next().is_none());
    assert!(matches!(wal.read(Lsn::new(2)), Err(Error::Corrupt { .. })));
    // ... and verify names the segment and the spot, and only that one.
    let checks = wal.verify().unwrap();
    assert_eq!(checks[0].path, first);
    assert_eq!(checks[0].records, 1);
    assert!(
        matches!(checks[0].damage, Some((offset, Corruption::Checksum { .. })) if offset == (HEADER + FRAME) as u64),
        "{checks:?}"
    );
    assert!(checks[1..].iter().all(|c| c.is_intact()), "{checks:?}");
    drop(wal);

    // The modes that scan everything see it on open.
    assert!(matches!(
        Wal::open(
            dir.path(),
            with_mode(RecoveryMode::AbsoluteConsistency, 4096)
        ),
        Err(Error::Corrupt { .. })
    ));
    let (wal, report) = Wal::open(dir.path(), with_mode(RecoveryMode::SalvageAll, 4096)).unwrap();
    assert!(
        report
            .repairs
            .iter()
            .any(|r| matches!(r, Repair::SkippedDamage { .. })),
        "{report:?}"
    );
    let lsns: Vec<u64> = all_records(&wal).iter().map(|r| r.lsn.get()).collect();
    assert_eq!(lsns, (1..=60).filter(|&l| l != 2).collect::<Vec<_>>());
    assert!(wal.verify().unwrap().iter().all(|c| c.is_intact()));
}

#[test]
fn a_version_1_segment_is_refused_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    sealed_log(dir.path(), 10);
    let seg = segment_files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    for mode in [
        RecoveryMode::TolerateTornTail,
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::SalvageAll,
    ] {
        let err = Wal::open(dir.path(), with_mode(mode, 4096)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Corrupt {
                    kind: Corruption::UnsupportedVersion { version: 1 },
                    offset: 0,
                    ..
                }
            ),
            "{mode:?}: {err:?}"
        );
        // Not damage: never set aside, even by salvage.
        assert!(seg.exists(), "{mode:?}");
    }
    assert!(matches!(
        Wal::open_read_only(dir.path(), small_options(4096)),
        Err(Error::Corrupt {
            kind: Corruption::UnsupportedVersion { version: 1 },
            ..
        })
    ));
}

/// Three records made durable, then five appended without a sync; the process dies and a
/// power loss writes back the unsynced pages out of order: the second unsynced frame never
/// lands (a hole of zeros) while the frames after it do. Every frame after the hole carries a
/// `synced_to` at or below the hole, so the hole is in never-synced bytes: a torn tail.
#[test]
fn a_hole_in_the_never_synced_tail_followed_by_valid_frames_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
    for i in 1..=3 {
        wal.append_with(event(i), Durability::Sync).unwrap();
    }
    for i in 4..=8 {
        wal.append_with(event(i), Durability::None).unwrap();
    }
    let image = copy_dir(dir.path());
    std::mem::forget(wal);
    let seg = segment_files(image.path())[0].clone();
    let hole = HEADER + 4 * FRAME;
    let mut bytes = std::fs::read(&seg).unwrap();
    for b in &mut bytes[hole..hole + FRAME] {
        *b = 0;
    }
    std::fs::write(&seg, &bytes).unwrap();

    let (wal, report) = Wal::open(image.path(), small_options(64 * 1024)).unwrap();
    assert!(
        matches!(report.repairs[..], [Repair::TruncatedTail { offset, .. }] if offset == hole as u64),
        "{report:?}"
    );
    let lsns: Vec<u64> = all_records(&wal).iter().map(|r| r.lsn.get()).collect();
    assert_eq!(lsns, vec![1, 2, 3, 4]);
    assert_eq!(wal.append(event(5)).unwrap(), Lsn::new(5));
}

/// The same hole, but in bytes that a sync had covered: a later frame's `synced_to` lies
/// beyond it, which proves the damaged bytes had been durable. That is corruption, not a torn
/// tail: the default mode refuses, salvage keeps everything else.
#[test]
fn damage_before_a_frame_marked_durable_past_it_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), small_options(64 * 1024)).unwrap();
        for i in 1..=8 {
            wal.append_with(event(i), Durability::Sync).unwrap();
        }
    }
    let seg = segment_files(dir.path())[0].clone();
    let hole = HEADER + 4 * FRAME;
    let mut bytes = std::fs::read(&seg).unwrap();
    for b in &mut bytes[hole..hole + FRAME] {
        *b = 0;
    }
    std::fs::write(&seg, &bytes).unwrap();

    let err = Wal::open(dir.path(), small_options(64 * 1024)).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { offset, .. } if offset == hole as u64),
        "{err:?}"
    );
    let (wal, _) = Wal::open(dir.path(), with_mode(RecoveryMode::SalvageAll, 64 * 1024)).unwrap();
    let lsns: Vec<u64> = all_records(&wal).iter().map(|r| r.lsn.get()).collect();
    assert_eq!(lsns, vec![1, 2, 3, 4, 6, 7, 8]);
}

/// Open does not read sealed segments' keys; they are folded in on first need and give the
/// same garbage figure and the same compaction result as a WAL that never closed.
#[test]
fn keys_of_sealed_segments_are_folded_in_lazily_and_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        auto_compact: false,
        ..small_options(4096)
    };
    let garbage_before = {
        let (wal, _) = Wal::open(dir.path(), options.clone()).unwrap();
        for i in 0..200u64 {
            let r = if i % 7 == 0 {
                NewRecord::delete(Kind::Memory, format!("k{}", i % 5))
            } else {
                NewRecord::put(Kind::Memory, format!("k{}", i % 5), vec![i as u8; 40])
            };
            wal.append_with(r, Durability::None).unwrap();
        }
        wal.sync().unwrap();
        wal.status().garbage_bytes
    };
    assert!(garbage_before > 0);
    let (wal, report) = Wal::open(dir.path(), options).unwrap();
    assert!(report.trusted_seals > 2, "{report:?}");
    assert_eq!(wal.status().garbage_bytes, garbage_before);
    let before: Vec<_> = all_records(&wal)
        .into_iter()
        .filter(|r| r.lsn.get() > 195)
        .collect();
    let compacted = wal.compact().unwrap();
    assert!(
        compacted.records_out < compacted.records_in,
        "{compacted:?}"
    );
    // The newest put or delete of each key (the last five records) survives.
    let after = all_records(&wal);
    let mut latest = std::collections::BTreeMap::new();
    for r in &after {
        latest.insert(r.key.clone().unwrap(), (r.op, r.lsn));
    }
    assert_eq!(latest.len(), 5);
    assert!(before.iter().all(|r| after.contains(r)));
    assert!(wal.verify().unwrap().iter().all(|c| c.is_intact()));
}

/// Damage in a sealed segment holding keys is found when its keys are first needed:
/// compaction refuses with the corruption instead of deciding liveness without them, and
/// appends go on.
#[test]
fn damage_in_a_sealed_keyed_segment_stops_compaction_not_appends() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), small_options(4096)).unwrap();
        for i in 0..120u64 {
            wal.append_with(
                NewRecord::put(Kind::Memory, format!("k{}", i % 4), vec![i as u8; 40]),
                Durability::None,
            )
            .unwrap();
        }
    }
    let first = segment_files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[HEADER + 30] ^= 0x01;
    std::fs::write(&first, &bytes).unwrap();

    let (wal, report) = Wal::open(dir.path(), small_options(4096)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    // Rotations ask the background thread to fold the sealed keys; it fails and says so.
    for i in 0..120u64 {
        wal.append_with(
            NewRecord::put(Kind::Memory, format!("k{}", i % 4), vec![1; 40]),
            Durability::None,
        )
        .unwrap();
    }
    assert!(matches!(
        wal.compact(),
        Err(Error::Corrupt { segment, .. }) if segment == first
    ));
    assert_eq!(wal.last_lsn(), Lsn::new(240));
    assert!(!wal.verify().unwrap()[0].is_intact());
}
