//! End to end: a real local WAL, real object stores (LocalFileSystem always; moto when
//! `FINN_TEST_S3_ENDPOINT` is set) written by finn-checkpoint, and a real git bare repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use finn_checkpoint::fault::{Fault, FaultStore};
use finn_checkpoint::{
    CheckpointInput, Checkpointer, CheckpointerOptions, Keyring, Reader, Remote, RemoteOptions,
    SigningKey, StoreOptions,
};
use finn_recovery::source::git::GitSource;
use finn_recovery::source::object_store::ObjectStoreSource;
use finn_recovery::{Cascade, DegradedReason, Layout, SourceKind, State, TemplateSource, Warning};
use finn_wal::{Kind, Lsn, NewRecord, Record, Wal};
use object_store::ObjectStore;

use crate::util::*;

/// What was on the machine before it was lost.
pub struct World {
    pub root: tempfile::TempDir,
    pub data: PathBuf,
    pub remote: Remote,
    pub key: SigningKey,
    /// State files at the last checkpoint.
    pub checkpointed: BTreeMap<String, Vec<u8>>,
    pub checkpoint_lsn: Lsn,
    /// Every record the WAL held.
    pub records: Vec<Record>,
    pub versions: Vec<u64>,
}

impl World {
    pub fn keyring(&self) -> Keyring {
        Keyring::trusting(self.key.verifying_key())
    }
    pub fn store_dir(&self) -> PathBuf {
        self.root.path().join("store")
    }
}

pub fn local_remote(root: &Path) -> (Remote, Arc<dyn ObjectStore>) {
    let dir = root.join("store");
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap());
    (
        Remote::new(store.clone(), "agent", RemoteOptions::default()),
        store,
    )
}

fn s3_remote(prefix: &str) -> Option<Remote> {
    let Ok(endpoint) = std::env::var("FINN_TEST_S3_ENDPOINT") else {
        assert!(
            !under_xtask(),
            "FINN_TEST_S3_ENDPOINT is required under cargo xtask test"
        );
        eprintln!("skipping the moto variant: FINN_TEST_S3_ENDPOINT is not set");
        return None;
    };
    let bucket = std::env::var("FINN_TEST_S3_BUCKET").unwrap_or_else(|_| "finn-test".into());
    let options = StoreOptions::default()
        .endpoint(endpoint)
        .region("us-east-1")
        .allow_http(true)
        .credentials("test", "test");
    let url = format!("s3://{bucket}/finn-recovery/{prefix}-{}", ulid::Ulid::new());
    Some(Remote::from_url(&url, &options, RemoteOptions::default()).unwrap())
}

/// Builds a world: state + WAL records, `checkpoints` checkpoints (each after more records),
/// WAL shipped in many small batches, then `after` more records written and shipped.
pub async fn world(remote: Option<Remote>, checkpoints: usize, after: u64) -> World {
    let root = tempfile::tempdir().unwrap();
    let remote = remote.unwrap_or_else(|| local_remote(root.path()).0);
    let data = root.path().join("data");
    let layout = Layout::new(&data);
    let key = SigningKey::generate();
    let mut options = CheckpointerOptions::default();
    options.ship_batch_records = 37; // many batches: §12 (f) multi-batch history
    let cp = Checkpointer::open(remote.clone(), key.clone(), Keyring::new(), options)
        .await
        .unwrap();
    let (wal, _) = Wal::open(layout.wal_dir(), wal_options()).unwrap();
    let mut checkpointed = BTreeMap::new();
    let mut versions = Vec::new();
    for c in 0..checkpoints {
        for i in 0..200 {
            wal.append(NewRecord::put(
                Kind::State,
                format!("c{c}-k{i}"),
                format!("value {c} {i}"),
            ))
            .unwrap();
        }
        checkpointed = state(&format!("checkpoint-{c}"), 12);
        std::fs::remove_dir_all(layout.state_dir()).ok();
        write_tree(layout.state_dir(), &checkpointed);
        let report = cp
            .checkpoint(CheckpointInput::from_dir(layout.state_dir(), wal.last_lsn()).unwrap())
            .await
            .unwrap();
        versions.push(report.version);
        cp.ship_wal(&wal).await.unwrap();
    }
    let checkpoint_lsn = wal.last_lsn();
    for i in 0..after {
        wal.append(NewRecord::event(
            Kind::Session,
            format!("after checkpoint {i}"),
        ))
        .unwrap();
    }
    cp.ship_wal(&wal).await.unwrap();
    let records: Vec<Record> = wal
        .iter_from(Lsn::new(1))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    drop(wal);
    World {
        root,
        data,
        remote,
        key,
        checkpointed,
        checkpoint_lsn,
        records,
        versions,
    }
}

/// A bare repository whose `finn/archive` branch holds `world`'s newest checkpoint in
/// finn-checkpoint's archive layout (`finn-manifest.bin`, files under `state/`). Built with
/// the git CLI here so that the test can also plant hostile commits.
pub async fn git_archive(world: &World) -> PathBuf {
    let reader = Reader::new(world.remote.clone(), world.keyring());
    let newest = reader.newest().await.unwrap().unwrap();
    let bare = world.root.path().join("archive.git");
    let work = world.root.path().join("archive-work");
    git(None, &["init", "-q", "--bare", bare.to_str().unwrap()]);
    git(None, &["init", "-q", work.to_str().unwrap()]);
    git(Some(&work), &["checkout", "-q", "-b", "finn/archive"]);
    write_tree(&work.join("state"), &world.checkpointed);
    std::fs::write(work.join("finn-manifest.bin"), newest.signed().bytes()).unwrap();
    std::fs::write(work.join("finn-manifest.json"), b"{}").unwrap();
    git(Some(&work), &["add", "-A"]);
    git(
        Some(&work),
        &[
            "-c",
            "user.name=finn",
            "-c",
            "user.email=finn@example.com",
            "commit",
            "-q",
            "-m",
            "archive",
        ],
    );
    git(
        Some(&work),
        &["push", "-q", bare.to_str().unwrap(), "finn/archive"],
    );
    bare
}

pub fn git(dir: Option<&Path>, args: &[&str]) {
    let mut cmd = std::process::Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn template() -> TemplateSource {
    TemplateSource::bundled("template")
        .with_file("BEAUVOIR.md", b"# Beauvoir\n".to_vec())
        .unwrap()
        .with_file(
            "NOTES.md",
            b"# NOTES.md\n\n## Learnings\n\n## Blockers\n".to_vec(),
        )
        .unwrap()
}

async fn lose_and_restore(world: World) {
    std::fs::remove_dir_all(&world.data).unwrap(); // the disk is gone
    let recovery = Cascade::builder(Layout::new(&world.data))
        .wal_options(wal_options())
        .source(ObjectStoreSource::new(
            world.remote.clone(),
            world.keyring(),
        ))
        .source(template())
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report().clone();
    assert_eq!(report.state, State::Running, "{report:#?}");
    assert_eq!(
        report.source.as_ref().unwrap().kind,
        Some(SourceKind::ObjectStore)
    );
    let manifest = report.manifest.as_ref().unwrap();
    assert_eq!(manifest.version, *world.versions.last().unwrap());
    assert_eq!(manifest.lsn, world.checkpoint_lsn);
    assert_eq!(report.replay_from, Some(world.checkpoint_lsn.next()));
    let after: Vec<Record> = world
        .records
        .iter()
        .filter(|r| r.lsn > world.checkpoint_lsn)
        .cloned()
        .collect();
    assert_eq!(report.wal_records_restored, after.len() as u64);
    assert_eq!(read_tree(&world.data.join("state")), world.checkpointed);
    // The WAL holds every record written after the checkpoint, verbatim, and continues above.
    let restored: Vec<Record> = recovery
        .wal()
        .iter_from(world.checkpoint_lsn.next())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(restored, after);
    let next = recovery
        .wal()
        .append(NewRecord::event(Kind::Session, "first after restore"))
        .unwrap();
    assert_eq!(next, world.records.last().unwrap().lsn.next());
}

#[tokio::test]
async fn lose_data_dir_restores_from_object_store_and_shipped_wal() {
    lose_and_restore(world(None, 2, 150).await).await;
}

#[tokio::test]
async fn lose_data_dir_restores_from_moto_and_shipped_wal() {
    let Some(remote) = s3_remote("lose-data-dir") else {
        return;
    };
    lose_and_restore(world(Some(remote), 2, 150).await).await;
}

#[tokio::test]
async fn object_store_unreachable_restores_from_git() {
    let w = world(None, 1, 40).await;
    let bare = git_archive(&w).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    let (_, store) = local_remote(w.root.path());
    let faulty = Arc::new(FaultStore::new(store));
    faulty.inject(Fault::error().repeatedly());
    let unreachable = Remote::new(faulty, "agent", RemoteOptions::default());
    let recovery = Cascade::builder(Layout::new(&w.data))
        .wal_options(wal_options())
        .source(ObjectStoreSource::new(unreachable, w.keyring()))
        .source(
            GitSource::new(bare.to_str().unwrap(), w.keyring())
                .with_cache_dir(w.root.path().join("git-cache")),
        )
        .source(template())
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report();
    assert_eq!(report.source.as_ref().unwrap().name, "git", "{report:#?}");
    assert_eq!(report.state, State::Running);
    assert_eq!(report.manifest.as_ref().unwrap().lsn, w.checkpoint_lsn);
    assert!(report.warnings.iter().any(
        |x| matches!(x, Warning::SourceUnavailable { source, .. } if source == "object-store")
    ));
    assert_eq!(read_tree(&w.data.join("state")), w.checkpointed);
    // The WAL continues above the checkpoint: no LSN the lost machine used is ever reused.
    assert!(
        recovery
            .wal()
            .append(NewRecord::event(Kind::Session, "x"))
            .unwrap()
            > w.checkpoint_lsn
    );
}

#[tokio::test]
async fn both_gone_template_degraded() {
    let w = world(None, 1, 0).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    std::fs::remove_dir_all(w.store_dir()).unwrap();
    let recovery = Cascade::builder(Layout::new(&w.data))
        .wal_options(wal_options())
        .source(ObjectStoreSource::new(w.remote.clone(), w.keyring()))
        .source(GitSource::new(
            w.root.path().join("no-such.git").to_str().unwrap(),
            w.keyring(),
        ))
        .source(template())
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report();
    assert_eq!(report.state, State::Degraded);
    assert_eq!(report.degraded, Some(DegradedReason::TemplateOnly));
    assert_eq!(
        std::fs::read(w.data.join("state/BEAUVOIR.md")).unwrap(),
        b"# Beauvoir\n"
    );
}

#[tokio::test]
async fn corrupt_latest_manifest_restores_the_previous_one() {
    let w = world(None, 2, 10).await;
    let latest = w
        .store_dir()
        .join(format!("agent/manifests/{:020}.manifest", w.versions[1]));
    let mut bytes = std::fs::read(&latest).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&latest, bytes).unwrap();
    std::fs::remove_dir_all(&w.data).unwrap();
    let recovery = Cascade::builder(Layout::new(&w.data))
        .wal_options(wal_options())
        .source(ObjectStoreSource::new(w.remote.clone(), w.keyring()))
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report();
    assert_eq!(
        report.manifest.as_ref().unwrap().version,
        w.versions[0],
        "{report:#?}"
    );
    assert_eq!(read_tree(&w.data.join("state")), state("checkpoint-0", 12));
    assert!(report.warnings.iter().any(
        |x| matches!(x, Warning::CandidateSkipped { version, .. } if *version == w.versions[1])
    ));
    // Records after the older checkpoint came back from the shipped WAL: the latest state.
    assert_eq!(recovery.wal().last_lsn(), w.records.last().unwrap().lsn);
    assert_eq!(report.state, State::Running);
}

#[tokio::test]
async fn an_open_breaker_makes_the_object_store_unavailable() {
    let w = world(None, 1, 0).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    let (_, store) = local_remote(w.root.path());
    let faulty = Arc::new(FaultStore::new(store));
    faulty.inject(Fault::error().repeatedly());
    let remote = Remote::new(faulty.clone(), "agent", RemoteOptions::default());
    // Trip the breaker with failing calls, then heal the store: the open breaker still refuses.
    let reader = Reader::new(remote.clone(), w.keyring());
    for _ in 0..10 {
        let _ = reader.versions().await;
    }
    faulty.clear_faults();
    let recovery = Cascade::builder(Layout::new(&w.data))
        .wal_options(wal_options())
        .source(ObjectStoreSource::new(remote, w.keyring()))
        .source(template())
        .build()
        .run()
        .await
        .unwrap();
    assert_eq!(
        recovery.report().source.as_ref().unwrap().kind,
        Some(SourceKind::Template)
    );
}
