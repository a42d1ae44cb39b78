//! A crash at every step of the restore swap (fail points that panic there, as a process
//! would die there), then a normal boot: the interrupted swap is repaired, the state directory
//! holds the complete new state, and the previous state is kept whole in `recovery/aside/`.
//!
//! The steps, in `stage::swap_in` order: `recovery::swap::before_record` (staged tree sealed,
//! no swap record yet), `after_record` (record written), `after_exchange` (state and staging
//! exchanged, nothing synced), `after_aside` (previous state renamed aside), `before_done`
//! (everything synced, record not yet removed), and, on the two-rename fallback used where
//! `RENAME_EXCHANGE` is not supported (forced with `recovery::swap::no_exchange`),
//! `between_renames` (state moved aside, staged tree not yet in place).
//!
//! Fail points are process-global: `FailScenario` serialises these tests within the binary
//! (nextest runs each test in its own process anyway).

use std::collections::BTreeMap;
use std::path::Path;

use finn_recovery::{Cascade, Layout, LoopPolicy, SourceKind, State};

use crate::util::*;

const FILES: usize = 12;
/// Makes the local state fail its integrity check, so the boot restores.
const BROKEN: &str = "zz-broken";

fn generation(tag: &str) -> BTreeMap<String, Vec<u8>> {
    let mut files = state(tag, FILES);
    files.insert("generation".into(), tag.as_bytes().to_vec());
    files
}

async fn boot(layout: &Layout) -> Result<State, String> {
    let recovery = Cascade::builder(layout.clone())
        .wal_options(wal_options())
        .loop_policy(LoopPolicy {
            max_failures: 0,
            ..LoopPolicy::default()
        })
        .source(FakeSource::new(
            "remote",
            SourceKind::ObjectStore,
            generation("b"),
        ))
        .build()
        .run()
        .await
        .map_err(|e| e.to_string())?;
    Ok(recovery.report().state)
}

/// Every tree kept under `recovery/aside/`, by name.
fn aside_trees(layout: &Layout) -> Vec<BTreeMap<String, Vec<u8>>> {
    let Ok(entries) = std::fs::read_dir(layout.aside_root()) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| read_tree(&p))
        .collect()
}

/// The previous state as `read_tree` sees it: its broken marker is a symlink.
fn old_state_with_marker() -> BTreeMap<String, Vec<u8>> {
    let mut tree = generation("a");
    tree.insert(BROKEN.into(), b"<special>".to_vec());
    tree
}

async fn crash_at(point: &str, extra: &[&str]) {
    let scenario = fail::FailScenario::setup();
    let root = tempfile::tempdir().unwrap();
    let layout = Layout::new(root.path().join("data"));
    write_tree(layout.state_dir(), &generation("a"));
    std::os::unix::fs::symlink("/nonexistent", layout.state_dir().join(BROKEN)).unwrap();

    for p in extra {
        fail::cfg(*p, "return").unwrap();
    }
    fail::cfg(point, "panic").unwrap();
    let l = layout.clone();
    let crashed = tokio::spawn(async move { boot(&l).await }).await;
    assert!(
        crashed.as_ref().is_err_and(|e| e.is_panic()),
        "{point}: the fail point was not reached ({crashed:?})"
    );
    scenario.teardown();

    // Whatever the crash left, the state path never holds a mix of the two generations.
    if let Ok(meta) = std::fs::symlink_metadata(layout.state_dir()) {
        assert!(meta.is_dir(), "{point}");
        let mut tree = read_tree(layout.state_dir());
        tree.remove(BROKEN);
        assert!(
            tree == generation("a") || tree == generation("b"),
            "{point}: state is a mix: {:?}",
            tree.keys().collect::<Vec<_>>()
        );
    }

    // The next boot repairs and comes up with the new state.
    let state = boot(&layout)
        .await
        .unwrap_or_else(|e| panic!("{point}: boot after the crash failed: {e}"));
    assert_eq!(state, State::Running, "{point}");
    assert_eq!(read_tree(layout.state_dir()), generation("b"), "{point}");
    // The previous state was never deleted: it is kept whole in aside.
    assert!(
        aside_trees(&layout)
            .iter()
            .any(|t| t == &old_state_with_marker()),
        "{point}: the previous state is not kept in aside"
    );
    // No swap record or staging leftovers remain.
    assert!(!layout.swap_record().exists(), "{point}");
    let staged: Vec<_> = std::fs::read_dir(layout.staging_root())
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(staged.is_empty(), "{point}: staging leftovers {staged:?}");
    assert_tree_is_plain(layout.state_dir());
}

fn assert_tree_is_plain(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        assert!(
            t.is_file() || t.is_dir(),
            "{} is not plain",
            e.path().display()
        );
        if t.is_dir() {
            assert_tree_is_plain(&e.path());
        }
    }
}

#[tokio::test]
async fn crash_before_the_swap_record_is_written() {
    crash_at("recovery::swap::before_record", &[]).await;
}

#[tokio::test]
async fn crash_after_the_swap_record_is_written() {
    crash_at("recovery::swap::after_record", &[]).await;
}

#[tokio::test]
async fn crash_right_after_the_exchange() {
    crash_at("recovery::swap::after_exchange", &[]).await;
}

#[tokio::test]
async fn crash_after_the_previous_state_is_set_aside() {
    crash_at("recovery::swap::after_aside", &[]).await;
}

#[tokio::test]
async fn crash_before_the_swap_record_is_removed() {
    crash_at("recovery::swap::before_done", &[]).await;
}

#[tokio::test]
async fn crash_between_the_two_renames_of_the_fallback_swap() {
    crash_at(
        "recovery::swap::between_renames",
        &["recovery::swap::no_exchange"],
    )
    .await;
}
