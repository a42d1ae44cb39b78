//! Damage on disk: a torn last record cut at every byte offset, and random bit flips anywhere.
//! Nothing panics, and each [`RecoveryMode`] does what its documentation says.

mod common;

use std::path::Path;

use common::{Rng, all_records, copy_dir, segment_files};
use finn_wal::{
    Durability, Error, Kind, Lsn, NewRecord, Options, Record, RecoveryMode, Repair, Wal,
};

const MODES: [RecoveryMode; 3] = [
    RecoveryMode::TolerateTornTail,
    RecoveryMode::AbsoluteConsistency,
    RecoveryMode::SalvageAll,
];

/// A temp dir on tmpfs when there is one: these tests open thousands of copies.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}

fn opts(mode: RecoveryMode, segment_size: u64) -> Options {
    Options {
        recovery_mode: mode,
        segment_size,
        auto_compact: false,
        ..Options::default()
    }
}

fn nonzero_end(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

#[test]
fn truncation_at_every_byte_offset_of_the_last_record() {
    let base = scratch();
    let seg;
    let (frame_start, frame_end);
    let originals: Vec<Record>;
    {
        let (wal, _) =
            Wal::open(base.path(), opts(RecoveryMode::TolerateTornTail, 16 * 1024)).unwrap();
        for i in 0..4u8 {
            wal.append(NewRecord::put(Kind::Bead, format!("b{i}"), vec![i; 40]))
                .unwrap();
        }
        seg = segment_files(base.path())[0].clone();
        frame_start = nonzero_end(&seg);
        // The last "record" is an atomic batch: a torn batch must vanish entirely.
        wal.append_batch(
            (0..2u8)
                .map(|i| NewRecord::event(Kind::Audit, vec![0xa0 + i; 4]))
                .collect(),
            Durability::Sync,
        )
        .unwrap();
        frame_end = nonzero_end(&seg);
        originals = all_records(&wal);
    }
    assert_eq!(originals.len(), 6);
    let seg_name = seg.file_name().unwrap().to_owned();

    for cut in frame_start..frame_end {
        for style in ["zeroed", "truncated"] {
            for mode in MODES {
                if style == "truncated" && mode == RecoveryMode::SalvageAll {
                    continue; // same code path as TolerateTornTail for a cut file
                }
                let copy = copy_dir(base.path());
                let path = copy.path().join(&seg_name);
                let mut bytes = std::fs::read(&path).unwrap();
                if style == "zeroed" {
                    bytes[cut..frame_end].fill(0);
                } else {
                    bytes.truncate(cut);
                }
                std::fs::write(&path, &bytes).unwrap();
                let clean_cut = cut == frame_start;
                let ctx = format!("cut {cut} ({style}) in {mode:?}");
                match Wal::open(copy.path(), opts(mode, 16 * 1024)) {
                    Ok((wal, report)) => {
                        assert!(
                            mode != RecoveryMode::AbsoluteConsistency || clean_cut,
                            "{ctx}: damage accepted"
                        );
                        assert_eq!(all_records(&wal), originals[..4], "{ctx}");
                        if clean_cut {
                            assert!(report.is_clean(), "{ctx}: {report:?}");
                        } else {
                            assert!(!report.is_clean(), "{ctx}: repair not reported");
                        }
                        if mode != RecoveryMode::TolerateTornTail {
                            continue;
                        }
                        // The next append is readable after another reopen.
                        let lsn = wal
                            .append(NewRecord::event(Kind::Audit, b"after".to_vec()))
                            .unwrap();
                        assert_eq!(lsn, Lsn::new(5), "{ctx}");
                        drop(wal);
                        let (wal, report) = Wal::open(
                            copy.path(),
                            opts(RecoveryMode::AbsoluteConsistency, 16 * 1024),
                        )
                        .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
                        assert!(report.is_clean(), "{ctx}");
                        let recs = all_records(&wal);
                        assert_eq!(recs.len(), 5, "{ctx}");
                        assert_eq!(recs[4].payload, b"after", "{ctx}");
                    }
                    Err(Error::Corrupt { .. }) => {
                        assert_eq!(mode, RecoveryMode::AbsoluteConsistency, "{ctx}");
                        assert!(!clean_cut, "{ctx}");
                    }
                    Err(e) => panic!("{ctx}: unexpected error {e:?}"),
                }
            }
        }
    }
}

#[test]
fn random_bit_flips_never_panic_and_each_mode_behaves_as_documented() {
    let base = scratch();
    let originals: Vec<Record>;
    {
        let (wal, _) = Wal::open(base.path(), opts(RecoveryMode::TolerateTornTail, 4096)).unwrap();
        for i in 0..90u32 {
            let r = if i % 3 == 0 {
                NewRecord::put(Kind::Memory, format!("m{}", i % 5), vec![i as u8; 50])
            } else {
                NewRecord::event(Kind::Audit, vec![i as u8; 50])
            };
            wal.append_with(r, Durability::None).unwrap();
        }
        wal.sync().unwrap();
        originals = all_records(&wal);
    }
    let segments = segment_files(base.path());
    assert!(segments.len() >= 3);
    // LSN range of each segment (no gaps here): [first of this, first of next).
    let firsts: Vec<u64> = segments
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    let segment_of = |lsn: u64| firsts.iter().rposition(|&f| f <= lsn).unwrap();
    let newest = segments.len() - 1;

    let iterations: u64 = std::env::var("FINN_FLIP_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut rng = Rng::new(0x5eed_f11b);
    for it in 0..iterations {
        let victim = rng.below(segments.len() as u64) as usize;
        let name = segments[victim].file_name().unwrap().to_owned();
        let len = std::fs::metadata(&segments[victim]).unwrap().len();
        let byte = rng.below(len) as usize;
        let bit = rng.below(8);
        let ctx = format!("iteration {it}: segment {victim}, byte {byte}, bit {bit}");
        for mode in MODES {
            let copy = copy_dir(base.path());
            let path = copy.path().join(&name);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[byte] ^= 1 << bit;
            std::fs::write(&path, &bytes).unwrap();
            let result = Wal::open(copy.path(), opts(mode, 4096));
            match mode {
                RecoveryMode::AbsoluteConsistency => {
                    assert!(
                        matches!(result, Err(Error::Corrupt { .. })),
                        "{ctx}: {mode:?} accepted damage"
                    );
                }
                RecoveryMode::TolerateTornTail => match result {
                    Ok((wal, report)) if victim != newest => {
                        // A sealed segment is taken from its seal: damage to its records
                        // must surface in reading and in `verify`, or the flip hit the seal's
                        // trailer and the segment was rescanned intact and sealed again.
                        let resealed = report
                            .repairs
                            .iter()
                            .any(|r| matches!(r, Repair::Resealed { .. }));
                        let checks = wal.verify().unwrap();
                        let read: Result<Vec<_>, _> = wal.iter_from(Lsn::ZERO).unwrap().collect();
                        if resealed {
                            assert!(checks.iter().all(|c| c.is_intact()), "{ctx}");
                            assert_eq!(read.unwrap(), originals, "{ctx}");
                        } else {
                            assert!(!checks[victim].is_intact(), "{ctx}: damage not verified");
                            assert!(read.is_err(), "{ctx}: damaged record read");
                        }
                    }
                    Ok((wal, report)) => {
                        assert!(
                            report
                                .repairs
                                .iter()
                                .all(|r| matches!(r, Repair::TruncatedTail { .. })),
                            "{ctx}"
                        );
                        let recs = all_records(&wal);
                        // A prefix of the original log, holding at least every sealed segment.
                        assert_eq!(recs[..], originals[..recs.len()], "{ctx}");
                        assert!(recs.len() as u64 >= firsts[newest] - 1, "{ctx}");
                    }
                    Err(Error::Corrupt { .. }) => {}
                    Err(e) => panic!("{ctx}: unexpected error {e:?}"),
                },
                RecoveryMode::SalvageAll => {
                    let (wal, report) =
                        result.unwrap_or_else(|e| panic!("{ctx}: salvage failed: {e}"));
                    let recs = all_records(&wal);
                    // Every record returned is an original, intact, in order ...
                    let mut expected = originals.iter();
                    for r in &recs {
                        assert!(
                            expected.any(|o| o == r),
                            "{ctx}: record {} altered or out of order",
                            r.lsn
                        );
                    }
                    // ... and nothing outside the damaged segment is lost.
                    for o in &originals {
                        if segment_of(o.lsn.get()) != victim {
                            assert!(recs.contains(o), "{ctx}: lost undamaged record {}", o.lsn);
                        }
                    }
                    if recs.len() < originals.len() {
                        assert!(!report.is_clean(), "{ctx}: loss not reported");
                    }
                    // The salvaged log is clean for every mode afterwards.
                    drop(wal);
                    let (wal, _) =
                        Wal::open(copy.path(), opts(RecoveryMode::AbsoluteConsistency, 4096))
                            .unwrap_or_else(|e| panic!("{ctx}: salvaged log not clean: {e}"));
                    assert_eq!(all_records(&wal), recs, "{ctx}");
                }
                _ => unreachable!(),
            }
        }
    }
}

/// Opening checks only a bounded window of the zero-filled preallocation after the end marker
/// (so that it costs the data, not the segment size); damage that makes a frame read as the
/// end marker while durable frames follow must still be found in a large preallocated segment.
#[test]
fn zeroed_frame_before_valid_frames_is_found_in_a_large_preallocated_segment() {
    const SEGMENT: u64 = 4 * 1024 * 1024;
    let base = scratch();
    let mut frame_bounds = Vec::new();
    let seg;
    {
        let (wal, _) =
            Wal::open(base.path(), opts(RecoveryMode::TolerateTornTail, SEGMENT)).unwrap();
        seg = segment_files(base.path())[0].clone();
        for i in 0..4u8 {
            let start = nonzero_end(&seg);
            wal.append_with(
                NewRecord::event(Kind::Audit, vec![i + 1; 64]),
                Durability::Sync,
            )
            .unwrap();
            frame_bounds.push((start, nonzero_end(&seg)));
        }
    }
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        SEGMENT,
        "segment is preallocated"
    );
    let seg_name = seg.file_name().unwrap().to_owned();
    let (start, end) = frame_bounds[1];
    for (what, zero_to) in [("frame header", start + 8), ("whole frame", end)] {
        for mode in [
            RecoveryMode::TolerateTornTail,
            RecoveryMode::AbsoluteConsistency,
        ] {
            let copy = copy_dir(base.path());
            let path = copy.path().join(&seg_name);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[start..zero_to].fill(0);
            std::fs::write(&path, &bytes).unwrap();
            match Wal::open(copy.path(), opts(mode, SEGMENT)) {
                Err(Error::Corrupt { offset, .. }) => {
                    assert_eq!(offset, start as u64, "{what} in {mode:?}")
                }
                Err(e) => panic!("{what} in {mode:?}: unexpected error {e}"),
                Ok((wal, report)) => panic!(
                    "{what} in {mode:?}: durable frames after the damage dropped as a torn tail: \
                     {} records left, {report:?}",
                    all_records(&wal).len()
                ),
            }
        }
        // SalvageAll keeps every frame but the damaged one.
        let copy = copy_dir(base.path());
        let path = copy.path().join(&seg_name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[start..zero_to].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let (wal, report) =
            Wal::open(copy.path(), opts(RecoveryMode::SalvageAll, SEGMENT)).unwrap();
        assert!(!report.is_clean(), "{what}: damage not reported");
        let lsns: Vec<u64> = all_records(&wal).iter().map(|r| r.lsn.get()).collect();
        assert_eq!(lsns, [1, 3, 4], "{what}");
    }
}
