//! Large channel values kept outside the log, by content hash.
//!
//! With a [`BlobSink`] set ([`Threads::with_blobs`](super::Threads::with_blobs)), a channel
//! value or pending write larger than [`ThreadOptions::blob_threshold_bytes`] is stored in the
//! sink under its blake3 hash ([`BlobId`]) *before* the checkpoint that references it is
//! committed, and the checkpoint record holds only the reference (hash and length). Reads fetch
//! the bytes and check length and hash, so a lost or damaged blob is a typed error
//! ([`ThreadError::BlobMissing`](super::ThreadError::BlobMissing),
//! [`ThreadError::BlobCorrupt`](super::ThreadError::BlobCorrupt)), never wrong state.
//!
//! Forks, copies and prunes copy references, not bytes. Identical values share one blob, across
//! threads too, so deleting a thread does not delete blobs; collect garbage by comparing the
//! sink's contents with [`Threads::referenced_blobs`](super::Threads::referenced_blobs). A
//! crash between the upload and the commit leaves an unreferenced blob, never a dangling
//! reference.
//!
//! Sinks: [`MemoryBlobs`] (tests, ephemeral agents) and, with the `checkpoint` feature,
//! [`ObjectStoreBlobs`] on any [`object_store`] store (S3, GCS, Azure, R2, local files).
//!
//! [`ThreadOptions::blob_threshold_bytes`]: super::ThreadOptions::blob_threshold_bytes

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The blake3 hash of a blob's bytes: its name in the sink.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// The id of `bytes`.
    ///
    /// ```
    /// use finn::threads::blobs::BlobId;
    /// let id = BlobId::of(b"hello");
    /// assert_eq!(id.to_string().len(), 64);
    /// assert_eq!(id, BlobId::of(b"hello"));
    /// ```
    pub fn of(bytes: &[u8]) -> Self {
        BlobId(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex, as used in object keys.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.to_hex())
    }
}

/// Why a blob sink failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The underlying store failed.
    #[error("blob store {op} of {id} failed")]
    Store {
        /// `"put"` or `"get"`.
        op: &'static str,
        /// The blob.
        id: BlobId,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The sink's async runtime could not start or stopped.
    #[error("blob store runtime unavailable")]
    Runtime(#[source] std::io::Error),
}

/// Where large values go. Implementations must make [`put`](Self::put) durable on return and
/// may assume `bytes` hash to `id` (the caller computed it); [`get`](Self::get) returns what was
/// stored, which the caller verifies.
///
/// Calls block. From async code, call the thread API from a blocking context
/// (`tokio::task::spawn_blocking`).
pub trait BlobSink: Send + Sync {
    /// Stores `bytes` under `id`; storing an id that exists is a no-op.
    fn put(&self, id: &BlobId, bytes: &[u8]) -> Result<(), BlobError>;
    /// The bytes stored under `id` (`None`: absent).
    fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError>;
}

impl<S: BlobSink + ?Sized> BlobSink for Arc<S> {
    fn put(&self, id: &BlobId, bytes: &[u8]) -> Result<(), BlobError> {
        (**self).put(id, bytes)
    }
    fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
        (**self).get(id)
    }
}

/// Blobs in memory. Clones share the same map.
#[derive(Clone, Debug, Default)]
pub struct MemoryBlobs {
    map: Arc<Mutex<HashMap<BlobId, Vec<u8>>>>,
}

impl MemoryBlobs {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored id.
    pub fn ids(&self) -> Vec<BlobId> {
        let mut ids: Vec<BlobId> = self.lock().keys().copied().collect();
        ids.sort();
        ids
    }

    /// Replaces the bytes under `id` (to test that reads detect damage).
    pub fn overwrite(&self, id: BlobId, bytes: Vec<u8>) {
        self.lock().insert(id, bytes);
    }

    /// Removes `id` (garbage collection, or a test of a lost blob).
    pub fn remove(&self, id: &BlobId) -> bool {
        self.lock().remove(id).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BlobId, Vec<u8>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BlobSink for MemoryBlobs {
    fn put(&self, id: &BlobId, bytes: &[u8]) -> Result<(), BlobError> {
        self.lock().entry(*id).or_insert_with(|| bytes.to_vec());
        Ok(())
    }
    fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
        Ok(self.lock().get(id).cloned())
    }
}

#[cfg(feature = "checkpoint")]
pub use object::ObjectStoreBlobs;

#[cfg(feature = "checkpoint")]
mod object {
    use std::future::Future;
    use std::sync::Arc;

    use object_store::path::Path;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    use super::{BlobError, BlobId, BlobSink};

    /// Blobs in an [`ObjectStore`], as `<prefix>/<hex blake3>`.
    ///
    /// The store's async calls run on a small runtime the sink owns, so the sink works from
    /// plain threads and is independent of the caller's runtime. For durable local blobs use
    /// `LocalFileSystem::new_with_prefix(dir)?.with_fsync(true)`: without fsync a power loss
    /// can lose a blob the WAL already references (reads then fail with
    /// [`ThreadError::BlobCorrupt`](crate::threads::ThreadError::BlobCorrupt) or
    /// [`ThreadError::BlobMissing`](crate::threads::ThreadError::BlobMissing)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use finn::threads::blobs::{BlobId, BlobSink, ObjectStoreBlobs};
    /// let store = Arc::new(object_store::memory::InMemory::new());
    /// let blobs = ObjectStoreBlobs::new(store, "agent-1/blobs")?;
    /// let bytes = vec![7u8; 1 << 20];
    /// let id = BlobId::of(&bytes);
    /// blobs.put(&id, &bytes)?;
    /// assert_eq!(blobs.get(&id)?, Some(bytes));
    /// # Ok::<(), finn::threads::blobs::BlobError>(())
    /// ```
    pub struct ObjectStoreBlobs {
        store: Arc<dyn ObjectStore>,
        prefix: String,
        // `Option` so that dropping can shut it down without blocking (dropping a runtime
        // inside another runtime's async context would panic).
        runtime: Option<tokio::runtime::Runtime>,
    }

    impl std::fmt::Debug for ObjectStoreBlobs {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ObjectStoreBlobs")
                .field("store", &self.store.to_string())
                .field("prefix", &self.prefix)
                .finish_non_exhaustive()
        }
    }

    impl Drop for ObjectStoreBlobs {
        fn drop(&mut self) {
            if let Some(rt) = self.runtime.take() {
                rt.shutdown_background();
            }
        }
    }

    impl ObjectStoreBlobs {
        /// Blobs under `prefix` (`/`-separated, may be empty) of `store`.
        pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, BlobError> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("finn-blobs")
                .enable_all()
                .build()
                .map_err(BlobError::Runtime)?;
            Ok(Self {
                store,
                prefix: prefix.trim_matches('/').to_owned(),
                runtime: Some(runtime),
            })
        }

        /// Blobs under `<remote prefix>/<sub>` of a checkpoint [`Remote`]'s store (so thread
        /// blobs live beside the agent's checkpoints, in the same bucket).
        ///
        /// [`Remote`]: finn_checkpoint::Remote
        pub fn on_remote(remote: &finn_checkpoint::Remote, sub: &str) -> Result<Self, BlobError> {
            let prefix = format!(
                "{}/{}",
                remote.prefix().trim_matches('/'),
                sub.trim_matches('/')
            );
            Self::new(remote.store().clone(), prefix.trim_matches('/'))
        }

        /// The object key of `id`.
        pub fn key(&self, id: &BlobId) -> Path {
            if self.prefix.is_empty() {
                Path::from(id.to_hex())
            } else {
                Path::from(format!("{}/{}", self.prefix, id.to_hex()))
            }
        }

        /// Runs `fut` on the sink's runtime and waits for it from this (blocking) thread.
        fn run<T: Send + 'static>(
            &self,
            fut: impl Future<Output = T> + Send + 'static,
        ) -> Result<T, BlobError> {
            let gone = || BlobError::Runtime(std::io::Error::other("blob runtime shut down"));
            let rt = self.runtime.as_ref().ok_or_else(gone)?;
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            rt.spawn(async move {
                let _ = tx.send(fut.await);
            });
            rx.recv().map_err(|_| gone())
        }
    }

    impl BlobSink for ObjectStoreBlobs {
        fn put(&self, id: &BlobId, bytes: &[u8]) -> Result<(), BlobError> {
            let store = self.store.clone();
            let key = self.key(id);
            let payload = PutPayload::from(bytes.to_vec());
            let result = self.run(async move {
                // Content-addressed: an existing object already holds these bytes.
                match store.head(&key).await {
                    Ok(_) => return Ok(()),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
                store.put(&key, payload).await.map(|_| ())
            })?;
            result.map_err(|e| BlobError::Store {
                op: "put",
                id: *id,
                source: Box::new(e),
            })
        }

        fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
            let store = self.store.clone();
            let key = self.key(id);
            let result = self.run(async move {
                match store.get(&key).await {
                    Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })?;
            result.map_err(|e| BlobError::Store {
                op: "get",
                id: *id,
                source: Box::new(e),
            })
        }
    }
}
