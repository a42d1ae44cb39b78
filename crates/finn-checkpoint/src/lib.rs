//! Two-phase, signed, content-addressed checkpoints to any object store, WAL shipping and a git archive.
//!
//! `finn-checkpoint` keeps an agent's state restorable when its disk is gone. A checkpoint is a
//! set of named files, the WAL LSN they cover, and metadata. It goes to any object store the
//! [`object_store`] crate reaches, chosen by URL (`s3://` incl. R2 and other S3-compatible
//! servers, `gs://`, `az://`, `file:///dir`, `memory://`). Durable WAL records are shipped between
//! checkpoints, so a restore loses nothing that was synced. Most users want the
//! [`finn`](https://docs.rs/finn) facade.
//!
//! # Example
//! ```
//! use finn_checkpoint::{CheckpointInput, Checkpointer, CheckpointerOptions, Keyring, Lsn, Reader,
//!                       Remote, RemoteOptions, SigningKey, StoreOptions};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let remote = Remote::from_url("memory:///agent-1", &StoreOptions::default(), RemoteOptions::default())?;
//! let key = SigningKey::generate();
//!
//! // The writer: takes the prefix's lease (a new writer epoch) and publishes version 1.
//! let writer = Checkpointer::open(remote.clone(), key.clone(), Keyring::new(), CheckpointerOptions::default()).await?;
//! let mut input = CheckpointInput::new(Lsn::new(42));
//! input.add_bytes("state/agent.json", br#"{"turn":7}"#.to_vec())?;
//! let report = writer.checkpoint(input).await?;
//! assert_eq!(report.version, 1);
//!
//! // The restore side: verify the newest manifest, fetch its files (hash-checked).
//! let reader = Reader::new(remote, Keyring::trusting(key.verifying_key()));
//! let manifest = reader.newest().await?.expect("one checkpoint");
//! let dir = tempfile::tempdir().unwrap();
//! reader.fetch_files(&manifest, dir.path(), 4).await?;
//! assert_eq!(std::fs::read(dir.path().join("state/agent.json")).unwrap(), br#"{"turn":7}"#);
//! # Ok::<(), finn_checkpoint::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Guarantees
//! - **Two-phase, never in place.** Phase 1 writes an intent and uploads every file as a
//!   content-addressed object (`objects/…/{blake3}.{raw|zst}`) unless it already exists, so a
//!   checkpoint that changed 1 % of the state uploads about 1 % of the bytes; uploads are
//!   verified (size, and the read-back hash of what was uploaded). Phase 2 creates the manifest of
//!   version N+1 with `PutMode::Create`: of any number of concurrent publishers exactly one wins,
//!   on every backend including LocalFileSystem; the others get [`Error::VersionConflict`]. An
//!   earlier checkpoint is never modified, so a failure at any step leaves the last published
//!   one fully restorable.
//! - **Signed, every field.** The manifest object is a canonical byte encoding of every field
//!   (files with path, size, BLAKE3 and codec; covered LSN; writer epoch; lineage and parent;
//!   link to the previous manifest's hash; encryption key id; signer key id; metadata) followed
//!   by an ed25519 signature over exactly those bytes. Readers check structure, paths
//!   ([`CheckpointPath`]: relative, normalized, no `..`, no NUL), signature (trusted, not
//!   revoked [`Keyring`]), the chain link, fencing and lineage before trusting a manifest, and
//!   the BLAKE3 of every file they fetch.
//! - **One writer per prefix (fencing).** A writer holds a lease epoch created with
//!   `PutMode::Create` (works without `PutMode::Update`) and seals it with a signed record of what
//!   existed. Its epoch is in every manifest and shipped-batch key. A writer whose lease was taken
//!   over finds out on its next write ([`Error::Fenced`]) and stops; anything it slipped in after
//!   the takeover is ignored by readers and removed by GC.
//! - **Lineage.** A restore continues its lineage and numbers versions and LSNs above the
//!   prefix's high-water mark ([`Checkpointer::high_water`]); a deliberate fork
//!   ([`LineageMode::Fork`]) gets a new lineage that records its parent. Readers never mix
//!   lineages ([`Error::LineageMismatch`]).
//! - **Every shipped record comes back.** [`Checkpointer::ship_wal`] ships synced WAL records in
//!   signed batches; [`Reader::shipped_after`] / [`Reader::replay_into`] return every record after
//!   a checkpoint's LSN, across batches and epochs, and detect a missing batch
//!   ([`Error::ShippedGap`]).
//! - **Any point, not only the latest.** [`Reader::plan_restore`] / [`Reader::restore`] restore
//!   to an LSN, a moment or a checkpoint version ([`RestoreTarget`]): the base is the newest
//!   checkpoint at or before the target that *verifies*, the replay stops exactly at the target,
//!   and the report gives the exact LSN and time reached. [`Reader::open_at`] is a read-only
//!   view of the state as of any point ([`TimeTravel`]), for inspection.
//! - **Restores stay fast as history grows.** [`Checkpointer::compact_wal`] merges shipped
//!   batches into levels ([`LevelPolicy`]: 5 min, then 1 h objects), verifying each merged
//!   object before deleting what it replaces; readers pick the fewest objects covering what they
//!   need and download several ahead while replaying. Delta restores
//!   ([`Reader::fetch_files_delta`], [`RestoreOptions::reuse_local`]) fetch only files whose
//!   local copy does not match.
//! - **Remote-durable acknowledgement.** A [`Shipper`] ships synced records within an RPO
//!   (default 1 s) and [`Shipper::await_shipped`] waits for one record to be in the object
//!   store. RPO/RTO choices and the restore commands: `docs/restore.md`.
//! - **Guarded calls.** Every store call runs under a timeout and a [`finn_breaker`] circuit
//!   ([`RemoteOptions`]); git pushes have their own breaker.
//! - **Garbage collection.** [`Checkpointer::gc`] removes stale intents (10 min), manifests beyond
//!   retention (last N), fenced-off debris, and unreferenced objects after a grace period; it
//!   never removes an object a retained manifest or a live intent names.
//! - **Retention operators can trust.** [`Checkpointer::retention`] applies a
//!   [`RetentionPolicy`] (count and age by signed creation time, pins, a point-in-time window
//!   for shipped WAL), never cuts what a kept checkpoint needs, leaves signed tombstones for
//!   manifests removed between kept ones, and looks every deleted key up again (stores that
//!   acknowledge deletes and keep the objects are reported). Dry run: [`Reader::plan_retention`].
//! - **Continuous verification.** [`Reader::validate`] checks the whole remote (manifests and
//!   chain links, every object's existence and size, content of new objects plus a random sample,
//!   shipped WAL signatures, gaps and overlaps), incrementally through a local
//!   [`remote_index::RemoteIndex`]; [`Reader::restore_drill`] restores into a scratch directory
//!   and compares with the live WAL ("restorable as of T"); [`heartbeat::Heartbeat`] pings a
//!   dead man's switch only after a verified sync.
//! - **Request-cost discipline.** The steady-state sync (ship + checkpoint) makes no LIST: the
//!   lease is checked with HEADs of the next epoch's objects and versions come from the writer's
//!   own high-water mark; [`Remote::requests`] counts requests by operation; [`UploadLimits`]
//!   bounds concurrent uploads and bandwidth (Cloudflare R2's limit is built in).
//!
//! # What it does not do
//! - Encrypt: the manifest has an encryption key id field (empty) so it can be added without a
//!   format break.
//! - Decide *what* to restore: [`Reader`] verifies and fetches; the cascade (object store, then
//!   git, then template) is finn-recovery's.
//! - Survive clock skew beyond the lease TTL: lease expiry compares the holder's timestamps with
//!   the contender's clock. Forced takeover ([`Takeover::Force`]) does not depend on clocks.
//! - Records checkpointed but never shipped exist only in the checkpoint covering them; restoring
//!   an *older* checkpoint cannot recover them (restore the newest one that verifies).
//!
//! # Restoring (what finn-recovery does)
//! 1. [`Checkpointer::open`] first: it takes the lease and seals it, so the restore below sees
//!    exactly what the seal recorded and no zombie write made later.
//! 2. [`Reader::versions`] (newest first) and [`Reader::load`] until one verifies (or
//!    [`Reader::newest`]).
//! 3. [`Reader::fetch_files`] into a fresh staging directory; swap it into place on success.
//! 4. `wal.advance_to(manifest.covered_lsn.next())`, then [`Reader::replay_into`] (or
//!    [`Reader::shipped_after`] + `Wal::append_replicated`) with the manifest's lineage and
//!    covered LSN.
//! 5. `wal.advance_to(writer.high_water().await.lsn.next())` before appending anything new.
//!
//! # In-bucket format
//! ```text
//! objects/{hash[0..2]}/{blake3}.{raw|zst}              file content, immutable
//! manifests/{version:020}.manifest                     signed manifests (PutMode::Create)
//! manifests/{version:020}.deleted                      signed tombstones (retention)
//! intents/{ulid}.json                                  checkpoints in flight
//! lease/{epoch:020}.{lease|renewed|seal}               fencing
//! wal/{lineage}/{first:020}-{last:020}-{epoch:020}.batch   shipped WAL
//! wal/{lineage}/{first:020}-{last:020}-{epoch:020}.l{n}.batch   the same, merged to level n
//! ```
//! Byte layouts, what the signature covers, and what a reader does with each kind of damage:
//! `docs/formats/finn-checkpoint.md`.
//!
//! # Testing other crates
//! [`fault::FaultStore`] wraps any store, counts operations by kind and fails, hangs, delays or
//! "loses the answer of" the k-th one; it can also hide objects and "forget" deletes.
//!
//! # Crate features
//! None. Fail points (`fail` crate) at every step of publication
//! (`checkpoint::publish::{after_prepare, after_intent, after_upload, after_manifest,
//! after_intent_removed}`) are compiled to nothing unless `fail/failpoints` is on, which only
//! this crate's own tests enable.
//!
//! # Minimum supported Rust version
//! The workspace `rust-version` (1.89).

mod archive;
mod checkpoint;
pub mod codec;
mod delta;
pub mod drill;
mod error;
pub mod fault;
mod gc;
pub mod heartbeat;
mod layout;
mod lease;
mod levels;
mod limits;
pub mod manifest;
mod path;
mod pitr;
mod read;
mod remote;
pub mod remote_index;
pub mod retention;
mod ship;
mod shipper;
mod sign;
mod store;
mod tombstone;
mod travel;
mod upload;
pub mod validate;

pub use archive::{
    ARCHIVE_MANIFEST, ARCHIVE_MANIFEST_JSON, ARCHIVE_STATE_DIR, ArchiveReport,
    DEFAULT_ARCHIVE_BRANCH, GitArchive,
};
pub use checkpoint::{
    CheckpointReport, Checkpointer, CheckpointerOptions, HighWater, LineageMode, publish,
};
pub use codec::{Codec, Compression};
pub use drill::{DrillError, DrillOptions, DrillReport};
pub use error::{Error, RemoteFailure, RemoteOp, error_chain};
pub use finn_wal::Lsn;
pub use gc::GcReport;
pub use layout::BatchName;
pub use lease::{DEFAULT_LEASE_TTL, Fences, Seal, Takeover};
pub use levels::{CompactReport, LevelPolicy, LevelSpec};
pub use limits::{
    R2_MAX_CONCURRENT_UPLOADS, RequestCounts, RequestStats, UploadLimits, UploadPermit,
};
pub use manifest::{
    ContentHash, FileEntry, LineageId, Manifest, ManifestDefect, ManifestHash, ManifestLink,
    ManifestRejection, ParentLink, SignedManifest,
};
pub use path::{CheckpointPath, MAX_PATH_LEN, PathDefect};
pub use pitr::{
    PlannedBase, RestoreOptions, RestorePlan, RestoreProgress, RestoreReport, RestoreTarget,
    SkippedCheckpoint,
};
pub use read::{ChainCheck, FetchReport, Reader, VerifiedManifest, VersionEntry};
pub use remote::{DEFAULT_TIMEOUT, Remote, RemoteOptions, default_breaker};
pub use retention::{KeepReason, KeptCheckpoint, RetentionMode, RetentionPolicy, RetentionReport};
pub use ship::{DEFAULT_PREFETCH, ShipReport, ShippedBatch, WalObject};
pub use shipper::{CheckpointerShip, DEFAULT_RPO, ShipSource, ShipStatus, Shipper, ShipperOptions};
pub use sign::{KeyError, KeyId, Keyring, SecretPem, SignatureError, SigningKey, VerifyingKey};
pub use store::{StoreOptions, open_store};
pub use travel::{KeyAt, TimeTravel};
pub use upload::{CheckpointInput, FileSource};
pub use validate::{Finding, ValidateOptions, ValidationReport};
