//! Paths of files inside a checkpoint.
//!
//! A checkpoint names its files by relative, `/`-separated paths. Every path is validated when a
//! checkpoint is built and again when a manifest is read, so a manifest naming `../../etc/passwd`
//! is rejected before anything is written to disk (the anchors' string-prefix traversal guard let
//! `../grimoires-evil/x` through).

use std::fmt;
use std::path::{Path, PathBuf};

/// Longest accepted path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// A validated path of a file inside a checkpoint: relative, `/`-separated, normalized.
///
/// Rules: not empty; at most [`MAX_PATH_LEN`] bytes; no NUL; no `\`; does not start with `/`;
/// every `/`-separated component is non-empty (no `//`, no trailing `/`) and is neither `.` nor
/// `..`. So the path is already in normal form and joins safely under any directory.
///
/// ```
/// use finn_checkpoint::CheckpointPath;
/// assert!(CheckpointPath::new("state/beads.jsonl").is_ok());
/// assert!(CheckpointPath::new("../escape").is_err());
/// assert!(CheckpointPath::new("/etc/passwd").is_err());
/// assert!(CheckpointPath::new("a/./b").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct CheckpointPath(String);

/// Why a checkpoint path was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathDefect {
    /// The path is empty.
    #[error("path is empty")]
    Empty,
    /// The path is longer than [`MAX_PATH_LEN`] bytes.
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// The path contains a NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// The path contains a backslash (ambiguous between platforms).
    #[error("path contains a backslash")]
    Backslash,
    /// The path starts with `/`.
    #[error("path is absolute")]
    Absolute,
    /// The path has an empty component (`a//b` or a trailing `/`).
    #[error("path has an empty component")]
    EmptyComponent,
    /// The path has a `.` component.
    #[error("path has a `.` component")]
    CurrentDir,
    /// The path has a `..` component.
    #[error("path has a `..` component")]
    ParentDir,
    /// A local path was not valid UTF-8.
    #[error("path is not valid UTF-8")]
    NotUtf8,
}

impl CheckpointPath {
    /// Validates `path`.
    pub fn new(path: impl Into<String>) -> Result<Self, PathDefect> {
        let path = path.into();
        validate(&path)?;
        Ok(Self(path))
    }

    /// Builds the checkpoint path of `file` relative to `root` (both local paths), converting
    /// platform separators to `/`.
    pub fn from_relative(root: &Path, file: &Path) -> Result<Self, PathDefect> {
        let rel = file.strip_prefix(root).map_err(|_| PathDefect::ParentDir)?;
        let mut parts = Vec::new();
        for component in rel.components() {
            match component {
                std::path::Component::Normal(part) => {
                    parts.push(part.to_str().ok_or(PathDefect::NotUtf8)?.to_owned())
                }
                std::path::Component::CurDir => return Err(PathDefect::CurrentDir),
                std::path::Component::ParentDir => return Err(PathDefect::ParentDir),
                std::path::Component::RootDir | std::path::Component::Prefix(_) => {
                    return Err(PathDefect::Absolute);
                }
            }
        }
        Self::new(parts.join("/"))
    }

    /// The path as a `/`-separated string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `dir` joined with this path, component by component.
    pub fn under(&self, dir: &Path) -> PathBuf {
        let mut out = dir.to_path_buf();
        for part in self.0.split('/') {
            out.push(part);
        }
        out
    }
}

fn validate(path: &str) -> Result<(), PathDefect> {
    if path.is_empty() {
        return Err(PathDefect::Empty);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(PathDefect::TooLong);
    }
    if path.contains('\0') {
        return Err(PathDefect::Nul);
    }
    if path.contains('\\') {
        return Err(PathDefect::Backslash);
    }
    if path.starts_with('/') {
        return Err(PathDefect::Absolute);
    }
    for part in path.split('/') {
        match part {
            "" => return Err(PathDefect::EmptyComponent),
            "." => return Err(PathDefect::CurrentDir),
            ".." => return Err(PathDefect::ParentDir),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for CheckpointPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for CheckpointPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for CheckpointPath {
    type Error = PathDefect;
    fn try_from(value: &str) -> Result<Self, PathDefect> {
        Self::new(value)
    }
}

impl TryFrom<String> for CheckpointPath {
    type Error = PathDefect;
    fn try_from(value: String) -> Result<Self, PathDefect> {
        Self::new(value)
    }
}

impl<'de> serde::Deserialize<'de> for CheckpointPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_relative_paths() {
        for ok in [
            "a",
            "a/b",
            "state/beads.jsonl",
            ".hidden",
            "a/..b",
            "a/b..",
            "x y/z",
        ] {
            assert!(CheckpointPath::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_every_defect_by_name() {
        let cases = [
            ("", PathDefect::Empty),
            ("a\0b", PathDefect::Nul),
            ("a\\b", PathDefect::Backslash),
            ("/a", PathDefect::Absolute),
            ("a//b", PathDefect::EmptyComponent),
            ("a/", PathDefect::EmptyComponent),
            ("./a", PathDefect::CurrentDir),
            ("a/./b", PathDefect::CurrentDir),
            ("..", PathDefect::ParentDir),
            ("a/../b", PathDefect::ParentDir),
            ("../grimoires-evil/x", PathDefect::ParentDir),
        ];
        for (path, defect) in cases {
            assert_eq!(CheckpointPath::new(path), Err(defect), "{path:?}");
        }
        assert_eq!(
            CheckpointPath::new("a".repeat(MAX_PATH_LEN + 1)),
            Err(PathDefect::TooLong)
        );
    }

    #[test]
    fn under_joins_component_wise() {
        let p = CheckpointPath::new("a/b/c.txt").unwrap();
        assert_eq!(
            p.under(Path::new("/tmp/x")),
            PathBuf::from("/tmp/x/a/b/c.txt")
        );
    }

    #[test]
    fn from_relative_builds_slash_paths() {
        let root = Path::new("/data/state");
        let p = CheckpointPath::from_relative(root, Path::new("/data/state/x/y.json")).unwrap();
        assert_eq!(p.as_str(), "x/y.json");
        assert!(CheckpointPath::from_relative(root, Path::new("/data/other")).is_err());
    }
}
