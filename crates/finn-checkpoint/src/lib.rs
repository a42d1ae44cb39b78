//! Two-phase, signed, content-addressed checkpoints to any object store, WAL shipping and a git archive.

mod archive;
mod checkpoint;
pub mod codec;
mod error;
pub mod fault;
mod gc;
mod layout;
mod lease;
pub mod manifest;
mod path;
mod read;
mod remote;
mod ship;
mod sign;
mod store;
mod upload;

pub use archive::{
    ARCHIVE_MANIFEST, ARCHIVE_MANIFEST_JSON, ARCHIVE_STATE_DIR, ArchiveReport,
    DEFAULT_ARCHIVE_BRANCH, GitArchive,
};
pub use checkpoint::{
    CheckpointReport, Checkpointer, CheckpointerOptions, HighWater, LineageMode, publish,
};
pub use codec::{Codec, Compression};
pub use error::{Error, RemoteFailure, RemoteOp};
pub use finn_wal::Lsn;
pub use gc::GcReport;
pub use layout::BatchName;
pub use lease::{DEFAULT_LEASE_TTL, Fences, Seal, Takeover};
pub use manifest::{
    ContentHash, FileEntry, LineageId, Manifest, ManifestDefect, ManifestHash, ManifestLink,
    ManifestRejection, ParentLink, SignedManifest,
};
pub use path::{CheckpointPath, PathDefect};
pub use read::{ChainCheck, FetchReport, Reader, VerifiedManifest, VersionEntry};
pub use remote::{DEFAULT_TIMEOUT, Remote, RemoteOptions, default_breaker};
pub use ship::{ShipReport, ShippedBatch};
pub use sign::{KeyError, KeyId, Keyring, SecretPem, SignatureError, SigningKey, VerifyingKey};
pub use store::{StoreOptions, open_store};
pub use upload::{CheckpointInput, FileSource};
