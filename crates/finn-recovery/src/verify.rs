//! Verification of a staged state before it may become the state directory, and the
//! [`Validator`]s that the crates owning the files supply.
//!
//! A staged tree passes only if it is *exactly* the candidate's file list: every listed file is
//! present as a regular file with the listed size and blake3, nothing else is there (no extra
//! file, no symlink, no device, no fifo), and every file with a registered validator passes it.
//! The anchors verified git checksums against the live directory instead of what was restored,
//! and their template step wrote identities that did not even parse; both are impossible here.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use finn_checkpoint::CheckpointPath;

/// A file a candidate state must contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedFile {
    /// Its path in the state directory.
    pub path: CheckpointPath,
    /// Its length in bytes.
    pub size: u64,
    /// BLAKE3 of its content.
    pub blake3: [u8; 32],
}

impl ExpectedFile {
    /// The entry describing `bytes` at `path`.
    pub fn of(path: CheckpointPath, bytes: &[u8]) -> Self {
        Self {
            path,
            size: bytes.len() as u64,
            blake3: *blake3::hash(bytes).as_bytes(),
        }
    }
}

/// The reason a validator gave for refusing a file.
pub type ValidationError = Box<dyn std::error::Error + Send + Sync>;

/// Checks that a file's content is acceptable to the code that will read it (an identity
/// document parses, a JSONL file has valid lines, ...). Registered per path in [`Validators`].
///
/// Closures `Fn(&[u8]) -> Result<(), E>` are validators:
///
/// ```
/// use finn_recovery::Validators;
/// let validators = Validators::new()
///     .file("config.json", |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).map(drop))
///     .prefix("notes/", |bytes: &[u8]| std::str::from_utf8(bytes).map(drop));
/// # let _ = validators;
/// ```
pub trait Validator: Send + Sync {
    /// Returns an error naming what is wrong with `bytes`, the content of `path`.
    fn validate(&self, path: &CheckpointPath, bytes: &[u8]) -> Result<(), ValidationError>;
}

impl<F, E> Validator for F
where
    F: Fn(&[u8]) -> Result<(), E> + Send + Sync,
    E: Into<ValidationError>,
{
    fn validate(&self, _path: &CheckpointPath, bytes: &[u8]) -> Result<(), ValidationError> {
        self(bytes).map_err(Into::into)
    }
}

#[derive(Clone)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Exact(p) => p == path,
            Pattern::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// Validators by path. A file may match several; all must pass. Files matching none are checked
/// for integrity only. Paths named with [`Validators::require`] must be present in every state
/// that is brought up.
#[derive(Clone, Default)]
pub struct Validators {
    entries: Vec<(Pattern, Arc<dyn Validator>)>,
    required: Vec<String>,
}

impl fmt::Debug for Validators {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validators")
            .field("validators", &self.entries.len())
            .field("required", &self.required)
            .finish()
    }
}

impl Validators {
    /// No validators.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the file at exactly `path`.
    pub fn file(mut self, path: impl Into<String>, validator: impl Validator + 'static) -> Self {
        self.entries
            .push((Pattern::Exact(path.into()), Arc::new(validator)));
        self
    }

    /// Validates every file whose path starts with `prefix` (e.g. `"beads/"`).
    pub fn prefix(
        mut self,
        prefix: impl Into<String>,
        validator: impl Validator + 'static,
    ) -> Self {
        self.entries
            .push((Pattern::Prefix(prefix.into()), Arc::new(validator)));
        self
    }

    /// Requires `path` to exist in any state that is brought up.
    pub fn require(mut self, path: impl Into<String>) -> Self {
        self.required.push(path.into());
        self
    }

    /// Whether no validator is registered and no file required.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.required.is_empty()
    }

    fn for_path<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Arc<dyn Validator>> + 'a {
        self.entries
            .iter()
            .filter(move |(p, _)| p.matches(path))
            .map(|(_, v)| v)
    }

    /// Runs the validators of `path` on `bytes`.
    pub fn check(&self, path: &CheckpointPath, bytes: &[u8]) -> Result<(), VerifyError> {
        for validator in self.for_path(path.as_str()) {
            validator
                .validate(path, bytes)
                .map_err(|e| VerifyError::Invalid {
                    path: path.to_string(),
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }

    fn has_validator(&self, path: &str) -> bool {
        self.for_path(path).next().is_some()
    }
}

/// Why a staged (or local) state was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A listed file is missing.
    #[error("{path} is missing")]
    Missing {
        /// The file.
        path: String,
    },
    /// A file's content does not hash to the listed blake3.
    #[error("{path} does not match its hash (expected {expected}, found {actual})")]
    HashMismatch {
        /// The file.
        path: String,
        /// The listed hash, hex.
        expected: String,
        /// The computed hash, hex.
        actual: String,
    },
    /// A file's size differs from the listed size.
    #[error("{path} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The file.
        path: String,
        /// The listed size.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// A symlink is in the tree.
    #[error("{path} is a symlink; states may not contain symlinks")]
    Symlink {
        /// Its path, relative to the tree.
        path: PathBuf,
    },
    /// Something that is neither a regular file nor a directory is in the tree.
    #[error("{path} is not a regular file or directory")]
    SpecialFile {
        /// Its path, relative to the tree.
        path: PathBuf,
    },
    /// A file is in the tree but not in the candidate's list.
    #[error("{path} is not listed by the candidate")]
    Unexpected {
        /// Its path, relative to the tree.
        path: PathBuf,
    },
    /// A validator refused a file.
    #[error("{path} failed validation: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// The validator's message.
        reason: String,
    },
    /// A file required by [`Validators::require`] is not in the state.
    #[error("required file {path} is missing")]
    RequiredMissing {
        /// The file.
        path: String,
    },
    /// Reading the tree failed.
    #[error("verification i/o error on {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What a verification covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Verified {
    pub files: usize,
    pub bytes: u64,
}

/// Verifies that `dir` holds exactly `expected` (see the [module docs](self)).
pub(crate) fn verify_tree(
    dir: &Path,
    expected: &[ExpectedFile],
    validators: &Validators,
) -> Result<Verified, VerifyError> {
    let listed: BTreeMap<&str, &ExpectedFile> =
        expected.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut found = Vec::new();
    walk(dir, dir, &mut found)?;
    for rel in &found {
        let key = rel
            .to_str()
            .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"));
        if key.as_deref().is_none_or(|k| !listed.contains_key(k)) {
            return Err(VerifyError::Unexpected { path: rel.clone() });
        }
    }
    for required in &validators.required {
        if !listed.contains_key(required.as_str()) {
            return Err(VerifyError::RequiredMissing {
                path: required.clone(),
            });
        }
    }
    let mut out = Verified::default();
    for file in expected {
        let full = file.path.under(dir);
        let keep_bytes = validators.has_validator(file.path.as_str());
        let (size, hash, bytes) = hash_file(&full, keep_bytes).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                VerifyError::Missing {
                    path: file.path.to_string(),
                }
            } else {
                VerifyError::Io {
                    path: full.clone(),
                    source: e,
                }
            }
        })?;
        if size != file.size {
            return Err(VerifyError::SizeMismatch {
                path: file.path.to_string(),
                expected: file.size,
                actual: size,
            });
        }
        if hash != file.blake3 {
            return Err(VerifyError::HashMismatch {
                path: file.path.to_string(),
                expected: hex(&file.blake3),
                actual: hex(&hash),
            });
        }
        if let Some(bytes) = bytes {
            validators.check(&file.path, &bytes)?;
        }
        out.files += 1;
        out.bytes += size;
    }
    Ok(out)
}

/// Checks a live state directory that has no file list (the local state): no symlinks or
/// special files, and every file with a validator passes it. Returns the files seen.
pub(crate) fn check_local_tree(
    dir: &Path,
    validators: &Validators,
) -> Result<Verified, VerifyError> {
    let mut found = Vec::new();
    walk(dir, dir, &mut found)?;
    let mut out = Verified::default();
    let mut present = Vec::new();
    for rel in &found {
        let Some(key) = rel
            .to_str()
            .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
        else {
            return Err(VerifyError::Unexpected { path: rel.clone() });
        };
        let full = dir.join(rel);
        if validators.has_validator(&key) {
            let path = CheckpointPath::new(key.clone())
                .map_err(|_| VerifyError::Unexpected { path: rel.clone() })?;
            let (_, _, bytes) = hash_file(&full, true).map_err(|e| VerifyError::Io {
                path: full.clone(),
                source: e,
            })?;
            validators.check(&path, bytes.as_deref().unwrap_or_default())?;
        }
        let len = fs::symlink_metadata(&full)
            .map_err(|e| VerifyError::Io {
                path: full.clone(),
                source: e,
            })?
            .len();
        out.files += 1;
        out.bytes += len;
        present.push(key);
    }
    for required in &validators.required {
        if !present.contains(required) {
            return Err(VerifyError::RequiredMissing {
                path: required.clone(),
            });
        }
    }
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), VerifyError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| VerifyError::Io { path, source }
    };
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_owned();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_symlink() {
            return Err(VerifyError::Symlink { path: rel });
        } else if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            out.push(rel);
        } else {
            return Err(VerifyError::SpecialFile { path: rel });
        }
    }
    Ok(())
}

/// Size and blake3 of a regular file, opened without following a symlink; with its bytes when
/// `keep` (for validators).
fn hash_file(path: &Path, keep: bool) -> io::Result<(u64, [u8; 32], Option<Vec<u8>>)> {
    let mut file = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut hasher = blake3::Hasher::new();
    let mut kept = keep.then(Vec::new);
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        if let Some(k) = kept.as_mut() {
            k.extend_from_slice(chunk);
        }
        size += n as u64;
    }
    Ok((size, *hasher.finalize().as_bytes(), kept))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CheckpointPath {
        CheckpointPath::new(s).unwrap()
    }

    fn tree(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Vec<ExpectedFile>) {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        for (path, bytes) in files {
            let full = dir.path().join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(&full, bytes).unwrap();
            expected.push(ExpectedFile::of(p(path), bytes));
        }
        (dir, expected)
    }

    #[test]
    fn exact_tree_verifies() {
        let (dir, expected) = tree(&[("a", b"1"), ("d/b", b"22")]);
        let v = verify_tree(dir.path(), &expected, &Validators::new()).unwrap();
        assert_eq!(v, Verified { files: 2, bytes: 3 });
    }

    #[test]
    fn modified_missing_extra_symlink_are_refused() {
        let (dir, expected) = tree(&[("a", b"1"), ("d/b", b"22")]);
        fs::write(dir.path().join("d/b"), b"2X").unwrap();
        assert!(matches!(
            verify_tree(dir.path(), &expected, &Validators::new()),
            Err(VerifyError::HashMismatch { .. })
        ));
        fs::write(dir.path().join("d/b"), b"22").unwrap();
        fs::write(dir.path().join("extra"), b"").unwrap();
        assert!(matches!(
            verify_tree(dir.path(), &expected, &Validators::new()),
            Err(VerifyError::Unexpected { .. })
        ));
        fs::remove_file(dir.path().join("extra")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("d/link")).unwrap();
        assert!(matches!(
            verify_tree(dir.path(), &expected, &Validators::new()),
            Err(VerifyError::Symlink { .. })
        ));
        fs::remove_file(dir.path().join("d/link")).unwrap();
        fs::remove_file(dir.path().join("a")).unwrap();
        assert!(matches!(
            verify_tree(dir.path(), &expected, &Validators::new()),
            Err(VerifyError::Missing { .. })
        ));
    }

    #[test]
    fn a_listed_file_replaced_by_a_symlink_is_refused() {
        let (dir, expected) = tree(&[("a", b"1")]);
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("a"), b"1").unwrap();
        fs::remove_file(dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("a"), dir.path().join("a")).unwrap();
        assert!(matches!(
            verify_tree(dir.path(), &expected, &Validators::new()),
            Err(VerifyError::Symlink { .. })
        ));
    }

    #[test]
    fn validators_run_and_required_files_are_enforced() {
        let (dir, expected) = tree(&[("cfg.json", b"{\"a\":1}"), ("notes/x", b"\xff")]);
        let ok = Validators::new().file("cfg.json", |b: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(b).map(drop)
        });
        verify_tree(dir.path(), &expected, &ok).unwrap();
        let utf8 = ok
            .clone()
            .prefix("notes/", |b: &[u8]| std::str::from_utf8(b).map(drop));
        let err = verify_tree(dir.path(), &expected, &utf8).unwrap_err();
        assert!(
            matches!(&err, VerifyError::Invalid { path, .. } if path == "notes/x"),
            "{err}"
        );
        let req = Validators::new().require("identity.md");
        assert!(matches!(
            verify_tree(dir.path(), &expected, &req),
            Err(VerifyError::RequiredMissing { .. })
        ));
        assert!(matches!(
            check_local_tree(dir.path(), &utf8),
            Err(VerifyError::Invalid { .. })
        ));
    }
}
