//! Runtime configuration: a TOML file, then environment variables, each value validated.
//!
//! Precedence, lowest first: built-in defaults → the TOML file → environment variables → whatever
//! the caller sets afterwards (the CLI applies its flags last). The environment variables are the
//! ones the anchors' deployments already export, so an existing deployment keeps working:
//!
//! | variable | config key | meaning |
//! |---|---|---|
//! | `DATA_DIR` | `data_dir` | the local data directory (WAL, state, keys) |
//! | `SYNC_INTERVAL_MS` | `sync.interval_ms` | object-store checkpoint + WAL shipping period |
//! | `GIT_SYNC_INTERVAL_MS` | `sync.git_interval_ms` | git archive period |
//! | `FINN_SHIP_INTERVAL_MS` | `sync.ship_interval_ms` | continuous WAL shipping period, the RPO (`0`: only with the sync) |
//! | `R2_ENDPOINT` | `store.endpoint` | S3-compatible endpoint (R2, MinIO, moto) |
//! | `R2_BUCKET` | `store.url` | sets `store.url = "s3://<bucket>"` when no URL is configured |
//! | `R2_ACCESS_KEY_ID` | `store.access_key_id` | S3 access key id |
//! | `R2_SECRET_ACCESS_KEY` | `store.secret_access_key` | S3 secret (never printed) |
//! | `GIT_ARCHIVE_BRANCH` | `git.branch` | branch the git archive tier pushes to |
//! | `FINN_STORE_URL` | `store.url` | object store URL (`file:///…`, `s3://bucket/prefix`, …) |
//! | `FINN_GIT_REMOTE` | `git.remote` | git archive remote |
//! | `FINN_IDENTITY` | `identity.path` | identity document (`BEAUVOIR.md`) |
//!
//! Every error names the key (or variable) that is wrong, so an operator can fix it from one line.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the configuration file `finn init` writes into the data directory.
pub const CONFIG_FILE_NAME: &str = "finn.toml";
/// Default object-store checkpoint + WAL shipping period (the anchors' `SYNC_INTERVAL_MS`).
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 30_000;
/// Default continuous WAL shipping period: the recovery point objective while the object store
/// is healthy (Litestream's default sync interval too).
pub const DEFAULT_SHIP_INTERVAL_MS: u64 = 1_000;
/// Default git archive period (the anchors' `GIT_SYNC_INTERVAL_MS`).
pub const DEFAULT_GIT_SYNC_INTERVAL_MS: u64 = 3_600_000;
/// Default health check period (the anchors' `HEALTH_INTERVAL_MS`).
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 300_000;
/// Default WAL prune period.
pub const DEFAULT_PRUNE_INTERVAL_MS: u64 = 3_600_000;
/// Shortest accepted period for any scheduled task: shorter ones would mostly measure overhead.
pub const MIN_INTERVAL_MS: u64 = 100;

/// Everything the runtime and the CLI need to know, from file and environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// The local data directory. Default: `./finn-data`.
    pub data_dir: PathBuf,
    /// Where checkpoints and shipped WAL batches go.
    pub store: StoreConfig,
    /// Periods of the scheduled tasks.
    pub sync: SyncConfig,
    /// The optional git archive tier.
    pub git: GitConfig,
    /// Write-ahead log options.
    pub wal: WalConfig,
    /// The identity document.
    pub identity: IdentityConfig,
    /// Signing and trusted keys for checkpoint manifests.
    pub keys: KeysConfig,
    /// The loopback metrics endpoint.
    pub metrics: MetricsConfig,
    /// Continuous verification of the object store.
    pub verify: VerifyConfig,
    /// Retention of checkpoints and shipped WAL.
    pub retention: RetentionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("finn-data"),
            store: StoreConfig::default(),
            sync: SyncConfig::default(),
            git: GitConfig::default(),
            wal: WalConfig::default(),
            identity: IdentityConfig::default(),
            keys: KeysConfig::default(),
            metrics: MetricsConfig::default(),
            verify: VerifyConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

/// The metrics endpoint `finn run` serves (`GET /metrics`, `/status`, `/health`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Loopback address to listen on, e.g. `127.0.0.1:9464`. Default: none (not served).
    pub listen: Option<String>,
}

/// Continuous verification of the object store (see `docs/operations.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct VerifyConfig {
    /// Period of the remote validation task; 0 disables it. Default: 3 600 000 (1 h).
    pub interval_ms: u64,
    /// Period of the restore drill task; 0 disables it. Default: 86 400 000 (1 day).
    pub drill_interval_ms: u64,
    /// Already-verified objects downloaded again at random per validation. Default: 8.
    pub sample: usize,
    /// URL requested after a sync when the last validation found nothing wrong (a dead man's
    /// switch). Default: none.
    pub heartbeat_url: Option<String>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            interval_ms: 3_600_000,
            drill_interval_ms: 86_400_000,
            sample: 8,
            heartbeat_url: None,
        }
    }
}

/// Retention of checkpoints and shipped WAL. `finn retention` plans with these (dry run unless
/// `--apply`); the running runtime applies them only when `apply_interval_ms` is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RetentionConfig {
    /// Newest checkpoints kept, by recorded creation time. Default: 10.
    pub keep_last: usize,
    /// Checkpoints younger than this many seconds are kept. Default: none.
    pub keep_within_secs: Option<u64>,
    /// Point-in-time window for shipped WAL, in seconds. Default: none.
    pub pitr_window_secs: Option<u64>,
    /// Checkpoint versions that never expire. Default: none.
    pub pinned: Vec<u64>,
    /// Period of the scheduled retention task that deletes; 0 never deletes on its own.
    /// Default: 0.
    pub apply_interval_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            keep_last: 10,
            keep_within_secs: None,
            pitr_window_secs: None,
            pinned: Vec::new(),
            apply_interval_ms: 0,
        }
    }
}

/// Object store settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Object store URL: `file:///abs/dir`, `s3://bucket/prefix`, `gs://…`, `az://…`.
    /// Default: none, which means `file://<data_dir>/objects` (the embedded default).
    pub url: Option<String>,
    /// S3-compatible endpoint, e.g. `https://<account>.r2.cloudflarestorage.com`. Default: none (AWS).
    pub endpoint: Option<String>,
    /// Region. Default: none (`us-east-1` for S3, `auto` for R2).
    pub region: Option<String>,
    /// Access key id. Default: none (the object store's own environment lookup).
    pub access_key_id: Option<String>,
    /// Secret access key; redacted in `Debug` output. Default: none.
    pub secret_access_key: Option<Secret>,
    /// Allow plain `http://` endpoints (local MinIO or moto). Default: `false`.
    pub allow_http: bool,
    /// Most uploads in flight at once. Default: none (R2 endpoints: 2).
    pub max_concurrent_uploads: Option<usize>,
    /// Upload bandwidth limit in bytes per second. Default: none.
    pub upload_bytes_per_sec: Option<u64>,
}

/// A string that never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for handing to the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Periods of the scheduled tasks, in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SyncConfig {
    /// Object-store checkpoint + WAL shipping. Default: 30 000 (± 5 s jitter).
    pub interval_ms: u64,
    /// Continuous WAL shipping: the longest a new write stays only on the local disk while the
    /// object store is healthy (the RPO). `0` ships only with the object-store sync. Default:
    /// 1 000.
    pub ship_interval_ms: u64,
    /// Git archive. Default: 3 600 000 (± 5 min jitter).
    pub git_interval_ms: u64,
    /// Health check. Default: 300 000 (± 30 s jitter).
    pub health_interval_ms: u64,
    /// WAL prune after a confirmed checkpoint and shipping. Default: 3 600 000 (± 5 min jitter).
    pub prune_interval_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            interval_ms: DEFAULT_SYNC_INTERVAL_MS,
            ship_interval_ms: DEFAULT_SHIP_INTERVAL_MS,
            git_interval_ms: DEFAULT_GIT_SYNC_INTERVAL_MS,
            health_interval_ms: DEFAULT_HEALTH_INTERVAL_MS,
            prune_interval_ms: DEFAULT_PRUNE_INTERVAL_MS,
        }
    }
}

/// The git archive tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct GitConfig {
    /// Remote URL or path; none disables the tier. Default: none.
    pub remote: Option<String>,
    /// Branch to push archives to. Default: `main`.
    pub branch: String,
}

impl Default for GitConfig {
    fn default() -> Self {
        Self {
            remote: None,
            branch: "main".to_owned(),
        }
    }
}

/// How appends reach the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DurabilityMode {
    /// Every append returns after fdatasync: an acknowledged write survives power loss.
    #[default]
    Sync,
    /// Group commit: appends are fdatasynced together within `wal.batch_delay_ms`.
    Batch,
    /// No fdatasync on append: survives a process crash, not power loss.
    None,
}

/// Write-ahead log options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct WalConfig {
    /// Durability of appends. Default: `sync`.
    pub durability: DurabilityMode,
    /// Longest wait before a group commit under `batch`. Default: 2.
    pub batch_delay_ms: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            durability: DurabilityMode::Sync,
            batch_delay_ms: 2,
        }
    }
}

/// The identity document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct IdentityConfig {
    /// Path of `BEAUVOIR.md`; relative paths are under the data directory. Default: none (no
    /// identity hot reload).
    pub path: Option<PathBuf>,
}

/// Signing and trusted keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct KeysConfig {
    /// PEM file with this writer's Ed25519 signing key; relative paths are under the data
    /// directory. Default: none, which means `keys/signing.pem` in the data directory.
    pub signing_key: Option<PathBuf>,
    /// Public keys (PEM files, relative to the data directory) whose signatures recovery
    /// accepts, besides the signing key's own. Default: none.
    pub trusted: Vec<PathBuf>,
}

/// Why a configuration was rejected. Every variant names the key or variable at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for this schema (unknown key, wrong type, …).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, including the key and line.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        /// The config key (`sync.interval_ms`) or environment variable (`SYNC_INTERVAL_MS`).
        key: String,
        /// The offending value (secrets are never put here).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Config {
    /// The retention policy `[retention]` describes (objects unreferenced for an hour may go).
    #[cfg(feature = "checkpoint")]
    pub fn retention_policy(&self) -> finn_checkpoint::RetentionPolicy {
        let r = &self.retention;
        let mut policy = finn_checkpoint::RetentionPolicy::default().keep_last(r.keep_last);
        if let Some(s) = r.keep_within_secs {
            policy = policy.keep_within(std::time::Duration::from_secs(s));
        }
        if let Some(s) = r.pitr_window_secs {
            policy = policy.pitr_window(std::time::Duration::from_secs(s));
        }
        for v in &r.pinned {
            policy = policy.pin(*v);
        }
        policy
    }

    /// Loads `file` (when given) over the defaults, then applies the process environment, then
    /// validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with an explicit environment lookup (for tests and embedding).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML file (without looking at the environment or validating ranges).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        // A relative `data_dir` written in a file means "relative to that file", so a data
        // directory holding its own `finn.toml` (`data_dir = "."`) can be moved as a whole.
        let sets_data_dir = text
            .parse::<toml::Table>()
            .map(|t| t.contains_key("data_dir"))
            .unwrap_or(false);
        if sets_data_dir && config.data_dir.is_relative() {
            let base = path.parent().unwrap_or_else(|| Path::new("."));
            config.data_dir = base.join(&config.data_dir);
        }
        Ok(config)
    }

    fn from_toml(text: &str) -> Result<Self, String> {
        // The TOML error message is multi-line (it quotes the line); one line is enough here.
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_owned();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!("{message} (line {line})")
                }
                None => message,
            }
        })
    }

    /// Serialises the configuration as TOML (secrets included: this is what `finn init` writes).
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of strings, integers and paths cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Applies the environment variables listed in the [module docs](self).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("SYNC_INTERVAL_MS") {
            self.sync.interval_ms = parse_ms("SYNC_INTERVAL_MS", &v)?;
        }
        if let Some(v) = get("GIT_SYNC_INTERVAL_MS") {
            self.sync.git_interval_ms = parse_ms("GIT_SYNC_INTERVAL_MS", &v)?;
        }
        if let Some(v) = get("FINN_SHIP_INTERVAL_MS") {
            self.sync.ship_interval_ms = match v.trim() {
                "0" => 0,
                _ => parse_ms("FINN_SHIP_INTERVAL_MS", &v)?,
            };
        }
        if let Some(v) = get("FINN_STORE_URL") {
            self.store.url = Some(v);
        }
        if let Some(v) = get("R2_BUCKET")
            && self.store.url.is_none()
        {
            if v.contains('/') || v.contains(':') {
                return Err(invalid("R2_BUCKET", &v, "a bucket name has no '/' or ':'"));
            }
            self.store.url = Some(format!("s3://{v}"));
        }
        if let Some(v) = get("R2_ENDPOINT") {
            self.store.endpoint = Some(v);
        }
        if let Some(v) = get("R2_ACCESS_KEY_ID") {
            self.store.access_key_id = Some(v);
        }
        if let Some(v) = get("R2_SECRET_ACCESS_KEY") {
            self.store.secret_access_key = Some(Secret::new(v));
        }
        if let Some(v) = get("GIT_ARCHIVE_BRANCH") {
            self.git.branch = v;
        }
        if let Some(v) = get("FINN_GIT_REMOTE") {
            self.git.remote = Some(v);
        }
        if let Some(v) = get("FINN_IDENTITY") {
            self.identity.path = Some(PathBuf::from(v));
        }
        Ok(())
    }

    /// Checks ranges and formats; the error names the config key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "", "must not be empty"));
        }
        for (key, value) in [
            ("sync.interval_ms", self.sync.interval_ms),
            ("sync.git_interval_ms", self.sync.git_interval_ms),
            ("sync.health_interval_ms", self.sync.health_interval_ms),
            ("sync.prune_interval_ms", self.sync.prune_interval_ms),
        ] {
            if value < MIN_INTERVAL_MS {
                return Err(invalid(key, &value.to_string(), "must be at least 100 ms"));
            }
        }
        let ship = self.sync.ship_interval_ms;
        if ship != 0 && ship < MIN_INTERVAL_MS {
            return Err(invalid(
                "sync.ship_interval_ms",
                &ship.to_string(),
                "must be 0 (ship with the sync only) or at least 100 ms",
            ));
        }
        if let Some(listen) = &self.metrics.listen {
            let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
                invalid(
                    "metrics.listen",
                    listen,
                    "not an address like 127.0.0.1:9464",
                )
            })?;
            if !addr.ip().is_loopback() {
                return Err(invalid(
                    "metrics.listen",
                    listen,
                    "must be a loopback address (put a proxy in front to expose it)",
                ));
            }
        }
        for (key, value) in [
            ("verify.interval_ms", self.verify.interval_ms),
            ("verify.drill_interval_ms", self.verify.drill_interval_ms),
            (
                "retention.apply_interval_ms",
                self.retention.apply_interval_ms,
            ),
        ] {
            if value != 0 && value < MIN_INTERVAL_MS {
                return Err(invalid(
                    key,
                    &value.to_string(),
                    "must be 0 (off) or at least 100 ms",
                ));
            }
        }
        if let Some(url) = &self.verify.heartbeat_url {
            let ok = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return Err(invalid("verify.heartbeat_url", url, "not an http(s) URL"));
            }
        }
        if self.retention.keep_last == 0 {
            return Err(invalid("retention.keep_last", "0", "must be at least 1"));
        }
        if self.store.max_concurrent_uploads == Some(0) {
            return Err(invalid(
                "store.max_concurrent_uploads",
                "0",
                "must be at least 1",
            ));
        }
        if self.store.upload_bytes_per_sec == Some(0) {
            return Err(invalid(
                "store.upload_bytes_per_sec",
                "0",
                "must be at least 1",
            ));
        }
        if self.wal.batch_delay_ms > 10_000 {
            return Err(invalid(
                "wal.batch_delay_ms",
                &self.wal.batch_delay_ms.to_string(),
                "must be at most 10000 ms",
            ));
        }
        if let Some(url) = &self.store.url {
            StoreUrl::parse(url).map_err(|reason| invalid("store.url", url, reason))?;
        }
        if let Some(endpoint) = &self.store.endpoint {
            let parsed = url::Url::parse(endpoint)
                .map_err(|_| invalid("store.endpoint", endpoint, "not a URL"))?;
            match parsed.scheme() {
                "https" => {}
                "http" if self.store.allow_http || is_loopback(&parsed) => {}
                "http" => {
                    return Err(invalid(
                        "store.endpoint",
                        endpoint,
                        "plain http needs store.allow_http = true",
                    ));
                }
                _ => {
                    return Err(invalid(
                        "store.endpoint",
                        endpoint,
                        "scheme must be http or https",
                    ));
                }
            }
        }
        if self.git.branch.is_empty()
            || self.git.branch.starts_with('-')
            || self
                .git
                .branch
                .contains(['.', ' ', '~', '^', ':', '\\'].as_ref())
        {
            return Err(invalid(
                "git.branch",
                &self.git.branch,
                "not a valid git branch name",
            ));
        }
        Ok(())
    }

    /// The object store URL in effect: the configured one, or `file://<data_dir>/objects`.
    pub fn store_url(&self) -> Result<StoreUrl, ConfigError> {
        match &self.store.url {
            Some(url) => StoreUrl::parse(url).map_err(|reason| invalid("store.url", url, reason)),
            None => Ok(StoreUrl::Local(absolute(&self.data_dir).join("objects"))),
        }
    }

    /// `path` resolved against the data directory when relative.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.data_dir.join(path)
        }
    }

    /// The WAL directory: `<data_dir>/wal`.
    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }

    /// The directory of restored and derived state: `<data_dir>/state`.
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("state")
    }

    /// The signing key file in effect.
    pub fn signing_key_path(&self) -> PathBuf {
        self.resolve(
            self.keys
                .signing_key
                .as_deref()
                .unwrap_or_else(|| Path::new("keys/signing.pem")),
        )
    }
}

/// A parsed object store location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// A local directory standing in for a remote bucket (the embedded default).
    Local(PathBuf),
    /// A remote bucket: `s3://`, `gs://`, `az://` and friends, kept as the URL.
    Remote(url::Url),
}

impl StoreUrl {
    /// Parses `file:///abs/dir`, a plain absolute path, or a bucket URL.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        if text.starts_with('/') {
            return Ok(Self::Local(PathBuf::from(text)));
        }
        let url = url::Url::parse(text)
            .map_err(|_| "not a URL (use file:///dir or s3://bucket/prefix)")?;
        match url.scheme() {
            "file" => url
                .to_file_path()
                .map(Self::Local)
                .map_err(|()| "a file URL needs an absolute path (file:///dir)"),
            "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err("the URL names no bucket");
                }
                Ok(Self::Remote(url))
            }
            _ => Err("unsupported scheme (use file, s3, gs or az)"),
        }
    }

    /// The URL form, for logs and reports.
    pub fn as_url_string(&self) -> String {
        match self {
            Self::Local(path) => format!("file://{}", path.display()),
            Self::Remote(url) => url.to_string(),
        }
    }
}

fn is_loopback(url: &url::Url) -> bool {
    matches!(
        url.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    )
}

fn parse_ms(key: &str, value: &str) -> Result<u64, ConfigError> {
    let ms: u64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "not a whole number of milliseconds"))?;
    if ms < MIN_INTERVAL_MS {
        return Err(invalid(key, value, "must be at least 100 ms"));
    }
    Ok(ms)
}

fn invalid(key: &str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    }
}

/// `path` made absolute against the current directory (without touching the disk).
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ship_interval_is_off_or_at_least_the_minimum() {
        let mut c = Config::default();
        assert_eq!(c.sync.ship_interval_ms, DEFAULT_SHIP_INTERVAL_MS);
        c.apply_env(env(&[("FINN_SHIP_INTERVAL_MS", "0")])).unwrap();
        assert_eq!(c.sync.ship_interval_ms, 0);
        c.validate().unwrap();
        c.apply_env(env(&[("FINN_SHIP_INTERVAL_MS", "250")]))
            .unwrap();
        assert_eq!(c.sync.ship_interval_ms, 250);
        assert!(c.apply_env(env(&[("FINN_SHIP_INTERVAL_MS", "5")])).is_err());
        c.sync.ship_interval_ms = 5;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("sync.ship_interval_ms"), "{err}");
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_match_the_anchors_intervals() {
        let c = Config::load_with_env(None, env(&[])).unwrap();
        assert_eq!(c.sync.interval_ms, 30_000);
        assert_eq!(c.sync.git_interval_ms, 3_600_000);
        assert_eq!(c.git.branch, "main");
        assert!(
            matches!(c.store_url().unwrap(), StoreUrl::Local(p) if p.ends_with("finn-data/objects"))
        );
    }

    #[test]
    fn anchor_environment_variables_are_honoured() {
        let c = Config::load_with_env(
            None,
            env(&[
                ("DATA_DIR", "/srv/agent"),
                ("SYNC_INTERVAL_MS", "5000"),
                ("GIT_SYNC_INTERVAL_MS", "60000"),
                ("R2_ENDPOINT", "https://acct.r2.cloudflarestorage.com"),
                ("R2_BUCKET", "agent-state"),
                ("R2_ACCESS_KEY_ID", "AKID"),
                ("R2_SECRET_ACCESS_KEY", "s3cr3t"),
                ("GIT_ARCHIVE_BRANCH", "archive"),
            ]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/agent"));
        assert_eq!(c.sync.interval_ms, 5000);
        assert_eq!(c.sync.git_interval_ms, 60_000);
        assert_eq!(c.store.url.as_deref(), Some("s3://agent-state"));
        assert_eq!(c.store.access_key_id.as_deref(), Some("AKID"));
        assert_eq!(
            c.store.secret_access_key.as_ref().unwrap().expose(),
            "s3cr3t"
        );
        assert_eq!(c.git.branch, "archive");
        assert!(
            !format!("{c:?}").contains("s3cr3t"),
            "secret leaked into Debug"
        );
    }

    #[test]
    fn bad_environment_value_names_the_variable() {
        let err = Config::load_with_env(None, env(&[("SYNC_INTERVAL_MS", "soon")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("SYNC_INTERVAL_MS"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn file_values_override_defaults_and_env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("finn.toml");
        std::fs::write(
            &path,
            "data_dir = \"/a\"\n[sync]\ninterval_ms = 1000\n[git]\nbranch = \"b\"\n",
        )
        .unwrap();
        let c = Config::load_with_env(Some(&path), env(&[("GIT_ARCHIVE_BRANCH", "c")])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/a"));
        assert_eq!(c.sync.interval_ms, 1000);
        assert_eq!(c.git.branch, "c");
    }

    #[test]
    fn bad_file_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("finn.toml");
        std::fs::write(&path, "[sync]\ninterval_ms = 5\n").unwrap();
        let msg = Config::load_with_env(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("sync.interval_ms"), "{msg}");

        std::fs::write(&path, "[sync]\nintervl_ms = 5000\n").unwrap();
        let msg = Config::load_with_env(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("intervl_ms") && !msg.contains('\n'), "{msg}");

        std::fs::write(&path, "[store]\nurl = \"ftp://x/y\"\n").unwrap();
        let msg = Config::load_with_env(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("store.url"), "{msg}");
    }

    #[test]
    fn round_trips_through_toml() {
        let mut c = Config::default();
        c.store.url = Some("s3://bucket/prefix".into());
        c.keys.trusted.push("keys/other.pub.pem".into());
        let back = Config::from_toml(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn store_urls_parse() {
        assert!(matches!(
            StoreUrl::parse("file:///tmp/x"),
            Ok(StoreUrl::Local(_))
        ));
        assert!(matches!(StoreUrl::parse("/tmp/x"), Ok(StoreUrl::Local(_))));
        assert!(matches!(
            StoreUrl::parse("s3://b/p"),
            Ok(StoreUrl::Remote(_))
        ));
        assert!(StoreUrl::parse("s3:///p").is_err());
        assert!(StoreUrl::parse("relative/dir").is_err());
    }
}
