//! Which state wins at boot: an intact local state against the remote's newest history.
//!
//! Real local WALs, real finn-checkpoint writers on a LocalFileSystem store. The rule under
//! test: an intact local state that is not behind the remote is kept; one strictly behind on the
//! same lineage is replaced; a damaged one is replaced; a template-era state that forked from a
//! remote that came back is kept, reported with both lineages, and degraded (strict refuses).

use std::path::Path;

use finn_checkpoint::{
    CheckpointInput, Checkpointer, CheckpointerOptions, Keyring, LineageId, Remote, SigningKey,
    Takeover,
};
use finn_recovery::source::object_store::ObjectStoreSource;
use finn_recovery::{
    Cascade, CascadeError, DegradedReason, Layout, LocalDecision, Mode, Recovery, SourceKind,
    State, TemplateSource, Validators, Warning,
};
use finn_wal::{Kind, Lsn, NewRecord, Record, Wal};

use crate::end_to_end::{local_remote, world};
use crate::util::*;

fn template() -> TemplateSource {
    TemplateSource::bundled("template")
        .with_file("NOTES.md", b"# NOTES.md\n".to_vec())
        .unwrap()
}

async fn boot(data: &Path, remote: &Remote, key: &SigningKey, mode: Mode) -> Recovery {
    try_boot(data, remote, key, mode, Validators::new())
        .await
        .unwrap()
}

async fn try_boot(
    data: &Path,
    remote: &Remote,
    key: &SigningKey,
    mode: Mode,
    validators: Validators,
) -> Result<Recovery, CascadeError> {
    Cascade::builder(Layout::new(data))
        .wal_options(wal_options())
        .mode(mode)
        .validators(validators)
        .source(ObjectStoreSource::new(
            remote.clone(),
            Keyring::trusting(key.verifying_key()),
        ))
        .source(template())
        .build()
        .run()
        .await
}

fn append(wal: &Wal, tag: &str, n: usize) -> Vec<Lsn> {
    (0..n)
        .map(|i| {
            wal.append(NewRecord::put(Kind::State, format!("{tag}-{i}"), tag))
                .unwrap()
        })
        .collect()
}

fn all_records(wal: &Wal) -> Vec<Record> {
    let first = wal.first_lsn().unwrap_or(Lsn::new(1));
    wal.iter_from(first).unwrap().map(|r| r.unwrap()).collect()
}

async fn writer(remote: &Remote, key: &SigningKey) -> Checkpointer {
    let mut options = CheckpointerOptions::default();
    options.takeover = Takeover::Force;
    Checkpointer::open(remote.clone(), key.clone(), Keyring::new(), options)
        .await
        .unwrap()
}

/// The data loss this module exists for: a state started from the template, written to,
/// checkpointed and shipped by its own writer, written to again, then the process dies. The
/// next boot used to restore the checkpoint and set the local WAL aside, dropping every write
/// after the checkpoint that had not been shipped yet.
#[tokio::test]
async fn template_boot_then_writes_then_crash_keeps_the_local_writes() {
    let root = tempfile::tempdir().unwrap();
    let (remote, _) = local_remote(root.path());
    let key = SigningKey::generate();
    let data = root.path().join("data");

    // Boot 1: nothing anywhere: the template, degraded.
    let first = boot(&data, &remote, &key, Mode::Degraded).await;
    assert_eq!(first.report().state, State::Degraded);
    assert_eq!(
        first.report().source.as_ref().unwrap().kind,
        Some(SourceKind::Template)
    );
    // The application writes, its checkpoint writer publishes and ships...
    append(first.wal(), "before-checkpoint", 5);
    let cp = writer(&remote, &key).await;
    let lineage = cp.lineage().await;
    cp.checkpoint(CheckpointInput::from_dir(data.join("state"), first.wal().last_lsn()).unwrap())
        .await
        .unwrap();
    cp.ship_wal(first.wal()).await.unwrap();
    // ...then writes more, durably, that are not shipped yet, and the process dies.
    append(first.wal(), "after-checkpoint", 3);
    let acknowledged = all_records(first.wal());
    assert_eq!(acknowledged.len(), 8);
    drop(cp);
    drop(first); // no shutdown: a crash

    // Boot 2: the remote is there and holds an older point of the same history.
    let second = boot(&data, &remote, &key, Mode::Degraded).await;
    let report = second.report().clone();
    assert_eq!(report.state, State::Running, "{report:#?}");
    assert_eq!(report.source.as_ref().unwrap().name, "local");
    assert_eq!(
        report.local_decision,
        Some(LocalDecision::KeptCurrent {
            lineage,
            local_lsn: Lsn::new(8),
            remote_lsn: Lsn::new(5),
        })
    );
    assert_eq!(report.lineage, Some(lineage));
    assert!(report.set_aside.is_empty(), "{:?}", report.set_aside);
    assert_eq!(
        all_records(second.wal()),
        acknowledged,
        "every local write is live"
    );
    assert_eq!(
        std::fs::read(data.join("state/NOTES.md")).unwrap(),
        b"# NOTES.md\n"
    );
    drop(second);

    // Boot 3: no longer provisional; the lineage is known and the local state is still ahead.
    let third = boot(&data, &remote, &key, Mode::Strict).await;
    assert_eq!(third.report().state, State::Running);
    assert!(matches!(
        third.report().local_decision,
        Some(LocalDecision::KeptCurrent { .. })
    ));
    assert_eq!(all_records(third.wal()), acknowledged);
}

/// A template-era state with writes, and a remote that comes back holding another history:
/// a fork. Neither side is dropped: the local state is kept and the boot is degraded with both
/// lineages; strict mode refuses and changes nothing; the application can settle it.
#[tokio::test]
async fn template_era_state_and_a_returning_remote_of_another_lineage_is_a_fork() {
    let root = tempfile::tempdir().unwrap();
    let (remote, _) = local_remote(root.path());
    let key = SigningKey::generate();
    let data = root.path().join("data");

    let first = boot(&data, &remote, &key, Mode::Degraded).await;
    assert_eq!(first.report().state, State::Degraded);
    append(first.wal(), "local", 3);
    let acknowledged = all_records(first.wal());
    drop(first);

    // Meanwhile another machine's history reaches the remote.
    let other = root.path().join("other");
    let (wal, _) = Wal::open(other.join("wal"), wal_options()).unwrap();
    append(&wal, "remote", 10);
    write_tree(&other.join("state"), &state("remote", 3));
    let cp = writer(&remote, &key).await;
    let remote_lineage = cp.lineage().await;
    cp.checkpoint(CheckpointInput::from_dir(other.join("state"), wal.last_lsn()).unwrap())
        .await
        .unwrap();
    cp.ship_wal(&wal).await.unwrap();
    drop(cp);

    let fork = DegradedReason::LineageFork {
        local: None,
        local_lsn: Lsn::new(3),
        remote: remote_lineage,
        remote_lsn: Lsn::new(10),
    };
    // Strict: refused, nothing touched.
    let err = try_boot(&data, &remote, &key, Mode::Strict, Validators::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CascadeError::StrictRefused { reason, .. } if *reason == fork),
        "{err:?}"
    );
    assert_eq!(
        wal_records(&data.join("wal")),
        acknowledged,
        "strict left the WAL alone"
    );

    // Degraded: the local state is kept, both lineages reported.
    let mut second = boot(&data, &remote, &key, Mode::Degraded).await;
    let report = second.report().clone();
    assert_eq!(report.state, State::Degraded, "{report:#?}");
    assert_eq!(report.degraded, Some(fork));
    assert_eq!(report.local_decision, Some(LocalDecision::KeptFork));
    assert!(report.warnings.iter().any(|w| matches!(
        w,
        Warning::LineageFork { local: None, remote, .. } if *remote == remote_lineage
    )));
    assert!(report.set_aside.is_empty());
    assert_eq!(all_records(second.wal()), acknowledged);
    assert_eq!(
        std::fs::read(data.join("state/NOTES.md")).unwrap(),
        b"# NOTES.md\n"
    );

    // The operator keeps the local side under a lineage of its own: later boots are normal.
    let own = LineageId::generate();
    second.mark_local_authoritative(Some(own)).unwrap();
    assert_eq!(second.report().lineage, Some(own));
    drop(second);
    let third = boot(&data, &remote, &key, Mode::Degraded).await;
    // Still another lineage than the remote's: reported every boot until one side changes.
    assert_eq!(third.report().state, State::Degraded);
    assert!(matches!(
        third.report().degraded,
        Some(DegradedReason::LineageFork { local: Some(l), .. }) if l == own
    ));
    let mut third = third;
    third.mark_local_authoritative(None).unwrap();
    drop(third);
    let fourth = boot(&data, &remote, &key, Mode::Strict).await;
    assert_eq!(fourth.report().state, State::Running);
    assert_eq!(
        fourth.report().local_decision,
        Some(LocalDecision::KeptUnchecked)
    );
    assert_eq!(all_records(fourth.wal()), acknowledged);
}

/// Machine A restored a lineage; another writer (B) continued it. A's intact local state is
/// strictly behind the remote on the same lineage: the remote wins, and A comes up with B's
/// records.
#[tokio::test]
async fn local_behind_the_remote_on_the_same_lineage_is_replaced() {
    let w = world(None, 1, 20).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    let a = boot(&w.data, &w.remote, &w.key, Mode::Degraded).await;
    assert_eq!(
        a.report().source.as_ref().unwrap().kind,
        Some(SourceKind::ObjectStore)
    );
    let lineage = a.report().lineage.unwrap();
    let a_last = a.wal().last_lsn();
    drop(a);

    // B continues the lineage: more records, a checkpoint, more records, all shipped.
    let b_dir = w.root.path().join("b");
    let (b_wal, _) = Wal::open(b_dir.join("wal"), wal_options()).unwrap();
    b_wal.advance_to(a_last.next()).unwrap();
    append(&b_wal, "from-b", 6);
    write_tree(&b_dir.join("state"), &state("b", 4));
    let cp = writer(&w.remote, &w.key).await;
    assert_eq!(cp.lineage().await, lineage);
    let b_checkpoint = b_wal.last_lsn();
    cp.checkpoint(CheckpointInput::from_dir(b_dir.join("state"), b_checkpoint).unwrap())
        .await
        .unwrap();
    append(&b_wal, "from-b-after", 6);
    cp.ship_wal(&b_wal).await.unwrap();
    drop(cp);

    let again = boot(&w.data, &w.remote, &w.key, Mode::Strict).await;
    let report = again.report().clone();
    assert_eq!(report.state, State::Running, "{report:#?}");
    assert_eq!(
        report.local_decision,
        Some(LocalDecision::ReplacedBehind {
            lineage,
            local_lsn: a_last,
            remote_lsn: b_wal.last_lsn(),
        })
    );
    assert_eq!(
        report.source.as_ref().unwrap().kind,
        Some(SourceKind::ObjectStore)
    );
    assert_eq!(read_tree(&w.data.join("state")), state("b", 4));
    assert_eq!(report.replay_from, Some(b_checkpoint.next()));
    assert_eq!(again.wal().last_lsn(), b_wal.last_lsn());
    let b_records: Vec<Record> = b_wal
        .iter_from(b_checkpoint.next())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let a_records: Vec<Record> = again
        .wal()
        .iter_from(b_checkpoint.next())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(a_records.len(), 6);
    assert_eq!(
        a_records, b_records,
        "B's records after its checkpoint are live on A"
    );
}

/// Split brain on one lineage: A wrote records it never shipped, B continued the lineage from
/// the shipped point with other records. B's history is the remote's and wins (A is behind);
/// A's own records are not mixed in: they are kept aside and the boot says so.
#[tokio::test]
async fn local_records_that_diverge_from_the_lineage_are_kept_aside_not_mixed() {
    let w = world(None, 1, 10).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    let a = boot(&w.data, &w.remote, &w.key, Mode::Degraded).await;
    let shipped_end = a.wal().last_lsn();
    append(a.wal(), "only-on-a", 3);
    let a_only: Vec<Record> = a
        .wal()
        .iter_from(shipped_end.next())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    drop(a);

    let b_dir = w.root.path().join("b");
    let (b_wal, _) = Wal::open(b_dir.join("wal"), wal_options()).unwrap();
    b_wal.advance_to(shipped_end.next()).unwrap();
    append(&b_wal, "from-b", 8);
    let cp = writer(&w.remote, &w.key).await;
    cp.ship_wal(&b_wal).await.unwrap();
    drop(cp);

    let strict = try_boot(&w.data, &w.remote, &w.key, Mode::Strict, Validators::new()).await;
    assert!(
        matches!(
            &strict,
            Err(CascadeError::StrictRefused {
                reason: DegradedReason::LocalWalDiverged { .. },
                ..
            })
        ),
        "{strict:?}"
    );
    let again = boot(&w.data, &w.remote, &w.key, Mode::Degraded).await;
    let report = again.report().clone();
    assert_eq!(report.state, State::Degraded, "{report:#?}");
    let Some(DegradedReason::LocalWalDiverged { lsn, kept_at }) = &report.degraded else {
        panic!("{report:#?}");
    };
    assert_eq!(*lsn, shipped_end.next());
    assert!(matches!(
        report.local_decision,
        Some(LocalDecision::ReplacedBehind { .. })
    ));
    let live: Vec<Record> = again
        .wal()
        .iter_from(shipped_end.next())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let b_records: Vec<Record> = b_wal
        .iter_from(shipped_end.next())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(live, b_records, "the live WAL is the lineage's, not a mix");
    let kept = wal_records(kept_at);
    assert_eq!(
        &kept[kept.len() - 3..],
        &a_only[..],
        "A's own writes are kept aside"
    );
}

/// A local state that fails its integrity check is replaced by the remote's, whatever its
/// lineage, and kept aside.
#[tokio::test]
async fn damaged_local_state_is_replaced_by_the_remote() {
    let w = world(None, 1, 10).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    let a = boot(&w.data, &w.remote, &w.key, Mode::Degraded).await;
    let last = a.wal().last_lsn();
    drop(a);
    // A bit flips in a file that has a validator.
    let damaged = w.data.join("state/dir0/file-000.txt");
    std::fs::write(&damaged, b"\xff\xfe not utf-8").unwrap();
    let utf8 = || Validators::new().prefix("dir0/", |b: &[u8]| std::str::from_utf8(b).map(drop));
    let again = try_boot(&w.data, &w.remote, &w.key, Mode::Strict, utf8())
        .await
        .unwrap();
    let report = again.report();
    assert_eq!(report.state, State::Running, "{report:#?}");
    assert_eq!(
        report.source.as_ref().unwrap().kind,
        Some(SourceKind::ObjectStore)
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|x| matches!(x, Warning::LocalIntegrity { .. }))
    );
    assert_eq!(read_tree(&w.data.join("state")), w.checkpointed);
    assert_eq!(
        again.wal().last_lsn(),
        last,
        "the local WAL is kept: nothing lost"
    );
    let kept = report
        .set_aside
        .iter()
        .find(|p| p.to_string_lossy().ends_with("replaced-state"))
        .unwrap();
    assert_eq!(
        std::fs::read(kept.join("dir0/file-000.txt")).unwrap(),
        b"\xff\xfe not utf-8"
    );
}

/// A template-started state nobody wrote to is replaced as soon as a remote can restore: that
/// drops no acknowledged write.
#[tokio::test]
async fn an_unused_template_state_is_replaced_when_the_remote_comes_back() {
    let w = world(None, 1, 5).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    let store = w.store_dir();
    let hidden = w.root.path().join("store-hidden");
    std::fs::rename(&store, &hidden).unwrap();
    let first = boot(&w.data, &w.remote, &w.key, Mode::Degraded).await;
    assert_eq!(first.report().state, State::Degraded);
    drop(first);
    std::fs::remove_dir_all(&store).ok();
    std::fs::rename(&hidden, &store).unwrap();
    let second = boot(&w.data, &w.remote, &w.key, Mode::Degraded).await;
    let report = second.report();
    assert_eq!(report.state, State::Running, "{report:#?}");
    assert_eq!(
        report.local_decision,
        Some(LocalDecision::ReplacedUnusedTemplate)
    );
    assert_eq!(read_tree(&w.data.join("state")), w.checkpointed);
    assert_eq!(second.wal().last_lsn(), w.records.last().unwrap().lsn);
}

/// Known to be behind the remote on its lineage, but the remote cannot restore (its files fail
/// to stage): the stale local state is kept so the process comes up, and the boot says it is
/// behind instead of claiming RUNNING; strict refuses.
#[tokio::test]
async fn local_behind_but_the_remote_cannot_restore_is_degraded_not_running() {
    use crate::util::{Behaviour, FakeSource};
    let data = tempfile::tempdir().unwrap();
    let lineage = LineageId::generate();
    let history = records(1, 20);
    let cascade = |source: FakeSource, mode: Mode| {
        Cascade::builder(Layout::new(data.path()))
            .wal_options(wal_options())
            .mode(mode)
            .source(source)
            .source(template())
            .build()
    };
    let first = cascade(
        FakeSource::new("remote", SourceKind::ObjectStore, state("r", 2))
            .at_lsn(5, history[..10].to_vec())
            .of_lineage(lineage),
        Mode::Degraded,
    )
    .run()
    .await
    .unwrap();
    assert_eq!(first.report().lineage, Some(lineage));
    assert_eq!(first.wal().last_lsn(), Lsn::new(10));
    drop(first);

    let newer = || {
        FakeSource::new("remote", SourceKind::ObjectStore, state("r2", 2))
            .at_lsn(15, history.clone())
            .of_lineage(lineage)
            .behaving(Behaviour::FailStage)
    };
    let err = cascade(newer(), Mode::Strict).run().await.unwrap_err();
    assert!(
        matches!(
            &err,
            CascadeError::StrictRefused {
                reason: DegradedReason::LocalBehind { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let second = cascade(newer(), Mode::Degraded).run().await.unwrap();
    let report = second.report();
    assert_eq!(report.state, State::Degraded, "{report:#?}");
    assert_eq!(
        report.degraded,
        Some(DegradedReason::LocalBehind {
            local_lsn: Lsn::new(10),
            remote_lsn: Lsn::new(20),
        })
    );
    assert_eq!(report.source.as_ref().unwrap().name, "local");
    assert_eq!(read_tree(&data.path().join("state")), state("r", 2));
}
