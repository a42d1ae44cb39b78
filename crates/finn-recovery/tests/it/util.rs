//! Helpers shared by the test modules.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use finn_checkpoint::CheckpointPath;
use finn_checkpoint::LineageId;
use finn_recovery::{
    Candidate, Clock, Event, ExpectedFile, ManifestInfo, RecoverySource, RemoteHead, ShippedWal,
    SourceError, SourceKind, Staged, Staging,
};
use finn_wal::{Lsn, Record};

/// WAL options that keep test directories small.
pub fn wal_options() -> finn_wal::Options {
    finn_wal::Options {
        segment_size: 1 << 20,
        preallocate: false,
        free_space_warning: 0,
        free_space_critical: 0,
        ..finn_wal::Options::default()
    }
}

/// Every regular file under `dir`, relative path → bytes. Panics on a symlink.
pub fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            let path = e.path();
            if t.is_dir() {
                walk(root, &path, out);
            } else if t.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, b"<special>".to_vec());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Writes `files` under `dir`.
pub fn write_tree(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// A small state: `n` files with content derived from `tag`.
pub fn state(tag: &str, n: usize) -> BTreeMap<String, Vec<u8>> {
    (0..n)
        .map(|i| {
            (
                format!("dir{}/file-{i:03}.txt", i % 3),
                format!("{tag}:{i}\n").repeat(i + 1).into_bytes(),
            )
        })
        .collect()
}

/// A wall clock the test moves by hand.
#[derive(Debug)]
pub struct ManualClock(pub AtomicU64);

impl ManualClock {
    pub fn at(ms: u64) -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(ms)))
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a [`FakeSource`] behaves.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Stages its files.
    Good,
    /// Says it is unavailable.
    Unavailable,
    /// Available, but staging fails.
    FailStage,
    /// Availability check never returns.
    HangAvailable,
    /// Staging never returns (after writing a first file).
    HangStage,
    /// Stages, but lists a wrong hash for the first file.
    WrongHash,
    /// Stages, and also plants a symlink pointing outside.
    Symlink(PathBuf),
    /// Kills the process while staging (a crash during boot).
    Abort,
}

/// An in-process source over a fixed set of files and shipped records.
#[derive(Debug)]
pub struct FakeSource {
    pub name: String,
    pub kind: SourceKind,
    pub files: BTreeMap<String, Vec<u8>>,
    pub lsn: Lsn,
    pub records: Vec<Record>,
    /// With a lineage, the source also answers `head` and `wal_of` (like an object store).
    pub lineage: Option<LineageId>,
    pub behaviour: Mutex<Behaviour>,
    pub stage_calls: AtomicUsize,
    pub available_calls: AtomicUsize,
}

impl FakeSource {
    pub fn new(name: &str, kind: SourceKind, files: BTreeMap<String, Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            kind,
            files,
            lsn: Lsn::ZERO,
            records: Vec::new(),
            lineage: None,
            behaviour: Mutex::new(Behaviour::Good),
            stage_calls: AtomicUsize::new(0),
            available_calls: AtomicUsize::new(0),
        }
    }
    pub fn behaving(self, b: Behaviour) -> Self {
        *self.behaviour.lock().unwrap() = b;
        self
    }
    pub fn at_lsn(mut self, lsn: u64, records: Vec<Record>) -> Self {
        self.lsn = Lsn::new(lsn);
        self.records = records;
        self
    }
    pub fn of_lineage(mut self, lineage: LineageId) -> Self {
        self.lineage = Some(lineage);
        self
    }
    pub fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }
    fn behaviour(&self) -> Behaviour {
        self.behaviour.lock().unwrap().clone()
    }
}

#[async_trait]
impl RecoverySource for FakeSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> SourceKind {
        self.kind
    }
    async fn check_available(&self) -> Result<(), SourceError> {
        self.available_calls.fetch_add(1, Ordering::SeqCst);
        match self.behaviour() {
            Behaviour::Unavailable => Err(SourceError::Unavailable {
                reason: "switched off".into(),
            }),
            Behaviour::HangAvailable => std::future::pending().await,
            _ => Ok(()),
        }
    }
    async fn candidates(&self) -> Result<Vec<Candidate>, SourceError> {
        Ok(vec![Candidate {
            version: 1,
            label: format!("{}-v1", self.name),
        }])
    }
    async fn stage(
        &self,
        candidate: &Candidate,
        staging: &mut Staging,
    ) -> Result<Staged, SourceError> {
        self.stage_calls.fetch_add(1, Ordering::SeqCst);
        let behaviour = self.behaviour();
        if let Behaviour::Abort = behaviour {
            std::process::abort();
        }
        if let Behaviour::FailStage = behaviour {
            return Err(SourceError::Refused {
                reason: "restore returned nothing".into(),
            });
        }
        let mut expected = Vec::new();
        for (i, (path, bytes)) in self.files.iter().enumerate() {
            let p = CheckpointPath::new(path.clone()).unwrap();
            staging.write(&p, bytes)?;
            let mut e = ExpectedFile::of(p, bytes);
            if i == 0 && matches!(behaviour, Behaviour::WrongHash) {
                e.blake3[0] ^= 1;
            }
            expected.push(e);
            if i == 0 && matches!(behaviour, Behaviour::HangStage) {
                std::future::pending::<()>().await;
            }
        }
        if let Behaviour::Symlink(target) = behaviour {
            std::os::unix::fs::symlink(target, staging.dir().join("escape")).unwrap();
        }
        Ok(Staged {
            files: expected,
            manifest: ManifestInfo {
                version: candidate.version,
                lsn: self.lsn,
                key_id: None,
                label: candidate.label.clone(),
                lineage: self.lineage,
            },
        })
    }
    async fn wal_after(&self, after: Lsn) -> Result<Option<Vec<Record>>, SourceError> {
        if self.records.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            self.records
                .iter()
                .filter(|r| r.lsn > after)
                .cloned()
                .collect(),
        ))
    }
    async fn wal_of(
        &self,
        lineage: LineageId,
        after: Lsn,
    ) -> Result<Option<ShippedWal>, SourceError> {
        if self.lineage != Some(lineage) {
            return Ok(Some(ShippedWal::default()));
        }
        // Like an object store following its batch chain: a fake's records carry no `prev`
        // links, so its history is contiguous and a missing LSN is a hole, reported with the
        // records before it only.
        let Some(mut records) = self.wal_after(after).await? else {
            return Ok(None);
        };
        let mut expected = after.next();
        let hole = records.iter().position(|r| {
            let hole = r.lsn != expected;
            expected = r.lsn.next();
            hole
        });
        let gap = hole.map(|at| {
            let resumes = records[at].lsn;
            let first_missing = if at == 0 {
                after.next()
            } else {
                records[at - 1].lsn.next()
            };
            records.truncate(at);
            (first_missing, Lsn::new(resumes.get() - 1))
        });
        Ok(Some(ShippedWal { records, gap }))
    }
    async fn head(&self) -> Result<Option<RemoteHead>, SourceError> {
        if matches!(self.behaviour(), Behaviour::Unavailable) {
            return Err(SourceError::Unavailable {
                reason: "switched off".into(),
            });
        }
        Ok(self.lineage.map(|lineage| RemoteHead {
            lineage,
            version: 1,
            manifest_lsn: self.lsn,
            shipped_lsn: self.records.last().map_or(Lsn::ZERO, |r| r.lsn),
        }))
    }
}

/// Collects events.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<Event>>>);

impl Events {
    pub fn callback(&self) -> impl Fn(&Event) + Send + Sync + 'static {
        let inner = self.0.clone();
        move |e: &Event| inner.lock().unwrap().push(e.clone())
    }
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
    pub fn transitions(&self) -> Vec<String> {
        self.all()
            .iter()
            .filter_map(|e| match e {
                Event::Transition { to, .. } => Some(to.to_string()),
                _ => None,
            })
            .collect()
    }
}

/// Records `lsns` as if shipped by a writer.
pub fn records(from: u64, to: u64) -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = finn_wal::Wal::open(dir.path(), wal_options()).unwrap();
    if from > 1 {
        wal.advance_to(Lsn::new(from)).unwrap();
    }
    for i in from..=to {
        wal.append(finn_wal::NewRecord::put(
            finn_wal::Kind::State,
            format!("k{i}"),
            format!("v{i}"),
        ))
        .unwrap();
    }
    let out: Vec<Record> = wal
        .iter_from(Lsn::new(from))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(out.len() as u64, to - from + 1);
    out
}

/// Every record of a WAL directory.
pub fn wal_records(dir: &Path) -> Vec<Record> {
    let wal = finn_wal::Wal::open_read_only(dir, wal_options()).unwrap();
    let first = wal.first_lsn().unwrap_or(Lsn::new(1));
    wal.iter_from(first).unwrap().map(|r| r.unwrap()).collect()
}

/// Environment switch for child processes.
pub const CHILD_ENV: &str = "FINN_RECOVERY_TEST_CHILD";

/// Whether this process is a child running `role`.
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Whether `cargo xtask test` runs us (then missing services fail instead of skipping).
pub fn under_xtask() -> bool {
    std::env::var("FINN_XTASK").is_ok_and(|v| v == "1")
}

/// Spawns this test binary running exactly `test` as a child with `env`.
pub fn spawn_child(test: &str, env: &[(&str, String)]) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::null());
    cmd.stderr(std::process::Stdio::null());
    cmd.spawn().unwrap()
}
