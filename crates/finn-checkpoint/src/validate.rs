//! Continuous verification of the remote: is what the bucket holds still restorable?
//!
//! [`Reader::validate`] checks, from the bucket alone:
//!
//! - **Every manifest**: structure, signature by a trusted key, key/version agreement, and its
//!   chain link (the previous manifest hashes to the link, unless retention removed it).
//!   Manifests written by a fenced-off writer are counted, not reported (GC removes them).
//! - **Every object a manifest names exists with the recorded stored size** (one listing of
//!   `objects/`), and the **content** of every object not verified before, plus a random sample
//!   of those that were, is downloaded and checked against its size and BLAKE3.
//! - **Shipped WAL, per lineage**: every object's signature and records (new ones plus a
//!   sample), that objects of one level do not overlap, and that the objects chain without a
//!   hole from the oldest checkpoint of the lineage (each object's signed `prev` must be covered
//!   by those before it).
//!
//! What verified is remembered in a [`RemoteIndex`], so a run downloads what is new plus the
//! sample. A damaged remote is a [`Finding`] in the report, not an error: the run goes on and
//! reports everything it finds. Errors are for a remote that cannot be read at all.
//!
//! A run reads the prefix through several listings; GC or retention deleting in between can
//! make a manifest it already read look like it lost objects. Confirm findings with a second
//! run before alarming (the `finn` runtime does).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use rand::seq::SliceRandom;

use crate::Lsn;
use crate::error::Error;
use crate::layout;
use crate::lease::now_ms;
use crate::manifest::{FileEntry, LineageId, ManifestHash};
use crate::read::Reader;
use crate::remote_index::{BatchFacts, ManifestFacts, RemoteIndex, ValidationSummary};
use crate::ship::WalObject;

/// Validation settings. Every field has a default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ValidateOptions {
    /// Already-verified objects (and shipped WAL objects) downloaded again at random per run,
    /// to catch silent corruption of what was once good. Default: 8.
    pub sample: usize,
    /// Download and check everything, ignoring the index. Default: false.
    pub full: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        Self {
            sample: 8,
            full: false,
        }
    }
}

impl ValidateOptions {
    /// Sets the sample size.
    pub fn sample(mut self, n: usize) -> Self {
        self.sample = n;
        self
    }

    /// Checks everything.
    pub fn full(mut self, full: bool) -> Self {
        self.full = full;
        self
    }
}

/// One thing wrong with the remote.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Finding {
    /// A manifest does not verify (bad signature, damaged, misplaced, broken chain link).
    ManifestRejected {
        /// Its version.
        version: u64,
        /// Why, with causes.
        reason: String,
    },
    /// An object a manifest names is not in the store.
    ObjectMissing {
        /// The manifest.
        version: u64,
        /// The file it holds.
        path: String,
        /// The object's key, relative to the prefix.
        key: String,
    },
    /// An object's stored size or content does not match what the manifest records.
    ObjectDamaged {
        /// The manifest.
        version: u64,
        /// The object's key, relative to the prefix.
        key: String,
        /// What does not match.
        reason: String,
    },
    /// A shipped WAL object does not verify (signature, header, record checksums).
    BatchRejected {
        /// Its key, relative to the prefix.
        key: String,
        /// Why.
        reason: String,
    },
    /// Shipped records are missing: the next object's `prev` is beyond what the objects before
    /// it cover.
    ShippedGap {
        /// The lineage.
        lineage: LineageId,
        /// The last LSN covered without a hole.
        covered: Lsn,
        /// First LSN of the next object.
        next_first: Lsn,
        /// The `prev` that object records (records `covered + 1 ..= next_prev` are lost).
        next_prev: Lsn,
    },
    /// Two shipped WAL objects of one level hold overlapping LSN ranges.
    ShippedOverlap {
        /// The lineage.
        lineage: LineageId,
        /// The compaction level.
        level: u8,
        /// Key of the earlier object.
        first: String,
        /// Key of the object overlapping it.
        second: String,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::ManifestRejected { version, reason } => {
                write!(f, "manifest {version} rejected: {reason}")
            }
            Finding::ObjectMissing { version, path, key } => {
                write!(f, "manifest {version}: object {key} of {path} is missing")
            }
            Finding::ObjectDamaged {
                version,
                key,
                reason,
            } => write!(f, "manifest {version}: object {key} is damaged: {reason}"),
            Finding::BatchRejected { key, reason } => {
                write!(f, "shipped wal object {key} rejected: {reason}")
            }
            Finding::ShippedGap {
                lineage,
                covered,
                next_first,
                next_prev,
            } => write!(
                f,
                "shipped wal of lineage {lineage} has a gap: covered through {covered}, the next object starts at {next_first} after {next_prev}"
            ),
            Finding::ShippedOverlap {
                lineage,
                level,
                first,
                second,
            } => write!(
                f,
                "shipped wal of lineage {lineage} level {level}: {second} overlaps {first}"
            ),
        }
    }
}

/// What one [`Reader::validate`] run checked and found.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct ValidationReport {
    /// When it finished (ms since the Unix epoch).
    pub at_ms: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Manifests that verified.
    pub manifests: usize,
    /// Manifests written by fenced-off writers (ignored by readers, removed by GC).
    pub fenced_manifests: usize,
    /// Newest manifest version that verified.
    pub newest_version: Option<u64>,
    /// Distinct objects the verified manifests name.
    pub objects: usize,
    /// Objects downloaded and hash-checked because they were new to the index.
    pub objects_downloaded: usize,
    /// Known objects downloaded again as the random sample.
    pub objects_sampled: usize,
    /// Shipped WAL objects checked for contiguity.
    pub wal_objects: usize,
    /// Shipped WAL objects downloaded and verified (new plus sample).
    pub wal_objects_downloaded: usize,
    /// Stored bytes downloaded.
    pub bytes_downloaded: u64,
    /// Highest LSN restorable from the remote alone: the newest verified checkpoint, extended
    /// by shipped WAL that follows it without a hole.
    pub restorable_lsn: Lsn,
    /// Time of the newest restorable record, or the newest checkpoint's creation time when no
    /// shipped record follows it ("restorable as of T").
    pub restorable_as_of_ms: Option<u64>,
    /// Everything wrong, in the order found.
    pub findings: Vec<Finding>,
}

impl ValidationReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }

    fn summary(&self) -> ValidationSummary {
        ValidationSummary {
            at_ms: self.at_ms,
            ok: self.is_ok(),
            findings: self.findings.len(),
            newest_version: self.newest_version,
            restorable_lsn: self.restorable_lsn,
            restorable_as_of_ms: self.restorable_as_of_ms,
        }
    }
}

/// A verified manifest, as far as validation needs it.
struct Checked {
    version: u64,
    lineage: LineageId,
    covered: Lsn,
    created_at_ms: u64,
    files: Vec<FileEntry>,
}

impl Reader {
    /// Validates the remote; see the [module docs](crate::validate). Uses and updates `index`
    /// (save it afterwards to make the next run incremental).
    ///
    /// Lists `manifests/`, `objects/`, `lease/` and each lineage's `wal/` once: validation is
    /// where the request budget for listing is spent, not the sync loop.
    pub async fn validate(
        &self,
        index: &mut RemoteIndex,
        options: &ValidateOptions,
    ) -> Result<ValidationReport, Error> {
        let started = Instant::now();
        let mut report = ValidationReport::default();
        if options.full {
            index.verified_objects.clear();
            index.verified_batches.clear();
        }
        let fences = self.fences().await?;

        // Manifests, newest first; the chain link is checked against the bytes read here.
        let versions = self.versions().await?;
        let oldest = versions.last().map(|v| v.version).unwrap_or(0);
        let mut hashes: BTreeMap<u64, (ManifestHash, LineageId)> = BTreeMap::new();
        let mut checked: Vec<Checked> = Vec::new();
        let mut links = Vec::new();
        for entry in &versions {
            match self.load_unchained(entry.version, &fences).await {
                Ok(signed) => {
                    hashes.insert(signed.version, (signed.hash(), signed.lineage));
                    links.push((signed.version, signed.lineage, signed.previous));
                    let stored_bytes = signed.files.iter().map(|f| f.stored_size).sum();
                    index.manifests.insert(
                        signed.version,
                        ManifestFacts {
                            hash: hex::encode(signed.hash().0),
                            created_at_ms: signed.created_at_ms,
                            covered_lsn: signed.covered_lsn,
                            lineage: signed.lineage.to_string(),
                            stored_bytes,
                        },
                    );
                    checked.push(Checked {
                        version: signed.version,
                        lineage: signed.lineage,
                        covered: signed.covered_lsn,
                        created_at_ms: signed.created_at_ms,
                        files: signed.files.clone(),
                    });
                }
                Err(Error::FencedWrite { .. }) => report.fenced_manifests += 1,
                Err(e @ Error::Remote { .. }) => return Err(e),
                Err(e) => report.findings.push(Finding::ManifestRejected {
                    version: entry.version,
                    reason: crate::error_chain(&e),
                }),
            }
        }
        let present: BTreeSet<u64> = versions.iter().map(|v| v.version).collect();
        let mut broken = BTreeSet::new();
        for (version, lineage, previous) in links {
            let Some(link) = previous else { continue };
            let reason = match hashes.get(&link.version) {
                Some((hash, prev_lineage)) if *hash == link.hash && *prev_lineage == lineage => {
                    continue;
                }
                Some(_) => format!("previous manifest {} does not match the link", link.version),
                None if !present.contains(&link.version)
                    && (link.version < oldest
                        || crate::tombstone::removed_on_purpose(
                            self.remote(),
                            self.keyring(),
                            link.version,
                            link.hash,
                            lineage,
                        )
                        .await?) =>
                {
                    continue;
                }
                None => format!("previous manifest {} is missing or rejected", link.version),
            };
            broken.insert(version);
            report
                .findings
                .push(Finding::ManifestRejected { version, reason });
        }
        checked.retain(|c| !broken.contains(&c.version));
        index
            .manifests
            .retain(|v, _| present.contains(v) && !broken.contains(v));
        report.manifests = checked.len();
        report.newest_version = checked.first().map(|c| c.version);

        self.check_objects(index, options, &checked, &mut report)
            .await?;

        // Shipped WAL of every lineage a checkpoint belongs to, and of the newest lineage.
        let mut lineages: BTreeMap<LineageId, Lsn> = BTreeMap::new();
        for c in &checked {
            let floor = lineages.entry(c.lineage).or_insert(c.covered);
            *floor = (*floor).min(c.covered);
        }
        let newest_lineage = match checked.first() {
            Some(c) => Some(c.lineage),
            None => self.lineage_of_newest().await?,
        };
        if let Some(l) = newest_lineage {
            lineages.entry(l).or_insert(Lsn::ZERO);
        }
        let mut listed_batches = BTreeSet::new();
        for (&lineage, &floor) in &lineages {
            let objects = self.wal_objects(lineage).await?;
            listed_batches.extend(objects.iter().map(|o| layout::batch_key(&o.name)));
            let facts = self
                .check_batches(index, options, &objects, &mut report)
                .await?;
            let start = match (newest_lineage == Some(lineage), checked.first()) {
                (true, Some(newest)) => Some(newest.covered),
                (true, None) => Some(Lsn::ZERO),
                _ => None,
            };
            let walk = walk_chain(
                lineage,
                floor,
                &objects,
                &facts,
                start,
                &mut report.findings,
            );
            if let Some((lsn, time)) = walk {
                report.restorable_lsn = lsn;
                report.restorable_as_of_ms = time.or(checked.first().map(|c| c.created_at_ms));
            }
        }
        if newest_lineage.is_none() {
            report.restorable_as_of_ms = None;
        }
        index
            .verified_batches
            .retain(|k, _| listed_batches.contains(k));
        let now = now_ms();
        index.last_listed_ms = Some(now);
        report.at_ms = now;
        report.duration_ms = started.elapsed().as_millis() as u64;
        index.last_validation = Some(report.summary());
        if report.is_ok() {
            tracing::info!(
                manifests = report.manifests,
                objects = report.objects,
                downloaded = report.objects_downloaded,
                restorable_lsn = %report.restorable_lsn,
                "remote validated"
            );
        } else {
            for f in &report.findings {
                tracing::error!(finding = %f, "remote validation");
            }
        }
        Ok(report)
    }

    /// Existence and size of every named object (one listing), content of new ones plus a
    /// sample of known ones.
    async fn check_objects(
        &self,
        index: &mut RemoteIndex,
        options: &ValidateOptions,
        checked: &[Checked],
        report: &mut ValidationReport,
    ) -> Result<(), Error> {
        let remote = self.remote();
        let listed: BTreeMap<String, u64> = remote
            .list(layout::OBJECTS)
            .await?
            .into_iter()
            .filter_map(|m| Some((remote.relative(&m.location)?, m.size)))
            .collect();
        // Each object once, attributed to the newest manifest naming it.
        let mut named: BTreeMap<String, (u64, FileEntry)> = BTreeMap::new();
        for c in checked {
            for f in &c.files {
                let key = layout::object_key(&f.blake3, f.codec);
                named.entry(key).or_insert_with(|| (c.version, f.clone()));
            }
        }
        report.objects = named.len();
        let mut fresh = Vec::new();
        let mut known = Vec::new();
        for (key, (version, entry)) in &named {
            match listed.get(key) {
                None => {
                    index.verified_objects.remove(key);
                    report.findings.push(Finding::ObjectMissing {
                        version: *version,
                        path: entry.path.to_string(),
                        key: key.clone(),
                    });
                }
                Some(&size) if size != entry.stored_size => {
                    index.verified_objects.remove(key);
                    report.findings.push(Finding::ObjectDamaged {
                        version: *version,
                        key: key.clone(),
                        reason: format!(
                            "stored size {size}, the manifest records {}",
                            entry.stored_size
                        ),
                    });
                }
                Some(&size) if index.verified_objects.get(key) == Some(&size) => {
                    known.push(key.clone())
                }
                Some(_) => fresh.push(key.clone()),
            }
        }
        let sample: Vec<String> = known
            .choose_multiple(&mut rand::thread_rng(), options.sample)
            .cloned()
            .collect();
        report.objects_sampled = sample.len();
        report.objects_downloaded = fresh.len();
        for key in fresh.into_iter().chain(sample) {
            let Some((version, entry)) = named.get(&key) else {
                continue;
            };
            match self.verify_object(entry).await {
                Ok(_) => {
                    report.bytes_downloaded += entry.stored_size;
                    index.verified_objects.insert(key, entry.stored_size);
                }
                Err(e @ Error::Remote { .. }) => return Err(e),
                Err(Error::ObjectMissing { .. }) => {
                    index.verified_objects.remove(&key);
                    report.findings.push(Finding::ObjectMissing {
                        version: *version,
                        path: entry.path.to_string(),
                        key,
                    });
                }
                Err(e) => {
                    index.verified_objects.remove(&key);
                    report.findings.push(Finding::ObjectDamaged {
                        version: *version,
                        key,
                        reason: crate::error_chain(&e),
                    });
                }
            }
        }
        index
            .verified_objects
            .retain(|k, _| named.contains_key(k) && listed.contains_key(k));
        Ok(())
    }

    /// Facts of every listed WAL object: from the index, or downloaded and verified.
    async fn check_batches(
        &self,
        index: &mut RemoteIndex,
        options: &ValidateOptions,
        objects: &[WalObject],
        report: &mut ValidationReport,
    ) -> Result<BTreeMap<String, BatchFacts>, Error> {
        let mut facts = BTreeMap::new();
        let mut todo = Vec::new();
        let mut known = Vec::new();
        for o in objects {
            let key = layout::batch_key(&o.name);
            match index.verified_batches.get(&key) {
                Some(f) if f.size == o.size => {
                    facts.insert(key.clone(), *f);
                    known.push(*o);
                }
                _ => todo.push(*o),
            }
        }
        report.wal_objects += objects.len();
        todo.extend(
            known
                .choose_multiple(&mut rand::thread_rng(), options.sample)
                .copied(),
        );
        for o in todo {
            let key = layout::batch_key(&o.name);
            match self.fetch_batch(&o.name).await {
                Ok(batch) => {
                    report.wal_objects_downloaded += 1;
                    report.bytes_downloaded += o.size;
                    let f = BatchFacts {
                        size: o.size,
                        prev: batch.prev,
                        first_time_ms: batch.records.first().map_or(0, |r| r.timestamp_ms),
                        last_time_ms: batch.records.last().map_or(0, |r| r.timestamp_ms),
                    };
                    index.verified_batches.insert(key.clone(), f);
                    facts.insert(key, f);
                }
                Err(e @ Error::Remote { .. }) => return Err(e),
                // Compaction replaced it between the listing and the download: not damage.
                Err(Error::ObjectMissing { .. }) => {
                    facts.remove(&key);
                }
                Err(e) => {
                    index.verified_batches.remove(&key);
                    facts.remove(&key);
                    report.findings.push(Finding::BatchRejected {
                        key,
                        reason: crate::error_chain(&e),
                    });
                }
            }
        }
        Ok(facts)
    }
}

impl Reader {
    /// Downloads one object and checks stored size, decoded size and BLAKE3, streaming: memory
    /// stays at one chunk whatever the object's size.
    async fn verify_object(&self, entry: &FileEntry) -> Result<(), Error> {
        use std::io::Write;
        let remote = self.remote();
        let (key, got) = self.open_object(entry).await?;
        let decode = |source| Error::Decode {
            key: key.to_string(),
            source,
        };
        let sink = crate::read::Hashing::new(std::io::sink(), entry);
        let mut decoder = crate::codec::StreamDecoder::new(entry.codec, sink).map_err(decode)?;
        let mut stream = got.into_stream();
        while let Some(chunk) = remote.next_chunk(&key, &mut stream).await? {
            decoder.write_all(&chunk).map_err(decode)?;
        }
        decoder.finish().map_err(decode)?.check(entry)
    }
}

/// Checks one lineage's shipped WAL objects for overlaps within a level and for holes from
/// `floor` on. Returns, when `start` is given, the last LSN reachable from `start` without a
/// hole and the time of that record.
fn walk_chain(
    lineage: LineageId,
    floor: Lsn,
    objects: &[WalObject],
    facts: &BTreeMap<String, BatchFacts>,
    start: Option<Lsn>,
    findings: &mut Vec<Finding>,
) -> Option<(Lsn, Option<u64>)> {
    // Objects that did not verify have no facts: they are findings already, and are left out
    // of the walk so a hole they leave is reported too.
    let mut usable: Vec<(WalObject, BatchFacts)> = objects
        .iter()
        .filter_map(|o| Some((*o, *facts.get(&layout::batch_key(&o.name))?)))
        .collect();
    usable.sort_by_key(|(o, _)| (o.name.first, o.name.last));

    let mut by_level: BTreeMap<u8, Vec<&WalObject>> = BTreeMap::new();
    for (o, _) in &usable {
        by_level.entry(o.name.level).or_default().push(o);
    }
    for (level, objs) in by_level {
        for w in objs.windows(2) {
            if w[1].name.first <= w[0].name.last {
                findings.push(Finding::ShippedOverlap {
                    lineage,
                    level,
                    first: layout::batch_key(&w[0].name),
                    second: layout::batch_key(&w[1].name),
                });
            }
        }
    }

    // Walk: from what is covered, the object reaching furthest among those whose `prev` is
    // covered; none while some object lies ahead is a hole.
    let walk = |from: Lsn, report: bool, findings: &mut Vec<Finding>| {
        let mut covered = from;
        let mut time = None;
        loop {
            let next = usable
                .iter()
                .filter(|(o, f)| f.prev <= covered && o.name.last > covered)
                .max_by_key(|(o, _)| o.name.last);
            if let Some((o, f)) = next {
                covered = o.name.last;
                time = Some(f.last_time_ms);
                continue;
            }
            let ahead = usable
                .iter()
                .filter(|(o, _)| o.name.last > covered)
                .min_by_key(|(o, f)| (f.prev, o.name.first));
            match ahead {
                Some((o, f)) if report => {
                    findings.push(Finding::ShippedGap {
                        lineage,
                        covered,
                        next_first: o.name.first,
                        next_prev: f.prev,
                    });
                    // Carry on past the hole to find the next one.
                    covered = o.name.last;
                }
                _ => return (covered, time),
            }
        }
    };
    walk(floor, true, findings);
    start.map(|s| {
        let mut ignored = Vec::new();
        walk(s, false, &mut ignored)
    })
}
