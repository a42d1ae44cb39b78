//! An [`ObjectStore`] wrapper that injects faults and counts operations, for tests of any crate
//! that talks to an object store.
//!
//! ```
//! use std::sync::Arc;
//! use finn_checkpoint::fault::{Fault, FaultStore, OpKind};
//! use object_store::{ObjectStoreExt, memory::InMemory, path::Path};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = FaultStore::new(Arc::new(InMemory::new()));
//! store.inject(Fault::error().on_nth(2));          // the 2nd operation of any kind fails
//! store.put(&Path::from("a"), "1".into()).await.unwrap();
//! assert!(store.put(&Path::from("b"), "2".into()).await.is_err());
//! assert_eq!(store.count(OpKind::Put), 2);
//! # });
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    UploadPart,
};

/// Kinds of operations, as counted and matched by [`FaultStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum OpKind {
    /// `put_opts` (any mode).
    Put,
    /// Starting a multipart upload.
    MultipartStart,
    /// Uploading one part.
    MultipartPart,
    /// Completing a multipart upload.
    MultipartComplete,
    /// Aborting a multipart upload.
    MultipartAbort,
    /// `get_opts` that returns content (including ranges).
    Get,
    /// `get_opts` with `head: true` (what `head()` does).
    Head,
    /// `list`, `list_with_offset`, `list_with_delimiter`.
    List,
    /// One location of `delete_stream` (what `delete()` does).
    Delete,
    /// `copy_opts` / `rename_opts`.
    Copy,
}

/// What an injected fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultAction {
    /// Return an error without touching the inner store.
    Error,
    /// Never answer (the caller's timeout must fire). Nothing reaches the inner store.
    Hang,
    /// Perform the operation on the inner store, then return an error anyway: a lost response.
    /// For `put` this is the "did my create win?" case every publisher must handle.
    Lost,
    /// Wait this long, then perform the operation normally.
    Delay(Duration),
}

/// One fault: an action, and which operation it hits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    action: FaultAction,
    kind: Option<OpKind>,
    nth: u64,
    key_contains: Option<String>,
    repeat: bool,
}

impl Fault {
    /// A fault returning an error (by default on the 1st matching operation).
    pub fn error() -> Self {
        Self::new(FaultAction::Error)
    }

    /// A fault that never answers.
    pub fn hang() -> Self {
        Self::new(FaultAction::Hang)
    }

    /// A fault that performs the operation and then reports an error.
    pub fn lost() -> Self {
        Self::new(FaultAction::Lost)
    }

    /// A fault that delays the operation.
    pub fn delay(d: Duration) -> Self {
        Self::new(FaultAction::Delay(d))
    }

    /// A fault with any action.
    pub fn new(action: FaultAction) -> Self {
        Self {
            action,
            kind: None,
            nth: 1,
            key_contains: None,
            repeat: false,
        }
    }

    /// Hits the `n`-th matching operation counted from when the fault is injected (1-based).
    pub fn on_nth(mut self, n: u64) -> Self {
        self.nth = n.max(1);
        self
    }

    /// Matches only operations of this kind.
    pub fn of_kind(mut self, kind: OpKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Matches only operations whose key contains `s` (for lists: whose prefix contains it).
    pub fn on_keys_containing(mut self, s: impl Into<String>) -> Self {
        self.key_contains = Some(s.into());
        self
    }

    /// Keeps hitting every matching operation from the `n`-th on, instead of only the `n`-th.
    pub fn repeatedly(mut self) -> Self {
        self.repeat = true;
        self
    }
}

#[derive(Default)]
struct State {
    counts: BTreeMap<OpKind, u64>,
    bytes_put: u64,
    bytes_got: u64,
    faults: Vec<(Fault, u64)>,
    fired: u64,
    hidden: Vec<String>,
    forget_deletes: bool,
    forgotten: u64,
}

/// Wraps any [`ObjectStore`], counting operations by [`OpKind`] and injecting [`Fault`]s.
#[derive(Clone)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultStore")
            .field("inner", &self.inner.to_string())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

fn injected(op: OpKind, key: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultStore",
        source: format!("injected fault on {op:?} of {key}").into(),
    }
}

impl FaultStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic in a test thread must not hide the counts from the assertion that follows.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a fault. Its `nth` counts matching operations from now on.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push((fault, 0));
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// How many faults have fired so far.
    pub fn fired(&self) -> u64 {
        self.state().fired
    }

    /// Operations of `kind` so far.
    pub fn count(&self, kind: OpKind) -> u64 {
        self.state().counts.get(&kind).copied().unwrap_or(0)
    }

    /// All operations so far.
    pub fn total(&self) -> u64 {
        self.state().counts.values().sum()
    }

    /// Counts by kind.
    pub fn counts(&self) -> BTreeMap<OpKind, u64> {
        self.state().counts.clone()
    }

    /// Payload bytes sent through `put` and multipart parts (attempted, including failed ones).
    pub fn bytes_put(&self) -> u64 {
        self.state().bytes_put
    }

    /// Content bytes the successful gets returned (the length of each answer's range): what
    /// a reader downloaded, if it read every answer to the end.
    pub fn bytes_got(&self) -> u64 {
        self.state().bytes_got
    }

    /// Makes every object whose key contains `needle` look absent (lost by the store): gets and
    /// heads answer not found, listings leave it out. The inner store keeps it.
    pub fn hide(&self, needle: impl Into<String>) {
        self.state().hidden.push(needle.into());
    }

    /// Makes every hidden object visible again.
    pub fn unhide_all(&self) {
        self.state().hidden.clear();
    }

    /// While on, deletes answer success and do nothing, as some S3-compatible providers do.
    pub fn forget_deletes(&self, on: bool) {
        self.state().forget_deletes = on;
    }

    /// Deletes answered with success but not performed ([`FaultStore::forget_deletes`]).
    pub fn forgotten_deletes(&self) -> u64 {
        self.state().forgotten
    }

    fn hidden(&self, key: &str) -> bool {
        self.state().hidden.iter().any(|n| key.contains(n.as_str()))
    }

    /// Zeroes the counters (faults stay).
    pub fn reset_counts(&self) {
        let mut s = self.state();
        s.counts.clear();
        s.bytes_put = 0;
        s.bytes_got = 0;
    }

    /// Counts one operation and decides whether a fault hits it.
    fn enter(&self, kind: OpKind, key: &str, bytes: u64) -> Option<FaultAction> {
        let mut s = self.state();
        *s.counts.entry(kind).or_default() += 1;
        s.bytes_put += bytes;
        let mut hit = None;
        let mut remove = None;
        for (i, (fault, seen)) in s.faults.iter_mut().enumerate() {
            let matches = fault.kind.is_none_or(|k| k == kind)
                && fault
                    .key_contains
                    .as_deref()
                    .is_none_or(|needle| key.contains(needle));
            if !matches {
                continue;
            }
            *seen += 1;
            if *seen == fault.nth || (fault.repeat && *seen > fault.nth) {
                hit = Some(fault.action);
                if !fault.repeat {
                    remove = Some(i);
                }
                break;
            }
        }
        if let Some(i) = remove {
            s.faults.remove(i);
        }
        if hit.is_some() {
            s.fired += 1;
        }
        hit
    }

    /// Runs `op` under whatever fault `enter` chose.
    async fn run<T, F>(&self, kind: OpKind, key: &str, bytes: u64, op: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        match self.enter(kind, key, bytes) {
            None => op.await,
            Some(FaultAction::Error) => Err(injected(kind, key)),
            Some(FaultAction::Hang) => futures::future::pending().await,
            Some(FaultAction::Lost) => {
                let _ = op.await;
                Err(injected(kind, key))
            }
            Some(FaultAction::Delay(d)) => {
                tokio::time::sleep(d).await;
                op.await
            }
        }
    }
}

use std::future::Future;

impl FaultStore {
    fn list_unfiltered(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        match self.enter(OpKind::List, &key, 0) {
            None => self.inner.list(prefix),
            Some(FaultAction::Error | FaultAction::Lost) => {
                futures::stream::once(async move { Err(injected(OpKind::List, &key)) }).boxed()
            }
            Some(FaultAction::Hang) => futures::stream::pending().boxed(),
            Some(FaultAction::Delay(d)) => {
                let inner = self.inner.list(prefix);
                futures::stream::once(async move {
                    tokio::time::sleep(d).await;
                    inner
                })
                .flatten()
                .boxed()
            }
        }
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let len = payload.content_length() as u64;
        self.run(
            OpKind::Put,
            location.as_ref(),
            len,
            self.inner.put_opts(location, payload, opts),
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self
            .run(
                OpKind::MultipartStart,
                location.as_ref(),
                0,
                self.inner.put_multipart_opts(location, opts),
            )
            .await?;
        Ok(Box::new(FaultUpload {
            store: self.clone(),
            key: location.to_string(),
            upload,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let kind = if options.head {
            OpKind::Head
        } else {
            OpKind::Get
        };
        if self.hidden(location.as_ref()) {
            self.enter(kind, location.as_ref(), 0);
            return Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: "hidden by FaultStore".into(),
            });
        }
        let result = self
            .run(
                kind,
                location.as_ref(),
                0,
                self.inner.get_opts(location, options),
            )
            .await?;
        if kind == OpKind::Get {
            self.state().bytes_got += result.range.end - result.range.start;
        }
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let got = self
            .run(
                OpKind::Get,
                location.as_ref(),
                0,
                self.inner.get_ranges(location, ranges),
            )
            .await?;
        self.state().bytes_got += got.iter().map(|b| b.len() as u64).sum::<u64>();
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let this = self.clone();
        locations
            .then(move |location| {
                let this = this.clone();
                async move {
                    let location = location?;
                    let inner = this.inner.clone();
                    let key = location.to_string();
                    let forget = this.state().forget_deletes;
                    this.run(OpKind::Delete, &key, 0, async {
                        if forget {
                            this.state().forgotten += 1;
                            return Ok(());
                        }
                        inner.delete(&location).await
                    })
                    .await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let hidden = self.state().hidden.clone();
        let listed = self.list_unfiltered(prefix);
        if hidden.is_empty() {
            return listed;
        }
        listed
            .filter(move |item| {
                let keep = match item {
                    Ok(meta) => {
                        let key = meta.location.as_ref();
                        !hidden.iter().any(|n| key.contains(n.as_str()))
                    }
                    Err(_) => true,
                };
                futures::future::ready(keep)
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.run(
            OpKind::List,
            &key,
            0,
            self.inner.list_with_delimiter(prefix),
        )
        .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.run(
            OpKind::Copy,
            to.as_ref(),
            0,
            self.inner.copy_opts(from, to, options),
        )
        .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.run(
            OpKind::Copy,
            to.as_ref(),
            0,
            self.inner.rename_opts(from, to, options),
        )
        .await
    }
}

/// A multipart upload whose parts and completion are counted and can fail.
struct FaultUpload {
    store: FaultStore,
    key: String,
    upload: Box<dyn MultipartUpload>,
}

impl fmt::Debug for FaultUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultUpload")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let len = data.content_length() as u64;
        let action = self.store.enter(OpKind::MultipartPart, &self.key, len);
        let key = self.key.clone();
        match action {
            None => self.upload.put_part(data),
            Some(FaultAction::Error) => {
                Box::pin(async move { Err(injected(OpKind::MultipartPart, &key)) })
            }
            Some(FaultAction::Hang) => Box::pin(futures::future::pending()),
            Some(FaultAction::Lost) => {
                let part = self.upload.put_part(data);
                Box::pin(async move {
                    let _ = part.await;
                    Err(injected(OpKind::MultipartPart, &key))
                })
            }
            Some(FaultAction::Delay(d)) => {
                let part = self.upload.put_part(data);
                Box::pin(async move {
                    tokio::time::sleep(d).await;
                    part.await
                })
            }
        }
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let key = self.key.clone();
        let store = self.store.clone();
        store
            .run(OpKind::MultipartComplete, &key, 0, self.upload.complete())
            .await
    }

    async fn abort(&mut self) -> Result<()> {
        let key = self.key.clone();
        let store = self.store.clone();
        store
            .run(OpKind::MultipartAbort, &key, 0, self.upload.abort())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn counts_and_faults_by_kind_and_key() {
        let store = FaultStore::new(Arc::new(InMemory::new()));
        store.inject(Fault::error().of_kind(OpKind::Head).on_nth(2));
        store.inject(Fault::lost().on_keys_containing("lost"));
        store.put(&Path::from("a"), "x".into()).await.unwrap();
        store.head(&Path::from("a")).await.unwrap();
        assert!(store.head(&Path::from("a")).await.is_err());
        store.head(&Path::from("a")).await.unwrap();
        assert!(store.put(&Path::from("lost"), "y".into()).await.is_err());
        assert!(
            store.inner().head(&Path::from("lost")).await.is_ok(),
            "a lost put did happen"
        );
        store.delete(&Path::from("a")).await.unwrap();
        assert_eq!(store.count(OpKind::Put), 2);
        assert_eq!(store.count(OpKind::Head), 3);
        assert_eq!(store.count(OpKind::Delete), 1);
        assert_eq!(store.bytes_put(), 2);
        assert_eq!(store.fired(), 2);
    }

    #[tokio::test]
    async fn hang_never_answers_and_multipart_is_counted() {
        let store = FaultStore::new(Arc::new(InMemory::new()));
        store.inject(Fault::hang().of_kind(OpKind::List));
        let listed = tokio::time::timeout(Duration::from_millis(20), store.list(None).next()).await;
        assert!(listed.is_err());
        let mut up = store.put_multipart(&Path::from("m")).await.unwrap();
        up.put_part(vec![1u8; 10].into()).await.unwrap();
        up.complete().await.unwrap();
        assert_eq!(store.count(OpKind::MultipartPart), 1);
        assert_eq!(store.count(OpKind::MultipartComplete), 1);
        assert_eq!(store.bytes_put(), 10);
    }
}
