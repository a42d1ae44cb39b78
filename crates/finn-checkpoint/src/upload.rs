//! Phase 1 of a checkpoint: hash every file, then upload the objects the store does not hold yet.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;

use crate::codec::{Codec, Compression};
use crate::error::Error;
use crate::layout;
use crate::manifest::ContentHash;
use crate::path::CheckpointPath;
use crate::remote::{Created, Remote};

/// Default size above which a file is streamed and uploaded in parts (8 MiB).
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 8 << 20;
/// Default part size of multipart uploads (8 MiB; S3 needs at least 5 MiB except for the last).
pub const DEFAULT_PART_SIZE: usize = 8 << 20;

/// Where a file's content comes from.
#[derive(Clone, Debug)]
pub enum FileSource {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A local file, read (and for large files streamed) at checkpoint time.
    Path(PathBuf),
}

/// The files, covered LSN and metadata of one checkpoint.
///
/// ```
/// use finn_checkpoint::{CheckpointInput, Lsn};
/// let mut input = CheckpointInput::new(Lsn::new(42));
/// input.add_bytes("state/agent.json", b"{}".to_vec())?;
/// input.set_metadata("agent", "finn");
/// assert!(input.add_bytes("../escape", b"x".to_vec()).is_err());
/// # Ok::<(), finn_checkpoint::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CheckpointInput {
    pub(crate) files: BTreeMap<CheckpointPath, FileSource>,
    pub(crate) covered_lsn: crate::Lsn,
    pub(crate) metadata: BTreeMap<String, String>,
}

impl CheckpointInput {
    /// An empty checkpoint covering WAL records up to and including `covered_lsn`.
    pub fn new(covered_lsn: crate::Lsn) -> Self {
        Self {
            files: BTreeMap::new(),
            covered_lsn,
            metadata: BTreeMap::new(),
        }
    }

    /// Every regular file under `dir` (recursively), at its path relative to `dir`. Symbolic
    /// links are refused (a checkpoint holds content, not links that could point anywhere).
    ///
    /// In-flight atomic writes are skipped: a file named `.<name>.<…>.tmp` is the temporary of
    /// a temp-then-rename replacement (`finn_wal::fs::write_atomic`, finn-identity's writer)
    /// that another thread may rename away at any moment; its content is never state.
    pub fn from_dir(dir: impl AsRef<Path>, covered_lsn: crate::Lsn) -> Result<Self, Error> {
        let root = dir.as_ref();
        let mut input = Self::new(covered_lsn);
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d).map_err(|source| Error::Io {
                path: d.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| Error::Io {
                    path: d.clone(),
                    source,
                })?;
                let p = entry.path();
                let ty = entry.file_type().map_err(|source| Error::Io {
                    path: p.clone(),
                    source,
                })?;
                if ty.is_dir() {
                    stack.push(p);
                } else if ty.is_file() {
                    if is_atomic_write_temporary(&entry.file_name()) {
                        continue;
                    }
                    let cp = CheckpointPath::from_relative(root, &p).map_err(|defect| {
                        Error::InvalidPath {
                            path: p.display().to_string(),
                            defect,
                        }
                    })?;
                    input.files.insert(cp, FileSource::Path(p));
                } else {
                    return Err(Error::Io {
                        path: p,
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "not a regular file",
                        ),
                    });
                }
            }
        }
        Ok(input)
    }

    fn add(&mut self, path: &str, source: FileSource) -> Result<&mut Self, Error> {
        let cp = CheckpointPath::new(path).map_err(|defect| Error::InvalidPath {
            path: path.to_owned(),
            defect,
        })?;
        if self.files.contains_key(&cp) {
            return Err(Error::DuplicatePath {
                path: path.to_owned(),
            });
        }
        self.files.insert(cp, source);
        Ok(self)
    }

    /// Adds in-memory content at `path`.
    pub fn add_bytes(&mut self, path: &str, bytes: impl Into<Bytes>) -> Result<&mut Self, Error> {
        self.add(path, FileSource::Bytes(bytes.into()))
    }

    /// Adds the local file `local` at `path`.
    pub fn add_file(&mut self, path: &str, local: impl Into<PathBuf>) -> Result<&mut Self, Error> {
        self.add(path, FileSource::Path(local.into()))
    }

    /// Sets a metadata entry.
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The covered LSN.
    pub fn covered_lsn(&self) -> crate::Lsn {
        self.covered_lsn
    }
}

/// True for the temporary of a temp-then-rename write: `.<name>.<…>.tmp`.
fn is_atomic_write_temporary(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.len() > ".tmp".len() + 1 && n.starts_with('.') && n.ends_with(".tmp"))
}

/// Upload settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UploadSettings {
    pub(crate) compression: Compression,
    pub(crate) multipart_threshold: u64,
    pub(crate) part_size: usize,
    pub(crate) verify_content: bool,
}

/// A hashed file, ready to upload.
pub(crate) struct Prepared {
    pub(crate) path: CheckpointPath,
    pub(crate) source: FileSource,
    pub(crate) size: u64,
    pub(crate) hash: ContentHash,
    pub(crate) codec: Codec,
    /// Encoded bytes for files small enough to hold in memory.
    pub(crate) encoded: Option<Bytes>,
}

impl Prepared {
    pub(crate) fn key(&self) -> String {
        layout::object_key(&self.hash, self.codec)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Hashes (and for small files encodes) one file. Runs on a blocking thread.
pub(crate) fn prepare(
    path: CheckpointPath,
    source: FileSource,
    s: UploadSettings,
) -> Result<Prepared, Error> {
    let small = |bytes: &[u8], source: FileSource| -> Result<Prepared, Error> {
        let hash = ContentHash::of(bytes);
        let (codec, encoded) = s
            .compression
            .encode(bytes)
            .map_err(io_err(Path::new(path.as_str())))?;
        Ok(Prepared {
            path: path.clone(),
            source,
            size: bytes.len() as u64,
            hash,
            codec,
            encoded: Some(Bytes::from(encoded)),
        })
    };
    match &source {
        FileSource::Bytes(b) if (b.len() as u64) <= s.multipart_threshold => {
            small(&b.clone(), source)
        }
        FileSource::Bytes(b) => {
            let hash = ContentHash::of(b);
            let codec = s.compression.codec_for(&b[..b.len().min(16)]);
            Ok(Prepared {
                path,
                size: b.len() as u64,
                hash,
                codec,
                encoded: None,
                source,
            })
        }
        FileSource::Path(p) => {
            let mut file = std::fs::File::open(p).map_err(io_err(p))?;
            let len = file.metadata().map_err(io_err(p))?.len();
            if len <= s.multipart_threshold {
                let mut buf = Vec::with_capacity(len as usize);
                file.read_to_end(&mut buf).map_err(io_err(p))?;
                return small(&buf, source);
            }
            let mut hasher = blake3::Hasher::new();
            let mut head = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut size = 0u64;
            loop {
                let n = file.read(&mut buf).map_err(io_err(p))?;
                if n == 0 {
                    break;
                }
                if head.len() < 16 {
                    head.extend_from_slice(&buf[..n.min(16 - head.len())]);
                }
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            let codec = s.compression.codec_for(&head);
            Ok(Prepared {
                path,
                size,
                hash: ContentHash(*hasher.finalize().as_bytes()),
                codec,
                encoded: None,
                source,
            })
        }
    }
}

/// What happened to one object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Uploaded {
    pub(crate) stored_size: u64,
    /// Bytes sent (0 when the object already existed).
    pub(crate) sent: u64,
}

/// Uploads one object unless it exists, then verifies it.
pub(crate) async fn upload(
    remote: &Remote,
    p: &Prepared,
    s: UploadSettings,
) -> Result<Uploaded, Error> {
    let key = remote.key(&p.key());
    if let Some(meta) = remote.head(&key).await? {
        // Content-addressed: an object at this key holds this content. Its size is checked here;
        // its content is checked against the manifest's hash on every restore.
        if let Some(enc) = &p.encoded
            && meta.size != enc.len() as u64
        {
            return Err(Error::SizeMismatch {
                key: key.to_string(),
                expected: enc.len() as u64,
                actual: meta.size,
            });
        }
        return Ok(Uploaded {
            stored_size: meta.size,
            sent: 0,
        });
    }
    let (stored_size, stored_hash) = match &p.encoded {
        Some(enc) if enc.len() as u64 <= s.multipart_threshold => {
            // Create, not overwrite: a concurrent identical upload is fine, a clobber is not.
            if let Created::AlreadyExists = remote.put_create(&key, enc.clone()).await? {
                tracing::debug!(%key, "object appeared concurrently");
            }
            (enc.len() as u64, *blake3::hash(enc).as_bytes())
        }
        Some(enc) => {
            let enc = enc.clone();
            let part = s.part_size;
            let parts = (0..enc.len())
                .step_by(part)
                .map(move |at| Ok(enc.slice(at..(at + part).min(enc.len()))));
            remote
                .put_multipart(&key, futures::stream::iter(parts))
                .await?;
            let enc = p
                .encoded
                .as_ref()
                .map(|e| (e.len() as u64, *blake3::hash(e).as_bytes()));
            enc.unwrap_or((0, [0; 32]))
        }
        None => stream_upload(remote, &key, p, s).await?,
    };
    let meta = remote
        .head(&key)
        .await?
        .ok_or_else(|| Error::ObjectMissing {
            key: key.to_string(),
        })?;
    if meta.size != stored_size {
        return Err(Error::SizeMismatch {
            key: key.to_string(),
            expected: stored_size,
            actual: meta.size,
        });
    }
    if s.verify_content {
        // Streamed: a large object is never held in memory whole.
        let got = remote
            .get_stream(&key)
            .await?
            .ok_or_else(|| Error::ObjectMissing {
                key: key.to_string(),
            })?;
        let mut stream = got.into_stream();
        let mut hasher = blake3::Hasher::new();
        while let Some(chunk) = remote.next_chunk(&key, &mut stream).await? {
            hasher.update(&chunk);
        }
        let got = *hasher.finalize().as_bytes();
        if got != stored_hash {
            return Err(Error::HashMismatch {
                path: key.to_string(),
                expected: hex::encode(stored_hash),
                actual: hex::encode(got),
            });
        }
    }
    Ok(Uploaded {
        stored_size,
        sent: stored_size,
    })
}

/// Reads, encodes and uploads a large file in parts on a blocking thread, checking that the
/// content still hashes to what phase 1 saw. Returns stored size and stored-bytes hash.
async fn stream_upload(
    remote: &Remote,
    key: &object_store::path::Path,
    p: &Prepared,
    s: UploadSettings,
) -> Result<(u64, [u8; 32]), Error> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, Error>>(2);
    let source = p.source.clone();
    let (expected, codec, level, part_size) = (p.hash, p.codec, s.compression.level(), s.part_size);
    let label = match &p.source {
        FileSource::Path(path) => path.clone(),
        FileSource::Bytes(_) => PathBuf::from(p.path.as_str()),
    };
    let producer = tokio::task::spawn_blocking(move || -> Result<(u64, [u8; 32]), Error> {
        let reader: Box<dyn Read + Send> = match &source {
            FileSource::Bytes(b) => Box::new(std::io::Cursor::new(b.clone())),
            FileSource::Path(path) => Box::new(std::fs::File::open(path).map_err(io_err(path))?),
        };
        let hashing = HashingReader {
            inner: reader,
            hasher: blake3::Hasher::new(),
        };
        let mut encoded: Box<dyn ReadInto> = match codec {
            Codec::Raw => Box::new(hashing),
            Codec::Zstd => {
                Box::new(zstd::stream::read::Encoder::new(hashing, level).map_err(io_err(&label))?)
            }
        };
        let mut stored_hasher = blake3::Hasher::new();
        let mut stored = 0u64;
        let mut pending: Option<Bytes> = None;
        loop {
            let mut part = vec![0u8; part_size];
            let mut filled = 0;
            while filled < part_size {
                let n = encoded.read(&mut part[filled..]).map_err(io_err(&label))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            part.truncate(filled);
            if filled == 0 {
                break;
            }
            stored_hasher.update(&part);
            stored += filled as u64;
            if let Some(prev) = pending.replace(Bytes::from(part))
                && tx.blocking_send(Ok(prev)).is_err()
            {
                return Ok((0, [0; 32]));
            }
        }
        // The last part is held back until the content is known to be unchanged, so a file
        // modified during the upload never completes as an object.
        if encoded.content_hash() != expected.0 {
            let _ = tx.blocking_send(Err(Error::SourceChanged { path: label }));
            return Err(Error::SourceChanged {
                path: PathBuf::new(),
            });
        }
        if let Some(last) = pending {
            let _ = tx.blocking_send(Ok(last));
        }
        Ok((stored, *stored_hasher.finalize().as_bytes()))
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed();
    let uploaded = remote.put_multipart(key, stream).await;
    let produced = producer.await.map_err(|e| Error::Io {
        path: PathBuf::from(p.path.as_str()),
        source: std::io::Error::other(e.to_string()),
    })?;
    uploaded?;
    produced
}

/// A reader that hashes what passes through it.
struct HashingReader {
    inner: Box<dyn Read + Send>,
    hasher: blake3::Hasher,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader over (possibly encoded) content that knows the hash of the raw content it consumed.
trait ReadInto: Read + Send {
    fn content_hash(&self) -> [u8; 32];
}

impl ReadInto for HashingReader {
    fn content_hash(&self) -> [u8; 32] {
        *self.hasher.finalize().as_bytes()
    }
}

impl ReadInto for zstd::stream::read::Encoder<'static, std::io::BufReader<HashingReader>> {
    fn content_hash(&self) -> [u8; 32] {
        *self.get_ref().get_ref().hasher.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint of a directory another thread writes into with temp-then-rename must not
    /// list the temporary: it may be renamed away before it is read, failing the checkpoint
    /// (found by `cargo xtask crash --target runtime`: identity edits during a checkpoint).
    #[test]
    fn from_dir_skips_in_flight_atomic_write_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "BEAUVOIR.md",
            ".BEAUVOIR.md.1040.30.tmp",
            ".hidden",
            "notes.tmp",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("learning")).unwrap();
        std::fs::write(dir.path().join("learning/.snapshot.json.7.1.tmp"), b"x").unwrap();
        let input = CheckpointInput::from_dir(dir.path(), crate::Lsn::new(1)).unwrap();
        let paths: Vec<&str> = input.files.keys().map(CheckpointPath::as_str).collect();
        assert_eq!(paths, [".hidden", "BEAUVOIR.md", "notes.tmp"]);
    }
}
