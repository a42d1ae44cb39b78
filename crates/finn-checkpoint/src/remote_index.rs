//! A local index of what the remote holds and what of it was verified, kept between runs.
//!
//! Verification that re-downloads a whole bucket every hour costs more than the storage it
//! protects. The index remembers every object whose content was downloaded and hash-checked,
//! every shipped WAL object whose signature and records were checked (with the facts a
//! contiguity check needs: its `prev` and its record times), and every manifest that verified.
//! [`Reader::validate`](crate::Reader::validate) then downloads only what is new plus a random
//! sample of what is known, and [`Checkpointer::retention`](crate::Checkpointer::retention)
//! orders by recorded time without downloading anything twice.
//!
//! The index is a cache, never an authority: a validation lists the prefix (the one place a
//! LIST is spent on purpose) and trusts nothing the listing does not show; a lost or foreign
//! index only makes the next validation a full one.
//!
//! Stored as JSON, written atomically (temp file, fdatasync, rename, directory fsync).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Lsn;
use crate::error::Error;
use crate::remote::Remote;

/// Format version of the index file.
pub const REMOTE_INDEX_FORMAT: u32 = 1;

/// What is known about one shipped WAL object that verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchFacts {
    /// Stored size when it verified (a different size means a different object: check again).
    pub size: u64,
    /// The last LSN its lineage had shipped before it (from its signed header).
    pub prev: Lsn,
    /// Timestamp of its first record (ms since the Unix epoch).
    pub first_time_ms: u64,
    /// Timestamp of its last record.
    pub last_time_ms: u64,
}

/// What is known about one manifest that verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFacts {
    /// BLAKE3 of the stored manifest (hex).
    pub hash: String,
    /// When it was created (signed; ms since the Unix epoch).
    pub created_at_ms: u64,
    /// The WAL LSN it covers.
    pub covered_lsn: Lsn,
    /// Its lineage (ULID text).
    pub lineage: String,
    /// Sum of the stored sizes of the objects it names.
    pub stored_bytes: u64,
}

/// Summary of the last validation, kept for `finn status` and the health report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationSummary {
    /// When it finished (ms since the Unix epoch).
    pub at_ms: u64,
    /// Whether it found nothing wrong.
    pub ok: bool,
    /// How many findings it had.
    pub findings: usize,
    /// Newest manifest version that verified.
    pub newest_version: Option<u64>,
    /// Highest LSN restorable from the remote alone (newest checkpoint plus contiguous WAL).
    pub restorable_lsn: Lsn,
    /// Time of the newest restorable record (or of the newest checkpoint when no WAL follows).
    pub restorable_as_of_ms: Option<u64>,
}

/// The local index of a remote; see the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RemoteIndex {
    /// [`REMOTE_INDEX_FORMAT`].
    pub format: u32,
    /// The remote it describes (store and prefix); an index of another remote is ignored.
    pub remote: String,
    /// Objects whose content verified (size and BLAKE3), by key relative to the prefix, with
    /// their stored size.
    pub verified_objects: BTreeMap<String, u64>,
    /// Shipped WAL objects that verified, by key relative to the prefix.
    pub verified_batches: BTreeMap<String, BatchFacts>,
    /// Manifests that verified, by version.
    pub manifests: BTreeMap<u64, ManifestFacts>,
    /// When the prefix was last listed (ms since the Unix epoch).
    pub last_listed_ms: Option<u64>,
    /// The last validation's outcome.
    pub last_validation: Option<ValidationSummary>,
}

/// A stable name of a remote (store and prefix) for [`RemoteIndex::remote`].
pub(crate) fn remote_name(remote: &Remote) -> String {
    format!("{}/{}", remote.store(), remote.prefix())
}

impl RemoteIndex {
    /// An empty index of `remote`.
    pub fn for_remote(remote: &Remote) -> Self {
        Self {
            format: REMOTE_INDEX_FORMAT,
            remote: remote_name(remote),
            ..Self::default()
        }
    }

    /// Loads the index of `remote` from `path`. A missing, unreadable, foreign or newer-format
    /// file gives an empty index (the next validation is then a full one), logged.
    pub fn load_or_new(path: &Path, remote: &Remote) -> Self {
        let fresh = Self::for_remote(remote);
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return fresh,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "remote index unreadable; starting over");
                return fresh;
            }
        };
        match serde_json::from_slice::<RemoteIndex>(&bytes) {
            Ok(index) if index.format == REMOTE_INDEX_FORMAT && index.remote == fresh.remote => {
                index
            }
            Ok(_) => {
                tracing::info!(path = %path.display(), "remote index is of another remote or format; starting over");
                fresh
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "remote index is damaged; starting over");
                fresh
            }
        }
    }

    /// Writes the index to `path` atomically (parent directories are created).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        finn_wal::fs::write_atomic(path, &bytes).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_foreign_index_ignored() {
        let a = Remote::from_url(
            "memory:///a",
            &crate::StoreOptions::default(),
            crate::RemoteOptions::default(),
        )
        .unwrap();
        let b = a.child("other");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/index.json");
        let mut index = RemoteIndex::for_remote(&a);
        index.verified_objects.insert("objects/ab/ab.raw".into(), 7);
        index.verified_batches.insert(
            "wal/x/1.batch".into(),
            BatchFacts {
                size: 9,
                prev: Lsn::ZERO,
                first_time_ms: 1,
                last_time_ms: 2,
            },
        );
        index.save(&path).unwrap();
        assert_eq!(RemoteIndex::load_or_new(&path, &a), index);
        assert!(
            RemoteIndex::load_or_new(&path, &b)
                .verified_objects
                .is_empty()
        );
        std::fs::write(&path, b"{not json").unwrap();
        assert!(
            RemoteIndex::load_or_new(&path, &a)
                .verified_objects
                .is_empty()
        );
    }
}
