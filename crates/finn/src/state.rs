//! The runtime's keyed state: the fold of every keyed WAL record (latest put per `(kind, key)`,
//! deletes remove), with the LSN it is complete through, and its snapshot file in `state/`.
//!
//! The snapshot is what checkpoints carry; after a restore, replaying the WAL records above the
//! snapshot's LSN gives back exactly the state of the moment of the crash.
//!
//! Snapshot file `state/kv.bin`: `finn_wal::codec` (bincode 2, standard config) of
//! `SnapshotFile { format: u32 = 1, applied_lsn: u64, entries: Vec<(u16 kind code, String key,
//! Vec<u8> value)> }`, followed by a 32-byte blake3 of everything before it. It is replaced
//! atomically (temp, fdatasync, rename, directory fsync).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use finn_wal::{Kind, Lsn, Op, Record};
use serde::{Deserialize, Serialize};

/// File name of the snapshot inside the state directory.
pub const SNAPSHOT_FILE: &str = "kv.bin";
const SNAPSHOT_FORMAT: u32 = 1;
const HASH_LEN: usize = 32;

/// Why the snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing the snapshot failed.
    #[error("I/O error on {path}")]
    Io {
        /// The snapshot file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The snapshot's checksum or encoding is wrong.
    #[error("state snapshot {path} is corrupt: {reason}; recover from a checkpoint")]
    Corrupt {
        /// The snapshot file.
        path: PathBuf,
        /// What failed.
        reason: &'static str,
    },
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    format: u32,
    applied_lsn: u64,
    entries: Vec<(u16, String, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct Inner {
    applied: Lsn,
    map: BTreeMap<(u16, String), Vec<u8>>,
}

/// Latest value per `(kind, key)`, complete through [`StateStore::applied_lsn`].
#[derive(Debug, Default)]
pub struct StateStore {
    inner: Mutex<Inner>,
}

impl StateStore {
    /// An empty store (nothing applied).
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a map that is still a valid fold.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Folds one record in and moves the applied LSN to it. Records at or below the applied
    /// LSN are skipped, so replaying a range twice is harmless. Events and kinds without a code
    /// only move the applied LSN.
    pub fn apply(&self, record: &Record) {
        let mut inner = self.lock();
        if record.lsn <= inner.applied {
            return;
        }
        inner.applied = record.lsn;
        Self::fold(&mut inner, record);
    }

    /// Folds a record the caller just appended into the values *without* moving the applied
    /// LSN: other writers' records below it may not be folded yet. A later [`StateStore::apply`]
    /// pass over the WAL in LSN order (the runtime does one before every snapshot) folds the
    /// same record again, which is harmless because a keyed put is idempotent.
    pub fn apply_ahead(&self, record: &Record) {
        let mut inner = self.lock();
        if record.lsn <= inner.applied {
            return;
        }
        Self::fold(&mut inner, record);
    }

    fn fold(inner: &mut Inner, record: &Record) {
        let (Some(code), Some(key)) = (record.kind.code(), record.key.as_ref()) else {
            return;
        };
        match record.op {
            Op::Put => {
                inner
                    .map
                    .insert((code, key.clone()), record.payload.clone());
            }
            Op::Delete => {
                inner.map.remove(&(code, key.clone()));
            }
            Op::Event => {}
        }
    }

    /// Marks everything through `lsn` as applied (records between that the store never saw were
    /// not keyed state, or were folded into a restored snapshot).
    pub fn advance(&self, lsn: Lsn) {
        let mut inner = self.lock();
        inner.applied = inner.applied.max(lsn);
    }

    /// The LSN the fold is complete through.
    pub fn applied_lsn(&self) -> Lsn {
        self.lock().applied
    }

    /// The current value of `(kind, key)`.
    pub fn get(&self, kind: Kind, key: &str) -> Option<Vec<u8>> {
        let code = kind.code()?;
        self.lock().map.get(&(code, key.to_owned())).cloned()
    }

    /// Every `(key, value)` of `kind` whose key starts with `prefix`, in key order.
    pub fn scan(&self, kind: Kind, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let Some(code) = kind.code() else {
            return Vec::new();
        };
        self.lock()
            .map
            .range((code, prefix.to_owned())..)
            .take_while(|((c, k), _)| *c == code && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the snapshot into `state_dir` atomically; returns the LSN it covers.
    pub fn write_snapshot(&self, state_dir: &Path) -> Result<Lsn, StateError> {
        let (lsn, bytes) = {
            let inner = self.lock();
            let file = SnapshotFile {
                format: SNAPSHOT_FORMAT,
                applied_lsn: inner.applied.get(),
                entries: inner
                    .map
                    .iter()
                    .map(|((c, k), v)| (*c, k.clone(), v.clone()))
                    .collect(),
            };
            (inner.applied, finn_wal::codec::encode(&file))
        };
        let path = state_dir.join(SNAPSHOT_FILE);
        let mut bytes = bytes.map_err(|_| StateError::Corrupt {
            path: path.clone(),
            reason: "cannot encode the snapshot",
        })?;
        let hash = checksum(&bytes);
        bytes.extend_from_slice(&hash);
        std::fs::create_dir_all(state_dir).map_err(|source| StateError::Io {
            path: state_dir.to_path_buf(),
            source,
        })?;
        finn_wal::fs::write_atomic(&path, &bytes).map_err(|source| StateError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(lsn)
    }

    /// The snapshot bytes of an empty store (the runtime's template state).
    pub fn empty_snapshot() -> Vec<u8> {
        let file = SnapshotFile {
            format: SNAPSHOT_FORMAT,
            applied_lsn: 0,
            entries: Vec::new(),
        };
        // Encoding an empty struct of integers and an empty vector cannot fail.
        let mut bytes = finn_wal::codec::encode(&file).unwrap_or_default();
        let hash = checksum(&bytes);
        bytes.extend_from_slice(&hash);
        bytes
    }

    /// Loads the snapshot from `state_dir`; a missing file gives an empty store.
    pub fn load(state_dir: &Path) -> Result<Self, StateError> {
        let path = state_dir.join(SNAPSHOT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::new()),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        Self::decode(&bytes).map_err(|reason| StateError::Corrupt { path, reason })
    }

    /// Checks a snapshot's bytes (for recovery validators).
    pub fn validate(bytes: &[u8]) -> Result<(), &'static str> {
        Self::decode(bytes).map(|_| ())
    }

    fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        if bytes.len() < HASH_LEN {
            return Err("shorter than its checksum");
        }
        let (body, hash) = bytes.split_at(bytes.len() - HASH_LEN);
        if checksum(body) != hash {
            return Err("checksum mismatch");
        }
        let file: SnapshotFile =
            finn_wal::codec::decode(body).map_err(|_| "undecodable snapshot")?;
        if file.format != SNAPSHOT_FORMAT {
            return Err("unknown snapshot format");
        }
        let map = file
            .entries
            .into_iter()
            .map(|(c, k, v)| ((c, k), v))
            .collect();
        Ok(Self {
            inner: Mutex::new(Inner {
                applied: Lsn::new(file.applied_lsn),
                map,
            }),
        })
    }
}

fn checksum(bytes: &[u8]) -> [u8; HASH_LEN] {
    *blake3::hash(bytes).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(lsn: u64, op: Op, key: &str, value: &[u8]) -> Record {
        Record {
            lsn: Lsn::new(lsn),
            id: ulid::Ulid::nil(),
            timestamp_ms: 0,
            kind: Kind::Session,
            op,
            key: Some(key.to_owned()),
            payload: value.to_vec(),
        }
    }

    #[test]
    fn folds_latest_put_and_deletes_and_skips_replayed_records() {
        let s = StateStore::new();
        s.apply(&rec(1, Op::Put, "a", b"1"));
        s.apply(&rec(2, Op::Put, "b", b"2"));
        s.apply(&rec(3, Op::Put, "a", b"3"));
        s.apply(&rec(4, Op::Delete, "b", b""));
        s.apply(&rec(2, Op::Put, "b", b"2"));
        assert_eq!(s.get(Kind::Session, "a").as_deref(), Some(&b"3"[..]));
        assert_eq!(s.get(Kind::Session, "b"), None);
        assert_eq!(s.applied_lsn(), Lsn::new(4));
    }

    #[test]
    fn snapshot_round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::new();
        s.apply(&rec(7, Op::Put, "session/1", b"hello"));
        assert_eq!(s.write_snapshot(dir.path()).unwrap(), Lsn::new(7));
        let back = StateStore::load(dir.path()).unwrap();
        assert_eq!(back.applied_lsn(), Lsn::new(7));
        assert_eq!(back.scan(Kind::Session, "session/").len(), 1);

        let path = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            StateStore::load(dir.path()),
            Err(StateError::Corrupt { .. })
        ));
    }
}
