//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::Lsn;

use crate::manifest::{LineageId, ManifestDefect, ManifestRejection};
use crate::path::PathDefect;
use crate::pitr::RestoreTarget;
use crate::sign::KeyError;

/// The kind of remote call that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemoteOp {
    /// A single-request upload.
    Put,
    /// A part or the completion of a multipart upload.
    Multipart,
    /// A download.
    Get,
    /// A metadata request.
    Head,
    /// A listing.
    List,
    /// A deletion.
    Delete,
}

impl std::fmt::Display for RemoteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RemoteOp::Put => "put",
            RemoteOp::Multipart => "multipart upload",
            RemoteOp::Get => "get",
            RemoteOp::Head => "head",
            RemoteOp::List => "list",
            RemoteOp::Delete => "delete",
        })
    }
}

/// Why a remote call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteFailure {
    /// The store answered with an error.
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// No answer within the configured timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The circuit breaker is open; the call was not made.
    #[error(transparent)]
    CircuitOpen(#[from] finn_breaker::Rejected),
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A remote call failed.
    #[error("{op} of {key} failed")]
    Remote {
        /// Which call.
        op: RemoteOp,
        /// The object key (or listed prefix).
        key: String,
        /// Why.
        #[source]
        source: RemoteFailure,
    },
    /// The store URL could not be used.
    #[error("store url {url:?} is not usable: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The store could not be configured from the URL and options.
    #[error("store url {url:?} could not be configured")]
    StoreConfig {
        /// The URL.
        url: String,
        /// The builder's error.
        #[source]
        source: object_store::Error,
    },
    /// A local file operation failed.
    #[error("i/o error on {path}")]
    Io {
        /// The local path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint path is invalid.
    #[error("checkpoint path {path:?} is invalid: {defect}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong.
        defect: PathDefect,
    },
    /// Two inputs of one checkpoint have the same path.
    #[error("checkpoint names {path} twice")]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// A source file changed while it was being checkpointed (hash of the upload differs from the
    /// hash taken first); retry the checkpoint once the writer is quiet.
    #[error("{path} changed while it was being checkpointed; retry")]
    SourceChanged {
        /// The local file.
        path: PathBuf,
    },
    /// Another publisher won this version. Nothing of ours was published; our uploads are debris
    /// that GC collects.
    #[error("version {version} was already published (by writer epoch {winner_epoch:?})")]
    VersionConflict {
        /// The contested version.
        version: u64,
        /// The winner's writer epoch, when its manifest could be read.
        winner_epoch: Option<u64>,
    },
    /// Another writer has taken over the lease: this writer is a zombie and must stop.
    #[error("writer epoch {epoch} was fenced off by epoch {current}; this writer must stop")]
    Fenced {
        /// This writer's epoch.
        epoch: u64,
        /// The epoch that replaced it.
        current: u64,
    },
    /// A live lease is held by another writer.
    #[error(
        "lease epoch {epoch} is held by writer {holder} for another {remaining:?}; wait or take over"
    )]
    LeaseHeld {
        /// The holder's epoch.
        epoch: u64,
        /// The holder's id.
        holder: String,
        /// Time until the lease expires unless renewed.
        remaining: Duration,
    },
    /// A lease object could not be parsed.
    #[error("lease object {key} is malformed")]
    LeaseCorrupt {
        /// The key.
        key: String,
    },
    /// A manifest was rejected (malformed or signature not accepted).
    #[error("manifest version {version} rejected")]
    ManifestRejected {
        /// The version.
        version: u64,
        /// Why.
        #[source]
        reason: ManifestRejection,
    },
    /// A manifest's key and content disagree on its version.
    #[error("manifest object for version {key_version} holds version {content_version}")]
    ManifestMisplaced {
        /// Version from the key.
        key_version: u64,
        /// Version in the signed content.
        content_version: u64,
    },
    /// The requested manifest does not exist.
    #[error("manifest version {version} does not exist")]
    ManifestMissing {
        /// The version.
        version: u64,
    },
    /// A manifest's link to its predecessor does not match the stored predecessor.
    #[error(
        "manifest version {version} links to version {previous} with a hash that does not match it"
    )]
    ChainBroken {
        /// The manifest.
        version: u64,
        /// The linked version.
        previous: u64,
    },
    /// A manifest of another lineage was found where this lineage was expected.
    #[error(
        "version {version} belongs to lineage {found}, not {expected}; lineages are never mixed"
    )]
    LineageMismatch {
        /// The manifest or batch position.
        version: u64,
        /// The lineage being read.
        expected: LineageId,
        /// The lineage found.
        found: LineageId,
    },
    /// A manifest was published by an epoch that had already been fenced off at that version.
    #[error("manifest version {version} was written by fenced epoch {epoch}")]
    FencedWrite {
        /// The version.
        version: u64,
        /// Its (fenced) epoch.
        epoch: u64,
    },
    /// The checkpoint would move the covered LSN backwards within a lineage.
    #[error(
        "covered lsn {requested} is below lsn {previous} of the previous checkpoint in this lineage"
    )]
    LsnRegression {
        /// What the new checkpoint claims.
        requested: Lsn,
        /// What the previous one covered.
        previous: Lsn,
    },
    /// An object a manifest needs is missing.
    #[error("object {key} is missing")]
    ObjectMissing {
        /// The key.
        key: String,
    },
    /// A stored object's size is not what the manifest or upload says.
    #[error("object {key} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The key.
        key: String,
        /// Expected stored size.
        expected: u64,
        /// Found.
        actual: u64,
    },
    /// Downloaded content does not hash to what the manifest says.
    #[error("content of {path} does not match its hash (expected {expected}, got {actual})")]
    HashMismatch {
        /// The checkpoint path or object key.
        path: String,
        /// Expected BLAKE3 (hex).
        expected: String,
        /// Computed BLAKE3 (hex).
        actual: String,
    },
    /// A stored object could not be decoded with its codec.
    #[error("object {key} could not be decoded")]
    Decode {
        /// The key.
        key: String,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// A shipped WAL batch is malformed, unsigned or inconsistent with its key.
    #[error("shipped wal batch {key} rejected: {reason}")]
    BatchRejected {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The shipped WAL has a hole: a batch says it follows an LSN no retained batch ends at.
    #[error(
        "shipped wal of lineage {lineage} has a gap: batch from lsn {first} follows lsn {expected_prev}, but the batch before ends at {found_prev}"
    )]
    ShippedGap {
        /// The lineage.
        lineage: LineageId,
        /// First LSN of the batch after the gap.
        first: Lsn,
        /// The LSN that batch says precedes it.
        expected_prev: Lsn,
        /// Where the batch before it actually ends.
        found_prev: Lsn,
    },
    /// Two shipped batches disagree about the record at an LSN.
    #[error("shipped wal batches disagree about lsn {lsn}")]
    ShippedConflict {
        /// The LSN.
        lsn: Lsn,
    },
    /// WAL records to ship reuse an LSN at or below what this prefix already holds.
    #[error(
        "wal record lsn {lsn} is not above the shipped high-water mark {high_water}; advance the wal past it after a restore"
    )]
    LsnReused {
        /// The record's LSN.
        lsn: Lsn,
        /// The remote high-water mark.
        high_water: Lsn,
    },
    /// The WAL failed.
    #[error("wal error")]
    Wal(#[from] finn_wal::Error),
    /// A key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A git command failed.
    #[error("git {args:?} failed with {status}: {stderr}")]
    Git {
        /// The git arguments.
        args: Vec<String>,
        /// Exit status (or "timeout" / "spawn failed").
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// A git name (branch, remote) is not acceptable.
    #[error("git {what} {value:?} is not acceptable")]
    GitName {
        /// "branch" or "remote".
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The git push circuit is open.
    #[error("git push skipped")]
    GitCircuitOpen(#[source] finn_breaker::Rejected),
    /// The writer was poisoned by an earlier error that left its remote view uncertain.
    #[error("checkpointer stopped after an earlier fencing error; open a new one")]
    Stopped,
    /// A restore target lies before the oldest point the prefix can restore (older than every
    /// retained checkpoint of the lineage, and its shipped WAL does not start at LSN 1).
    #[error("restore target {target} is before the oldest restorable point")]
    TargetBeforeHistory {
        /// The target.
        target: RestoreTarget,
        /// The oldest restorable LSN, when there is one.
        earliest: Option<Lsn>,
    },
    /// A restore target lies beyond everything checkpointed or shipped.
    #[error("restore target {target} is beyond the newest restorable lsn {newest}")]
    TargetBeyondHistory {
        /// The target.
        target: RestoreTarget,
        /// The newest restorable LSN.
        newest: Lsn,
    },
    /// The prefix holds no checkpoint that verifies and no shipped WAL.
    #[error("nothing to restore: no checkpoint verifies and no wal was shipped")]
    NothingToRestore,
    /// The WAL a restore should replay into already holds records above the base checkpoint.
    #[error(
        "the wal to restore into already ends at lsn {wal_last}, above the base checkpoint's lsn {base}; restore into an empty wal"
    )]
    RestoreWalAhead {
        /// The WAL's last LSN.
        wal_last: Lsn,
        /// The base checkpoint's covered LSN.
        base: Lsn,
    },
    /// A file was asked for that the checkpoint does not hold.
    #[error("the checkpoint holds no file {path}")]
    NotInCheckpoint {
        /// The path asked for.
        path: String,
    },
    /// Shipping stopped or failed before the record reached the object store.
    #[error("lsn {lsn} is not shipped")]
    NotShipped {
        /// The LSN waited for.
        lsn: Lsn,
        /// The failure of the shipping attempt made after the wait began.
        #[source]
        source: std::sync::Arc<Error>,
    },
    /// The shipper has stopped (shut down, or fenced off).
    #[error("the wal shipper has stopped")]
    ShipperStopped,
    /// A restore was adopted by a writer not opened as a fork of the restore's base (or that has
    /// published already).
    #[error(
        "the writer must be opened with LineageMode::Fork of the restored base checkpoint and have published nothing"
    )]
    NotForked,
    /// An LSN was waited for that the WAL never appended.
    #[error("lsn {lsn} was never appended; the wal ends at {last}")]
    NotAppended {
        /// The LSN waited for.
        lsn: Lsn,
        /// The WAL's last LSN.
        last: Lsn,
    },
}

impl Error {
    pub(crate) fn malformed(version: u64, defect: ManifestDefect) -> Self {
        Error::ManifestRejected {
            version,
            reason: ManifestRejection::Malformed(defect),
        }
    }

    /// Whether this error means another writer owns the prefix now.
    pub fn is_fenced(&self) -> bool {
        match self {
            Error::Fenced { .. } | Error::Stopped => true,
            Error::NotShipped { source, .. } => source.is_fenced(),
            _ => false,
        }
    }
}

/// An error and its causes, `: `-separated, each layer once (a layer whose message already
/// ends with its cause's is not repeated): the one-line form reports and logs carry.
///
/// ```
/// let e = std::io::Error::other("disk gone");
/// assert_eq!(finn_checkpoint::error_chain(&e), "disk gone");
/// ```
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}
