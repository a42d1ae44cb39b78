//! A full disk, for real: each test mounts a small tmpfs (root only; skipped with a printed
//! reason where mounting is not permitted), fills it through the WAL, and checks that the
//! append, the rotation or the compaction that ran out of space fails with a typed I/O error
//! (`ErrorKind::StorageFull`), that nothing acknowledged is lost, and that no half-written file
//! is left behind to confuse the next open.
//!
//! The disk-pressure thresholds are set to zero so the WAL really reaches ENOSPC instead of
//! refusing early (that path is `weaknesses.rs :: disk_pressure_critical_rejects_appends_and_loses_nothing`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::all_records;
use finn_wal::{Durability, Error, Kind, NewRecord, Options, Wal};

/// A tmpfs mounted for one test; unmounted (and its mount point removed) on drop.
struct SmallDisk {
    _parent: tempfile::TempDir,
    path: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk {
                _parent: parent,
                path,
            }),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs ({}); these tests need root",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount ({e})");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn options(preallocate: bool) -> Options {
    Options {
        segment_size: 64 * 1024,
        preallocate,
        auto_compact: false,
        free_space_warning: 0,
        free_space_critical: 0,
        wal_size_warning: u64::MAX,
        wal_size_critical: u64::MAX,
        ..Options::default()
    }
}

fn is_storage_full(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull)
}

/// Copies the WAL directory to a roomy place and opens it there: what survived on the full
/// disk, readable without needing space to repair anything.
fn reopen_elsewhere(dir: &Path) -> (tempfile::TempDir, Vec<finn_wal::Record>) {
    let copy = common::copy_dir(dir);
    let (wal, _) = Wal::open(copy.path(), options(false)).expect("the WAL opens after ENOSPC");
    let records = all_records(&wal);
    drop(wal);
    (copy, records)
}

/// Appends until the disk is full; returns the acknowledged payloads and the error.
fn fill(wal: &Wal) -> (Vec<Vec<u8>>, Error) {
    let mut acked = Vec::new();
    for i in 0u32.. {
        let mut p = i.to_le_bytes().to_vec();
        p.resize(900, b'x');
        match wal.append(NewRecord::put(
            Kind::Memory,
            format!("k{}", i % 3),
            p.clone(),
        )) {
            Ok(_) => acked.push(p),
            Err(e) => return (acked, e),
        }
        assert!(i < 100_000, "the disk never filled");
    }
    unreachable!()
}

fn enospc_during(preallocate: bool) {
    let Some(disk) = SmallDisk::mount("256k") else {
        return;
    };
    let dir = disk.path.join("wal");
    let (wal, _) = Wal::open(&dir, options(preallocate)).unwrap();
    let (acked, err) = fill(&wal);
    assert!(!acked.is_empty(), "nothing fitted before the disk was full");
    assert!(
        is_storage_full(&err),
        "expected a typed StorageFull I/O error, got {err:?}"
    );
    eprintln!("{} appends acknowledged, then: {err}", acked.len());
    // Whether or not the failed write left bytes behind, the WAL does not pretend: later
    // appends fail too (poisoned after a failed write, or still no space).
    assert!(
        wal.append(NewRecord::event(Kind::Audit, vec![0; 10]))
            .is_err()
    );
    drop(wal);

    let (_copy, records) = reopen_elsewhere(&dir);
    let got: Vec<Vec<u8>> = records.into_iter().map(|r| r.payload).collect();
    assert_eq!(
        &got[..acked.len()],
        &acked[..],
        "an acknowledged record was lost"
    );
    assert!(
        got.len() <= acked.len() + 1,
        "records appeared that were never appended"
    );

    // On the full disk itself: opening either works or fails with a typed error, never
    // loses what is there.
    match Wal::open(&dir, options(preallocate)) {
        Ok((wal, _)) => {
            let got: Vec<Vec<u8>> = all_records(&wal).into_iter().map(|r| r.payload).collect();
            assert_eq!(&got[..acked.len()], &acked[..]);
        }
        Err(e) => assert!(is_storage_full(&e), "{e:?}"),
    }
    // No temp file of a half-created segment is left where the next open would trip on it.
    let strays: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(strays.is_empty(), "{strays:?}");
}

/// Without preallocation the space runs out inside an append's write.
#[test]
fn enospc_during_append_is_a_typed_error_and_loses_nothing() {
    enospc_during(false);
}

/// With preallocation the space runs out when the next segment is created (rotation).
#[test]
fn enospc_during_rotation_is_a_typed_error_and_loses_nothing() {
    enospc_during(true);
}

/// Compaction writes a new segment before it removes the old ones: on a full disk it fails
/// with a typed error and the log is unchanged.
#[test]
fn enospc_during_compaction_is_a_typed_error_and_the_log_is_unchanged() {
    let Some(disk) = SmallDisk::mount("320k") else {
        return;
    };
    let dir = disk.path.join("wal");
    let (wal, _) = Wal::open(&dir, options(false)).unwrap();
    // Keyed history over several segments, most of it garbage (3 live keys).
    let mut acked = Vec::new();
    for i in 0u32..200 {
        let mut p = i.to_le_bytes().to_vec();
        p.resize(900, b'y');
        wal.append_with(
            NewRecord::put(Kind::Memory, format!("k{}", i % 3), p.clone()),
            Durability::None,
        )
        .unwrap();
        acked.push(p);
    }
    wal.sync().unwrap();
    // Fill what is left with a ballast file so compaction's new segment cannot fit.
    let ballast = disk.path.join("ballast");
    let mut f = std::fs::File::create(&ballast).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let before = all_records(&wal);
    let err = wal
        .compact()
        .expect_err("compaction cannot fit on a full disk");
    assert!(is_storage_full(&err), "expected StorageFull, got {err:?}");
    // The log is still usable for reading; later writes fail or succeed, never corrupt.
    assert_eq!(all_records(&wal), before);
    drop(wal);
    let (_copy, records) = reopen_elsewhere(&dir);
    let latest = |rs: &[finn_wal::Record]| {
        let mut m = std::collections::BTreeMap::new();
        for r in rs {
            m.insert(r.key.clone(), r.payload.clone());
        }
        m
    };
    assert_eq!(
        latest(&records),
        latest(&before),
        "compaction on a full disk changed the state"
    );
    let strays: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp") || n.contains("compact"))
        .collect();
    assert!(strays.is_empty(), "compaction left {strays:?}");
}
