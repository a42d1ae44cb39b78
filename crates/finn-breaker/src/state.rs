//! The three states of a circuit and the [`Transition`] events between them.

use std::fmt;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::policy::duration_ms;

/// The state of a circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Calls pass; failures are counted.
    Closed,
    /// Calls are rejected until the reset timeout (or a Retry-After hold) is over.
    Open,
    /// A bounded number of probe calls pass; their outcome closes or reopens the circuit.
    HalfOpen,
}

impl State {
    pub(crate) const fn code(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

    pub(crate) const fn from_code(code: u64) -> State {
        match code & 0b11 {
            0 => State::Closed,
            1 => State::Open,
            _ => State::HalfOpen,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        })
    }
}

/// Why a transition happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
#[non_exhaustive]
pub enum Reason {
    /// `count` failures in a row reached the consecutive-failure threshold.
    ConsecutiveFailures {
        /// Failures in a row.
        count: u32,
    },
    /// `count` failures inside the rolling window reached its threshold.
    FailureWindow {
        /// Failures inside the window.
        count: u32,
    },
    /// The dependency asked for a pause (Retry-After); the circuit is held open this long.
    RetryAfter {
        /// The hold, after capping.
        #[serde(with = "duration_ms")]
        hold: Duration,
    },
    /// The reset timeout (or hold) ran out; the next call is a probe.
    ResetTimeoutElapsed,
    /// Enough probes succeeded.
    ProbesSucceeded {
        /// Successful probes.
        count: u32,
    },
    /// A probe failed.
    ProbeFailed,
    /// [`Breaker::reset`](crate::Breaker::reset) was called.
    ManualReset,
    /// [`Breaker::trip`](crate::Breaker::trip) was called.
    ManualTrip,
    /// [`Breaker::restore`](crate::Breaker::restore) loaded a snapshot in a different state.
    Restored,
}

/// One change of state, delivered to callbacks and subscribers in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Transition {
    /// The breaker's name, if it has one (the scheduler uses the task id).
    pub name: Option<String>,
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// Why.
    pub reason: Reason,
    /// When, by the breaker's clock.
    pub at: Timestamp,
    /// Increases by one with every transition of this breaker; orders events and detects gaps.
    pub generation: u64,
}
