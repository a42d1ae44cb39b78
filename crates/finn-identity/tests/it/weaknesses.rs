//! One test (or more) per identity weakness of anchors.md §8.4, each showing it is fixed.

use finn_identity::{
    BoundaryKind, Event, Failure, Issue, LoadError, LoadOutcome, Loader, Options, ParseError,
    WatchMode, parse_str,
};

use crate::util::{
    fast_options, loader_with, rename_replace, valid_doc, version, wait_for_doc, wait_for_event,
};

// §8.4-1: a garbage file loaded as version 0.0.0 with no principles and replaced the identity.
#[test]
fn garbage_file_keeps_the_last_known_good_identity() {
    let (_dir, path, loader) = loader_with(&valid_doc("1.0.0"), Options::default());
    let mut events = loader.events();
    loader.load().unwrap();
    let good = loader.current().unwrap();

    std::fs::write(&path, "\u{0}\u{1}garbage ### not an identity }{\n").unwrap();
    match loader.load() {
        Err(LoadError::Rejected { issues, .. }) => {
            assert!(issues.contains(&Issue::NoCorePrinciples));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(loader.current().unwrap().checksum, good.checksum);
    let health = loader.health();
    assert!(!health.valid);
    assert_eq!(health.checksum, Some(good.checksum));
    assert!(matches!(
        health.last_error,
        Some((_, Failure::Load(LoadError::Rejected { .. })))
    ));
    assert_eq!(health.failures, 1);
    // Both the reload and the rejection were sent as events.
    assert!(matches!(events.try_recv().unwrap(), Event::Reloaded { .. }));
    assert!(matches!(
        events.try_recv().unwrap(),
        Event::Failed(Failure::Load(LoadError::Rejected { .. }))
    ));

    // Fixing the file makes it active again.
    std::fs::write(&path, valid_doc("1.1.0")).unwrap();
    assert!(matches!(
        loader.load().unwrap(),
        LoadOutcome::Reloaded { .. }
    ));
    assert!(loader.health().valid);
    assert_eq!(version(&loader.current().unwrap()), Some("1.1.0"));
}

#[test]
fn non_utf8_and_oversized_files_keep_the_last_known_good_identity() {
    let options = Options {
        max_len: 4096,
        ..Options::default()
    };
    let (_dir, path, loader) = loader_with(&valid_doc("1.0.0"), options);
    loader.load().unwrap();

    let mut bytes = valid_doc("2.0.0").into_bytes();
    bytes[40] = 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        loader.load(),
        Err(LoadError::Parse {
            source: ParseError::NotUtf8 { valid_up_to: 40 },
            ..
        })
    ));

    std::fs::write(&path, valid_doc("2.0.0").repeat(10)).unwrap();
    assert!(matches!(
        loader.load(),
        Err(LoadError::TooLarge { max: 4096, .. })
    ));
    assert_eq!(version(&loader.current().unwrap()), Some("1.0.0"));
}

// §8.4-1 through the watcher: the garbage arrives by a save, not a direct call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_saved_while_watching_is_reported_and_the_good_identity_stays() {
    let (_dir, path, loader) = loader_with(&valid_doc("1.0.0"), fast_options(WatchMode::Auto));
    let mut events = loader.events();
    let _guard = loader.watch().unwrap();
    let mut rx = loader.subscribe();
    wait_for_doc(&mut rx, |d| version(d) == Some("1.0.0")).await;

    rename_replace(&path, "garbage\n");
    wait_for_event(&mut events, |e| {
        matches!(e, Event::Failed(Failure::Load(LoadError::Rejected { .. })))
    })
    .await;
    assert_eq!(version(&loader.current().unwrap()), Some("1.0.0"));
    assert!(!loader.health().valid);

    rename_replace(&path, &valid_doc("1.0.1"));
    wait_for_doc(&mut rx, |d| version(d) == Some("1.0.1")).await;
    assert!(loader.health().valid);
}

// §8.4-2: template bodies directly under the heading (no blank line) gave zero principles.
#[test]
fn principle_bodies_directly_under_their_heading_parse() {
    let doc = parse_str(
        "# BEAUVOIR\n> **Version**: 0.1.0\n## Core Principles\n### 1. Survive\nKeep working.\n**In practice**: restart.\n### 2. Be honest\nSay so.\n## Boundaries\n### What I Won't Do\n- **Lie**\n### What I Always Do\n- **Log**\n## Interaction Style\n### Brief\n## Recovery Protocol\n```\nrestore\n```\n",
    );
    let names: Vec<&str> = doc.principles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Survive", "Be honest"]);
    assert_eq!(doc.principles[0].description, "Keep working.");
    assert_eq!(doc.principles[0].in_practice.as_deref(), Some("restart."));
    assert!(finn_identity::validate(&doc).is_valid());
}

// §8.4-4: a `#` inside a principle body ended it; curly apostrophes broke "What I Won't Do".
#[test]
fn hash_in_a_principle_body_and_curly_apostrophes_parse() {
    let doc = parse_str(
        "## Core Principles\n\n\
         ### 1. Track Work\n\n\
         I write C# and F#, file issue #42, and tag #identity. A line may even start with it:\n\
         #hashtag is text, not a heading.\n\n\
         **In practice**: I reference PR #7 \u{2014} it\u{2019}s the source of truth.\n\n\
         ### 2. Next\n\nBody.\n\n\
         ## Boundaries\n\n\
         ### What I Won\u{2019}t Do\n\n\
         1. **Guess** \u{2013} I don\u{2019}t\n\n\
         ### What I Always Do\n\n\
         - **Ask**\n",
    );
    assert_eq!(doc.principles.len(), 2);
    let p = &doc.principles[0];
    assert!(p.description.contains("C# and F#, file issue #42"));
    assert!(p.description.ends_with("#hashtag is text, not a heading."));
    assert_eq!(
        p.in_practice.as_deref(),
        Some("I reference PR #7 \u{2014} it\u{2019}s the source of truth.")
    );
    assert_eq!(doc.principles[1].name, "Next");
    let will_not = doc.boundaries(BoundaryKind::WillNot);
    assert_eq!(will_not.len(), 1);
    assert_eq!(will_not[0].to_string(), "Guess: I don\u{2019}t");
    assert_eq!(doc.boundaries(BoundaryKind::Always)[0].title, "Ask");
}

// §8.4-4: `---` anywhere ended a boundary section.
#[test]
fn a_thematic_break_inside_a_boundary_section_ends_nothing() {
    let doc = parse_str(
        "### What I Won't Do\n\n1. **First**\n\n---\n\n2. **Second** - after the rule\n\n### What I Always Do\n\n- **Third**\n",
    );
    let will_not: Vec<&str> = doc
        .boundaries
        .will_not
        .iter()
        .map(|i| i.title.as_str())
        .collect();
    assert_eq!(will_not, ["First", "Second"]);
    assert_eq!(doc.boundaries.always.len(), 1);
}

// §8.4-4: `lastUpdated` defaulted to today's date, so equal files parsed differently by day.
#[test]
fn absent_metadata_stays_absent_instead_of_defaulting() {
    let a = parse_str("# Me\n");
    assert_eq!(a.metadata.version, None);
    assert_eq!(a.metadata.last_updated, None);
    assert_eq!(a, parse_str("# Me\n"));
}

#[test]
fn crlf_extra_blank_lines_and_a_byte_order_mark_parse_like_the_plain_text() {
    let plain = valid_doc("1.0.0");
    let messy = format!(
        "\u{feff}{}",
        plain.replace("\n\n", "\n\n\n\n").replace('\n', "\r\n")
    );
    let (a, b) = (parse_str(&plain), parse_str(&messy));
    assert_eq!(a.metadata, b.metadata);
    assert_eq!(a.principles, b.principles);
    assert_eq!(a.boundaries, b.boundaries);
    assert_eq!(a.recovery_protocol, b.recovery_protocol);
    assert_eq!(
        a.interaction_style
            .iter()
            .map(|s| &s.name)
            .collect::<Vec<_>>(),
        b.interaction_style
            .iter()
            .map(|s| &s.name)
            .collect::<Vec<_>>()
    );
    assert!(finn_identity::validate(&b).is_valid());
}

// §8.4-3: `fs.watch` on the file followed the inode, so after one rename-replace save no further
// change was seen. Several saves in a row must each be picked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rename_replace_save_is_picked_up_by_the_watcher() {
    let (_dir, path, loader) = loader_with(&valid_doc("1.0.0"), fast_options(WatchMode::Native));
    let guard = loader.watch().unwrap();
    assert_eq!(guard.backend(), finn_identity::WatchBackend::Native);
    let mut rx = loader.subscribe();
    wait_for_doc(&mut rx, |d| version(d) == Some("1.0.0")).await;
    for v in ["1.0.1", "1.0.2", "1.0.3"] {
        rename_replace(&path, &valid_doc(v));
        wait_for_doc(&mut rx, |d| version(d) == Some(v)).await;
    }
    // An in-place write after the renames is seen too.
    std::fs::write(&path, valid_doc("1.0.4")).unwrap();
    wait_for_doc(&mut rx, |d| version(d) == Some("1.0.4")).await;
}

// §8.4-3: deletion and re-creation of the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_recreate_is_picked_up_by_the_watcher() {
    let (_dir, path, loader) = loader_with(&valid_doc("1.0.0"), fast_options(WatchMode::Native));
    let mut events = loader.events();
    let _guard = loader.watch().unwrap();
    let mut rx = loader.subscribe();
    wait_for_doc(&mut rx, |d| version(d) == Some("1.0.0")).await;

    std::fs::remove_file(&path).unwrap();
    wait_for_event(&mut events, |e| {
        matches!(e, Event::Failed(Failure::Load(LoadError::NotFound { .. })))
    })
    .await;
    assert_eq!(version(&loader.current().unwrap()), Some("1.0.0"));

    std::fs::write(&path, valid_doc("2.0.0")).unwrap();
    wait_for_doc(&mut rx, |d| version(d) == Some("2.0.0")).await;
    assert!(loader.health().valid);
}

// §8.4-4: watcher callback errors were dropped. A failing change-log write is reported as an
// event and in health, the document still becomes active, and the entry is retried.
#[test]
fn change_log_failures_are_reported_and_retried_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("BEAUVOIR.md");
    std::fs::write(&path, valid_doc("1.0.0")).unwrap();
    let notes_dir = dir.path().join("notes");
    let options = Options {
        notes_path: Some(notes_dir.join("NOTES.md")),
        ..Options::default()
    };
    let loader = Loader::new(&path, options);
    let mut events = loader.events();

    assert!(matches!(
        loader.load().unwrap(),
        LoadOutcome::Reloaded { .. }
    ));
    assert_eq!(version(&loader.current().unwrap()), Some("1.0.0"));
    let _reloaded = events.try_recv().unwrap();
    assert!(matches!(
        events.try_recv().unwrap(),
        Event::Failed(Failure::ChangeLog(_))
    ));
    let health = loader.health();
    assert!(health.valid, "the document itself is fine");
    assert!(matches!(
        health.last_error,
        Some((_, Failure::ChangeLog(_)))
    ));

    std::fs::create_dir(&notes_dir).unwrap();
    assert!(matches!(
        loader.load().unwrap(),
        LoadOutcome::Unchanged { .. }
    ));
    let entries = loader.change_log().unwrap().entries().unwrap();
    assert_eq!(
        entries.len(),
        1,
        "the pending entry was written on the next load"
    );
    assert_eq!(entries[0].checksum, loader.health().checksum);
}
