//! The writer: opens a prefix under a fenced lease, publishes checkpoints in two phases.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use ulid::Ulid;

use crate::Lsn;
use crate::codec::Compression;
use crate::error::Error;
use crate::layout;
use crate::lease::{DEFAULT_LEASE_TTL, Fences, Lease, Takeover, now_ms};
use crate::manifest::{FileEntry, LineageId, Manifest, ManifestHash, ParentLink, SignedManifest};
use crate::read::{Reader, scan_batches, scan_manifests};
use crate::remote::{Created, Remote};
use crate::sign::{Keyring, SigningKey};
use crate::upload::{
    self, CheckpointInput, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, Prepared, UploadSettings,
};

/// Which line of history a writer continues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineageMode {
    /// Continue the lineage of the newest valid manifest (or of the newest shipped WAL when
    /// there is no manifest; a new lineage on an empty prefix). The normal case, also after a
    /// restore from the newest checkpoint.
    #[default]
    Continue,
    /// Start a new lineage forked from `parent` (restoring elsewhere on purpose, or rolling back
    /// to an older checkpoint). Its first manifest records the parent link; it never links to
    /// the original lineage's later manifests, and readers never mix the two.
    Fork(ParentLink),
}

/// Writer settings. Every field has a default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CheckpointerOptions {
    /// Compression of objects and shipped WAL. Default: zstd level 3, raw for compressed data.
    pub compression: Compression,
    /// Files hashed / uploaded concurrently. Default: 8.
    pub parallelism: usize,
    /// Files larger than this are streamed and uploaded in parts. Default: 8 MiB.
    pub multipart_threshold: u64,
    /// Multipart part size. Default: 8 MiB. S3 and R2 need at least 5 MiB (except for the last
    /// part); smaller values are for stores without that limit and for tests.
    pub part_size: usize,
    /// After each upload, read the object back and compare its hash (besides its size).
    /// Default: true.
    pub verify_uploads: bool,
    /// Lease time-to-live. Default: 60 s.
    pub lease_ttl: Duration,
    /// Whether to take over a live lease. Default: [`Takeover::IfExpired`].
    pub takeover: Takeover,
    /// Lineage to write. Default: [`LineageMode::Continue`].
    pub lineage: LineageMode,
    /// Intents older than this are stale and removed by GC. Default: 10 min (the anchors').
    pub stale_intent_age: Duration,
    /// Unreferenced objects younger than this are kept by GC (they may belong to a checkpoint in
    /// flight). Default: 1 h.
    pub gc_grace: Duration,
    /// Manifests kept by GC (newest first). Default: 10. At least 1.
    pub retain: usize,
    /// Largest number of records in one shipped WAL batch. Default: 1,000.
    pub ship_batch_records: usize,
    /// Largest payload of one shipped WAL batch before compression. Default: 4 MiB.
    pub ship_batch_bytes: usize,
}

impl Default for CheckpointerOptions {
    fn default() -> Self {
        Self {
            compression: Compression::default(),
            parallelism: 8,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            verify_uploads: true,
            lease_ttl: DEFAULT_LEASE_TTL,
            takeover: Takeover::IfExpired,
            lineage: LineageMode::Continue,
            stale_intent_age: Duration::from_secs(600),
            gc_grace: Duration::from_secs(3600),
            retain: 10,
            ship_batch_records: 1000,
            ship_batch_bytes: 4 << 20,
        }
    }
}

impl CheckpointerOptions {
    fn settings(&self) -> UploadSettings {
        UploadSettings {
            compression: self.compression,
            multipart_threshold: self.multipart_threshold,
            part_size: self
                .part_size
                .max(5 << 20)
                .min(self.multipart_threshold.max(5 << 20) as usize),
            verify_content: self.verify_uploads,
        }
    }
}

/// Highest version and LSN anything in the prefix has used (all lineages, all epochs). A
/// restored writer numbers above it so nothing is ever reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HighWater {
    /// Highest manifest version present.
    pub version: u64,
    /// Highest LSN present in a manifest or a shipped batch.
    pub lsn: Lsn,
}

/// What a published checkpoint did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CheckpointReport {
    /// The published version.
    pub version: u64,
    /// Hash of the published manifest.
    pub manifest_hash: ManifestHash,
    /// Files in the checkpoint.
    pub files: usize,
    /// Objects uploaded by this checkpoint.
    pub uploaded_objects: usize,
    /// Stored bytes uploaded by this checkpoint.
    pub uploaded_bytes: u64,
    /// Objects that already existed and were reused.
    pub reused_objects: usize,
    /// Sum of the files' sizes.
    pub total_size: u64,
    /// Whether the intent record could not be removed (GC removes it later).
    pub intent_left: bool,
}

pub(crate) struct WriterState {
    pub(crate) lease: Lease,
    pub(crate) lineage: LineageId,
    pub(crate) head: Option<SignedManifest>,
    pub(crate) pending_parent: Option<ParentLink>,
    pub(crate) shipped: Lsn,
    /// Highest LSN used by anything outside this lineage's accepted history; shipping a record
    /// at or below it would reuse an LSN.
    pub(crate) foreign_lsn: Lsn,
    pub(crate) high_water: HighWater,
    pub(crate) stopped: bool,
}

/// Writes checkpoints (and shipped WAL) to one prefix, as its only writer.
///
/// `open` acquires the lease (a new epoch) and seals it, so do it *before* restoring from the
/// prefix: then the restore sees exactly what the seal recorded and nothing a zombie writes later.
#[derive(Debug)]
pub struct Checkpointer {
    pub(crate) remote: Remote,
    pub(crate) key: SigningKey,
    pub(crate) keyring: Keyring,
    pub(crate) options: CheckpointerOptions,
    pub(crate) state: tokio::sync::Mutex<WriterState>,
    epoch: u64,
}

impl std::fmt::Debug for WriterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterState")
            .field("epoch", &self.lease.epoch)
            .field("lineage", &self.lineage)
            .field("head", &self.head.as_ref().map(|h| h.version))
            .field("shipped", &self.shipped)
            .field("stopped", &self.stopped)
            .finish()
    }
}

impl Checkpointer {
    /// Acquires the prefix's lease (a new writer epoch), seals it, and finds where history
    /// stands. `keyring` must trust the keys of earlier writers whose manifests this one
    /// continues; `key`'s own public key is added to it.
    ///
    /// # Cancel safety
    /// Not cancel safe in the sense that a cancelled open may leave an acquired (unsealed) lease;
    /// the next open takes over after its TTL or with [`Takeover::Force`].
    pub async fn open(
        remote: Remote,
        key: SigningKey,
        mut keyring: Keyring,
        options: CheckpointerOptions,
    ) -> Result<Self, Error> {
        keyring.trust(key.verifying_key());
        let lease = Lease::acquire(&remote, options.lease_ttl, options.takeover).await?;
        let manifests = scan_manifests(&remote).await?;
        let batches = scan_batches(&remote, None).await?;
        let manifest_hw = manifests.last().copied().unwrap_or(0);
        let shipped_hw = batches.iter().map(|b| b.last).max().unwrap_or(Lsn::ZERO);
        lease.seal(&remote, &key, manifest_hw, shipped_hw).await?;

        let reader = Reader::new(remote.clone(), keyring.clone());
        let (fences, _) = Fences::load(&remote, &keyring).await?;
        // The newest manifest that verifies and was not fenced off.
        let mut newest: Option<SignedManifest> = None;
        for &v in manifests.iter().rev() {
            match reader.load_unchained(v, &fences).await {
                Ok(m) => {
                    newest = Some(m);
                    break;
                }
                Err(e) => {
                    tracing::warn!(version = v, error = %e, "skipping manifest that does not verify")
                }
            }
        }
        let mut lsn_hw = shipped_hw;
        // Manifests above the chosen one (zombie or unverifiable) still count for the high-water mark.
        let floor = newest.as_ref().map(|m| m.version).unwrap_or(0);
        for &v in manifests.iter().filter(|&&v| v >= floor && v > 0) {
            if let Some(lsn) = reader.peek_covered_lsn(v).await? {
                lsn_hw = lsn_hw.max(lsn);
            }
        }
        let (lineage, head, pending_parent) = match options.lineage {
            LineageMode::Fork(parent) => (LineageId::generate(), None, Some(parent)),
            LineageMode::Continue => match newest {
                Some(m) => (m.lineage, Some(m), None),
                None => {
                    let valid = batches
                        .iter()
                        .filter(|b| !fences.batch_fenced(b.epoch, b.last));
                    let lineage = valid.max_by_key(|b| b.last).map(|b| b.lineage);
                    (lineage.unwrap_or_else(LineageId::generate), None, None)
                }
            },
        };
        let shipped = batches
            .iter()
            .filter(|b| b.lineage == lineage && !fences.batch_fenced(b.epoch, b.last))
            .map(|b| b.last)
            .max()
            .unwrap_or(Lsn::ZERO);
        let head_version = head.as_ref().map(|h| h.version).unwrap_or(0);
        let mut foreign_lsn = batches
            .iter()
            .filter(|b| b.lineage != lineage || fences.batch_fenced(b.epoch, b.last))
            .map(|b| b.last)
            .max()
            .unwrap_or(Lsn::ZERO);
        for &v in manifests.iter().filter(|&&v| v > head_version) {
            if let Some(lsn) = reader.peek_covered_lsn(v).await? {
                foreign_lsn = foreign_lsn.max(lsn);
            }
        }
        let epoch = lease.epoch;
        tracing::info!(epoch, %lineage, version = manifest_hw, lsn = %lsn_hw, "checkpoint writer open");
        Ok(Self {
            remote,
            key,
            keyring,
            options,
            epoch,
            state: tokio::sync::Mutex::new(WriterState {
                lease,
                lineage,
                head,
                pending_parent,
                shipped,
                foreign_lsn,
                high_water: HighWater {
                    version: manifest_hw,
                    lsn: lsn_hw,
                },
                stopped: false,
            }),
        })
    }

    /// This writer's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The remote it writes to.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The lineage it writes.
    pub async fn lineage(&self) -> LineageId {
        self.state.lock().await.lineage
    }

    /// The newest manifest of this writer's lineage (published by it or found at open).
    pub async fn head(&self) -> Option<SignedManifest> {
        self.state.lock().await.head.clone()
    }

    /// The highest version and LSN the prefix had when this writer opened, raised by what it
    /// wrote since. After a restore, advance the WAL past `lsn` before appending.
    pub async fn high_water(&self) -> HighWater {
        self.state.lock().await.high_water
    }

    /// The highest LSN confirmed shipped (durably stored remotely) for this lineage.
    pub async fn shipped_lsn(&self) -> Lsn {
        self.state.lock().await.shipped
    }

    /// Renews the lease (and checks it was not taken over).
    pub async fn renew(&self) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        self.checked(&mut st).await
    }

    /// Gives the lease up so the next writer need not wait for its TTL.
    pub async fn release(self) -> Result<(), Error> {
        let st = self.state.into_inner();
        if st.stopped {
            return Ok(());
        }
        st.lease.release(&self.remote).await
    }

    /// Checks the lease; a fencing error stops this writer for good.
    pub(crate) async fn checked(&self, st: &mut WriterState) -> Result<(), Error> {
        if st.stopped {
            return Err(Error::Stopped);
        }
        match st.lease.check(&self.remote).await {
            Err(e @ Error::Fenced { .. }) => {
                st.stopped = true;
                tracing::error!(error = %e, "checkpoint writer fenced off; stopping");
                Err(e)
            }
            other => other,
        }
    }

    /// Publishes a checkpoint of `input` as the next version.
    ///
    /// Phase 1 writes an intent, then uploads every file whose content-addressed object is
    /// missing (bounded parallelism, multipart for large files, each verified). Phase 2 creates
    /// the manifest of version N+1 with `PutMode::Create` and removes the intent. Nothing written
    /// before phase 2 is visible to readers, and nothing published earlier is modified, so a
    /// failure at any step leaves the previous checkpoint intact.
    ///
    /// # Cancel safety
    /// Cancelling leaves at most an intent and unreferenced objects, which GC removes. If the
    /// manifest create was in flight, the version may or may not be published.
    pub async fn checkpoint(&self, input: CheckpointInput) -> Result<CheckpointReport, Error> {
        let mut st = self.state.lock().await;
        self.checked(&mut st).await?;
        if let Some(head) = &st.head
            && input.covered_lsn < head.covered_lsn
        {
            return Err(Error::LsnRegression {
                requested: input.covered_lsn,
                previous: head.covered_lsn,
            });
        }
        let settings = self.options.settings();
        let parallel = self.options.parallelism.max(1);

        // Phase 1a: hash (and encode small files) off the async threads.
        let jobs = input.files.into_iter().map(|(path, source)| async move {
            tokio::task::spawn_blocking(move || upload::prepare(path, source, settings))
                .await
                .map_err(|e| Error::Io {
                    path: "<hash task>".into(),
                    source: std::io::Error::other(e.to_string()),
                })?
        });
        let prepared: Vec<Prepared> = futures::stream::iter(jobs)
            .buffered(parallel)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        fail::fail_point!("checkpoint::publish::after_prepare");

        // Phase 1b: the intent names every object this checkpoint needs, so GC spares them.
        let intent_id = Ulid::new();
        let intent = serde_json::json!({
            "format": 1,
            "id": intent_id.to_string(),
            "epoch": self.epoch,
            "lineage": st.lineage.to_string(),
            "started_at_ms": now_ms(),
            "objects": prepared.iter().map(Prepared::key).collect::<Vec<_>>(),
        });
        let intent_key = self.remote.key(&layout::intent_key(intent_id));
        self.remote
            .put(&intent_key, Bytes::from(intent.to_string()))
            .await?;
        fail::fail_point!("checkpoint::publish::after_intent");

        // Phase 1c: upload what is missing.
        let remote = &self.remote;
        let uploads: Vec<_> = prepared
            .iter()
            .map(|p| Box::pin(upload::upload(remote, p, settings)))
            .collect();
        let results: Vec<_> = futures::stream::iter(uploads)
            .buffered(parallel)
            .collect()
            .await;
        let mut files = Vec::with_capacity(prepared.len());
        let (mut uploaded_objects, mut uploaded_bytes, mut reused_objects) = (0, 0, 0);
        for (p, r) in prepared.iter().zip(results) {
            let u = r?;
            if u.sent > 0 {
                uploaded_objects += 1;
                uploaded_bytes += u.sent;
            } else {
                reused_objects += 1;
            }
            files.push(FileEntry {
                path: p.path.clone(),
                size: p.size,
                blake3: p.hash,
                codec: p.codec,
                stored_size: u.stored_size,
            });
        }

        fail::fail_point!("checkpoint::publish::after_upload");

        // Phase 2: publish version N+1. The writer's high-water mark is its index of the
        // manifests present (found at open, raised by what it publishes), so no listing is
        // needed per checkpoint: a version someone else took anyway is a create conflict, and
        // only then does the writer list to catch up.
        let mut manifest = Manifest {
            version: st.high_water.version + 1,
            created_at_ms: now_ms(),
            covered_lsn: input.covered_lsn,
            writer_epoch: self.epoch,
            lineage: st.lineage,
            parent: if st.head.is_none() {
                st.pending_parent
            } else {
                None
            },
            previous: st.head.as_ref().map(SignedManifest::link),
            encryption_key_id: String::new(),
            signer: self.key.id(),
            metadata: input.metadata,
            files,
        };
        let mut reconciled = false;
        let signed = loop {
            let signed = manifest.clone().sign(&self.key);
            self.checked(&mut st).await?;
            let published = publish(&self.remote, &signed).await;
            if published.is_ok() {
                // Recorded before the check below: the version is taken whatever it says.
                st.high_water.version = st.high_water.version.max(signed.version);
            }
            // Whatever the outcome, a takeover in the meantime makes this writer a zombie.
            self.checked(&mut st).await?;
            match published {
                Ok(()) => break signed,
                // A fenced-off zombie (or a writer whose answer was lost) took the version:
                // list once to learn the highest version present and publish above it.
                Err(Error::VersionConflict { version, .. }) if !reconciled => {
                    reconciled = true;
                    let listed = scan_manifests(&self.remote).await?;
                    st.high_water.version = st
                        .high_water
                        .version
                        .max(version)
                        .max(listed.last().copied().unwrap_or(0));
                    manifest.version = st.high_water.version + 1;
                }
                Err(e) => {
                    if let Error::VersionConflict { version, .. } = &e {
                        st.high_water.version = st.high_water.version.max(*version);
                    }
                    return Err(e);
                }
            }
        };
        fail::fail_point!("checkpoint::publish::after_manifest");
        let version = signed.version;
        st.high_water.version = version;
        st.high_water.lsn = st.high_water.lsn.max(signed.covered_lsn);
        let intent_left = match self.remote.delete(&intent_key).await {
            Ok(()) => false,
            Err(e) => {
                tracing::warn!(error = %e, "published, but could not remove the intent; GC will");
                true
            }
        };
        fail::fail_point!("checkpoint::publish::after_intent_removed");
        let report = CheckpointReport {
            version,
            manifest_hash: signed.hash(),
            files: signed.files.len(),
            uploaded_objects,
            uploaded_bytes,
            reused_objects,
            total_size: signed.total_size(),
            intent_left,
        };
        tracing::info!(
            version,
            uploaded_bytes,
            reused_objects,
            "checkpoint published"
        );
        st.head = Some(signed);
        st.pending_parent = None;
        Ok(report)
    }
}

/// Publishes a signed manifest at its version's key with `PutMode::Create`: of any number of
/// concurrent publishers of one version, exactly one succeeds, on every backend. The others get
/// [`Error::VersionConflict`] with the winner's writer epoch. A create whose answer was lost is
/// recognised by reading the key back and comparing bytes.
pub async fn publish(remote: &Remote, signed: &SignedManifest) -> Result<(), Error> {
    let key = remote.key(&layout::manifest_key(signed.version));
    let outcome = remote
        .put_create(&key, Bytes::copy_from_slice(signed.bytes()))
        .await;
    let landed_ours = |existing: &Option<Bytes>| existing.as_deref() == Some(signed.bytes());
    match outcome {
        Ok(Created::Yes) => Ok(()),
        Ok(Created::AlreadyExists) => {
            let existing = remote.get(&key).await?;
            if landed_ours(&existing) {
                return Ok(());
            }
            let winner_epoch = existing
                .and_then(|b| Manifest::decode(&b).ok())
                .map(|(m, _)| m.writer_epoch);
            Err(Error::VersionConflict {
                version: signed.version,
                winner_epoch,
            })
        }
        Err(e) => match remote.get(&key).await {
            Ok(existing) if landed_ours(&existing) => Ok(()),
            _ => Err(e),
        },
    }
}
