//! Threads of per-step checkpoints: the agent-framework state API on finn's WAL.
//!
//! A *thread* (one conversation, one agent run) is a tree of *checkpoints*. Each checkpoint is
//! the agent's state after one step, with a parent pointer, a [`Source`] (input, loop, update,
//! fork), the step number and free-form metadata. State is a map of channel name to bytes.
//!
//! What the design fixes, compared with storing the full state at every step:
//!
//! * **Delta storage with bounded replay.** A checkpoint stores only the channels its step
//!   changed. Every [`ThreadOptions::snapshot_every`] steps along a branch (default 10) the
//!   checkpoint is a *snapshot* instead: its own writes plus an index `channel -> checkpoint
//!   that wrote the value`. Values are never copied, so storage is the sum of the deltas plus
//!   the indexes (a reference per live channel per snapshot), and rebuilding any checkpoint
//!   replays at most `snapshot_every - 1` deltas ([`Checkpoint::replay_depth`]).
//! * **Pending writes.** [`Threads::put_writes`] records a finished sub-task's writes against
//!   the checkpoint it ran from, durably, so after a crash the runner sees the task as done
//!   ([`Threads::completed_tasks`]) and does not run it again.
//! * **Fork / copy** from any checkpoint ([`Threads::fork`]), in the same thread (a new branch)
//!   or into a new thread (a self-contained copy).
//! * **Atomic delete, prune and TTL.** Deleting a thread, pruning it to its latest checkpoints
//!   and expiring it each write one batch: after a crash a thread is whole or gone, never
//!   half-deleted. Prune rewrites the oldest kept checkpoints as self-contained snapshots so
//!   no kept checkpoint depends on a removed one.
//! * **Size guardrails.** Per-record and per-thread thresholds warn ([`PutOutcome::warnings`],
//!   and a `tracing` warning) and refuse ([`ThreadError::TooLarge`]). They count the bytes
//!   held in the backend, where a value offloaded to the blob sink counts as its reference.
//! * **Idempotency keys.** A put carrying a key seen within
//!   [`ThreadOptions::idempotency_retention`] returns the first checkpoint instead of writing
//!   a second one (a retried request after a timeout).
//!
//! Storage is any [`Backend`]: [`WalBackend`] (durable, on finn's WAL) or [`MemoryBackend`].
//! The [`conformance`] suite (put, get, list, fork, prune, TTL, crash) runs against both;
//! run it against your own backend too. Redis Streams and SQLite backends are out of scope:
//! finn's WAL is the embedded engine and object storage the shared one.
//!
//! * **Large values by hash.** With a [`blobs::BlobSink`] ([`Threads::with_blobs`]), values
//!   above [`ThreadOptions::blob_threshold_bytes`] go to the sink (an object store) under
//!   their blake3 hash; the WAL holds only the reference, and reads verify the bytes.
//!
//! # Example
//! ```
//! use finn::threads::{MemoryBackend, Source, StepInput, ThreadOptions, Threads};
//! let threads = Threads::open(MemoryBackend::new(), ThreadOptions::default())?;
//! let a = threads.put("chat-1", StepInput::new(Source::Input, -1).set("messages", b"hi".to_vec()))?.id;
//! let b = threads.put("chat-1", StepInput::after(a, Source::Loop, 0).set("plan", b"answer".to_vec()))?.id;
//! let cp = threads.get("chat-1", b)?.expect("just written");
//! assert_eq!(cp.state["messages"], b"hi");
//! assert_eq!(cp.meta.parent, Some(a));
//! # Ok::<(), finn::threads::ThreadError>(())
//! ```
//!
//! # Format
//! Keys inside the backend (every key belongs to the threads store):
//! `<thread>/meta` ([`ThreadMeta`] as `finn_wal::codec`), `<thread>/c/<id:020>` (a checkpoint
//! record: header and its delta or snapshot writes), `<thread>/x/<id:020>` (a snapshot's
//! index), `<thread>/w/<id:020>/<task>` (pending writes), `<thread>/i/<key>` (idempotency
//! key). `docs/formats/finn-wal.md` ("Agent-state stores") has the byte layout.

pub mod blobs;
pub mod conformance;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use finn_wal::store::{Backend, MemoryBackend, Mutation, StoreError, WalBackend};

use blobs::{BlobError, BlobId, BlobSink};

/// A thread's state: channel name to bytes.
pub type State = BTreeMap<String, Vec<u8>>;

/// Milliseconds since the Unix epoch; injectable for tests.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Default distance between snapshots along a branch.
pub const DEFAULT_SNAPSHOT_EVERY: u32 = 10;

/// Default [`ThreadOptions::blob_threshold_bytes`].
pub const DEFAULT_BLOB_THRESHOLD: u64 = 64 << 10;

/// Why a thread operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ThreadError {
    /// The backend failed.
    #[error("thread storage error")]
    Store(#[from] StoreError),
    /// No such (live) thread.
    #[error("thread {thread:?} does not exist or has expired")]
    NoThread {
        /// The thread.
        thread: String,
    },
    /// No such checkpoint.
    #[error("thread {thread:?} has no checkpoint {id}")]
    NoCheckpoint {
        /// The thread.
        thread: String,
        /// The checkpoint.
        id: u64,
    },
    /// A fork or copy target already exists.
    #[error("thread {thread:?} already exists")]
    Exists {
        /// The thread.
        thread: String,
    },
    /// A size limit refuses the write.
    #[error("{what} would be {size} bytes, above the limit of {limit}")]
    TooLarge {
        /// `"record"` or `"thread"`.
        what: &'static str,
        /// The size it would have.
        size: u64,
        /// The refuse threshold.
        limit: u64,
    },
    /// The blob sink failed.
    #[error("blob sink error")]
    Blob(#[from] BlobError),
    /// A referenced blob is not in the sink.
    #[error("blob {id} referenced by thread {thread:?} is missing from the blob sink")]
    BlobMissing {
        /// The thread.
        thread: String,
        /// The blob.
        id: BlobId,
    },
    /// A blob's bytes do not match its reference.
    #[error("blob {id} is damaged: {len} bytes hashing to {actual}, expected {expected_len} bytes")]
    BlobCorrupt {
        /// The blob.
        id: BlobId,
        /// Length recorded in the reference.
        expected_len: u64,
        /// Length found.
        len: u64,
        /// Hash of what was found.
        actual: BlobId,
    },
    /// The thread references a blob but no sink is set.
    #[error("thread {thread:?} references blob {id} but no blob sink is configured")]
    NoBlobSink {
        /// The thread.
        thread: String,
        /// The blob.
        id: BlobId,
    },
    /// Stored data violates the format.
    #[error("corrupt thread record {key:?}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// What produced a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    /// The input of a run.
    Input,
    /// A step of the agent loop.
    Loop,
    /// A manual state update.
    Update,
    /// A fork or copy of another checkpoint.
    Fork,
}

/// Configuration. Every field has a documented default.
#[derive(Clone)]
pub struct ThreadOptions {
    /// A snapshot every this many checkpoints along a branch; bounds replay depth. At least 1.
    /// Default: 10.
    pub snapshot_every: u32,
    /// Warn when one checkpoint's records exceed this many bytes. Default: 1 MiB.
    pub record_warn_bytes: u64,
    /// Refuse a checkpoint whose records exceed this. Default: 16 MiB.
    pub record_limit_bytes: u64,
    /// Warn when a thread's stored bytes exceed this. Default: 64 MiB.
    pub thread_warn_bytes: u64,
    /// Refuse writes that would take a thread above this. Default: 256 MiB.
    pub thread_limit_bytes: u64,
    /// How long an idempotency key deduplicates. Default: 24 hours.
    pub idempotency_retention: Duration,
    /// TTL given to new threads (`None`: none). Default: `None`.
    pub default_ttl: Option<Duration>,
    /// With a blob sink set, values (channel values and pending writes) longer than this go
    /// to the sink by hash and the record keeps a 40-byte reference. Default: 64 KiB.
    pub blob_threshold_bytes: u64,
    /// Source of "now". Default: the system clock.
    pub clock: Clock,
}

impl Default for ThreadOptions {
    fn default() -> Self {
        Self {
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            record_warn_bytes: 1 << 20,
            record_limit_bytes: 16 << 20,
            thread_warn_bytes: 64 << 20,
            thread_limit_bytes: 256 << 20,
            idempotency_retention: Duration::from_secs(24 * 3600),
            default_ttl: None,
            blob_threshold_bytes: DEFAULT_BLOB_THRESHOLD,
            clock: Arc::new(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
        }
    }
}

impl std::fmt::Debug for ThreadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadOptions")
            .field("snapshot_every", &self.snapshot_every)
            .field("record_limit_bytes", &self.record_limit_bytes)
            .field("thread_limit_bytes", &self.thread_limit_bytes)
            .field("blob_threshold_bytes", &self.blob_threshold_bytes)
            .finish_non_exhaustive()
    }
}

/// One step to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepInput {
    /// The checkpoint this step continues (`None`: the thread's latest, or a new thread).
    pub parent: Option<u64>,
    /// What produced it.
    pub source: Source,
    /// Step number (frameworks use -1 for the input).
    pub step: i64,
    /// Channel writes relative to the parent's state (`None` deletes the channel).
    pub writes: Vec<(String, Option<Vec<u8>>)>,
    /// Free-form metadata, filterable in [`Threads::list`].
    pub metadata: BTreeMap<String, String>,
    /// Deduplicates retries within the retention window.
    pub idempotency_key: Option<String>,
}

impl StepInput {
    /// A step continuing the thread's latest checkpoint.
    pub fn new(source: Source, step: i64) -> Self {
        Self {
            parent: None,
            source,
            step,
            writes: Vec::new(),
            metadata: BTreeMap::new(),
            idempotency_key: None,
        }
    }

    /// A step continuing checkpoint `parent`.
    pub fn after(parent: u64, source: Source, step: i64) -> Self {
        Self {
            parent: Some(parent),
            ..Self::new(source, step)
        }
    }

    /// Adds a channel write.
    pub fn set(mut self, channel: impl Into<String>, value: Vec<u8>) -> Self {
        self.writes.push((channel.into(), Some(value)));
        self
    }

    /// Adds a channel delete.
    pub fn unset(mut self, channel: impl Into<String>) -> Self {
        self.writes.push((channel.into(), None));
        self
    }

    /// Adds a metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the idempotency key.
    pub fn idempotent(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// A checkpoint's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointMeta {
    /// The thread.
    pub thread: String,
    /// Its id (increasing within the thread).
    pub id: u64,
    /// The checkpoint it continues (may have been pruned).
    pub parent: Option<u64>,
    /// What produced it.
    pub source: Source,
    /// Step number.
    pub step: i64,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// Deltas replayed on top of a snapshot to rebuild it (0 for a snapshot).
    pub replay_depth: u32,
}

/// A checkpoint with its full state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The header.
    pub meta: CheckpointMeta,
    /// The state after the step.
    pub state: State,
}

impl Checkpoint {
    /// Deltas replayed to rebuild this checkpoint (never above `snapshot_every - 1`).
    pub fn replay_depth(&self) -> u32 {
        self.meta.replay_depth
    }
}

/// A size threshold crossed by a write that was still accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeWarning {
    /// `"record"` or `"thread"`.
    pub what: &'static str,
    /// The size.
    pub size: u64,
    /// The warn threshold.
    pub threshold: u64,
}

/// What [`Threads::put`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// The checkpoint id (the earlier one when deduplicated).
    pub id: u64,
    /// Whether an idempotency key matched and nothing was written.
    pub deduplicated: bool,
    /// Thresholds crossed.
    pub warnings: Vec<SizeWarning>,
}

/// Filters for [`Threads::list`]; the default lists everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this source.
    pub source: Option<Source>,
    /// Only checkpoints whose metadata holds every entry.
    pub metadata: BTreeMap<String, String>,
    /// Only ids below this.
    pub before: Option<u64>,
    /// At most this many (newest first).
    pub limit: Option<usize>,
}

/// A finished sub-task's writes recorded against a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// The task.
    pub task: String,
    /// Its channel writes.
    pub writes: Vec<(String, Vec<u8>)>,
}

/// What [`Threads::prune`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Checkpoints removed.
    pub removed: usize,
    /// Kept checkpoints rewritten as self-contained snapshots.
    pub rebased: usize,
}

/// Per-thread bookkeeping, stored at `<thread>/meta`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadMeta {
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// Deadline after which the thread is gone (`None`: never).
    pub expires_at_ms: Option<u64>,
    /// The next checkpoint id.
    pub next_id: u64,
}

/// A stored value: the bytes, or a reference to them in the blob sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Value {
    Inline(Vec<u8>),
    Blob { id: BlobId, len: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Body {
    Delta(Vec<(String, Option<Value>)>),
    /// Own writes; the inherited channels are in the `x/` index record.
    Snapshot(Vec<(String, Value)>),
}

/// A [`PendingWrite`] as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StoredPending {
    task: String,
    writes: Vec<(String, Value)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    parent: Option<u64>,
    source: Source,
    step: i64,
    created_ms: u64,
    metadata: BTreeMap<String, String>,
    depth: u32,
    body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Idem {
    id: u64,
    created_ms: u64,
}

fn ckey(thread: &str, id: u64) -> String {
    format!("{thread}/c/{id:020}")
}
fn xkey(thread: &str, id: u64) -> String {
    format!("{thread}/x/{id:020}")
}
fn wprefix(thread: &str, id: u64) -> String {
    format!("{thread}/w/{id:020}/")
}
fn mkey(thread: &str) -> String {
    format!("{thread}/meta")
}
fn ikey(thread: &str, key: &str) -> String {
    format!("{thread}/i/{key}")
}

fn enc<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, ThreadError> {
    finn_wal::codec::encode(v).map_err(|source| StoreError::Codec { what, source }.into())
}
fn dec<T: serde::de::DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, ThreadError> {
    finn_wal::codec::decode(b).map_err(|source| StoreError::Codec { what, source }.into())
}

fn valid(what: &'static str, name: &str) -> Result<(), ThreadError> {
    Ok(finn_wal::store::validate_segment(what, name)?)
}

/// Threads of checkpoints on a [`Backend`] (every key of the backend belongs to them).
pub struct Threads<B: Backend> {
    backend: B,
    options: ThreadOptions,
    blobs: Option<Arc<dyn BlobSink>>,
    write: Mutex<()>,
}

impl<B: Backend> std::fmt::Debug for Threads<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Threads")
            .field("options", &self.options)
            .field("blobs", &self.blobs.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Threads<B> {
    /// Opens the threads stored in `backend`.
    pub fn open(backend: B, mut options: ThreadOptions) -> Result<Self, ThreadError> {
        options.snapshot_every = options.snapshot_every.max(1);
        Ok(Self {
            backend,
            options,
            blobs: None,
            write: Mutex::new(()),
        })
    }

    /// Stores values above [`ThreadOptions::blob_threshold_bytes`] in `sink` by hash; see
    /// [`blobs`]. Also needed to read threads that reference blobs.
    ///
    /// ```
    /// use finn::threads::{MemoryBackend, Source, StepInput, ThreadOptions, Threads};
    /// use finn::threads::blobs::MemoryBlobs;
    /// let sink = MemoryBlobs::new();
    /// let threads = Threads::open(MemoryBackend::new(), ThreadOptions::default())?
    ///     .with_blobs(std::sync::Arc::new(sink.clone()));
    /// let big = vec![1u8; 1 << 20];
    /// let id = threads.put("t", StepInput::new(Source::Input, 0).set("doc", big.clone()))?.id;
    /// assert_eq!(sink.ids().len(), 1);                  // the bytes went to the sink
    /// assert!(threads.thread_bytes("t")? < 1_000);      // the log holds a reference
    /// assert_eq!(threads.get("t", id)?.unwrap().state["doc"], big);
    /// # Ok::<(), finn::threads::ThreadError>(())
    /// ```
    pub fn with_blobs(mut self, sink: Arc<dyn BlobSink>) -> Self {
        self.blobs = Some(sink);
        self
    }

    /// Every blob some record of this store references (what a garbage collection of the
    /// sink must keep).
    pub fn referenced_blobs(&self) -> Result<BTreeSet<BlobId>, ThreadError> {
        let mut out = BTreeSet::new();
        let mut add = |v: &Value| {
            if let Value::Blob { id, .. } = v {
                out.insert(*id);
            }
        };
        for (k, v) in self.backend.range("", None)? {
            match k.split('/').nth(1) {
                Some("c") => match dec::<Record>("checkpoint", &v)?.body {
                    Body::Delta(w) => w.iter().filter_map(|(_, v)| v.as_ref()).for_each(&mut add),
                    Body::Snapshot(w) => w.iter().for_each(|(_, v)| add(v)),
                },
                Some("w") => dec::<StoredPending>("pending writes", &v)?
                    .writes
                    .iter()
                    .for_each(|(_, v)| add(v)),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Keeps `bytes` inline, or stores it in the sink when it is above the threshold.
    fn store_value(&self, bytes: Vec<u8>) -> Result<Value, ThreadError> {
        match &self.blobs {
            Some(sink) if bytes.len() as u64 > self.options.blob_threshold_bytes => {
                let id = BlobId::of(&bytes);
                // Durable in the sink before any record can reference it.
                sink.put(&id, &bytes)?;
                Ok(Value::Blob {
                    id,
                    len: bytes.len() as u64,
                })
            }
            _ => Ok(Value::Inline(bytes)),
        }
    }

    /// The bytes of a stored value, fetched and verified if it is a blob reference.
    fn load_value(&self, thread: &str, value: Value) -> Result<Vec<u8>, ThreadError> {
        let (id, expected_len) = match value {
            Value::Inline(b) => return Ok(b),
            Value::Blob { id, len } => (id, len),
        };
        let sink = self.blobs.as_ref().ok_or_else(|| ThreadError::NoBlobSink {
            thread: thread.to_owned(),
            id,
        })?;
        let bytes = sink.get(&id)?.ok_or_else(|| ThreadError::BlobMissing {
            thread: thread.to_owned(),
            id,
        })?;
        let actual = BlobId::of(&bytes);
        if actual != id || bytes.len() as u64 != expected_len {
            return Err(ThreadError::BlobCorrupt {
                id,
                expected_len,
                len: bytes.len() as u64,
                actual,
            });
        }
        Ok(bytes)
    }

    fn resolve(&self, thread: &str, values: BTreeMap<String, Value>) -> Result<State, ThreadError> {
        values
            .into_iter()
            .map(|(k, v)| Ok((k, self.load_value(thread, v)?)))
            .collect()
    }

    /// Gives the backend back (to reopen on it).
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn now(&self) -> u64 {
        (self.options.clock)()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn meta(&self, thread: &str) -> Result<Option<ThreadMeta>, ThreadError> {
        valid("thread", thread)?;
        let Some(b) = self.backend.get(&mkey(thread))? else {
            return Ok(None);
        };
        let m: ThreadMeta = dec("thread meta", &b)?;
        Ok(m.expires_at_ms.is_none_or(|d| d > self.now()).then_some(m))
    }

    fn record(&self, thread: &str, id: u64) -> Result<Option<Record>, ThreadError> {
        self.backend
            .get(&ckey(thread, id))?
            .map(|b| dec("checkpoint", &b))
            .transpose()
    }

    fn need_record(&self, thread: &str, id: u64) -> Result<Record, ThreadError> {
        self.record(thread, id)?.ok_or(ThreadError::NoCheckpoint {
            thread: thread.to_owned(),
            id,
        })
    }

    /// `channel -> id of the record holding its value` for checkpoint `id`, and its depth.
    fn refs(&self, thread: &str, id: u64) -> Result<BTreeMap<String, u64>, ThreadError> {
        // Walk up to the snapshot, then apply the deltas downwards.
        let mut chain = Vec::new();
        let mut at = id;
        let base = loop {
            let r = self.need_record(thread, at)?;
            match &r.body {
                Body::Snapshot(_) => break (at, r),
                Body::Delta(_) => {
                    // Parents are always older, so a walk up must strictly descend.
                    let parent =
                        r.parent
                            .filter(|p| *p < at)
                            .ok_or_else(|| ThreadError::Corrupt {
                                key: ckey(thread, at),
                                reason: "delta without an older parent",
                            })?;
                    chain.push((at, r));
                    at = parent;
                }
            }
        };
        let (base_id, base) = base;
        let mut refs: BTreeMap<String, u64> = match self.backend.get(&xkey(thread, base_id))? {
            Some(b) => dec::<Vec<(String, u64)>>("snapshot index", &b)?
                .into_iter()
                .collect(),
            None => BTreeMap::new(),
        };
        if let Body::Snapshot(writes) = &base.body {
            for (k, _) in writes {
                refs.insert(k.clone(), base_id);
            }
        }
        for (cid, r) in chain.into_iter().rev() {
            if let Body::Delta(writes) = r.body {
                for (k, v) in writes {
                    match v {
                        Some(_) => refs.insert(k, cid),
                        None => refs.remove(&k),
                    };
                }
            }
        }
        Ok(refs)
    }

    /// The stored values (blob references unresolved) of the channels in `refs`.
    fn materialize(
        &self,
        thread: &str,
        refs: &BTreeMap<String, u64>,
    ) -> Result<BTreeMap<String, Value>, ThreadError> {
        let mut by_record: HashMap<u64, Vec<&String>> = HashMap::new();
        for (k, id) in refs {
            by_record.entry(*id).or_default().push(k);
        }
        let mut state = BTreeMap::new();
        for (id, keys) in by_record {
            let r = self.need_record(thread, id)?;
            let mut values: HashMap<String, Value> = match r.body {
                Body::Delta(w) => w
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect(),
                Body::Snapshot(w) => w.into_iter().collect(),
            };
            for k in keys {
                let v = values.remove(k).ok_or_else(|| ThreadError::Corrupt {
                    key: ckey(thread, id),
                    reason: "snapshot index points at a record without the value",
                })?;
                state.insert(k.clone(), v);
            }
        }
        Ok(state)
    }

    fn meta_of(thread: &str, id: u64, r: &Record) -> CheckpointMeta {
        CheckpointMeta {
            thread: thread.to_owned(),
            id,
            parent: r.parent,
            source: r.source,
            step: r.step,
            created_ms: r.created_ms,
            metadata: r.metadata.clone(),
            replay_depth: r.depth,
        }
    }

    /// Records one step; see [`StepInput`].
    pub fn put(&self, thread: &str, input: StepInput) -> Result<PutOutcome, ThreadError> {
        valid("thread", thread)?;
        let _guard = self.lock();
        let now = self.now();
        let meta = self.meta(thread)?;
        if let (Some(key), Some(_)) = (&input.idempotency_key, &meta) {
            valid("idempotency key", key)?;
            if let Some(b) = self.backend.get(&ikey(thread, key))? {
                let idem: Idem = dec("idempotency key", &b)?;
                let window = u64::try_from(self.options.idempotency_retention.as_millis())
                    .unwrap_or(u64::MAX);
                if idem.created_ms.saturating_add(window) > now {
                    return Ok(PutOutcome {
                        id: idem.id,
                        deduplicated: true,
                        warnings: Vec::new(),
                    });
                }
            }
        }
        let fresh = meta.is_none();
        let mut batch = Vec::new();
        if fresh {
            // Leftovers of an expired thread of the same name go in the same batch.
            for (k, _) in self.backend.scan_prefix(&format!("{thread}/"))? {
                batch.push(Mutation::Delete(k));
            }
            if let Some(p) = input.parent {
                return Err(ThreadError::NoCheckpoint {
                    thread: thread.to_owned(),
                    id: p,
                });
            }
        }
        let mut meta = meta.unwrap_or_else(|| ThreadMeta {
            created_ms: now,
            expires_at_ms: self
                .options
                .default_ttl
                .map(|t| now.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))),
            next_id: 1,
        });
        let parent = match input.parent {
            Some(p) => Some(p),
            None if fresh => None,
            None => self.latest_id(thread)?,
        };
        let id = meta.next_id;
        meta.next_id += 1;
        let parent_depth = match parent {
            Some(p) => Some(self.need_record(thread, p)?.depth),
            None => None,
        };
        let depth = match parent_depth {
            Some(d) if d + 1 < self.options.snapshot_every => d + 1,
            _ => 0,
        };
        let writes = input
            .writes
            .into_iter()
            .map(|(k, v)| Ok((k, v.map(|v| self.store_value(v)).transpose()?)))
            .collect::<Result<Vec<_>, ThreadError>>()?;
        let body = if depth > 0 {
            Body::Delta(writes)
        } else {
            // A snapshot: inherit the parent's channels by reference, minus this step's writes.
            let mut index = match parent {
                Some(p) => self.refs(thread, p)?,
                None => BTreeMap::new(),
            };
            let mut own = BTreeMap::new();
            for (k, v) in writes {
                index.remove(&k);
                match v {
                    Some(v) => {
                        own.insert(k, v);
                    }
                    None => {
                        own.remove(&k);
                    }
                }
            }
            if !index.is_empty() {
                let index: Vec<(String, u64)> = index.into_iter().collect();
                batch.push(Mutation::Put(
                    xkey(thread, id),
                    enc("snapshot index", &index)?,
                ));
            }
            Body::Snapshot(own.into_iter().collect())
        };
        let record = Record {
            parent,
            source: input.source,
            step: input.step,
            created_ms: now,
            metadata: input.metadata,
            depth,
            body,
        };
        batch.push(Mutation::Put(ckey(thread, id), enc("checkpoint", &record)?));
        if let Some(key) = &input.idempotency_key {
            valid("idempotency key", key)?;
            batch.push(Mutation::Put(
                ikey(thread, key),
                enc(
                    "idempotency key",
                    &Idem {
                        id,
                        created_ms: now,
                    },
                )?,
            ));
        }
        batch.push(Mutation::Put(mkey(thread), enc("thread meta", &meta)?));
        let warnings = self.check_sizes(thread, &batch, fresh)?;
        self.backend.commit(batch)?;
        Ok(PutOutcome {
            id,
            deduplicated: false,
            warnings,
        })
    }

    fn check_sizes(
        &self,
        thread: &str,
        batch: &[Mutation],
        fresh: bool,
    ) -> Result<Vec<SizeWarning>, ThreadError> {
        let size = |m: &Mutation| match m {
            Mutation::Put(k, v) => (k.len() + v.len()) as u64,
            Mutation::Delete(_) => 0,
        };
        let record: u64 = batch
            .iter()
            .filter(|m| {
                m.key().contains("/c/") || m.key().contains("/x/") || m.key().contains("/w/")
            })
            .map(size)
            .sum();
        let o = &self.options;
        if record > o.record_limit_bytes {
            return Err(ThreadError::TooLarge {
                what: "record",
                size: record,
                limit: o.record_limit_bytes,
            });
        }
        let existing = if fresh { 0 } else { self.thread_bytes(thread)? };
        let total = existing + record;
        if total > o.thread_limit_bytes {
            return Err(ThreadError::TooLarge {
                what: "thread",
                size: total,
                limit: o.thread_limit_bytes,
            });
        }
        let mut warnings = Vec::new();
        if record > o.record_warn_bytes {
            warnings.push(SizeWarning {
                what: "record",
                size: record,
                threshold: o.record_warn_bytes,
            });
        }
        if total > o.thread_warn_bytes {
            warnings.push(SizeWarning {
                what: "thread",
                size: total,
                threshold: o.thread_warn_bytes,
            });
        }
        for w in &warnings {
            tracing::warn!(
                thread,
                what = w.what,
                size = w.size,
                threshold = w.threshold,
                "thread size above warning threshold"
            );
        }
        Ok(warnings)
    }

    /// Bytes (keys and values) the thread occupies in the backend.
    pub fn thread_bytes(&self, thread: &str) -> Result<u64, ThreadError> {
        valid("thread", thread)?;
        Ok(self
            .backend
            .scan_prefix(&format!("{thread}/"))?
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum())
    }

    fn ids(&self, thread: &str) -> Result<Vec<u64>, ThreadError> {
        let prefix = format!("{thread}/c/");
        self.backend
            .scan_prefix(&prefix)?
            .into_iter()
            .map(|(k, _)| {
                k[prefix.len()..]
                    .parse::<u64>()
                    .map_err(|_| ThreadError::Corrupt {
                        key: k.clone(),
                        reason: "checkpoint key without an id",
                    })
            })
            .collect()
    }

    fn latest_id(&self, thread: &str) -> Result<Option<u64>, ThreadError> {
        Ok(self.ids(thread)?.last().copied())
    }

    /// Checkpoint `id` of a live thread, with its state.
    pub fn get(&self, thread: &str, id: u64) -> Result<Option<Checkpoint>, ThreadError> {
        if self.meta(thread)?.is_none() {
            return Ok(None);
        }
        let Some(r) = self.record(thread, id)? else {
            return Ok(None);
        };
        let refs = self.refs(thread, id)?;
        Ok(Some(Checkpoint {
            meta: Self::meta_of(thread, id, &r),
            state: self.resolve(thread, self.materialize(thread, &refs)?)?,
        }))
    }

    /// The newest checkpoint of a live thread.
    pub fn latest(&self, thread: &str) -> Result<Option<Checkpoint>, ThreadError> {
        if self.meta(thread)?.is_none() {
            return Ok(None);
        }
        match self.latest_id(thread)? {
            Some(id) => self.get(thread, id),
            None => Ok(None),
        }
    }

    /// Checkpoint headers of a live thread, newest first, filtered.
    pub fn list(
        &self,
        thread: &str,
        filter: &ListFilter,
    ) -> Result<Vec<CheckpointMeta>, ThreadError> {
        if self.meta(thread)?.is_none() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for id in self.ids(thread)?.into_iter().rev() {
            if filter.before.is_some_and(|b| id >= b) {
                continue;
            }
            let r = self.need_record(thread, id)?;
            if filter.source.is_some_and(|s| s != r.source) {
                continue;
            }
            if !filter
                .metadata
                .iter()
                .all(|(k, v)| r.metadata.get(k) == Some(v))
            {
                continue;
            }
            out.push(Self::meta_of(thread, id, &r));
            if filter.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    /// Live thread names, in order.
    pub fn threads(&self) -> Result<Vec<String>, ThreadError> {
        let mut out = Vec::new();
        for (k, _) in self.backend.range("", None)? {
            if let Some(t) = k.strip_suffix("/meta").filter(|t| !t.contains('/'))
                && self.meta(t)?.is_some()
            {
                out.push(t.to_owned());
            }
        }
        Ok(out)
    }

    /// Durably records a finished sub-task's writes against checkpoint `id`.
    pub fn put_writes(
        &self,
        thread: &str,
        id: u64,
        task: &str,
        writes: Vec<(String, Vec<u8>)>,
    ) -> Result<(), ThreadError> {
        valid("task", task)?;
        let _guard = self.lock();
        if self.meta(thread)?.is_none() {
            return Err(ThreadError::NoThread {
                thread: thread.to_owned(),
            });
        }
        self.need_record(thread, id)?;
        let pw = StoredPending {
            task: task.to_owned(),
            writes: writes
                .into_iter()
                .map(|(k, v)| Ok((k, self.store_value(v)?)))
                .collect::<Result<_, ThreadError>>()?,
        };
        let batch = vec![Mutation::Put(
            format!("{}{task}", wprefix(thread, id)),
            enc("pending writes", &pw)?,
        )];
        self.check_sizes(thread, &batch, false)?;
        self.backend.commit(batch)?;
        Ok(())
    }

    /// Sub-task writes recorded against checkpoint `id`, by task name.
    pub fn pending_writes(&self, thread: &str, id: u64) -> Result<Vec<PendingWrite>, ThreadError> {
        valid("thread", thread)?;
        self.backend
            .scan_prefix(&wprefix(thread, id))?
            .into_iter()
            .map(|(_, v)| {
                let p: StoredPending = dec("pending writes", &v)?;
                Ok(PendingWrite {
                    task: p.task,
                    writes: p
                        .writes
                        .into_iter()
                        .map(|(k, v)| Ok((k, self.load_value(thread, v)?)))
                        .collect::<Result<_, ThreadError>>()?,
                })
            })
            .collect()
    }

    /// Tasks already finished from checkpoint `id` (not to be run again).
    pub fn completed_tasks(&self, thread: &str, id: u64) -> Result<BTreeSet<String>, ThreadError> {
        valid("thread", thread)?;
        // Task names only: no blob is fetched.
        self.backend
            .scan_prefix(&wprefix(thread, id))?
            .into_iter()
            .map(|(_, v)| Ok(dec::<StoredPending>("pending writes", &v)?.task))
            .collect()
    }

    /// Forks checkpoint `id` of `thread`. Into the same thread: a new checkpoint with parent
    /// `id` and source [`Source::Fork`] (a branch). Into another thread (which must not
    /// exist): a copy whose first checkpoint holds the full state, self-contained.
    pub fn fork(&self, thread: &str, id: u64, into: &str) -> Result<u64, ThreadError> {
        valid("thread", into)?;
        if self.meta(thread)?.is_none() {
            return Err(ThreadError::NoThread {
                thread: thread.to_owned(),
            });
        }
        self.need_record(thread, id)?;
        if into == thread {
            return Ok(self
                .put(
                    thread,
                    StepInput::after(id, Source::Fork, self.need_record(thread, id)?.step),
                )?
                .id);
        }
        let _guard = self.lock();
        if self.backend.get(&mkey(into))?.is_some() && self.meta(into)?.is_some() {
            return Err(ThreadError::Exists {
                thread: into.to_owned(),
            });
        }
        let src = self.need_record(thread, id)?;
        let state = self.materialize(thread, &self.refs(thread, id)?)?;
        let now = self.now();
        let mut metadata = src.metadata.clone();
        metadata.insert("forked_from".into(), format!("{thread}/{id}"));
        let record = Record {
            parent: None,
            source: Source::Fork,
            step: src.step,
            created_ms: now,
            metadata,
            depth: 0,
            body: Body::Snapshot(state.into_iter().collect()),
        };
        let meta = ThreadMeta {
            created_ms: now,
            expires_at_ms: self
                .options
                .default_ttl
                .map(|t| now.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))),
            next_id: 2,
        };
        // Clear leftovers of an expired thread of that name in the same batch.
        let mut batch: Vec<Mutation> = self
            .backend
            .scan_prefix(&format!("{into}/"))?
            .into_iter()
            .map(|(k, _)| Mutation::Delete(k))
            .collect();
        batch.push(Mutation::Put(ckey(into, 1), enc("checkpoint", &record)?));
        batch.push(Mutation::Put(mkey(into), enc("thread meta", &meta)?));
        self.check_sizes(into, &batch, true)?;
        self.backend.commit(batch)?;
        Ok(1)
    }

    /// Deletes the thread in one batch; returns whether it existed.
    pub fn delete(&self, thread: &str) -> Result<bool, ThreadError> {
        valid("thread", thread)?;
        let _guard = self.lock();
        self.delete_locked(thread)
    }

    fn delete_locked(&self, thread: &str) -> Result<bool, ThreadError> {
        let batch: Vec<Mutation> = self
            .backend
            .scan_prefix(&format!("{thread}/"))?
            .into_iter()
            .map(|(k, _)| Mutation::Delete(k))
            .collect();
        if batch.is_empty() {
            return Ok(false);
        }
        self.backend.commit(batch)?;
        Ok(true)
    }

    /// Sets (or clears) the thread's TTL, as a deadline of now + `ttl`.
    pub fn set_ttl(&self, thread: &str, ttl: Option<Duration>) -> Result<(), ThreadError> {
        let _guard = self.lock();
        let mut meta = self.meta(thread)?.ok_or_else(|| ThreadError::NoThread {
            thread: thread.to_owned(),
        })?;
        meta.expires_at_ms = ttl.map(|t| {
            self.now()
                .saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
        });
        self.backend.commit(vec![Mutation::Put(
            mkey(thread),
            enc("thread meta", &meta)?,
        )])?;
        Ok(())
    }

    /// Deletes every expired thread (each in one batch) and expired idempotency keys; returns
    /// the deleted threads.
    pub fn sweep_expired(&self) -> Result<Vec<String>, ThreadError> {
        let _guard = self.lock();
        let now = self.now();
        let window =
            u64::try_from(self.options.idempotency_retention.as_millis()).unwrap_or(u64::MAX);
        let mut gone = Vec::new();
        let mut stale_keys = Vec::new();
        for (k, v) in self.backend.range("", None)? {
            if let Some(t) = k.strip_suffix("/meta").filter(|t| !t.contains('/')) {
                let m: ThreadMeta = dec("thread meta", &v)?;
                if m.expires_at_ms.is_some_and(|d| d <= now) {
                    gone.push(t.to_owned());
                }
            } else if k.split('/').nth(1) == Some("i") {
                let idem: Idem = dec("idempotency key", &v)?;
                if idem.created_ms.saturating_add(window) <= now {
                    stale_keys.push(Mutation::Delete(k));
                }
            }
        }
        for t in &gone {
            self.delete_locked(t)?;
        }
        if !stale_keys.is_empty() {
            self.backend.commit(stale_keys)?;
        }
        Ok(gone)
    }

    /// Keeps the newest `keep` checkpoints and removes the rest (with their pending writes and
    /// idempotency keys) in one batch. Kept checkpoints that depended on removed ones are
    /// rewritten as self-contained snapshots in the same batch.
    pub fn prune(&self, thread: &str, keep: usize) -> Result<PruneReport, ThreadError> {
        let _guard = self.lock();
        if self.meta(thread)?.is_none() {
            return Err(ThreadError::NoThread {
                thread: thread.to_owned(),
            });
        }
        let ids = self.ids(thread)?;
        if ids.len() <= keep {
            return Ok(PruneReport::default());
        }
        let split = ids.len() - keep;
        let removed: BTreeSet<u64> = ids[..split].iter().copied().collect();
        let mut batch = Vec::new();
        let mut report = PruneReport {
            removed: removed.len(),
            rebased: 0,
        };
        for &id in &ids[split..] {
            let refs = self.refs(thread, id)?;
            let mut r = self.need_record(thread, id)?;
            let chain_hits_removed = self.chain(thread, id)?.iter().any(|c| removed.contains(c));
            if chain_hits_removed || refs.values().any(|c| removed.contains(c)) {
                let state = self.materialize(thread, &refs)?;
                r.depth = 0;
                r.body = Body::Snapshot(state.into_iter().collect());
                batch.push(Mutation::Delete(xkey(thread, id)));
                batch.push(Mutation::Put(ckey(thread, id), enc("checkpoint", &r)?));
                report.rebased += 1;
            }
        }
        for &id in &removed {
            batch.push(Mutation::Delete(ckey(thread, id)));
            batch.push(Mutation::Delete(xkey(thread, id)));
            for (k, _) in self.backend.scan_prefix(&wprefix(thread, id))? {
                batch.push(Mutation::Delete(k));
            }
        }
        for (k, v) in self.backend.scan_prefix(&format!("{thread}/i/"))? {
            let idem: Idem = dec("idempotency key", &v)?;
            if removed.contains(&idem.id) {
                batch.push(Mutation::Delete(k));
            }
        }
        self.backend.commit(batch)?;
        Ok(report)
    }

    /// Ids from `id` up to and including its snapshot (the records replay reads in sequence).
    fn chain(&self, thread: &str, id: u64) -> Result<Vec<u64>, ThreadError> {
        let mut out = vec![id];
        let mut r = self.need_record(thread, id)?;
        while let (Body::Delta(_), Some(p)) = (&r.body, r.parent) {
            out.push(p);
            r = self.need_record(thread, p)?;
        }
        Ok(out)
    }
}
