//! Time travel: look at the state as of an LSN or a moment without restoring anything.

use std::collections::BTreeMap;

use crate::Lsn;
use crate::error::Error;
use crate::manifest::FileEntry;
use crate::pitr::{RestorePlan, RestoreTarget};
use crate::read::{Reader, VerifiedManifest};
use crate::ship::{DEFAULT_PREFETCH, Stop, stream_shipped};

/// The latest keyed record for a `(kind, key)` as of the view's point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAt<'a> {
    /// Put by this record (its payload is the value).
    Put(&'a finn_wal::Record),
    /// Deleted by this record.
    Deleted(&'a finn_wal::Record),
    /// No record after the base checkpoint touched it: its value, if any, is in the
    /// checkpoint's files.
    NotInWal,
}

/// A read-only view of a prefix's state as of one point, from [`Reader::open_at`].
///
/// [`Reader::open_at`] plans like a restore (base checkpoint at or before the point, shipped
/// records after it up to the point) but writes nothing: the records are held in memory and the
/// base's files are downloaded (verified) only when read. For inspection and debugging: "what
/// did the agent's memory say at 14:02?", "which record changed this key?".
///
/// Memory: the records between the base checkpoint and the point (at most one checkpoint
/// interval of WAL); file contents are not cached.
#[derive(Debug)]
pub struct TimeTravel {
    reader: Reader,
    plan: RestorePlan,
    records: Vec<finn_wal::Record>,
    latest: BTreeMap<(finn_wal::Kind, String), usize>,
    reached_time_ms: Option<u64>,
}

impl TimeTravel {
    /// The plan the view was built from (base, objects read, target).
    pub fn plan(&self) -> &RestorePlan {
        &self.plan
    }

    /// The base checkpoint, if the point is after one.
    pub fn base(&self) -> Option<&VerifiedManifest> {
        self.plan.base.as_ref().map(|b| b.manifest())
    }

    /// The exact LSN of the view: its last record, or the base's covered LSN.
    pub fn lsn(&self) -> Lsn {
        self.records.last().map_or(self.plan.base_lsn(), |r| r.lsn)
    }

    /// Timestamp of the view's last record (none if no record follows the base).
    pub fn time_ms(&self) -> Option<u64> {
        self.reached_time_ms
    }

    /// The base checkpoint's files (empty without a base).
    pub fn files(&self) -> &[FileEntry] {
        self.base().map_or(&[], |m| &m.files[..])
    }

    /// Downloads and verifies one file of the base checkpoint.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, Error> {
        let entry =
            self.base()
                .and_then(|m| m.file(path))
                .ok_or_else(|| Error::NotInCheckpoint {
                    path: path.to_owned(),
                })?;
        self.reader.fetch_bytes(entry).await
    }

    /// The shipped records after the base, up to the point, in LSN order.
    pub fn records(&self) -> &[finn_wal::Record] {
        &self.records
    }

    /// The record at `lsn`, if it is after the base and at or before the point.
    pub fn record(&self, lsn: Lsn) -> Option<&finn_wal::Record> {
        self.records
            .binary_search_by_key(&lsn, |r| r.lsn)
            .ok()
            .map(|i| &self.records[i])
    }

    /// The latest put or delete of `(kind, key)` as of the point.
    pub fn get(&self, kind: finn_wal::Kind, key: &str) -> KeyAt<'_> {
        match self.latest.get(&(kind, key.to_owned())) {
            None => KeyAt::NotInWal,
            Some(&i) => {
                let r = &self.records[i];
                match r.op {
                    finn_wal::Op::Delete => KeyAt::Deleted(r),
                    _ => KeyAt::Put(r),
                }
            }
        }
    }

    /// Every key put or deleted after the base, with its latest record, sorted by kind and key.
    pub fn keys(&self) -> impl Iterator<Item = (finn_wal::Kind, &str, KeyAt<'_>)> + '_ {
        self.latest.iter().map(|((kind, key), &i)| {
            let r = &self.records[i];
            let at = match r.op {
                finn_wal::Op::Delete => KeyAt::Deleted(r),
                _ => KeyAt::Put(r),
            };
            (*kind, key.as_str(), at)
        })
    }
}

impl Reader {
    /// Opens a read-only view of the state as of `target` (see [`TimeTravel`]). Downloads the
    /// shipped WAL between the base checkpoint and the point; files are read on demand.
    pub async fn open_at(&self, target: RestoreTarget) -> Result<TimeTravel, Error> {
        let plan = self.plan(target, false).await?;
        let after = plan.base_lsn();
        let mut records = Vec::new();
        let mut reached_time_ms = None;
        if plan.reach_lsn > after {
            let streamed = stream_shipped(
                self,
                plan.lineage,
                after,
                Stop {
                    upto: Some(plan.reach_lsn),
                    until_ms: match target {
                        RestoreTarget::Time(t) => Some(t),
                        _ => None,
                    },
                },
                DEFAULT_PREFETCH,
                |batch| {
                    records.extend(batch);
                    Ok(())
                },
            )
            .await?;
            reached_time_ms = streamed.last_time_ms;
        }
        let mut latest = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            if matches!(r.op, finn_wal::Op::Put | finn_wal::Op::Delete)
                && let Some(key) = &r.key
            {
                latest.insert((r.kind, key.clone()), i);
            }
        }
        Ok(TimeTravel {
            reader: self.clone(),
            plan,
            records,
            latest,
            reached_time_ms,
        })
    }
}
