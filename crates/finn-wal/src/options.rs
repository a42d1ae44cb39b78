//! Tunables: [`Options`], [`Durability`], [`RecoveryMode`], [`Retention`].

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::fs::Io;
use crate::record::MIN_SEGMENT_SIZE;

/// Default [`Options::segment_size`]: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// Default [`Options::max_segment_age`]: one hour (the anchors' choice).
pub const DEFAULT_MAX_SEGMENT_AGE: Duration = Duration::from_secs(3600);
/// Default [`Options::wal_size_warning`]: 100 MiB (the anchors' threshold).
pub const DEFAULT_WAL_SIZE_WARNING: u64 = 100 * 1024 * 1024;
/// Default [`Options::wal_size_critical`]: 150 MiB (the anchors' threshold).
pub const DEFAULT_WAL_SIZE_CRITICAL: u64 = 150 * 1024 * 1024;
/// Default [`Options::free_space_warning`]: 512 MiB.
pub const DEFAULT_FREE_SPACE_WARNING: u64 = 512 * 1024 * 1024;
/// Default [`Options::free_space_critical`]: 100 MiB (the anchors' ULID WAL read-only mark).
pub const DEFAULT_FREE_SPACE_CRITICAL: u64 = 100 * 1024 * 1024;
/// Default [`Options::compaction_garbage_ratio`]: half of the sealed bytes are superseded.
pub const DEFAULT_COMPACTION_GARBAGE_RATIO: f64 = 0.5;
/// Default [`Options::compaction_min_bytes`]: 1 MiB of superseded records.
pub const DEFAULT_COMPACTION_MIN_BYTES: u64 = 1024 * 1024;

/// When an append counts as done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durability {
    /// The record is written to the operating system before the append returns. It survives a
    /// crash of the process, not a power loss, until a later [`Wal::sync`](crate::Wal::sync) (or a
    /// `Sync` append) covers it.
    None,
    /// Like `None` at return, and a background thread starts an fdatasync covering the record no
    /// later than `max_delay` after it was appended. Bounds the power-loss window to about `max_delay`.
    Batch {
        /// Longest time a record may wait for its fdatasync.
        max_delay: Duration,
    },
    /// The append returns only after an fdatasync covering the record. Concurrent `Sync`
    /// appenders share one fdatasync (group commit).
    #[default]
    Sync,
}

/// What [`Wal::open`](crate::Wal::open) does when a frame or header fails its check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// A torn tail of the newest segment (what a crash mid-append leaves) is cut off and the
    /// cut made durable; damage anywhere else is an [`Error::Corrupt`].
    #[default]
    TolerateTornTail,
    /// Any damage, even a torn tail, is an [`Error::Corrupt`]; nothing on disk is changed.
    AbsoluteConsistency,
    /// Damaged frames anywhere are skipped and each one is listed in the
    /// [`RecoveryReport`](crate::RecoveryReport). For salvage, not for normal operation.
    SalvageAll,
}

/// Automatic deletion of old segments. Off by default; even when on, it never deletes a
/// segment holding a record above the mark confirmed by
/// [`Wal::confirm_checkpointed`](crate::Wal::confirm_checkpointed) or
/// [`Wal::prune_through`](crate::Wal::prune_through).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Keep at most this many sealed segments (older confirmed ones are deleted). Default: `None`.
    pub max_segments: Option<usize>,
    /// Delete confirmed sealed segments older than this. Default: `None`.
    pub max_age: Option<Duration>,
}

impl Retention {
    /// Whether any rule is configured.
    pub fn is_enabled(&self) -> bool {
        self.max_segments.is_some() || self.max_age.is_some()
    }
}

/// Configuration of a [`Wal`](crate::Wal). Every field has a documented default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    /// Durability of [`Wal::append`](crate::Wal::append). Default: [`Durability::Sync`].
    pub durability: Durability,
    /// How damage found on open is treated. Default: [`RecoveryMode::TolerateTornTail`].
    pub recovery_mode: RecoveryMode,
    /// Size of each segment file; also the largest frame (record or batch) that fits.
    /// At least 4 KiB. Default: 64 MiB ([`DEFAULT_SEGMENT_SIZE`]).
    pub segment_size: u64,
    /// Zero-fill each new segment to `segment_size` so that fdatasync never has to commit file
    /// metadata (about 1.5× faster syncs on ext4). Sealed segments are trimmed to their used size.
    /// Default: `true`.
    pub preallocate: bool,
    /// Seal the active segment once it is older than this and holds a record. Default: one hour.
    pub max_segment_age: Option<Duration>,
    /// WAL size (bytes of records held) at which pressure becomes `Warning`, which triggers
    /// compaction. Default: 100 MiB.
    pub wal_size_warning: u64,
    /// WAL size at which appends are rejected with [`Error::DiskPressureCritical`]. Default: 150 MiB.
    pub wal_size_critical: u64,
    /// Free space on the filesystem (`f_bavail`) at or below which pressure becomes `Warning`.
    /// Default: 512 MiB.
    pub free_space_warning: u64,
    /// Free space at or below which appends are rejected. Default: 100 MiB.
    pub free_space_critical: u64,
    /// Compact automatically (in a background thread) when the garbage thresholds are met.
    /// Default: `true`.
    pub auto_compact: bool,
    /// Fraction of sealed bytes that must be superseded keyed records before automatic
    /// compaction runs. Default: 0.5.
    pub compaction_garbage_ratio: f64,
    /// Superseded bytes needed before automatic compaction runs. Default: 1 MiB.
    pub compaction_min_bytes: u64,
    /// Automatic deletion of confirmed segments. Default: off.
    pub retention: Retention,
    /// The file system every file operation of the WAL goes through. Default:
    /// [`Os`](crate::fs::Os), the real one. The hook for fault injection and power-loss tests:
    /// give it a [`SimFs`](crate::fs::sim::SimFs) (see [`with_io`](Self::with_io)). Not
    /// serialised.
    #[serde(skip, default = "crate::fs::os")]
    pub io: Arc<dyn Io>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            recovery_mode: RecoveryMode::TolerateTornTail,
            segment_size: DEFAULT_SEGMENT_SIZE,
            preallocate: true,
            max_segment_age: Some(DEFAULT_MAX_SEGMENT_AGE),
            wal_size_warning: DEFAULT_WAL_SIZE_WARNING,
            wal_size_critical: DEFAULT_WAL_SIZE_CRITICAL,
            free_space_warning: DEFAULT_FREE_SPACE_WARNING,
            free_space_critical: DEFAULT_FREE_SPACE_CRITICAL,
            auto_compact: true,
            compaction_garbage_ratio: DEFAULT_COMPACTION_GARBAGE_RATIO,
            compaction_min_bytes: DEFAULT_COMPACTION_MIN_BYTES,
            retention: Retention::default(),
            io: crate::fs::os(),
        }
    }
}

impl Options {
    /// These options with every file operation going through `io`.
    ///
    /// ```
    /// use finn_wal::fs::sim::{Crash, SimFs};
    /// use finn_wal::{Kind, NewRecord, Options, Wal};
    ///
    /// let fs = SimFs::new();
    /// let options = Options::default().with_io(fs.clone());
    /// let (wal, _) = Wal::open("/sim/wal", options.clone())?;
    /// let lsn = wal.append(NewRecord::event(Kind::Audit, b"kept".to_vec()))?;
    /// drop(wal);
    /// // The power fails: only what was synced is left, and the record was.
    /// let image = fs.crash(Crash::DropUnsynced);
    /// let (wal, _) = Wal::open("/sim/wal", Options::default().with_io(image))?;
    /// assert_eq!(wal.read(lsn)?.map(|r| r.payload), Some(b"kept".to_vec()));
    /// # Ok::<(), finn_wal::Error>(())
    /// ```
    pub fn with_io(mut self, io: impl Io + 'static) -> Self {
        self.io = Arc::new(io);
        self
    }

    /// Checks the values; [`Wal::open`](crate::Wal::open) calls it.
    pub fn validate(&self) -> Result<(), Error> {
        if self.segment_size < MIN_SEGMENT_SIZE {
            return Err(Error::InvalidOptions {
                field: "segment_size",
                reason: "must be at least 4096 bytes",
            });
        }
        if self.segment_size > u64::from(u32::MAX) {
            return Err(Error::InvalidOptions {
                field: "segment_size",
                reason: "must be below 4 GiB",
            });
        }
        if !(self.compaction_garbage_ratio > 0.0 && self.compaction_garbage_ratio <= 1.0) {
            return Err(Error::InvalidOptions {
                field: "compaction_garbage_ratio",
                reason: "must be in (0, 1]",
            });
        }
        if self.wal_size_warning > self.wal_size_critical {
            return Err(Error::InvalidOptions {
                field: "wal_size_warning",
                reason: "must not exceed wal_size_critical",
            });
        }
        if self.free_space_warning < self.free_space_critical {
            return Err(Error::InvalidOptions {
                field: "free_space_warning",
                reason: "must not be below free_space_critical",
            });
        }
        Ok(())
    }
}
