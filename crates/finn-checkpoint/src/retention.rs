//! Retention operators can trust: what is kept and why, a dry run by default, and deletes that
//! are checked afterwards.
//!
//! A [`RetentionPolicy`] keeps a checkpoint when any of these holds (the report says which):
//!
//! - it is **pinned** (pins never expire);
//! - it is among the **newest `keep_last`** by *recorded* creation time (the signed
//!   `created_at_ms`, never the object names or the store's modification times);
//! - it was created **within `keep_within`**;
//! - it is the **base of the point-in-time window**: the newest checkpoint created at or before
//!   `now - pitr_window`, so every moment of the window can be restored (base plus WAL);
//! - it is the writer's head, or the highest version present (the version high-water mark).
//!
//! Shipped WAL is kept from the oldest kept checkpoint of its lineage on (a kept checkpoint's
//! replay is never cut), and for the whole lineage when the window reaches back before every
//! checkpoint. Objects are kept while a kept manifest or a live intent names them, and
//! unreferenced ones are kept until they are older than the grace period.
//!
//! Deleting runs oldest manifests first, then WAL, then objects, so a crash leaves every kept
//! checkpoint whole. Afterwards every deleted key is looked up again: some S3-compatible
//! providers acknowledge deletes they never perform, and an operator paying for storage
//! deserves to know. The report compares the bytes the prefix holds with the bytes the plan
//! expected it to hold.
//!
//! Manifests that do not verify or were written by a fenced-off writer are left to
//! [`Checkpointer::gc`] (never delete what cannot be understood here).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::Lsn;
use crate::checkpoint::Checkpointer;
use crate::error::Error;
use crate::layout;
use crate::lease::now_ms;
use crate::manifest::{LineageId, Manifest};
use crate::read::Reader;

/// What to keep. Every field has a default.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Newest checkpoints kept, by recorded creation time. Default: 10. At least 1.
    pub keep_last: usize,
    /// Checkpoints created within this long are kept. Default: none.
    pub keep_within: Option<Duration>,
    /// Point-in-time window for shipped WAL: every moment this far back stays restorable.
    /// Default: none (WAL is kept only as far as the kept checkpoints need).
    pub pitr_window: Option<Duration>,
    /// Versions that never expire.
    pub pinned: BTreeSet<u64>,
    /// Unreferenced objects younger than this are kept (a checkpoint in flight may need them).
    /// Default: 1 h.
    pub object_grace: Duration,
    /// Evaluate as of this time (ms since the Unix epoch) instead of now. Default: now.
    pub as_of_ms: Option<u64>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            keep_last: 10,
            keep_within: None,
            pitr_window: None,
            pinned: BTreeSet::new(),
            object_grace: Duration::from_secs(3600),
            as_of_ms: None,
        }
    }
}

impl RetentionPolicy {
    /// Sets the count kept.
    pub fn keep_last(mut self, n: usize) -> Self {
        self.keep_last = n;
        self
    }

    /// Keeps checkpoints younger than `d`.
    pub fn keep_within(mut self, d: Duration) -> Self {
        self.keep_within = Some(d);
        self
    }

    /// Sets the point-in-time window.
    pub fn pitr_window(mut self, d: Duration) -> Self {
        self.pitr_window = Some(d);
        self
    }

    /// Pins a version.
    pub fn pin(mut self, version: u64) -> Self {
        self.pinned.insert(version);
        self
    }

    /// Sets the object grace period.
    pub fn object_grace(mut self, d: Duration) -> Self {
        self.object_grace = d;
        self
    }

    /// Evaluates as of `ms` (ms since the Unix epoch).
    pub fn as_of(mut self, ms: u64) -> Self {
        self.as_of_ms = Some(ms);
        self
    }
}

/// Why a checkpoint is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeepReason {
    /// Pinned.
    Pinned,
    /// Among the newest `keep_last`.
    Newest,
    /// Created within `keep_within`.
    Recent,
    /// Base of the point-in-time window.
    PitrBase,
    /// The writer's head.
    Head,
    /// The highest version present (keeps versions unique).
    HighWater,
}

/// A kept checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeptCheckpoint {
    /// Its version.
    pub version: u64,
    /// Its recorded creation time.
    pub created_at_ms: u64,
    /// Why it is kept.
    pub reasons: Vec<KeepReason>,
}

/// Whether [`Checkpointer::retention`] deletes or only says what it would delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RetentionMode {
    /// Plan only (the CLI's default).
    #[default]
    DryRun,
    /// Delete, then check the deletes.
    Delete,
}

/// What a retention pass keeps and deletes (or would).
#[derive(Clone, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The time the policy was evaluated at (ms since the Unix epoch).
    pub as_of_ms: u64,
    /// Checkpoints kept, newest first, each with why.
    pub kept: Vec<KeptCheckpoint>,
    /// Manifest versions deleted (or to delete), oldest first.
    pub deleted_manifests: Vec<u64>,
    /// Shipped WAL object keys deleted (relative to the prefix).
    pub deleted_wal: Vec<String>,
    /// Object keys deleted (relative to the prefix).
    pub deleted_objects: Vec<String>,
    /// Stored bytes of everything deleted.
    pub deleted_bytes: u64,
    /// Stored bytes under `manifests/`, `objects/` and `wal/` the plan leaves.
    pub expected_retained_bytes: u64,
    /// Stored bytes measured there after deleting (none for a dry run).
    pub retained_bytes: Option<u64>,
    /// Keys whose delete the store acknowledged but which are still there.
    pub undeleted: Vec<String>,
    /// Oldest LSN of the writer's lineage a point-in-time restore can reach afterwards (the
    /// base's covered LSN; zero when the whole lineage's WAL is kept).
    pub pitr_floor: Option<Lsn>,
}

impl RetentionReport {
    /// Whether every delete took effect and the prefix holds exactly the expected bytes
    /// (always true for a dry run).
    pub fn is_verified(&self) -> bool {
        self.undeleted.is_empty()
            && self
                .retained_bytes
                .is_none_or(|b| b == self.expected_retained_bytes)
    }
}

/// One verified manifest as retention sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) version: u64,
    pub(crate) created_at_ms: u64,
    pub(crate) lineage: LineageId,
    pub(crate) covered: Lsn,
    pub(crate) hash: crate::manifest::ManifestHash,
}

/// Which candidates are kept and why, plus the point-in-time base of `lineage` (if any). Pure,
/// so the rules are tested on their own.
pub(crate) fn select(
    candidates: &[Candidate],
    policy: &RetentionPolicy,
    now: u64,
    head: Option<u64>,
    highest: Option<u64>,
    lineage: Option<LineageId>,
) -> (BTreeMap<u64, Vec<KeepReason>>, Option<Candidate>) {
    let mut by_time = candidates.to_vec();
    // Recorded time orders; the version only breaks ties.
    by_time.sort_by_key(|c| std::cmp::Reverse((c.created_at_ms, c.version)));
    let mut keep: BTreeMap<u64, Vec<KeepReason>> = BTreeMap::new();
    let mut add = |v: u64, r: KeepReason| keep.entry(v).or_default().push(r);
    for c in &by_time {
        if policy.pinned.contains(&c.version) {
            add(c.version, KeepReason::Pinned);
        }
    }
    for c in by_time.iter().take(policy.keep_last.max(1)) {
        add(c.version, KeepReason::Newest);
    }
    if let Some(w) = policy.keep_within {
        let cutoff = now.saturating_sub(w.as_millis() as u64);
        for c in by_time.iter().filter(|c| c.created_at_ms >= cutoff) {
            add(c.version, KeepReason::Recent);
        }
    }
    let mut base = None;
    if let (Some(w), Some(lineage)) = (policy.pitr_window, lineage) {
        let cutoff = now.saturating_sub(w.as_millis() as u64);
        base = by_time
            .iter()
            .find(|c| c.lineage == lineage && c.created_at_ms <= cutoff)
            .copied();
        if let Some(b) = base {
            add(b.version, KeepReason::PitrBase);
        }
    }
    for c in candidates {
        if Some(c.version) == head {
            add(c.version, KeepReason::Head);
        }
        if Some(c.version) == highest {
            add(c.version, KeepReason::HighWater);
        }
    }
    (keep, base)
}

/// A planned deletion.
struct Plan {
    report: RetentionReport,
    /// Keys (relative) in deletion order with their sizes.
    doomed: Vec<(String, u64)>,
    /// Tombstones to write before the manifests they name are deleted.
    tombstones: Vec<crate::tombstone::Tombstone>,
    /// Tombstones no longer needed (older than every manifest that stays).
    stale_tombstones: Vec<String>,
}

impl Reader {
    /// Plans retention without deleting anything and without a lease: what
    /// [`Checkpointer::retention`] would keep and delete now. `head` is the writer's head version
    /// and `lineage` the writer's lineage, when known (the newest checkpoint's otherwise).
    pub async fn plan_retention(
        &self,
        policy: &RetentionPolicy,
        head: Option<u64>,
        lineage: Option<LineageId>,
    ) -> Result<RetentionReport, Error> {
        Ok(self.retention_plan(policy, head, lineage).await?.report)
    }

    async fn retention_plan(
        &self,
        policy: &RetentionPolicy,
        head: Option<u64>,
        lineage: Option<LineageId>,
    ) -> Result<Plan, Error> {
        let remote = self.remote();
        let now = policy.as_of_ms.unwrap_or_else(now_ms);
        let fences = self.fences().await?;
        let versions = self.versions().await?;
        let highest = versions.iter().map(|v| v.version).max();
        let mut manifest_sizes = BTreeMap::new();
        let mut decoded: BTreeMap<u64, Manifest> = BTreeMap::new();
        let mut candidates = Vec::new();
        for v in &versions {
            manifest_sizes.insert(v.version, v.size);
            match self.load_unchained(v.version, &fences).await {
                Ok(signed) => {
                    candidates.push(Candidate {
                        version: signed.version,
                        created_at_ms: signed.created_at_ms,
                        lineage: signed.lineage,
                        covered: signed.covered_lsn,
                        hash: signed.hash(),
                    });
                    decoded.insert(v.version, signed.manifest().clone());
                }
                Err(e @ Error::Remote { .. }) => return Err(e),
                Err(e) => {
                    tracing::debug!(version = v.version, error = %e, "retention leaves a manifest it cannot verify to gc");
                    // Its objects stay protected as far as it can be decoded.
                    let key = remote.key(&layout::manifest_key(v.version));
                    if let Some(bytes) = remote.get(&key).await?
                        && let Ok((m, _)) = Manifest::decode(&bytes)
                    {
                        decoded.insert(v.version, m);
                    }
                }
            }
        }
        let lineage = lineage.or_else(|| {
            candidates
                .iter()
                .max_by_key(|c| (c.created_at_ms, c.version))
                .map(|c| c.lineage)
        });
        let (keep, base) = select(&candidates, policy, now, head, highest, lineage);
        let doomed_manifests: Vec<u64> = candidates
            .iter()
            .map(|c| c.version)
            .filter(|v| !keep.contains_key(v))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();

        let mut report = RetentionReport {
            dry_run: true,
            as_of_ms: now,
            ..RetentionReport::default()
        };
        let mut kept: Vec<KeptCheckpoint> = candidates
            .iter()
            .filter_map(|c| {
                Some(KeptCheckpoint {
                    version: c.version,
                    created_at_ms: c.created_at_ms,
                    reasons: keep.get(&c.version)?.clone(),
                })
            })
            .collect();
        kept.sort_by_key(|k| std::cmp::Reverse((k.created_at_ms, k.version)));
        report.kept = kept;

        // Objects named by every manifest that stays (kept, unverifiable or fenced) or by a
        // live intent.
        let mut protected: BTreeSet<String> = BTreeSet::new();
        for (v, m) in &decoded {
            if !doomed_manifests.contains(v) {
                protected.extend(
                    m.files
                        .iter()
                        .map(|f| layout::object_key(&f.blake3, f.codec)),
                );
            }
        }
        for meta in remote.list(layout::INTENTS).await? {
            let body = remote.get(&meta.location).await?.unwrap_or_default();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                && let Some(objects) = v.get("objects").and_then(|o| o.as_array())
            {
                protected.extend(objects.iter().filter_map(|o| o.as_str().map(str::to_owned)));
            }
        }

        // WAL floors: per lineage, the oldest kept checkpoint's covered LSN; the writer's
        // lineage also keeps the point-in-time window (everything when no base exists).
        let mut floors: BTreeMap<LineageId, Lsn> = BTreeMap::new();
        for c in candidates.iter().filter(|c| keep.contains_key(&c.version)) {
            let f = floors.entry(c.lineage).or_insert(c.covered);
            *f = (*f).min(c.covered);
        }
        if policy.pitr_window.is_some()
            && let Some(l) = lineage
        {
            let floor = base.map_or(Lsn::ZERO, |b| b.covered);
            let f = floors.entry(l).or_insert(floor);
            *f = (*f).min(floor);
            report.pitr_floor = Some(*f);
        }

        let mut doomed: Vec<(String, u64)> = doomed_manifests
            .iter()
            .map(|v| {
                (
                    layout::manifest_key(*v),
                    manifest_sizes.get(v).copied().unwrap_or(0),
                )
            })
            .collect();
        let tombstones = candidates
            .iter()
            .filter(|c| doomed_manifests.contains(&c.version))
            .map(|c| crate::tombstone::Tombstone {
                version: c.version,
                hash: c.hash,
                lineage: c.lineage,
            })
            .collect();
        let oldest_left = versions
            .iter()
            .map(|v| v.version)
            .filter(|v| !doomed_manifests.contains(v))
            .min()
            .unwrap_or(u64::MAX);
        let stale_tombstones = remote
            .list(layout::MANIFESTS)
            .await?
            .into_iter()
            .filter_map(|m| remote.relative(&m.location))
            .filter(|rel| {
                let v = rel
                    .strip_prefix("manifests/")
                    .and_then(|n| n.strip_suffix(".deleted"))
                    .and_then(|n| n.parse::<u64>().ok());
                v.is_some_and(|v| v < oldest_left)
            })
            .collect();
        report.deleted_manifests = doomed_manifests;
        let mut retained: u64 = manifest_sizes.values().sum();
        let wal = crate::ship::scan_wal_objects(remote, None).await?;
        for o in &wal {
            retained += o.size;
            let obsolete = floors
                .get(&o.name.lineage)
                .is_some_and(|f| o.name.last <= *f);
            if obsolete && !fences.batch_fenced(o.name.epoch, o.name.last) {
                let key = layout::batch_key(&o.name);
                report.deleted_wal.push(key.clone());
                doomed.push((key, o.size));
            }
        }
        let grace = policy.object_grace.as_millis() as u64;
        for meta in remote.list(layout::OBJECTS).await? {
            retained += meta.size;
            let Some(rel) = remote.relative(&meta.location) else {
                continue;
            };
            if protected.contains(&rel) || layout::parse_object_key(&rel).is_none() {
                continue;
            }
            let age = now.saturating_sub(meta.last_modified.timestamp_millis().max(0) as u64);
            if age >= grace {
                report.deleted_objects.push(rel.clone());
                doomed.push((rel, meta.size));
            }
        }
        report.deleted_bytes = doomed.iter().map(|(_, s)| s).sum();
        report.expected_retained_bytes = retained - report.deleted_bytes;
        Ok(Plan {
            report,
            doomed,
            tombstones,
            stale_tombstones,
        })
    }

    /// Bytes stored under `manifests/`, `objects/` and `wal/`.
    async fn stored_bytes(&self) -> Result<u64, Error> {
        let mut total = 0;
        for dir in [layout::MANIFESTS, layout::OBJECTS, layout::WAL] {
            let remote = self.remote();
            total += remote
                .list(dir)
                .await?
                .iter()
                // Tombstones are bookkeeping, not retained data.
                .filter(|m| {
                    remote
                        .relative(&m.location)
                        .is_none_or(|rel| !rel.ends_with(".deleted"))
                })
                .map(|m| m.size)
                .sum::<u64>();
        }
        Ok(total)
    }
}

impl Checkpointer {
    /// Applies `policy` under this writer's lease: plans (see the [module docs](crate::retention)),
    /// and in [`RetentionMode::Delete`] deletes, looks every deleted key up again and measures
    /// what the prefix holds afterwards. A delete the store acknowledged but did not perform is
    /// listed in [`RetentionReport::undeleted`] (and [`RetentionReport::is_verified`] is false).
    pub async fn retention(
        &self,
        policy: &RetentionPolicy,
        mode: RetentionMode,
    ) -> Result<RetentionReport, Error> {
        let mut st = self.state.lock().await;
        self.checked(&mut st).await?;
        let reader = Reader::new(self.remote.clone(), self.keyring.clone());
        let head = st.head.as_ref().map(|h| h.version);
        let Plan {
            mut report,
            doomed,
            tombstones,
            stale_tombstones,
        } = reader
            .retention_plan(policy, head, Some(st.lineage))
            .await?;
        if mode == RetentionMode::DryRun {
            return Ok(report);
        }
        report.dry_run = false;
        // Tombstones first: a manifest deleted from the middle of the chain must never be
        // mistaken for one lost by the store, not even after a crash half-way.
        for t in &tombstones {
            crate::tombstone::write(&self.remote, t, &self.key).await?;
        }
        for rel in &stale_tombstones {
            self.remote.delete(&self.remote.key(rel)).await?;
        }
        for (rel, _) in &doomed {
            self.remote.delete(&self.remote.key(rel)).await?;
        }
        // Deletes are checked, not believed.
        for (rel, _) in &doomed {
            if self.remote.head(&self.remote.key(rel)).await?.is_some() {
                report.undeleted.push(rel.clone());
            }
        }
        report.retained_bytes = Some(reader.stored_bytes().await?);
        drop(st);
        if report.is_verified() {
            tracing::info!(
                manifests = report.deleted_manifests.len(),
                wal = report.deleted_wal.len(),
                objects = report.deleted_objects.len(),
                bytes = report.deleted_bytes,
                "retention applied"
            );
        } else {
            tracing::error!(
                undeleted = report.undeleted.len(),
                retained = ?report.retained_bytes,
                expected = report.expected_retained_bytes,
                "the store acknowledged deletes it did not perform"
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(version: u64, created_at_ms: u64, lineage: LineageId) -> Candidate {
        Candidate {
            version,
            created_at_ms,
            lineage,
            covered: Lsn::new(version * 10),
            hash: crate::manifest::ManifestHash([0; 32]),
        }
    }

    #[test]
    fn selection_orders_by_recorded_time_not_version() {
        let l = LineageId::generate();
        // Version 5 was restored from an old state and published late... with an old time.
        let cs = [
            c(1, 100, l),
            c(2, 200, l),
            c(3, 300, l),
            c(4, 400, l),
            c(5, 50, l),
        ];
        let (keep, _) = select(
            &cs,
            &RetentionPolicy::default().keep_last(2),
            1000,
            None,
            None,
            Some(l),
        );
        assert_eq!(keep.keys().copied().collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn pins_age_pitr_base_head_and_high_water() {
        let l = LineageId::generate();
        let other = LineageId::generate();
        let cs = [
            c(1, 100, l),
            c(2, 200, l),
            c(3, 300, other),
            c(4, 400, l),
            c(5, 500, l),
            c(6, 600, l),
        ];
        let policy = RetentionPolicy::default()
            .keep_last(1)
            .keep_within(Duration::from_millis(150))
            .pitr_window(Duration::from_millis(250))
            .pin(1);
        let (keep, base) = select(&cs, &policy, 700, Some(4), Some(6), Some(l));
        // now 700: recent >= 550 -> 6; pitr cutoff 450 -> newest of lineage l at or before it: 4.
        assert_eq!(base.map(|b| b.version), Some(4));
        assert_eq!(keep[&1], [KeepReason::Pinned]);
        assert_eq!(
            keep[&6],
            [
                KeepReason::Newest,
                KeepReason::Recent,
                KeepReason::HighWater
            ]
        );
        assert_eq!(keep[&4], [KeepReason::PitrBase, KeepReason::Head]);
        assert!(!keep.contains_key(&2) && !keep.contains_key(&3) && !keep.contains_key(&5));
    }
}
