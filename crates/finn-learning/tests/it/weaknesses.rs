//! Each learning weakness of the anchors (anchors.md §5.5), shown impossible here.

use std::sync::Arc;

use finn_learning::trajectory::{Trajectory, TrajectoryEntry, TrajectoryLog};
use finn_learning::{
    AddError, CompoundCycle, CycleOptions, ImportError, LearningStore, OpenError, Status, Target,
    Thresholds, Timestamp, TransitionError,
};
use finn_wal::{Kind, Op};
use serde_json::json;

use crate::util::{good, good_about, open, options};

/// §5.5.1: a corrupt `learnings.json` read as empty, and the next write destroyed every learning.
#[test]
fn w1_corrupt_learnings_file_is_an_error_and_is_quarantined_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir.path().join("store"));
    let kept = store.add(good(Target::Openclaw)).unwrap();
    let grim = dir.path().join("grimoires");
    std::fs::create_dir_all(&grim).unwrap();
    let corrupt = br#"{"version": "1.0.0", "learnings": [{"id": "a", "stat"#;
    std::fs::write(grim.join("learnings.json"), corrupt).unwrap();

    let err = store.import_anchor_dir(&grim).unwrap_err();
    assert!(
        matches!(&err, ImportError::Parse { path, .. } if path.ends_with("learnings.json")),
        "{err:?}"
    );
    assert_eq!(store.len(), 1, "a failed import changes nothing");

    let report = store.export_anchor_dir(&grim).unwrap();
    assert_eq!(report.quarantined.len(), 1);
    let (_, aside) = &report.quarantined[0];
    assert_eq!(
        std::fs::read(aside).unwrap(),
        corrupt,
        "damaged bytes kept verbatim"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(grim.join("learnings.json")).unwrap()).unwrap();
    assert_eq!(v["learnings"][0]["id"], kept.id.as_str());
}

/// §5.5.2: two processes (or two store instances) lost each other's updates.
#[test]
fn w2_a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _) = open(dir.path());
    let err = LearningStore::open(dir.path(), options()).unwrap_err();
    assert!(
        matches!(err, OpenError::Wal(finn_wal::Error::Locked { .. })),
        "{err:?}"
    );
}

/// §5.5.2, in one process: concurrent writers are serialised, no update is lost.
#[test]
fn w2_concurrent_applications_are_all_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options();
    o.durability = finn_wal::Durability::None;
    let (store, _) = LearningStore::open(dir.path(), o).unwrap();
    let store = Arc::new(store);
    let id = store.add(good(Target::Openclaw)).unwrap().id;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (store, id) = (store.clone(), id.clone());
            std::thread::spawn(move || {
                for i in 0..50 {
                    store.record_application(&id, (i + t) % 2 == 0).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let e = store.get(&id).unwrap().effectiveness.unwrap();
    assert_eq!(e.applications, 200);
    assert_eq!(e.successes + e.failures, 200);
}

/// §5.5.3: a gate discard looked exactly like a pending learning.
#[test]
fn w3_gate_rejection_is_a_typed_error_with_every_gate_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let mut weak = good(Target::Loa);
    weak.trigger = "x".into();
    weak.solution = "y".into();
    let Err(AddError::Rejected(r)) = store.add(weak.clone()) else {
        panic!("must be rejected")
    };
    assert_eq!(r.evaluation.gates.len(), 4, "every gate is reported");
    for g in &r.evaluation.gates {
        assert!(
            !g.reasons.is_empty(),
            "{} says why it scored {}",
            g.gate,
            g.score
        );
    }
    assert!(r.evaluation.failed().count() >= 1);
    assert_eq!(r.learning, weak, "the candidate is handed back");
    assert!(store.pending().is_empty() && store.is_empty());
}

/// §5.5.3: `approved` was never persisted (folded into `active`).
#[test]
fn w3_approved_is_a_stored_status() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let (store, _) = open(dir.path());
        let id = store.add(good(Target::Loa)).unwrap().id;
        store.approve(&id, "alice").unwrap();
        id
    };
    let (store, _) = open(dir.path());
    let l = store.get(&id).unwrap();
    assert_eq!(l.status, Status::Approved);
    assert_eq!(l.approved_by.as_deref(), Some("alice"));
    assert!(l.approved_at.is_some());
    assert!(
        store.find_matching("deploy build error", 5).is_empty(),
        "approved is not active"
    );
}

/// §5.5.3: any status could be set to any other.
#[test]
fn w3_transitions_outside_the_lifecycle_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let pending = store.add(good(Target::Loa)).unwrap().id;
    let active = store.add(good_about("redis", Target::Openclaw)).unwrap().id;
    for (id, to) in [
        (&pending, Status::Active),
        (&pending, Status::Archived),
        (&active, Status::Pending),
        (&active, Status::Approved),
        (&active, Status::Rejected),
    ] {
        let err = store.set_status(id, to, "mallory").unwrap_err();
        assert!(matches!(err, TransitionError::NotAllowed { .. }), "{err:?}");
    }
    assert!(matches!(
        store.restore(&active, "mallory"),
        Err(TransitionError::NotAllowed { .. })
    ));
    assert!(store.history(&pending).is_empty() && store.history(&active).is_empty());
}

/// §5.5.3: archiving a pending learning deleted it, leaving no audit trail.
#[test]
fn w3_rejecting_a_pending_learning_keeps_it_and_its_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let (store, _) = open(dir.path());
        let id = store.add(good(Target::Loa)).unwrap().id;
        store.reject(&id, "bob", "duplicate of FP-003").unwrap();
        id
    };
    let (store, _) = open(dir.path());
    assert_eq!(store.get(&id).unwrap().status, Status::Rejected);
    let h = store.history(&id);
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].from, h[0].to), (Status::Pending, Status::Rejected));
    assert_eq!(h[0].by, "bob");
    assert_eq!(h[0].reason.as_deref(), Some("duplicate of FP-003"));
}

/// §5.5.4: substring matching ("test" in "latest", "stall" in "install") made false matches.
#[test]
fn w4_retrieval_and_scoring_match_whole_words() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options();
    o.thresholds = Thresholds {
        discovery_depth: 0,
        reusability: 0,
        trigger_clarity: 0,
        verification: 0,
        total: 0,
    };
    let (store, _) = LearningStore::open(dir.path(), o).unwrap();
    store
        .add(finn_learning::NewLearning::new(
            finn_learning::Source::Sprint,
            Target::Openclaw,
            "test stall",
            "",
            "",
        ))
        .unwrap();
    // The anchors count "test" and "stall" as two hits in this context; finn counts none.
    assert!(store.find_matching("latest install", 5).is_empty());
    assert_eq!(store.find_matching("a stall during the test", 5).len(), 1);
}

/// §5.5.4: finn's compound cycle stored every candidate without running the gates.
#[test]
fn w4_compound_cycle_runs_the_quality_gates() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options();
    o.thresholds.total = 40; // unreachable: every candidate must be refused
    let (store, _) = LearningStore::open(dir.path(), o).unwrap();
    let entries = vec![
        TrajectoryEntry::tool_end(
            "s",
            "bash",
            json!({"cmd": "make"}),
            "make: *** error 2",
            true,
        ),
        TrajectoryEntry::tool_end("s", "bash", json!({"cmd": "make -j1"}), "ok", false),
    ];
    let report = CompoundCycle::new(&store, CycleOptions::default())
        .run(&entries)
        .unwrap();
    assert_eq!(report.rejected.len(), 1);
    assert!(!report.rejected[0].1.evaluation.passed);
    assert!(report.persisted.is_empty() && store.is_empty());
}

/// §5.5.4: only today's trajectory file was read, and paths were relative to the working
/// directory.
#[test]
fn w4_every_trajectory_file_is_read_from_an_explicit_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = TrajectoryLog::new(dir.path().join("trajectory"));
    let day = |d: &str, mut e: TrajectoryEntry| {
        e.timestamp = Timestamp::parse(&format!("{d}T12:00:00Z")).unwrap();
        e
    };
    for (d, s) in [("2026-01-01", "s1"), ("2026-03-04", "s2")] {
        log.append(&day(
            d,
            TrajectoryEntry::tool_end(
                s,
                "bash",
                json!({"cmd": "psql"}),
                "connection refused on port 5432",
                true,
            ),
        ))
        .unwrap();
        log.append(&day(
            d,
            TrajectoryEntry::tool_end(
                s,
                "bash",
                json!({"cmd": "pg_ctl start && psql"}),
                "ok",
                false,
            ),
        ))
        .unwrap();
    }
    let files: Vec<_> = std::fs::read_dir(log.dir()).unwrap().collect();
    assert_eq!(files.len(), 2);
    let t = Trajectory::read_dir(log.dir()).unwrap();
    assert_eq!(t.entries.len(), 4);
    let (store, _) = open(&dir.path().join("store"));
    let cycle = CompoundCycle::new(&store, CycleOptions::default());
    let candidates = cycle.extract(&t.entries);
    // One recovery per day plus the pattern repeated across both sessions.
    assert_eq!(candidates.len(), 3);
    assert!(candidates[2].trigger.starts_with("pattern:bash:"));
    assert_eq!(candidates[2].sessions, ["s1", "s2"]);
    assert_eq!(store.dir(), dir.path().join("store"));
}

/// §5.5.5: the learning WAL hook was never wired, and finn appended to the WAL only after the
/// store write. Here the WAL record *is* the store write, durable before `add` returns.
#[test]
fn w5_every_change_is_in_the_wal_before_the_call_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let l = store.add(good(Target::Openclaw)).unwrap();
    store.record_application(&l.id, true).unwrap();
    assert!(store.wal().durable_lsn() >= store.wal().last_lsn());
    let reader =
        finn_wal::Wal::open_read_only(dir.path().join(finn_learning::WAL_DIR), Default::default())
            .unwrap();
    let key = format!("learning/{}", l.id);
    let puts: Vec<_> = reader
        .iter_from(finn_wal::Lsn::ZERO)
        .unwrap()
        .map(Result::unwrap)
        .filter(|r| r.kind == Kind::Learning && r.op == Op::Put && r.key.as_deref() == Some(&key))
        .collect();
    assert_eq!(
        puts.len(),
        2,
        "add and application, each its own WAL record"
    );
    assert!(
        !dir.path().join(finn_learning::SNAPSHOT_FILE).exists(),
        "no other store file"
    );
}
