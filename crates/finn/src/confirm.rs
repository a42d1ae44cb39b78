//! The durable "confirmed" marker: how far the WAL is covered by a verified checkpoint and by
//! shipped WAL batches. Pruning never goes past the lower of the two.
//!
//! Stored as `<data_dir>/confirmed.json` (outside `state/`, which checkpoints cover and recovery replaces), replaced atomically (temp, fdatasync, rename,
//! directory fsync) after every confirmed checkpoint or shipment.

use std::path::{Path, PathBuf};

use finn_wal::Lsn;
use serde::{Deserialize, Serialize};

/// File name of the marker inside the state directory.
pub const CONFIRMED_FILE: &str = "confirmed.json";

/// How far the WAL is safely stored elsewhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Confirmed {
    /// Highest LSN covered by a checkpoint whose manifest was published.
    pub checkpointed_lsn: Lsn,
    /// Highest LSN shipped to the object store (every record up to it is there).
    pub shipped_lsn: Lsn,
}

/// Why the marker could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfirmedError {
    /// Reading or writing the file failed.
    #[error("I/O error on {path}")]
    Io {
        /// The marker file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid marker; it is never guessed at, so pruning stays off.
    #[error(
        "confirmation marker {path} is malformed; delete it to disable pruning until the next checkpoint"
    )]
    Malformed {
        /// The marker file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

impl Confirmed {
    /// The marker path for a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(CONFIRMED_FILE)
    }

    /// Reads the marker; a missing file means nothing is confirmed.
    pub fn load(data_dir: &Path) -> Result<Self, ConfirmedError> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| ConfirmedError::Malformed { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfirmedError::Io { path, source }),
        }
    }

    /// Replaces the marker durably.
    pub fn store(&self, data_dir: &Path) -> Result<(), ConfirmedError> {
        let path = Self::path(data_dir);
        let io = |source| ConfirmedError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Serialising two integers cannot fail.
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        finn_wal::fs::write_atomic(&path, &bytes).map_err(io)
    }

    /// The highest LSN that may be pruned: stored both in a checkpoint and as shipped WAL.
    pub fn safe_to_prune(&self) -> Lsn {
        self.checkpointed_lsn.min(self.shipped_lsn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_marker_confirms_nothing_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Confirmed::load(dir.path()).unwrap().safe_to_prune(),
            Lsn::ZERO
        );
        let c = Confirmed {
            checkpointed_lsn: Lsn::new(10),
            shipped_lsn: Lsn::new(7),
        };
        c.store(dir.path()).unwrap();
        let back = Confirmed::load(dir.path()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.safe_to_prune(), Lsn::new(7));
    }

    #[test]
    fn malformed_marker_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();

        std::fs::write(
            Confirmed::path(dir.path()),
            b"{\"checkpointed_lsn\": \"x\"}",
        )
        .unwrap();
        assert!(matches!(
            Confirmed::load(dir.path()),
            Err(ConfirmedError::Malformed { .. })
        ));
    }
}
