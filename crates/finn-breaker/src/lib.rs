//! A circuit breaker (closed / open / half-open) with an injectable clock and no background threads.
//!
//! `finn-breaker` is the one breaker every finn crate uses: the scheduler wraps each task in one,
//! the checkpoint uploader wraps the object store in one. Most users want the
//! [`finn`](https://docs.rs/finn) facade, which re-exports this crate as `finn::breaker`.
//!
//! # Example
//! ```
//! use finn_breaker::{Breaker, CallError, ManualClock, Options, Outcome, Rejected, State, Timestamp};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new(Timestamp::from_millis(0));
//! let breaker = Breaker::builder()
//!     .name("object-store")
//!     .options(Options::default().reset_timeout(Duration::from_secs(60)))
//!     .clock(clock.clone())
//!     .build()?;
//!
//! // Three failures in a row open the circuit; the function is then not called at all.
//! for _ in 0..3 {
//!     let _ = breaker.call(|| Err::<(), _>("unreachable"));
//! }
//! assert_eq!(breaker.state(), State::Open);
//! assert!(matches!(breaker.call(|| Ok::<_, &str>(())), Err(CallError::Rejected(Rejected::Open { .. }))));
//!
//! // A minute after opening, one probe is let through; its success closes the circuit.
//! clock.advance(Duration::from_secs(60));
//! let probe = breaker.try_acquire()?;
//! assert!(probe.is_probe());
//! probe.record(Outcome::Success);
//! assert_eq!(breaker.state(), State::Closed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The state machine
//!
//! | From | Event | To |
//! |---|---|---|
//! | Closed | success | Closed, consecutive count reset |
//! | Closed | failure reaching [`Options::consecutive_failures`] or [`Options::failure_window`] | Open |
//! | Closed, HalfOpen | [`Outcome::RetryAfter`] | Open for the (capped) Retry-After |
//! | Open | a call or [`Breaker::state`] once the reset timeout, counted from opening, is over | HalfOpen |
//! | Open | a call before that | stays Open; [`Rejected::Open`], function not called |
//! | HalfOpen | a call while [`Options::half_open_probes`] probes are in flight | stays; [`Rejected::HalfOpenFull`] |
//! | HalfOpen | [`Options::half_open_successes`]-th successful probe | Closed, counters reset |
//! | HalfOpen | a failed probe | Open, timer restarted |
//! | any | [`Breaker::reset`] / [`Breaker::trip`] | Closed / Open |
//!
//! How an error counts is the caller's decision ([`Breaker::call_with`], [`Permit::record`]): a
//! NotFound is [`Outcome::Ignored`], a 429 with Retry-After is [`Outcome::RetryAfter`];
//! [`http_outcome`] and [`FailureClass`] encode the anchor's HTTP taxonomy.
//!
//! # Guarantees
//! - **Bounded probes.** While half-open, at most [`Options::half_open_probes`] calls are in
//!   flight, under any contention; a call beyond that gets [`Rejected::HalfOpenFull`].
//! - **No stale outcomes.** Every transition starts a new generation. The outcome of a call
//!   admitted before a transition does not move the new state: a slow call that fails after the
//!   circuit opened does not restart the reset timeout, a slow success from before does not close
//!   a half-open circuit. (A Retry-After is the exception: it is news about the dependency.)
//! - **Lazy and deterministic.** No timers, no threads. Time is read from the [`Clock`] only on
//!   the open path and on failures; a [`ManualClock`] makes every transition reproducible.
//! - **Cheap when healthy.** Admission in the closed state is one atomic load; a success with no
//!   failures to forget is one more load and no write, so threads never contend on the success
//!   path. See `benches/breaker.rs`.
//! - **Ordered events.** Callbacks ([`Breaker::on_transition`]) and channels
//!   ([`Breaker::subscribe`]) see each [`Transition`] once, in generation order, outside the
//!   breaker's lock.
//! - **Persistable.** [`Breaker::snapshot`] and [`Breaker::restore`] carry the state across
//!   restarts; restoring clamps timestamps from a clock that went backwards.
//!
//! # What it does not do
//! - It does not retry, back off exponentially, or time calls out; wrap the call in your own
//!   timeout (finn-scheduler does) and record a timeout as [`Outcome::Failure`].
//! - It does not compute a failure *ratio*: the window policy counts failures, as the anchor's
//!   cron breaker did, because a ratio would need a shared write on every success.
//! - It does not persist anything itself; the caller stores the [`Snapshot`] (the finn runtime
//!   records transitions in its WAL).
//! - Under heavy concurrency the consecutive-failure count may be off by the number of calls
//!   that race a transition; the probe bound is exact.
//!
//! # On-disk format
//! None, except the serde form of [`Snapshot`] (version [`SNAPSHOT_VERSION`]); its fields are
//! described in `docs/formats/finn-breaker.md`. Readers accept versions up to their own.
//!
//! # Minimum supported Rust version
//! The workspace `rust-version` (1.89).

mod breaker;
mod clock;
mod error;
mod events;
mod permit;
mod policy;
mod snapshot;
mod state;

pub use breaker::{Breaker, Builder};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{CallError, OptionsError, Rejected, RestoreError};
pub use permit::{OwnedPermit, Permit};
pub use policy::{
    ANCHOR_CRON_WINDOW, DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_HALF_OPEN_PROBES,
    DEFAULT_HALF_OPEN_SUCCESSES, DEFAULT_MAX_RETRY_AFTER, DEFAULT_RESET_TIMEOUT, FailureClass,
    FailureWindow, Options, Outcome, http_outcome,
};
pub use snapshot::{SNAPSHOT_VERSION, Snapshot};
pub use state::{Reason, State, Transition};
