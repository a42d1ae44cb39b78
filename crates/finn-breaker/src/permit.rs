//! [`Permit`] and [`OwnedPermit`]: the right to make one call, and the duty to report how it went.

use std::fmt;
use std::sync::Arc;

use crate::breaker::Breaker;
use crate::policy::Outcome;

/// What the breaker remembers about an admitted call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    /// The state word at admission; outcomes from an earlier generation are stale.
    pub(crate) word: u64,
    /// Whether the call holds a half-open probe slot.
    pub(crate) probe: bool,
}

/// Permission to make one call, from [`Breaker::try_acquire`].
///
/// Report the result with [`Permit::record`]. Dropping the permit without recording counts as
/// [`Outcome::Ignored`] (a cancelled call says nothing about the dependency), or as
/// [`Outcome::Failure`] if the thread is panicking.
#[must_use = "a permit must be given the call's outcome with record(); dropping it records Outcome::Ignored"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    ticket: Ticket,
    settled: bool,
}

impl<'a> Permit<'a> {
    #[inline]
    pub(crate) fn new(breaker: &'a Breaker, ticket: Ticket) -> Self {
        Permit {
            breaker,
            ticket,
            settled: false,
        }
    }

    /// Reports how the call went.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.settled = true;
        self.breaker.settle(self.ticket, outcome);
    }

    /// Shorthand for `record(Outcome::Success)`.
    #[inline]
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// Shorthand for `record(Outcome::Failure)`.
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.probe
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.settle(self.ticket, unrecorded_outcome());
        }
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("probe", &self.ticket.probe)
            .finish_non_exhaustive()
    }
}

/// A [`Permit`] that owns a reference to its breaker, from [`Breaker::try_acquire_owned`].
#[must_use = "a permit must be given the call's outcome with record(); dropping it records Outcome::Ignored"]
pub struct OwnedPermit {
    breaker: Arc<Breaker>,
    ticket: Ticket,
    settled: bool,
}

impl OwnedPermit {
    pub(crate) fn new(breaker: Arc<Breaker>, ticket: Ticket) -> Self {
        OwnedPermit {
            breaker,
            ticket,
            settled: false,
        }
    }

    /// Reports how the call went.
    pub fn record(mut self, outcome: Outcome) {
        self.settled = true;
        self.breaker.settle(self.ticket, outcome);
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.probe
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.settle(self.ticket, unrecorded_outcome());
        }
    }
}

impl fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("probe", &self.ticket.probe)
            .finish_non_exhaustive()
    }
}

fn unrecorded_outcome() -> Outcome {
    if std::thread::panicking() {
        Outcome::Failure
    } else {
        Outcome::Ignored
    }
}
