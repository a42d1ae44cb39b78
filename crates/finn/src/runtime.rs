//! The full-stack runtime: one data directory, one WAL shared by every component, checkpoints to
//! an object store, the recovery cascade at boot, and the scheduled maintenance tasks.
//!
//! # Boot sequence ([`FinnBuilder::open`])
//!
//! 1. Open the checkpoint writer on the object store prefix: it takes the prefix's fenced lease
//!    *before* anything is restored from it, so a zombie writer cannot slip a checkpoint in
//!    between.
//! 2. Run the recovery cascade (lock + open the WAL, check local state, else restore the newest
//!    verified checkpoint and the shipped WAL after it, else the template), keeping its report.
//! 3. Replay: load the keyed-state snapshot from `state/` and fold every WAL record above it;
//!    the components (beads, learnings) catch up from the same WAL.
//! 4. Start the scheduler with the default task table: object-store checkpoint + WAL shipping
//!    (30 s ± 5 s), continuous WAL shipping of new records (every 1 s: the RPO, see
//!    [`Intervals::ship`]), git archive (1 h, when a remote is configured), WAL prune after a confirmed
//!    checkpoint (1 h), health (5 min), remote validation (1 h) and restore drill (1 day) (see
//!    [`VerifySettings`]; their outcome is the `remote` health component), and retention when
//!    configured. Breaker transitions are appended to the WAL as `Kind::Config` records
//!    `config/circuit-breaker-<task>`.
//!
//! # Operating it
//!
//! [`Finn::status`] (local, durable, shipped and checkpointed LSN, lag in records and seconds,
//! tasks, request counts), [`Finn::metrics_text`] (Prometheus), [`Finn::serve_http`] (a loopback
//! `/metrics`, `/status`, `/health` endpoint), [`Finn::verify_remote`], [`Finn::restore_drill`]
//! and [`Finn::retention`]. Alerts and runbooks: `docs/operations.md`.
//! 5. Start identity hot reload (when an identity document is configured).
//!
//! # What it guarantees
//!
//! * A write is **locally durable** when [`Finn::put`] returns (fdatasync, unless the WAL was
//!   configured with weaker durability), and **remotely durable** once it is shipped — within
//!   [`Intervals::ship`] (1 s) while the object store is healthy, at once with
//!   [`Finn::await_shipped`] — or a checkpoint covers it: [`Finn::remote_durable_lsn`] says how
//!   far.
//! * After a crash, [`FinnBuilder::open`] brings back every locally durable write when the data
//!   directory survived, and every remotely durable write when it did not.
//! * The WAL is pruned only below what a published checkpoint covers.
//!
//! # What it does not do
//!
//! * Writes acknowledged only locally are lost with the disk: call [`Finn::await_shipped`] (or
//!   wait for the shipping task) before telling anyone outside the process that a write is safe.
//! * One writer per object-store prefix: a second runtime on the same prefix fences the first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use finn_checkpoint::{
    CheckpointInput, CheckpointReport, Checkpointer, CheckpointerOptions, Keyring, Remote,
    RemoteOptions, SigningKey, StoreOptions, Takeover, VerifyingKey,
};
use finn_recovery::source::object_store::ObjectStoreSource;
use finn_recovery::{Cascade, Layout, Mode, RecoveryReport, TemplateSource};
use finn_scheduler::{ComponentHealth, Health, HealthAggregator, HealthReport, Scheduler};
use finn_wal::{Kind, Lsn, NewRecord, Record, Wal};

use crate::config::{Config, DurabilityMode, StoreUrl};

mod observe;
use crate::confirm::Confirmed;
use crate::state::StateStore;
pub use observe::{REMOTE_VERIFY_TASK, RESTORE_DRILL_TASK, RETENTION_TASK, VerifySettings};

/// Everything [`FinnBuilder::open`] and the runtime's calls can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The signing key could not be loaded or created.
    #[error("signing key {path}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: finn_checkpoint::KeyError,
    },
    /// The object store or a checkpoint operation failed.
    #[error("checkpoint store")]
    Checkpoint(#[from] finn_checkpoint::Error),
    /// The recovery cascade could not bring any state up.
    #[error("recovery failed")]
    Recovery(#[from] finn_recovery::CascadeError),
    /// A WAL operation failed.
    #[error("WAL")]
    Wal(#[from] finn_wal::Error),
    /// The keyed-state snapshot could not be read or written.
    #[error("state snapshot")]
    State(#[from] crate::state::StateError),
    /// The confirmation marker could not be read or written.
    #[error("confirmation marker")]
    Confirmed(#[from] crate::confirm::ConfirmedError),
    /// A local file operation failed.
    #[error("I/O error on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A component store failed.
    #[error("{component}")]
    Component {
        /// Which component.
        component: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// [`Finn::update_identity`] without a configured identity document.
    #[error("no identity document is configured")]
    NoIdentity,
    /// The runtime was shut down.
    #[error("the runtime is shut down")]
    ShutDown,
    /// [`Finn::await_shipped`] for an LSN the WAL never wrote.
    #[error("LSN {lsn} was never written (the WAL ends at {last})")]
    NotWritten {
        /// The LSN asked for.
        lsn: Lsn,
        /// The WAL's last LSN.
        last: Lsn,
    },
    /// A restore drill found the object store cannot be restored (or not to what was confirmed).
    #[error("restore drill failed")]
    Drill(#[from] Box<finn_checkpoint::DrillError>),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the signing key comes from.
#[derive(Clone, Debug)]
enum KeySource {
    /// A PEM file; created (mode 0600) when missing and `create` is set.
    File { path: PathBuf, create: bool },
    /// A key held in memory (tests, embedding).
    Key(Box<SigningKey>),
}

/// Periods of the scheduled tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Intervals {
    /// Object-store checkpoint + WAL shipping. Default: 30 s.
    pub sync: Duration,
    /// Continuous WAL shipping: every new record is shipped within this period while the object
    /// store is healthy (the recovery point objective). Each run that finds nothing new makes
    /// no request. [`Duration::ZERO`] ships only with the sync. Default: 1 s.
    pub ship: Duration,
    /// Git archive. Default: 1 h.
    pub git: Duration,
    /// WAL prune. Default: 1 h.
    pub prune: Duration,
    /// Health check. Default: 5 min.
    pub health: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Self {
            sync: finn_scheduler::table::OBJECT_STORE_SYNC.interval,
            ship: finn_scheduler::table::WAL_SHIP.interval,
            git: finn_scheduler::table::GIT_ARCHIVE.interval,
            prune: finn_scheduler::table::WAL_PRUNE.interval,
            health: finn_scheduler::table::HEALTH_CHECK.interval,
        }
    }
}

/// Builds and boots a [`Finn`] runtime. Only the data directory is required.
///
/// ```no_run
/// # async fn run() -> Result<(), finn::runtime::Error> {
/// let finn = finn::Finn::builder("/var/lib/agent")
///     .store_url("s3://agent-state/agent-1")
///     .open()
///     .await?;
/// let lsn = finn.put(finn::wal::Kind::Session, "session/42", b"{\"turn\":3}".to_vec())?;
/// finn.checkpoint().await?; // now the write survives the loss of this machine
/// assert!(finn.remote_durable_lsn() >= lsn);
/// finn.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until open()"]
pub struct FinnBuilder {
    data_dir: PathBuf,
    store_url: Option<String>,
    store_options: StoreOptions,
    key: KeySource,
    trusted: Vec<PathBuf>,
    identity: Option<PathBuf>,
    git: Option<(String, String)>,
    wal_options: finn_wal::Options,
    mode: Mode,
    takeover: Takeover,
    intervals: Intervals,
    scheduler: bool,
    verify: VerifySettings,
    retention: Option<(finn_checkpoint::RetentionPolicy, Duration)>,
    upload_limits: Option<(Option<usize>, Option<u64>)>,
    remote_override: Option<Remote>,
}

impl FinnBuilder {
    /// A builder for `data_dir` with every default: the local object store
    /// `file://<data_dir>/objects`, the signing key `keys/signing.pem` (created if missing),
    /// `Sync` durability, degraded-mode recovery.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = crate::config::absolute(&data_dir.into());
        Self {
            key: KeySource::File {
                path: data_dir.join("keys").join("signing.pem"),
                create: true,
            },
            data_dir,
            store_url: None,
            store_options: StoreOptions::default(),
            trusted: Vec::new(),
            identity: None,
            git: None,
            wal_options: finn_wal::Options::default(),
            mode: Mode::Degraded,
            takeover: Takeover::IfExpired,
            intervals: Intervals::default(),
            scheduler: true,
            verify: VerifySettings::default(),
            retention: None,
            upload_limits: None,
            remote_override: None,
        }
    }

    /// A builder from a loaded [`Config`].
    pub fn from_config(config: &Config) -> Result<Self, Error> {
        let mut b = Self::new(&config.data_dir);
        if let StoreUrl::Remote(url) = config.store_url()? {
            b.store_url = Some(url.to_string());
        } else if config.store.url.is_some() {
            b.store_url = Some(config.store_url()?.as_url_string());
        }
        let mut so = StoreOptions::default();
        if let Some(e) = &config.store.endpoint {
            so = so.endpoint(e.clone());
        }
        if let Some(r) = &config.store.region {
            so = so.region(r.clone());
        }
        if let (Some(id), Some(secret)) =
            (&config.store.access_key_id, &config.store.secret_access_key)
        {
            so = so.credentials(id.clone(), secret.expose().to_owned());
        }
        so = so.allow_http(
            config.store.allow_http
                || config
                    .store
                    .endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
        );
        b.store_options = so;
        b.key = KeySource::File {
            path: crate::config::absolute(&config.signing_key_path()),
            create: true,
        };
        b.trusted = config
            .keys
            .trusted
            .iter()
            .map(|p| config.resolve(p))
            .collect();
        b.identity = config.identity.path.as_ref().map(|p| config.resolve(p));
        b.git = config
            .git
            .remote
            .as_ref()
            .map(|r| (r.clone(), config.git.branch.clone()));
        b.wal_options.durability = match config.wal.durability {
            DurabilityMode::Sync => finn_wal::Durability::Sync,
            DurabilityMode::Batch => finn_wal::Durability::Batch {
                max_delay: Duration::from_millis(config.wal.batch_delay_ms),
            },
            DurabilityMode::None => finn_wal::Durability::None,
        };
        b.intervals = Intervals {
            sync: Duration::from_millis(config.sync.interval_ms),
            ship: Duration::from_millis(config.sync.ship_interval_ms),
            git: Duration::from_millis(config.sync.git_interval_ms),
            prune: Duration::from_millis(config.sync.prune_interval_ms),
            health: Duration::from_millis(config.sync.health_interval_ms),
        };
        let every = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        b.verify = VerifySettings {
            validate_every: every(config.verify.interval_ms),
            drill_every: every(config.verify.drill_interval_ms),
            sample: config.verify.sample,
            heartbeat_url: config.verify.heartbeat_url.clone(),
            ..VerifySettings::default()
        };
        if let Some(apply) = every(config.retention.apply_interval_ms) {
            b.retention = Some((config.retention_policy(), apply));
        }
        if config.store.max_concurrent_uploads.is_some()
            || config.store.upload_bytes_per_sec.is_some()
        {
            b.upload_limits = Some((
                config.store.max_concurrent_uploads,
                config.store.upload_bytes_per_sec,
            ));
        }
        Ok(b)
    }

    /// Continuous verification: validation and drill periods, sample size, heartbeat URL.
    /// Default: validate hourly, drill daily, no heartbeat.
    pub fn verify(mut self, settings: VerifySettings) -> Self {
        self.verify = settings;
        self
    }

    /// Applies `policy` (deleting) every `every` as a scheduled task. Default: never (plan and
    /// apply with `finn retention`).
    pub fn retention(mut self, policy: finn_checkpoint::RetentionPolicy, every: Duration) -> Self {
        self.retention = Some((policy, every));
        self
    }

    /// Upload limits: at most `max_concurrent` uploads in flight and `bytes_per_sec` of upload
    /// bandwidth. Default: none (Cloudflare R2 endpoints: 2 concurrent uploads).
    pub fn upload_limits(
        mut self,
        max_concurrent: Option<usize>,
        bytes_per_sec: Option<u64>,
    ) -> Self {
        self.upload_limits = Some((max_concurrent, bytes_per_sec));
        self
    }

    /// Uses this remote handle instead of opening `store_url` (embedding a custom
    /// `ObjectStore`, or a test wrapper such as `finn::checkpoint::fault::FaultStore`).
    pub fn with_remote(mut self, remote: Remote) -> Self {
        self.remote_override = Some(remote);
        self
    }

    /// Object store URL (`file:///dir`, `s3://bucket/prefix`, …). Default: `file://<data_dir>/objects`.
    pub fn store_url(mut self, url: impl Into<String>) -> Self {
        self.store_url = Some(url.into());
        self
    }

    /// Object store client options (endpoint, credentials, region). Default: none.
    pub fn store_options(mut self, options: StoreOptions) -> Self {
        self.store_options = options;
        self
    }

    /// Signing key file; created when missing if `create`. Default: `<data_dir>/keys/signing.pem`, created.
    pub fn signing_key_file(mut self, path: impl Into<PathBuf>, create: bool) -> Self {
        self.key = KeySource::File {
            path: path.into(),
            create,
        };
        self
    }

    /// A signing key held in memory.
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.key = KeySource::Key(Box::new(key));
        self
    }

    /// Public key files whose checkpoints recovery also trusts. Default: only the signing key's.
    pub fn trusted_keys(mut self, files: impl IntoIterator<Item = PathBuf>) -> Self {
        self.trusted = files.into_iter().collect();
        self
    }

    /// Identity document (`BEAUVOIR.md`) to load and hot-reload. Default: none.
    pub fn identity(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity = Some(path.into());
        self
    }

    /// Git archive tier: `remote` (URL or path) and `branch`. Adds the hourly archive task and
    /// the git source to the recovery cascade (after the object store). Default: none.
    pub fn git_archive(mut self, remote: impl Into<String>, branch: impl Into<String>) -> Self {
        self.git = Some((remote.into(), branch.into()));
        self
    }

    /// WAL options (durability, segment size, pressure thresholds). Default: `finn_wal::Options::default()`.
    pub fn wal_options(mut self, options: finn_wal::Options) -> Self {
        self.wal_options = options;
        self
    }

    /// Recovery mode. Default: [`Mode::Degraded`].
    pub fn recovery_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Take the object-store lease over from a writer known to be dead, instead of waiting for
    /// its TTL. Default: wait ([`Takeover::IfExpired`]).
    pub fn force_takeover(mut self, force: bool) -> Self {
        self.takeover = if force {
            Takeover::Force
        } else {
            Takeover::IfExpired
        };
        self
    }

    /// Task periods. Default: the anchors' table.
    pub fn intervals(mut self, intervals: Intervals) -> Self {
        self.intervals = intervals;
        self
    }

    /// Whether to start the scheduler (off for one-shot tools such as `finn checkpoint create`).
    /// Default: on.
    pub fn scheduler(mut self, start: bool) -> Self {
        self.scheduler = start;
        self
    }

    fn load_key(&self) -> Result<SigningKey, Error> {
        match &self.key {
            KeySource::Key(k) => Ok((**k).clone()),
            KeySource::File { path, create } => {
                if *create && !path.exists() {
                    let key = SigningKey::generate();
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
                    }
                    key.save_new(path).map_err(|source| Error::Key {
                        path: path.clone(),
                        source,
                    })?;
                    return Ok(key);
                }
                SigningKey::load(path).map_err(|source| Error::Key {
                    path: path.clone(),
                    source,
                })
            }
        }
    }

    fn remote(&self) -> Result<Remote, Error> {
        if let Some(remote) = &self.remote_override {
            return Ok(remote.clone());
        }
        let url = self.store_url_in_effect();
        if let Ok(StoreUrl::Local(dir)) = StoreUrl::parse(&url) {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let mut options = RemoteOptions::default();
        if let Some((concurrent, bandwidth)) = self.upload_limits {
            let mut limits = finn_checkpoint::UploadLimits::unlimited();
            if let Some(n) = concurrent {
                limits = limits.max_concurrent(n);
            }
            if let Some(b) = bandwidth {
                limits = limits.bandwidth(b);
            }
            options = options.uploads(limits);
        }
        Ok(Remote::from_url(&url, &self.store_options, options)?)
    }

    fn keyring(&self, key: &SigningKey) -> Result<Keyring, Error> {
        let mut keyring = Keyring::trusting(key.verifying_key());
        for path in &self.trusted {
            let vk = VerifyingKey::load(path).map_err(|source| Error::Key {
                path: path.clone(),
                source,
            })?;
            keyring.trust(vk);
        }
        Ok(keyring)
    }

    /// The configured signing key, never creating one (unlike [`FinnBuilder::open`]).
    fn existing_key(&self) -> Result<SigningKey, Error> {
        match &self.key {
            KeySource::Key(k) => Ok((**k).clone()),
            KeySource::File { path, .. } => SigningKey::load(path).map_err(|source| Error::Key {
                path: path.clone(),
                source,
            }),
        }
    }

    /// A read-only view of the object store prefix (list and verify checkpoints) that trusts
    /// the configured keys. Takes no lease and no lock; never creates a key.
    pub fn reader(&self) -> Result<finn_checkpoint::Reader, Error> {
        let key = self.existing_key()?;
        let keyring = self.keyring(&key)?;
        Ok(finn_checkpoint::Reader::new(self.remote()?, keyring))
    }

    /// Opens the checkpoint writer of the configured prefix (takes its lease, fencing off any
    /// other writer), continuing or forking a lineage: for `finn restore`, which fences writers
    /// off before it reads and forks when it restores a point in the past. Never creates a key.
    pub async fn open_checkpointer(
        &self,
        lineage: finn_checkpoint::LineageMode,
    ) -> Result<Checkpointer, Error> {
        let key = self.existing_key()?;
        let keyring = self.keyring(&key)?;
        let mut options = CheckpointerOptions::default();
        options.takeover = self.takeover;
        options.lineage = lineage;
        Ok(Checkpointer::open(self.remote()?, key, keyring, options).await?)
    }

    /// The object store URL in effect.
    pub fn store_url_in_effect(&self) -> String {
        match &self.store_url {
            Some(u) => u.clone(),
            None => format!("file://{}", self.data_dir.join("objects").display()),
        }
    }

    /// Runs the boot sequence (see the [module docs](self)).
    pub async fn open(self) -> Result<Finn, Error> {
        let started = Instant::now();
        std::fs::create_dir_all(&self.data_dir).map_err(io_err(&self.data_dir))?;
        let key = self.load_key()?;
        let keyring = self.keyring(&key)?;
        let remote = self.remote()?;

        // 1. The lease first, so the restore below sees exactly what the seal recorded.
        let mut options = CheckpointerOptions::default();
        options.takeover = self.takeover;
        let checkpointer =
            Checkpointer::open(remote.clone(), key.clone(), keyring.clone(), options).await?;

        // A brand-new agent (no local state, nothing in the object store) starts from an empty
        // state of its own rather than the cascade's template tier: an empty state is what a new
        // agent has, whereas a template boot is reported as DEGRADED and its later writes have
        // to be matched against the remote on every boot until they reach it.
        let state_dir = self.data_dir.join("state");
        let high = checkpointer.high_water().await;
        let archive_empty = match &self.git {
            None => true,
            Some((remote, branch)) => git_branch_is_empty(remote, branch).await,
        };
        if !state_dir.exists()
            && high.version == 0
            && high.lsn == finn_checkpoint::Lsn::ZERO
            && archive_empty
        {
            let fresh = self.data_dir.join(".state-fresh");
            let _ = std::fs::remove_dir_all(&fresh);
            std::fs::create_dir_all(&fresh).map_err(io_err(&fresh))?;
            StateStore::new().write_snapshot(&fresh)?;
            std::fs::rename(&fresh, &state_dir).map_err(io_err(&state_dir))?;
            finn_wal::fs::sync_dir(&self.data_dir).map_err(io_err(&self.data_dir))?;
        }

        // 2. The cascade: local → object store (+ shipped WAL) → template.
        let layout = Layout::new(&self.data_dir);
        let mut cascade = Cascade::builder(layout)
            .mode(self.mode)
            .wal_options(self.wal_options.clone())
            .source(ObjectStoreSource::new(remote.clone(), keyring.clone()));
        let mut archive = None;
        if let Some((git_remote, branch)) = &self.git {
            cascade = cascade.source(
                finn_recovery::source::git::GitSource::new(git_remote.clone(), keyring.clone())
                    .with_branch(branch.clone()),
            );
            archive = Some(
                finn_checkpoint::GitArchive::new(
                    self.data_dir.join("git-archive"),
                    git_remote.clone(),
                )
                .and_then(|a| a.branch(branch.clone()))?,
            );
        }
        let cascade = cascade.source(template()?).build();
        let mut recovery = cascade.run().await?;
        // This writer continues the checkpointer's lineage from here on: recording it lets a
        // later boot tell a local state that fell behind the object store (another writer took
        // over meanwhile) from a current one. Not for a degraded boot (a template or a fork).
        if recovery.report().state == finn_recovery::State::Running
            && recovery.report().lineage.is_none()
        {
            recovery
                .mark_local_authoritative(Some(checkpointer.lineage().await))
                .map_err(finn_recovery::CascadeError::from)?;
        }
        let (report, wal) = recovery.into_parts();
        let wal = Arc::new(wal);

        // Nothing this writer appends may reuse an LSN the prefix already holds.
        let high = checkpointer.high_water().await.lsn;
        if wal.last_lsn() < Lsn::new(high.get()) {
            wal.advance_to(Lsn::new(high.get()).next())?;
        }

        // 3. Replay into the keyed state.
        let state = StateStore::load(&state_dir)?;
        for record in wal.iter_from(state.applied_lsn().next())? {
            state.apply(&record?);
        }
        state.advance(wal.last_lsn());

        let confirmed = Confirmed::load(&self.data_dir)?;

        #[cfg(feature = "beads")]
        let beads = Arc::new(open_beads(&wal, &state)?);
        #[cfg(feature = "learning")]
        let learning = {
            let (store, _report) = finn_learning::LearningStore::with_wal(
                wal.clone(),
                state_dir.join("learning"),
                finn_learning::StoreOptions::default(),
            )
            .map_err(|e| Error::Component {
                component: "learning",
                source: Box::new(e),
            })?;
            Arc::new(store)
        };
        // 5. Identity hot reload (after the scheduler below would also do; it needs no state).
        #[cfg(feature = "identity")]
        let identity = match &self.identity {
            None => None,
            Some(path) => Some(open_identity(path, &state)?),
        };

        let ops = observe::Ops::new(
            &self.data_dir,
            remote.clone(),
            keyring.clone(),
            self.verify.clone(),
            self.retention.clone(),
        )?;
        if let Some(head) = checkpointer.head().await {
            ops.checkpointed(
                head.version,
                Lsn::new(head.covered_lsn.get()),
                head.created_at_ms,
            );
        }
        if report.source.as_ref().is_some_and(|s| s.name != "local") {
            ops.metrics.observe_restore("boot", started.elapsed());
        }
        let inner = Arc::new(Inner {
            ops,
            data_dir: self.data_dir.clone(),
            state_dir,
            wal,
            state,
            checkpointer: tokio::sync::RwLock::new(Some(checkpointer)),
            archive,
            recovery: report,
            write: Mutex::new(()),
            confirmed: Mutex::new(confirmed),
            last_sync: Mutex::new(None),
            unmerged_batches: std::sync::atomic::AtomicUsize::new(0),
            boot_time: started.elapsed(),
            health: HealthAggregator::new(),
            scheduler: Scheduler::new(finn_scheduler::SchedulerOptions::default()),
            shut_down: std::sync::atomic::AtomicBool::new(false),
            #[cfg(feature = "beads")]
            beads,
            #[cfg(feature = "learning")]
            learning,
            #[cfg(feature = "identity")]
            identity,
        });
        inner.register_health();
        if self.scheduler {
            inner.start_scheduler(self.intervals)?;
        }
        Ok(Finn { inner })
    }
}

#[derive(Debug)]
struct Inner {
    /// Status, metrics, verification, retention, heartbeat.
    ops: observe::Ops,
    data_dir: PathBuf,
    state_dir: PathBuf,
    wal: Arc<Wal>,
    state: StateStore,
    /// The git archive tier, when configured.
    archive: Option<finn_checkpoint::GitArchive>,
    /// `None` once shut down (the lease was released).
    checkpointer: tokio::sync::RwLock<Option<Checkpointer>>,
    recovery: RecoveryReport,
    /// Serialises keyed appends with their fold, so the fold sees them in LSN order.
    write: Mutex<()>,
    confirmed: Mutex<Confirmed>,
    last_sync: Mutex<Option<Result<Lsn, String>>>,
    /// Shipped batches since shipped WAL was last merged into levels.
    unmerged_batches: std::sync::atomic::AtomicUsize,
    boot_time: Duration,
    health: HealthAggregator,
    scheduler: Scheduler,
    shut_down: std::sync::atomic::AtomicBool,
    #[cfg(feature = "beads")]
    beads: Arc<finn_beads::Store>,
    #[cfg(feature = "learning")]
    learning: Arc<finn_learning::LearningStore>,
    #[cfg(feature = "identity")]
    identity: Option<Identity>,
}

/// The identity loader and its watch (dropping the guard stops hot reload).
#[cfg(feature = "identity")]
struct Identity {
    loader: Arc<finn_identity::Loader>,
    _watch: Option<finn_identity::WatchGuard>,
}

#[cfg(feature = "identity")]
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("path", &self.loader.path())
            .finish_non_exhaustive()
    }
}

/// The running stack. Cheap to clone; every clone is the same runtime.
#[derive(Clone, Debug)]
pub struct Finn {
    inner: Arc<Inner>,
}

impl Finn {
    /// A builder for a runtime over `data_dir`.
    pub fn builder(data_dir: impl Into<PathBuf>) -> FinnBuilder {
        FinnBuilder::new(data_dir)
    }

    /// The shared WAL (components append to it directly).
    pub fn wal(&self) -> &Arc<Wal> {
        &self.inner.wal
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// What the recovery cascade did at boot.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// Time the boot sequence took.
    pub fn boot_time(&self) -> Duration {
        self.inner.boot_time
    }

    /// The keyed state (latest value per `(kind, key)`).
    pub fn state(&self) -> &StateStore {
        &self.inner.state
    }

    /// The work-item store, on the shared WAL.
    #[cfg(feature = "beads")]
    pub fn beads(&self) -> &finn_beads::Store {
        &self.inner.beads
    }

    /// The learning store, on the shared WAL (its snapshot lives in `state/learning/`).
    #[cfg(feature = "learning")]
    pub fn learnings(&self) -> &finn_learning::LearningStore {
        &self.inner.learning
    }

    /// The identity loader, when an identity document is configured.
    #[cfg(feature = "identity")]
    pub fn identity(&self) -> Option<&finn_identity::Loader> {
        self.inner.identity.as_ref().map(|i| &*i.loader)
    }

    /// Replaces the identity document: the new text is appended to the WAL (`Kind::State`,
    /// key `identity/document`), then written to the file atomically and reloaded. After a crash
    /// the WAL record wins, so an acknowledged edit is never lost with the file.
    #[cfg(feature = "identity")]
    pub fn update_identity(&self, text: &str) -> Result<Lsn, Error> {
        let Some(identity) = &self.inner.identity else {
            return Err(Error::NoIdentity);
        };
        let lsn = self.put(Kind::State, IDENTITY_KEY, text.as_bytes().to_vec())?;
        let path = identity.loader.path();
        finn_wal::fs::write_atomic(path, text.as_bytes()).map_err(io_err(path))?;
        if let Err(e) = identity.loader.load() {
            tracing::warn!(error = %e, "identity document rejected; the last good one stays active");
        }
        Ok(lsn)
    }

    /// Appends a keyed put and folds it into the state; returns once it is locally durable.
    pub fn put(&self, kind: Kind, key: impl Into<String>, value: Vec<u8>) -> Result<Lsn, Error> {
        self.inner.put(kind, key.into(), value)
    }

    /// Appends a keyed delete.
    pub fn delete(&self, kind: Kind, key: impl Into<String>) -> Result<Lsn, Error> {
        self.inner.append_keyed(NewRecord::delete(kind, key.into()))
    }

    /// Appends an event (not part of the keyed state; kept until pruned).
    pub fn event(&self, kind: Kind, payload: Vec<u8>) -> Result<Lsn, Error> {
        self.inner.check_open()?;
        let started = Instant::now();
        let lsn = self.inner.wal.append(NewRecord::event(kind, payload))?;
        self.inner.ops.metrics.observe_append(started.elapsed());
        Ok(lsn)
    }

    /// Checkpoints now: snapshots the state into `state/`, uploads it and publishes a signed
    /// manifest. Every write acknowledged before the call is remotely durable when it returns.
    ///
    /// Returns `None` without touching the object store when nothing was appended since the
    /// last published checkpoint.
    pub async fn checkpoint(&self) -> Result<Option<CheckpointReport>, Error> {
        self.inner.checkpoint().await
    }

    /// Pushes the newest checkpoint (publishing one first if needed) to the git archive tier now.
    /// A no-op without a configured git remote.
    pub async fn archive_git(&self) -> Result<(), Error> {
        self.inner.archive_git().await
    }

    /// Deletes manifests beyond the retention count, stale intents and unreferenced objects.
    pub async fn gc(&self) -> Result<finn_checkpoint::GcReport, Error> {
        let guard = self.inner.checkpointer.read().await;
        let checkpointer = guard.as_ref().ok_or(Error::ShutDown)?;
        let report = checkpointer.gc().await?;
        let deleted =
            report.deleted_objects + report.deleted_manifests.len() + report.deleted_batches;
        self.inner
            .ops
            .metrics
            .deleted(deleted as u64, report.deleted_object_bytes);
        Ok(report)
    }

    /// Ships every locally durable WAL record to the object store now (cheap: only new
    /// records, in batches). Every write acknowledged before the call is remotely durable when
    /// it returns. Returns the highest shipped LSN.
    pub async fn ship(&self) -> Result<Lsn, Error> {
        self.inner.ship().await
    }

    /// Waits until the write at `lsn` is remotely durable (shipped or checkpointed) and returns
    /// [`Finn::remote_durable_lsn`]. Returns at once when it already is; otherwise ships now
    /// rather than waiting for the shipping task. For the few writes that must survive the
    /// loss of this machine before anyone is told (a payment, a promise to a user); the rest
    /// are shipped within [`Intervals::ship`].
    ///
    /// ```no_run
    /// # async fn demo(finn: &finn::Finn) -> Result<(), finn::Error> {
    /// use finn::Kind;
    /// let lsn = finn.put(Kind::Session, "order/42", b"paid".to_vec())?;
    /// finn.await_shipped(lsn).await?; // now a restore on another machine has it
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotWritten`] for an LSN this runtime's WAL never wrote, and the store's error
    /// when shipping fails (the write stays locally durable; call again to retry).
    pub async fn await_shipped(&self, lsn: Lsn) -> Result<Lsn, Error> {
        if self.remote_durable_lsn() >= lsn {
            return Ok(self.remote_durable_lsn());
        }
        let last = self.inner.wal.last_lsn();
        if lsn > last {
            return Err(Error::NotWritten { lsn, last });
        }
        self.inner.ship().await?;
        Ok(self.remote_durable_lsn())
    }

    /// Highest LSN whose record is in the object store, by a published checkpoint or by
    /// shipped WAL: a restore on another machine brings back every write up to it.
    pub fn remote_durable_lsn(&self) -> Lsn {
        let c = self.inner.confirmed();
        c.checkpointed_lsn.max(c.shipped_lsn)
    }

    /// How far the WAL is covered by a published checkpoint and by shipped batches.
    pub fn confirmed(&self) -> Confirmed {
        self.inner.confirmed()
    }

    /// The aggregated health report (the anchors' rules).
    pub async fn health(&self) -> HealthReport {
        self.inner.health.check().await
    }

    /// The scheduler running the maintenance tasks.
    pub fn scheduler(&self) -> &Scheduler {
        &self.inner.scheduler
    }

    /// Stops the scheduler, flushes the WAL, checkpoints, and releases the object-store lease
    /// and (when the last clone is dropped) the WAL lock.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.inner.scheduler.shutdown(Duration::from_secs(5)).await;
        self.inner.wal.sync()?;
        let result = self.inner.sync_remote().await;
        self.inner
            .shut_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Give the lease up so the next writer need not wait for its TTL.
        let checkpointer = self.inner.checkpointer.write().await.take();
        if let Some(c) = checkpointer {
            c.release().await?;
        }
        result
    }
}

impl Inner {
    fn check_open(&self) -> Result<(), Error> {
        if self.shut_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::ShutDown);
        }
        Ok(())
    }

    fn confirmed(&self) -> Confirmed {
        *self
            .confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn put(&self, kind: Kind, key: String, value: Vec<u8>) -> Result<Lsn, Error> {
        self.append_keyed(NewRecord::put(kind, key, value))
    }

    fn append_keyed(&self, record: NewRecord) -> Result<Lsn, Error> {
        self.check_open()?;
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let NewRecord {
            kind,
            op,
            key,
            payload,
        } = record.clone();
        let started = Instant::now();
        let lsn = self.wal.append(record)?;
        self.ops.metrics.observe_append(started.elapsed());
        self.state.apply_ahead(&Record {
            lsn,
            id: ulid::Ulid::nil(),
            timestamp_ms: 0,
            kind,
            op,
            key,
            payload,
        });
        Ok(lsn)
    }

    async fn checkpoint(&self) -> Result<Option<CheckpointReport>, Error> {
        // Nothing new to publish only if this lineage already has a checkpoint: after a fork
        // the confirmed mark may still name the old lineage's.
        let has_base = self.has_base().await?;
        // Everything appended so far is durable; hold the write lock while the snapshot is cut
        // so it is complete through exactly `covered`.
        self.timed_wal_sync()?;
        let covered = {
            let _guard = self
                .write
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Never below what the state already includes: after a restore from a checkpoint
            // with no record after it, the WAL is empty (only advanced) but the state is not.
            let covered = self.wal.last_lsn().max(self.state.applied_lsn());
            if has_base && covered > Lsn::ZERO && covered == self.confirmed().checkpointed_lsn {
                return Ok(None);
            }
            self.catch_up(covered)?;
            self.state.write_snapshot(&self.state_dir)?;
            covered
        };
        // Components snapshot after `covered` was cut, so each covers at least through it.
        #[cfg(feature = "learning")]
        self.learning.snapshot().map_err(|e| Error::Component {
            component: "learning snapshot",
            source: Box::new(e),
        })?;
        let input = CheckpointInput::from_dir(&self.state_dir, to_ckpt_lsn(covered))?;
        let guard = self.checkpointer.read().await;
        let checkpointer = guard.as_ref().ok_or(Error::ShutDown)?;
        let result = checkpointer.checkpoint(input).await;
        drop(guard);
        match &result {
            Ok(_) => {
                let mut c = self
                    .confirmed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                c.checkpointed_lsn = c.checkpointed_lsn.max(covered);
                c.store(&self.data_dir)?;
                if let Ok(r) = &result {
                    self.ops.checkpointed(r.version, covered, observe::now_ms());
                }
                *self
                    .last_sync
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Ok(covered));
            }
            Err(e) => {
                *self
                    .last_sync
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Err(e.to_string()));
            }
        }
        Ok(Some(result?))
    }

    /// Ships every locally durable WAL record not yet in the object store; returns the shipped LSN.
    async fn ship(&self) -> Result<Lsn, Error> {
        // A restore replays shipped WAL on top of a checkpoint of the same lineage, so until the
        // lineage has one (a new agent, or the fork a restore to the past starts), shipped
        // records would be unreachable: publish one first, covering everything written so far.
        if !self.has_base().await? {
            self.checkpoint().await?;
        }
        self.timed_wal_sync()?;
        let guard = self.checkpointer.read().await;
        let checkpointer = guard.as_ref().ok_or(Error::ShutDown)?;
        let result = checkpointer.ship_wal(&self.wal).await;
        drop(guard);
        match result {
            Ok(report) => {
                self.unmerged_batches
                    .fetch_add(report.batches, std::sync::atomic::Ordering::Relaxed);
                let shipped = Lsn::new(report.shipped_lsn.get());
                let mut c = self
                    .confirmed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if shipped > c.shipped_lsn {
                    c.shipped_lsn = shipped;
                    c.store(&self.data_dir)?;
                }
                Ok(shipped)
            }
            Err(e) => {
                *self
                    .last_sync
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Err(e.to_string()));
                Err(e.into())
            }
        }
    }

    /// Whether this lineage has a published checkpoint (asks the writer's memory, not the store).
    async fn has_base(&self) -> Result<bool, Error> {
        let guard = self.checkpointer.read().await;
        let checkpointer = guard.as_ref().ok_or(Error::ShutDown)?;
        Ok(checkpointer.head().await.is_some())
    }

    /// The shipping task: ships when the WAL holds records the object store does not; otherwise
    /// makes no request.
    async fn ship_new(&self) -> Result<(), Error> {
        let c = self.confirmed();
        if self.wal.last_lsn() > c.checkpointed_lsn.max(c.shipped_lsn) {
            self.ship().await?;
        }
        Ok(())
    }

    /// Merges shipped WAL batches into larger level objects ([`LevelPolicy::default`]: 5 min
    /// and 1 h windows) once enough have accumulated, so that shipping every second does not
    /// leave a restore tens of thousands of small objects to read. A failed merge is logged and
    /// retried after as many batches again: nothing depends on it but restore speed.
    ///
    /// [`LevelPolicy::default`]: finn_checkpoint::LevelPolicy
    async fn merge_shipped(&self) {
        use std::sync::atomic::Ordering;
        if self.unmerged_batches.load(Ordering::Relaxed) < MERGE_AFTER_BATCHES {
            return;
        }
        self.unmerged_batches.store(0, Ordering::Relaxed);
        let guard = self.checkpointer.read().await;
        let Some(checkpointer) = guard.as_ref() else {
            return;
        };
        match checkpointer
            .compact_wal(&finn_checkpoint::LevelPolicy::default())
            .await
        {
            Ok(report) => tracing::debug!(
                created = report.created.len(),
                deleted = report.deleted,
                "shipped WAL merged into levels"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot merge shipped WAL; will retry"),
        }
    }

    /// The git task: archive the newest published checkpoint (publishing one first if the WAL
    /// moved on), read back from the state directory it was cut from.
    async fn archive_git(&self) -> Result<(), Error> {
        let Some(archive) = &self.archive else {
            return Ok(());
        };
        self.checkpoint().await?;
        let guard = self.checkpointer.read().await;
        let checkpointer = guard.as_ref().ok_or(Error::ShutDown)?;
        if let Some(head) = checkpointer.head().await {
            let report = archive.archive(&head, &self.state_dir).await?;
            tracing::info!(commit = %report.commit, version = report.version, "git archive pushed");
        }
        Ok(())
    }

    fn timed_wal_sync(&self) -> Result<Lsn, Error> {
        let started = Instant::now();
        let lsn = self.wal.sync()?;
        self.ops.metrics.observe_wal_sync(started.elapsed());
        Ok(lsn)
    }

    /// The sync task: ship the WAL, then checkpoint; then the heartbeat, if the remote last
    /// validated clean.
    async fn sync_remote(&self) -> Result<(), Error> {
        let started = Instant::now();
        self.ship().await?;
        self.checkpoint().await?;
        self.merge_shipped().await;
        self.ops.metrics.observe_remote_sync(started.elapsed());
        self.heartbeat().await;
        Ok(())
    }

    /// Runs a task's future on a blocking thread of the same runtime, for contexts that need a
    /// `Send` future (the scheduler, `tokio::spawn`): rustc cannot prove finn-checkpoint's
    /// upload future `Send` for every lifetime (a known higher-ranked inference limit with
    /// stream combinators), so the future is built and driven there instead.
    async fn on_blocking_thread<T, F, Fut>(
        self: Arc<Self>,
        task: &'static str,
        run: F,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || handle.block_on(run(self)))
            .await
            .map_err(|e| Error::Io {
                path: PathBuf::from(format!("<{task} task>")),
                source: std::io::Error::other(e.to_string()),
            })?
    }

    /// Folds every WAL record above the applied LSN through `to` (components such as beads
    /// append to the WAL directly), in LSN order. Call with the write lock held.
    fn catch_up(&self, to: Lsn) -> Result<(), Error> {
        let from = self.state.applied_lsn().next();
        if from <= to {
            for record in self.wal.iter_from(from)? {
                let record = record?;
                if record.lsn > to {
                    break;
                }
                self.state.apply(&record);
            }
        }
        self.state.advance(to);
        Ok(())
    }

    fn prune(&self) -> Result<(), Error> {
        let safe = self.confirmed().safe_to_prune();
        if safe > Lsn::ZERO {
            self.wal.prune_through(safe)?;
        }
        Ok(())
    }

    fn register_health(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        self.health.add_fn("wal", move || {
            let me = me.clone();
            async move {
                let Some(me) = me.upgrade() else {
                    return Ok(ComponentHealth::unhealthy("wal", "runtime stopped"));
                };
                let s = me.wal.status();
                let h = match s.pressure {
                    finn_wal::Pressure::Critical => {
                        ComponentHealth::unhealthy("wal", "disk pressure critical")
                    }
                    finn_wal::Pressure::Warning => {
                        ComponentHealth::degraded("wal", "disk pressure warning")
                    }
                    _ if s.poisoned => {
                        ComponentHealth::unhealthy("wal", "poisoned by a failed fsync")
                    }
                    _ => ComponentHealth::healthy("wal"),
                };
                Ok(h.with_detail("segments", s.segments)
                    .with_detail("bytes", s.wal_bytes)
                    .with_detail("last_lsn", s.last_lsn))
            }
        });
        let me = Arc::downgrade(self);
        self.health.add_fn("recovery", move || {
            let me = me.clone();
            async move {
                let Some(me) = me.upgrade() else {
                    return Ok(ComponentHealth::unhealthy("recovery", "runtime stopped"));
                };
                let state = me.recovery.state;
                let h = match state {
                    finn_recovery::State::LoopDetected => {
                        ComponentHealth::unhealthy("recovery", "boot loop detected")
                    }
                    finn_recovery::State::Degraded => ComponentHealth::degraded(
                        "recovery",
                        format!("came up degraded: {:?}", me.recovery.degraded),
                    ),
                    _ => ComponentHealth::healthy("recovery"),
                };
                Ok(h.with_detail("state", format!("{state:?}")).with_detail(
                    "source",
                    me.recovery
                        .source
                        .as_ref()
                        .map_or("local".to_owned(), |s| format!("{s:?}")),
                ))
            }
        });
        let me = Arc::downgrade(self);
        self.health.add_fn("object_store", move || {
            let me = me.clone();
            async move {
                let Some(me) = me.upgrade() else {
                    return Ok(ComponentHealth::unhealthy(
                        "object_store",
                        "runtime stopped",
                    ));
                };
                let last = me
                    .last_sync
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                Ok(match last {
                    Some(Err(e)) => {
                        ComponentHealth::degraded("object_store", format!("last sync failed: {e}"))
                    }
                    Some(Ok(lsn)) => ComponentHealth::healthy("object_store")
                        .with_detail("checkpointed_lsn", lsn),
                    None => ComponentHealth::healthy("object_store")
                        .with_detail("checkpointed_lsn", "none yet"),
                })
            }
        });
        #[cfg(feature = "identity")]
        {
            let me = Arc::downgrade(self);
            self.health.add_fn("identity", move || {
                let me = me.clone();
                async move {
                    let Some(me) = me.upgrade() else {
                        return Ok(ComponentHealth::unhealthy("identity", "runtime stopped"));
                    };
                    let Some(identity) = &me.identity else {
                        return Ok(
                            ComponentHealth::healthy("identity").with_detail("configured", false)
                        );
                    };
                    let h = identity.loader.health();
                    let c = if h.valid {
                        ComponentHealth::healthy("identity")
                    } else {
                        ComponentHealth::degraded(
                            "identity",
                            "the document on disk is not valid; the last valid one stays active",
                        )
                    };
                    Ok(c.with_detail("watching", h.watching).with_detail(
                        "checksum",
                        h.checksum.map_or("none".to_owned(), |c| c.to_string()),
                    ))
                }
            });
        }
        let me = Arc::downgrade(self);
        self.health.add_fn("remote", move || {
            let me = me.clone();
            async move {
                Ok(match me.upgrade() {
                    Some(me) => me.remote_health(),
                    None => ComponentHealth::unhealthy("remote", "runtime stopped"),
                })
            }
        });
        let me = Arc::downgrade(self);
        self.health.add_fn("scheduler", move || {
            let me = me.clone();
            async move {
                Ok(match me.upgrade() {
                    Some(me) => me.scheduler.health(),
                    None => ComponentHealth::unhealthy("scheduler", "runtime stopped"),
                })
            }
        });
    }

    /// Registers a scheduled task whose handler holds the runtime only weakly, so a task never
    /// keeps a shut-down runtime alive; a run that finds it gone is ignored, not a failure.
    fn register_task<F, Fut>(
        self: &Arc<Self>,
        spec: finn_scheduler::TaskSpec,
        run: F,
    ) -> Result<(), Error>
    where
        F: Fn(Arc<Self>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), finn_scheduler::TaskError>> + Send + 'static,
    {
        let weak = Arc::downgrade(self);
        let run = Arc::new(run);
        self.scheduler
            .register(spec, move |_token| {
                let weak = weak.clone();
                let run = Arc::clone(&run);
                async move {
                    let me = weak.upgrade().ok_or_else(|| {
                        finn_scheduler::TaskError::msg("runtime stopped").ignored()
                    })?;
                    run(me).await
                }
            })
            .map_err(scheduler_err)?;
        Ok(())
    }

    fn start_scheduler(self: &Arc<Self>, intervals: Intervals) -> Result<(), Error> {
        use finn_scheduler::SchedulerEvent;
        use finn_scheduler::table::{HEALTH_CHECK, OBJECT_STORE_SYNC, WAL_PRUNE, WAL_SHIP};
        let weak = Arc::downgrade(self);
        self.scheduler.on_event(move |event| {
            if let Some(me) = weak.upgrade() {
                me.ops.on_event(event);
            }
        });
        let weak = Arc::downgrade(self);
        // Breaker transitions go to the WAL, awaited (the anchors fired and forgot them).
        self.scheduler.on_event(move |event| {
            if let SchedulerEvent::Breaker { task, transition } = event
                && let Some(me) = weak.upgrade()
            {
                let payload = serde_json::json!({
                    "taskId": task.as_str(),
                    "from": format!("{:?}", transition.from),
                    "to": format!("{:?}", transition.to),
                    "reason": format!("{:?}", transition.reason),
                });
                let key = format!("config/circuit-breaker-{}", task.as_str());
                if let Err(e) = me.put(Kind::Config, key, payload.to_string().into_bytes()) {
                    tracing::warn!(error = %e, "cannot record breaker transition");
                }
            }
        });
        self.register_task(spec(&OBJECT_STORE_SYNC, intervals.sync), |me| async move {
            me.on_blocking_thread("sync", |me| async move { me.sync_remote().await })
                .await?;
            Ok(())
        })?;
        if !intervals.ship.is_zero() {
            self.register_task(spec(&WAL_SHIP, intervals.ship), |me| async move {
                me.on_blocking_thread("ship", |me| async move { me.ship_new().await })
                    .await?;
                Ok(())
            })?;
        }
        if self.archive.is_some() {
            self.register_task(
                spec(&finn_scheduler::table::GIT_ARCHIVE, intervals.git),
                |me| async move {
                    me.on_blocking_thread(
                        "git archive",
                        |me| async move { me.archive_git().await },
                    )
                    .await?;
                    Ok(())
                },
            )?;
        }
        self.register_task(spec(&WAL_PRUNE, intervals.prune), |me| async move {
            me.prune()?;
            Ok(())
        })?;
        self.register_task(spec(&HEALTH_CHECK, intervals.health), |me| async move {
            let report = me.health.check().await;
            if report.overall != Health::Healthy {
                tracing::warn!(overall = %report.overall, reasons = ?report.reasons(), "health");
            }
            Ok(())
        })?;
        self.register_verify_tasks()?;
        self.scheduler.start().map_err(scheduler_err)?;
        Ok(())
    }
}

/// Shipped batches that make a merge into levels worth its listing (about a minute of writes
/// shipped every second).
const MERGE_AFTER_BATCHES: usize = 64;

/// A row of the default table with the configured interval (jitter scaled down for short ones).
fn spec(row: &finn_scheduler::table::TaskDefaults, interval: Duration) -> finn_scheduler::TaskSpec {
    let jitter = row.jitter.min(interval / 6);
    let spec = finn_scheduler::TaskSpec::new(row.id, interval)
        .jitter(jitter)
        .min_delay(interval.min(finn_scheduler::DEFAULT_MIN_DELAY))
        .timeout(row.timeout);
    match row.group {
        Some(group) => spec.group(group, finn_scheduler::GroupPolicy::Wait),
        None => spec,
    }
}

fn scheduler_err(e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: PathBuf::from("<scheduler>"),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Whether the git archive certainly holds nothing (an unreachable remote counts as "maybe
/// something": the cascade then decides).
async fn git_branch_is_empty(remote: &str, branch: &str) -> bool {
    let run = tokio::process::Command::new("git")
        .args(["ls-remote", "--heads", "--", remote, branch])
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(out)) if out.status.success() => out.stdout.iter().all(u8::is_ascii_whitespace),
        _ => false,
    }
}

/// WAL key of the identity document's text.
pub const IDENTITY_KEY: &str = "identity/document";

/// Opens the beads store on the shared WAL. Bead records are keyed post-images, so the keyed
/// state holds the newest one of every bead even when the WAL records were pruned or came from
/// a checkpoint; those the WAL no longer has are appended again (same post-image, idempotent)
/// before the store folds the WAL.
#[cfg(feature = "beads")]
fn open_beads(wal: &Arc<Wal>, state: &StateStore) -> Result<finn_beads::Store, Error> {
    let component = |e: finn_beads::Error| Error::Component {
        component: "beads",
        source: Box::new(e),
    };
    let store = finn_beads::Store::with_wal(wal.clone(), finn_beads::Options::default())
        .map_err(component)?;
    let mut missing = Vec::new();
    for (key, value) in state.scan(Kind::Bead, finn_beads::BEAD_KEY_PREFIX) {
        let id = &key[finn_beads::BEAD_KEY_PREFIX.len()..];
        if store.get(id).is_none() {
            missing.push(NewRecord::put(Kind::Bead, key.clone(), value));
        }
    }
    if missing.is_empty() {
        return Ok(store);
    }
    tracing::info!(
        beads = missing.len(),
        "re-appending bead post-images restored from the checkpoint"
    );
    for lsn_record in wal
        .append_batch(missing.clone(), finn_wal::Durability::Sync)?
        .into_iter()
        .zip(missing)
    {
        let (lsn, r) = lsn_record;
        state.apply(&Record {
            lsn,
            id: ulid::Ulid::nil(),
            timestamp_ms: 0,
            kind: r.kind,
            op: r.op,
            key: r.key,
            payload: r.payload,
        });
    }
    store.refresh().map_err(component)?;
    Ok(store)
}

/// Loads the identity document (rewriting it from the WAL's newest acknowledged text first) and
/// starts watching it.
#[cfg(feature = "identity")]
fn open_identity(path: &Path, state: &StateStore) -> Result<Identity, Error> {
    if let Some(text) = state.get(Kind::State, IDENTITY_KEY)
        && std::fs::read(path).ok().as_deref() != Some(&text[..])
    {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        finn_wal::fs::write_atomic(path, &text).map_err(io_err(path))?;
    }
    let loader = Arc::new(finn_identity::Loader::new(
        path,
        finn_identity::Options::default(),
    ));
    if !path.exists() {
        tracing::info!(path = %path.display(), "no identity document yet; watching for one");
    } else if let Err(e) = loader.load() {
        // The runtime still comes up; health reports the identity as degraded.
        tracing::warn!(error = %e, path = %path.display(), "identity document not loaded");
    }
    let watch = match loader.watch() {
        Ok(guard) => Some(guard),
        Err(e) => {
            tracing::warn!(error = %e, "identity hot reload not started");
            None
        }
    };
    Ok(Identity {
        loader,
        _watch: watch,
    })
}

/// The last tier: an empty keyed state.
fn template() -> Result<TemplateSource, Error> {
    TemplateSource::bundled("empty")
        .with_file(crate::state::SNAPSHOT_FILE, StateStore::empty_snapshot())
        .map_err(|e| Error::Io {
            path: PathBuf::from(crate::state::SNAPSHOT_FILE),
            source: std::io::Error::other(e.to_string()),
        })
}

fn to_ckpt_lsn(lsn: Lsn) -> finn_checkpoint::Lsn {
    finn_checkpoint::Lsn::new(lsn.get())
}
