//! The finn runtime's default task table, as constants the facade uses.
//!
//! The intervals and jitters are the anchor runtime's (`r2_sync`, `git_sync`, `wal_prune`,
//! `health`). Two things are finn's own: every task has a timeout (the anchors had none, so a
//! hung sync stalled forever), and WAL pruning joins the object-store sync and the git archive in
//! one mutual-exclusion group, so a prune never compacts segments a sync is reading (anchor
//! weakness: no exclusion between the three).

use std::time::Duration;

use crate::task::{GroupPolicy, TaskSpec};

/// The mutual-exclusion group of the tasks that read or rewrite the WAL and the archive.
pub const SYNC_GROUP: &str = "sync";

/// One row of the default task table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskDefaults {
    /// Task id.
    pub id: &'static str,
    /// Interval between runs.
    pub interval: Duration,
    /// Symmetric jitter.
    pub jitter: Duration,
    /// Per-run timeout.
    pub timeout: Duration,
    /// Mutual-exclusion group, waited for in FIFO order.
    pub group: Option<&'static str>,
}

impl TaskDefaults {
    /// The spec for this row; everything not in the row keeps the [`TaskSpec::new`] default.
    pub fn spec(&self) -> TaskSpec {
        let spec = TaskSpec::new(self.id, self.interval)
            .jitter(self.jitter)
            .timeout(self.timeout);
        match self.group {
            Some(group) => spec.group(group, GroupPolicy::Wait),
            None => spec,
        }
    }
}

/// Upload new WAL segments and the checkpoint to the object store: 30 s ± 5 s.
pub const OBJECT_STORE_SYNC: TaskDefaults = TaskDefaults {
    id: "object_store_sync",
    interval: Duration::from_secs(30),
    jitter: Duration::from_secs(5),
    timeout: Duration::from_secs(10 * 60),
    group: Some(SYNC_GROUP),
};

/// Snapshot and push the git archive: 1 h ± 5 min.
pub const GIT_ARCHIVE: TaskDefaults = TaskDefaults {
    id: "git_archive",
    interval: Duration::from_secs(60 * 60),
    jitter: Duration::from_secs(5 * 60),
    timeout: Duration::from_secs(30 * 60),
    group: Some(SYNC_GROUP),
};

/// Prune WAL segments already safe in the object store: 1 h ± 5 min.
pub const WAL_PRUNE: TaskDefaults = TaskDefaults {
    id: "wal_prune",
    interval: Duration::from_secs(60 * 60),
    jitter: Duration::from_secs(5 * 60),
    timeout: Duration::from_secs(10 * 60),
    group: Some(SYNC_GROUP),
};

/// Collect component health: 5 min ± 30 s.
pub const HEALTH_CHECK: TaskDefaults = TaskDefaults {
    id: "health",
    interval: Duration::from_secs(5 * 60),
    jitter: Duration::from_secs(30),
    timeout: Duration::from_secs(30),
    group: None,
};

/// Ship newly written WAL records to the object store: every 1 s, no jitter. finn's own (the
/// anchors shipped only with the 30 s sync, so up to 30 s of writes were local-only); the
/// interval is the recovery point objective while the store is healthy.
pub const WAL_SHIP: TaskDefaults = TaskDefaults {
    id: "wal_ship",
    interval: Duration::from_secs(1),
    jitter: Duration::ZERO,
    timeout: Duration::from_secs(60),
    group: Some(SYNC_GROUP),
};

/// The anchors' table (finn adds [`WAL_SHIP`]).
pub const DEFAULT_TASKS: [TaskDefaults; 4] =
    [OBJECT_STORE_SYNC, GIT_ARCHIVE, WAL_PRUNE, HEALTH_CHECK];
