//! What [`Wal::status`](crate::Wal::status) and the maintenance calls report, plus the metric
//! counters and the disk-pressure rule.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::Lsn;

/// Disk pressure, from the WAL's size and the filesystem's free space (the worse of the two).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Pressure {
    /// Below every warning threshold.
    #[default]
    Normal,
    /// A warning threshold is reached; compaction is triggered.
    Warning,
    /// A critical threshold is reached; appends are rejected.
    Critical,
}

impl Pressure {
    /// Level of a growing quantity against inclusive thresholds (the anchors' rule:
    /// `value >= critical` is critical, `value >= warning` is a warning).
    pub fn of_size(value: u64, warning: u64, critical: u64) -> Pressure {
        if value >= critical {
            Pressure::Critical
        } else if value >= warning {
            Pressure::Warning
        } else {
            Pressure::Normal
        }
    }

    /// Level of a shrinking quantity (free space) against inclusive thresholds.
    pub fn of_free_space(free: u64, warning: u64, critical: u64) -> Pressure {
        if free <= critical {
            Pressure::Critical
        } else if free <= warning {
            Pressure::Warning
        } else {
            Pressure::Normal
        }
    }
}

/// A snapshot of the WAL's state and counters since open.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// Oldest retained record.
    pub first_lsn: Option<Lsn>,
    /// Newest appended record.
    pub last_lsn: Lsn,
    /// Newest record covered by an fdatasync.
    pub durable_lsn: Lsn,
    /// Segment files.
    pub segments: usize,
    /// Bytes of frames held in all segments (what the size thresholds compare against).
    pub wal_bytes: u64,
    /// Free bytes for unprivileged users on the WAL's filesystem, when last measured.
    pub free_bytes: Option<u64>,
    /// Current disk pressure.
    pub pressure: Pressure,
    /// Superseded keyed-record bytes that compaction would reclaim.
    pub garbage_bytes: u64,
    /// Whether an earlier write or fsync failed (every write now fails until reopen).
    pub poisoned: bool,
    /// Whether this handle was opened read-only.
    pub read_only: bool,
    /// Records appended since open.
    pub appends: u64,
    /// Frame bytes written since open.
    pub bytes_written: u64,
    /// fdatasync calls covering appended records since open.
    pub syncs: u64,
    /// Records made durable per fdatasync on average (the group-commit factor).
    pub average_group_size: f64,
    /// Compactions run since open.
    pub compactions: u64,
    /// Segment rotations since open.
    pub rotations: u64,
    /// Of those, rotations that took a segment prepared ahead of need in the background
    /// (the others zero-filled and synced a new segment under the writer lock).
    pub prepared_rotations: u64,
}

/// Report of [`Wal::prune_through`](crate::Wal::prune_through).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Segment files deleted.
    pub segments_removed: usize,
    /// Frame bytes they held.
    pub bytes_removed: u64,
    /// Oldest record retained afterwards.
    pub first_lsn: Option<Lsn>,
}

/// Report of [`Wal::compact`](crate::Wal::compact).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Sealed segments considered (the active segment is never compacted).
    pub segments_in: usize,
    /// Records in them.
    pub records_in: u64,
    /// Records kept (events, and the newest put or delete of each key).
    pub records_out: u64,
    /// Frame bytes before.
    pub bytes_in: u64,
    /// Frame bytes after.
    pub bytes_out: u64,
}

impl CompactionReport {
    /// Fraction of records removed, `1 - out / in` (0 when nothing was considered).
    pub fn ratio(&self) -> f64 {
        if self.records_in == 0 {
            0.0
        } else {
            1.0 - self.records_out as f64 / self.records_in as f64
        }
    }
}

/// Counters updated on the hot path with relaxed atomics.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) appends: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) synced_records: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) rotations: AtomicU64,
    pub(crate) prepared_rotations: AtomicU64,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Anchor scenario "evaluates disk pressure levels correctly" (thresholds 100/200).
    #[test]
    fn pressure_thresholds_are_inclusive() {
        let level = |v| Pressure::of_size(v, 100, 200);
        assert_eq!(level(50), Pressure::Normal);
        assert_eq!(level(100), Pressure::Warning);
        assert_eq!(level(150), Pressure::Warning);
        assert_eq!(level(200), Pressure::Critical);
        assert_eq!(level(300), Pressure::Critical);
        assert_eq!(Pressure::of_free_space(100, 500, 100), Pressure::Critical);
        assert_eq!(Pressure::of_free_space(400, 500, 100), Pressure::Warning);
        assert_eq!(Pressure::of_free_space(501, 500, 100), Pressure::Normal);
    }
}

/// The result of checking one segment with [`Wal::verify`](crate::Wal::verify).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SegmentCheck {
    /// The segment file.
    pub path: std::path::PathBuf,
    /// Whether the segment is sealed (open trusts its seal instead of reading its records).
    pub sealed: bool,
    /// Records read and found intact, up to the first damage.
    pub records: u64,
    /// LSN of the first intact record, if any.
    pub first_lsn: Option<Lsn>,
    /// LSN of the last intact record before any damage, if any.
    pub last_lsn: Option<Lsn>,
    /// The first damage found: its byte offset in the segment and why it was rejected.
    #[serde(skip)]
    pub damage: Option<(u64, crate::Corruption)>,
}

impl SegmentCheck {
    /// Whether every frame (and the seal, for a sealed segment) checked out.
    pub fn is_intact(&self) -> bool {
        self.damage.is_none()
    }
}
