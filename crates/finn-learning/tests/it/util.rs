//! Helpers shared by the integration tests.

use std::path::PathBuf;

use finn_learning::{LearningStore, NewLearning, OpenReport, Source, StoreOptions, Target};

/// Store options with a small WAL segment so tests stay light.
pub fn options() -> StoreOptions {
    let mut o = StoreOptions::default();
    o.wal.segment_size = 256 * 1024;
    o
}

pub fn open(dir: &std::path::Path) -> (LearningStore, OpenReport) {
    LearningStore::open(dir, options()).expect("store opens")
}

/// A learning that passes every default gate (hand-checked in the scorer's unit tests: 6/9/8/6).
pub fn good(target: Target) -> NewLearning {
    NewLearning::new(
        Source::Sprint,
        target,
        "When the build fails and if the deploy step reports an error",
        "A common pattern: a stale lockfile breaks the build; the same approach fixes every package manager",
        "Delete the lockfile with `rm package-lock.json`, reinstall; tested and verified.",
    )
}

/// A passing learning about a distinct topic, so retrieval can tell them apart.
pub fn good_about(topic: &str, target: Target) -> NewLearning {
    NewLearning::new(
        Source::Sprint,
        target,
        format!("When the {topic} step fails and if the service reports an error"),
        format!(
            "A common pattern with {topic}: the same approach applies to any similar service in this stack"
        ),
        format!(
            "Restart {topic} with `systemctl restart {topic}`; tested and verified in staging."
        ),
    )
}

/// `$FINN_SHARED_DIR`, else `<workspace>/../shared`. `None` (with a printed reason) if missing,
/// unless running under `cargo xtask test` (`FINN_XTASK=1`), where a missing fixture fails.
pub fn shared_dir(what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FINN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let path = dir.join(what);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("FINN_XTASK").is_ok_and(|v| v == "1") {
        panic!(
            "shared fixture {} is missing (FINN_XTASK=1)",
            path.display()
        );
    }
    eprintln!(
        "skipping: shared fixture {} not found (set FINN_SHARED_DIR)",
        path.display()
    );
    None
}
