//! The error of a cascade run.

use std::path::PathBuf;

use serde::Serialize;

use crate::loop_guard::JournalError;
use crate::report::{DegradedReason, RecoveryReport};
use crate::stage::StageError;

/// One source that could not provide a state, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceFailure {
    /// The source.
    pub source: String,
    /// Why (the last candidate's reason, or the availability failure).
    pub reason: String,
}

/// Why [`Cascade::run`](crate::Cascade::run) did not bring the process up. Variants that end a
/// run in [`State::Failed`](crate::State::Failed) carry the report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CascadeError {
    /// No local state, and no source (template included) produced a state that verified.
    #[error("no source could provide a verified state ({} failed); see the report's warnings", failures.len())]
    AllSourcesFailed {
        /// Every source tried, in order.
        failures: Vec<SourceFailure>,
        /// The report of the run.
        report: Box<RecoveryReport>,
    },
    /// Strict mode refused to come up degraded.
    #[error(
        "strict mode refuses to come up degraded ({reason:?}); rerun in degraded mode to accept it"
    )]
    StrictRefused {
        /// What would have made the start degraded.
        reason: DegradedReason,
        /// The report of the run.
        report: Box<RecoveryReport>,
    },
    /// Another process (or task) is running a cascade on this data directory.
    #[error("recovery directory {path} is locked by another cascade; wait for it to finish")]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// An I/O error on the data directory.
    #[error("i/o error on {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Staging, swapping or repairing an interrupted swap failed.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// The boot journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The local WAL could not be opened, read or appended to (e.g. it is locked by a running
    /// process, which also means this process must not restore anything).
    #[error("local WAL: {0}")]
    Wal(#[from] finn_wal::Error),
}

impl CascadeError {
    /// The run's report, for the variants that end a completed run.
    pub fn report(&self) -> Option<&RecoveryReport> {
        match self {
            CascadeError::AllSourcesFailed { report, .. }
            | CascadeError::StrictRefused { report, .. } => Some(report),
            _ => None,
        }
    }
}
