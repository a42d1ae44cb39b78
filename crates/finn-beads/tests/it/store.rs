//! The write path: validation before the WAL, WAL before the state, state as a fold of the WAL.

use finn_beads::{
    Bead, DepType, Error, LineError, Patch, Priority, State, Status, Store, ValidationError,
};
use finn_wal::{Lsn, Wal};

use crate::util::open;

fn wal_records(dir: &std::path::Path) -> Vec<finn_wal::Record> {
    let wal =
        Wal::open_read_only(dir.join(finn_beads::WAL_DIR), finn_wal::Options::default()).unwrap();
    wal.iter_from(Lsn::new(1))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn invalid_input_is_a_typed_error_and_writes_no_wal_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store.create(Bead::new("bd-1", "first")).unwrap();
    let lsn = store.lsn();
    type Case = Box<dyn Fn(&Store) -> Result<(), Error>>;
    let cases: Vec<(Case, &str)> = vec![
        (
            Box::new(|s| s.create(Bead::new("../etc/passwd", "x")).map(drop)),
            "id",
        ),
        (
            Box::new(|s| s.create(Bead::new("bd-1", "dup")).map(drop)),
            "dup",
        ),
        (
            Box::new(|s| s.create(Bead::new("bd-2", "  ")).map(drop)),
            "empty",
        ),
        (
            Box::new(|s| s.create(Bead::new("bd-2", "x".repeat(1025))).map(drop)),
            "long",
        ),
        (
            Box::new(|s| {
                let mut b = Bead::new("bd-2", "x");
                b.priority = Priority(11);
                s.create(b).map(drop)
            }),
            "priority",
        ),
        (
            Box::new(|s| s.transact(|tx| Ok(tx.add_labels("bd-1", &["has space"])?))),
            "label",
        ),
        (
            Box::new(|s| {
                s.transact(|tx| Ok(tx.add_dependency("bd-1", "bd-404", DepType::Blocks)?))
            }),
            "target",
        ),
        (
            Box::new(|s| {
                s.transact(|tx| Ok(tx.add_dependency("bd-1", "bd-1", DepType::Blocks)?))
            }),
            "self",
        ),
        (
            Box::new(|s| s.transact(|tx| Ok(tx.close("bd-404", None)?))),
            "unknown",
        ),
        (
            Box::new(|s| s.transact(|tx| Ok(tx.set_status("bd-1", Status::Tombstone)?))),
            "tombstone",
        ),
    ];
    for (f, name) in cases {
        let err = f(&store).unwrap_err();
        assert!(matches!(err, Error::Validation(_)), "{name}: {err:?}");
        assert_eq!(store.lsn(), lsn, "{name} wrote a record");
    }
    // A failing step discards the whole transaction, including earlier valid steps.
    let err = store
        .transact(|tx| {
            tx.add_labels(&id, &["ok"])?;
            tx.add_labels(&id, &["not ok"])?;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Validation(ValidationError::InvalidLabel { .. })
    ));
    assert!(!store.get(&id).unwrap().has_label("ok"));
    assert_eq!(wal_records(dir.path()).len(), 1);
}

#[test]
fn cycles_through_blocking_edges_are_rejected_but_related_edges_may_loop() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for id in ["a", "b", "c"] {
        store.create(Bead::new(id, id)).unwrap();
    }
    store
        .transact(|tx| {
            tx.add_dependency("a", "b", DepType::Blocks)?;
            tx.add_dependency("b", "c", DepType::ParentChild)?;
            Ok(())
        })
        .unwrap();
    let err = store
        .transact(|tx| Ok(tx.add_dependency("c", "a", DepType::WaitsFor)?))
        .unwrap_err();
    let Error::Validation(ValidationError::DependencyCycle { path }) = err else {
        panic!("expected a cycle error, got {err:?}")
    };
    assert_eq!(path, ["c", "a", "b", "c"]);
    store
        .transact(|tx| Ok(tx.add_dependency("c", "a", DepType::Related)?))
        .unwrap();
}

#[test]
fn restart_replays_to_the_same_state_and_generated_ids_are_never_reminted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store.create(Bead::new("", "generated")).unwrap();
    assert!(id.starts_with("bd-"));
    store
        .transact(|tx| {
            tx.update(
                &id,
                Patch {
                    description: Some(Some("desc".into())),
                    priority: Some(Priority(0)),
                    ..Patch::default()
                },
            )?;
            tx.add_labels(&id, &["x", "y"])?;
            tx.remove_labels(&id, &["x"])?;
            tx.comment(&id, Some("me"), "hello")?;
            tx.close(&id, Some("done"))?;
            tx.reopen(&id)?;
            Ok(())
        })
        .unwrap();
    let before = store.read(|s| s.clone());
    drop(store);
    let store = open(dir.path());
    store.read(|s| assert_eq!(*s, before));
    let b = store.get(&id).unwrap();
    assert_eq!(b.labels, ["y"]);
    assert_eq!(b.comments.len(), 1);
    assert_eq!(b.status, Status::Open);
    assert_eq!(store.read(|s| s.len()), 1);
}

#[test]
fn folding_every_record_twice_or_from_a_snapshot_gives_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..20 {
        let id = store.create(Bead::new(format!("b{i}"), "t")).unwrap();
        if i > 0 {
            store
                .transact(|tx| {
                    Ok(tx.add_dependency(&id, &format!("b{}", i - 1), DepType::Blocks)?)
                })
                .unwrap();
        }
        store
            .transact(|tx| {
                tx.comment(&id, None, "c")?;
                Ok(())
            })
            .unwrap();
    }
    let expected = store.read(|s| s.clone());
    let (snap, snap_lsn) = store.snapshot();
    drop(store);
    let records = wal_records(dir.path());
    // Apply each record twice, in LSN order.
    let mut twice = State::new();
    for r in &records {
        twice.apply(r).unwrap();
        twice.apply(r).unwrap();
    }
    assert_eq!(twice, expected);
    // Re-applying the whole log again is a no-op (LSN high-water mark).
    twice.apply_all(&records).unwrap();
    assert_eq!(twice, expected);
    assert_eq!(twice.blocked_ids(), expected.blocked_ids());
    // Snapshot at the end, then replay from it.
    let restored = State::from_snapshot(&snap, snap_lsn).unwrap();
    assert_eq!(restored, expected);
    assert!(State::from_snapshot(&snap, Lsn::new(snap_lsn.get() + 1)).is_err());
    // Snapshot midway, then fold the rest.
    let mut half = State::new();
    half.apply_all(&records[..records.len() / 2]).unwrap();
    let mut resumed = State::from_snapshot(&half.snapshot(), half.lsn()).unwrap();
    resumed.apply_all(&records).unwrap();
    assert_eq!(resumed, expected);
    // Opening a store from the snapshot replays only the tail.
    let store = Store::open_from_snapshot(
        dir.path(),
        finn_beads::Options::default(),
        &half.snapshot(),
        half.lsn(),
    )
    .unwrap();
    store.read(|s| assert_eq!(*s, expected));
}

#[test]
fn delete_keeps_an_exported_tombstone_that_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create(Bead::new("a", "a")).unwrap();
    store.create(Bead::new("b", "b")).unwrap();
    store
        .transact(|tx| Ok(tx.add_dependency("b", "a", DepType::Blocks)?))
        .unwrap();
    assert!(store.read(|s| s.is_blocked("b")));
    store
        .transact(|tx| Ok(tx.delete("a", Some("dup"), Some("me"))?))
        .unwrap();
    let a = store.get("a").unwrap();
    assert_eq!(a.status, Status::Tombstone);
    assert_eq!(a.original_type.as_deref(), Some("task"));
    assert!(!store.read(|s| s.is_blocked("b")));
    let text = crate::util::export_string(&store);
    assert!(text.contains("\"tombstone\""));
    let err = store.transact(|tx| Ok(tx.reopen("a")?)).unwrap_err();
    assert!(matches!(
        err,
        Error::Validation(ValidationError::Deleted { .. })
    ));
}

#[test]
fn exclusive_store_refuses_a_second_opener() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let err = Store::open(dir.path(), finn_beads::Options::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
}

#[test]
fn records_of_other_kinds_in_a_shared_wal_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), finn_wal::Options::default()).unwrap();
    let wal = std::sync::Arc::new(wal);
    wal.append(finn_wal::NewRecord::event(
        finn_wal::Kind::Session,
        b"not a bead".to_vec(),
    ))
    .unwrap();
    let store = Store::with_wal(wal.clone(), finn_beads::Options::default()).unwrap();
    store.create(Bead::new("a", "a")).unwrap();
    wal.append(finn_wal::NewRecord::event(
        finn_wal::Kind::Audit,
        b"x".to_vec(),
    ))
    .unwrap();
    store.create(Bead::new("b", "b")).unwrap();
    assert_eq!(store.lsn(), Lsn::new(4));
    drop(store);
    let store = Store::with_wal(wal, finn_beads::Options::default()).unwrap();
    assert_eq!(store.read(|s| s.len()), 2);
}

/// Imported lines go into the WAL payload as their own text where possible (no second
/// encoding); whatever path a line takes, replaying the WAL gives exactly the imported state.
#[test]
fn imported_beads_replay_to_the_state_the_import_built() {
    let dir = tempfile::tempdir().unwrap();
    let line = |id: &str, updated: &str, extra: &str| {
        format!(
            r#"{{"id":"{id}","title":"T {id} \"quoted\" \\ {{not nested}}","status":"open","priority":1,"issue_type":"task","created_at":"2026-01-01T00:00:00.123456789Z","updated_at":"{updated}"{extra},"labels":["a","b"],"dependencies":[{{"issue_id":"{id}","depends_on_id":"bd-0","type":"blocks","created_at":"2026-01-01T00:00:00Z"}}]}}"#
        )
    };
    let deep = format!(r#","x_deep":{}0{}"#, "[".repeat(110), "]".repeat(110));
    let text = [
        line("bd-0", "2026-01-01T00:00:00Z", ""),
        line(
            "bd-1",
            "2026-01-01T00:00:00Z",
            r#","x_unknown":{"k":[1,2.50,"\u00e9"]}"#,
        ),
        // Nested too deep to splice into a payload: encoded from the typed bead instead.
        line("bd-2", "2026-01-01T00:00:00Z", &deep),
        // `_type` lines take the map path and are encoded from the typed bead.
        line("bd-3", "2026-01-01T00:00:00Z", r#","_type":"issue""#),
        // The same id twice: the newer line wins and is what the WAL holds.
        line("bd-4", "2026-01-01T00:00:00Z", ""),
        line("bd-4", "2026-01-02T00:00:00Z", r#","notes":"second""#),
    ]
    .join("\n");
    let store = open(dir.path());
    let report = store
        .import_reader(text.as_bytes(), &finn_beads::ImportOptions::default())
        .unwrap();
    assert_eq!(report.created.len(), 5);
    assert_eq!(report.updated, ["bd-4"]);
    let imported: State = store.read(State::clone);
    assert_eq!(
        imported.get("bd-4").and_then(|b| b.notes.as_deref()),
        Some("second")
    );
    drop(store);
    let reopened = open(dir.path());
    let replayed: State = reopened.read(State::clone);
    assert!(
        replayed == imported,
        "replay differs from the imported state"
    );
    assert_eq!(replayed.lsn(), imported.lsn());
}

/// JSONL of `n` beads: epics of 10 children, every third child blocked by the previous one.
fn bulk_jsonl(n: usize) -> String {
    let mut out = String::new();
    let mut epic = 0;
    for i in 0..n {
        let mut deps = Vec::new();
        if i % 11 == 0 {
            epic = i;
        } else {
            deps.push(format!(
                r#"{{"issue_id":"b-{i}","depends_on_id":"b-{epic}","type":"parent-child"}}"#
            ));
            if i % 3 == 0 && (i - 1) % 11 != 0 {
                deps.push(format!(
                    r#"{{"issue_id":"b-{i}","depends_on_id":"b-{}","type":"blocks"}}"#,
                    i - 1
                ));
            }
        }
        let status = if i % 4 == 0 { "closed" } else { "open" };
        out.push_str(&format!(
            r#"{{"id":"b-{i}","title":"t{i}","status":"{status}","updated_at":"2026-01-01T00:00:{:02}.{i:09}Z","dependencies":[{}],"future":{{"k":{i}}}}}"#,
            i % 60,
            deps.join(",")
        ));
        out.push('\n');
    }
    out
}

/// A bulk import builds its state beside the WAL appends; the result must be exactly the fold
/// of what reached the WAL (same beads, same LSNs, same ready and blocked sets).
#[test]
fn bulk_import_state_equals_a_fold_of_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let text = bulk_jsonl(6000);
    let store = open(dir.path());
    let report = store
        .import_reader(text.as_bytes(), &finn_beads::ImportOptions::default())
        .unwrap();
    assert_eq!(report.created.len(), 6000);
    let imported = store.read(|s| s.clone());
    let now = finn_beads::Timestamp::parse("2026-06-01T00:00:00Z").unwrap();
    let ready: Vec<String> = store.read(|s| {
        s.ready(&Default::default(), &now)
            .iter()
            .map(|b| b.id.clone())
            .collect()
    });
    drop(store);
    let reopened = open(dir.path());
    reopened.read(|s| {
        assert_eq!(*s, imported);
        assert_eq!(s.lsn(), imported.lsn());
        assert_eq!(s.blocked_ids(), imported.blocked_ids());
        let again: Vec<String> = s
            .ready(&Default::default(), &now)
            .iter()
            .map(|b| b.id.clone())
            .collect();
        assert_eq!(again, ready);
    });
    assert!(!ready.is_empty() && ready.len() < 6000);
}

/// A multi-process store parses a bulk import before it takes the lock file; the result is
/// the same as with an exclusive store, another process sees all of it, and a bad line still
/// leaves nothing behind.
#[test]
fn bulk_import_into_a_multi_process_store_equals_an_exclusive_one() {
    let shared = finn_beads::Options {
        sharing: finn_beads::Sharing::MultiProcess,
        ..finn_beads::Options::default()
    };
    let text = bulk_jsonl(6000);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let exclusive = open(a.path());
    exclusive
        .import_reader(text.as_bytes(), &finn_beads::ImportOptions::default())
        .unwrap();
    let multi = Store::open(b.path(), shared.clone()).unwrap();
    let other = Store::open(b.path(), shared).unwrap();
    let report = multi
        .import_reader(text.as_bytes(), &finn_beads::ImportOptions::default())
        .unwrap();
    assert_eq!(report.created.len(), 6000);
    let expected = exclusive.read(|s| s.clone());
    multi.read(|s| assert_eq!(*s, expected));
    other.refresh().unwrap();
    other.read(|s| assert_eq!(*s, expected));
    let lsn = multi.lsn();
    let bad = text.replacen(r#"{"id":"b-5000","#, r#"{"id":"b-5000","title":"#, 1);
    let err = multi
        .import_reader(bad.as_bytes(), &finn_beads::ImportOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::Import { .. }), "{err:?}");
    other.refresh().unwrap();
    assert_eq!(other.lsn(), lsn);
}

/// On a WAL shared with another writer, the LSNs a bulk import gets may interleave with the
/// other writer's: the state must still be the fold of the WAL.
#[test]
fn bulk_import_on_a_shared_wal_with_a_concurrent_writer_equals_a_fold() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), finn_wal::Options::default()).unwrap();
    let wal = std::sync::Arc::new(wal);
    let store = Store::with_wal(wal.clone(), finn_beads::Options::default()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (wal, stop) = (wal.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                wal.append_with(
                    finn_wal::NewRecord::event(finn_wal::Kind::Audit, b"other".to_vec()),
                    finn_wal::Durability::None,
                )
                .unwrap();
                n += 1;
            }
            n
        })
    };
    let text = bulk_jsonl(6000);
    store
        .import_reader(text.as_bytes(), &finn_beads::ImportOptions::default())
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let others = writer.join().unwrap();
    assert!(others > 0);
    let imported = store.read(|s| s.clone());
    assert_eq!(imported.len(), 6000);
    drop(store);
    let refolded = Store::with_wal(wal, finn_beads::Options::default()).unwrap();
    refolded.read(|s| {
        assert_eq!(*s, imported);
        assert_eq!(s.blocked_ids(), imported.blocked_ids());
    });
}

/// A large import is checked and parsed in pieces on several threads; the first bad line of
/// the file is still the one named (line numbers count blank lines and the pieces before),
/// whether it is not JSON, not UTF-8 or has a rejected id, and nothing is written.
#[test]
fn bad_line_deep_in_a_large_import_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create(Bead::new("bd-1", "first")).unwrap();
    let lsn = store.lsn();
    // 12,000 beads (2.4 MB) with a blank line 3: bead i is on line i + 2 from there on.
    let mut lines: Vec<Vec<u8>> = bulk_jsonl(12_000)
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect();
    lines.insert(2, b"   ".to_vec());
    let with = |changes: &[(usize, &[u8])]| {
        let mut lines = lines.clone();
        for (line, text) in changes {
            lines[line - 1] = text.to_vec();
        }
        lines.join(&b'\n')
    };
    let import = |bytes: Vec<u8>| {
        store.import_reader(bytes.as_slice(), &finn_beads::ImportOptions::default())
    };
    let line_of = |e: Error| match e {
        Error::Import { source, .. } => (source.line(), matches!(source, LineError::Io { .. })),
        Error::ImportRecord { line, .. } => (line, false),
        other => panic!("unexpected error {other:?}"),
    };
    let bad_json: &[u8] = br#"{"id":"b-x","title":"#;
    let bad_utf8: &[u8] = b"{\"id\":\"b-y\",\"title\":\"\xff\"}";
    let bad_id: &[u8] = br#"{"id":"../etc","title":"x"}"#;
    assert_eq!(
        line_of(import(with(&[(10_500, bad_json)])).unwrap_err()),
        (10_500, false)
    );
    assert_eq!(
        line_of(import(with(&[(10_500, bad_utf8)])).unwrap_err()),
        (10_500, true)
    );
    assert_eq!(
        line_of(import(with(&[(7_001, bad_id)])).unwrap_err()),
        (7_001, false)
    );
    // The first bad line wins, whatever its kind and wherever the pieces were cut.
    assert_eq!(
        line_of(import(with(&[(200, bad_json), (10_500, bad_utf8)])).unwrap_err()),
        (200, false)
    );
    assert_eq!(
        line_of(import(with(&[(200, bad_utf8), (201, bad_json)])).unwrap_err()),
        (200, true)
    );
    assert_eq!(store.lsn(), lsn);
    assert_eq!(store.read(|s| s.len()), 1);
    assert_eq!(wal_records(dir.path()).len(), 1);
    // The same file without the bad lines imports every bead.
    let report = import(with(&[])).unwrap();
    assert_eq!(report.created.len(), 12_000);
}
