//! Errors, one enum per operation.

use std::path::PathBuf;
use std::sync::Arc;

use crate::validate::Issue;

/// Why bytes could not be parsed as an identity document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The bytes are not UTF-8.
    #[error("identity document is not UTF-8 (first invalid byte at offset {valid_up_to})")]
    NotUtf8 {
        /// Length of the longest valid UTF-8 prefix.
        valid_up_to: usize,
    },
}

/// Why [`Loader::load`](crate::Loader::load) did not make the file on disk the active document.
///
/// In every case the previously active document (the last known good) stays active. Cheap to
/// clone (I/O errors are shared), so the same error can go to the caller, an [`Event`](crate::Event)
/// and [`Health`](crate::Health).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file does not exist.
    #[error("identity document not found at {path}")]
    NotFound {
        /// The path that was read.
        path: PathBuf,
    },
    /// Reading the file failed.
    #[error("cannot read identity document {path}")]
    Io {
        /// The path that was read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The file is larger than [`Options::max_len`](crate::Options::max_len).
    #[error("identity document {path} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The path that was read.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The configured limit.
        max: u64,
    },
    /// The file is not UTF-8.
    #[error("identity document {path} cannot be parsed")]
    Parse {
        /// The path that was read.
        path: PathBuf,
        /// What is wrong with the bytes.
        #[source]
        source: ParseError,
    },
    /// The document parsed but the [`ValidationPolicy`](crate::ValidationPolicy) rejects it.
    #[error(
        "identity document {path} was rejected: {}",
        crate::validate::issue_list(issues)
    )]
    Rejected {
        /// The path that was read.
        path: PathBuf,
        /// Every issue found, including those the policy tolerates.
        issues: Vec<Issue>,
    },
}

/// Why a change-log entry could not be written to `NOTES.md`.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeLogError {
    /// An I/O error, with the path it happened on.
    #[error("cannot write identity change log {path}")]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The notes file is not UTF-8, so it cannot be edited without risking its content.
    #[error("notes file {path} is not UTF-8; it is left untouched")]
    NotUtf8 {
        /// The notes file.
        path: PathBuf,
    },
    /// Another writer kept changing the notes file while the entry was being written.
    #[error(
        "notes file {path} changed under the writer {attempts} times in a row; entry not written"
    )]
    Contended {
        /// The notes file.
        path: PathBuf,
        /// How many times the write was attempted.
        attempts: u32,
    },
}

/// Why [`Loader::watch`](crate::Loader::watch) could not start, or why a running watch reported
/// trouble.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The identity path has no parent directory or file name to watch.
    #[error("identity path {path} has no parent directory and file name to watch")]
    BadPath {
        /// The configured identity path.
        path: PathBuf,
    },
    /// Neither native events nor polling could watch the directory.
    #[error("cannot watch directory {dir}")]
    Notify {
        /// The directory that was to be watched.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<notify::Error>,
    },
    /// The watched directory itself was removed; no further changes are seen until
    /// [`Loader::watch`](crate::Loader::watch) is called again.
    #[error("watched directory {dir} was removed; call watch again once it exists")]
    DirectoryRemoved {
        /// The directory that was watched.
        dir: PathBuf,
    },
}
