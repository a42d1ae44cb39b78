//! Garbage collection and retention, run by the lease holder.
//!
//! Order matters for safety: first decide which manifests are retained and protect every object
//! they (and every live intent) name; then delete manifests that fall out of retention (oldest
//! first) and fenced-off zombie manifests; only then delete unprotected objects older than the
//! grace period. A crash anywhere leaves every retained manifest complete.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::Lsn;
use crate::checkpoint::Checkpointer;
use crate::error::Error;
use crate::layout::{self, LeaseObject};
use crate::lease::{Fences, LeaseListing, now_ms};
use crate::manifest::{LineageId, Manifest};
use crate::read::{scan_batches, scan_manifests};

/// What one GC pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Manifests kept.
    pub retained_manifests: Vec<u64>,
    /// Manifests deleted (out of retention, or written by a fenced-off epoch).
    pub deleted_manifests: Vec<u64>,
    /// Stale intents deleted.
    pub deleted_intents: usize,
    /// Unreferenced objects deleted.
    pub deleted_objects: usize,
    /// Stored bytes of the unreferenced objects deleted.
    pub deleted_object_bytes: u64,
    /// Unreferenced objects kept because they are younger than the grace period.
    pub young_objects: usize,
    /// Shipped WAL batches deleted (before every retained checkpoint of their lineage, or fenced).
    pub deleted_batches: usize,
    /// Old lease objects deleted.
    pub deleted_lease_objects: usize,
}

impl Checkpointer {
    /// Removes stale intents, manifests beyond retention, and objects no retained manifest or
    /// live intent needs (after the grace period). Runs under this writer's lease.
    pub async fn gc(&self) -> Result<GcReport, Error> {
        self.gc_with(self.options.gc_grace, self.options.stale_intent_age)
            .await
    }

    /// [`Checkpointer::gc`] with explicit grace periods (tests and operators use zero).
    pub async fn gc_with(
        &self,
        grace: Duration,
        stale_intent_age: Duration,
    ) -> Result<GcReport, Error> {
        let mut st = self.state.lock().await;
        self.checked(&mut st).await?;
        let remote = &self.remote;
        let mut report = GcReport::default();
        let now = now_ms();
        let (fences, listing) = Fences::load(remote, &self.keyring).await?;

        // Manifests: decode every one. Undecodable ones are left alone (never delete what we
        // cannot understand); their objects cannot be protected, which is logged.
        let mut manifests: BTreeMap<u64, Manifest> = BTreeMap::new();
        for v in scan_manifests(remote).await? {
            let key = remote.key(&layout::manifest_key(v));
            if let Some(bytes) = remote.get(&key).await? {
                match Manifest::decode(&bytes) {
                    Ok((m, _)) => {
                        manifests.insert(v, m);
                    }
                    Err(e) => {
                        tracing::warn!(version = v, error = %e, "gc leaves undecodable manifest alone")
                    }
                }
            }
        }
        let (mut fenced, mut valid) = (Vec::new(), Vec::new());
        for (v, m) in &manifests {
            if fences.manifest_fenced(m.writer_epoch, *v) {
                fenced.push(*v)
            } else {
                valid.push(*v)
            }
        }
        let retain = self.options.retain.max(1);
        let mut retained: BTreeSet<u64> = valid.iter().rev().take(retain).copied().collect();
        // The writer's own head is always kept, whatever the count says.
        if let Some(h) = &st.head {
            retained.insert(h.version);
        }
        let mut protected: BTreeSet<String> = BTreeSet::new();
        for v in &retained {
            if let Some(m) = manifests.get(v) {
                protected.extend(
                    m.files
                        .iter()
                        .map(|f| layout::object_key(&f.blake3, f.codec)),
                );
            }
        }

        // Intents: live ones protect their objects, stale ones go.
        for meta in remote.list(layout::INTENTS).await? {
            let body = remote.get(&meta.location).await?.unwrap_or_default();
            let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
            let started = parsed
                .as_ref()
                .and_then(|v| v.get("started_at_ms"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let stale = now.saturating_sub(started) >= stale_intent_age.as_millis() as u64;
            if stale {
                remote.delete(&meta.location).await?;
                report.deleted_intents += 1;
            } else if let Some(objects) = parsed
                .as_ref()
                .and_then(|v| v.get("objects"))
                .and_then(|o| o.as_array())
            {
                protected.extend(objects.iter().filter_map(|o| o.as_str().map(str::to_owned)));
            }
        }

        // Manifests out of retention (oldest first), then zombie manifests. The highest version
        // present stays whatever it is: it is the high-water mark that keeps versions unique.
        let highest = manifests.keys().next_back().copied();
        let doomed: Vec<u64> = valid
            .iter()
            .filter(|v| !retained.contains(v))
            .chain(fenced.iter())
            .copied()
            .filter(|v| Some(*v) != highest)
            .collect();
        for v in doomed {
            remote.delete(&remote.key(&layout::manifest_key(v))).await?;
            report.deleted_manifests.push(v);
        }
        report.retained_manifests = retained.iter().copied().collect();

        // Objects nobody needs, once they are older than the grace period.
        let grace_ms = grace.as_millis() as u64;
        for meta in remote.list(layout::OBJECTS).await? {
            let Some(rel) = remote.relative(&meta.location) else {
                continue;
            };
            if protected.contains(&rel) || layout::parse_object_key(&rel).is_none() {
                continue;
            }
            let age = now.saturating_sub(meta.last_modified.timestamp_millis().max(0) as u64);
            if age < grace_ms {
                report.young_objects += 1;
                continue;
            }
            remote.delete(&meta.location).await?;
            report.deleted_objects += 1;
            report.deleted_object_bytes += meta.size;
        }

        // Shipped WAL: a batch is needed while some retained checkpoint of its lineage (or no
        // checkpoint at all) may replay it.
        let mut floor: BTreeMap<LineageId, Lsn> = BTreeMap::new();
        for v in &retained {
            if let Some(m) = manifests.get(v) {
                let e = floor.entry(m.lineage).or_insert(m.covered_lsn);
                *e = (*e).min(m.covered_lsn);
            }
        }
        for b in scan_batches(remote, None).await? {
            let obsolete = floor.get(&b.lineage).is_some_and(|f| b.last <= *f);
            if obsolete || fences.batch_fenced(b.epoch, b.last) {
                remote.delete(&remote.key(&layout::batch_key(&b))).await?;
                report.deleted_batches += 1;
            }
        }

        // Lease objects of past epochs (seals stay: they fence what older epochs wrote).
        report.deleted_lease_objects = delete_old_leases(self, &listing).await?;
        drop(st);
        tracing::info!(?report, "gc done");
        Ok(report)
    }
}

async fn delete_old_leases(cp: &Checkpointer, listing: &LeaseListing) -> Result<usize, Error> {
    let mut n = 0;
    let mine = cp.epoch();
    for (epochs, what) in [
        (&listing.lease_epochs, LeaseObject::Lease),
        (&listing.renewed_epochs, LeaseObject::Renewed),
    ] {
        // An unsealed epoch's lease object stays: it is what a fenced-off writer of the epoch
        // before it finds with one HEAD (see `Lease::check`), and it is tiny.
        let removable =
            |e: u64| e < mine && (what == LeaseObject::Renewed || listing.seal_epochs.contains(&e));
        for &e in epochs.iter().filter(|&&e| removable(e)) {
            cp.remote
                .delete(&cp.remote.key(&layout::lease_key(e, what)))
                .await?;
            n += 1;
        }
    }
    Ok(n)
}
