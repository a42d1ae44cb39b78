//! What the scheduler reports: per-task [`TaskStatus`], per-run [`RunReport`], and the
//! [`SchedulerEvent`] stream.

use std::time::Duration;

use tokio::time::Instant;

use crate::task::TaskId;

/// Where a task is right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Waiting for its next run (or for `start`).
    Idle,
    /// A run is waiting for the task's mutual-exclusion group.
    WaitingForGroup,
    /// A run is executing.
    Running,
    /// Disabled; no runs start until it is enabled.
    Disabled,
    /// The task's breaker is open; ticks are skipped until it half-opens.
    CircuitOpen,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunOutcome {
    /// The handler returned `Ok`.
    Succeeded,
    /// The handler returned `Err`.
    Failed,
    /// The handler panicked; the panic was caught and counted as a failure.
    Panicked,
    /// The per-run timeout expired: the token was cancelled and the handler future dropped.
    TimedOut,
    /// [`Scheduler::cancel`](crate::Scheduler::cancel) or a shutdown deadline stopped the run;
    /// not counted against the breaker.
    Cancelled,
}

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The task's schedule.
    Schedule,
    /// [`Scheduler::run_now`](crate::Scheduler::run_now).
    Manual,
    /// A run queued by [`OverlapPolicy::QueueOne`](crate::OverlapPolicy::QueueOne).
    Queued,
}

/// One finished run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    /// The task.
    pub task: TaskId,
    /// What started it.
    pub trigger: Trigger,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The handler's error (or panic message, or timeout), rendered with its causes.
    pub error: Option<String>,
    /// When the handler started (after any wait for the group).
    pub started: Instant,
    /// When the run ended.
    pub finished: Instant,
}

/// Why a due run did not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The previous run was still going ([`OverlapPolicy::Skip`](crate::OverlapPolicy::Skip)).
    Overlap,
    /// Another task of the group was running ([`GroupPolicy::Skip`](crate::GroupPolicy::Skip)).
    GroupBusy,
    /// The task's breaker rejected the run.
    BreakerOpen,
}

/// Something the scheduler did, delivered to [`Scheduler::on_event`](crate::Scheduler::on_event)
/// callbacks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchedulerEvent {
    /// A run finished.
    RunFinished(RunReport),
    /// A due run was skipped.
    Skipped {
        /// The task.
        task: TaskId,
        /// Why.
        reason: SkipReason,
    },
    /// A task's breaker changed state (the finn runtime records these in its WAL).
    Breaker {
        /// The task.
        task: TaskId,
        /// The transition.
        transition: finn_breaker::Transition,
    },
}

/// A snapshot of one task, from [`Scheduler::status`](crate::Scheduler::status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskStatus {
    /// The task.
    pub id: TaskId,
    /// Where it is now.
    pub state: TaskState,
    /// Whether it is enabled.
    pub enabled: bool,
    /// The interval.
    pub interval: Duration,
    /// When the last run's handler started.
    pub last_run: Option<Instant>,
    /// When the last successful run finished.
    pub last_success: Option<Instant>,
    /// How the last run ended.
    pub last_outcome: Option<RunOutcome>,
    /// The error of the last run that did not succeed.
    pub last_error: Option<String>,
    /// Runs whose handler started.
    pub runs: u64,
    /// Runs that succeeded.
    pub successes: u64,
    /// Runs that failed or panicked.
    pub failures: u64,
    /// Runs that timed out.
    pub timeouts: u64,
    /// Runs that were cancelled.
    pub cancellations: u64,
    /// Due runs skipped because the previous run was still going.
    pub skipped_overlap: u64,
    /// Due runs skipped because the group was busy.
    pub skipped_group: u64,
    /// Due runs skipped because the breaker was open.
    pub skipped_breaker: u64,
    /// Schedule slots that passed while the process or runtime was paused (skipped, not replayed).
    pub missed_ticks: u64,
    /// The breaker's state, if the task has one.
    pub breaker: Option<finn_breaker::State>,
    /// The breaker's failure count, if the task has one.
    pub breaker_failures: Option<u32>,
    /// When the next scheduled run is due; `None` while stopped, disabled, or (fixed delay) running.
    pub next_run: Option<Instant>,
}
