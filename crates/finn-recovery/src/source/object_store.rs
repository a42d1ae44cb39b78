//! The object-store source: the newest manifest that verifies, then older ones newest first.
//!
//! Manifests are read with [`finn_checkpoint::Reader`], so every check is finn-checkpoint's:
//! structure and paths (a manifest naming `../outside` is malformed), the ed25519 signature by a
//! key the [`Keyring`] trusts and has not revoked (the anchors kept trusting a revoked active
//! key), fencing, lineage and the chain link. Files are downloaded with their blake3 checked,
//! into the staging directory; the cascade then re-verifies the staged tree on disk before the
//! swap. Records shipped after the manifest's covered LSN come from the same prefix.

use std::sync::Mutex;

use async_trait::async_trait;
use finn_checkpoint::{Keyring, LineageId, Reader, Remote};
use finn_wal::{Lsn, Record};

use crate::report::ManifestInfo;
use crate::source::{
    Candidate, RecoverySource, RemoteHead, ShippedWal, SourceError, SourceKind, Staged,
};
use crate::stage::Staging;
use crate::verify::ExpectedFile;

/// Default number of files downloaded at once.
pub const DEFAULT_PARALLELISM: usize = 8;

/// Restores from a finn-checkpoint prefix of any `object_store` backend.
///
/// ```no_run
/// use finn_checkpoint::{Keyring, Remote, RemoteOptions, StoreOptions, VerifyingKey};
/// use finn_recovery::source::object_store::ObjectStoreSource;
/// # fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let remote = Remote::from_url("s3://bucket/agent-1", &StoreOptions::from_env(), RemoteOptions::default())?;
/// let keyring = Keyring::trusting(VerifyingKey::load("/etc/agent/checkpoint.pub")?);
/// let source = ObjectStoreSource::new(remote, keyring);
/// # let _ = source; Ok(()) }
/// ```
#[derive(Debug)]
pub struct ObjectStoreSource {
    name: String,
    reader: Reader,
    parallelism: usize,
    max_candidates: usize,
    /// Lineage of the manifest staged last, for [`RecoverySource::wal_after`].
    lineage: Mutex<Option<LineageId>>,
}

impl ObjectStoreSource {
    /// A source reading `remote`, trusting manifests signed by `keyring`'s keys.
    pub fn new(remote: Remote, keyring: Keyring) -> Self {
        Self::from_reader(Reader::new(remote, keyring))
    }

    /// A source over a configured reader (e.g. pinned to a lineage).
    pub fn from_reader(reader: Reader) -> Self {
        Self {
            name: "object-store".into(),
            reader,
            parallelism: DEFAULT_PARALLELISM,
            max_candidates: usize::MAX,
            lineage: Mutex::new(None),
        }
    }

    /// Renames the source in reports (default `object-store`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Files downloaded at once. Default: [`DEFAULT_PARALLELISM`].
    pub fn with_parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism.max(1);
        self
    }

    /// Tries at most `n` manifests, newest first. Default: all retained.
    pub fn with_max_candidates(mut self, n: usize) -> Self {
        self.max_candidates = n.max(1);
        self
    }

    /// The shipped records of `lineage` in `(after, until]`, each batch following the one before
    /// it (its `prev` is covered; LSNs may jump where a fork did), each batch verified
    /// (signature, record CRCs) by [`Reader::fetch_batch`]. Of overlapping objects (compaction
    /// levels) the one starting lowest, then reaching furthest, is read.
    async fn contiguous_until(
        &self,
        lineage: LineageId,
        after: Lsn,
        until: Lsn,
    ) -> Result<Vec<Record>, SourceError> {
        let objects = self.reader.wal_objects(lineage).await?;
        let mut covered = after;
        let mut out = Vec::new();
        while covered < until {
            let Some(next) = objects
                .iter()
                .filter(|o| o.name.last > covered)
                .min_by_key(|o| (o.name.first, std::cmp::Reverse(o.name.last)))
            else {
                break;
            };
            let batch = self.reader.fetch_batch(&next.name).await?;
            if batch.prev > covered {
                break;
            }
            let before = covered;
            for record in batch.records {
                if record.lsn > covered && record.lsn <= until {
                    covered = record.lsn;
                    out.push(record);
                }
            }
            if covered == before {
                break;
            }
        }
        Ok(out)
    }

    fn unavailable(e: finn_checkpoint::Error) -> SourceError {
        SourceError::Unavailable {
            reason: e.to_string(),
        }
    }
}

#[async_trait]
impl RecoverySource for ObjectStoreSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> SourceKind {
        SourceKind::ObjectStore
    }

    async fn check_available(&self) -> Result<(), SourceError> {
        let versions = self.reader.versions().await.map_err(Self::unavailable)?;
        if versions.is_empty() {
            return Err(SourceError::Empty);
        }
        Ok(())
    }

    async fn candidates(&self) -> Result<Vec<Candidate>, SourceError> {
        let versions = self.reader.versions().await.map_err(Self::unavailable)?;
        Ok(versions
            .into_iter()
            .take(self.max_candidates)
            .map(|v| Candidate {
                version: v.version,
                label: format!("manifest {}", v.version),
            })
            .collect())
    }

    async fn stage(
        &self,
        candidate: &Candidate,
        staging: &mut Staging,
    ) -> Result<Staged, SourceError> {
        use futures::StreamExt;
        let manifest = self.reader.load(candidate.version).await?;
        let mut jobs = Vec::with_capacity(manifest.files.len());
        for entry in &manifest.files {
            let dest = staging.destination(&entry.path, entry.size)?;
            let reader = self.reader.clone();
            let entry = entry.clone();
            // Owned futures: each download verifies size and blake3 while it streams, writes a
            // temp file beside `dest`, fdatasyncs and renames it.
            jobs.push(async move { reader.fetch_file(&entry, &dest).await });
        }
        let mut downloads = futures::stream::iter(jobs).buffer_unordered(self.parallelism);
        // Let every started download finish even after a failure: a download's writer runs on
        // its own task, and returning early would let it write into the staging directory after
        // the cascade discarded it.
        let mut failed = None;
        while let Some(result) = downloads.next().await {
            if let Err(e) = result {
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
        tracing::debug!(
            version = manifest.version,
            files = manifest.files.len(),
            "staged manifest"
        );
        let files = manifest
            .files
            .iter()
            .map(|f| ExpectedFile {
                path: f.path.clone(),
                size: f.size,
                blake3: f.blake3.0,
            })
            .collect();
        if let Ok(mut lineage) = self.lineage.lock() {
            *lineage = Some(manifest.lineage);
        }
        Ok(Staged {
            files,
            manifest: ManifestInfo {
                version: manifest.version,
                lsn: manifest.covered_lsn,
                key_id: Some(manifest.signer.to_string()),
                label: candidate.label.clone(),
                lineage: Some(manifest.lineage),
            },
        })
    }

    async fn wal_after(&self, after: Lsn) -> Result<Option<Vec<Record>>, SourceError> {
        let lineage = self.lineage.lock().ok().and_then(|l| *l);
        let Some(lineage) = lineage else {
            // Not the source the base came from: its records may belong to another lineage.
            return Ok(None);
        };
        let records = self.reader.shipped_after(lineage, after).await?;
        Ok(Some(records))
    }

    async fn wal_of(
        &self,
        lineage: LineageId,
        after: Lsn,
    ) -> Result<Option<ShippedWal>, SourceError> {
        match self.reader.shipped_after(lineage, after).await {
            Ok(records) => Ok(Some(ShippedWal { records, gap: None })),
            Err(finn_checkpoint::Error::ShippedGap {
                expected_prev,
                found_prev,
                first,
                ..
            }) => {
                // The records before the hole are verified and chained: they are worth
                // replaying. The fast reader gives nothing back on a hole, so read them again
                // up to it.
                tracing::warn!(%lineage, missing_from = %found_prev.next(), missing_to = %expected_prev, resumes_at = %first, "shipped wal has a hole");
                let records = self.contiguous_until(lineage, after, found_prev).await?;
                Ok(Some(ShippedWal {
                    records,
                    gap: Some((found_prev.next(), expected_prev)),
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn head(&self) -> Result<Option<RemoteHead>, SourceError> {
        let (lineage, version, manifest_lsn) = match self.reader.newest().await? {
            Some(m) => (m.lineage, m.version, m.covered_lsn),
            None => match self.reader.lineage_of_newest().await? {
                Some(lineage) => (lineage, 0, Lsn::ZERO),
                None => return Ok(None),
            },
        };
        let shipped_lsn = self.reader.shipped_high_water(lineage).await?;
        Ok(Some(RemoteHead {
            lineage,
            version,
            manifest_lsn,
            shipped_lsn,
        }))
    }
}
