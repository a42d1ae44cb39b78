//! The restore side: list versions, load and verify manifests, fetch files.

use std::path::{Path, PathBuf};

use crate::Lsn;
use crate::error::Error;
use crate::layout::{self, BatchName};
use crate::lease::Fences;
use crate::manifest::{FileEntry, LineageId, Manifest, SignedManifest};
use crate::remote::Remote;
use crate::sign::Keyring;

/// One manifest object found by listing (not yet verified).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionEntry {
    /// The version its key names.
    pub version: u64,
    /// Stored size in bytes.
    pub size: u64,
}

/// How a manifest's link to its predecessor was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainCheck {
    /// It is the first manifest of its lineage (no previous link).
    Start,
    /// The previous manifest is present, of the same lineage, and hashes to the link.
    Linked,
    /// The previous manifest is older than every retained manifest (removed by retention).
    BeyondRetention,
}

/// A manifest that passed every check: structure and paths, signature by a trusted, unrevoked
/// key, key/version agreement, fencing, lineage, and its chain link.
#[derive(Clone, Debug)]
pub struct VerifiedManifest {
    signed: SignedManifest,
    chain: ChainCheck,
}

impl VerifiedManifest {
    /// The signed manifest.
    pub fn signed(&self) -> &SignedManifest {
        &self.signed
    }

    /// How its chain link was checked.
    pub fn chain(&self) -> ChainCheck {
        self.chain
    }

    /// Unwraps it.
    pub fn into_signed(self) -> SignedManifest {
        self.signed
    }
}

impl std::ops::Deref for VerifiedManifest {
    type Target = Manifest;
    fn deref(&self) -> &Manifest {
        self.signed.manifest()
    }
}

/// What [`Reader::fetch_files`] (or [`Reader::fetch_files_delta`]) wrote.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct FetchReport {
    /// Files written (downloaded or reused).
    pub files: usize,
    /// Content bytes written.
    pub bytes: u64,
    /// Stored bytes downloaded.
    pub downloaded: u64,
    /// Files whose local copy already matched (size and BLAKE3) and was kept or copied instead
    /// of downloaded.
    pub reused_files: usize,
    /// Their content bytes.
    pub reused_bytes: u64,
    /// Files the checkpoint does not hold that an in-place delta restore removed.
    pub removed_files: usize,
}

/// Reads checkpoints from a prefix. Holds no lease; safe to use while a writer runs.
///
/// A typical restore (what finn-recovery does):
/// 1. [`Reader::versions`] newest first; [`Reader::load`] each until one verifies.
/// 2. [`Reader::fetch_files`] into a staging directory (every file hash-checked, written
///    durably), then swap the staging directory into place.
/// 3. [`Reader::shipped_after`] with the manifest's lineage and covered LSN, and
///    `Wal::append_replicated` the records.
#[derive(Clone, Debug)]
pub struct Reader {
    remote: Remote,
    keyring: Keyring,
    lineage: Option<LineageId>,
}

/// Versions of every manifest key under `manifests/`, ascending.
pub(crate) async fn scan_manifests(remote: &Remote) -> Result<Vec<u64>, Error> {
    Ok(scan_manifest_entries(remote)
        .await?
        .into_iter()
        .map(|e| e.version)
        .collect())
}

async fn scan_manifest_entries(remote: &Remote) -> Result<Vec<VersionEntry>, Error> {
    let mut out: Vec<VersionEntry> = remote
        .list(layout::MANIFESTS)
        .await?
        .into_iter()
        .filter_map(|m| {
            let rel = remote.relative(&m.location)?;
            Some(VersionEntry {
                version: layout::parse_manifest_key(&rel)?,
                size: m.size,
            })
        })
        .collect();
    out.sort_by_key(|e| e.version);
    Ok(out)
}

/// Every shipped batch (of one lineage, or all), sorted by first LSN.
pub(crate) async fn scan_batches(
    remote: &Remote,
    lineage: Option<LineageId>,
) -> Result<Vec<BatchName>, Error> {
    let dir = match lineage {
        Some(l) => layout::wal_dir(l),
        None => layout::WAL.to_owned(),
    };
    let mut out: Vec<BatchName> = remote
        .list(&dir)
        .await?
        .into_iter()
        .filter_map(|m| layout::parse_batch_key(&remote.relative(&m.location)?))
        .collect();
    out.sort();
    Ok(out)
}

impl Reader {
    /// A reader of `remote` accepting manifests signed by keys `keyring` trusts.
    pub fn new(remote: Remote, keyring: Keyring) -> Self {
        Self {
            remote,
            keyring,
            lineage: None,
        }
    }

    /// Pins the reader to one lineage: loading a manifest of another lineage fails with
    /// [`Error::LineageMismatch`].
    pub fn with_lineage(mut self, lineage: LineageId) -> Self {
        self.lineage = Some(lineage);
        self
    }

    /// The lineage the reader is pinned to ([`Reader::with_lineage`]), if any.
    pub fn pinned_lineage(&self) -> Option<LineageId> {
        self.lineage
    }

    /// The remote.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    pub(crate) fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The lineage a restore should follow: that of the newest manifest that verifies, else
    /// that of the newest accepted shipped batch (WAL shipped before any checkpoint).
    pub async fn lineage_of_newest(&self) -> Result<Option<LineageId>, Error> {
        if let Some(m) = self.newest().await? {
            return Ok(Some(m.lineage));
        }
        let fences = self.fences().await?;
        Ok(scan_batches(&self.remote, None)
            .await?
            .into_iter()
            .filter(|b| !fences.batch_fenced(b.epoch, b.last))
            .max_by_key(|b| b.last)
            .map(|b| b.lineage))
    }

    /// Every manifest version present, newest first (listing only; nothing verified yet).
    pub async fn versions(&self) -> Result<Vec<VersionEntry>, Error> {
        let mut v = scan_manifest_entries(&self.remote).await?;
        v.reverse();
        Ok(v)
    }

    /// The fencing state (current epoch, verified seals).
    pub async fn fences(&self) -> Result<Fences, Error> {
        Ok(Fences::load(&self.remote, &self.keyring).await?.0)
    }

    /// Loads and fully verifies manifest `version`: structure and paths, signature, that its key
    /// and content agree, that it was not written by a fenced-off epoch, its lineage (if the
    /// reader is pinned), and its chain link (the previous manifest must hash to the link and
    /// be of the same lineage, unless retention removed it).
    pub async fn load(&self, version: u64) -> Result<VerifiedManifest, Error> {
        let fences = self.fences().await?;
        let signed = self.load_unchained(version, &fences).await?;
        let chain = match signed.previous {
            None => ChainCheck::Start,
            Some(link) => {
                let key = self.remote.key(&layout::manifest_key(link.version));
                match self.remote.get(&key).await? {
                    Some(bytes) => {
                        if crate::manifest::ManifestHash::of(&bytes) != link.hash {
                            return Err(Error::ChainBroken {
                                version,
                                previous: link.version,
                            });
                        }
                        let (prev, _) = Manifest::decode(&bytes)
                            .map_err(|d| Error::malformed(link.version, d))?;
                        if prev.lineage != signed.lineage {
                            return Err(Error::LineageMismatch {
                                version: link.version,
                                expected: signed.lineage,
                                found: prev.lineage,
                            });
                        }
                        ChainCheck::Linked
                    }
                    None => {
                        let oldest = scan_manifests(&self.remote)
                            .await?
                            .first()
                            .copied()
                            .unwrap_or(0);
                        // Removed by count retention (older than everything present), or
                        // from the middle by a retention policy that left a signed tombstone.
                        if link.version < oldest
                            || crate::tombstone::removed_on_purpose(
                                &self.remote,
                                &self.keyring,
                                link.version,
                                link.hash,
                                signed.lineage,
                            )
                            .await?
                        {
                            ChainCheck::BeyondRetention
                        } else {
                            return Err(Error::ChainBroken {
                                version,
                                previous: link.version,
                            });
                        }
                    }
                }
            }
        };
        Ok(VerifiedManifest { signed, chain })
    }

    /// The newest manifest that fully verifies (of the pinned lineage, if any), skipping — and
    /// logging — those that do not.
    pub async fn newest(&self) -> Result<Option<VerifiedManifest>, Error> {
        for entry in self.versions().await? {
            match self.load(entry.version).await {
                Ok(m) => return Ok(Some(m)),
                Err(e @ Error::Remote { .. }) => return Err(e),
                Err(e) => tracing::warn!(version = entry.version, error = %e, "manifest rejected"),
            }
        }
        Ok(None)
    }

    /// Everything [`Reader::load`] checks except the chain link.
    pub(crate) async fn load_unchained(
        &self,
        version: u64,
        fences: &Fences,
    ) -> Result<SignedManifest, Error> {
        let key = self.remote.key(&layout::manifest_key(version));
        let bytes = self
            .remote
            .get(&key)
            .await?
            .ok_or(Error::ManifestMissing { version })?;
        let signed = SignedManifest::verify(bytes.to_vec(), &self.keyring)
            .map_err(|reason| Error::ManifestRejected { version, reason })?;
        if signed.version != version {
            return Err(Error::ManifestMisplaced {
                key_version: version,
                content_version: signed.version,
            });
        }
        if fences.manifest_fenced(signed.writer_epoch, version) {
            return Err(Error::FencedWrite {
                version,
                epoch: signed.writer_epoch,
            });
        }
        if let Some(expected) = self.lineage
            && signed.lineage != expected
        {
            return Err(Error::LineageMismatch {
                version,
                expected,
                found: signed.lineage,
            });
        }
        Ok(signed)
    }

    /// The covered LSN a manifest claims, without verifying it (for high-water marks only).
    pub(crate) async fn peek_covered_lsn(&self, version: u64) -> Result<Option<Lsn>, Error> {
        let key = self.remote.key(&layout::manifest_key(version));
        Ok(self
            .remote
            .get(&key)
            .await?
            .and_then(|b| Manifest::decode(&b).ok())
            .map(|(m, _)| m.covered_lsn))
    }

    /// Downloads one file's content into memory, verifying size and hash.
    pub async fn fetch_bytes(&self, entry: &FileEntry) -> Result<Vec<u8>, Error> {
        let key = self
            .remote
            .key(&layout::object_key(&entry.blake3, entry.codec));
        let stored = self
            .remote
            .get(&key)
            .await?
            .ok_or_else(|| Error::ObjectMissing {
                key: key.to_string(),
            })?;
        if stored.len() as u64 != entry.stored_size {
            return Err(Error::SizeMismatch {
                key: key.to_string(),
                expected: entry.stored_size,
                actual: stored.len() as u64,
            });
        }
        let content = crate::codec::decode(entry.codec, &stored, entry.size).map_err(|source| {
            Error::Decode {
                key: key.to_string(),
                source,
            }
        })?;
        check_content(entry, content.len() as u64, blake3::hash(&content))?;
        Ok(content)
    }

    /// Opens the stored object holding `entry`'s content (its key and the streaming read),
    /// refusing it before any byte is read when its stored size is not the manifest's.
    pub(crate) async fn open_object(
        &self,
        entry: &FileEntry,
    ) -> Result<(object_store::path::Path, object_store::GetResult), Error> {
        let key = self
            .remote
            .key(&layout::object_key(&entry.blake3, entry.codec));
        let got = self
            .remote
            .get_stream(&key)
            .await?
            .ok_or_else(|| Error::ObjectMissing {
                key: key.to_string(),
            })?;
        if got.meta.size != entry.stored_size {
            return Err(Error::SizeMismatch {
                key: key.to_string(),
                expected: entry.stored_size,
                actual: got.meta.size,
            });
        }
        Ok((key, got))
    }

    /// Streams one file into `dest` (a file path): temp file beside it, decoded and hashed
    /// chunk by chunk, fdatasync, then renamed into place and the directory fsynced. Nothing is
    /// left at `dest` unless the content verified.
    pub async fn fetch_file(&self, entry: &FileEntry, dest: &Path) -> Result<u64, Error> {
        let (key, got) = self.open_object(entry).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
        let sink = spawn_sink(entry.clone(), dest.to_path_buf(), key.to_string(), rx);
        let mut stream = got.into_stream();
        let mut downloaded = 0u64;
        let mut failed = None;
        loop {
            match self.remote.next_chunk(&key, &mut stream).await {
                Ok(Some(chunk)) => {
                    downloaded += chunk.len() as u64;
                    if tx.send(chunk).await.is_err() {
                        break; // the sink failed; its error is returned below
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let sunk = sink.await.map_err(|e| Error::Io {
            path: dest.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        sunk?;
        Ok(downloaded)
    }

    /// Downloads every file of `manifest` under `dir` (created if missing), verifying each, with
    /// bounded parallelism. Files are written durably; on error some files may be present, so
    /// fetch into a fresh staging directory and move it into place only on success. An error
    /// is returned only once every download already started has stopped: nothing writes into
    /// `dir` after the call returns, so the caller may remove it at once.
    pub async fn fetch_files(
        &self,
        manifest: &Manifest,
        dir: &Path,
        parallelism: usize,
    ) -> Result<FetchReport, Error> {
        self.fetch_files_counted(manifest, dir, parallelism, None)
            .await
    }

    pub(crate) async fn fetch_files_counted(
        &self,
        manifest: &Manifest,
        dir: &Path,
        parallelism: usize,
        progress: Option<&crate::RestoreProgress>,
    ) -> Result<FetchReport, Error> {
        use futures::StreamExt;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        // After a failure no new download starts, and the running ones are awaited: a dropped
        // download would leave its file writer running on a blocking thread.
        let failed = std::sync::atomic::AtomicBool::new(false);
        let failed = &failed;
        let jobs: Vec<_> = manifest
            .files
            .iter()
            .map(|f| {
                Box::pin(async move {
                    if failed.load(std::sync::atomic::Ordering::Acquire) {
                        return Ok(None);
                    }
                    let dest = f.path.under(dir);
                    if let Some(parent) = dest.parent() {
                        tokio::fs::create_dir_all(parent)
                            .await
                            .map_err(|source| Error::Io {
                                path: parent.to_path_buf(),
                                source,
                            })?;
                    }
                    self.fetch_file(f, &dest).await.map(|d| Some((f.size, d)))
                })
            })
            .collect();
        let mut report = FetchReport::default();
        let mut first_error = None;
        let mut results = futures::stream::iter(jobs).buffer_unordered(parallelism.max(1));
        while let Some(r) = results.next().await {
            match r {
                Ok(Some((size, downloaded))) => {
                    report.files += 1;
                    report.bytes += size;
                    report.downloaded += downloaded;
                    if let Some(p) = progress {
                        p.file_done(size);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    failed.store(true, std::sync::atomic::Ordering::Release);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// A writer that hashes and counts the decoded bytes of one object on their way to `inner` (a
/// file when fetching, [`std::io::sink`] when only validating), failing as soon as they
/// exceed the size the manifest records.
pub(crate) struct Hashing<W> {
    pub(crate) inner: W,
    hasher: blake3::Hasher,
    len: u64,
    limit: u64,
}

impl<W: std::io::Write> Hashing<W> {
    pub(crate) fn new(inner: W, entry: &FileEntry) -> Self {
        Self {
            inner,
            hasher: blake3::Hasher::new(),
            len: 0,
            limit: entry.size,
        }
    }

    /// Whether what passed through is exactly `entry`'s content (size and BLAKE3).
    pub(crate) fn check(&self, entry: &FileEntry) -> Result<(), Error> {
        check_content(entry, self.len, self.hasher.finalize())
    }
}

/// Whether `size` bytes hashing to `hash` are exactly `entry`'s content.
fn check_content(entry: &FileEntry, size: u64, hash: blake3::Hash) -> Result<(), Error> {
    if size != entry.size || *hash.as_bytes() != entry.blake3.0 {
        return Err(Error::HashMismatch {
            path: entry.path.to_string(),
            expected: entry.blake3.to_hex(),
            actual: hash.to_hex().to_string(),
        });
    }
    Ok(())
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.len += buf.len() as u64;
        if self.len > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "object expands past its recorded size",
            ));
        }
        self.hasher.update(buf);
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn spawn_sink(
    entry: FileEntry,
    dest: PathBuf,
    key: String,
    mut rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
) -> tokio::task::JoinHandle<Result<(), Error>> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let dir = dest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.finn-fetch-{}", ulid::Ulid::new()));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let result = (|| {
            let sink = Hashing::new(file, &entry);
            let mut decoder =
                crate::codec::StreamDecoder::new(entry.codec, sink).map_err(|source| {
                    Error::Decode {
                        key: key.clone(),
                        source,
                    }
                })?;
            while let Some(chunk) = rx.blocking_recv() {
                decoder.write_all(&chunk).map_err(|source| Error::Decode {
                    key: key.clone(),
                    source,
                })?;
            }
            let sink = decoder.finish().map_err(|source| Error::Decode {
                key: key.clone(),
                source,
            })?;
            sink.check(&entry)?;
            sink.inner.sync_data().map_err(io(&tmp))?;
            drop(sink);
            std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
            finn_wal::fs::sync_dir(&dir).map_err(io(&dir))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    })
}
