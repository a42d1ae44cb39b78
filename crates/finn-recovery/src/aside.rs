//! `recovery/aside/`: what the cascade moved out of the way, and how long it is kept.
//!
//! Every directory the cascade sets aside (a replaced state, a corrupt or diverged WAL, a clean
//! start's leftovers, staging directories next to an unreadable swap record) is named
//! `<ulid>-<what>`; everything one run sets aside shares the run's ULID and forms one *set*.
//! Sets are kept by [`AsideRetention`]: the newest `keep` sets always, and every set younger
//! than `grace` whatever their number, so an operator always has the last few replaced states
//! and at least `grace` to look at anything set aside. Older sets are deleted after a run that
//! came up; a name that does not start with a ULID is not the cascade's and is never touched.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::durable::sync_dir;
use crate::stage::StageError;

/// Default number of aside sets always kept, newest first.
pub const DEFAULT_ASIDE_KEEP: usize = 3;
/// Default age below which an aside set is never deleted (7 days: a weekend plus slack for an
/// operator to notice a degraded boot and look at what it set aside).
pub const DEFAULT_ASIDE_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long the sets in `recovery/aside/` are kept. A set is deleted only when it is neither
/// among the newest [`keep`](AsideRetention::keep) sets nor younger than
/// [`grace`](AsideRetention::grace).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AsideRetention {
    /// Sets always kept, newest first. Default: 3.
    pub keep: usize,
    /// Sets younger than this (by the time in their ULID) are kept whatever their number.
    /// Default: 7 days.
    pub grace: Duration,
}

impl Default for AsideRetention {
    fn default() -> Self {
        Self {
            keep: DEFAULT_ASIDE_KEEP,
            grace: DEFAULT_ASIDE_GRACE,
        }
    }
}

impl AsideRetention {
    /// Never delete anything (the operator prunes `recovery/aside/` by hand).
    pub fn keep_all() -> Self {
        Self {
            keep: usize::MAX,
            grace: Duration::MAX,
        }
    }
}

/// A free path `aside/<id>-<what>` (`-2`, `-3`, ... appended if a run sets aside two things
/// of the same kind).
pub(crate) fn free_name(
    io: &dyn finn_wal::fs::Io,
    aside_root: &Path,
    id: Ulid,
    what: &str,
) -> String {
    let base = format!("{id}-{what}");
    let mut name = base.clone();
    let mut n = 2;
    // An entry that cannot be checked counts as free: the rename into it then fails with the
    // real error instead of this loop running on.
    while io.exists(&aside_root.join(&name)).unwrap_or(false) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// Deletes the aside sets `retention` does not keep, never the set `current`. Returns the
/// paths deleted, oldest first.
pub(crate) fn prune(
    aside_root: &Path,
    retention: AsideRetention,
    now_ms: u64,
    current: Ulid,
) -> Result<Vec<PathBuf>, StageError> {
    let io_at = |path: &Path| {
        let path = path.to_owned();
        move |source| StageError::Io { path, source }
    };
    let entries = match fs::read_dir(aside_root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(aside_root)(e)),
    };
    let mut sets: BTreeMap<Ulid, Vec<PathBuf>> = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(io_at(aside_root))?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .and_then(|(id, _)| Ulid::from_string(id).ok())
        else {
            continue;
        };
        sets.entry(id).or_default().push(entry.path());
    }
    let grace_ms = u64::try_from(retention.grace.as_millis()).unwrap_or(u64::MAX);
    let mut deleted = Vec::new();
    // Newest first: the first `keep` survive whatever their age.
    for (id, paths) in sets.into_iter().rev().skip(retention.keep) {
        // A set stamped in the future (the clock stepped back) counts as young.
        let young = now_ms.saturating_sub(id.timestamp_ms()) < grace_ms;
        if id == current || young {
            continue;
        }
        for path in paths {
            let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
            if meta.is_dir() {
                fs::remove_dir_all(&path).map_err(io_at(&path))?;
            } else {
                fs::remove_file(&path).map_err(io_at(&path))?;
            }
            deleted.push(path);
        }
    }
    if !deleted.is_empty() {
        sync_dir(aside_root).map_err(io_at(aside_root))?;
    }
    deleted.reverse();
    Ok(deleted)
}
