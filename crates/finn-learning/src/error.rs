//! Errors, one enum per operation.

use std::path::PathBuf;

use finn_wal::Lsn;

use crate::format::FileError;
use crate::record::NewLearning;
use crate::{Evaluation, LearningId, Status};

/// The error returned by [`LearningStore::open`](crate::LearningStore::open).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The WAL could not be opened or read (locked by another process, corrupt, I/O).
    #[error("learning WAL could not be opened or read")]
    Wal(#[from] finn_wal::Error),
    /// A file or directory of the store could not be used.
    #[error("I/O error on {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A learning record in the WAL passed its checksum but is not a learning payload this
    /// version understands (written by a newer finn?). Nothing is skipped silently.
    #[error("WAL record {lsn} is not a readable learning payload; upgrade finn-learning")]
    BadRecord {
        /// The record.
        lsn: Lsn,
        /// Why it did not decode.
        #[source]
        source: serde_json::Error,
    },
    /// The snapshot was damaged (it has been quarantined) and the WAL no longer holds the records
    /// needed to rebuild without it.
    #[error(
        "snapshot was damaged (moved to {quarantined}) and the WAL starts at {first_lsn}; \
         restore the store from a checkpoint"
    )]
    SnapshotDamagedAndWalPruned {
        /// Where the damaged snapshot now is.
        quarantined: PathBuf,
        /// The oldest record the WAL still holds.
        first_lsn: Lsn,
    },
    /// The options are invalid.
    #[error("invalid store options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: &'static str,
    },
}

/// A learning failed the quality gates. Nothing was stored; the candidate is handed back.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRejection {
    /// Every gate's score, threshold, verdict and reasons, and the total.
    pub evaluation: Evaluation,
    /// The learning that was refused.
    pub learning: NewLearning,
}

/// The error returned by [`LearningStore::add`](crate::LearningStore::add).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// The learning did not pass the quality gates; nothing was stored.
    #[error("learning rejected by the quality gates ({})", .0.evaluation)]
    Rejected(Box<GateRejection>),
    /// A field is unusable (too long, a malformed tag).
    #[error("field {field} is invalid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The WAL refused the write; nothing was stored.
    #[error("learning could not be written to the WAL")]
    Wal(#[from] finn_wal::Error),
}

/// The error returned by lifecycle and effectiveness updates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// No learning has this id.
    #[error("no learning with id {id}")]
    NotFound {
        /// The id.
        id: LearningId,
    },
    /// The lifecycle does not allow this change.
    #[error("learning {id} cannot go from {from} to {to}")]
    NotAllowed {
        /// The learning.
        id: LearningId,
        /// Its current status.
        from: Status,
        /// The refused status.
        to: Status,
    },
    /// The WAL refused the write; nothing changed.
    #[error("transition could not be written to the WAL")]
    Wal(#[from] finn_wal::Error),
}

/// The error returned by imports. An import is all or nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A file could not be read.
    #[error("I/O error on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a valid learnings file. Nothing was imported and the file is untouched.
    #[error("{path} is not a valid learnings file")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: FileError,
    },
    /// A learning with this id is already stored with different content.
    #[error("learning {id} already exists with different content")]
    Conflict {
        /// The id.
        id: LearningId,
    },
    /// The WAL refused the write; nothing was imported.
    #[error("import could not be written to the WAL")]
    Wal(#[from] finn_wal::Error),
}

/// The error returned by exports and snapshots.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A file could not be written, read or quarantined.
    #[error("I/O error on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No collection was imported under this name.
    #[error("no imported collection named {name:?}")]
    UnknownCollection {
        /// The name asked for.
        name: String,
    },
}
