//! Shipped WAL compacted in levels, so a restore to any point reads a handful of objects.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::Lsn;
use crate::checkpoint::Checkpointer;
use crate::error::Error;
use crate::layout::{self, BatchName, MAX_LEVEL};
use crate::lease::now_ms;
use crate::manifest::LineageId;
use crate::read::Reader;
use crate::remote::Created;
use crate::ship::{ShippedBatch, WalObject, encode_batch};

/// One compaction level: which objects of the level below merge into one object of this level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LevelSpec {
    /// Objects merge when their upload times fall in the same aligned window of this length
    /// (e.g. 12:00–12:05); a window is merged once it has ended. Zero means one window forever
    /// (merging only by size, and on [`LevelPolicy::close_open_windows`]).
    pub window: Duration,
    /// Largest number of records (LSN span) in one object of this level.
    pub max_records: u64,
    /// Largest stored size of one object of this level (the sum of what it merges).
    pub max_bytes: u64,
}

impl LevelSpec {
    /// A level of `window`-long objects bounded by `max_records` and `max_bytes`.
    pub fn new(window: Duration, max_records: u64, max_bytes: u64) -> Self {
        Self {
            window,
            max_records: max_records.max(1),
            max_bytes: max_bytes.max(1),
        }
    }
}

/// The levels above level 0 (the batches as shipped): shipped WAL compacted in levels.
///
/// The shipper writes many small level-0 batches (one per RPO tick when busy). Left alone, a
/// restore an hour after a checkpoint would read thousands of them. [`Checkpointer::compact_wal`]
/// merges consecutive objects of level n-1 into one object of level n, by time window and
/// bounded in records and bytes (the defaults, as Litestream does: 5 minute objects at level 1,
/// 1 hour objects at level 2).
///
/// A merged object is an ordinary signed batch (same format as a shipped one) whose key names
/// its level: `wal/{lineage}/{first:020}-{last:020}-{epoch:020}.l{n}.batch`. It covers an exact
/// LSN range, its `prev` is the `prev` of the first object it merged, and it is written with
/// `PutMode::Create`, read back, verified (signature, every record CRC) and compared record by
/// record with what was merged *before* any object it replaces is deleted. A crash between the
/// two leaves both; the next pass verifies the higher object again and only then removes the
/// leftovers. Readers pick the fewest objects that cover what they need ([`Reader::wal_objects`]),
/// and a reader that finds an object gone mid-restore lists again and carries on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LevelPolicy {
    /// Level 1, level 2, …; at most 9. Default: 5 min / 100,000 records / 64 MiB, then
    /// 1 h / 1,000,000 records / 512 MiB.
    pub levels: Vec<LevelSpec>,
    /// Merge the newest, still open window too (on shutdown, or to compact everything now).
    /// Default: false.
    pub close_open_windows: bool,
}

impl Default for LevelPolicy {
    fn default() -> Self {
        Self {
            levels: vec![
                LevelSpec::new(Duration::from_secs(300), 100_000, 64 << 20),
                LevelSpec::new(Duration::from_secs(3600), 1_000_000, 512 << 20),
            ],
            close_open_windows: false,
        }
    }
}

impl LevelPolicy {
    /// A policy with these levels.
    pub fn new(levels: Vec<LevelSpec>) -> Self {
        Self {
            levels,
            close_open_windows: false,
        }
    }

    /// Sets [`LevelPolicy::close_open_windows`].
    pub fn close_open_windows(mut self, close: bool) -> Self {
        self.close_open_windows = close;
        self
    }
}

/// What one [`Checkpointer::compact_wal`] pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CompactReport {
    /// Objects written (each verified before anything it replaced was deleted).
    pub created: Vec<BatchName>,
    /// Lower-level objects deleted.
    pub deleted: usize,
    /// Objects downloaded.
    pub read: usize,
    /// Stored bytes written.
    pub bytes_written: u64,
}

/// Objects downloaded at once while merging.
const MERGE_PREFETCH: usize = 4;

impl Checkpointer {
    /// Merges this writer's lineage's shipped WAL into higher levels as `policy` says, then
    /// removes what the new objects replace (each new object is read back and verified first).
    /// Runs under the lease: checked before every write and delete, so a writer that was taken
    /// over stops with [`Error::Fenced`].
    ///
    /// # Cancel safety
    /// Cancelling may leave a merged object next to the objects it merged; readers are not
    /// affected, and the next pass verifies it and removes them.
    pub async fn compact_wal(&self, policy: &LevelPolicy) -> Result<CompactReport, Error> {
        let lineage = {
            let mut st = self.state.lock().await;
            self.checked(&mut st).await?;
            st.lineage
        };
        let reader = Reader::new(self.remote.clone(), self.keyring.clone());
        let mut report = CompactReport::default();
        for (i, spec) in policy.levels.iter().enumerate().take(MAX_LEVEL as usize) {
            let level = i as u8 + 1;
            let objects = reader.wal_objects(lineage).await?;
            self.remove_leftovers(&reader, &objects, level, &mut report)
                .await?;
            for group in groups(&objects, level, spec, policy.close_open_windows, now_ms()) {
                self.merge(&reader, lineage, level, &group, &mut report)
                    .await?;
            }
        }
        if !report.created.is_empty() {
            tracing::info!(
                created = report.created.len(),
                deleted = report.deleted,
                "wal compacted"
            );
        }
        Ok(report)
    }

    async fn lease_ok(&self) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        self.checked(&mut st).await
    }

    /// Deletes objects of `level - 1` lying inside an object of level `level` or higher, once
    /// that object verifies (what a pass interrupted between create and delete left).
    async fn remove_leftovers(
        &self,
        reader: &Reader,
        objects: &[WalObject],
        level: u8,
        report: &mut CompactReport,
    ) -> Result<(), Error> {
        let higher: Vec<&WalObject> = objects.iter().filter(|o| o.name.level >= level).collect();
        let mut verified: Vec<BatchName> = Vec::new();
        let mut checked = false;
        for low in objects.iter().filter(|o| o.name.level + 1 == level) {
            let Some(cover) = higher
                .iter()
                .find(|h| h.name.first <= low.name.first && low.name.last <= h.name.last)
            else {
                continue;
            };
            if !verified.contains(&cover.name) {
                reader.fetch_batch(&cover.name).await?;
                report.read += 1;
                verified.push(cover.name);
            }
            if !checked {
                self.lease_ok().await?;
                checked = true;
            }
            self.remote
                .delete(&self.remote.key(&layout::batch_key(&low.name)))
                .await?;
            report.deleted += 1;
        }
        Ok(())
    }

    async fn merge(
        &self,
        reader: &Reader,
        lineage: LineageId,
        level: u8,
        group: &[WalObject],
        report: &mut CompactReport,
    ) -> Result<(), Error> {
        let names: Vec<BatchName> = group.iter().map(|o| o.name).collect();
        let mut fetched = futures::stream::iter(names)
            .map(|name| {
                let r = reader.clone();
                async move { r.fetch_batch(&name).await }
            })
            .buffered(MERGE_PREFETCH);
        let mut prev = None;
        let mut covered = Lsn::ZERO;
        let mut records: Vec<finn_wal::Record> = Vec::new();
        while let Some(batch) = fetched.next().await {
            let ShippedBatch {
                name,
                prev: batch_prev,
                records: batch_records,
            } = batch?;
            report.read += 1;
            match prev {
                None => {
                    prev = Some(batch_prev);
                    covered = batch_prev;
                }
                Some(_) if batch_prev > covered => {
                    return Err(Error::ShippedGap {
                        lineage,
                        first: name.first,
                        expected_prev: batch_prev,
                        found_prev: covered,
                    });
                }
                Some(_) => {}
            }
            for r in batch_records {
                if r.lsn > covered {
                    covered = r.lsn;
                    records.push(r);
                }
            }
        }
        let (Some(prev), Some(first)) = (prev, records.first().map(|r| r.lsn)) else {
            return Ok(());
        };
        let name = BatchName {
            first,
            last: covered,
            epoch: self.epoch(),
            lineage,
            level,
        };
        let rel = layout::batch_key(&name);
        let bytes = Bytes::from(encode_batch(
            &name,
            prev,
            &records,
            self.options.compression,
            &self.key,
        )?);
        let key = self.remote.key(&rel);
        self.lease_ok().await?;
        let put = self.remote.put_create(&key, bytes.clone()).await;
        self.lease_ok().await?;
        match put {
            Ok(Created::Yes) => {}
            // Present already (an interrupted pass), or the answer was lost after the object
            // landed: the read-back below decides.
            Ok(Created::AlreadyExists) => tracing::debug!(%key, "merged object already present"),
            Err(e) => tracing::debug!(%key, error = %e, "create of merged object failed"),
        }
        // Never delete a lower level before the higher object reads back whole and equal.
        let back = reader.fetch_batch(&name).await?;
        if back.prev != prev || back.records != records {
            return Err(Error::BatchRejected {
                key: rel,
                reason: "merged object does not read back as written".to_owned(),
            });
        }
        report.bytes_written += bytes.len() as u64;
        report.created.push(name);
        self.lease_ok().await?;
        for o in group {
            self.remote
                .delete(&self.remote.key(&layout::batch_key(&o.name)))
                .await?;
            report.deleted += 1;
        }
        Ok(())
    }
}

/// The runs of level `level - 1` objects above everything level `level` (or higher) covers that
/// are ready to merge: consecutive objects of one upload-time window within the size bounds; the
/// newest run only once its window has ended (or when `close_open` says so).
fn groups(
    objects: &[WalObject],
    level: u8,
    spec: &LevelSpec,
    close_open: bool,
    now_ms: u64,
) -> Vec<Vec<WalObject>> {
    let high = objects
        .iter()
        .filter(|o| o.name.level >= level)
        .map(|o| o.name.last)
        .max()
        .unwrap_or(Lsn::ZERO);
    let mut lower: Vec<WalObject> = objects
        .iter()
        .filter(|o| o.name.level + 1 == level && o.name.first > high)
        .copied()
        .collect();
    lower.sort_by_key(|o| (o.name.first, o.name.last));
    // Two objects of the same level overlapping (a retried pass of another epoch): keep the
    // first, the other is left for GC once it falls below the checkpoints.
    lower.dedup_by(|b, a| b.name.first <= a.name.last);
    let window_ms = spec.window.as_millis() as u64;
    let window_of = |o: &WalObject| o.last_modified_ms.checked_div(window_ms).unwrap_or(0);
    let span = |o: &WalObject| o.name.last.get() - o.name.first.get() + 1;
    let mut out = Vec::new();
    let mut group: Vec<WalObject> = Vec::new();
    let (mut records, mut bytes) = (0u64, 0u64);
    for o in lower {
        if let Some(head) = group.first()
            && (window_of(head) != window_of(&o)
                || records + span(&o) > spec.max_records
                || bytes + o.size > spec.max_bytes)
        {
            out.push(std::mem::take(&mut group));
            (records, bytes) = (0, 0);
        }
        records += span(&o);
        bytes += o.size;
        group.push(o);
    }
    if let Some(head) = group.first() {
        let ended = window_ms > 0 && now_ms >= (window_of(head) + 1).saturating_mul(window_ms);
        if close_open || ended {
            out.push(group);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(first: u64, last: u64, level: u8, at: u64) -> WalObject {
        WalObject {
            name: BatchName {
                first: Lsn::new(first),
                last: Lsn::new(last),
                epoch: 1,
                lineage: LineageId(ulid::Ulid::nil()),
                level,
            },
            size: 100,
            last_modified_ms: at,
        }
    }

    fn spans(g: &[Vec<WalObject>]) -> Vec<(u64, u64)> {
        g.iter()
            .map(|g| (g[0].name.first.get(), g[g.len() - 1].name.last.get()))
            .collect()
    }

    #[test]
    fn groups_follow_windows_and_bounds() {
        let spec = LevelSpec::new(Duration::from_millis(1000), 25, 1 << 20);
        let objects: Vec<_> = (0..8)
            .map(|i| obj(i * 10 + 1, i * 10 + 10, 0, 500 * i))
            .collect();
        // Windows [0,1000): 0,1; [1000,2000): 2,3; … the last window (3500) is open at 3600.
        assert_eq!(
            spans(&groups(&objects, 1, &spec, false, 3600)),
            [(1, 20), (21, 40), (41, 60)]
        );
        assert_eq!(
            spans(&groups(&objects, 1, &spec, true, 3600)),
            [(1, 20), (21, 40), (41, 60), (61, 80)]
        );
        // Already merged up to 40: only what is above.
        let mut with_l1 = objects.clone();
        with_l1.push(obj(1, 40, 1, 5000));
        assert_eq!(
            spans(&groups(&with_l1, 1, &spec, true, 3600)),
            [(41, 60), (61, 80)]
        );
        // Record bound: 25 records per object means one 10-record object is left out of a pair.
        let wide = LevelSpec::new(Duration::ZERO, 25, 1 << 20);
        assert_eq!(
            spans(&groups(&objects, 1, &wide, false, 3600)),
            [(1, 20), (21, 40), (41, 60)]
        );
        assert_eq!(spans(&groups(&objects, 1, &wide, true, 3600)).len(), 4);
    }
}
