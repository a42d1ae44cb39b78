//! Tunables of a [`Loader`](crate::Loader).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::change_log::DEFAULT_MAX_ENTRIES;
use crate::validate::ValidationPolicy;

/// Default debounce: events for the document are coalesced until it has been quiet this long.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(1);
/// Upper bound of the default debouncer tick; it bounds how late a debounced reload can fire.
pub const MAX_DEFAULT_TICK: Duration = Duration::from_millis(25);
/// Default poll interval when native file events are unavailable.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default size limit of an identity document.
pub const DEFAULT_MAX_LEN: u64 = 1 << 20;
/// Default capacity of the event channel.
pub const DEFAULT_EVENT_CAPACITY: usize = 64;

/// How [`Loader::watch`](crate::Loader::watch) learns about changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WatchMode {
    /// Native events (inotify, FSEvents, ReadDirectoryChangesW, kqueue); polling if they cannot
    /// be set up, e.g. when the inotify watch limit is exhausted.
    #[default]
    Auto,
    /// Native events only; [`Loader::watch`](crate::Loader::watch) fails if they are unavailable.
    Native,
    /// Stat-and-compare polling only (network file systems, containers without inotify). Each
    /// scan reads every file in the document's directory to compare contents (mtime alone misses
    /// rewrites within a coarse timestamp granularity), so keep large files elsewhere.
    Poll,
}

/// Options of a [`Loader`](crate::Loader).
///
/// ```
/// use std::time::Duration;
/// let options = finn_identity::Options {
///     debounce: Duration::from_millis(200),
///     notes_path: Some("grimoires/loa/NOTES.md".into()),
///     ..Default::default()
/// };
/// # let _ = options;
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    /// Which validation issues reject a document. Default: [`ValidationPolicy::default`].
    pub policy: ValidationPolicy,
    /// Documents larger than this are rejected without being parsed. Default: 1 MiB.
    pub max_len: u64,
    /// The notes file that receives a change-log entry whenever a document with new content
    /// becomes active. Default: `None` (no change log).
    pub notes_path: Option<PathBuf>,
    /// Change-log entries kept in the notes file; older ones are dropped. Default: 50.
    pub change_log_max_entries: usize,
    /// Quiet time after the last file event before reloading. Default: 1 s.
    pub debounce: Duration,
    /// How often the debouncer checks for expired events; a reload fires at most one tick after
    /// the debounce expires. Default: `None`, meaning a quarter of `debounce`, at most 25 ms.
    pub tick: Option<Duration>,
    /// Native events, polling, or native with polling fallback. Default: [`WatchMode::Auto`].
    pub watch_mode: WatchMode,
    /// How often the polling backend scans the directory. Default: 1 s.
    pub poll_interval: Duration,
    /// Capacity of the [`Event`](crate::Event) channel; a receiver that falls further behind gets
    /// `Lagged(n)` (the count of missed events) and [`Health`](crate::Health) still holds the
    /// latest error and the totals. Default: 64.
    pub event_capacity: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            policy: ValidationPolicy::default(),
            max_len: DEFAULT_MAX_LEN,
            notes_path: None,
            change_log_max_entries: DEFAULT_MAX_ENTRIES,
            debounce: DEFAULT_DEBOUNCE,
            tick: None,
            watch_mode: WatchMode::Auto,
            poll_interval: DEFAULT_POLL_INTERVAL,
            event_capacity: DEFAULT_EVENT_CAPACITY,
        }
    }
}

impl Options {
    /// The debounce actually used: at least 1 ms, so the debouncer never spins.
    pub(crate) fn effective_debounce(&self) -> Duration {
        self.debounce.max(Duration::from_millis(1))
    }

    /// The tick actually used: between 1 ms and the debounce.
    pub(crate) fn effective_tick(&self) -> Duration {
        let debounce = self.effective_debounce();
        self.tick
            .unwrap_or_else(|| (debounce / 4).min(MAX_DEFAULT_TICK))
            .clamp(Duration::from_millis(1), debounce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_bounded_by_debounce_and_never_zero() {
        let mut o = Options::default();
        assert_eq!(o.effective_tick(), MAX_DEFAULT_TICK);
        o.debounce = Duration::from_millis(40);
        assert_eq!(o.effective_tick(), Duration::from_millis(10));
        o.debounce = Duration::ZERO;
        assert_eq!(o.effective_debounce(), Duration::from_millis(1));
        assert_eq!(o.effective_tick(), Duration::from_millis(1));
        o.tick = Some(Duration::from_secs(5));
        assert_eq!(o.effective_tick(), Duration::from_millis(1));
    }
}
