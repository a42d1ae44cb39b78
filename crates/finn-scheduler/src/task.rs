//! What a task is: its [`TaskSpec`] (timing, limits, policies) and the handler's error type.

use std::borrow::Borrow;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use finn_breaker::Outcome;
use tokio_util::sync::CancellationToken;

use crate::error::SpecError;

/// Default floor under every planned delay (the anchors' `max(1000 ms, …)`).
pub const DEFAULT_MIN_DELAY: Duration = Duration::from_secs(1);
/// Default per-run timeout. The anchors had none, so a hung handler stalled its task forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// A task's name, unique within a [`Scheduler`](crate::Scheduler).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(Arc<str>);

impl TaskId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for TaskId {
    fn from(s: &str) -> Self {
        TaskId(s.into())
    }
}

impl From<String> for TaskId {
    fn from(s: String) -> Self {
        TaskId(s.into())
    }
}

impl Borrow<str> for TaskId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// What happens when a run is due while the previous run of the same task is still going.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OverlapPolicy {
    /// Drop the new run (counted in [`TaskStatus::skipped_overlap`](crate::TaskStatus)).
    #[default]
    Skip,
    /// Keep one run queued and start it as soon as the current one ends; further requests
    /// while one is queued join it.
    QueueOne,
}

/// What a task does when another task of its mutual-exclusion group is running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GroupPolicy {
    /// Wait for the group, first come first served. The per-run timeout starts after the wait.
    #[default]
    Wait,
    /// Skip this tick; try again at the next one (not a full interval of penalty beyond that).
    Skip,
}

/// How the next run is planned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Cadence {
    /// On a fixed grid from the start (`start + k·interval`, jittered): run length and late
    /// wake-ups do not shift later runs. Ticks missed during a pause are skipped, not replayed.
    #[default]
    FixedRate,
    /// `interval` (jittered) after the previous run ended.
    FixedDelay,
}

/// The specification of a task: everything but its handler.
///
/// ```
/// use finn_scheduler::{GroupPolicy, TaskSpec};
/// use std::time::Duration;
///
/// let spec = TaskSpec::new("object_store_sync", Duration::from_secs(30))
///     .jitter(Duration::from_secs(5))
///     .timeout(Duration::from_secs(600))
///     .group("sync", GroupPolicy::Wait);
/// # let _ = spec;
/// ```
#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub(crate) id: TaskId,
    pub(crate) interval: Duration,
    pub(crate) jitter: Duration,
    pub(crate) min_delay: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) group: Option<(Arc<str>, GroupPolicy)>,
    pub(crate) overlap: OverlapPolicy,
    pub(crate) cadence: Cadence,
    pub(crate) enabled: bool,
    pub(crate) breaker: Option<finn_breaker::Options>,
}

impl TaskSpec {
    /// A task run every `interval`, with no jitter, the [`DEFAULT_TIMEOUT`], a default breaker
    /// (3 failures, 5 min, 1 probe), no group, [`OverlapPolicy::Skip`], [`Cadence::FixedRate`],
    /// enabled.
    pub fn new(id: impl Into<TaskId>, interval: Duration) -> Self {
        TaskSpec {
            id: id.into(),
            interval,
            jitter: Duration::ZERO,
            min_delay: DEFAULT_MIN_DELAY,
            timeout: Some(DEFAULT_TIMEOUT),
            group: None,
            overlap: OverlapPolicy::Skip,
            cadence: Cadence::FixedRate,
            enabled: true,
            breaker: Some(finn_breaker::Options::default()),
        }
    }

    /// The task's id.
    pub fn id(&self) -> &TaskId {
        &self.id
    }

    /// Symmetric jitter: each run is planned uniformly within ±`jitter` of its slot. Must be
    /// shorter than the interval. Default: none.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// The smallest gap between two planned runs, whatever the jitter. Must not exceed the
    /// interval. Default: [`DEFAULT_MIN_DELAY`] (1 s).
    pub fn min_delay(mut self, floor: Duration) -> Self {
        self.min_delay = floor;
        self
    }

    /// Per-run timeout: when it expires the run's token is cancelled, the handler future is
    /// dropped, and the run counts as timed out (a breaker failure). Default: [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Lets runs take as long as they take. Only for handlers that bound themselves.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Puts the task in a mutual-exclusion group: no two runs of tasks of one group overlap.
    pub fn group(mut self, name: impl Into<Arc<str>>, policy: GroupPolicy) -> Self {
        self.group = Some((name.into(), policy));
        self
    }

    /// Sets the [`OverlapPolicy`]. Default: [`OverlapPolicy::Skip`].
    pub fn overlap(mut self, policy: OverlapPolicy) -> Self {
        self.overlap = policy;
        self
    }

    /// Sets the [`Cadence`]. Default: [`Cadence::FixedRate`].
    pub fn cadence(mut self, cadence: Cadence) -> Self {
        self.cadence = cadence;
        self
    }

    /// Registers the task enabled or disabled. Default: enabled.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets the task's breaker policy. Default: [`finn_breaker::Options::default`].
    pub fn breaker(mut self, options: finn_breaker::Options) -> Self {
        self.breaker = Some(options);
        self
    }

    /// Runs the task without a breaker.
    pub fn no_breaker(mut self) -> Self {
        self.breaker = None;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        if self.id.as_str().is_empty() {
            return Err(SpecError::EmptyId);
        }
        if self.interval.is_zero() {
            return Err(SpecError::ZeroInterval);
        }
        if self.cadence == Cadence::FixedRate && self.jitter >= self.interval {
            return Err(SpecError::JitterNotBelowInterval {
                jitter: self.jitter,
                interval: self.interval,
            });
        }
        if self.min_delay > self.interval {
            return Err(SpecError::MinDelayAboveInterval {
                min_delay: self.min_delay,
                interval: self.interval,
            });
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(SpecError::ZeroTimeout);
        }
        if let Some(options) = &self.breaker {
            options.validate().map_err(SpecError::Breaker)?;
        }
        Ok(())
    }
}

/// The error a handler returns: any error, plus how it counts for the task's breaker.
///
/// Any `std::error::Error` converts with `?` and counts as a breaker failure; use
/// [`TaskError::ignored`] or [`TaskError::retry_after`] for errors that say nothing about the
/// dependency or that carry a server's Retry-After.
pub struct TaskError {
    error: Box<dyn Error + Send + Sync>,
    outcome: Outcome,
}

impl TaskError {
    /// An error from a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        TaskError {
            error: message.to_string().into(),
            outcome: Outcome::Failure,
        }
    }

    /// Marks the error as saying nothing about the dependency ([`Outcome::Ignored`]).
    pub fn ignored(mut self) -> Self {
        self.outcome = Outcome::Ignored;
        self
    }

    /// Marks the error as a request to back off; the task's breaker is held open this long.
    pub fn retry_after(mut self, d: Duration) -> Self {
        self.outcome = Outcome::RetryAfter(d);
        self
    }

    /// Sets how the error counts.
    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// How the error counts for the breaker.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The underlying error.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.error
    }
}

impl<E: Error + Send + Sync + 'static> From<E> for TaskError {
    fn from(e: E) -> Self {
        TaskError {
            error: Box::new(e),
            outcome: Outcome::Failure,
        }
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("error", &self.error)
            .field("outcome", &self.outcome)
            .finish()
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)?;
        let mut source = self.error.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// The future a handler returns.
pub(crate) type RunFuture = Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send>>;

/// A task's body, type-erased.
pub(crate) type Handler = Arc<dyn Fn(CancellationToken) -> RunFuture + Send + Sync>;
