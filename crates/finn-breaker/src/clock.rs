//! Time as the breaker sees it: a [`Timestamp`] in milliseconds and the [`Clock`] that supplies it.
//!
//! The breaker never sleeps and never starts a timer. It reads the clock only when it must decide
//! something that depends on time (is the reset timeout over? which failures are still inside the
//! rolling window?), so a test can drive every transition by moving a [`ManualClock`].

use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A point in time: milliseconds since the Unix epoch.
///
/// Milliseconds because that is the resolution of every timeout a breaker deals with (seconds to
/// hours) and because the value is written into [`Snapshot`](crate::Snapshot)s that outlive the
/// process, where an [`Instant`] would mean nothing.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `millis` milliseconds after the Unix epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This timestamp moved `d` later, saturating at the largest representable time.
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(duration_millis(d)))
    }

    /// How long after `earlier` this timestamp is; zero if it is not later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A duration in whole milliseconds, saturating instead of wrapping for absurd values.
pub(crate) fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A source of [`Timestamp`]s.
///
/// Implementations must be cheap (the breaker reads the clock on the open path and on failures)
/// and should not go backwards; a clock that does can only make the breaker stay open longer,
/// never admit more calls than its policy allows.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The default clock: wall-clock milliseconds that never go backwards within one process.
///
/// The wall clock is read once, at first use; from then on time advances with the monotonic
/// [`Instant`]. A wall-clock step (NTP, a manual change) therefore cannot shorten or stretch an
/// open circuit, while timestamps stay comparable with those of an earlier process, which is what
/// [`Breaker::restore`](crate::Breaker::restore) needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    fn anchor() -> &'static (Timestamp, Instant) {
        static ANCHOR: OnceLock<(Timestamp, Instant)> = OnceLock::new();
        ANCHOR.get_or_init(|| {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO);
            (Timestamp(duration_millis(wall)), Instant::now())
        })
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let (wall, mono) = Self::anchor();
        wall.saturating_add(mono.elapsed())
    }
}

/// A clock that moves only when told to; for tests and simulations.
///
/// Clones share the same time, so a test keeps one clone and hands another to the breaker.
///
/// ```
/// use finn_breaker::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Timestamp::from_millis(500));
/// let handle = clock.clone();
/// handle.advance(Duration::from_millis(500));
/// assert_eq!(clock.now(), Timestamp::from_millis(1000));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now: Arc::new(AtomicU64::new(start.0)),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let d = duration_millis(d);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(d))
            });
    }

    /// Sets the clock to `t` (which may be earlier, to test a clock that goes backwards).
    pub fn set(&self, t: Timestamp) {
        self.now.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_never_goes_backwards() {
        let c = SystemClock;
        let mut last = c.now();
        for _ in 0..1000 {
            let now = c.now();
            assert!(now >= last);
            last = now;
        }
        assert!(
            last.as_millis() > 1_600_000_000_000,
            "system clock should be wall-clock based"
        );
    }

    #[test]
    fn timestamp_arithmetic_saturates() {
        let t = Timestamp::from_millis(u64::MAX - 1);
        assert_eq!(
            t.saturating_add(Duration::from_secs(10)).as_millis(),
            u64::MAX
        );
        assert_eq!(Timestamp::ZERO.saturating_duration_since(t), Duration::ZERO);
    }
}
