//! [`Breaker`]: the state machine, its lock-free closed path, and its [`Builder`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::{CallError, OptionsError, Rejected, RestoreError};
use crate::events::{Callback, Dispatcher};
use crate::permit::{OwnedPermit, Permit, Ticket};
use crate::policy::{Options, Outcome};
use crate::snapshot::{SNAPSHOT_VERSION, Snapshot};
use crate::state::{Reason, State, Transition};

/// A circuit breaker: closed, open or half-open, with lazy, clock-driven transitions.
///
/// Share it between threads with an [`Arc`]. See the [crate documentation](crate) for the state
/// machine and its guarantees.
pub struct Breaker {
    /// `generation << 2 | state`. The generation grows with every transition, so an outcome from
    /// a call admitted under an earlier state can be recognised and ignored.
    word: AtomicU64,
    /// Failures in a row while closed; while open, the count that opened the circuit.
    consecutive: AtomicU32,
    /// While open: the millisecond timestamp from which the next call is a probe.
    open_until: AtomicU64,
    /// Probes admitted over the breaker's lifetime.
    probes: AtomicU64,
    inner: Mutex<Inner>,
    options: Options,
    clock: Arc<dyn Clock>,
    name: Option<String>,
    events: Dispatcher,
}

/// State that only changes on the slow paths (failures, transitions, probes).
#[derive(Default)]
struct Inner {
    opened_at: Option<Timestamp>,
    window: VecDeque<Timestamp>,
    probes_in_flight: u32,
    half_open_successes: u32,
    pending: VecDeque<Transition>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.word.load(Ordering::Relaxed);
        f.debug_struct("Breaker")
            .field("name", &self.name)
            .field("state", &State::from_code(w))
            .field("generation", &(w >> 2))
            .field(
                "consecutive_failures",
                &self.consecutive.load(Ordering::Relaxed),
            )
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Default for Breaker {
    /// A breaker with [`Options::default`] (3 failures, 5 min, 1 probe) and the [`SystemClock`].
    fn default() -> Self {
        Breaker::from_parts(Options::default(), Arc::new(SystemClock), None)
    }
}

/// Builds a [`Breaker`]; validation happens in [`Builder::build`].
#[must_use = "a builder does nothing until build() is called"]
pub struct Builder {
    options: Options,
    clock: Arc<dyn Clock>,
    name: Option<String>,
    callbacks: Vec<Callback>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("options", &self.options)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Sets the policy. Default: [`Options::default`].
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Sets the clock. Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Names the breaker; the name is copied into every [`Transition`]. Default: none.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a state-change callback (see [`Breaker::on_transition`]).
    pub fn on_transition(mut self, f: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.callbacks.push(Arc::new(f));
        self
    }

    /// Validates the options and builds the breaker, closed.
    pub fn build(self) -> Result<Breaker, OptionsError> {
        self.options.validate()?;
        let breaker = Breaker::from_parts(self.options, self.clock, self.name);
        for cb in self.callbacks {
            breaker.events.add_callback(cb);
        }
        Ok(breaker)
    }
}

impl Breaker {
    /// A closed breaker with these options and the [`SystemClock`].
    pub fn new(options: Options) -> Result<Breaker, OptionsError> {
        Breaker::builder().options(options).build()
    }

    /// A builder, for a name, a clock or callbacks.
    pub fn builder() -> Builder {
        Builder {
            options: Options::default(),
            clock: Arc::new(SystemClock),
            name: None,
            callbacks: Vec::new(),
        }
    }

    fn from_parts(options: Options, clock: Arc<dyn Clock>, name: Option<String>) -> Breaker {
        Breaker {
            word: AtomicU64::new(State::Closed.code()),
            consecutive: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
            options,
            clock,
            name,
            events: Dispatcher::default(),
        }
    }

    /// The breaker's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The options it was built with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The current state. An open circuit whose timeout has run out becomes half-open here
    /// (transitions are lazy: they happen when someone looks).
    pub fn state(&self) -> State {
        let w = self.word.load(Ordering::Acquire);
        match State::from_code(w) {
            State::Open
                if self.clock.now().as_millis() >= self.open_until.load(Ordering::Acquire) =>
            {
                let state = {
                    let mut inner = self.lock();
                    let now = self.clock.now();
                    self.half_open_if_due(&mut inner, now);
                    State::from_code(self.word.load(Ordering::Acquire))
                };
                self.deliver();
                state
            }
            s => s,
        }
    }

    /// Failures in a row while closed; while open or half-open, the count that opened the circuit
    /// plus failed probes.
    pub fn failure_count(&self) -> u32 {
        self.consecutive.load(Ordering::Acquire)
    }

    /// Probes admitted since the breaker was built (or restored).
    pub fn probe_count(&self) -> u64 {
        self.probes.load(Ordering::Acquire)
    }

    /// Asks to make one call. On success the returned [`Permit`] must be given the call's
    /// [`Outcome`]; dropping it unrecorded counts as [`Outcome::Ignored`] (or
    /// [`Outcome::Failure`] while panicking).
    ///
    /// While closed this is a single atomic load.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        self.acquire().map(|ticket| Permit::new(self, ticket))
    }

    /// [`Breaker::try_acquire`] for a permit that must outlive the borrow (a spawned task).
    pub fn try_acquire_owned(self: &Arc<Self>) -> Result<OwnedPermit, Rejected> {
        self.acquire()
            .map(|ticket| OwnedPermit::new(Arc::clone(self), ticket))
    }

    /// Runs `f` if the circuit admits it; every `Err` counts as a failure.
    ///
    /// ```
    /// let breaker = finn_breaker::Breaker::default();
    /// let v: Result<i32, finn_breaker::CallError<std::io::Error>> = breaker.call(|| Ok(42));
    /// assert_eq!(v.unwrap(), 42);
    /// ```
    #[inline]
    pub fn call<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, CallError<E>> {
        self.call_with(|_| Outcome::Failure, f)
    }

    /// Runs `f` if the circuit admits it; `classify` says how an `Err` counts.
    #[inline]
    pub fn call_with<T, E>(
        &self,
        classify: impl FnOnce(&E) -> Outcome,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, CallError<E>> {
        let permit = self.try_acquire()?;
        match f() {
            Ok(v) => {
                permit.record(Outcome::Success);
                Ok(v)
            }
            Err(e) => {
                permit.record(classify(&e));
                Err(CallError::Inner(e))
            }
        }
    }

    /// Awaits `fut` if the circuit admits it; every `Err` counts as a failure.
    ///
    /// # Cancel safety
    /// Dropping the returned future before it completes records nothing and frees the probe
    /// slot it may hold ([`Outcome::Ignored`]).
    pub async fn call_async<T, E, F>(&self, fut: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_async_with(|_| Outcome::Failure, fut).await
    }

    /// Awaits `fut` if the circuit admits it; `classify` says how an `Err` counts.
    ///
    /// # Cancel safety
    /// As [`Breaker::call_async`].
    pub async fn call_async_with<T, E, F>(
        &self,
        classify: impl FnOnce(&E) -> Outcome,
        fut: F,
    ) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire()?;
        match fut.await {
            Ok(v) => {
                permit.record(Outcome::Success);
                Ok(v)
            }
            Err(e) => {
                permit.record(classify(&e));
                Err(CallError::Inner(e))
            }
        }
    }

    /// Forces the circuit closed and clears every counter (the anchors' `reset()`).
    pub fn reset(&self) {
        {
            let mut inner = self.lock();
            let now = self.clock.now();
            if self.current() == State::Closed {
                self.consecutive.store(0, Ordering::Release);
                inner.window.clear();
            } else {
                self.transition(&mut inner, State::Closed, now, Reason::ManualReset, None);
            }
        }
        self.deliver();
    }

    /// Forces the circuit open for one reset timeout from now (for an operator, or a caller
    /// that learned out of band that the dependency is down).
    pub fn trip(&self) {
        {
            let mut inner = self.lock();
            let now = self.clock.now();
            let until = now.saturating_add(self.options.reset_timeout);
            if self.current() == State::Open {
                inner.opened_at = Some(now);
                self.open_until.store(until.as_millis(), Ordering::Release);
            } else {
                self.transition(
                    &mut inner,
                    State::Open,
                    now,
                    Reason::ManualTrip,
                    Some(until),
                );
            }
        }
        self.deliver();
    }

    /// Calls `f` after every state change, in order, outside the breaker's lock (so `f` may use
    /// the breaker). `f` runs on the thread that caused the change and should be quick; a
    /// panic in `f` propagates to that caller.
    pub fn on_transition(&self, f: impl Fn(&Transition) + Send + Sync + 'static) {
        self.events.add_callback(Arc::new(f));
    }

    /// A channel that receives every later state change, in order. Dropping the receiver
    /// unsubscribes.
    pub fn subscribe(&self) -> mpsc::Receiver<Transition> {
        self.events.subscribe()
    }

    /// The state, for persisting; see [`Snapshot`].
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let state = self.current();
        let open = state == State::Open;
        Snapshot {
            version: SNAPSHOT_VERSION,
            state,
            consecutive_failures: self.consecutive.load(Ordering::Acquire),
            window_failures: inner.window.iter().copied().collect(),
            opened_at: inner.opened_at,
            open_until: open
                .then(|| Timestamp::from_millis(self.open_until.load(Ordering::Acquire))),
            half_open_successes: if state == State::HalfOpen {
                inner.half_open_successes
            } else {
                0
            },
            probes: self.probes.load(Ordering::Acquire),
            taken_at: self.clock.now(),
        }
    }

    /// Loads a [`Snapshot`], replacing the current state. Emits a [`Reason::Restored`] transition
    /// if the state differs.
    ///
    /// Timestamps later than this breaker's clock (the wall clock went backwards between
    /// processes) are pulled back to now, so a restored circuit stays open at most one reset
    /// timeout (or capped Retry-After hold) longer than planned. Failures outside the rolling
    /// window are dropped; probes that were in flight are forgotten.
    pub fn restore(&self, snapshot: &Snapshot) -> Result<(), RestoreError> {
        if snapshot.version > SNAPSHOT_VERSION {
            return Err(RestoreError::UnsupportedVersion {
                found: snapshot.version,
                supported: SNAPSHOT_VERSION,
            });
        }
        if snapshot.state == State::Open && snapshot.opened_at.is_none() {
            return Err(RestoreError::OpenWithoutTime);
        }
        {
            let mut inner = self.lock();
            let now = self.clock.now();
            let old = self.word.load(Ordering::Acquire);
            let from = State::from_code(old);
            let generation = (old >> 2) + 1;

            let opened_at = snapshot.opened_at.map(|t| t.min(now));
            let longest = self.options.reset_timeout.max(self.options.max_retry_after);
            let open_until = match (snapshot.opened_at, snapshot.open_until) {
                (Some(raw_opened), Some(until)) => {
                    let span = until.saturating_duration_since(raw_opened).min(longest);
                    opened_at.map(|o| o.saturating_add(span))
                }
                (Some(_), None) => opened_at.map(|o| o.saturating_add(self.options.reset_timeout)),
                (None, _) => None,
            };
            inner.opened_at = opened_at;
            inner.window = match self.options.failure_window {
                Some(w) => snapshot
                    .window_failures
                    .iter()
                    .map(|t| (*t).min(now))
                    .filter(|t| now.saturating_duration_since(*t) < w.window)
                    .collect(),
                None => VecDeque::new(),
            };
            inner.probes_in_flight = 0;
            inner.half_open_successes = if snapshot.state == State::HalfOpen {
                snapshot.half_open_successes
            } else {
                0
            };
            self.consecutive
                .store(snapshot.consecutive_failures, Ordering::Release);
            self.open_until.store(
                open_until.map_or(0, Timestamp::as_millis),
                Ordering::Release,
            );
            self.probes.store(snapshot.probes, Ordering::Release);
            self.word
                .store(generation << 2 | snapshot.state.code(), Ordering::Release);
            if from != snapshot.state {
                inner.pending.push_back(Transition {
                    name: self.name.clone(),
                    from,
                    to: snapshot.state,
                    reason: Reason::Restored,
                    at: now,
                    generation,
                });
                self.events.mark_pending();
            }
        }
        self.deliver();
        Ok(())
    }

    // ----- internals -------------------------------------------------------------------------

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing under this lock calls user code, so a poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> State {
        State::from_code(self.word.load(Ordering::Acquire))
    }

    fn deliver(&self) {
        self.events
            .deliver(|| std::mem::take(&mut self.lock().pending));
    }

    #[inline]
    fn acquire(&self) -> Result<Ticket, Rejected> {
        let word = self.word.load(Ordering::Acquire);
        if State::from_code(word) == State::Closed {
            return Ok(Ticket { word, probe: false });
        }
        self.acquire_slow(word)
    }

    #[cold]
    fn acquire_slow(&self, word: u64) -> Result<Ticket, Rejected> {
        let now = self.clock.now();
        if State::from_code(word) == State::Open
            && let Some(rejected) = self.open_rejection(now)
        {
            return Err(rejected);
        }
        let result = {
            let mut inner = self.lock();
            self.half_open_if_due(&mut inner, now);
            let word = self.word.load(Ordering::Acquire);
            match State::from_code(word) {
                State::Closed => Ok(Ticket { word, probe: false }),
                State::Open => Err(self.open_rejection(now).unwrap_or(Rejected::Open {
                    retry_in: Duration::ZERO,
                    failures: self.consecutive.load(Ordering::Acquire),
                })),
                State::HalfOpen if inner.probes_in_flight < self.options.half_open_probes => {
                    inner.probes_in_flight += 1;
                    self.probes.fetch_add(1, Ordering::AcqRel);
                    Ok(Ticket { word, probe: true })
                }
                State::HalfOpen => Err(Rejected::HalfOpenFull {
                    probes: self.options.half_open_probes,
                }),
            }
        };
        self.deliver();
        result
    }

    /// The rejection for an open circuit at `now`, or `None` if its time is up.
    fn open_rejection(&self, now: Timestamp) -> Option<Rejected> {
        let until = Timestamp::from_millis(self.open_until.load(Ordering::Acquire));
        (now < until).then(|| Rejected::Open {
            retry_in: until.saturating_duration_since(now),
            failures: self.consecutive.load(Ordering::Acquire),
        })
    }

    fn half_open_if_due(&self, inner: &mut Inner, now: Timestamp) {
        if self.current() == State::Open
            && now.as_millis() >= self.open_until.load(Ordering::Acquire)
        {
            self.transition(
                inner,
                State::HalfOpen,
                now,
                Reason::ResetTimeoutElapsed,
                None,
            );
        }
    }

    /// Records the outcome of an admitted call.
    #[inline]
    pub(crate) fn settle(&self, ticket: Ticket, outcome: Outcome) {
        // The closed success path: with no failures to forget, one relaxed load and no write, so
        // threads succeeding in parallel never contend on a cache line.
        if !ticket.probe
            && outcome == Outcome::Success
            && self.consecutive.load(Ordering::Relaxed) == 0
        {
            return;
        }
        self.settle_slow(ticket, outcome);
    }

    #[cold]
    fn settle_slow(&self, ticket: Ticket, outcome: Outcome) {
        let outcome = match outcome {
            Outcome::RetryAfter(d) if d.is_zero() => Outcome::Ignored,
            o => o,
        };
        if ticket.probe {
            self.settle_probe(ticket, outcome);
        } else {
            match outcome {
                Outcome::Success => self.closed_success(ticket.word),
                Outcome::Failure => self.closed_failure(ticket.word),
                Outcome::Ignored => return,
                Outcome::RetryAfter(d) => {
                    let now = self.clock.now();
                    let mut inner = self.lock();
                    self.hold_open(&mut inner, now, d);
                }
            }
        }
        self.deliver();
    }

    fn closed_success(&self, word: u64) {
        if self.word.load(Ordering::Acquire) != word {
            return; // admitted before a transition; says nothing about the current state
        }
        match self.options.failure_window {
            Some(w) if w.clear_on_success => {
                let mut inner = self.lock();
                if self.word.load(Ordering::Acquire) == word {
                    self.consecutive.store(0, Ordering::Release);
                    inner.window.clear();
                }
            }
            _ => self.consecutive.store(0, Ordering::Release),
        }
    }

    fn closed_failure(&self, word: u64) {
        if self.word.load(Ordering::Acquire) != word {
            // A late failure of a call admitted before the circuit opened: the reset timeout runs
            // from the moment of opening and is not restarted (the anchor restarted it).
            return;
        }
        let count = self
            .consecutive
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_add(1))
            })
            .map_or(u32::MAX, |c| c.saturating_add(1));
        let consecutive_trip = self
            .options
            .consecutive_failures
            .is_some_and(|t| count >= t);
        if !consecutive_trip && self.options.failure_window.is_none() {
            return;
        }
        let now = self.clock.now();
        let mut inner = self.lock();
        if self.word.load(Ordering::Acquire) != word {
            return;
        }
        let mut reason = None;
        if let Some(w) = self.options.failure_window {
            inner.window.push_back(now);
            while inner
                .window
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= w.window)
            {
                inner.window.pop_front();
            }
            let in_window = u32::try_from(inner.window.len()).unwrap_or(u32::MAX);
            if in_window >= w.failures {
                reason = Some(Reason::FailureWindow { count: in_window });
            }
        }
        if consecutive_trip {
            reason = Some(Reason::ConsecutiveFailures { count });
        }
        if let Some(reason) = reason {
            let until = now.saturating_add(self.options.reset_timeout);
            self.transition(&mut inner, State::Open, now, reason, Some(until));
        }
    }

    fn settle_probe(&self, ticket: Ticket, outcome: Outcome) {
        let now = self.clock.now();
        let mut inner = self.lock();
        if self.word.load(Ordering::Acquire) != ticket.word {
            // The circuit moved on (another probe failed, a reset, a restore); the slot counter
            // was reset with it. A Retry-After is still news about the dependency.
            if let Outcome::RetryAfter(d) = outcome {
                self.hold_open(&mut inner, now, d);
            }
            return;
        }
        inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        match outcome {
            Outcome::Success => {
                inner.half_open_successes += 1;
                if inner.half_open_successes >= self.options.half_open_successes {
                    let count = inner.half_open_successes;
                    self.transition(
                        &mut inner,
                        State::Closed,
                        now,
                        Reason::ProbesSucceeded { count },
                        None,
                    );
                }
            }
            Outcome::Failure => {
                let _ = self
                    .consecutive
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                        Some(c.saturating_add(1))
                    });
                let until = now.saturating_add(self.options.reset_timeout);
                self.transition(
                    &mut inner,
                    State::Open,
                    now,
                    Reason::ProbeFailed,
                    Some(until),
                );
            }
            Outcome::Ignored => {}
            Outcome::RetryAfter(d) => self.hold_open(&mut inner, now, d),
        }
    }

    /// Opens the circuit (or extends an open one) until `now + hold`, capped.
    fn hold_open(&self, inner: &mut Inner, now: Timestamp, hold: Duration) {
        let hold = hold.min(self.options.max_retry_after);
        let until = now.saturating_add(hold);
        if self.current() == State::Open {
            if until.as_millis() > self.open_until.load(Ordering::Acquire) {
                self.open_until.store(until.as_millis(), Ordering::Release);
            }
        } else {
            self.transition(
                inner,
                State::Open,
                now,
                Reason::RetryAfter { hold },
                Some(until),
            );
        }
    }

    /// The one place the state changes. Called with the state lock held.
    fn transition(
        &self,
        inner: &mut Inner,
        to: State,
        now: Timestamp,
        reason: Reason,
        open_until: Option<Timestamp>,
    ) {
        let old = self.word.load(Ordering::Acquire);
        let from = State::from_code(old);
        let generation = (old >> 2) + 1;
        inner.probes_in_flight = 0;
        inner.half_open_successes = 0;
        match to {
            State::Closed => {
                self.consecutive.store(0, Ordering::Release);
                inner.window.clear();
                inner.opened_at = None;
            }
            State::Open => {
                inner.opened_at = Some(now);
                let until =
                    open_until.unwrap_or_else(|| now.saturating_add(self.options.reset_timeout));
                self.open_until.store(until.as_millis(), Ordering::Release);
            }
            State::HalfOpen => {}
        }
        // Counters first, then the state word (Release), so a thread that sees the new state
        // also sees the counters that belong to it.
        self.word
            .store(generation << 2 | to.code(), Ordering::Release);
        tracing::debug!(name = ?self.name, %from, %to, ?reason, generation, "circuit breaker transition");
        inner.pending.push_back(Transition {
            name: self.name.clone(),
            from,
            to,
            reason,
            at: now,
            generation,
        });
        self.events.mark_pending();
    }
}
