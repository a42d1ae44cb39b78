//! Damaged snapshots and exports are quarantined, reported, and nothing is lost.

use finn_learning::{Damage, SNAPSHOT_FILE, SnapshotStatus, Status, Target};

use crate::util::{good, good_about, open};

fn quarantined_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".damaged-"))
        .collect()
}

/// Builds a store with a snapshot and WAL records after it; returns the expected learnings.
fn store_with_snapshot(dir: &std::path::Path) -> Vec<finn_learning::Learning> {
    let (store, _) = open(dir);
    let a = store.add(good(Target::Loa)).unwrap().id;
    store.approve(&a, "alice").unwrap();
    store.add(good_about("redis", Target::Openclaw)).unwrap();
    store.snapshot().unwrap();
    let c = store.add(good_about("nginx", Target::Openclaw)).unwrap().id;
    store.record_application(&c, true).unwrap();
    store.activate(&a, "alice").unwrap();
    store.list(None)
}

#[test]
fn damaged_snapshot_is_quarantined_and_state_rebuilt_from_the_wal() {
    type Damager = fn(&mut Vec<u8>);
    let damagers: [(&str, Damager); 4] = [
        ("bit flip in the body", |b| {
            let n = b.len();
            b[n - 10] ^= 0x01;
        }),
        ("torn body", |b| {
            let n = b.len();
            b.truncate(n / 2);
        }),
        ("garbage header", |b| b[0] = b'#'),
        ("empty file", |b| b.clear()),
    ];
    for (what, damage) in damagers {
        let dir = tempfile::tempdir().unwrap();
        let expected = store_with_snapshot(dir.path());
        let snap = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&snap).unwrap();
        damage(&mut bytes);
        std::fs::write(&snap, &bytes).unwrap();

        let (store, report) = open(dir.path());
        let SnapshotStatus::Quarantined { path, damage } = &report.snapshot else {
            panic!("{what}: {:?}", report.snapshot)
        };
        assert!(!matches!(damage, Damage::Unsupported { .. }), "{what}");
        assert_eq!(
            std::fs::read(path).unwrap(),
            bytes,
            "{what}: damaged bytes kept"
        );
        assert_eq!(quarantined_files(dir.path()), std::slice::from_ref(path));
        assert_eq!(store.list(None), expected, "{what}: nothing lost");
        assert_eq!(
            store.history(&expected[0].id).len(),
            2,
            "{what}: audit trail rebuilt"
        );
        // A fresh snapshot can be written and loaded again.
        store.snapshot().unwrap();
        drop(store);
        let (store, report) = open(dir.path());
        assert!(
            matches!(report.snapshot, SnapshotStatus::Loaded { .. }),
            "{what}"
        );
        assert_eq!(store.list(None), expected);
    }
}

#[test]
fn snapshot_plus_wal_tail_equals_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let expected = store_with_snapshot(dir.path());
    let (store, report) = open(dir.path());
    let SnapshotStatus::Loaded { lsn } = report.snapshot else {
        panic!("{:?}", report.snapshot)
    };
    assert!(lsn.get() > 0);
    assert!(
        report.replayed > 0,
        "records after the snapshot were replayed"
    );
    assert_eq!(store.list(None), expected);
    assert_eq!(
        store
            .list(Some(Status::Active))
            .iter()
            .filter(|l| l.effectiveness.is_some())
            .count(),
        1
    );
}

#[test]
fn snapshot_ahead_of_a_lost_wal_keeps_state_and_never_reuses_positions() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, covered) = {
        let (store, _) = open(dir.path());
        store.add(good(Target::Openclaw)).unwrap();
        store.add(good_about("redis", Target::Openclaw)).unwrap();
        let lsn = store.snapshot().unwrap();
        (store.list(None), lsn)
    };
    std::fs::remove_dir_all(dir.path().join(finn_learning::WAL_DIR)).unwrap();
    let (store, report) = open(dir.path());
    assert!(report.wal_behind_snapshot);
    assert_eq!(store.list(None), expected);
    let l = store.add(good_about("nginx", Target::Openclaw)).unwrap();
    assert!(store.wal().last_lsn() > covered);
    drop(store);
    let (store, _) = open(dir.path());
    assert_eq!(store.len(), 3);
    assert!(store.get(&l.id).is_some());
}

#[test]
fn damaged_export_is_quarantined_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir.path().join("store"));
    let p = store.add(good(Target::Loa)).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("pending-self")).unwrap();
    let pending_file = out.join(format!("pending-self/{}.json", p.id));
    std::fs::write(&pending_file, b"\x00\x01 not json").unwrap();
    let report = store.export_anchor_dir(&out).unwrap();
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.quarantined[0].0, pending_file);
    assert_eq!(
        std::fs::read(&report.quarantined[0].1).unwrap(),
        b"\x00\x01 not json"
    );
    // A valid previous export is simply replaced.
    let again = store.export_anchor_dir(&out).unwrap();
    assert!(again.quarantined.is_empty());
    assert_eq!(again.written.len(), 2);
}
