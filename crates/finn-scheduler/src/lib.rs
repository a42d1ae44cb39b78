//! An async job scheduler with jitter, per-task circuit breakers, real timeouts and mutual exclusion.
//!
//! `finn-scheduler` runs the finn runtime's periodic work (object-store sync, git archive, WAL
//! pruning, health checks; see [`table`]) on tokio. Most users want the
//! [`finn`](https://docs.rs/finn) facade, which re-exports it as `finn::scheduler`.
//!
//! # Example
//! ```
//! use finn_scheduler::{GroupPolicy, RunOutcome, Scheduler, TaskError, TaskSpec};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build()?.block_on(async {
//! let scheduler = Scheduler::default();
//! scheduler.register(
//!     TaskSpec::new("object_store_sync", Duration::from_secs(30))
//!         .jitter(Duration::from_secs(5))
//!         .timeout(Duration::from_secs(600))
//!         .group("sync", GroupPolicy::Wait),
//!     |cancel| async move {
//!         // Real work goes here; `cancel` fires on timeout, cancel() and shutdown.
//!         let _ = cancel;
//!         Ok::<(), TaskError>(())
//!     },
//! )?;
//! scheduler.start()?;
//! let report = scheduler.run_now("object_store_sync").await?;
//! assert_eq!(report.outcome, RunOutcome::Succeeded);
//! let shutdown = scheduler.shutdown(Duration::from_secs(5)).await;
//! assert!(shutdown.cancelled.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What a task is
//! An id, an async handler receiving a [`CancellationToken`],
//! an interval with symmetric jitter and a floor ([`TaskSpec::min_delay`], 1 s), a per-run
//! timeout, a per-task [`finn_breaker::Breaker`], an optional mutual-exclusion group with a
//! [`GroupPolicy`], an [`OverlapPolicy`], a [`Cadence`] and an enabled flag.
//!
//! # Guarantees
//! - **No drift.** Fixed-rate runs are planned on the grid `start + k·interval` (± jitter);
//!   how long runs take and how late the runtime wakes do not move later runs.
//!   [`Cadence::FixedDelay`] opts into "interval after the previous run ended".
//! - **No burst after a pause.** Slots that passed while the process or runtime was paused run
//!   once, not once per slot; the rest are counted in [`TaskStatus::missed_ticks`].
//! - **Timeouts really cancel.** At the timeout the run's token is cancelled and then the handler
//!   future is dropped, whether or not the handler looks at the token. The run counts as timed
//!   out and as a breaker failure.
//! - **Mutual exclusion.** No two runs of tasks of one group overlap. [`GroupPolicy::Wait`] is
//!   first come, first served; [`GroupPolicy::Skip`] skips only this tick.
//! - **No overlap with itself.** A due run (scheduled or [`Scheduler::run_now`]) while the
//!   previous run is in flight is skipped or queued once, per [`OverlapPolicy`].
//! - **Control sticks.** A run in flight never reschedules a task that was unregistered or
//!   disabled meanwhile.
//! - **Breakers skip, not fail.** Ticks refused by an open breaker are counted as skipped, not as
//!   failures; after the reset timeout the next tick is the probe. Cancelled runs do not count
//!   against the breaker.
//! - **Bounded shutdown.** [`Scheduler::shutdown`] waits at most its grace period, then cancels
//!   what still runs and reports it ([`ShutdownReport`]).
//! - **Panics are contained.** A panicking handler is a failed run, not a dead scheduler.
//!
//! # What it does not do
//! - It cannot preempt a handler that blocks its thread without awaiting (a CPU loop, a
//!   blocking syscall): async cancellation happens at await points. Put blocking work in
//!   `spawn_blocking` and watch the token there; shutdown reports such runs as abandoned.
//! - It has no cron expressions, no persistence of its own schedule, and no catch-up of missed
//!   runs beyond one. Breaker state can be persisted through [`Scheduler::breaker`].
//! - Times in [`TaskStatus`] are tokio [`Instant`](tokio::time::Instant)s (monotonic, process
//!   local), not wall-clock times.
//!
//! # Health
//! [`HealthAggregator`] folds component reports into healthy / degraded / unhealthy with
//! reasons, by the anchors' rules; the scheduler reports itself through [`Scheduler::health`].
//!
//! # On-disk format
//! None.
//!
//! # Minimum supported Rust version
//! The workspace `rust-version` (1.89).

mod clock;
mod error;
mod health;
mod schedule;
mod scheduler;
mod status;
pub mod table;
mod task;

pub use error::{RegisterError, RunNowError, SpecError, StartError, UnknownTask};
pub use health::{
    CheckError, CheckFuture, ComponentHealth, DEFAULT_CHECK_TIMEOUT, Health, HealthAggregator,
    HealthCheck, HealthReport,
};
pub use scheduler::{DEFAULT_CANCEL_WAIT, Scheduler, SchedulerOptions, ShutdownReport};
pub use status::{
    RunOutcome, RunReport, SchedulerEvent, SkipReason, TaskState, TaskStatus, Trigger,
};
pub use task::{
    Cadence, DEFAULT_MIN_DELAY, DEFAULT_TIMEOUT, GroupPolicy, OverlapPolicy, TaskError, TaskId,
    TaskSpec,
};
pub use tokio_util::sync::CancellationToken;
