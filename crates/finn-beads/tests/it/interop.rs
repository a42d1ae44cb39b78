//! Interop with the real `issues.jsonl` of loa-finn (587 beads, `../shared/fixtures/beads/`).

use std::time::Duration;

use finn_beads::{BlockReason, DepType, Exclusion, ImportOptions, ReadyQuery, Status, Timestamp};

use crate::util::{TestClock, export_string, fixture, json_set, open, open_with};

#[test]
fn interop_real_file_import_then_export_gives_the_same_json_objects() {
    let Some(path) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let report = store.import_path(&path, &ImportOptions::default()).unwrap();
    assert_eq!(report.created.len(), 587);
    let original = std::fs::read_to_string(&path).unwrap();
    let exported = export_string(&store);
    assert_eq!(json_set(&exported), json_set(&original));

    // Through the WAL and a restart too: the fold gives back the same objects.
    drop(store);
    let store = open(dir.path());
    assert_eq!(json_set(&export_string(&store)), json_set(&original));

    // And through a file export (atomic replace), byte-for-byte stable across two exports.
    let out = dir.path().join("issues.jsonl");
    store.export_path(&out).unwrap();
    store.export_path(&out).unwrap();
    assert_eq!(
        json_set(&std::fs::read_to_string(&out).unwrap()),
        json_set(&original)
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn interop_real_file_reimport_changes_nothing_and_dry_run_writes_nothing() {
    let Some(path) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let dry = store
        .import_path(&path, &ImportOptions { dry_run: true })
        .unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.created.len(), 587);
    assert_eq!(store.lsn().get(), 0, "dry run wrote to the WAL");
    store.import_path(&path, &ImportOptions::default()).unwrap();
    let lsn = store.lsn();
    let again = store.import_path(&path, &ImportOptions::default()).unwrap();
    assert_eq!(again.unchanged, 587);
    assert_eq!(again.changes(), 0);
    assert_eq!(store.lsn(), lsn);
    // The file has 18 edges whose targets are log lines glued to ids by a broken export; they are
    // kept as data and reported.
    assert_eq!(again.dangling_dependencies.len(), 18);
}

#[test]
fn interop_real_file_ready_set_matches_hand_checked_beads() {
    let Some(path) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open_with(dir.path(), &clock);
    store.import_path(&path, &ImportOptions::default()).unwrap();
    let now = clock.now();
    let ready_ids = |store: &finn_beads::Store| -> Vec<String> {
        store.read(|s| {
            s.ready(&ReadyQuery::default(), &now)
                .iter()
                .map(|b| b.id.clone())
                .collect()
        })
    };
    let ready = ready_ids(&store);
    // 180 open beads; 24 blocked (directly or through a blocked parent) of which 24 are open.
    assert_eq!(ready.len(), 156);
    // Priority order: P0 first, then oldest first.
    assert_eq!(&ready[..4], ["bd-3eo", "bd-s7ox", "bd-3f5l", "bd-tc9m"]);

    store.read(|s| {
        // bd-124 `blocks` on bd-3ro and bd-qoq, both open.
        let b = s.get("bd-124").unwrap();
        let Some(Exclusion::Blocked { blockers }) = s.readiness(b, &now) else {
            panic!("bd-124 should be blocked")
        };
        let mut ids: Vec<_> = blockers.iter().map(|b| b.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["bd-3ro", "bd-qoq"]);
        // Epic bd-1nh is blocked by bd-1le (open); its child bd-1e6w has no blocker of its own
        // and is blocked through the parent-child edge.
        let child = s.get("bd-1e6w").unwrap();
        let Some(Exclusion::Blocked { blockers }) = s.readiness(child, &now) else {
            panic!("bd-1e6w should be blocked through its parent")
        };
        assert_eq!(blockers.len(), 1);
        assert_eq!(blockers[0].id, "bd-1nh");
        assert_eq!(blockers[0].dep_type, DepType::ParentChild);
        assert_eq!(blockers[0].reason, BlockReason::ParentBlocked);
        // A parent-child edge alone does not block: bd-16gv is a child of the open epic bd-4je2.
        assert!(s.readiness(s.get("bd-16gv").unwrap(), &now).is_none());
        // A closed blocker never blocks: bd-14wv `blocks` on closed bd-kok6.
        assert!(s.readiness(s.get("bd-14wv").unwrap(), &now).is_none());
        // In-progress beads are not offered.
        assert_eq!(
            s.readiness(s.get("bd-8cm").unwrap(), &now),
            Some(Exclusion::Status {
                status: Status::InProgress
            })
        );
    });
    assert!(!ready.contains(&"bd-124".to_owned()));
    assert!(ready.contains(&"bd-16gv".to_owned()));

    // Closing bd-1le unblocks the epic and, transitively, its children (incremental index).
    store
        .transact(|tx| Ok(tx.close("bd-1le", Some("done"))?))
        .unwrap();
    let ready = ready_ids(&store);
    assert!(ready.contains(&"bd-1nh".to_owned()));
    assert!(ready.contains(&"bd-1e6w".to_owned()));

    // Deferring epic bd-4je2 hides it and its children until the deferral passes.
    let until =
        Timestamp::from_system_time(clock.now().to_system_time() + Duration::from_secs(3600));
    store
        .transact(|tx| Ok(tx.defer("bd-4je2", Some(until))?))
        .unwrap();
    let now = clock.now();
    store.read(|s| {
        assert!(matches!(
            s.readiness(s.get("bd-4je2").unwrap(), &now),
            Some(Exclusion::Deferred { .. })
        ));
        assert_eq!(
            s.readiness(s.get("bd-16gv").unwrap(), &now),
            Some(Exclusion::ParentDeferred {
                ancestor: "bd-4je2".into()
            })
        );
    });
    clock.advance(Duration::from_secs(3601));
    let later = clock.now();
    store.read(|s| {
        assert!(s.readiness(s.get("bd-4je2").unwrap(), &later).is_none());
        assert!(s.readiness(s.get("bd-16gv").unwrap(), &later).is_none());
    });

    // The index maintained incrementally equals a from-scratch rebuild (snapshot restore).
    let (bytes, lsn) = store.snapshot();
    let rebuilt = finn_beads::State::from_snapshot(&bytes, lsn).unwrap();
    store.read(|s| assert_eq!(s.blocked_ids(), rebuilt.blocked_ids()));
}

#[test]
fn interop_real_file_explain_gives_every_excluded_bead_a_reason() {
    let Some(path) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open_with(dir.path(), &clock);
    store.import_path(&path, &ImportOptions::default()).unwrap();
    let now = clock.now();
    store.read(|s| {
        let q = ReadyQuery {
            limit: Some(10),
            ..ReadyQuery::default()
        };
        let e = s.explain(&q, &now);
        assert_eq!(e.ready.len(), 10);
        assert_eq!(e.ready.len() + e.excluded.len(), 587);
        let count =
            |f: &dyn Fn(&Exclusion) -> bool| e.excluded.iter().filter(|x| f(&x.reason)).count();
        assert_eq!(count(&|r| matches!(r, Exclusion::Limit)), 146);
        assert_eq!(count(&|r| matches!(r, Exclusion::Blocked { .. })), 24);
        assert_eq!(count(&|r| matches!(r, Exclusion::Status { .. })), 407);
        assert_eq!(s.blocked().len(), 24);
        let progress = s.epic_progress("bd-4je2", &now);
        assert!(progress.total > 0);
        assert_eq!(
            progress.total,
            progress.closed + progress.in_progress + progress.blocked + progress.ready
        );
        let tree = s.dependency_tree("bd-1e6w", 5);
        assert_eq!(tree.children[0].id, "bd-1nh");
        assert_eq!(tree.children[0].children[0].id, "bd-1le");
    });
}
