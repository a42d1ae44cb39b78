//! The beads scenarios of anchors.md §11.5 that make sense without a `br` binary, and one test
//! per weakness of §6.8 showing it cannot happen here.

use std::sync::Arc;
use std::time::Duration;

use finn_beads::{
    ApplyError, Bead, DepType, Error, Handoff, Options, Outcome, ReadyQuery, State, Status, Store,
    ValidationError,
};
use finn_wal::{Kind, Lsn, NewRecord, Op, Wal};

use crate::util::{TestClock, export_string, open, open_with};

fn records(dir: &std::path::Path) -> Vec<finn_wal::Record> {
    let wal =
        Wal::open_read_only(dir.join(finn_beads::WAL_DIR), finn_wal::Options::default()).unwrap();
    wal.iter_from(Lsn::new(1))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

// --- §11.5 beads.test.ts / beads-wal-adapter.test.ts ---------------------------------------

#[test]
fn anchor_records_a_transition_and_returns_its_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create(Bead::new("bead-123", "t")).unwrap();
    assert_eq!(store.lsn(), Lsn::new(1));
    drop(store);
    let r = &records(dir.path())[0];
    assert_eq!(r.lsn, Lsn::new(1));
    assert_eq!(r.kind, Kind::Bead);
    assert_eq!(r.op, Op::Put);
    assert_eq!(r.key.as_deref(), Some("bead/bead-123"));
}

#[test]
fn anchor_replays_create_then_update_in_order_and_recovers_create_plus_label() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create(Bead::new("bead-1", "first")).unwrap();
    store
        .transact(|tx| Ok(tx.add_labels("bead-1", &["urgent"])?))
        .unwrap();
    drop(store);
    let rs = records(dir.path());
    assert_eq!(rs.len(), 2);
    let changes: Vec<String> = rs
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            v["changes"][0]["op"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(changes, ["create", "labels"]);
    let store = open(dir.path());
    let b = store.get("bead-1").unwrap();
    assert!(b.has_label("urgent"));
    assert_eq!(store.read(|s| s.len()), 1);
}

#[test]
fn anchor_rejects_path_traversal_ids_and_unknown_operations() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let err = store.create(Bead::new("../etc/passwd", "x")).unwrap_err();
    assert!(matches!(
        err,
        Error::Validation(ValidationError::InvalidId { .. })
    ));
    // Operations are a closed enum: a record naming an unknown one is a loud error, not skipped.
    let mut state = State::new();
    let bad = finn_wal::Record {
        lsn: Lsn::new(1),
        id: finn_wal::Ulid::new(),
        timestamp_ms: 0,
        kind: Kind::Bead,
        op: Op::Put,
        key: Some("bead/x".into()),
        payload: br#"{"v":1,"changes":[{"op":"rm -rf"}],"bead":{"id":"x"}}"#.to_vec(),
    };
    assert!(matches!(state.apply(&bad), Err(ApplyError::Payload { .. })));
    // A record whose checksum passed but whose payload is garbage is also refused, not skipped.
    let garbage = finn_wal::Record {
        payload: b"\x00\x01not json".to_vec(),
        ..bad
    };
    assert!(matches!(
        state.apply(&garbage),
        Err(ApplyError::Payload { .. })
    ));
    assert_eq!(state.len(), 0);
}

#[test]
fn anchor_user_values_with_shell_metacharacters_are_stored_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let title = "it's \"quoted\"; rm -rf / $(whoami) `id` \\ \n next";
    store.create(Bead::new("b", title)).unwrap();
    store
        .transact(|tx| Ok(tx.comment("b", None, "'; DROP TABLE beads; --")?))
        .unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.get("b").unwrap().title, title);
    assert!(export_string(&store).contains("rm -rf / $(whoami)"));
}

#[test]
fn anchor_empty_wal_gives_empty_state_and_seq_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.lsn(), Lsn::ZERO);
    assert!(store.read(|s| s.is_empty()));
    assert!(store.ready(&ReadyQuery::default()).is_empty());
}

#[test]
fn anchor_transitions_since_a_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..5 {
        store.create(Bead::new(format!("b{i}"), "t")).unwrap();
    }
    drop(store);
    let wal = Wal::open_read_only(
        dir.path().join(finn_beads::WAL_DIR),
        finn_wal::Options::default(),
    )
    .unwrap();
    let since = wal.entries_since(Lsn::new(3), None).unwrap();
    let keys: Vec<_> = since.iter().map(|r| r.key.clone().unwrap()).collect();
    assert_eq!(keys, ["bead/b3", "bead/b4"]);
}

#[test]
fn anchor_bridge_rejects_out_of_range_priority_and_too_long_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create(Bead::new("b", "t")).unwrap();
    let err = store
        .transact(|tx| {
            Ok(tx.update(
                "b",
                finn_beads::Patch {
                    priority: Some(finn_beads::Priority(11)),
                    ..Default::default()
                },
            )?)
        })
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Validation(ValidationError::PriorityOutOfRange { .. })
    ));
    let long = "r".repeat(1025);
    let err = store
        .transact(|tx| Ok(tx.close("b", Some(&long))?))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Validation(ValidationError::TooLong {
            field: "close_reason",
            ..
        })
    ));
    assert_eq!(store.get("b").unwrap().status, Status::Open);
}

// --- §11.5 work queue / labels -------------------------------------------------------------

#[test]
fn anchor_previous_handoff_falls_back_to_the_description() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let h = Handoff {
        session_id: "s0".into(),
        timestamp: None,
        files_changed: vec![],
        current_state: "from description".into(),
        next_steps: vec!["go on".into()],
        tokens_used: 1,
    };
    let mut b = Bead::new("b", "t");
    b.description = Some(format!("Intro\n{}\nOutro", h.to_text()));
    store.create(b).unwrap();
    assert_eq!(
        store.previous_handoff("b").unwrap().current_state,
        "from description"
    );
}

#[test]
fn anchor_label_helpers_are_exact_and_case_sensitive() {
    let mut b = Bead::new("b", "t");
    b.labels = vec![
        "session:abc".into(),
        "handoff:abc".into(),
        "Sprint:1".into(),
    ];
    assert!(b.has_label("session:abc"));
    assert!(!b.has_label("session:ABC"));
    assert!(!b.has_label("sprint:1"));
    assert_eq!(
        b.labels_with_prefix("session:").collect::<Vec<_>>(),
        ["session:abc"]
    );
    assert_eq!(b.labels_with_prefix("sprint:").count(), 0);
}

// --- §6.8 weaknesses -----------------------------------------------------------------------

/// §6.8.1: the anchors replayed all history on every recovery; creates minted new ids and
/// label/comment replays duplicated. Here replay stops at the applied LSN and records carry
/// post-images with their ids.
#[test]
fn weakness_1_replay_is_idempotent_and_never_mints_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store.create(Bead::new("", "generated id")).unwrap();
    store
        .transact(|tx| {
            tx.add_labels(&id, &["x"])?;
            tx.comment(&id, None, "once")?;
            Ok(())
        })
        .unwrap();
    drop(store);
    for _ in 0..3 {
        let store = open(dir.path());
        store.read(|s| {
            assert_eq!(s.len(), 1);
            let b = s.get(&id).expect("same id after replay");
            assert_eq!(b.labels, ["x"]);
            assert_eq!(b.comments.len(), 1);
        });
    }
    let rs = records(dir.path());
    let mut s = State::new();
    for r in rs.iter().chain(rs.iter()) {
        s.apply(r).unwrap();
    }
    assert_eq!(s.get(&id).unwrap().comments.len(), 1);
}

/// §6.8.2: `needsRecovery` compared wall-clock times with a file mtime. Here there is nothing to
/// compare: the state is the WAL folded from the snapshot's LSN, whatever the clocks say.
#[test]
fn weakness_2_recovery_follows_the_lsn_not_file_times() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open_with(dir.path(), &clock);
    store.create(Bead::new("a", "a")).unwrap();
    let (snap, lsn) = store.snapshot();
    // Later writes carry *older* timestamps (clock stepped back a day).
    let back = TestClock::new();
    drop(store);
    let store = Store::open(dir.path(), {
        let mut o = back.options();
        o.clock = {
            let c = back.clone();
            Arc::new(move || c.now().to_system_time() - Duration::from_secs(86400))
        };
        o
    })
    .unwrap();
    store.create(Bead::new("b", "b")).unwrap();
    drop(store);
    let store = Store::open_from_snapshot(dir.path(), Options::default(), &snap, lsn).unwrap();
    assert!(
        store.get("b").is_some(),
        "record after the snapshot was not replayed"
    );
}

/// §6.8.3: the anchors sorted replay by ISO timestamp and grouped by bead, losing cross-bead
/// order. Here replay is in LSN order even when timestamps go backwards.
#[test]
fn weakness_3_replay_is_in_lsn_order_even_when_clocks_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    clock.advance(Duration::from_secs(3600));
    let store = open_with(dir.path(), &clock);
    store.create(Bead::new("a", "a")).unwrap();
    drop(store);
    let earlier = TestClock::new();
    let store = open_with(dir.path(), &earlier);
    let mut b = Bead::new("b", "b");
    b.dependencies
        .push(finn_beads::Dependency::new("b", "a", DepType::Blocks));
    store.create(b).unwrap();
    store
        .transact(|tx| Ok(tx.add_labels("a", &["late"])?))
        .unwrap();
    // Our own write to `a` is still newer than its previous version.
    let a = store.get("a").unwrap();
    assert!(
        a.updated_at
            .unwrap()
            .is_after(a.created_at.as_ref().unwrap())
    );
    let before = store.read(|s| s.clone());
    drop(store);
    let store = open(dir.path());
    store.read(|s| {
        assert_eq!(*s, before);
        assert!(s.is_blocked("b"));
    });
}

/// §6.8.4: shell strings with quoting that truncated (framework) or threw (lib) above 1024
/// characters. There is no shell here; long text is stored whole.
#[test]
fn weakness_4_no_shell_and_no_silent_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut b = Bead::new("b", "t");
    let long = "x'y".repeat(1000);
    b.description = Some(long.clone());
    store.create(b).unwrap();
    drop(store);
    assert_eq!(
        open(dir.path()).get("b").unwrap().description.unwrap(),
        long
    );
    let src = include_str!("../../src/store.rs").to_owned()
        + include_str!("../../src/queue.rs")
        + include_str!("../../src/run.rs");
    assert!(!src.contains("std::process::Command"));
}

/// §6.8.5: the claim protocol was check-then-act over several CLI calls. Here a claim is one
/// transaction; of many racers on one ready bead exactly one wins.
#[test]
fn weakness_5_concurrent_claims_on_one_bead_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    store.create(Bead::new("only", "t")).unwrap();
    let winners: usize = (0..8)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                store
                    .claim(
                        &format!("w{i}"),
                        Duration::from_secs(60),
                        &ReadyQuery::default(),
                    )
                    .unwrap()
                    .is_some() as usize
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(winners, 1);
    let c = store
        .read(|s| s.entry("only").unwrap().lease.clone())
        .unwrap();
    let claim = finn_beads::Claim {
        bead_id: "only".into(),
        claim_id: c.claim_id,
        worker: c.worker,
        expires_at: c.expires_at,
    };
    store.release(&claim, Outcome::Done).unwrap();
}

/// §6.8.6: bead WAL entries had unique paths, so compaction never reduced them. Here records are
/// keyed puts of the bead's post-image: compaction keeps one per bead and the state is unchanged.
#[test]
fn weakness_6_compaction_shrinks_bead_history_to_one_record_per_bead() {
    let dir = tempfile::tempdir().unwrap();
    let options = finn_wal::Options {
        segment_size: 16 * 1024,
        ..finn_wal::Options::default()
    };
    let (wal, _) = Wal::open(dir.path(), options.clone()).unwrap();
    let wal = Arc::new(wal);
    let store = Store::with_wal(wal.clone(), Options::default()).unwrap();
    store.create(Bead::new("a", "a")).unwrap();
    store.create(Bead::new("b", "b")).unwrap();
    for i in 0..200 {
        let id = if i % 2 == 0 { "a" } else { "b" };
        store
            .transact(|tx| Ok(tx.add_labels(id, &[&format!("l{}", i % 7)])?))
            .unwrap();
    }
    let before = store.read(|s| s.clone());
    wal.append(NewRecord::event(Kind::Audit, b"seal".to_vec()))
        .unwrap();
    // Compaction rewrites sealed segments only: seal the active one so every bead record is
    // eligible, whatever number of records the segment size happens to leave in it.
    wal.rotate().unwrap();
    wal.compact().unwrap();
    let count = wal
        .iter_from(Lsn::new(1))
        .unwrap()
        .filter(|r| r.as_ref().unwrap().kind == Kind::Bead)
        .count();
    assert!(count <= 2, "{count} bead records left after compaction");
    drop(store);
    let store = Store::with_wal(wal, Options::default()).unwrap();
    store.read(|s| assert_eq!(*s, before));
}
