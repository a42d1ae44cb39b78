//! `recovery/aside/` retention: the newest sets are kept, young sets are kept, older ones go.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use finn_recovery::{AsideRetention, Cascade, Layout, Mode, Recovery, TemplateSource};
use finn_wal::{Kind, NewRecord};

use crate::util::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A clean start: the previous state and WAL become one aside set of two entries.
async fn clean_boot(data: &Path, at_ms: u64, retention: AsideRetention) -> Recovery {
    let recovery = Cascade::builder(Layout::new(data))
        .wal_options(wal_options())
        .mode(Mode::Clean)
        .clock(ManualClock::at(at_ms))
        .aside_retention(retention)
        .source(
            TemplateSource::bundled("t")
                .with_file("NOTES.md", b"# NOTES.md\n".to_vec())
                .unwrap(),
        )
        .build()
        .run()
        .await
        .unwrap();
    recovery
        .wal()
        .append(NewRecord::event(Kind::Session, "something to set aside"))
        .unwrap();
    recovery
}

/// The aside sets present: ULID prefix → entry names.
fn sets(data: &Path) -> Vec<(String, BTreeSet<String>)> {
    let mut out: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for e in std::fs::read_dir(data.join("recovery/aside")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let (id, what) = name.split_once('-').unwrap();
        out.entry(id.to_owned())
            .or_default()
            .insert(what.to_owned());
    }
    out.into_iter().collect()
}

#[tokio::test]
async fn the_newest_sets_and_young_sets_are_kept_older_ones_are_pruned_whole() {
    let data = tempfile::tempdir().unwrap();
    let now = now_ms();
    // Six clean boots today: five aside sets (the first boot had nothing to set aside), each
    // one run's state and WAL together.
    for _ in 0..6 {
        let r = clean_boot(data.path(), now, AsideRetention::default()).await;
        assert!(
            r.report().aside_pruned.is_empty(),
            "all are younger than the grace period"
        );
    }
    let before = sets(data.path());
    assert_eq!(before.len(), 5);
    for (_, entries) in &before {
        assert_eq!(
            entries,
            &BTreeSet::from(["clean-state".to_owned(), "clean-wal".to_owned()]),
            "one run, one set"
        );
    }
    // Something an operator put there is not the cascade's and is never touched.
    std::fs::create_dir(data.path().join("recovery/aside/operator-notes")).unwrap();

    // A day later: still inside the grace period, nothing goes.
    let r = clean_boot(
        data.path(),
        now + DAY.as_millis() as u64,
        AsideRetention::default(),
    )
    .await;
    assert!(r.report().aside_pruned.is_empty());
    drop(r);
    assert_eq!(
        sets(data.path()).len(),
        7,
        "6 runs' sets and the operator's entry"
    );

    // Eight days later: the newest three sets stay (this run's among them), the rest go whole.
    let r = clean_boot(
        data.path(),
        now + 8 * DAY.as_millis() as u64,
        AsideRetention::default(),
    )
    .await;
    let after = sets(data.path());
    let kept: Vec<&String> = after.iter().map(|(id, _)| id).collect();
    let all_runs: Vec<String> = before.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        r.report().aside_pruned.len(),
        2 * 4,
        "{:?}",
        r.report().aside_pruned
    );
    for pruned in &r.report().aside_pruned {
        assert!(!pruned.exists());
        let name = pruned.file_name().unwrap().to_string_lossy().into_owned();
        assert!(all_runs.iter().any(|id| name.starts_with(id.as_str())));
    }
    assert_eq!(
        after.len(),
        4,
        "three sets and the operator's entry: {kept:?}"
    );
    assert!(after.iter().any(|(id, _)| id == "operator"));
    // The oldest four of the seven sets went; the three newest are whole.
    for (id, entries) in after.iter().filter(|(id, _)| id != "operator") {
        assert!(!all_runs[..4].contains(id), "{id} should have been pruned");
        assert_eq!(entries.len(), 2);
    }
}

#[tokio::test]
async fn keep_all_never_deletes() {
    let data = tempfile::tempdir().unwrap();
    let now = now_ms();
    for _ in 0..5 {
        clean_boot(data.path(), now, AsideRetention::keep_all()).await;
    }
    let r = clean_boot(
        data.path(),
        now + 365 * DAY.as_millis() as u64,
        AsideRetention::keep_all(),
    )
    .await;
    assert!(r.report().aside_pruned.is_empty());
    assert_eq!(sets(data.path()).len(), 5);
}
