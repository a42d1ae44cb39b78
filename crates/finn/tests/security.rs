//! Hostile imports: a beads `issues.jsonl` or a learnings file naming a path outside its
//! directory is refused with a typed error, and nothing of it is stored. (Tampered objects and
//! manifests, unknown and revoked keys, `..` in manifests and symlinks during restore are
//! tested where they are refused: `finn-checkpoint/tests/it/tamper.rs`,
//! `finn-recovery/tests/it/tamper.rs`; see docs/guarantees.md §3.)

use std::io::Cursor;

const EVIL_IDS: &[&str] = &[
    "../../etc/passwd",
    "/etc/passwd",
    "a/../../b",
    "..",
    "a\\..\\b",
    "a\0b",
];

fn bead_line(id: &str) -> String {
    serde_json::json!({
        "id": id,
        "title": "evil",
        "status": "open",
        "priority": 1,
        "issue_type": "task",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z"
    })
    .to_string()
}

#[test]
fn beads_import_refuses_ids_that_name_paths_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = finn::beads::Store::open(dir.path(), finn::beads::Options::default()).unwrap();
    let options = finn::beads::ImportOptions::default();
    // A good line first: the import is all or nothing.
    let good = bead_line("fz-1");
    for id in EVIL_IDS {
        let jsonl = format!("{good}\n{}\n", bead_line(id));
        let result = store.import_reader(Cursor::new(jsonl), &options);
        assert!(
            matches!(
                result,
                Err(finn::beads::Error::ImportRecord { line: 2, .. }
                    | finn::beads::Error::Import { .. })
            ),
            "{id:?} was not refused with a typed error: {result:?}"
        );
        assert_eq!(
            store.read(|s| s.beads().count()),
            0,
            "{id:?}: part of a refused import was stored"
        );
    }
    // No file anywhere under the store is named after an id.
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            assert!(
                !p.to_string_lossy().contains("passwd"),
                "{} was created",
                p.display()
            );
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
}

fn loa_file(id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "category": "pattern",
        "tier": "framework",
        "learnings": [
            {"id": "FP-001", "trigger": "When x", "solution": "Do y"},
            {"id": id, "trigger": "When evil", "solution": "Escape"}
        ]
    }))
    .unwrap()
}

#[test]
fn learnings_import_refuses_ids_that_name_paths_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) =
        finn::learning::LearningStore::open(dir.path(), finn::learning::StoreOptions::default())
            .unwrap();
    for id in EVIL_IDS {
        let result = store.import_loa_bytes("patterns.json", &loa_file(id));
        assert!(
            matches!(result, Err(finn::learning::ImportError::Parse { .. })),
            "{id:?} was not refused as a parse error: {result:?}"
        );
        assert_eq!(
            store.len(),
            0,
            "{id:?}: part of a refused import was stored"
        );
    }
}

/// The anchors' layout names pending learnings by file (`pending-self/<id>.json`): an id inside
/// the file that names a path is refused, and so is the whole import.
#[test]
fn anchor_layout_import_refuses_a_pending_learning_whose_id_names_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("pending-self")).unwrap();
    let pending = serde_json::json!({
        "id": "../../../outside", "created": "2026-01-06T08:00:00.000Z",
        "source": "retrospective", "trigger": "t", "pattern": "p", "solution": "s",
        "gates": {"discovery_depth": 5, "reusability": 5, "trigger_clarity": 5, "verification": 3},
        "target": "loa", "status": "pending"
    });
    std::fs::write(
        src.join("pending-self/x.json"),
        serde_json::to_vec(&pending).unwrap(),
    )
    .unwrap();
    let (store, _) = finn::learning::LearningStore::open(
        dir.path().join("store"),
        finn::learning::StoreOptions::default(),
    )
    .unwrap();
    let result = store.import_anchor_dir(&src);
    assert!(result.is_err(), "a traversal id was imported: {result:?}");
    assert_eq!(store.len(), 0);
    assert!(!dir.path().join("outside").exists());
    assert!(!dir.path().join("outside.json").exists());
}
