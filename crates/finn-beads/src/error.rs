//! The crate's error type.

use std::path::PathBuf;

use crate::jsonl::LineError;
use crate::state::ApplyError;
use crate::validate::ValidationError;

/// Everything a store operation can fail with. Validation failures write nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input was rejected; nothing was written.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The WAL failed (I/O, lock, corruption, disk pressure, ...).
    #[error("beads WAL error")]
    Wal(#[from] finn_wal::Error),
    /// A WAL record or snapshot could not be folded into the state.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// An I/O error outside the WAL (lock file, import, export).
    #[error("I/O error on {path}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the store in exclusive mode.
    #[error(
        "beads store lock {path} is held by another process; stop it or open with Sharing::MultiProcess in every process"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// An import file line could not be read.
    #[error("cannot import {path}")]
    Import {
        /// The file.
        path: PathBuf,
        /// The failing line.
        #[source]
        source: LineError,
    },
    /// An imported record has an id that cannot be stored.
    #[error("line {line} of the import is rejected")]
    ImportRecord {
        /// 1-based line number.
        line: u64,
        /// Why.
        #[source]
        source: ValidationError,
    },
    /// The claim is no longer held: the lease expired and the bead was released or re-claimed.
    #[error("claim {claim_id} on bead {id} is no longer held")]
    LeaseLost {
        /// The bead.
        id: String,
        /// The lost claim.
        claim_id: String,
    },
    /// A payload could not be encoded (never expected; the model only has string keys).
    #[error("cannot encode a bead payload")]
    Encode(#[source] serde_json::Error),
}
