//! The runtime as a library: tiers of the cascade seen from the facade.

use finn::prelude::*;

fn git_available() -> bool {
    std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// An agent's data directory, a local-directory object store and a signing key file (kept
/// outside the data directory, so it survives the disk's loss), all under `dir`.
struct Agent {
    data: std::path::PathBuf,
    objects: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl Agent {
    fn new(dir: &std::path::Path) -> Self {
        let key = dir.join("signing.pem");
        finn::checkpoint::SigningKey::generate()
            .save_new(&key)
            .unwrap();
        Self {
            data: dir.join("data"),
            objects: dir.join("objects"),
            key,
        }
    }

    /// A builder for this agent that takes over from a writer that died.
    fn builder(&self) -> finn::runtime::FinnBuilder {
        Finn::builder(&self.data)
            .store_url(format!("file://{}", self.objects.display()))
            .signing_key_file(&self.key, false)
            .force_takeover(true)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_lost_too_recovers_from_the_git_archive() {
    if !git_available() {
        assert!(
            std::env::var_os("FINN_XTASK").is_none(),
            "git is required under cargo xtask test"
        );
        eprintln!("skipped: no git");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("archive.git");
    let status = std::process::Command::new("git")
        .args(["init", "--quiet", "--bare"])
        .arg(&remote)
        .status()
        .unwrap();
    assert!(status.success());
    let agent = Agent::new(dir.path());
    let open = || {
        agent
            .builder()
            .git_archive(remote.to_str().unwrap(), "finn-archive")
            .scheduler(false)
    };

    let finn = open().open().await.unwrap();
    let lsn = finn
        .put(Kind::Session, "session/1", b"archived".to_vec())
        .unwrap();
    finn.archive_git().await.unwrap();
    assert!(finn.remote_durable_lsn() >= lsn);
    drop(finn);

    // The disk and the bucket are both gone: only the git archive is left.
    std::fs::remove_dir_all(&agent.data).unwrap();
    std::fs::remove_dir_all(&agent.objects).unwrap();
    let finn = open().open().await.unwrap();
    assert_eq!(
        finn.recovery_report()
            .source
            .as_ref()
            .map(|s| s.name.as_str()),
        Some("git")
    );
    assert_eq!(
        finn.state().get(Kind::Session, "session/1").as_deref(),
        Some(&b"archived"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_restart_keeps_writes_after_the_last_checkpoint() {
    // A crash (here: drop without shutdown) must not fall back to the older checkpoint when
    // the local WAL holds newer writes.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let finn = Finn::builder(&data).scheduler(false).open().await.unwrap();
    finn.put(Kind::Config, "config/a", b"1".to_vec()).unwrap();
    finn.checkpoint().await.unwrap();
    finn.put(Kind::Config, "config/a", b"2".to_vec()).unwrap();
    finn.put(Kind::Session, "session/after", b"x".to_vec())
        .unwrap();
    drop(finn);
    let finn = Finn::builder(&data)
        .scheduler(false)
        .force_takeover(true)
        .open()
        .await
        .unwrap();
    assert_eq!(
        finn.state().get(Kind::Config, "config/a").as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(
        finn.state().get(Kind::Session, "session/after").as_deref(),
        Some(&b"x"[..])
    );
    assert_eq!(
        finn.recovery_report()
            .source
            .as_ref()
            .map(|s| s.name.as_str()),
        Some("local")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_transitions_of_a_failing_sync_are_recorded_in_the_wal_and_degrade_health() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let objects = dir.path().join("objects");
    let mut intervals = finn::runtime::Intervals::default();
    intervals.sync = std::time::Duration::from_millis(100);
    let finn = Finn::builder(&data)
        .store_url(format!("file://{}", objects.display()))
        .intervals(intervals)
        .open()
        .await
        .unwrap();
    finn.put(Kind::Session, "session/1", b"x".to_vec()).unwrap();
    // The bucket becomes unusable: every upload fails from now on.
    std::fs::remove_dir_all(&objects).unwrap();
    std::fs::write(&objects, b"not a directory").unwrap();

    let key = "config/circuit-breaker-object_store_sync";
    let mut recorded = None;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if let Some(v) = finn.state().get(Kind::Config, key) {
            recorded = Some(v);
            break;
        }
    }
    let recorded = recorded.expect("the breaker opened and its transition reached the WAL");
    let text = String::from_utf8(recorded).unwrap();
    assert!(text.contains("object_store_sync"), "{text}");
    let report = finn.health().await;
    assert_ne!(
        report.overall,
        finn::scheduler::Health::Healthy,
        "{report:?}"
    );
    // The transition is a real WAL record, not only in memory.
    let in_wal = finn
        .wal()
        .iter_from(finn::wal::Lsn::ZERO)
        .unwrap()
        .filter_map(Result::ok)
        .any(|r| r.kind == Kind::Config && r.key.as_deref() == Some(key));
    assert!(in_wal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_writes_are_shipped_within_the_ship_interval_and_survive_the_disk() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::new(dir.path());
    let open = |scheduler: bool| {
        let mut intervals = finn::runtime::Intervals::default();
        // No checkpoint in this test's lifetime: only the shipping task moves the write.
        intervals.sync = Duration::from_secs(3600);
        intervals.ship = Duration::from_millis(100);
        agent.builder().intervals(intervals).scheduler(scheduler)
    };
    let finn = open(true).open().await.unwrap();
    finn.put(Kind::Session, "session/0", b"base".to_vec())
        .unwrap();
    finn.checkpoint().await.unwrap();
    let checkpointed = finn.confirmed().checkpointed_lsn;
    let lsn = finn
        .put(Kind::Session, "session/1", b"shipped".to_vec())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while finn.confirmed().shipped_lsn < lsn {
        assert!(Instant::now() < deadline, "the shipping task never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        finn.confirmed().checkpointed_lsn,
        checkpointed,
        "shipped, not checkpointed"
    );
    drop(finn);

    // The disk is gone: the shipped record comes back from the object store.
    std::fs::remove_dir_all(&agent.data).unwrap();
    let finn = open(false).open().await.unwrap();
    assert_eq!(
        finn.state().get(Kind::Session, "session/1").as_deref(),
        Some(&b"shipped"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_shipped_returns_once_the_write_is_remotely_durable() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    let finn = Finn::builder(dir.path().join("data"))
        .store_url(format!("file://{}", objects.display()))
        .scheduler(false)
        .open()
        .await
        .unwrap();
    let lsn = finn.put(Kind::Session, "session/1", b"x".to_vec()).unwrap();
    assert!(finn.remote_durable_lsn() < lsn);
    let durable = finn.await_shipped(lsn).await.unwrap();
    assert!(durable >= lsn && finn.remote_durable_lsn() >= lsn);
    // Already durable: returns at once, nothing shipped again.
    assert_eq!(finn.await_shipped(lsn).await.unwrap(), durable);
    let beyond = Lsn::new(lsn.get() + 10);
    assert!(matches!(
        finn.await_shipped(beyond).await,
        Err(finn::runtime::Error::NotWritten { .. })
    ));
    finn.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agents_shipped_writes_survive_the_disk_before_any_sync() {
    // Shipped WAL is replayed on top of a checkpoint: the first ship of a new lineage publishes
    // one, or the shipped records would be unreachable after the disk is lost.
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::new(dir.path());
    let open = || agent.builder().scheduler(false);
    let finn = open().open().await.unwrap();
    let lsn = finn
        .put(Kind::Session, "session/1", b"first words".to_vec())
        .unwrap();
    finn.await_shipped(lsn).await.unwrap();
    let after = finn
        .put(Kind::Session, "session/2", b"then shipped".to_vec())
        .unwrap();
    assert_eq!(finn.ship().await.unwrap(), after);
    drop(finn);

    std::fs::remove_dir_all(&agent.data).unwrap();
    let finn = open().open().await.unwrap();
    for (key, value) in [("session/1", "first words"), ("session/2", "then shipped")] {
        assert_eq!(
            finn.state().get(Kind::Session, key).as_deref(),
            Some(value.as_bytes()),
            "{key}"
        );
    }
}
