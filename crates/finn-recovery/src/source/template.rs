//! The template source: a bundled or configured default state, the last tier.
//!
//! A template is only used if it passes the same verification as any restored state, including
//! the [`Validators`](crate::Validators) of the crates that own its files (the anchors shipped
//! template identities that did not parse). It never overwrites anything in place: it is staged
//! and swapped like any other source, and the previous state directory is kept aside.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use finn_checkpoint::CheckpointPath;
use finn_wal::Lsn;

use crate::report::ManifestInfo;
use crate::source::{Candidate, RecoverySource, SourceError, SourceKind, Staged};
use crate::stage::Staging;
use crate::verify::ExpectedFile;

#[derive(Clone, Debug)]
enum Origin {
    Bundled(BTreeMap<CheckpointPath, Vec<u8>>),
    Dir(PathBuf),
}

/// A default state: files given in memory (bundled with the binary, e.g. `include_bytes!`) or
/// read from a configured directory at restore time.
///
/// ```
/// use finn_recovery::TemplateSource;
/// let template = TemplateSource::bundled("default")
///     .with_file("identity/BEAUVOIR.md", b"# Beauvoir\n".to_vec())?
///     .with_file("NOTES.md", b"# NOTES.md\n\n## Learnings\n\n## Blockers\n".to_vec())?;
/// # let _ = template;
/// # Ok::<(), finn_checkpoint::PathDefect>(())
/// ```
#[derive(Clone, Debug)]
pub struct TemplateSource {
    name: String,
    origin: Origin,
}

impl TemplateSource {
    /// An empty in-memory template; add files with [`TemplateSource::with_file`].
    pub fn bundled(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            origin: Origin::Bundled(BTreeMap::new()),
        }
    }

    /// A template read from `dir` (every regular file under it; symlinks refuse the template).
    pub fn from_dir(name: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            origin: Origin::Dir(dir.into()),
        }
    }

    /// Adds a file to an in-memory template (replacing one at the same path). On a directory
    /// template this turns it into an in-memory one holding only the added files.
    pub fn with_file(
        mut self,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<Self, finn_checkpoint::PathDefect> {
        let path = CheckpointPath::new(path)?;
        match &mut self.origin {
            Origin::Bundled(files) => {
                files.insert(path, bytes);
            }
            Origin::Dir(_) => {
                let mut files = BTreeMap::new();
                files.insert(path, bytes);
                self.origin = Origin::Bundled(files);
            }
        }
        Ok(self)
    }

    fn load(&self) -> Result<BTreeMap<CheckpointPath, Vec<u8>>, SourceError> {
        match &self.origin {
            Origin::Bundled(files) => Ok(files.clone()),
            Origin::Dir(dir) => {
                let mut out = BTreeMap::new();
                read_dir_files(dir, dir, &mut out)?;
                Ok(out)
            }
        }
    }
}

fn read_dir_files(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<CheckpointPath, Vec<u8>>,
) -> Result<(), SourceError> {
    let unavailable = |e: std::io::Error| SourceError::Unavailable {
        reason: format!("template directory {}: {e}", dir.display()),
    };
    for entry in std::fs::read_dir(dir).map_err(unavailable)? {
        let entry = entry.map_err(unavailable)?;
        let path = entry.path();
        let kind = entry.file_type().map_err(unavailable)?;
        if kind.is_dir() {
            read_dir_files(root, &path, out)?;
        } else if kind.is_file() {
            let rel =
                CheckpointPath::from_relative(root, &path).map_err(|d| SourceError::Refused {
                    reason: format!("template file {}: {d}", path.display()),
                })?;
            let bytes = std::fs::read(&path).map_err(unavailable)?;
            out.insert(rel, bytes);
        } else {
            return Err(SourceError::Refused {
                reason: format!(
                    "template {} contains a symlink or special file",
                    path.display()
                ),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl RecoverySource for TemplateSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> SourceKind {
        SourceKind::Template
    }

    async fn check_available(&self) -> Result<(), SourceError> {
        match &self.origin {
            Origin::Bundled(files) if files.is_empty() => Err(SourceError::Empty),
            Origin::Bundled(_) => Ok(()),
            Origin::Dir(dir) if dir.is_dir() => Ok(()),
            Origin::Dir(dir) => Err(SourceError::Unavailable {
                reason: format!("template directory {} does not exist", dir.display()),
            }),
        }
    }

    async fn candidates(&self) -> Result<Vec<Candidate>, SourceError> {
        Ok(vec![Candidate {
            version: 0,
            label: self.name.clone(),
        }])
    }

    async fn stage(
        &self,
        candidate: &Candidate,
        staging: &mut Staging,
    ) -> Result<Staged, SourceError> {
        let files = self.load()?;
        if files.is_empty() {
            return Err(SourceError::Empty);
        }
        let mut expected = Vec::with_capacity(files.len());
        for (path, bytes) in &files {
            staging.write(path, bytes)?;
            expected.push(ExpectedFile::of(path.clone(), bytes));
        }
        Ok(Staged {
            files: expected,
            manifest: ManifestInfo {
                version: candidate.version,
                lsn: Lsn::ZERO,
                key_id: None,
                label: candidate.label.clone(),
                lineage: None,
            },
        })
    }
}
