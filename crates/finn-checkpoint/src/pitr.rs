//! Point-in-time restore: to an LSN, to a moment, or to a checkpoint version, not only the latest.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::Lsn;
use crate::error::Error;
use crate::layout;
use crate::manifest::{LineageId, Manifest};
use crate::read::{FetchReport, Reader, VerifiedManifest};
use crate::ship::{self, DEFAULT_PREFETCH, Stop, WalObject, cover, stream_shipped};

/// Where a restore should end: point-in-time restore.
///
/// A restore has two parts. The *base* is the newest checkpoint of the lineage that is at or
/// before the target **and verifies** (a newer checkpoint is useless: it holds records past the
/// target; a tampered or fenced one is skipped, and the plan says why). The *replay* is every
/// shipped record after the base's covered LSN up to the target, exactly: records past it are
/// never written. Targets:
///
/// - [`RestoreTarget::Lsn`]: the state after record N (the last record at or below N).
/// - [`RestoreTarget::Time`]: the state after the last record stamped at or before T. Record
///   timestamps come from the WAL's monotonic ULID generator, so they never go backwards within
///   a WAL and "the last record at or before T" is a prefix of the log.
/// - [`RestoreTarget::Checkpoint`]: exactly checkpoint V (its files, no replay).
/// - [`RestoreTarget::Latest`]: everything shipped.
///
/// [`Reader::plan_restore`] is the dry run: base, objects and bytes to read, and the exact LSN
/// and time that will be reached (for a time target it reads the WAL objects between the base
/// and the target to find it). [`Reader::restore`] executes a plan: the base's files are fetched
/// (or reused locally, see [`RestoreOptions::reuse_local`]) while the shipped WAL is downloaded
/// several objects ahead and appended to the local WAL; the report says the exact LSN and time
/// reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum RestoreTarget {
    /// Everything shipped.
    Latest,
    /// The state after the last record at or below this LSN.
    Lsn(Lsn),
    /// The state after the last record stamped at or before this time (ms since the Unix epoch).
    Time(u64),
    /// Exactly this checkpoint version.
    Checkpoint(u64),
}

impl fmt::Display for RestoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreTarget::Latest => f.write_str("latest"),
            RestoreTarget::Lsn(l) => write!(f, "lsn {l}"),
            RestoreTarget::Time(t) => write!(f, "time {t} ms"),
            RestoreTarget::Checkpoint(v) => write!(f, "checkpoint {v}"),
        }
    }
}

/// Restore settings. Every field has a default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Files downloaded at once. Default: 8.
    pub parallelism: usize,
    /// Shipped-WAL objects downloaded ahead of the replay. 1 means no prefetch (download, replay,
    /// download …). Default: 4.
    pub prefetch: usize,
    /// Largest run of records per `append_replicated` call (each ends with an fdatasync); keep it
    /// below the WAL's segment size. Default: 4 MiB.
    pub chunk_bytes: usize,
    /// Delta restore: a directory holding a (possibly older) copy of the state. Files there
    /// whose size and BLAKE3 match the base checkpoint are copied (or, if it is the restore
    /// directory itself, kept) instead of downloaded. Default: none.
    pub reuse_local: Option<PathBuf>,
    /// Counters the restore advances as it goes, for progress bars. Default: none.
    pub progress: Option<std::sync::Arc<RestoreProgress>>,
}

/// How far a running restore is: updated as files and WAL objects complete; read from any
/// thread (e.g. to drive a progress bar). Compare with the plan's totals.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    files: std::sync::atomic::AtomicU64,
    file_bytes: std::sync::atomic::AtomicU64,
    wal_objects: std::sync::atomic::AtomicU64,
    records: std::sync::atomic::AtomicU64,
}

impl RestoreProgress {
    /// New counters at zero.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::default()
    }

    /// Files written so far.
    pub fn files(&self) -> u64 {
        self.files.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Their content bytes.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// WAL objects replayed so far.
    pub fn wal_objects(&self) -> u64 {
        self.wal_objects.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records replayed so far.
    pub fn records(&self) -> u64 {
        self.records.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn file_done(&self, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.files.fetch_add(1, Relaxed);
        self.file_bytes.fetch_add(bytes, Relaxed);
    }

    fn records_done(&self, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.wal_objects.fetch_add(1, Relaxed);
        self.records.fetch_add(n, Relaxed);
    }
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            parallelism: 8,
            prefetch: DEFAULT_PREFETCH,
            chunk_bytes: 4 << 20,
            reuse_local: None,
            progress: None,
        }
    }
}

impl RestoreOptions {
    /// Sets [`RestoreOptions::prefetch`].
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n.max(1);
        self
    }

    /// Sets [`RestoreOptions::parallelism`].
    pub fn parallelism(mut self, n: usize) -> Self {
        self.parallelism = n.max(1);
        self
    }

    /// Sets [`RestoreOptions::progress`].
    pub fn progress(mut self, progress: std::sync::Arc<RestoreProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Sets [`RestoreOptions::reuse_local`].
    pub fn reuse_local(mut self, dir: impl Into<PathBuf>) -> Self {
        self.reuse_local = Some(dir.into());
        self
    }
}

/// The checkpoint a restore starts from.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PlannedBase {
    /// Its version.
    pub version: u64,
    /// The LSN its files include.
    pub covered_lsn: Lsn,
    /// When it was created (ms since the Unix epoch, writer's clock).
    pub created_at_ms: u64,
    /// Number of files.
    pub files: usize,
    /// Sum of the files' sizes.
    pub size: u64,
    /// Sum of the stored (possibly compressed) objects' sizes: what a full fetch downloads.
    pub stored_size: u64,
    #[serde(skip)]
    manifest: VerifiedManifest,
}

impl PlannedBase {
    fn new(manifest: VerifiedManifest) -> Self {
        Self {
            version: manifest.version,
            covered_lsn: manifest.covered_lsn,
            created_at_ms: manifest.created_at_ms,
            files: manifest.files.len(),
            size: manifest.total_size(),
            stored_size: manifest.files.iter().map(|f| f.stored_size).sum(),
            manifest,
        }
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &VerifiedManifest {
        &self.manifest
    }
}

/// A newer checkpoint passed over because it did not verify.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SkippedCheckpoint {
    /// Its version.
    pub version: u64,
    /// Why it was rejected.
    pub reason: String,
}

/// What a restore will do: base, objects, bytes, and the point it reaches.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct RestorePlan {
    /// What was asked for.
    pub target: RestoreTarget,
    /// The lineage restored.
    pub lineage: LineageId,
    /// The base checkpoint (none: the lineage's shipped WAL starts at LSN 1 and the target is
    /// before its first checkpoint, so the replay starts from an empty state).
    pub base: Option<PlannedBase>,
    /// Newer checkpoints at or before the target that were rejected.
    pub skipped: Vec<SkippedCheckpoint>,
    /// The shipped-WAL objects the replay reads, in order.
    pub wal_objects: Vec<WalObject>,
    /// Their stored size.
    pub wal_bytes: u64,
    /// The LSN the restore ends at.
    pub reach_lsn: Lsn,
    /// The timestamp of the record at [`RestorePlan::reach_lsn`], when the plan read it (time
    /// targets), else none.
    pub reach_time_ms: Option<u64>,
    /// Whether [`RestorePlan::reach_lsn`] is exact. Always true, except for a time target
    /// planned without reading the WAL ([`Reader::restore_to`]); then it is an upper bound and
    /// the restore stops at the time.
    pub exact: bool,
    /// WAL objects downloaded to make the plan (finding a time target).
    pub planning_reads: usize,
    /// Shipped-WAL high-water mark of the lineage when planned.
    pub shipped_lsn: Lsn,
    /// The end of the lineage's history when planned: the higher of the shipped high-water mark
    /// and the newest checkpoint's covered LSN.
    pub history_lsn: Lsn,
}

impl RestorePlan {
    /// Stored bytes a restore downloads (base files in full, plus the WAL objects).
    pub fn download_bytes(&self) -> u64 {
        self.base.as_ref().map_or(0, |b| b.stored_size) + self.wal_bytes
    }

    /// The LSN the replay starts after.
    pub fn base_lsn(&self) -> Lsn {
        self.base.as_ref().map_or(Lsn::ZERO, |b| b.covered_lsn)
    }
}

/// What a restore did.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct RestoreReport {
    /// Version of the base checkpoint.
    pub base_version: Option<u64>,
    /// The LSN its files include.
    pub base_lsn: Lsn,
    /// The exact LSN reached: the last record replayed, or the base's LSN.
    pub reached_lsn: Lsn,
    /// Timestamp of the last record replayed (none if nothing was replayed).
    pub reached_time_ms: Option<u64>,
    /// Records replayed into the WAL.
    pub records: u64,
    /// Shipped-WAL objects downloaded.
    pub wal_objects: usize,
    /// Their stored bytes.
    pub wal_bytes: u64,
    /// The base's files.
    pub files: FetchReport,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

/// How the base checkpoint is chosen for a target.
fn qualifies(m: &Manifest, target: RestoreTarget) -> bool {
    match target {
        RestoreTarget::Latest => true,
        RestoreTarget::Lsn(n) => m.covered_lsn <= n,
        // Every record a checkpoint covers was appended before it was created.
        RestoreTarget::Time(t) => m.created_at_ms <= t,
        RestoreTarget::Checkpoint(v) => m.version == v,
    }
}

impl Reader {
    /// Plans a restore to `target` (the dry run): chooses the base checkpoint, the shipped-WAL
    /// objects to read and the exact LSN reached. For a time target the WAL objects between the
    /// base and the target are read to find the last record at or before it
    /// ([`RestorePlan::planning_reads`]). Nothing is written.
    pub async fn plan_restore(&self, target: RestoreTarget) -> Result<RestorePlan, Error> {
        self.plan(target, true).await
    }

    pub(crate) async fn plan(
        &self,
        target: RestoreTarget,
        resolve_time: bool,
    ) -> Result<RestorePlan, Error> {
        let (lineage, base, skipped, newest_checkpoint) = self.choose_base(target).await?;
        let objects = self.wal_objects(lineage).await?;
        let shipped = objects
            .iter()
            .map(|o| o.name.last)
            .max()
            .unwrap_or(Lsn::ZERO);
        let after = base.as_ref().map_or(Lsn::ZERO, |b| b.covered_lsn);
        if base.is_none() {
            // Without a checkpoint the replay starts from nothing, which is only the state if
            // the lineage's WAL starts at its very first record.
            let starts_at_one = objects.iter().map(|o| o.name.first).min() == Some(Lsn::new(1));
            if !starts_at_one {
                return Err(if objects.is_empty() {
                    Error::NothingToRestore
                } else {
                    Error::TargetBeforeHistory {
                        target,
                        earliest: self.earliest_lsn(lineage).await?,
                    }
                });
            }
        }
        let newest = shipped.max(after);
        let mut plan = RestorePlan {
            target,
            lineage,
            base,
            skipped,
            wal_objects: Vec::new(),
            wal_bytes: 0,
            reach_lsn: after,
            reach_time_ms: None,
            exact: true,
            planning_reads: 0,
            shipped_lsn: shipped,
            history_lsn: shipped.max(newest_checkpoint),
        };
        match target {
            RestoreTarget::Checkpoint(_) => {}
            RestoreTarget::Latest => {
                plan.reach_lsn = newest;
                plan.wal_objects = cover(&objects, after, None);
            }
            RestoreTarget::Lsn(n) => {
                if n > newest {
                    return Err(Error::TargetBeyondHistory { target, newest });
                }
                plan.wal_objects = cover(&objects, after, Some(n));
                // The last record at or below n: n itself when an object spans it, else the end
                // of the object before the jump.
                plan.reach_lsn = plan
                    .wal_objects
                    .iter()
                    .map(|o| o.name.last.min(n))
                    .max()
                    .unwrap_or(after)
                    .max(after);
            }
            RestoreTarget::Time(t) => {
                if resolve_time {
                    let streamed = stream_shipped(
                        self,
                        lineage,
                        after,
                        Stop {
                            upto: None,
                            until_ms: Some(t),
                        },
                        DEFAULT_PREFETCH,
                        |_| Ok(()),
                    )
                    .await?;
                    plan.planning_reads = streamed.objects;
                    plan.reach_lsn = streamed.covered;
                    plan.reach_time_ms = streamed.last_time_ms;
                    plan.wal_objects = cover(&objects, after, Some(streamed.covered));
                } else {
                    plan.exact = false;
                    plan.reach_lsn = newest;
                    plan.wal_objects = cover(&objects, after, None);
                }
            }
        }
        if plan.reach_lsn == after {
            plan.wal_objects.clear();
        }
        plan.wal_bytes = plan.wal_objects.iter().map(|o| o.size).sum();
        Ok(plan)
    }

    /// The lineage to restore and its newest verified checkpoint at or before `target`.
    async fn choose_base(
        &self,
        target: RestoreTarget,
    ) -> Result<(LineageId, Option<PlannedBase>, Vec<SkippedCheckpoint>, Lsn), Error> {
        let mut skipped = Vec::new();
        let mut newest = Lsn::ZERO;
        let versions = self.versions().await?;
        let mut lineage = self.pinned_lineage();
        if let RestoreTarget::Checkpoint(v) = target {
            if !versions.iter().any(|e| e.version == v) {
                return Err(Error::ManifestMissing { version: v });
            }
            let m = self.load(v).await?;
            let lineage = m.lineage;
            let newest = self.newest_covered(lineage).await?.max(m.covered_lsn);
            return Ok((lineage, Some(PlannedBase::new(m)), skipped, newest));
        }
        if lineage.is_none() {
            lineage = self.lineage_of_newest().await?;
        }
        let Some(lineage) = lineage else {
            return Err(Error::NothingToRestore);
        };
        for entry in versions {
            // Cheap look first (no signature check) to pass over what cannot qualify.
            let key = self.remote().key(&layout::manifest_key(entry.version));
            let Some(bytes) = self.remote().get(&key).await? else {
                continue; // removed by GC since the listing
            };
            if let Ok((m, _)) = Manifest::decode(&bytes)
                && m.lineage == lineage
            {
                newest = newest.max(m.covered_lsn);
            }
            match Manifest::decode(&bytes) {
                Ok((m, _)) if m.lineage != lineage || !qualifies(&m, target) => continue,
                Ok(_) => {}
                Err(defect) => {
                    skipped.push(SkippedCheckpoint {
                        version: entry.version,
                        reason: defect.to_string(),
                    });
                    continue;
                }
            }
            match self.load(entry.version).await {
                Ok(m) if m.lineage == lineage && qualifies(&m, target) => {
                    return Ok((lineage, Some(PlannedBase::new(m)), skipped, newest));
                }
                Ok(_) => {}
                Err(e @ Error::Remote { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(version = entry.version, error = %e, "checkpoint rejected as restore base");
                    skipped.push(SkippedCheckpoint {
                        version: entry.version,
                        reason: crate::error_chain(&e),
                    });
                }
            }
        }
        Ok((lineage, None, skipped, newest))
    }

    /// The highest covered LSN claimed by a manifest of `lineage` (unverified: for deciding
    /// whether history goes on past a point).
    async fn newest_covered(&self, lineage: LineageId) -> Result<Lsn, Error> {
        for entry in self.versions().await? {
            let key = self.remote().key(&layout::manifest_key(entry.version));
            if let Some(bytes) = self.remote().get(&key).await?
                && let Ok((m, _)) = Manifest::decode(&bytes)
                && m.lineage == lineage
            {
                return Ok(m.covered_lsn);
            }
        }
        Ok(Lsn::ZERO)
    }

    /// The oldest LSN of `lineage` a restore can reach (for error messages).
    async fn earliest_lsn(&self, lineage: LineageId) -> Result<Option<Lsn>, Error> {
        let mut earliest = None;
        for entry in self.versions().await? {
            let key = self.remote().key(&layout::manifest_key(entry.version));
            if let Some(bytes) = self.remote().get(&key).await?
                && let Ok((m, _)) = Manifest::decode(&bytes)
                && m.lineage == lineage
            {
                earliest = Some(earliest.map_or(m.covered_lsn, |e: Lsn| e.min(m.covered_lsn)));
            }
        }
        Ok(earliest)
    }

    /// Executes `plan`: fetches the base's files into `dir` (created if missing; fetch into a
    /// fresh staging directory and move it into place on success) while replaying the shipped
    /// records after the base up to the plan's point into `wal` with `Wal::append_replicated`
    /// (after `advance_to` past the base), downloading [`RestoreOptions::prefetch`] objects
    /// ahead. `wal` must not hold records above the base ([`Error::RestoreWalAhead`]).
    ///
    /// Afterwards, before appending anything new, advance the WAL past the prefix's high-water
    /// mark (`Checkpointer::high_water`) and write on a fork
    /// ([`LineageMode::Fork`](crate::LineageMode)) if the target was not the latest: the
    /// records after the target are still in the prefix.
    pub async fn restore(
        &self,
        plan: &RestorePlan,
        dir: &Path,
        wal: &finn_wal::Wal,
        options: &RestoreOptions,
    ) -> Result<RestoreReport, Error> {
        let started = std::time::Instant::now();
        let after = plan.base_lsn();
        if wal.last_lsn() > after {
            return Err(Error::RestoreWalAhead {
                wal_last: wal.last_lsn(),
                base: after,
            });
        }
        if after > Lsn::ZERO && wal.last_lsn() < after {
            wal.advance_to(after.next())?;
        }
        let files = self.spawn_fetch(plan, dir, options);
        let stop = Stop {
            upto: Some(plan.reach_lsn),
            until_ms: match plan.target {
                RestoreTarget::Time(t) => Some(t),
                _ => None,
            },
        };
        let chunk = options.chunk_bytes.max(1);
        let replay = async {
            if plan.reach_lsn <= after {
                return Ok(ship::Streamed {
                    covered: after,
                    ..Default::default()
                });
            }
            let progress = options.progress.clone();
            stream_shipped(
                self,
                plan.lineage,
                after,
                stop,
                options.prefetch,
                |records| {
                    ship::append_chunked(wal, &records, chunk)?;
                    if let Some(p) = &progress {
                        p.records_done(records.len() as u64);
                    }
                    Ok(())
                },
            )
            .await
        };
        let (files, streamed) = futures::future::join(files, replay).await;
        let streamed = streamed?;
        let files = files?;
        let report = RestoreReport {
            base_version: plan.base.as_ref().map(|b| b.version),
            base_lsn: after,
            reached_lsn: streamed.covered,
            reached_time_ms: streamed.last_time_ms,
            records: streamed.records,
            wal_objects: streamed.objects,
            wal_bytes: streamed.bytes,
            files,
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(
            target = %plan.target,
            reached = %report.reached_lsn,
            records = report.records,
            "restore done"
        );
        Ok(report)
    }

    /// Plans (without reading the WAL to pin a time target down: the replay stops at the time)
    /// and executes a restore to `target`. See [`Reader::plan_restore`] and [`Reader::restore`].
    pub async fn restore_to(
        &self,
        target: RestoreTarget,
        dir: &Path,
        wal: &finn_wal::Wal,
        options: &RestoreOptions,
    ) -> Result<RestoreReport, Error> {
        let plan = self.plan(target, false).await?;
        self.restore(&plan, dir, wal, options).await
    }

    /// Starts fetching the base's files on its own task, so downloads go on while the replay
    /// blocks on fdatasync.
    fn spawn_fetch(
        &self,
        plan: &RestorePlan,
        dir: &Path,
        options: &RestoreOptions,
    ) -> impl std::future::Future<Output = Result<FetchReport, Error>> + use<> {
        let reader = self.clone();
        let manifest = plan.base.as_ref().map(|b| b.manifest.clone());
        let dir = dir.to_path_buf();
        let reuse = options.reuse_local.clone();
        let parallelism = options.parallelism;
        let progress = options.progress.clone();
        let task = ship::Spawned(tokio::spawn(async move {
            let Some(m) = manifest else {
                std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })?;
                return Ok(FetchReport::default());
            };
            match reuse {
                Some(local) => {
                    reader
                        .fetch_files_delta_counted(
                            &m,
                            &dir,
                            &local,
                            parallelism,
                            progress.as_deref(),
                        )
                        .await
                }
                None => {
                    reader
                        .fetch_files_counted(&m, &dir, parallelism, progress.as_deref())
                        .await
                }
            }
        }));
        async move {
            task.await.map_err(|e| Error::Io {
                path: "<file download task>".into(),
                source: std::io::Error::other(e.to_string()),
            })?
        }
    }
}

impl RestorePlan {
    /// Whether a writer continuing from this restore must fork a new lineage: the restore ends
    /// before the end of the lineage's history, whose later records and checkpoints stay in the
    /// prefix and must never be mixed with what is written next.
    pub fn needs_fork(&self) -> bool {
        self.reach_lsn < self.history_lsn
    }

    /// The parent link for [`LineageMode::Fork`](crate::LineageMode): the base checkpoint.
    /// `None` without a base.
    pub fn fork_parent(&self) -> Option<crate::ParentLink> {
        self.base.as_ref().map(|b| crate::ParentLink {
            lineage: self.lineage,
            version: b.version,
            hash: b.manifest.signed().hash(),
        })
    }
}

impl crate::Checkpointer {
    /// Makes the state a restore produced the start of this writer's forked lineage, so the
    /// agent can go on writing from a point in the past: publishes the restored base files
    /// (`state_dir`, exactly the base checkpoint's files; nothing is uploaded, the objects
    /// exist) as the fork's first checkpoint, and ships the replayed records (base LSN through
    /// the point reached, read from `wal`) as the fork's first batches, chained to the base.
    /// Shipping then continues above the prefix's high-water mark: advance the WAL past
    /// [`Checkpointer::high_water`](crate::Checkpointer::high_water) before appending.
    ///
    /// The writer must have been opened with `LineageMode::Fork(plan.fork_parent())` and have
    /// published nothing yet ([`Error::NotForked`] otherwise).
    pub async fn adopt_restore(
        &self,
        plan: &RestorePlan,
        report: &RestoreReport,
        state_dir: &Path,
        wal: &finn_wal::Wal,
    ) -> Result<crate::CheckpointReport, Error> {
        let expected = plan.fork_parent();
        {
            let st = self.state.lock().await;
            if expected.is_none() || st.head.is_some() || st.pending_parent != expected {
                return Err(Error::NotForked);
            }
        }
        let input = crate::CheckpointInput::from_dir(state_dir, report.base_lsn)?;
        let published = self.checkpoint(input).await?;
        let mut st = self.state.lock().await;
        let mut prev = report.base_lsn;
        let mut batch: Vec<finn_wal::Record> = Vec::new();
        let max = self.options.ship_batch_records.max(1);
        let mut records = wal.iter_from(report.base_lsn.next())?;
        loop {
            let next = records.next().transpose()?;
            let done = next.as_ref().is_none_or(|r| r.lsn > report.reached_lsn);
            if let Some(r) = next.filter(|r| r.lsn <= report.reached_lsn) {
                batch.push(r);
            }
            if (done && !batch.is_empty()) || batch.len() >= max {
                let last = batch[batch.len() - 1].lsn;
                self.put_level0_batch(&mut st, prev, &batch).await?;
                prev = last;
                st.shipped = last;
                batch.clear();
            }
            if done {
                break;
            }
        }
        Ok(published)
    }
}
