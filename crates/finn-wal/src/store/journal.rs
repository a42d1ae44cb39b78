//! Actor journals: many named streams in one backend, each an append-only sequence of entries
//! with snapshots (state + cursor) and trimming.
//!
//! Entries of stream `s` live under `s/e/<seq>` (20-digit, so key order is sequence order);
//! the latest snapshot under `s/s`. Sequence numbers start at 1 and never repeat within a
//! stream's life (after [`Journals::delete`] a new stream of that name starts again at 1).
//!
//! With a [`Reducer`], every [`JournalOptions::snapshot_every`] entries (default 100) the
//! journal folds the stream, writes the snapshot and trims the entries it covers, in one
//! atomic batch, so a restore reads one snapshot and fewer than `snapshot_every` entries.
//! Trimming past the newest snapshot is refused ([`StoreError::TrimBeyondSnapshot`]) because a
//! restore could not see those entries any more.
//!
//! ```
//! use finn_wal::store::{MemoryBackend, journal::{JournalOptions, Journals}};
//! // State: a little-endian u64 sum of one-byte entries.
//! let sum = |state: &mut Vec<u8>, entry: &[u8]| {
//!     let mut n = u64::from_le_bytes(state.as_slice().try_into().unwrap_or([0; 8]));
//!     n += u64::from(entry[0]);
//!     *state = n.to_le_bytes().to_vec();
//! };
//! let j = Journals::open(MemoryBackend::new(), JournalOptions { snapshot_every: Some(3) })?
//!     .with_reducer(sum);
//! for i in 1..=7u8 {
//!     j.append("actor-1", vec![i])?;
//! }
//! let (state, cursor) = j.restore_state("actor-1")?;
//! assert_eq!(cursor, 7);
//! assert_eq!(state, 28u64.to_le_bytes());
//! assert_eq!(j.read("actor-1", ..)?.len(), 1); // entries 1..=6 were snapshotted and trimmed
//! # Ok::<(), finn_wal::store::StoreError>(())
//! ```

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{Backend, Mutation, StoreError, decode, encode, push_padded, validate_segment};

/// Default automatic snapshot threshold (the seed design's "every 100 entries").
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 100;

/// Journal configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalOptions {
    /// Snapshot and trim automatically once this many entries follow the latest snapshot
    /// (needs a [`Reducer`]; `None` disables it). Default: `Some(100)`.
    pub snapshot_every: Option<u64>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            snapshot_every: Some(DEFAULT_SNAPSHOT_EVERY),
        }
    }
}

/// Folds one entry into a stream's state (both opaque bytes).
pub trait Reducer: Send + Sync {
    /// Applies `entry` to `state`.
    fn apply(&self, state: &mut Vec<u8>, entry: &[u8]);
}

impl<F: Fn(&mut Vec<u8>, &[u8]) + Send + Sync> Reducer for F {
    fn apply(&self, state: &mut Vec<u8>, entry: &[u8]) {
        self(state, entry)
    }
}

/// A stream's state as of `cursor` (the last entry it includes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Sequence number of the last entry folded into `state`.
    pub cursor: u64,
    /// The folded state.
    #[serde(with = "super::raw_bytes")]
    pub state: Vec<u8>,
}

/// What a restore reads: the latest snapshot and the entries after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// The latest snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Entries after the snapshot's cursor, in order.
    pub entries: Vec<(u64, Vec<u8>)>,
}

#[derive(Clone, Copy, Debug, Default)]
struct StreamMeta {
    last_seq: u64,
    snapshot_cursor: u64,
}

/// Named append-only streams with snapshots, on one [`Backend`].
pub struct Journals<B: Backend> {
    backend: B,
    options: JournalOptions,
    reducer: Option<Box<dyn Reducer>>,
    streams: Mutex<BTreeMap<String, StreamMeta>>,
}

impl<B: Backend> std::fmt::Debug for Journals<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journals")
            .field("options", &self.options)
            .field("reducer", &self.reducer.is_some())
            .finish_non_exhaustive()
    }
}

fn entry_key(stream: &str, seq: u64) -> String {
    let mut key = String::with_capacity(stream.len() + 23);
    key.push_str(stream);
    key.push_str("/e/");
    push_padded(&mut key, seq, 20);
    key
}

fn snapshot_key(stream: &str) -> String {
    format!("{stream}/s")
}

impl<B: Backend> Journals<B> {
    /// Opens the journals kept in `backend` (every key of the backend belongs to them).
    pub fn open(backend: B, options: JournalOptions) -> Result<Self, StoreError> {
        let mut streams: BTreeMap<String, StreamMeta> = BTreeMap::new();
        for (key, value) in backend.range("", None)? {
            let corrupt = |reason| StoreError::Corrupt {
                key: key.clone(),
                reason,
            };
            let (stream, rest) = key.split_once('/').ok_or_else(|| corrupt("no stream"))?;
            let meta = streams.entry(stream.to_owned()).or_default();
            if rest == "s" {
                let snap: Snapshot = decode("journal snapshot", &value)?;
                meta.snapshot_cursor = snap.cursor;
                meta.last_seq = meta.last_seq.max(snap.cursor);
            } else {
                let seq = rest
                    .strip_prefix("e/")
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| corrupt("not a journal key"))?;
                meta.last_seq = meta.last_seq.max(seq);
            }
        }
        Ok(Self {
            backend,
            options,
            reducer: None,
            streams: Mutex::new(streams),
        })
    }

    /// Gives the backend back (to reopen the journals on it).
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Sets the reducer that [`restore_state`](Self::restore_state) and automatic snapshots use.
    pub fn with_reducer(mut self, reducer: impl Reducer + 'static) -> Self {
        self.reducer = Some(Box::new(reducer));
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StreamMeta>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one entry durably; returns its sequence number.
    pub fn append(&self, stream: &str, entry: impl Into<Vec<u8>>) -> Result<u64, StoreError> {
        let seqs = self.append_all(stream, vec![entry.into()])?;
        Ok(seqs.last().copied().unwrap_or(0))
    }

    /// Appends entries atomically and durably; returns their sequence numbers.
    pub fn append_all(&self, stream: &str, entries: Vec<Vec<u8>>) -> Result<Vec<u64>, StoreError> {
        validate_segment("stream", stream)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut streams = self.lock();
        let meta = streams.get(stream).copied().unwrap_or_default();
        let first = meta.last_seq + 1;
        let seqs: Vec<u64> = (first..first + entries.len() as u64).collect();
        let batch = seqs
            .iter()
            .zip(entries)
            .map(|(seq, e)| Mutation::Put(entry_key(stream, *seq), e))
            .collect();
        self.backend.commit(batch)?;
        let last = first + seqs.len() as u64 - 1;
        let meta = streams.entry(stream.to_owned()).or_default();
        meta.last_seq = last;
        let due = self
            .options
            .snapshot_every
            .is_some_and(|n| last - meta.snapshot_cursor >= n.max(1));
        if due && self.reducer.is_some() {
            // Relaxed: the entries are durable already; losing this batch only means the
            // snapshot is taken again later.
            self.snapshot_locked(&mut streams, stream, false)?;
        }
        Ok(seqs)
    }

    /// Entries of `stream` with sequence numbers in `range` that are not trimmed, in order.
    pub fn read(
        &self,
        stream: &str,
        range: impl RangeBounds<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        validate_segment("stream", stream)?;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Some(e.saturating_add(1)),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        let lo = entry_key(stream, start);
        let hi = match end {
            Some(e) => entry_key(stream, e),
            None => format!("{stream}/e0"), // '0' follows '/'
        };
        self.backend
            .range(&lo, Some(&hi))?
            .into_iter()
            .map(|(k, v)| {
                let seq = k
                    .rsplit('/')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(StoreError::Corrupt {
                        key: k.clone(),
                        reason: "not a journal key",
                    })?;
                Ok((seq, v))
            })
            .collect()
    }

    /// The newest sequence number of `stream` (0 if it has none).
    pub fn last_seq(&self, stream: &str) -> u64 {
        self.lock().get(stream).map_or(0, |m| m.last_seq)
    }

    /// Every stream name, in order.
    pub fn streams(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The latest snapshot of `stream`.
    pub fn latest_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        validate_segment("stream", stream)?;
        self.backend
            .get(&snapshot_key(stream))?
            .map(|b| decode("journal snapshot", &b))
            .transpose()
    }

    /// Stores `state` as the snapshot of `stream` through `cursor` (durably). A cursor above
    /// the last entry or below the current snapshot is refused.
    pub fn snapshot(&self, stream: &str, cursor: u64, state: Vec<u8>) -> Result<(), StoreError> {
        validate_segment("stream", stream)?;
        let mut streams = self.lock();
        let meta = streams.get(stream).copied().unwrap_or_default();
        if cursor > meta.last_seq || cursor < meta.snapshot_cursor {
            return Err(StoreError::InvalidName {
                what: "snapshot cursor",
                value: cursor.to_string(),
                reason: "must lie between the current snapshot and the last entry",
            });
        }
        let snap = Snapshot { cursor, state };
        self.backend.commit(vec![Mutation::Put(
            snapshot_key(stream),
            encode("journal snapshot", &snap)?,
        )])?;
        streams
            .entry(stream.to_owned())
            .or_default()
            .snapshot_cursor = cursor;
        Ok(())
    }

    /// Folds the stream with the reducer, stores the snapshot and trims the entries it covers,
    /// in one durable batch; returns the snapshot's cursor.
    pub fn snapshot_now(&self, stream: &str) -> Result<u64, StoreError> {
        validate_segment("stream", stream)?;
        let mut streams = self.lock();
        self.snapshot_locked(&mut streams, stream, true)
    }

    fn snapshot_locked(
        &self,
        streams: &mut BTreeMap<String, StreamMeta>,
        stream: &str,
        durable: bool,
    ) -> Result<u64, StoreError> {
        let (state, cursor) = self.fold(stream)?;
        let mut batch = self.entry_deletes(stream, cursor)?;
        let snap = Snapshot { cursor, state };
        batch.push(Mutation::Put(
            snapshot_key(stream),
            encode("journal snapshot", &snap)?,
        ));
        if durable {
            self.backend.commit(batch)?;
        } else {
            self.backend.commit_relaxed(batch)?;
        }
        streams
            .entry(stream.to_owned())
            .or_default()
            .snapshot_cursor = cursor;
        Ok(cursor)
    }

    /// Removes entries through `cursor`, which the latest snapshot must cover.
    pub fn trim(&self, stream: &str, cursor: u64) -> Result<usize, StoreError> {
        validate_segment("stream", stream)?;
        let streams = self.lock();
        let snapshot = streams.get(stream).map_or(0, |m| m.snapshot_cursor);
        if cursor > snapshot {
            return Err(StoreError::TrimBeyondSnapshot {
                stream: stream.to_owned(),
                cursor,
                snapshot,
            });
        }
        let batch = self.entry_deletes(stream, cursor)?;
        let n = batch.len();
        self.backend.commit(batch)?;
        Ok(n)
    }

    /// Deletes the stream (entries and snapshot) in one durable batch.
    pub fn delete(&self, stream: &str) -> Result<(), StoreError> {
        validate_segment("stream", stream)?;
        let mut streams = self.lock();
        // '0' follows '/': every key of the stream, and only those.
        let batch: Vec<Mutation> = self
            .backend
            .keys(&format!("{stream}/"), Some(&format!("{stream}0")))?
            .into_iter()
            .map(Mutation::Delete)
            .collect();
        self.backend.commit(batch)?;
        streams.remove(stream);
        Ok(())
    }

    /// Deletes of every entry of `stream` through `cursor`.
    fn entry_deletes(&self, stream: &str, cursor: u64) -> Result<Vec<Mutation>, StoreError> {
        let hi = match cursor.checked_add(1) {
            Some(next) => entry_key(stream, next),
            None => format!("{stream}/e0"), // '0' follows '/'
        };
        let keys = self.backend.keys(&entry_key(stream, 0), Some(&hi))?;
        Ok(keys.into_iter().map(Mutation::Delete).collect())
    }

    /// The latest snapshot and every entry after it.
    pub fn restore(&self, stream: &str) -> Result<Restored, StoreError> {
        let snapshot = self.latest_snapshot(stream)?;
        let from = snapshot.as_ref().map_or(0, |s| s.cursor + 1);
        let entries = self.read(stream, from..)?;
        Ok(Restored { snapshot, entries })
    }

    /// The stream's state (folded with the reducer from the latest snapshot) and the last
    /// sequence number it includes. Without a reducer, the snapshot's state is returned as is
    /// and later entries are not folded.
    pub fn restore_state(&self, stream: &str) -> Result<(Vec<u8>, u64), StoreError> {
        validate_segment("stream", stream)?;
        let _guard = self.lock();
        self.fold(stream)
    }

    fn fold(&self, stream: &str) -> Result<(Vec<u8>, u64), StoreError> {
        let Restored { snapshot, entries } = self.restore(stream)?;
        let (mut state, mut cursor) = snapshot.map_or((Vec::new(), 0), |s| (s.state, s.cursor));
        if let Some(reducer) = &self.reducer {
            for (seq, entry) in entries {
                reducer.apply(&mut state, &entry);
                cursor = seq;
            }
        }
        Ok((state, cursor))
    }
}
