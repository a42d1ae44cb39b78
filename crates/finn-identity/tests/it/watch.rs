//! Watcher backends and health reporting.

use finn_identity::{Event, Options, WatchBackend, WatchMode};

use crate::util::{fast_options, loader_with, rename_replace, valid_doc, version, wait_for_doc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_backend_sees_rename_replace_delete_and_recreate() {
    let (_dir, path, loader) = loader_with(&valid_doc("1.0.0"), fast_options(WatchMode::Poll));
    let mut events = loader.events();
    let guard = loader.watch().unwrap();
    assert_eq!(guard.backend(), WatchBackend::Poll);
    let mut rx = loader.subscribe();
    wait_for_doc(&mut rx, |d| version(d) == Some("1.0.0")).await;

    rename_replace(&path, &valid_doc("1.0.1"));
    wait_for_doc(&mut rx, |d| version(d) == Some("1.0.1")).await;

    std::fs::remove_file(&path).unwrap();
    crate::util::wait_for_event(&mut events, |e| matches!(e, Event::Failed(_))).await;
    std::fs::write(&path, valid_doc("1.0.2")).unwrap();
    wait_for_doc(&mut rx, |d| version(d) == Some("1.0.2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_watching_until_the_guard_is_dropped() {
    let (_dir, _path, loader) = loader_with(&valid_doc("1.0.0"), fast_options(WatchMode::Auto));
    let health = loader.health();
    assert!(!health.watching);
    assert!(!health.valid);
    assert!(health.checksum.is_none());

    let guard = loader.watch().unwrap();
    let health = loader.health();
    assert!(health.watching);
    assert_eq!(health.backend, Some(guard.backend()));
    assert!(health.valid, "watch() loads right away");
    assert!(health.checksum.is_some());
    assert!(health.last_reload.is_some());
    assert_eq!(health.reloads, 1);
    assert!(health.last_error.is_none());

    drop(guard);
    let health = loader.health();
    assert!(!health.watching);
    assert_eq!(health.backend, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reload_happens_after_the_guard_is_dropped() {
    let (_dir, path, loader) = loader_with(&valid_doc("1.0.0"), fast_options(WatchMode::Native));
    let guard = loader.watch().unwrap();
    drop(guard);
    rename_replace(&path, &valid_doc("9.9.9"));
    // Several debounce windows pass; nothing may reload.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(version(&loader.current().unwrap()), Some("1.0.0"));
    assert_eq!(loader.health().reloads, 1);
}

#[test]
fn watching_a_path_without_a_file_name_is_an_error() {
    let loader = finn_identity::Loader::new("/", Options::default());
    assert!(matches!(
        loader.watch(),
        Err(finn_identity::WatchError::BadPath { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_watched_directory_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("loa");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("BEAUVOIR.md");
    std::fs::write(&path, valid_doc("1.0.0")).unwrap();
    let loader = finn_identity::Loader::new(&path, fast_options(WatchMode::Native));
    let mut events = loader.events();
    let _guard = loader.watch().unwrap();

    std::fs::remove_dir_all(&dir).unwrap();
    crate::util::wait_for_event(&mut events, |e| {
        matches!(
            e,
            Event::Failed(finn_identity::Failure::Watch(
                finn_identity::WatchError::DirectoryRemoved { .. }
            ))
        )
    })
    .await;
    assert_eq!(version(&loader.current().unwrap()), Some("1.0.0"));
}
