//! The git archive tier: a checkpoint's files committed to an archive branch (default
//! `finn/archive`) and pushed to a remote, through the git CLI with argument vectors (never a
//! shell string).
//!
//! Each archive commit's tree is built from scratch, so deletions propagate (the anchors copied
//! files over an old tree and never removed any):
//!
//! ```text
//! finn-manifest.bin     the signed manifest, byte for byte (restores verify it)
//! finn-manifest.json    the same, readable
//! state/<path>          every file of the checkpoint
//! ```
//!
//! Pushes never force: if the remote branch moved, the push fails with [`Error::Git`] and the
//! next archive builds on the remote head. Pushes go through a circuit breaker.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use finn_breaker::{Breaker, Outcome};
use tokio::io::AsyncWriteExt;

use crate::error::Error;
use crate::manifest::SignedManifest;
use crate::sign::Keyring;

/// Default archive branch (the anchors').
pub const DEFAULT_ARCHIVE_BRANCH: &str = "finn/archive";
/// Tree path of the signed manifest in an archive commit.
pub const ARCHIVE_MANIFEST: &str = "finn-manifest.bin";
/// Tree path of the readable manifest.
pub const ARCHIVE_MANIFEST_JSON: &str = "finn-manifest.json";
/// Tree directory holding the checkpoint's files.
pub const ARCHIVE_STATE_DIR: &str = "state";

/// What an archive run did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveReport {
    /// The new commit.
    pub commit: String,
    /// Files archived (not counting the manifests).
    pub files: usize,
    /// The checkpoint version archived.
    pub version: u64,
}

/// Archives checkpoints into a git branch and restores them from it.
#[derive(Clone, Debug)]
pub struct GitArchive {
    repo: PathBuf,
    remote: String,
    branch: String,
    timeout: Duration,
    breaker: Arc<Breaker>,
    git: PathBuf,
}

fn valid_ref_part(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.starts_with('/')
        && !s.ends_with('/')
        && !s.ends_with(".lock")
        && !s.contains("..")
        && !s.contains("//")
        && !s.contains("@{")
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\\0".contains(c))
}

impl GitArchive {
    /// An archive that keeps its local (bare) repository at `repo` (created on first use) and
    /// pushes to `remote` (a URL, a path, or a configured remote name).
    pub fn new(repo: impl Into<PathBuf>, remote: impl Into<String>) -> Result<Self, Error> {
        let remote = remote.into();
        if remote.is_empty() || remote.starts_with('-') || remote.chars().any(|c| c.is_control()) {
            return Err(Error::GitName {
                what: "remote",
                value: remote,
            });
        }
        let options = finn_breaker::Options::default()
            .consecutive_failures(Some(3))
            .reset_timeout(Duration::from_secs(300));
        let breaker = Breaker::builder()
            .name("git-push")
            .options(options)
            .build()
            .unwrap_or_default();
        Ok(Self {
            repo: repo.into(),
            remote,
            branch: DEFAULT_ARCHIVE_BRANCH.to_owned(),
            timeout: Duration::from_secs(60),
            breaker: Arc::new(breaker),
            git: PathBuf::from("git"),
        })
    }

    /// Uses another branch.
    pub fn branch(mut self, branch: impl Into<String>) -> Result<Self, Error> {
        let branch = branch.into();
        if !valid_ref_part(&branch) {
            return Err(Error::GitName {
                what: "branch",
                value: branch,
            });
        }
        self.branch = branch;
        Ok(self)
    }

    /// Timeout of each git command. Default: 60 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The breaker remote git calls (push, fetch) go through. Default: 3 failures, 5 min.
    pub fn breaker(mut self, breaker: Arc<Breaker>) -> Self {
        self.breaker = breaker;
        self
    }

    /// The git executable. Default: `git` from `PATH`.
    pub fn git_program(mut self, git: impl Into<PathBuf>) -> Self {
        self.git = git.into();
        self
    }

    async fn git(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> Result<Vec<u8>, Error> {
        let mut cmd = tokio::process::Command::new(&self.git);
        cmd.arg("--git-dir").arg(&self.repo).args(args);
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "")
            .env("LC_ALL", "C");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let failed = |status: String, stderr: &[u8]| Error::Git {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            status,
            stderr: String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(2000)..])
                .into_owned(),
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| failed(format!("spawn failed: {e}"), b""))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let input = input.to_vec();
            tokio::spawn(async move {
                let _ = pipe.write_all(&input).await;
            });
        }
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(failed(format!("wait failed: {e}"), b"")),
            Err(_) => return Err(failed("timeout".to_owned(), b"")),
        };
        if !out.status.success() {
            return Err(failed(out.status.to_string(), &out.stderr));
        }
        Ok(out.stdout)
    }

    /// A git call that reaches the remote: through the breaker.
    async fn remote_git(&self, args: &[&str]) -> Result<Vec<u8>, Error> {
        let permit = self.breaker.try_acquire().map_err(Error::GitCircuitOpen)?;
        let result = self.git(args, None, &[]).await;
        permit.record(if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        });
        result
    }

    async fn ensure_repo(&self) -> Result<(), Error> {
        if self.repo.join("HEAD").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.repo).map_err(|source| Error::Io {
            path: self.repo.clone(),
            source,
        })?;
        self.git(&["init", "--bare", "--quiet"], None, &[])
            .await
            .map(|_| ())
    }

    fn tracking_ref(&self) -> String {
        format!("refs/finn-archive/{}", self.branch)
    }

    /// Fetches the remote branch; returns its commit, or `None` if the branch does not exist.
    async fn fetch_head(&self) -> Result<Option<String>, Error> {
        let refname = format!("refs/heads/{}", self.branch);
        let listed = self
            .remote_git(&["ls-remote", "--heads", "--", &self.remote, &refname])
            .await?;
        if String::from_utf8_lossy(&listed).trim().is_empty() {
            return Ok(None);
        }
        let spec = format!("+{refname}:{}", self.tracking_ref());
        self.remote_git(&["fetch", "--quiet", "--no-tags", "--", &self.remote, &spec])
            .await?;
        let head = self
            .git(&["rev-parse", "--verify", &self.tracking_ref()], None, &[])
            .await?;
        Ok(Some(String::from_utf8_lossy(&head).trim().to_owned()))
    }

    /// Commits the files of `manifest`, read from `files_dir` (e.g. the staging directory a
    /// restore fetched into, or the live state directory), to the archive branch and pushes it.
    /// Every file is checked against the manifest's hash first, so the archive holds exactly
    /// the checkpoint.
    pub async fn archive(
        &self,
        manifest: &SignedManifest,
        files_dir: &Path,
    ) -> Result<ArchiveReport, Error> {
        self.ensure_repo().await?;
        let parent = self.fetch_head().await?;
        let index = self
            .repo
            .join(format!("finn-archive-{}.index", ulid::Ulid::new()));
        let index_str = index.to_string_lossy().into_owned();
        let env = [("GIT_INDEX_FILE", index_str.as_str())];
        let result = async {
            let mut entries = Vec::new();
            for f in &manifest.files {
                let local = f.path.under(files_dir);
                let bytes = tokio::fs::read(&local).await.map_err(|source| Error::Io {
                    path: local.clone(),
                    source,
                })?;
                let hash = blake3::hash(&bytes);
                if bytes.len() as u64 != f.size || *hash.as_bytes() != f.blake3.0 {
                    return Err(Error::HashMismatch {
                        path: f.path.to_string(),
                        expected: f.blake3.to_hex(),
                        actual: hash.to_hex().to_string(),
                    });
                }
                let sha = self.hash_object(&bytes).await?;
                entries.push((sha, format!("{ARCHIVE_STATE_DIR}/{}", f.path)));
            }
            entries.push((
                self.hash_object(manifest.bytes()).await?,
                ARCHIVE_MANIFEST.to_owned(),
            ));
            let json = serde_json::to_vec_pretty(manifest.manifest()).unwrap_or_default();
            entries.push((
                self.hash_object(&json).await?,
                ARCHIVE_MANIFEST_JSON.to_owned(),
            ));
            let mut info = Vec::new();
            for (sha, path) in &entries {
                info.extend_from_slice(format!("100644 {sha}\t{path}").as_bytes());
                info.push(0);
            }
            self.git(
                &["update-index", "--add", "-z", "--index-info"],
                Some(&info),
                &env,
            )
            .await?;
            let tree = self.git(&["write-tree"], None, &env).await?;
            let tree = String::from_utf8_lossy(&tree).trim().to_owned();
            let message = format!(
                "finn checkpoint v{} (lsn {}, lineage {}, epoch {})",
                manifest.version, manifest.covered_lsn, manifest.lineage, manifest.writer_epoch
            );
            let mut args = vec!["commit-tree", tree.as_str(), "-m", message.as_str()];
            if let Some(p) = &parent {
                args.extend(["-p", p.as_str()]);
            }
            let who = [
                ("GIT_AUTHOR_NAME", "finn"),
                ("GIT_AUTHOR_EMAIL", "finn@localhost"),
                ("GIT_COMMITTER_NAME", "finn"),
                ("GIT_COMMITTER_EMAIL", "finn@localhost"),
            ];
            let commit = self.git(&args, None, &who).await?;
            Ok::<_, Error>((
                String::from_utf8_lossy(&commit).trim().to_owned(),
                entries.len() - 2,
            ))
        }
        .await;
        let _ = std::fs::remove_file(&index);
        let (commit, files) = result?;
        let local_ref = format!("refs/heads/{}", self.branch);
        self.git(&["update-ref", &local_ref, &commit], None, &[])
            .await?;
        let spec = format!("{commit}:refs/heads/{}", self.branch);
        self.remote_git(&["push", "--quiet", "--", &self.remote, &spec])
            .await?;
        tracing::info!(%commit, version = manifest.version, branch = %self.branch, "checkpoint archived to git");
        Ok(ArchiveReport {
            commit,
            files,
            version: manifest.version,
        })
    }

    async fn blob(&self, commit: &str, path: &str) -> Result<Vec<u8>, Error> {
        self.git(
            &["cat-file", "blob", &format!("{commit}:{path}")],
            None,
            &[],
        )
        .await
    }

    async fn hash_object(&self, bytes: &[u8]) -> Result<String, Error> {
        let out = self
            .git(
                &["hash-object", "-w", "--no-filters", "--stdin"],
                Some(bytes),
                &[],
            )
            .await?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    }

    /// Restores the newest archived checkpoint into `dir`: fetches the branch, verifies the
    /// signed manifest against `keyring`, writes every file (each hash-checked, written
    /// durably). Returns the manifest, or `None` if the branch does not exist.
    pub async fn restore_latest(
        &self,
        dir: &Path,
        keyring: &Keyring,
    ) -> Result<Option<SignedManifest>, Error> {
        self.ensure_repo().await?;
        let Some(head) = self.fetch_head().await? else {
            return Ok(None);
        };
        let bytes = self.blob(&head, ARCHIVE_MANIFEST).await?;
        let version_hint = 0;
        let manifest =
            SignedManifest::verify(bytes, keyring).map_err(|reason| Error::ManifestRejected {
                version: version_hint,
                reason,
            })?;
        for f in &manifest.files {
            let content = self
                .blob(&head, &format!("{ARCHIVE_STATE_DIR}/{}", f.path))
                .await?;
            let hash = blake3::hash(&content);
            if content.len() as u64 != f.size || *hash.as_bytes() != f.blake3.0 {
                return Err(Error::HashMismatch {
                    path: f.path.to_string(),
                    expected: f.blake3.to_hex(),
                    actual: hash.to_hex().to_string(),
                });
            }
            let dest = f.path.under(dir);
            let parent = dest
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.to_path_buf());
            std::fs::create_dir_all(&parent).map_err(|source| Error::Io {
                path: parent.clone(),
                source,
            })?;
            finn_wal::fs::write_atomic(&dest, &content).map_err(|source| Error::Io {
                path: dest.clone(),
                source,
            })?;
        }
        Ok(Some(manifest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(GitArchive::new("/tmp/x", "-oProxy=evil").is_err());
        let a = GitArchive::new("/tmp/x", "origin").unwrap();
        for bad in ["-b", "a..b", "a b", "a:b", "x.lock", "/a", "a//b", ""] {
            assert!(a.clone().branch(bad).is_err(), "{bad:?}");
        }
        assert!(a.branch("finn/archive-2").is_ok());
    }
}
