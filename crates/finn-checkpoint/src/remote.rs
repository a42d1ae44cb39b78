//! A handle on one prefix of one object store. Every call goes through a circuit breaker and a
//! timeout, and its failure comes back as a typed [`Error::Remote`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use finn_breaker::{Breaker, Outcome};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, PutResult,
};

use crate::error::{Error, RemoteFailure, RemoteOp};
use crate::limits::{RequestCounts, RequestStats, UploadLimits};
use crate::store::{StoreOptions, open_store};

/// Default per-call timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How remote calls are guarded.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RemoteOptions {
    /// Longest wait for one call (for a streamed download: for each chunk). Default: 30 s.
    pub timeout: Duration,
    /// The circuit breaker every call goes through. Share one between handles on the same store
    /// so they trip together. Default: [`default_breaker`].
    pub breaker: Arc<Breaker>,
    /// Upload concurrency and bandwidth limits, shared by every handle made with these options.
    /// Default: none, except that [`Remote::from_url`] applies the provider's own
    /// ([`UploadLimits::for_endpoint`], e.g. 2 concurrent uploads for Cloudflare R2) when no
    /// limit is set.
    pub uploads: Arc<UploadLimits>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            breaker: Arc::new(default_breaker()),
            uploads: Arc::new(UploadLimits::unlimited()),
        }
    }
}

/// The breaker a [`Remote`] gets by default: opens after 5 consecutive failures (timeouts and
/// errors; not-found and conflict answers do not count), probes again after 30 s.
pub fn default_breaker() -> Breaker {
    let options = finn_breaker::Options::default()
        .consecutive_failures(Some(5))
        .reset_timeout(Duration::from_secs(30));
    Breaker::builder()
        .name("object-store")
        .options(options)
        .build()
        .unwrap_or_default()
}

impl RemoteOptions {
    /// Sets the per-call timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the breaker.
    pub fn breaker(mut self, breaker: Arc<Breaker>) -> Self {
        self.breaker = breaker;
        self
    }

    /// Sets the upload limits.
    pub fn uploads(mut self, limits: UploadLimits) -> Self {
        self.uploads = Arc::new(limits);
        self
    }
}

/// One prefix of one object store, with its breaker and timeout. Cheap to clone.
#[derive(Clone)]
pub struct Remote {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    options: RemoteOptions,
    stats: Arc<RequestStats>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("store", &self.inner.store.to_string())
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

/// Result of a create-if-absent put.
#[derive(Debug)]
pub(crate) enum Created {
    /// Our object is now at the key.
    Yes,
    /// Something was already at the key; nothing was written.
    AlreadyExists,
}

impl Remote {
    /// A handle on `prefix` (a `/`-separated key prefix, may be empty) of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, options: RemoteOptions) -> Self {
        let prefix = prefix.trim_matches('/').to_owned();
        Self {
            inner: Arc::new(Inner {
                store,
                prefix,
                options,
                stats: Arc::new(RequestStats::default()),
            }),
        }
    }

    /// Opens the store a URL names (see [`open_store`]) and returns a handle on its prefix.
    pub fn from_url(
        url: &str,
        store_options: &StoreOptions,
        options: RemoteOptions,
    ) -> Result<Self, Error> {
        let (store, prefix) = open_store(url, store_options)?;
        let mut options = options;
        let limits = &options.uploads;
        if limits.concurrency_limit().is_none() && limits.bandwidth_limit().is_none() {
            let provider =
                UploadLimits::for_endpoint(store_options.endpoint.as_deref().unwrap_or(url));
            if provider.concurrency_limit().is_some() {
                options.uploads = Arc::new(provider);
            }
        }
        Ok(Self::new(store, &prefix, options))
    }

    /// A handle on a sub-prefix of this one, sharing store, breaker and timeout.
    pub fn child(&self, sub: &str) -> Self {
        let sub = sub.trim_matches('/');
        let prefix = if self.inner.prefix.is_empty() {
            sub.to_owned()
        } else {
            format!("{}/{sub}", self.inner.prefix)
        };
        Self {
            inner: Arc::new(Inner {
                store: self.inner.store.clone(),
                prefix,
                options: self.inner.options.clone(),
                stats: self.inner.stats.clone(),
            }),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The breaker guarding this handle.
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.inner.options.breaker
    }

    /// Requests made through this handle, its clones and its children so far, by kind.
    pub fn requests(&self) -> RequestCounts {
        self.inner.stats.snapshot()
    }

    /// The upload limits in force.
    pub fn upload_limits(&self) -> &UploadLimits {
        &self.inner.options.uploads
    }

    /// The full key of `rel` (relative to the prefix).
    pub(crate) fn key(&self, rel: &str) -> Path {
        if self.inner.prefix.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.inner.prefix))
        }
    }

    /// `key` relative to the prefix, if it is under it.
    pub(crate) fn relative(&self, key: &Path) -> Option<String> {
        let full = key.as_ref();
        if self.inner.prefix.is_empty() {
            return Some(full.to_owned());
        }
        full.strip_prefix(self.inner.prefix.as_str())?
            .strip_prefix('/')
            .map(str::to_owned)
    }

    /// Runs one remote call under the breaker and the timeout. Answers that are normal results
    /// for the protocol (not found, already exists, precondition failed) do not count against
    /// the circuit.
    async fn guarded<T, F>(
        &self,
        op: RemoteOp,
        key: &Path,
        fut: F,
    ) -> Result<T, (RemoteFailure, bool)>
    where
        F: Future<Output = object_store::Result<T>>,
    {
        self.inner.stats.record(op);
        let permit = self.inner.options.breaker.try_acquire().map_err(|r| {
            self.inner.stats.failed();
            (RemoteFailure::CircuitOpen(r), false)
        })?;
        let timeout = self.inner.options.timeout;
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(v)) => {
                permit.record(Outcome::Success);
                Ok(v)
            }
            Ok(Err(e)) => {
                let expected = matches!(
                    e,
                    object_store::Error::NotFound { .. }
                        | object_store::Error::AlreadyExists { .. }
                        | object_store::Error::Precondition { .. }
                        | object_store::Error::NotModified { .. }
                );
                permit.record(if expected {
                    Outcome::Ignored
                } else {
                    self.inner.stats.failed();
                    Outcome::Failure
                });
                tracing::debug!(%op, %key, error = %e, "remote call failed");
                Err((RemoteFailure::Store(e), expected))
            }
            Err(_) => {
                self.inner.stats.failed();
                permit.record(Outcome::Failure);
                tracing::debug!(%op, %key, ?timeout, "remote call timed out");
                Err((RemoteFailure::Timeout(timeout), false))
            }
        }
    }

    fn fail(op: RemoteOp, key: &Path, source: RemoteFailure) -> Error {
        Error::Remote {
            op,
            key: key.to_string(),
            source,
        }
    }

    /// Waits for an upload slot (and bandwidth) for `len` bytes and counts them.
    async fn upload_slot(&self, len: u64) -> crate::limits::UploadPermit<'_> {
        let permit = self.inner.options.uploads.acquire(len).await;
        self.inner.stats.sent(len);
        permit
    }

    pub(crate) async fn put(&self, key: &Path, bytes: Bytes) -> Result<PutResult, Error> {
        let _slot = self.upload_slot(bytes.len() as u64).await;
        let store = &self.inner.store;
        self.guarded(
            RemoteOp::Put,
            key,
            store.put_opts(key, PutPayload::from(bytes), PutOptions::default()),
        )
        .await
        .map_err(|(e, _)| Self::fail(RemoteOp::Put, key, e))
    }

    /// Create-if-absent. Exactly one of several racing creators gets [`Created::Yes`].
    pub(crate) async fn put_create(&self, key: &Path, bytes: Bytes) -> Result<Created, Error> {
        let opts = PutOptions::from(PutMode::Create);
        let _slot = self.upload_slot(bytes.len() as u64).await;
        let store = &self.inner.store;
        match self
            .guarded(
                RemoteOp::Put,
                key,
                store.put_opts(key, PutPayload::from(bytes), opts),
            )
            .await
        {
            Ok(_) => Ok(Created::Yes),
            Err((RemoteFailure::Store(object_store::Error::AlreadyExists { .. }), _)) => {
                Ok(Created::AlreadyExists)
            }
            Err((e, _)) => Err(Self::fail(RemoteOp::Put, key, e)),
        }
    }

    /// The whole object, or `None` if it does not exist.
    pub(crate) async fn get(&self, key: &Path) -> Result<Option<Bytes>, Error> {
        let Some(result) = self.get_stream(key).await? else {
            return Ok(None);
        };
        let mut stream = result.into_stream();
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = self.next_chunk(key, &mut stream).await? {
            buf.extend_from_slice(&chunk);
        }
        Ok(Some(buf.freeze()))
    }

    /// Starts a download, or `None` if the object does not exist.
    pub(crate) async fn get_stream(&self, key: &Path) -> Result<Option<GetResult>, Error> {
        let store = &self.inner.store;
        match self
            .guarded(
                RemoteOp::Get,
                key,
                store.get_opts(key, GetOptions::default()),
            )
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err((RemoteFailure::Store(object_store::Error::NotFound { .. }), _)) => Ok(None),
            Err((e, _)) => Err(Self::fail(RemoteOp::Get, key, e)),
        }
    }

    /// The next chunk of a download, each under the timeout.
    pub(crate) async fn next_chunk(
        &self,
        key: &Path,
        stream: &mut futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    ) -> Result<Option<Bytes>, Error> {
        let timeout = self.inner.options.timeout;
        match tokio::time::timeout(timeout, stream.next()).await {
            Ok(Some(Ok(b))) => Ok(Some(b)),
            Ok(None) => Ok(None),
            Ok(Some(Err(e))) => Err(Self::fail(RemoteOp::Get, key, RemoteFailure::Store(e))),
            Err(_) => Err(Self::fail(
                RemoteOp::Get,
                key,
                RemoteFailure::Timeout(timeout),
            )),
        }
    }

    /// Metadata, or `None` if the object does not exist.
    pub(crate) async fn head(&self, key: &Path) -> Result<Option<ObjectMeta>, Error> {
        let store = &self.inner.store;
        match self.guarded(RemoteOp::Head, key, store.head(key)).await {
            Ok(m) => Ok(Some(m)),
            Err((RemoteFailure::Store(object_store::Error::NotFound { .. }), _)) => Ok(None),
            Err((e, _)) => Err(Self::fail(RemoteOp::Head, key, e)),
        }
    }

    /// Every object under `rel` (relative to the prefix), recursively.
    pub(crate) async fn list(&self, rel: &str) -> Result<Vec<ObjectMeta>, Error> {
        let key = self.key(rel);
        let store = self.inner.store.clone();
        let listed = self
            .guarded(RemoteOp::List, &key, async {
                let mut out = Vec::new();
                let mut stream = store.list(Some(&key));
                while let Some(item) = stream.next().await {
                    out.push(item?);
                }
                Ok(out)
            })
            .await;
        match listed {
            Ok(v) => Ok(v),
            // LocalFileSystem reports a missing directory as NotFound; it is simply empty.
            Err((RemoteFailure::Store(object_store::Error::NotFound { .. }), _)) => Ok(Vec::new()),
            Err((e, _)) => Err(Self::fail(RemoteOp::List, &key, e)),
        }
    }

    /// Deletes an object; deleting a missing object succeeds (backends disagree on this).
    pub(crate) async fn delete(&self, key: &Path) -> Result<(), Error> {
        let store = &self.inner.store;
        match self.guarded(RemoteOp::Delete, key, store.delete(key)).await {
            Ok(()) | Err((RemoteFailure::Store(object_store::Error::NotFound { .. }), _)) => Ok(()),
            Err((e, _)) => Err(Self::fail(RemoteOp::Delete, key, e)),
        }
    }

    /// Uploads the parts a stream yields as one multipart object. On any failure the upload is
    /// aborted (best effort; the store's lifecycle rules or GC remove what remains).
    pub(crate) async fn put_multipart<S>(&self, key: &Path, mut parts: S) -> Result<(), Error>
    where
        S: futures::Stream<Item = Result<Bytes, Error>> + Unpin,
    {
        let store = &self.inner.store;
        let mut upload = self
            .guarded(RemoteOp::Multipart, key, store.put_multipart(key))
            .await
            .map_err(|(e, _)| Self::fail(RemoteOp::Multipart, key, e))?;
        let mut result: Result<(), Error> = Ok(());
        while let Some(part) = parts.next().await {
            let part = match part {
                Ok(p) => p,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let slot = self.upload_slot(part.len() as u64).await;
            let fut = upload.put_part(PutPayload::from(part));
            let sent = self.guarded(RemoteOp::Multipart, key, fut).await;
            drop(slot);
            if let Err((e, _)) = sent {
                result = Err(Self::fail(RemoteOp::Multipart, key, e));
                break;
            }
        }
        if result.is_ok() {
            match self
                .guarded(RemoteOp::Multipart, key, upload.complete())
                .await
            {
                Ok(_) => return Ok(()),
                Err((e, _)) => result = Err(Self::fail(RemoteOp::Multipart, key, e)),
            }
        }
        if let Err(e) = self.guarded(RemoteOp::Multipart, key, upload.abort()).await {
            tracing::debug!(%key, error = %e.0, "abort of failed multipart upload failed");
        }
        result
    }
}
