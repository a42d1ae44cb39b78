//! Errors of registration and control calls.

use std::time::Duration;

use finn_breaker::Rejected;

use crate::task::TaskId;

/// Why a [`TaskSpec`](crate::TaskSpec) is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The id is empty.
    #[error("task id is empty")]
    EmptyId,
    /// The interval is zero.
    #[error("interval must be longer than zero")]
    ZeroInterval,
    /// A fixed-rate task's jitter would let runs swap order.
    #[error("jitter {jitter:?} must be shorter than the interval {interval:?}")]
    JitterNotBelowInterval {
        /// The jitter.
        jitter: Duration,
        /// The interval.
        interval: Duration,
    },
    /// The floor is above the interval, so the interval could never be kept.
    #[error("min delay {min_delay:?} exceeds the interval {interval:?}; lower min_delay")]
    MinDelayAboveInterval {
        /// The floor.
        min_delay: Duration,
        /// The interval.
        interval: Duration,
    },
    /// A zero timeout would cancel every run at once.
    #[error("timeout must be longer than zero (use no_timeout() to disable it)")]
    ZeroTimeout,
    /// The breaker options are invalid.
    #[error("invalid breaker options")]
    Breaker(#[source] finn_breaker::OptionsError),
}

/// The error of [`Scheduler::register`](crate::Scheduler::register).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// A task with this id is registered already.
    #[error("task {id} is already registered; unregister it first")]
    Duplicate {
        /// The id.
        id: TaskId,
    },
    /// The spec is invalid.
    #[error("task {id} has an invalid spec")]
    Invalid {
        /// The id.
        id: TaskId,
        /// What is wrong.
        #[source]
        reason: SpecError,
    },
    /// The scheduler has been shut down.
    #[error("scheduler is shut down")]
    ShutDown,
}

/// No task has this id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no task {id} is registered")]
pub struct UnknownTask {
    /// The id asked for.
    pub id: TaskId,
}

/// The error of [`Scheduler::start`](crate::Scheduler::start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `start` was called outside a tokio runtime.
    #[error("start() must be called inside a tokio runtime")]
    NoRuntime,
    /// The scheduler has been shut down.
    #[error("scheduler is shut down")]
    ShutDown,
}

/// Why [`Scheduler::run_now`](crate::Scheduler::run_now) did not produce a run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunNowError {
    /// No task has this id.
    #[error(transparent)]
    Unknown(#[from] UnknownTask),
    /// The task is disabled.
    #[error("task {id} is disabled")]
    Disabled {
        /// The id.
        id: TaskId,
    },
    /// A run is in progress and the task's overlap policy is [`OverlapPolicy::Skip`](crate::OverlapPolicy::Skip).
    #[error("task {id} is already running")]
    AlreadyRunning {
        /// The id.
        id: TaskId,
    },
    /// Another task of the group runs and the task's group policy is [`GroupPolicy::Skip`](crate::GroupPolicy::Skip).
    #[error("task {id} skipped: group {group} is busy")]
    GroupBusy {
        /// The id.
        id: TaskId,
        /// The group.
        group: String,
    },
    /// The task's breaker did not admit the run.
    #[error("task {id} skipped: its circuit breaker rejected the run")]
    BreakerOpen {
        /// The id.
        id: TaskId,
        /// The breaker's answer.
        #[source]
        rejected: Rejected,
    },
    /// The task was unregistered or disabled while the run was queued.
    #[error("task {id} was unregistered or disabled before its queued run started")]
    Dropped {
        /// The id.
        id: TaskId,
    },
    /// The scheduler is shutting down.
    #[error("scheduler is shut down")]
    ShutDown,
    /// `run_now` was awaited outside a tokio runtime.
    #[error("run_now() must be awaited inside a tokio runtime")]
    NoRuntime,
}
