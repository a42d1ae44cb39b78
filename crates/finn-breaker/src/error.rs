//! Errors: why a call was not admitted ([`Rejected`]), what a guarded call returns
//! ([`CallError`]), and why options or a snapshot were refused.

use std::time::Duration;

/// Why the breaker refused to admit a call. The guarded function was not called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    /// The circuit is open; the next call after `retry_in` will be admitted as a probe.
    #[error("circuit is open after {failures} consecutive failures; retry in {retry_in:?}")]
    Open {
        /// Time left until the circuit half-opens.
        retry_in: Duration,
        /// The consecutive-failure count when the circuit opened.
        failures: u32,
    },
    /// The circuit is half-open and every probe slot is taken; retry once a probe has finished.
    #[error(
        "circuit is half-open and all {probes} probe slots are in use; retry after the probe finishes"
    )]
    HalfOpenFull {
        /// The configured number of concurrent probes.
        probes: u32,
    },
}

/// The error of [`Breaker::call`](crate::Breaker::call) and friends.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The breaker did not admit the call; the function was not run.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The function ran and returned this error (already recorded with the breaker).
    #[error("guarded call failed")]
    Inner(#[source] E),
}

impl<E> CallError<E> {
    /// The function's own error, if it ran.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CallError::Inner(e) => Some(e),
            CallError::Rejected(_) => None,
        }
    }

    /// The rejection, if the function did not run.
    pub fn rejected(&self) -> Option<Rejected> {
        match self {
            CallError::Rejected(r) => Some(*r),
            CallError::Inner(_) => None,
        }
    }
}

/// Why [`Options::validate`](crate::Options::validate) refused a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// Neither trip policy is set, so the circuit could never open.
    #[error("no trip policy: set consecutive-failures or failure-window")]
    NoTripPolicy,
    /// `consecutive_failures` is `Some(0)`.
    #[error("consecutive-failures must be at least 1 (use None to disable the policy)")]
    ZeroConsecutiveFailures,
    /// `failure_window.failures` is 0.
    #[error("failure-window failures must be at least 1")]
    ZeroWindowFailures,
    /// `failure_window.window` is zero.
    #[error("failure-window window must be longer than zero")]
    ZeroWindow,
    /// `half_open_probes` is 0, so the circuit could never close.
    #[error("half-open-probes must be at least 1")]
    ZeroHalfOpenProbes,
    /// `half_open_successes` is 0.
    #[error("half-open-successes must be at least 1")]
    ZeroHalfOpenSuccesses,
}

/// Why [`Breaker::restore`](crate::Breaker::restore) refused a snapshot. The breaker is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The snapshot was written by a newer version of this crate.
    #[error(
        "snapshot version {found} is newer than the supported version {supported}; upgrade finn-breaker"
    )]
    UnsupportedVersion {
        /// The snapshot's version.
        found: u32,
        /// The highest version this crate reads.
        supported: u32,
    },
    /// An open snapshot without the time it opened.
    #[error("snapshot says the circuit is open but has no opened-at time")]
    OpenWithoutTime,
}
