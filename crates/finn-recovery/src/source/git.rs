//! The git archive source: the `finn/archive` branch of a git remote, newest commit first.
//!
//! The branch is fetched into a private bare repository with the git CLI, always as an argument
//! vector (never a shell string; the anchors interpolated URLs and branch names into shell
//! commands), with `GIT_TERMINAL_PROMPT=0`, and every child is killed when its future is dropped
//! (a timeout really stops it). Nothing is checked out and the live workspace is never touched
//! (the anchors ran `git reset --hard` on it). Commits are tried newest first.
//!
//! The layout is finn-checkpoint's [`GitArchive`](finn_checkpoint::GitArchive): the signed
//! manifest at `finn-manifest.bin`, the files under `state/`. For each commit:
//!
//! 1. the signed manifest stored in the commit at [`DEFAULT_MANIFEST_PATH`] is verified with
//!    finn-checkpoint's [`SignedManifest::verify`] against the [`Keyring`] (trusted, not revoked);
//! 2. every file the manifest lists is read from the commit's tree (`git cat-file --batch`) into
//!    the staging directory; tree entries that are symlinks or submodules refuse the commit;
//! 3. the cascade verifies size and blake3 of every staged file against the manifest (the
//!    anchors compared the git manifest with the *live* directory instead).
//!
//! The staged manifest names its lineage, so when the object store is reachable but none of its
//! manifests verifies, the cascade still replays the WAL the object store shipped for that
//! lineage after the git base (verified batches only) via
//! [`RecoverySource::wal_of`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use async_trait::async_trait;
use finn_checkpoint::{CheckpointPath, Keyring, SignedManifest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::report::ManifestInfo;
use crate::source::{Candidate, RecoverySource, SourceError, SourceKind, Staged};
use crate::stage::Staging;
use crate::verify::ExpectedFile;

/// The archive branch (the anchors' `GIT_ARCHIVE_BRANCH` default; finn-checkpoint's).
pub const DEFAULT_BRANCH: &str = finn_checkpoint::DEFAULT_ARCHIVE_BRANCH;
/// Where a commit of the archive branch holds the signed manifest bytes (finn-checkpoint's
/// [`GitArchive`](finn_checkpoint::GitArchive) layout).
pub const DEFAULT_MANIFEST_PATH: &str = finn_checkpoint::ARCHIVE_MANIFEST;
/// Tree directory holding the checkpoint's files in an archive commit.
pub const DEFAULT_STATE_DIR: &str = finn_checkpoint::ARCHIVE_STATE_DIR;
/// Commits tried, newest first.
pub const DEFAULT_MAX_CANDIDATES: usize = 10;

/// Restores from a git archive branch. See the [module docs](self).
///
/// ```no_run
/// use finn_checkpoint::{Keyring, VerifyingKey};
/// use finn_recovery::source::git::GitSource;
/// # fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let keyring = Keyring::trusting(VerifyingKey::load("/etc/agent/checkpoint.pub")?);
/// let source = GitSource::new("https://git.example.com/agent-state.git", keyring)
///     .with_cache_dir("/var/lib/agent/recovery/git-cache");
/// # let _ = source; Ok(()) }
/// ```
#[derive(Debug)]
pub struct GitSource {
    name: String,
    remote: String,
    branch: String,
    manifest_path: String,
    state_dir: String,
    keyring: Keyring,
    max_candidates: usize,
    git: PathBuf,
    cache_dir: Option<PathBuf>,
    temp_cache: Mutex<Option<PathBuf>>,
}

impl GitSource {
    /// A source for `remote` (a URL or a local path to a repository), trusting manifests signed
    /// by `keyring`'s keys.
    pub fn new(remote: impl Into<String>, keyring: Keyring) -> Self {
        Self {
            name: "git".into(),
            remote: remote.into(),
            branch: DEFAULT_BRANCH.into(),
            manifest_path: DEFAULT_MANIFEST_PATH.into(),
            state_dir: DEFAULT_STATE_DIR.into(),
            keyring,
            max_candidates: DEFAULT_MAX_CANDIDATES,
            git: PathBuf::from("git"),
            cache_dir: None,
            temp_cache: Mutex::new(None),
        }
    }

    /// Renames the source in reports (default `git`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The branch to restore from. Default: [`DEFAULT_BRANCH`].
    pub fn with_branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = branch.into();
        self
    }

    /// Where the signed manifest is in each commit. Default: [`DEFAULT_MANIFEST_PATH`].
    pub fn with_manifest_path(mut self, path: impl Into<String>) -> Self {
        self.manifest_path = path.into();
        self
    }

    /// The tree directory holding the state files (empty: the tree root). Default:
    /// [`DEFAULT_STATE_DIR`].
    pub fn with_state_dir(mut self, dir: impl Into<String>) -> Self {
        self.state_dir = dir.into().trim_matches('/').to_owned();
        self
    }

    /// Commits tried, newest first. Default: [`DEFAULT_MAX_CANDIDATES`].
    pub fn with_max_candidates(mut self, n: usize) -> Self {
        self.max_candidates = n.max(1);
        self
    }

    /// The git executable. Default: `git` from `PATH`.
    pub fn with_git(mut self, git: impl Into<PathBuf>) -> Self {
        self.git = git.into();
        self
    }

    /// A directory for the private bare repository (kept between boots, so later fetches are
    /// incremental). Default: a temporary directory removed when the source is dropped.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    fn check_names(&self) -> Result<(), SourceError> {
        // Arguments are never parsed by a shell, but git itself would read a leading `-` as an
        // option; refuse that, and names git refuses anyway.
        let bad = |what: &str, v: &str| SourceError::Unavailable {
            reason: format!("git {what} {v:?} is not acceptable"),
        };
        if self.remote.is_empty() || self.remote.starts_with('-') || self.remote.contains('\0') {
            return Err(bad("remote", &self.remote));
        }
        let b = &self.branch;
        if b.is_empty()
            || b.starts_with('-')
            || b.contains("..")
            || b.chars()
                .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
        {
            return Err(bad("branch", b));
        }
        Ok(())
    }

    fn cache(&self) -> Result<PathBuf, SourceError> {
        if let Some(dir) = &self.cache_dir {
            return Ok(dir.clone());
        }
        let mut temp = self
            .temp_cache
            .lock()
            .map_err(|_| SourceError::Unavailable {
                reason: "git cache lock poisoned".into(),
            })?;
        if let Some(dir) = temp.as_ref() {
            return Ok(dir.clone());
        }
        let dir = std::env::temp_dir().join(format!("finn-recovery-git-{}", ulid::Ulid::new()));
        *temp = Some(dir.clone());
        Ok(dir)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.git);
        cmd.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Result<Vec<u8>, SourceError> {
        let out = self
            .command(args)
            .output()
            .await
            .map_err(|e| SourceError::Unavailable {
                reason: format!("cannot run {}: {e}", self.git.display()),
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr
                .chars()
                .rev()
                .take(500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(SourceError::Git {
                args: args.iter().map(|s| (*s).to_owned()).collect(),
                status: out.status.code(),
                stderr: tail.trim().to_owned(),
            });
        }
        Ok(out.stdout)
    }

    fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    /// Reads blobs by object id with one `git cat-file --batch`.
    async fn read_blobs(
        &self,
        cache: &Path,
        oids: Vec<String>,
    ) -> Result<Vec<Vec<u8>>, SourceError> {
        let cache_s = cache.to_string_lossy().into_owned();
        let mut child = self
            .command(&["-C", &cache_s, "cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| SourceError::Unavailable {
                reason: format!("cannot run git: {e}"),
            })?;
        let broken = |what: &str| SourceError::Refused {
            reason: format!("git cat-file --batch: {what}"),
        };
        let mut stdin = child.stdin.take().ok_or_else(|| broken("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| broken("no stdout"))?;
        let count = oids.len();
        // Feed ids concurrently: git stops reading stdin while its stdout is full.
        let feeder = tokio::spawn(async move {
            for oid in oids {
                stdin.write_all(oid.as_bytes()).await?;
                stdin.write_all(b"\n").await?;
            }
            stdin.shutdown().await
        });
        let mut reader = BufReader::new(stdout);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let mut header = String::new();
            reader
                .read_line(&mut header)
                .await
                .map_err(|e| broken(&e.to_string()))?;
            let mut parts = header.split_whitespace();
            let (_, kind, size) = (parts.next(), parts.next(), parts.next());
            if kind != Some("blob") {
                return Err(broken(&format!("unexpected object: {}", header.trim())));
            }
            let size: usize = size
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| broken("bad size"))?;
            let mut content = vec![0u8; size];
            reader
                .read_exact(&mut content)
                .await
                .map_err(|e| broken(&e.to_string()))?;
            let mut newline = [0u8; 1];
            reader
                .read_exact(&mut newline)
                .await
                .map_err(|e| broken(&e.to_string()))?;
            out.push(content);
        }
        feeder
            .await
            .map_err(|e| broken(&e.to_string()))?
            .map_err(|e| broken(&e.to_string()))?;
        let _ = child.wait().await;
        Ok(out)
    }
}

impl Drop for GitSource {
    fn drop(&mut self) {
        if let Ok(temp) = self.temp_cache.lock()
            && let Some(dir) = temp.as_ref()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[async_trait]
impl RecoverySource for GitSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> SourceKind {
        SourceKind::Git
    }

    async fn check_available(&self) -> Result<(), SourceError> {
        self.check_names()?;
        let branch = self.branch_ref();
        self.run(&["ls-remote", "--exit-code", "--", &self.remote, &branch])
            .await
            .map(drop)
            .map_err(|e| SourceError::Unavailable {
                reason: e.to_string(),
            })
    }

    async fn candidates(&self) -> Result<Vec<Candidate>, SourceError> {
        self.check_names()?;
        let cache = self.cache()?;
        let cache_s = cache.to_string_lossy().into_owned();
        if !cache.join("HEAD").exists() {
            self.run(&["init", "--quiet", "--bare", &cache_s]).await?;
        }
        let refspec = format!("+{0}:{0}", self.branch_ref());
        let depth = self.max_candidates.to_string();
        self.run(&[
            "-C",
            &cache_s,
            "fetch",
            "--quiet",
            "--no-tags",
            "--depth",
            &depth,
            "--",
            &self.remote,
            &refspec,
        ])
        .await?;
        let max = format!("--max-count={}", self.max_candidates);
        let out = self
            .run(&["-C", &cache_s, "rev-list", &max, &self.branch_ref(), "--"])
            .await?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .enumerate()
            .map(|(depth, commit)| Candidate {
                version: depth as u64,
                label: commit.trim().to_owned(),
            })
            .collect())
    }

    async fn stage(
        &self,
        candidate: &Candidate,
        staging: &mut Staging,
    ) -> Result<Staged, SourceError> {
        let cache = self.cache()?;
        let cache_s = cache.to_string_lossy().into_owned();
        let commit = &candidate.label;
        if commit.len() < 40 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SourceError::Refused {
                reason: format!("{commit:?} is not a commit id"),
            });
        }
        let tree = self
            .run(&["-C", &cache_s, "ls-tree", "-r", "-z", "--full-tree", commit])
            .await?;
        let mut manifest_oid = None;
        let mut blobs = std::collections::BTreeMap::new();
        for entry in tree.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let text = String::from_utf8_lossy(entry);
            let (meta, path) = text.split_once('\t').ok_or_else(|| SourceError::Refused {
                reason: format!("unparseable tree entry {text:?}"),
            })?;
            let mut meta = meta.split(' ');
            let (mode, kind, oid) = (meta.next(), meta.next(), meta.next());
            if kind != Some("blob") || !matches!(mode, Some("100644" | "100755")) {
                return Err(SourceError::Refused {
                    reason: format!(
                        "tree entry {path} has mode {mode:?} ({kind:?}); only regular files are restored"
                    ),
                });
            }
            let oid = oid.unwrap_or_default().to_owned();
            if path == self.manifest_path {
                manifest_oid = Some(oid);
            } else if self.state_dir.is_empty() {
                blobs.insert(path.to_owned(), oid);
            } else if let Some(rel) = path
                .strip_prefix(&self.state_dir)
                .and_then(|p| p.strip_prefix('/'))
            {
                blobs.insert(rel.to_owned(), oid);
            }
        }
        let manifest_oid = manifest_oid.ok_or_else(|| SourceError::Refused {
            reason: format!("commit has no manifest at {}", self.manifest_path),
        })?;
        let manifest_bytes = self
            .read_blobs(&cache, vec![manifest_oid])
            .await?
            .pop()
            .ok_or_else(|| SourceError::Refused {
                reason: "manifest blob unreadable".into(),
            })?;
        let signed = SignedManifest::verify(manifest_bytes, &self.keyring).map_err(|e| {
            SourceError::Refused {
                reason: format!("manifest: {e}"),
            }
        })?;
        let mut oids = Vec::with_capacity(signed.files.len());
        for f in &signed.files {
            let oid = blobs
                .get(f.path.as_str())
                .ok_or_else(|| SourceError::Refused {
                    reason: format!("{} is listed by the manifest but not in the commit", f.path),
                })?;
            oids.push(oid.clone());
        }
        let contents = self.read_blobs(&cache, oids).await?;
        let mut expected = Vec::with_capacity(signed.files.len());
        for (f, bytes) in signed.files.iter().zip(contents) {
            let path: &CheckpointPath = &f.path;
            staging.write(path, &bytes)?;
            expected.push(ExpectedFile {
                path: path.clone(),
                size: f.size,
                blake3: f.blake3.0,
            });
        }
        Ok(Staged {
            files: expected,
            manifest: ManifestInfo {
                version: signed.version,
                lsn: signed.covered_lsn,
                key_id: Some(signed.signer.to_string()),
                label: format!("{}@{commit}", self.branch),
                // The archive mirrors the object store's checkpoints: with the lineage, the
                // cascade fetches the WAL the object store shipped after this base.
                lineage: Some(signed.lineage),
            },
        })
    }
}
