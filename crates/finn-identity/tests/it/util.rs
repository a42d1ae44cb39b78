//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use finn_identity::{Current, Event, IdentityDocument, Loader, Options, WatchMode};
use tokio::sync::{broadcast, watch};

/// Generous bound for anything the watcher does; tests never assert on timing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The shared fixtures directory: `FINN_SHARED_DIR`, else `<workspace root>/../shared`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("FINN_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// A shared fixture's path, or `None` (with a printed reason) when it is absent. Under
/// `cargo xtask test` (`FINN_XTASK=1`) an absent fixture fails the test instead.
pub fn shared_fixture(relative: &str) -> Option<PathBuf> {
    let path = shared_dir().join(relative);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("FINN_XTASK").is_ok_and(|v| v == "1") {
        panic!(
            "shared fixture {} is missing (set FINN_SHARED_DIR)",
            path.display()
        );
    }
    eprintln!(
        "skipped: shared fixture {} not found (set FINN_SHARED_DIR to run this test)",
        path.display()
    );
    None
}

/// A complete, valid identity document in the shape of the anchors' test fixture.
pub fn valid_doc(version: &str) -> String {
    format!(
        "# BEAUVOIR\n\
         \n\
         > **Version**: {version}\n\
         > **Last Updated**: 2026-02-06\n\
         \n\
         ## Identity\n\
         \n\
         I am a test agent.\n\
         \n\
         ## Core Principles\n\
         \n\
         ### 1. Understand Before Acting\n\
         \n\
         I verify before I act because **guessing wastes time**.\n\
         \n\
         **In practice**: Read first, then change.\n\
         \n\
         ### 2. Survival is a Feature\n\
         \n\
         I keep working after **restarts**.\n\
         \n\
         **In practice**: Recover from backups.\n\
         \n\
         ## Boundaries\n\
         \n\
         ### What I Won't Do\n\
         \n\
         1. **Guess at credentials** - I ask\n\
         2. **Push without review** - Even my own code\n\
         \n\
         ### What I Always Do\n\
         \n\
         1. **Log decisions** to NOTES.md\n\
         2. **Cite sources**\n\
         \n\
         ## Interaction Style\n\
         \n\
         ### Concise\n\
         \n\
         - Lead with the answer\n\
         \n\
         ### Opinionated\n\
         \n\
         - Recommend one option\n\
         \n\
         ## Recovery Protocol\n\
         \n\
         ```\n\
         1. Read BEAUVOIR.md\n\
         2. Restore from backup\n\
         ```\n"
    )
}

/// Saves like an editor or an atomic writer: a temp file in the same directory renamed over the
/// target (the target's inode changes).
pub fn rename_replace(path: &Path, content: &str) {
    let temp = path.with_file_name(".BEAUVOIR.md.swp");
    std::fs::write(&temp, content).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// Options for watcher tests: a short debounce so tests are quick.
pub fn fast_options(mode: WatchMode) -> Options {
    Options {
        debounce: Duration::from_millis(80),
        poll_interval: Duration::from_millis(50),
        watch_mode: mode,
        ..Options::default()
    }
}

/// Waits until the published document satisfies `pred`; panics after [`PATIENCE`].
pub async fn wait_for_doc(
    rx: &mut watch::Receiver<Current>,
    pred: impl Fn(&IdentityDocument) -> bool,
) -> Arc<IdentityDocument> {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(doc) = rx.borrow_and_update().clone()
                && pred(&doc)
            {
                return doc;
            }
            rx.changed().await.expect("loader alive");
        }
    })
    .await;
    found.expect("the expected document was never published")
}

/// Waits for an event matching `pred`; panics after [`PATIENCE`].
pub async fn wait_for_event(
    rx: &mut broadcast::Receiver<Event>,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event channel closed"),
            }
        }
    })
    .await;
    found.expect("the expected event never arrived")
}

/// A loader over `BEAUVOIR.md` in a fresh temp dir holding `content`.
pub fn loader_with(content: &str, options: Options) -> (tempfile::TempDir, PathBuf, Loader) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("BEAUVOIR.md");
    std::fs::write(&path, content).unwrap();
    let loader = Loader::new(&path, options);
    (dir, path, loader)
}

pub fn version(doc: &IdentityDocument) -> Option<&str> {
    doc.metadata.version.as_deref()
}
