//! When the circuit trips and how it recovers: [`Options`], and how a call's result counts
//! ([`Outcome`], [`FailureClass`]).

use std::time::Duration;

use crate::error::OptionsError;

/// Default number of consecutive failures that opens the circuit (the anchors' `maxFailures`).
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 3;
/// Default time the circuit stays open before probing (the anchors' `resetTimeMs`, 5 min).
pub const DEFAULT_RESET_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Default number of probes admitted at once while half-open.
pub const DEFAULT_HALF_OPEN_PROBES: u32 = 1;
/// Default number of successful probes that close the circuit (the anchors' `halfOpenRetries`).
pub const DEFAULT_HALF_OPEN_SUCCESSES: u32 = 1;
/// Default upper bound on a server's Retry-After (1 h), so a bogus header cannot hold a circuit
/// open for days.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// The anchor cron breaker's rolling window: 5 failures within 1 h.
pub const ANCHOR_CRON_WINDOW: FailureWindow = FailureWindow {
    failures: 5,
    window: Duration::from_secs(60 * 60),
    clear_on_success: false,
};

/// Tunables of one breaker. Checked by [`Options::validate`] when the breaker is built.
///
/// The circuit opens when *either* trip policy fires: `consecutive_failures` failures in a row, or
/// `failure_window.failures` failures inside the rolling window. At least one must be set.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Options {
    /// Failures in a row (no success in between) that open the circuit; `None` disables this
    /// policy. Default: `Some(3)`.
    pub consecutive_failures: Option<u32>,
    /// Failures within a rolling time window that open the circuit; `None` disables this policy.
    /// Default: `None` ([`ANCHOR_CRON_WINDOW`] is the anchor cron breaker's choice).
    pub failure_window: Option<FailureWindow>,
    /// How long the circuit stays open, measured from the moment it opened, before the next call
    /// is admitted as a probe. Default: 5 min.
    #[serde(with = "duration_ms")]
    pub reset_timeout: Duration,
    /// Probes admitted at the same time while half-open; further calls are rejected with
    /// [`Rejected::HalfOpenFull`](crate::Rejected::HalfOpenFull). Default: 1.
    pub half_open_probes: u32,
    /// Successful probes needed to close the circuit; one failed probe reopens it. Default: 1.
    pub half_open_successes: u32,
    /// Upper bound applied to [`Outcome::RetryAfter`]. Default: 1 h.
    #[serde(with = "duration_ms")]
    pub max_retry_after: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            consecutive_failures: Some(DEFAULT_CONSECUTIVE_FAILURES),
            failure_window: None,
            reset_timeout: DEFAULT_RESET_TIMEOUT,
            half_open_probes: DEFAULT_HALF_OPEN_PROBES,
            half_open_successes: DEFAULT_HALF_OPEN_SUCCESSES,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

impl Options {
    /// Sets [`Options::consecutive_failures`].
    pub fn consecutive_failures(mut self, n: Option<u32>) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// Sets [`Options::failure_window`].
    pub fn failure_window(mut self, w: Option<FailureWindow>) -> Self {
        self.failure_window = w;
        self
    }

    /// Sets [`Options::reset_timeout`].
    pub fn reset_timeout(mut self, d: Duration) -> Self {
        self.reset_timeout = d;
        self
    }

    /// Sets [`Options::half_open_probes`].
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.half_open_probes = n;
        self
    }

    /// Sets [`Options::half_open_successes`].
    pub fn half_open_successes(mut self, n: u32) -> Self {
        self.half_open_successes = n;
        self
    }

    /// Sets [`Options::max_retry_after`].
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// Rejects settings under which the breaker could never open or never close.
    pub fn validate(&self) -> Result<(), OptionsError> {
        match (self.consecutive_failures, &self.failure_window) {
            (None, None) => return Err(OptionsError::NoTripPolicy),
            (Some(0), _) => return Err(OptionsError::ZeroConsecutiveFailures),
            _ => {}
        }
        if let Some(w) = &self.failure_window {
            if w.failures == 0 {
                return Err(OptionsError::ZeroWindowFailures);
            }
            if w.window.is_zero() {
                return Err(OptionsError::ZeroWindow);
            }
        }
        if self.half_open_probes == 0 {
            return Err(OptionsError::ZeroHalfOpenProbes);
        }
        if self.half_open_successes == 0 {
            return Err(OptionsError::ZeroHalfOpenSuccesses);
        }
        Ok(())
    }
}

/// "`failures` failures within `window`": the rolling-window trip policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailureWindow {
    /// Failures inside the window that open the circuit.
    pub failures: u32,
    /// Length of the rolling window; failures older than this are forgotten.
    #[serde(with = "duration_ms")]
    pub window: Duration,
    /// Whether a success while closed forgets the failures in the window (the anchor cron
    /// breaker's `resetOnSuccess`). Default: `false`, so a flapping dependency still trips.
    #[serde(default)]
    pub clear_on_success: bool,
}

impl FailureWindow {
    /// `failures` failures within `window`, not cleared by successes.
    pub const fn new(failures: u32, window: Duration) -> Self {
        FailureWindow {
            failures,
            window,
            clear_on_success: false,
        }
    }
}

/// How one call counts. Returned by the caller's classification, given to
/// [`Permit::record`](crate::Permit::record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The dependency worked. Resets the consecutive-failure count; counts as a successful probe.
    Success,
    /// The dependency failed. Counts toward the trip policies; a failed probe reopens the circuit.
    Failure,
    /// Says nothing about the dependency's health (a NotFound, a validation error of our own, a
    /// cancelled call). Changes no counter; a probe slot is simply given back.
    Ignored,
    /// The dependency asked us to back off (HTTP 429, or 403 with Retry-After). The circuit is held
    /// open for this long (capped by [`Options::max_retry_after`]), then probes as usual. It does
    /// not count as a failure. A zero duration is treated as [`Outcome::Ignored`].
    RetryAfter(Duration),
}

/// The anchor cron breaker's failure taxonomy, for callers that classify by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Temporary trouble at the dependency (HTTP 5xx, a timeout). Counts.
    Transient,
    /// The request can never succeed as sent (HTTP 422). Counts, as in the anchor.
    Permanent,
    /// An answer that is a normal result for the caller (HTTP 404). Does not count.
    Expected,
    /// Anything else (HTTP 400, 401, 418, a 403 without Retry-After). Counts.
    External,
    /// The dependency throttles us. With a Retry-After it holds the circuit open for that long;
    /// without one it counts as a failure (the anchor counted every rate-limit).
    RateLimited {
        /// The server's Retry-After, if it sent one.
        retry_after: Option<Duration>,
    },
}

impl FailureClass {
    /// The anchor's `classifyGitHubFailure`: 429 or 403 with Retry-After → rate-limited, 5xx →
    /// transient, 422 → permanent, 404 → expected, every other status → external.
    ///
    /// `retry_after` is the parsed Retry-After header. Use [`http_outcome`] if the status may
    /// also be a success.
    pub fn from_http(status: u16, retry_after: Option<Duration>) -> Self {
        match status {
            429 => FailureClass::RateLimited { retry_after },
            403 if retry_after.is_some() => FailureClass::RateLimited { retry_after },
            500..=599 => FailureClass::Transient,
            422 => FailureClass::Permanent,
            404 => FailureClass::Expected,
            _ => FailureClass::External,
        }
    }

    /// How a failure of this class counts.
    pub fn outcome(self) -> Outcome {
        match self {
            FailureClass::Transient | FailureClass::Permanent | FailureClass::External => {
                Outcome::Failure
            }
            FailureClass::Expected => Outcome::Ignored,
            FailureClass::RateLimited {
                retry_after: Some(d),
            } => Outcome::RetryAfter(d),
            FailureClass::RateLimited { retry_after: None } => Outcome::Failure,
        }
    }
}

/// How an HTTP response counts: 1xx–3xx are successes, the rest go through
/// [`FailureClass::from_http`].
///
/// ```
/// use finn_breaker::{http_outcome, Outcome};
/// use std::time::Duration;
///
/// assert_eq!(http_outcome(200, None), Outcome::Success);
/// assert_eq!(http_outcome(404, None), Outcome::Ignored);
/// assert_eq!(http_outcome(503, None), Outcome::Failure);
/// assert_eq!(http_outcome(429, Some(Duration::from_secs(30))), Outcome::RetryAfter(Duration::from_secs(30)));
/// ```
pub fn http_outcome(status: u16, retry_after: Option<Duration>) -> Outcome {
    if (100..400).contains(&status) {
        Outcome::Success
    } else {
        FailureClass::from_http(status, retry_after).outcome()
    }
}

/// Durations as whole milliseconds in serialized options, snapshots and events.
pub(crate) mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(crate::clock::duration_millis(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
