//! The breakers' clock inside the scheduler: tokio time, so that a paused test runtime drives
//! breaker timeouts exactly as it drives the schedule.

use finn_breaker::{Clock, SystemClock, Timestamp};
use tokio::time::Instant;

/// Wall-clock milliseconds (read once, at construction) advanced by tokio's clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokioClock {
    base_wall: Timestamp,
    base: Instant,
}

impl TokioClock {
    pub(crate) fn new() -> Self {
        TokioClock {
            base_wall: SystemClock.now(),
            base: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.base_wall
            .saturating_add(Instant::now().saturating_duration_since(self.base))
    }
}
