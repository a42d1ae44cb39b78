//! A versioned key-value store with namespaces, compare-and-set, TTL and a change feed.
//!
//! Values live under `<namespace>/<key>` as [`Entry`] records. Versions come from one
//! store-wide revision counter, so a version is never reused, not even after a delete and a
//! re-create (a compare-and-set holding a stale version always fails). Deletes also record the
//! counter under the reserved key `#rev`, so the counter survives restarts even when the newest
//! key was deleted.
//!
//! TTL is stored as an absolute deadline (Unix milliseconds): an expired value is invisible to
//! every read at once, also after a restart, and [`Kv::purge_expired`] removes expired values
//! in one batch.
//!
//! ```
//! use std::time::Duration;
//! use finn_wal::store::{MemoryBackend, StoreError, kv::{Kv, KvOptions}};
//! let kv = Kv::open(MemoryBackend::new(), KvOptions::default())?;
//! let v1 = kv.put("sessions", "s-1", b"idle".to_vec(), None)?;
//! let v2 = kv.put_if("sessions", "s-1", Some(v1), b"busy".to_vec(), Some(Duration::from_secs(60)))?;
//! assert!(matches!(
//!     kv.put_if("sessions", "s-1", Some(v1), b"lost".to_vec(), None),
//!     Err(StoreError::VersionConflict { .. })
//! ));
//! assert_eq!(kv.get("sessions", "s-1")?.map(|e| (e.version, e.value)), Some((v2, b"busy".to_vec())));
//! # Ok::<(), StoreError>(())
//! ```

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Backend, Mutation, StoreError, decode, encode, prefix_end, validate_segment};

const REV_KEY: &str = "#rev";

/// Milliseconds since the Unix epoch; injectable so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// Store configuration.
#[derive(Clone)]
pub struct KvOptions {
    /// Source of "now" for TTL. Default: [`system_clock`].
    pub clock: Clock,
}

impl Default for KvOptions {
    fn default() -> Self {
        Self {
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for KvOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvOptions").finish_non_exhaustive()
    }
}

/// A stored value with its version and deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The store revision that wrote it.
    pub version: u64,
    /// Unix milliseconds after which it is gone (`None`: never).
    pub expires_at_ms: Option<u64>,
    /// The caller's bytes.
    #[serde(with = "super::raw_bytes")]
    pub value: Vec<u8>,
}

/// What happened to a key, in commit order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Namespace.
    pub namespace: String,
    /// Key within the namespace.
    pub key: String,
    /// What happened.
    pub event: ChangeEvent,
}

/// The kind of change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeEvent {
    /// A value was written.
    Put(Entry),
    /// The key was deleted.
    Delete,
    /// The key expired and was purged.
    Expired,
}

#[derive(Default)]
struct Inner {
    revision: u64,
    subscribers: Vec<Sender<Change>>,
}

/// The key-value store on a [`Backend`] (every key of the backend belongs to it).
pub struct Kv<B: Backend> {
    backend: B,
    clock: Clock,
    inner: Mutex<Inner>,
}

impl<B: Backend> std::fmt::Debug for Kv<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv").finish_non_exhaustive()
    }
}

fn full_key(ns: &str, key: &str) -> Result<String, StoreError> {
    validate_segment("namespace", ns)?;
    if key.is_empty() {
        return Err(StoreError::InvalidName {
            what: "key",
            value: String::new(),
            reason: "must not be empty",
        });
    }
    Ok(format!("{ns}/{key}"))
}

impl<B: Backend> Kv<B> {
    /// Opens the store, recovering the revision counter.
    pub fn open(backend: B, options: KvOptions) -> Result<Self, StoreError> {
        let mut revision = match backend.get(REV_KEY)? {
            Some(b) => decode::<u64>("revision", &b)?,
            None => 0,
        };
        for (key, bytes) in backend.range("", None)? {
            if key == REV_KEY {
                continue;
            }
            let e: Entry = decode("kv entry", &bytes)?;
            revision = revision.max(e.version);
        }
        Ok(Self {
            backend,
            clock: options.clock,
            inner: Mutex::new(Inner {
                revision,
                subscribers: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    fn live(&self, bytes: &[u8], now: u64) -> Result<Option<Entry>, StoreError> {
        let e: Entry = decode("kv entry", bytes)?;
        Ok(e.expires_at_ms.is_none_or(|d| d > now).then_some(e))
    }

    /// The live (not expired) entry of `key`.
    pub fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>, StoreError> {
        let k = full_key(ns, key)?;
        match self.backend.get(&k)? {
            Some(b) => self.live(&b, self.now()),
            None => Ok(None),
        }
    }

    /// Writes `value` (durably) and returns its version. `ttl` sets an absolute deadline of
    /// now + `ttl`.
    pub fn put(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<u64, StoreError> {
        self.write(ns, key, None, value, ttl)
    }

    /// Writes `value` only if the live version of `key` is `expected` (`None`: absent or
    /// expired); otherwise [`StoreError::VersionConflict`].
    pub fn put_if(
        &self,
        ns: &str,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<u64, StoreError> {
        self.write(ns, key, Some(expected), value, ttl)
    }

    fn write(
        &self,
        ns: &str,
        key: &str,
        expected: Option<Option<u64>>,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<u64, StoreError> {
        let k = full_key(ns, key)?;
        let mut inner = self.lock();
        let now = self.now();
        if let Some(expected) = expected {
            self.check_version(&k, key, expected, now)?;
        }
        let version = inner.revision + 1;
        let entry = Entry {
            version,
            expires_at_ms: ttl
                .map(|t| now.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))),
            value,
        };
        self.backend
            .commit(vec![Mutation::Put(k, encode("kv entry", &entry)?)])?;
        inner.revision = version;
        notify(&mut inner, ns, key, ChangeEvent::Put(entry));
        Ok(version)
    }

    fn check_version(
        &self,
        full: &str,
        key: &str,
        expected: Option<u64>,
        now: u64,
    ) -> Result<(), StoreError> {
        let found = match self.backend.get(full)? {
            Some(b) => self.live(&b, now)?.map(|e| e.version),
            None => None,
        };
        if found != expected {
            return Err(StoreError::VersionConflict {
                key: key.to_owned(),
                expected,
                found,
            });
        }
        Ok(())
    }

    /// Deletes `key` durably; returns whether a live value was removed.
    pub fn delete(&self, ns: &str, key: &str) -> Result<bool, StoreError> {
        self.remove(ns, key, None)
    }

    /// Deletes `key` only if its live version is `expected`.
    pub fn delete_if(&self, ns: &str, key: &str, expected: u64) -> Result<bool, StoreError> {
        self.remove(ns, key, Some(expected))
    }

    fn remove(&self, ns: &str, key: &str, expected: Option<u64>) -> Result<bool, StoreError> {
        let k = full_key(ns, key)?;
        let mut inner = self.lock();
        let now = self.now();
        if let Some(v) = expected {
            self.check_version(&k, key, Some(v), now)?;
        }
        let Some(bytes) = self.backend.get(&k)? else {
            return Ok(false);
        };
        let was_live = self.live(&bytes, now)?.is_some();
        self.backend.commit(vec![
            Mutation::Delete(k),
            Mutation::Put(REV_KEY.to_owned(), encode("revision", &inner.revision)?),
        ])?;
        notify(&mut inner, ns, key, ChangeEvent::Delete);
        Ok(was_live)
    }

    /// Live entries of `ns` whose keys start with `prefix`, in key order.
    pub fn scan_prefix(&self, ns: &str, prefix: &str) -> Result<Vec<(String, Entry)>, StoreError> {
        validate_segment("namespace", ns)?;
        let p = format!("{ns}/{prefix}");
        self.collect(ns, self.backend.scan_prefix(&p)?)
    }

    /// Live entries of `ns` with `start <= key < end` (`end` `None`: to the namespace's end).
    pub fn range(
        &self,
        ns: &str,
        start: &str,
        end: Option<&str>,
    ) -> Result<Vec<(String, Entry)>, StoreError> {
        validate_segment("namespace", ns)?;
        let lo = format!("{ns}/{start}");
        let hi = match end {
            Some(e) => Some(format!("{ns}/{e}")),
            None => prefix_end(&format!("{ns}/")),
        };
        self.collect(ns, self.backend.range(&lo, hi.as_deref())?)
    }

    fn collect(
        &self,
        ns: &str,
        rows: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<(String, Entry)>, StoreError> {
        let now = self.now();
        let skip = ns.len() + 1;
        let mut out = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            if let Some(e) = self.live(&v, now)? {
                out.push((k[skip..].to_owned(), e));
            }
        }
        Ok(out)
    }

    /// Removes every expired value in one durable batch; returns how many.
    pub fn purge_expired(&self) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let now = self.now();
        let mut expired = Vec::new();
        for (k, v) in self.backend.range("", None)? {
            if k == REV_KEY {
                continue;
            }
            if self.live(&v, now)?.is_none() {
                expired.push(k);
            }
        }
        if expired.is_empty() {
            return Ok(0);
        }
        let mut batch: Vec<Mutation> = expired.iter().cloned().map(Mutation::Delete).collect();
        batch.push(Mutation::Put(
            REV_KEY.to_owned(),
            encode("revision", &inner.revision)?,
        ));
        self.backend.commit(batch)?;
        for k in &expired {
            if let Some((ns, key)) = k.split_once('/') {
                notify(&mut inner, ns, key, ChangeEvent::Expired);
            }
        }
        Ok(expired.len())
    }

    /// A feed of every change committed from now on, in commit order. Dropping the receiver
    /// unsubscribes.
    pub fn subscribe(&self) -> Receiver<Change> {
        let (tx, rx) = channel();
        self.lock().subscribers.push(tx);
        rx
    }

    /// Gives the backend back (to reopen the store on it).
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// The store revision (the newest version issued).
    pub fn revision(&self) -> u64 {
        self.lock().revision
    }
}

fn notify(inner: &mut Inner, ns: &str, key: &str, event: ChangeEvent) {
    if inner.subscribers.is_empty() {
        return;
    }
    let change = Change {
        namespace: ns.to_owned(),
        key: key.to_owned(),
        event,
    };
    inner.subscribers.retain(|s| s.send(change.clone()).is_ok());
}
