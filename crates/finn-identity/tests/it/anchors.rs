//! The identity scenarios of anchors.md §11.7, one test (or more) each.

use std::time::Duration;

use finn_identity::{
    BoundaryKind, Event, Issue, LoadError, Loader, Options, WatchMode, parse_str, validate,
};

use crate::util::{fast_options, loader_with, valid_doc, version, wait_for_doc, wait_for_event};

// identity.test.ts: "loads and parses a BEAUVOIR.md document".
#[test]
fn loads_and_parses_a_beauvoir_document() {
    let (_dir, _path, loader) = loader_with(&valid_doc("1.0.0"), Options::default());
    loader.load().unwrap();
    let doc = loader.current().unwrap();
    assert_eq!(doc.metadata.version.as_deref(), Some("1.0.0"));
    assert_eq!(doc.metadata.last_updated.as_deref(), Some("2026-02-06"));
    assert_eq!(doc.checksum.to_hex().len(), 64);
    assert_eq!(doc.checksum.short().len(), 16);
    assert_eq!(doc.principles.len(), 2);
    assert_eq!(doc.principles[0].number, 1);
    assert_eq!(doc.principles[0].name, "Understand Before Acting");
    assert!(!doc.boundaries.will_not.is_empty() && !doc.boundaries.always.is_empty());
    assert!(doc.boundaries.will_not.len() >= 2);
    let styles: Vec<&str> = doc
        .interaction_style
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(styles, ["Concise", "Opinionated"]);
    assert!(
        doc.recovery_protocol
            .as_ref()
            .unwrap()
            .steps
            .contains("Read BEAUVOIR.md")
    );
}

// identity.test.ts: "detects changes on disk via hasChanged()".
#[test]
fn has_changed_is_false_after_load_and_true_after_appending_a_section() {
    let (_dir, path, loader) = loader_with(&valid_doc("1.0.0"), Options::default());
    assert!(loader.has_changed(), "nothing loaded yet");
    loader.load().unwrap();
    assert!(!loader.has_changed());
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n## New Section\n\nMore.\n");
    std::fs::write(&path, text).unwrap();
    assert!(loader.has_changed());
    std::fs::remove_file(&path).unwrap();
    assert!(loader.has_changed(), "a missing file counts as changed");
}

// identity.test.ts: "keeps previous state on corrupt file during watch callback" (file deleted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_previous_state_when_the_file_is_deleted_during_a_watch() {
    let (_dir, path, loader) = loader_with(&valid_doc("1.0.0"), fast_options(WatchMode::Auto));
    let mut events = loader.events();
    let _guard = loader.watch().unwrap();
    let mut rx = loader.subscribe();
    wait_for_doc(&mut rx, |d| version(d) == Some("1.0.0")).await;

    std::fs::remove_file(&path).unwrap();
    let event = wait_for_event(&mut events, |e| {
        matches!(
            e,
            Event::Failed(finn_identity::Failure::Load(LoadError::NotFound { .. }))
        )
    })
    .await;
    assert!(matches!(event, Event::Failed(_)));
    assert_eq!(version(&loader.current().unwrap()), Some("1.0.0"));
    let health = loader.health();
    assert!(!health.valid);
    assert!(health.last_error.is_some());
    assert!(matches!(loader.load(), Err(LoadError::NotFound { .. })));
}

// identity.test.ts: "validates document structure".
#[test]
fn minimal_document_is_invalid_with_named_issues() {
    let doc = parse_str("# BEAUVOIR\n\nDefault identity template.\n");
    let v = validate(&doc);
    assert!(!v.is_valid());
    for issue in [
        Issue::NoCorePrinciples,
        Issue::NoBoundaries,
        Issue::NoInteractionStyle,
        Issue::NoRecoveryProtocol,
        Issue::NoVersion,
    ] {
        assert!(
            v.issues.contains(&issue),
            "missing {issue:?} in {:?}",
            v.issues
        );
    }
    let (_dir, _path, loader) = loader_with(
        "# BEAUVOIR\n\nDefault identity template.\n",
        Options::default(),
    );
    match loader.load() {
        Err(LoadError::Rejected { issues, .. }) => assert_eq!(issues, v.issues),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

// identity.test.ts: "FileWatcher debounces rapid changes into single callback" (polling 50 ms).
// The debounce here is longer than the anchors' 100 ms so three writes 20 ms apart stay inside
// one window even on a loaded machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_debounces_rapid_changes_into_one_or_two_reloads() {
    let options = Options {
        debounce: Duration::from_millis(400),
        poll_interval: Duration::from_millis(50),
        watch_mode: WatchMode::Poll,
        ..Options::default()
    };
    let (_dir, path, loader) = loader_with(&valid_doc("1.0.0"), options);
    let _guard = loader.watch().unwrap();
    let mut rx = loader.subscribe();
    wait_for_doc(&mut rx, |d| version(d) == Some("1.0.0")).await;
    let before = loader.health().reloads;

    for v in ["1.0.1", "1.0.2", "1.0.3"] {
        std::fs::write(&path, valid_doc(v)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_doc(&mut rx, |d| version(d) == Some("1.0.3")).await;
    // Let any straggling debounced event fire before counting.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reloads = loader.health().reloads - before;
    assert!(
        (1..=2).contains(&reloads),
        "{reloads} reloads for three rapid writes"
    );
}

// identity-loader-golden.test.ts: load() fields, principles and boundaries.
#[test]
fn golden_load_returns_parsed_fields_principles_and_boundaries() {
    let text = valid_doc("1.0.0")
        .replace("2026-02-06", "2026-01-15")
        .replace("Understand Before Acting", "Safety First");
    let (_dir, _path, loader) = loader_with(&text, Options::default());
    loader.load().unwrap();
    let doc = loader.current().unwrap();
    assert_eq!(version(&doc), Some("1.0.0"));
    assert_eq!(doc.metadata.last_updated.as_deref(), Some("2026-01-15"));
    assert!(!doc.checksum.to_hex().is_empty());
    assert!(doc.principles.len() >= 2);
    assert_eq!(
        (doc.principles[0].number, doc.principles[0].name.as_str()),
        (1, "Safety First")
    );
    assert!(doc.boundaries.will_not.len() + doc.boundaries.always.len() >= 2);
    assert!(doc.boundaries.will_not.len() >= 2);
}

// identity-loader-golden.test.ts: throws "not found" on a missing file.
#[test]
fn golden_load_of_a_missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let loader = Loader::new(dir.path().join("BEAUVOIR.md"), Options::default());
    let err = loader.load().unwrap_err();
    assert!(matches!(err, LoadError::NotFound { .. }));
    assert!(err.to_string().contains("not found"), "{err}");
    assert!(loader.current().is_none());
}

// identity-loader-golden.test.ts: getIdentity, getPrinciple, getBoundaries, validate before/after.
#[test]
fn golden_accessors_before_and_after_load() {
    let (_dir, _path, loader) = loader_with(&valid_doc("1.0.0"), Options::default());
    assert!(loader.current().is_none());
    assert!(loader.boundaries(BoundaryKind::WillNot).is_empty());
    assert!(loader.principle(1).is_none());
    assert_eq!(loader.validate().issues, [Issue::NotLoaded]);

    loader.load().unwrap();
    assert!(loader.current().is_some());
    assert_eq!(
        loader.principle(1).unwrap().name,
        "Understand Before Acting"
    );
    assert!(loader.principle(99).is_none());
    let will_not: Vec<String> = loader
        .boundaries(BoundaryKind::WillNot)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        will_not,
        [
            "Guess at credentials: I ask",
            "Push without review: Even my own code"
        ]
    );
    assert!(
        loader.validate().is_valid(),
        "{:?}",
        loader.validate().issues
    );
}

// identity-loader-loadraw.test.ts: loadRaw() content, missing file, no effect on parsed state.
#[test]
fn load_raw_returns_the_text_fails_on_missing_and_leaves_state_alone() {
    let (_dir, path, loader) = loader_with(&valid_doc("1.0.0"), Options::default());
    loader.load().unwrap();
    std::fs::write(&path, "raw text, not an identity\n").unwrap();
    assert_eq!(loader.load_raw().unwrap(), "raw text, not an identity\n");
    assert_eq!(version(&loader.current().unwrap()), Some("1.0.0"));
    assert!(loader.health().valid);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(loader.load_raw(), Err(LoadError::NotFound { .. })));
    assert_eq!(version(&loader.current().unwrap()), Some("1.0.0"));
}
