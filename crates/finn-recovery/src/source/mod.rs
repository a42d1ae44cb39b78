//! The [`RecoverySource`] trait and the sources finn ships: object store, git archive, template.

use std::fmt;

use async_trait::async_trait;
use finn_checkpoint::LineageId;
use finn_wal::{Lsn, Record};
use serde::{Deserialize, Serialize};

use crate::report::ManifestInfo;
use crate::stage::{StageError, Staging};
use crate::verify::ExpectedFile;

pub mod git;
pub mod object_store;
pub mod template;

/// The tier a source belongs to; it decides the cascade state that runs it and its order:
/// object stores first, then git archives, then templates. Within a tier, sources run in the
/// order they were added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A remote with signed manifests and shipped WAL ([`State::RestoreObjectStore`](crate::State::RestoreObjectStore)).
    ObjectStore,
    /// A git archive branch ([`State::RestoreGit`](crate::State::RestoreGit)).
    Git,
    /// A default state ([`State::RestoreTemplate`](crate::State::RestoreTemplate)); the process
    /// comes up degraded from it.
    Template,
}

impl SourceKind {
    /// Whether the source is remote (skipped when a boot loop is detected, bounded by the overall
    /// deadline).
    pub const fn is_remote(self) -> bool {
        !matches!(self, SourceKind::Template)
    }
}

/// One state a source could restore, e.g. one manifest version. Sources list them best first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Version (manifest version, or a position such as a commit's depth from the tip).
    pub version: u64,
    /// A label for reports: an object key, a commit id, a template name.
    pub label: String,
}

/// What a source staged for a candidate: the exact file list the staged tree must match, and
/// where the state came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staged {
    /// Every file the staged tree must contain, with size and blake3, and nothing else.
    pub files: Vec<ExpectedFile>,
    /// The manifest the files came from (its LSN is where WAL replay starts).
    pub manifest: ManifestInfo,
}

/// The newest verified history a source holds, as reported by [`RecoverySource::head`]: what a
/// kept local state is compared with at CHECK_INTEGRITY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RemoteHead {
    /// Lineage of the newest manifest that verifies (or, with no verified manifest, of the
    /// newest accepted shipped WAL).
    pub lineage: LineageId,
    /// That manifest's version (0 when there is none).
    pub version: u64,
    /// The LSN that manifest covers (`Lsn::ZERO` when there is none).
    pub manifest_lsn: Lsn,
    /// Highest LSN shipped for `lineage`.
    pub shipped_lsn: Lsn,
}

impl RemoteHead {
    /// The highest LSN the source holds for its lineage: the manifest's or the shipped WAL's.
    pub fn high_water(&self) -> Lsn {
        self.manifest_lsn.max(self.shipped_lsn)
    }
}

/// Shipped WAL records of one lineage, as read by [`RecoverySource::wal_of`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShippedWal {
    /// Verified records, in LSN order, following the chain of shipped batches (each names the
    /// LSN it follows): LSNs may jump where the lineage's history does (a fork continues above
    /// its prefix's high-water mark), but no record of the chain is left out before `gap`.
    pub records: Vec<Record>,
    /// A hole after `records`: the first and last missing LSN. Records shipped beyond the hole
    /// are not in `records` (they cannot be applied without the missing ones).
    pub gap: Option<(Lsn, Lsn)>,
}

/// Why a source (or one of its candidates) could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The source cannot be reached or is not configured.
    #[error("unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The source is reachable but holds nothing to restore.
    #[error("no checkpoint to restore")]
    Empty,
    /// A candidate was refused (bad signature, revoked key, hash mismatch, bad path, ...).
    #[error("candidate refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// Writing into the staging directory failed.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// A finn-checkpoint operation failed.
    #[error(transparent)]
    Checkpoint(#[from] finn_checkpoint::Error),
    /// A git command failed.
    #[error("git {args:?} failed with status {status:?}: {stderr}")]
    Git {
        /// Its arguments.
        args: Vec<String>,
        /// Its exit code, if it exited.
        status: Option<i32>,
        /// The end of its standard error.
        stderr: String,
    },
    /// Any other error, for custom sources.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// A place a base state can be restored from.
///
/// The cascade drives a source in three steps, each under a timeout that *cancels* it (the
/// future is dropped): [`check_available`](RecoverySource::check_available),
/// [`candidates`](RecoverySource::candidates), then [`stage`](RecoverySource::stage) for each
/// candidate, best first, until one stages and verifies. A source never touches the state
/// directory: it fills a [`Staging`] directory and says what must be in it; the cascade verifies
/// and swaps.
///
/// Sources that ship WAL records implement [`wal_after`](RecoverySource::wal_after), so the
/// state restored is the latest acknowledged one and not only the last checkpoint.
#[async_trait]
pub trait RecoverySource: Send + Sync + fmt::Debug {
    /// A short name for reports and events (`object-store`, `git`, `template`, ...).
    fn name(&self) -> &str;

    /// The tier.
    fn kind(&self) -> SourceKind;

    /// Whether the source can be used now. Must be cheap; runs under the availability timeout.
    async fn check_available(&self) -> Result<(), SourceError>;

    /// Candidate states, best (newest) first.
    async fn candidates(&self) -> Result<Vec<Candidate>, SourceError>;

    /// Writes `candidate` into `staging` and returns its file list. An error skips to the next
    /// candidate (and is reported with the reason).
    async fn stage(
        &self,
        candidate: &Candidate,
        staging: &mut Staging,
    ) -> Result<Staged, SourceError>;

    /// Records with LSN greater than `after`, in order, as shipped by the writer; `Ok(None)` if
    /// this source does not hold WAL. Records are checked (CRC, signature) by the source, and
    /// so is the chain: a hole is an error, never a shorter or gapped list (LSNs may still jump
    /// where the lineage forked).
    async fn wal_after(&self, after: Lsn) -> Result<Option<Vec<Record>>, SourceError> {
        let _ = after;
        Ok(None)
    }

    /// Records of `lineage` with LSN greater than `after`, verified, in order, up to the first
    /// hole (reported in [`ShippedWal::gap`]); `Ok(None)` if this source does not hold WAL.
    /// The cascade prefers this over [`wal_after`](RecoverySource::wal_after) whenever the
    /// base state's lineage is known, so a base restored from one source (e.g. git) is brought
    /// up to date with the WAL another source (the object store) shipped for the same lineage.
    async fn wal_of(
        &self,
        lineage: LineageId,
        after: Lsn,
    ) -> Result<Option<ShippedWal>, SourceError> {
        let _ = (lineage, after);
        Ok(None)
    }

    /// The newest verified history this source holds, without staging anything (a listing and
    /// a manifest read); `Ok(None)` if the source cannot say (the default) or holds nothing.
    /// Used to decide whether a kept local state is behind the remote or forked from it.
    async fn head(&self) -> Result<Option<RemoteHead>, SourceError> {
        Ok(None)
    }
}
