//! [`Snapshot`]: the serde-able state of a breaker, for persisting across restarts.
//!
//! The field layout is described in `docs/formats/finn-breaker.md`.

use crate::clock::Timestamp;
use crate::state::State;

/// The snapshot layout this crate writes and the newest it reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Everything a breaker needs to resume where it was: taken by
/// [`Breaker::snapshot`](crate::Breaker::snapshot), loaded by
/// [`Breaker::restore`](crate::Breaker::restore).
///
/// Probes in flight are not part of it: they died with the process, so a restored half-open
/// circuit starts with every probe slot free.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Snapshot {
    /// Layout version; [`SNAPSHOT_VERSION`] when written by this crate.
    pub version: u32,
    /// The state.
    pub state: State,
    /// Failures in a row (while closed), or the count that opened the circuit (while open).
    pub consecutive_failures: u32,
    /// Failures still inside the rolling window, oldest first (empty without that policy).
    #[serde(default)]
    pub window_failures: Vec<Timestamp>,
    /// When the circuit last opened; required when `state` is open.
    pub opened_at: Option<Timestamp>,
    /// When the open circuit half-opens (reset timeout or Retry-After hold); when absent,
    /// `opened_at` plus the restoring breaker's reset timeout is used.
    pub open_until: Option<Timestamp>,
    /// Successful probes so far while half-open.
    pub half_open_successes: u32,
    /// Probes admitted over the breaker's lifetime.
    #[serde(default)]
    pub probes: u64,
    /// When the snapshot was taken.
    pub taken_at: Timestamp,
}
