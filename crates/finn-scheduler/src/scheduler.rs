//! [`Scheduler`]: registration, the per-task driver, runs, control calls and shutdown.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use finn_breaker::{Breaker, Outcome, Rejected};
use futures::FutureExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Notify, OwnedMutexGuard, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::TokioClock;
use crate::error::{RegisterError, RunNowError, StartError, UnknownTask};
use crate::health::{ComponentHealth, Health};
use crate::schedule::{Plan, Timing};
use crate::status::{
    RunOutcome, RunReport, SchedulerEvent, SkipReason, TaskState, TaskStatus, Trigger,
};
use crate::task::{
    Cadence, GroupPolicy, Handler, OverlapPolicy, RunFuture, TaskError, TaskId, TaskSpec,
};

/// Default time [`Scheduler::shutdown`] waits, after cancelling what still runs at the
/// deadline, for those runs to drop their handlers.
pub const DEFAULT_CANCEL_WAIT: Duration = Duration::from_secs(1);

/// Scheduler-wide settings.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Seed for the jitter generator, for reproducible schedules in tests. Default: `None`
    /// (seeded from the OS).
    pub jitter_seed: Option<u64>,
    /// How long [`Scheduler::shutdown`] waits for cancelled runs to stop after the deadline.
    /// Default: [`DEFAULT_CANCEL_WAIT`].
    pub cancel_wait: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            jitter_seed: None,
            cancel_wait: DEFAULT_CANCEL_WAIT,
        }
    }
}

/// What [`Scheduler::shutdown`] did with the runs in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Tasks whose run finished on its own before the deadline.
    pub completed: Vec<TaskId>,
    /// Tasks whose run was still going at the deadline and was cancelled (token cancelled,
    /// handler future dropped).
    pub cancelled: Vec<TaskId>,
    /// Tasks whose run had still not stopped `cancel_wait` after cancellation: the handler
    /// blocks its thread instead of awaiting. Nothing more can be done from async code.
    pub abandoned: Vec<TaskId>,
}

/// A state-change callback for [`Scheduler::on_event`].
type EventCallback = Arc<dyn Fn(&SchedulerEvent) + Send + Sync>;
type Reply = oneshot::Sender<Result<RunReport, RunNowError>>;
type GroupLock = Arc<tokio::sync::Mutex<()>>;

/// An async task scheduler with jitter, per-task breakers, real timeouts and mutual exclusion.
///
/// Cloning gives another handle to the same scheduler. See the [crate documentation](crate).
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tasks: Vec<TaskId> = lock(&self.shared.tasks).keys().cloned().collect();
        f.debug_struct("Scheduler")
            .field("tasks", &tasks)
            .field("started", &self.is_started())
            .finish_non_exhaustive()
    }
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler::new(SchedulerOptions::default())
    }
}

struct Shared {
    tasks: Mutex<HashMap<TaskId, Arc<Task>>>,
    groups: Mutex<HashMap<Arc<str>, GroupLock>>,
    life: Mutex<Life>,
    /// Mirrors `life.drivers.is_some()`, for readers that hold a task's control lock (the lock
    /// order is life, then control, so they may not take `life`).
    started: AtomicBool,
    shut_down: AtomicBool,
    runs: TaskTracker,
    rng: Mutex<StdRng>,
    clock: TokioClock,
    listeners: Mutex<Vec<EventCallback>>,
    shutdown: tokio::sync::OnceCell<ShutdownReport>,
    options: SchedulerOptions,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: stop the drivers (runs in flight finish on their own).
        if let Some(stop) = self
            .life
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drivers
            .take()
        {
            stop.cancel();
        }
    }
}

#[derive(Default)]
struct Life {
    /// Present while started; cancelling it stops every driver.
    drivers: Option<CancellationToken>,
    /// The runtime `start` was called in; drivers of tasks registered later (possibly from a
    /// thread outside the runtime) are spawned on it.
    runtime: Option<tokio::runtime::Handle>,
}

struct Task {
    id: TaskId,
    spec: TaskSpec,
    timing: Timing,
    handler: Handler,
    breaker: Option<Arc<Breaker>>,
    group: Option<(Arc<str>, GroupPolicy, GroupLock)>,
    ctl: Mutex<Ctl>,
    wake: Notify,
}

struct Ctl {
    registered: bool,
    enabled: bool,
    plan: Plan,
    next_due: Option<Instant>,
    run: Option<InFlight>,
    queued: Option<Vec<Reply>>,
    stats: Stats,
}

struct InFlight {
    cancel: CancellationToken,
    waiting_for_group: bool,
    replies: Vec<Reply>,
}

#[derive(Default)]
struct Stats {
    last_run: Option<Instant>,
    last_success: Option<Instant>,
    last_outcome: Option<RunOutcome>,
    last_error: Option<String>,
    runs: u64,
    successes: u64,
    failures: u64,
    timeouts: u64,
    cancellations: u64,
    skipped_overlap: u64,
    skipped_group: u64,
    skipped_breaker: u64,
    missed_ticks: u64,
}

/// How a run came to an end, for [`Shared::finish`].
enum Finish {
    Ran(RunReport),
    Rejected(Rejected),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code under these locks panics except by a bug; the guarded data stays consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Scheduler {
    /// A scheduler with no tasks, not started.
    pub fn new(options: SchedulerOptions) -> Self {
        let rng = match options.jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        Scheduler {
            shared: Arc::new(Shared {
                tasks: Mutex::new(HashMap::new()),
                groups: Mutex::new(HashMap::new()),
                life: Mutex::new(Life::default()),
                started: AtomicBool::new(false),
                shut_down: AtomicBool::new(false),
                runs: TaskTracker::new(),
                rng: Mutex::new(rng),
                clock: TokioClock::new(),
                listeners: Mutex::new(Vec::new()),
                shutdown: tokio::sync::OnceCell::new(),
                options,
            }),
        }
    }

    /// Registers a task. If the scheduler is started, its first run is planned one interval
    /// (jittered) from now.
    ///
    /// The handler receives a [`CancellationToken`] that is cancelled on timeout, on
    /// [`Scheduler::cancel`] and at the shutdown deadline; the handler future is dropped at the
    /// same moment, so the token matters for work the handler spawned elsewhere.
    pub fn register<F, Fut>(&self, spec: TaskSpec, handler: F) -> Result<(), RegisterError>
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |token| -> RunFuture { Box::pin(handler(token)) });
        self.register_boxed(spec, handler)
    }

    fn register_boxed(&self, spec: TaskSpec, handler: Handler) -> Result<(), RegisterError> {
        let id = spec.id.clone();
        spec.validate().map_err(|reason| RegisterError::Invalid {
            id: id.clone(),
            reason,
        })?;
        if self.shared.shut_down.load(Ordering::SeqCst) {
            return Err(RegisterError::ShutDown);
        }
        let breaker = match &spec.breaker {
            Some(options) => {
                let weak = Arc::downgrade(&self.shared);
                let task = id.clone();
                let breaker = Breaker::builder()
                    .name(id.as_str())
                    .options(options.clone())
                    .clock(self.shared.clock)
                    .on_transition(move |t| {
                        if let Some(shared) = weak.upgrade() {
                            shared.emit(vec![SchedulerEvent::Breaker {
                                task: task.clone(),
                                transition: t.clone(),
                            }]);
                        }
                    })
                    .build()
                    .map_err(|e| RegisterError::Invalid {
                        id: id.clone(),
                        reason: crate::SpecError::Breaker(e),
                    })?;
                Some(Arc::new(breaker))
            }
            None => None,
        };
        let group = spec.group.as_ref().map(|(name, policy)| {
            let lock = Arc::clone(
                lock(&self.shared.groups)
                    .entry(Arc::clone(name))
                    .or_default(),
            );
            (Arc::clone(name), *policy, lock)
        });
        let now = Instant::now();
        let task = Arc::new(Task {
            id: id.clone(),
            timing: Timing {
                interval: spec.interval,
                jitter: spec.jitter,
                floor: spec.min_delay,
            },
            handler,
            breaker,
            group,
            ctl: Mutex::new(Ctl {
                registered: true,
                enabled: spec.enabled,
                plan: Plan::new(now),
                next_due: None,
                run: None,
                queued: None,
                stats: Stats::default(),
            }),
            wake: Notify::new(),
            spec,
        });
        let life = lock(&self.shared.life);
        {
            let mut tasks = lock(&self.shared.tasks);
            if tasks.contains_key(&id) {
                return Err(RegisterError::Duplicate { id });
            }
            tasks.insert(id.clone(), Arc::clone(&task));
        }
        if let (Some(stop), Some(runtime)) = (&life.drivers, &life.runtime) {
            self.shared.activate(&task, stop.clone(), runtime);
        }
        drop(life);
        tracing::info!(task = %id, interval = ?task.spec.interval, "task registered");
        Ok(())
    }

    /// Removes a task. A run in flight finishes (use [`Scheduler::cancel`] first to stop it) but
    /// is never rescheduled; a queued run is dropped.
    pub fn unregister(&self, id: &str) -> Result<(), UnknownTask> {
        let task = lock(&self.shared.tasks)
            .remove(id)
            .ok_or_else(|| unknown(id))?;
        let dropped = {
            let mut ctl = lock(&task.ctl);
            ctl.registered = false;
            ctl.next_due = None;
            ctl.queued.take()
        };
        for reply in dropped.into_iter().flatten() {
            let _ = reply.send(Err(RunNowError::Dropped {
                id: task.id.clone(),
            }));
        }
        task.wake.notify_one();
        tracing::info!(task = %task.id, "task unregistered");
        Ok(())
    }

    /// Starts the timers. Idempotent. Must be called inside a tokio runtime, whose handle is
    /// used for every later run.
    pub fn start(&self) -> Result<(), StartError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let mut life = lock(&self.shared.life);
        if self.shared.shut_down.load(Ordering::SeqCst) {
            return Err(StartError::ShutDown);
        }
        if life.drivers.is_some() {
            return Ok(());
        }
        let stop = CancellationToken::new();
        life.drivers = Some(stop.clone());
        life.runtime = Some(runtime.clone());
        self.shared.started.store(true, Ordering::SeqCst);
        let tasks: Vec<Arc<Task>> = lock(&self.shared.tasks).values().cloned().collect();
        for task in &tasks {
            self.shared.activate(task, stop.clone(), &runtime);
        }
        tracing::info!(tasks = tasks.len(), "scheduler started");
        Ok(())
    }

    /// Stops the timers. Idempotent. Runs in flight continue; `run_now` still works.
    pub fn stop(&self) {
        let Some(stop) = lock(&self.shared.life).drivers.take() else {
            return;
        };
        self.shared.started.store(false, Ordering::SeqCst);
        stop.cancel();
        for task in lock(&self.shared.tasks).values() {
            lock(&task.ctl).next_due = None;
        }
        tracing::info!("scheduler stopped");
    }

    /// Whether the timers are running.
    pub fn is_started(&self) -> bool {
        self.shared.started.load(Ordering::SeqCst)
    }

    /// Allows runs again and plans the next one from the task's schedule.
    pub fn enable(&self, id: &str) -> Result<(), UnknownTask> {
        let task = self.shared.task(id)?;
        {
            let started = self.is_started();
            let mut ctl = lock(&task.ctl);
            ctl.enabled = true;
            if started && ctl.next_due.is_none() {
                let now = Instant::now();
                let mut rng = lock(&self.shared.rng);
                match task.spec.cadence {
                    Cadence::FixedRate => {
                        ctl.plan.realign(&task.timing, now);
                        ctl.next_due =
                            Some(ctl.plan.next_fixed_rate(&task.timing, now, &mut *rng).at);
                    }
                    Cadence::FixedDelay if ctl.run.is_none() => {
                        ctl.next_due =
                            Some(ctl.plan.next_fixed_delay(&task.timing, now, &mut *rng));
                    }
                    Cadence::FixedDelay => {}
                }
            }
        }
        task.wake.notify_one();
        Ok(())
    }

    /// Stops future runs until [`Scheduler::enable`]. A run in flight finishes and the task
    /// stays disabled afterwards; a queued run is dropped.
    pub fn disable(&self, id: &str) -> Result<(), UnknownTask> {
        let task = self.shared.task(id)?;
        let dropped = {
            let mut ctl = lock(&task.ctl);
            ctl.enabled = false;
            ctl.next_due = None;
            ctl.queued.take()
        };
        for reply in dropped.into_iter().flatten() {
            let _ = reply.send(Err(RunNowError::Dropped {
                id: task.id.clone(),
            }));
        }
        task.wake.notify_one();
        Ok(())
    }

    /// Runs the task now and waits for the run to end. Respects the overlap policy (an
    /// [`OverlapPolicy::Skip`] task already running returns [`RunNowError::AlreadyRunning`]; a
    /// [`OverlapPolicy::QueueOne`] task waits for its queued run), the group policy and the
    /// breaker. Works whether or not the scheduler is started.
    ///
    /// # Cancel safety
    /// Dropping the future does not cancel the run; it only stops waiting for its report.
    pub async fn run_now(&self, id: &str) -> Result<RunReport, RunNowError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RunNowError::NoRuntime);
        }
        let task = self.shared.task(id)?;
        let (tx, rx) = oneshot::channel();
        let mut events = Vec::new();
        {
            let mut ctl = lock(&task.ctl);
            if !ctl.enabled {
                return Err(RunNowError::Disabled {
                    id: task.id.clone(),
                });
            }
            self.shared
                .try_start(&task, &mut ctl, Trigger::Manual, vec![tx], &mut events);
        }
        self.shared.emit(events);
        rx.await.unwrap_or(Err(RunNowError::ShutDown))
    }

    /// Cancels the task's run in flight: its token is cancelled and its handler future dropped;
    /// the run counts as cancelled, not as a breaker failure. Returns whether a run was in
    /// flight; a no-op otherwise.
    pub fn cancel(&self, id: &str) -> Result<bool, UnknownTask> {
        let task = self.shared.task(id)?;
        let ctl = lock(&task.ctl);
        Ok(match &ctl.run {
            Some(run) => {
                run.cancel.cancel();
                true
            }
            None => false,
        })
    }

    /// Whether a run of the task is in flight (running or waiting for its group).
    pub fn is_running(&self, id: &str) -> Result<bool, UnknownTask> {
        Ok(lock(&self.shared.task(id)?.ctl).run.is_some())
    }

    /// The task's breaker, to inspect, [`snapshot`](Breaker::snapshot) or
    /// [`restore`](Breaker::restore) it.
    pub fn breaker(&self, id: &str) -> Result<Option<Arc<Breaker>>, UnknownTask> {
        Ok(self.shared.task(id)?.breaker.clone())
    }

    /// The status of one task.
    pub fn status(&self, id: &str) -> Result<TaskStatus, UnknownTask> {
        Ok(self.shared.status(&*self.shared.task(id)?))
    }

    /// The status of every task, ordered by id.
    pub fn statuses(&self) -> Vec<TaskStatus> {
        let mut tasks: Vec<Arc<Task>> = lock(&self.shared.tasks).values().cloned().collect();
        tasks.sort_by(|a, b| a.id.cmp(&b.id));
        tasks.iter().map(|t| self.shared.status(t)).collect()
    }

    /// Calls `f` for every [`SchedulerEvent`], on the thread that caused it, outside the
    /// scheduler's locks. `f` should be quick (forward to a channel for slow work).
    pub fn on_event(&self, f: impl Fn(&SchedulerEvent) + Send + Sync + 'static) {
        lock(&self.shared.listeners).push(Arc::new(f));
    }

    /// The scheduler's own health, by the anchor rule: degraded while any task's breaker is open.
    pub fn health(&self) -> ComponentHealth {
        let mut health = ComponentHealth::healthy("scheduler");
        for status in self.statuses() {
            if status.breaker == Some(finn_breaker::State::Open) {
                health.health = Health::Degraded;
                health
                    .reasons
                    .push(format!("task {}: circuit breaker open", status.id));
            }
            health
                .details
                .insert(format!("task.{}", status.id), format!("{:?}", status.state));
        }
        health
    }

    /// Stops the timers, drops queued runs, waits up to `grace` for runs in flight, then cancels
    /// what still runs and reports it. Idempotent: later calls (even concurrent ones) return the
    /// first call's report. Afterwards `register`, `start` and `run_now` fail with "shut down".
    ///
    /// # Cancel safety
    /// If the returned future is dropped, shutdown stops where it was; the scheduler is already
    /// closed to new runs, and a later call resumes (but reports only what it sees).
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let shared = Arc::clone(&self.shared);
        self.shared
            .shutdown
            .get_or_init(|| shared.shutdown(grace))
            .await
            .clone()
    }
}

fn unknown(id: &str) -> UnknownTask {
    UnknownTask {
        id: TaskId::from(id),
    }
}

impl Shared {
    fn task(&self, id: &str) -> Result<Arc<Task>, UnknownTask> {
        lock(&self.tasks)
            .get(id)
            .cloned()
            .ok_or_else(|| unknown(id))
    }

    fn emit(&self, events: Vec<SchedulerEvent>) {
        if events.is_empty() {
            return;
        }
        let listeners = lock(&self.listeners).clone();
        for event in &events {
            for listener in &listeners {
                listener(event);
            }
        }
    }

    /// Plans a task's first run from now and spawns its driver.
    fn activate(
        self: &Arc<Self>,
        task: &Arc<Task>,
        stop: CancellationToken,
        runtime: &tokio::runtime::Handle,
    ) {
        let now = Instant::now();
        {
            let mut ctl = lock(&task.ctl);
            ctl.plan = Plan::new(now);
            ctl.next_due = None;
            if ctl.enabled {
                let mut rng = lock(&self.rng);
                ctl.next_due = Some(match task.spec.cadence {
                    Cadence::FixedRate => ctl.plan.next_fixed_rate(&task.timing, now, &mut *rng).at,
                    Cadence::FixedDelay => ctl.plan.next_fixed_delay(&task.timing, now, &mut *rng),
                });
            }
        }
        runtime.spawn(drive(Arc::downgrade(self), Arc::clone(task), stop));
    }

    /// A scheduled tick of `task`, planned for `due`.
    fn tick(self: &Arc<Self>, task: &Arc<Task>, due: Instant) {
        let now = Instant::now();
        let mut events = Vec::new();
        {
            let mut ctl = lock(&task.ctl);
            if !ctl.registered || ctl.next_due != Some(due) {
                return; // re-planned or removed while we slept
            }
            if !ctl.enabled {
                ctl.next_due = None;
                return;
            }
            match task.spec.cadence {
                Cadence::FixedRate => {
                    let next = ctl
                        .plan
                        .next_fixed_rate(&task.timing, now, &mut *lock(&self.rng));
                    ctl.next_due = Some(next.at);
                    ctl.stats.missed_ticks += next.missed;
                    if next.missed > 0 {
                        tracing::debug!(task = %task.id, missed = next.missed, "skipped missed ticks after a pause");
                    }
                }
                Cadence::FixedDelay => ctl.next_due = None,
            }
            self.try_start(task, &mut ctl, Trigger::Schedule, Vec::new(), &mut events);
            if task.spec.cadence == Cadence::FixedDelay
                && ctl.run.is_none()
                && ctl.next_due.is_none()
            {
                ctl.next_due = Some(ctl.plan.next_fixed_delay(
                    &task.timing,
                    now,
                    &mut *lock(&self.rng),
                ));
            }
        }
        self.emit(events);
    }

    /// Starts a run unless the overlap or group policy says otherwise. Called with the task's
    /// control lock held, so the overlap decision is atomic.
    fn try_start(
        self: &Arc<Self>,
        task: &Arc<Task>,
        ctl: &mut Ctl,
        trigger: Trigger,
        replies: Vec<Reply>,
        events: &mut Vec<SchedulerEvent>,
    ) {
        let refuse = |replies: Vec<Reply>, err: RunNowError| {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        };
        if self.shut_down.load(Ordering::SeqCst) {
            return refuse(replies, RunNowError::ShutDown);
        }
        if ctl.run.is_some() {
            match task.spec.overlap {
                OverlapPolicy::Skip => {
                    ctl.stats.skipped_overlap += 1;
                    events.push(SchedulerEvent::Skipped {
                        task: task.id.clone(),
                        reason: SkipReason::Overlap,
                    });
                    tracing::debug!(task = %task.id, "run skipped: previous run still in flight");
                    refuse(
                        replies,
                        RunNowError::AlreadyRunning {
                            id: task.id.clone(),
                        },
                    );
                }
                OverlapPolicy::QueueOne => ctl.queued.get_or_insert_with(Vec::new).extend(replies),
            }
            return;
        }
        let mut held = None;
        let mut waiting_for_group = false;
        if let Some((name, policy, group)) = &task.group {
            match policy {
                GroupPolicy::Skip => match Arc::clone(group).try_lock_owned() {
                    Ok(guard) => held = Some(guard),
                    Err(_) => {
                        ctl.stats.skipped_group += 1;
                        events.push(SchedulerEvent::Skipped {
                            task: task.id.clone(),
                            reason: SkipReason::GroupBusy,
                        });
                        tracing::debug!(task = %task.id, group = %name, "run skipped: group busy");
                        return refuse(
                            replies,
                            RunNowError::GroupBusy {
                                id: task.id.clone(),
                                group: name.to_string(),
                            },
                        );
                    }
                },
                GroupPolicy::Wait => waiting_for_group = true,
            }
        }
        let cancel = CancellationToken::new();
        ctl.run = Some(InFlight {
            cancel: cancel.clone(),
            waiting_for_group,
            replies,
        });
        self.runs.spawn(execute(
            Arc::clone(self),
            Arc::clone(task),
            trigger,
            cancel,
            held,
        ));
    }

    /// Records the end of a run (or of an attempt the breaker refused) and plans what follows.
    fn finish(self: &Arc<Self>, task: &Arc<Task>, finish: Finish) {
        let now = Instant::now();
        let mut events = Vec::new();
        {
            let mut ctl = lock(&task.ctl);
            let replies = ctl.run.take().map(|r| r.replies).unwrap_or_default();
            let result = match finish {
                Finish::Ran(report) => {
                    let stats = &mut ctl.stats;
                    stats.last_outcome = Some(report.outcome);
                    match report.outcome {
                        RunOutcome::Succeeded => {
                            stats.successes += 1;
                            stats.last_success = Some(report.finished);
                        }
                        RunOutcome::Failed | RunOutcome::Panicked => stats.failures += 1,
                        RunOutcome::TimedOut => stats.timeouts += 1,
                        RunOutcome::Cancelled => stats.cancellations += 1,
                    }
                    if report.error.is_some() {
                        stats.last_error.clone_from(&report.error);
                    }
                    events.push(SchedulerEvent::RunFinished(report.clone()));
                    Ok(report)
                }
                Finish::Rejected(rejected) => {
                    ctl.stats.skipped_breaker += 1;
                    events.push(SchedulerEvent::Skipped {
                        task: task.id.clone(),
                        reason: SkipReason::BreakerOpen,
                    });
                    tracing::debug!(task = %task.id, %rejected, "run skipped: circuit breaker");
                    Err(RunNowError::BreakerOpen {
                        id: task.id.clone(),
                        rejected,
                    })
                }
            };
            for reply in replies {
                let _ = reply.send(result.clone());
            }
            let alive = ctl.registered && ctl.enabled && !self.shut_down.load(Ordering::SeqCst);
            let started = self.started.load(Ordering::SeqCst);
            if alive
                && started
                && task.spec.cadence == Cadence::FixedDelay
                && ctl.next_due.is_none()
            {
                ctl.next_due = Some(ctl.plan.next_fixed_delay(
                    &task.timing,
                    now,
                    &mut *lock(&self.rng),
                ));
                task.wake.notify_one();
            }
            if let Some(queued) = ctl.queued.take() {
                if alive {
                    self.try_start(task, &mut ctl, Trigger::Queued, queued, &mut events);
                } else {
                    let err = if ctl.registered && ctl.enabled {
                        RunNowError::ShutDown
                    } else {
                        RunNowError::Dropped {
                            id: task.id.clone(),
                        }
                    };
                    for reply in queued {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        }
        self.emit(events);
    }

    fn status(&self, task: &Task) -> TaskStatus {
        // The breaker is read first and outside the control lock: reading it may fire a
        // transition callback, which emits an event.
        let breaker = task
            .breaker
            .as_ref()
            .map(|b| (b.state(), b.failure_count()));
        let ctl = lock(&task.ctl);
        let s = &ctl.stats;
        let state = match &ctl.run {
            Some(run) if run.waiting_for_group => TaskState::WaitingForGroup,
            Some(_) => TaskState::Running,
            None if !ctl.enabled => TaskState::Disabled,
            None if breaker.is_some_and(|(state, _)| state == finn_breaker::State::Open) => {
                TaskState::CircuitOpen
            }
            None => TaskState::Idle,
        };
        TaskStatus {
            id: task.id.clone(),
            state,
            enabled: ctl.enabled,
            interval: task.spec.interval,
            last_run: s.last_run,
            last_success: s.last_success,
            last_outcome: s.last_outcome,
            last_error: s.last_error.clone(),
            runs: s.runs,
            successes: s.successes,
            failures: s.failures,
            timeouts: s.timeouts,
            cancellations: s.cancellations,
            skipped_overlap: s.skipped_overlap,
            skipped_group: s.skipped_group,
            skipped_breaker: s.skipped_breaker,
            missed_ticks: s.missed_ticks,
            breaker: breaker.map(|(state, _)| state),
            breaker_failures: breaker.map(|(_, failures)| failures),
            next_run: ctl.next_due,
        }
    }

    async fn shutdown(self: Arc<Self>, grace: Duration) -> ShutdownReport {
        tracing::info!(?grace, "scheduler shutting down");
        self.shut_down.store(true, Ordering::SeqCst);
        if let Some(stop) = lock(&self.life).drivers.take() {
            self.started.store(false, Ordering::SeqCst);
            stop.cancel();
        }
        let tasks: Vec<Arc<Task>> = lock(&self.tasks).values().cloned().collect();
        let mut in_flight = Vec::new();
        for task in &tasks {
            let queued = {
                let mut ctl = lock(&task.ctl);
                ctl.next_due = None;
                if ctl.run.is_some() {
                    in_flight.push(task.id.clone());
                }
                ctl.queued.take()
            };
            for reply in queued.into_iter().flatten() {
                let _ = reply.send(Err(RunNowError::ShutDown));
            }
        }
        self.runs.close();
        let mut report = ShutdownReport::default();
        if tokio::time::timeout(grace, self.runs.wait()).await.is_err() {
            for task in &tasks {
                if let Some(run) = &lock(&task.ctl).run {
                    run.cancel.cancel();
                    report.cancelled.push(task.id.clone());
                }
            }
            let _ = tokio::time::timeout(self.options.cancel_wait, self.runs.wait()).await;
            for task in &tasks {
                if lock(&task.ctl).run.is_some() {
                    report.abandoned.push(task.id.clone());
                }
            }
        }
        report.completed = in_flight
            .into_iter()
            .filter(|id| !report.cancelled.contains(id))
            .collect();
        report.completed.sort();
        report.cancelled.sort();
        report.abandoned.sort();
        tracing::info!(
            cancelled = report.cancelled.len(),
            abandoned = report.abandoned.len(),
            "scheduler shutdown complete"
        );
        report
    }
}

/// One task's timer loop: sleeps until the next planned run, re-reads the plan when woken.
async fn drive(shared: Weak<Shared>, task: Arc<Task>, stop: CancellationToken) {
    loop {
        let due = {
            let ctl = lock(&task.ctl);
            if !ctl.registered {
                return;
            }
            ctl.next_due
        };
        let sleep = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = task.wake.notified() => continue,
            () = sleep => {}
        }
        let (Some(shared), Some(due)) = (shared.upgrade(), due) else {
            return;
        };
        shared.tick(&task, due);
    }
}

enum End {
    Ok,
    Err(TaskError),
    Panicked(String),
    TimedOut(Duration),
    Cancelled,
}

/// One run: wait for the group, ask the breaker, run the handler under its timeout.
async fn execute(
    shared: Arc<Shared>,
    task: Arc<Task>,
    trigger: Trigger,
    cancel: CancellationToken,
    held: Option<OwnedMutexGuard<()>>,
) {
    let guard = match (held, &task.group) {
        (Some(guard), _) => Some(guard),
        (None, Some((_, GroupPolicy::Wait, group))) => {
            // tokio's mutex is fair: waiters get the group in arrival order.
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    let now = Instant::now();
                    let report = RunReport {
                        task: task.id.clone(),
                        trigger,
                        outcome: RunOutcome::Cancelled,
                        error: Some("cancelled while waiting for the group".into()),
                        started: now,
                        finished: now,
                    };
                    return shared.finish(&task, Finish::Ran(report));
                }
                guard = Arc::clone(group).lock_owned() => Some(guard),
            }
        }
        _ => None,
    };
    let permit = match &task.breaker {
        Some(breaker) => match breaker.try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(rejected) => {
                drop(guard);
                return shared.finish(&task, Finish::Rejected(rejected));
            }
        },
        None => None,
    };
    let started = Instant::now();
    {
        let mut ctl = lock(&task.ctl);
        if let Some(run) = &mut ctl.run {
            run.waiting_for_group = false;
        }
        ctl.stats.runs += 1;
        ctl.stats.last_run = Some(started);
    }

    let mut handler = AssertUnwindSafe((task.handler)(cancel.clone()))
        .catch_unwind()
        .boxed();
    let timeout = task.spec.timeout;
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        biased;
        result = &mut handler => match result {
            Ok(Ok(())) => End::Ok,
            Ok(Err(e)) => End::Err(e),
            Err(panic) => End::Panicked(panic_message(&*panic)),
        },
        () = cancel.cancelled() => End::Cancelled,
        () = deadline => End::TimedOut(timeout.unwrap_or_default()),
    };
    let end = match end {
        // Cancel first, then drop: work the handler spawned sees the token before its future goes.
        End::TimedOut(t) => {
            cancel.cancel();
            End::TimedOut(t)
        }
        // Whatever a handler returns after its run was cancelled is its reaction to the
        // cancellation, not news about the dependency.
        _ if cancel.is_cancelled() => End::Cancelled,
        end => end,
    };
    drop(handler);
    let finished = Instant::now();

    let (outcome, breaker_outcome, error) = match end {
        End::Ok => (RunOutcome::Succeeded, Outcome::Success, None),
        End::Err(e) => (RunOutcome::Failed, e.outcome(), Some(e.to_string())),
        End::Panicked(msg) => (
            RunOutcome::Panicked,
            Outcome::Failure,
            Some(format!("handler panicked: {msg}")),
        ),
        End::TimedOut(t) => (
            RunOutcome::TimedOut,
            Outcome::Failure,
            Some(format!("timed out after {t:?}")),
        ),
        End::Cancelled => (
            RunOutcome::Cancelled,
            Outcome::Ignored,
            Some("cancelled".into()),
        ),
    };
    match outcome {
        RunOutcome::Succeeded | RunOutcome::Cancelled => {}
        RunOutcome::TimedOut => {
            tracing::warn!(task = %task.id, error = ?error, "task run timed out")
        }
        _ => tracing::error!(task = %task.id, error = ?error, "task run failed"),
    }
    if let Some(permit) = permit {
        permit.record(breaker_outcome);
    }
    drop(guard);
    let report = RunReport {
        task: task.id.clone(),
        trigger,
        outcome,
        error,
        started,
        finished,
    };
    shared.finish(&task, Finish::Ran(report));
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
