//! The restore drill: restore from the real remote into a scratch directory, compare with the
//! live state, and say how recent a restore would be ("restorable as of T").
//!
//! A backup nobody restored is a hope. [`Reader::restore_drill`] does what a restore after
//! losing the disk would do — newest verified checkpoint, every file downloaded and
//! hash-checked, every shipped record after it read, verified and chained — without touching
//! the live state, and then compares:
//!
//! - every restored record with the live WAL's record of the same LSN (while the live WAL still
//!   holds it): same id, time, kind, key and payload;
//! - the LSN reached with what the writer believes is remotely durable
//!   ([`DrillOptions::expect_lsn`]): a restore that ends earlier means the remote lost
//!   something the writer acknowledged.
//!
//! Any failure is a [`DrillError`] naming what is wrong; nothing is quietly reported as fine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::Lsn;
use crate::error::Error;
use crate::lease::now_ms;
use crate::read::Reader;
use crate::ship::{DEFAULT_PREFETCH, Stop, stream_shipped};

/// Drill settings. Every field has a default.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DrillOptions {
    /// The LSN the remote must restore at least to (what the writer confirmed shipped or
    /// checkpointed). Default: none (no lower bound).
    pub expect_lsn: Option<Lsn>,
    /// Files downloaded concurrently. Default: 4.
    pub parallelism: Option<usize>,
}

impl DrillOptions {
    /// Sets the LSN the restore must reach.
    pub fn expect_lsn(mut self, lsn: Lsn) -> Self {
        self.expect_lsn = Some(lsn);
        self
    }
}

/// What a successful drill restored.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct DrillReport {
    /// When it finished (ms since the Unix epoch).
    pub at_ms: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The checkpoint restored (none when only shipped WAL exists).
    pub version: Option<u64>,
    /// The LSN that checkpoint covers.
    pub covered_lsn: Lsn,
    /// The last LSN restored (checkpoint plus shipped records).
    pub restored_lsn: Lsn,
    /// Time of the last restored record, or the checkpoint's creation time when no shipped
    /// record follows it: a restore now gets the state as of this moment.
    pub restorable_as_of_ms: Option<u64>,
    /// Files restored.
    pub files: usize,
    /// Their content bytes.
    pub bytes: u64,
    /// Shipped records restored.
    pub records: u64,
    /// Restored records compared with (and equal to) the live WAL's.
    pub compared_records: u64,
}

/// Why a drill failed: the remote cannot be restored, or not to what the writer believes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrillError {
    /// The restore itself failed (a missing or damaged object, a hole in the shipped WAL, a
    /// manifest that does not verify, an unreachable store).
    #[error("restore drill: the remote cannot be restored")]
    Restore(#[source] Error),
    /// Nothing in the remote verifies: no checkpoint and no shipped WAL.
    #[error("restore drill: the remote holds nothing restorable")]
    NothingToRestore,
    /// The restore ended before what the writer confirmed remotely durable.
    #[error(
        "restore drill: the remote restores to lsn {restored}, but lsn {expected} was confirmed"
    )]
    Behind {
        /// The last LSN restored.
        restored: Lsn,
        /// The LSN the writer confirmed.
        expected: Lsn,
    },
    /// A restored record differs from the live WAL's record of the same LSN.
    #[error("restore drill: restored record {lsn} differs from the live wal's")]
    Diverged {
        /// The LSN.
        lsn: Lsn,
    },
    /// The scratch directory could not be used.
    #[error("restore drill: scratch directory {path}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Reader {
    /// Restores the newest checkpoint and the shipped WAL after it into a fresh directory under
    /// `scratch` (removed afterwards), comparing restored records with `live` (when given) and
    /// the LSN reached with [`DrillOptions::expect_lsn`]. See the [module docs](crate::drill).
    pub async fn restore_drill(
        &self,
        scratch: &Path,
        live: Option<&finn_wal::Wal>,
        options: &DrillOptions,
    ) -> Result<DrillReport, DrillError> {
        let started = Instant::now();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DrillError::Io { path, source }
        };
        std::fs::create_dir_all(scratch).map_err(io(scratch))?;
        let dir = scratch.join(format!("drill-{}", ulid::Ulid::new()));
        let result = self.drill_into(&dir, live, options).await;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        let mut report = result?;
        report.at_ms = now_ms();
        report.duration_ms = started.elapsed().as_millis() as u64;
        match &report.restorable_as_of_ms {
            Some(t) => tracing::info!(
                restored_lsn = %report.restored_lsn,
                restorable_as_of_ms = t,
                "restore drill passed"
            ),
            None => tracing::info!(restored_lsn = %report.restored_lsn, "restore drill passed"),
        }
        Ok(report)
    }

    async fn drill_into(
        &self,
        dir: &Path,
        live: Option<&finn_wal::Wal>,
        options: &DrillOptions,
    ) -> Result<DrillReport, DrillError> {
        let mut report = DrillReport::default();
        let newest = self.newest().await.map_err(DrillError::Restore)?;
        let lineage = match &newest {
            Some(m) => m.lineage,
            None => self
                .lineage_of_newest()
                .await
                .map_err(DrillError::Restore)?
                .ok_or(DrillError::NothingToRestore)?,
        };
        if let Some(m) = &newest {
            let fetched = self
                .fetch_files(m, &dir.join("files"), options.parallelism.unwrap_or(4))
                .await
                .map_err(DrillError::Restore)?;
            report.version = Some(m.version);
            report.covered_lsn = m.covered_lsn;
            report.files = fetched.files;
            report.bytes = fetched.bytes;
        }
        let mut diverged = None;
        let mut compared = 0u64;
        let streamed = stream_shipped(
            self,
            lineage,
            report.covered_lsn,
            Stop::default(),
            DEFAULT_PREFETCH,
            |records| {
                let (Some(live), Some(first), None) = (live, records.first(), diverged) else {
                    return Ok(());
                };
                let held =
                    live.entries_since(Lsn::new(first.lsn.get() - 1), Some(records.len()))?;
                for r in &records {
                    if let Some(l) = held.iter().find(|l| l.lsn == r.lsn) {
                        if l != r {
                            diverged = Some(r.lsn);
                            break;
                        }
                        compared += 1;
                    }
                }
                Ok(())
            },
        )
        .await
        .map_err(DrillError::Restore)?;
        if let Some(lsn) = diverged {
            return Err(DrillError::Diverged { lsn });
        }
        report.restored_lsn = streamed.covered;
        report.records = streamed.records;
        report.compared_records = compared;
        report.restorable_as_of_ms = streamed
            .last_time_ms
            .or(newest.as_ref().map(|m| m.created_at_ms));
        if let Some(expected) = options.expect_lsn
            && report.restored_lsn < expected
        {
            return Err(DrillError::Behind {
                restored: report.restored_lsn,
                expected,
            });
        }
        Ok(report)
    }
}
