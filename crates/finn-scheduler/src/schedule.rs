//! Planning run times: the fixed-rate grid, symmetric jitter, the floor, and skipping (not
//! replaying) ticks missed during a pause.
//!
//! Pure arithmetic on [`Instant`]s, so the rules are unit-tested here without a runtime.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// The timing part of a task spec.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) interval: Duration,
    pub(crate) jitter: Duration,
    pub(crate) floor: Duration,
}

/// Where a task stands on its schedule.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Slot `k` is due at `origin + k·interval`.
    origin: Instant,
    /// The slot most recently planned.
    slot: u64,
    /// The most recently planned fire time; the next is at least `floor` later.
    last_fire: Instant,
}

/// Outcome of planning a fixed-rate tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Next {
    pub(crate) at: Instant,
    /// Slots whose time passed without a run (a pause or a stalled runtime); they are skipped.
    pub(crate) missed: u64,
}

impl Plan {
    pub(crate) fn new(origin: Instant) -> Plan {
        Plan {
            origin,
            slot: 0,
            last_fire: origin,
        }
    }

    fn slot_time(&self, t: &Timing, k: u64) -> Instant {
        let offset = u32::try_from(k)
            .ok()
            .and_then(|k| t.interval.checked_mul(k))
            .unwrap_or(Duration::MAX);
        self.origin.checked_add(offset).unwrap_or_else(far_future)
    }

    /// Plans the next fixed-rate run after `now`: the next slot of the grid, jittered, never
    /// sooner than `floor` after the previous planned run. Slots already in the past are counted
    /// as missed and skipped, so a late wake-up produces one run, not a burst.
    pub(crate) fn next_fixed_rate(&mut self, t: &Timing, now: Instant, rng: &mut impl Rng) -> Next {
        let mut k = self.slot.saturating_add(1);
        let mut missed = 0;
        if self.slot_time(t, k) <= now {
            let elapsed = now.saturating_duration_since(self.origin).as_nanos();
            let behind = u64::try_from(elapsed / t.interval.as_nanos().max(1)).unwrap_or(u64::MAX);
            let first_future = behind.saturating_add(1);
            missed = first_future.saturating_sub(k);
            k = first_future;
        }
        self.slot = k;
        let at = jittered(self.slot_time(t, k), t.jitter, rng).max(self.last_fire + t.floor);
        self.last_fire = at;
        Next { at, missed }
    }

    /// Plans the next fixed-delay run: `interval` (jittered, floored) after `finished`.
    pub(crate) fn next_fixed_delay(
        &mut self,
        t: &Timing,
        finished: Instant,
        rng: &mut impl Rng,
    ) -> Instant {
        let at = jittered(finished + t.interval, t.jitter, rng).max(finished + t.floor);
        self.last_fire = at;
        at
    }

    /// Re-enters the schedule at `now` (after an enable): the grid keeps its origin, the next
    /// run is the next slot at least `floor` from now.
    pub(crate) fn realign(&mut self, t: &Timing, now: Instant) {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        self.slot = u64::try_from(elapsed / t.interval.as_nanos().max(1)).unwrap_or(u64::MAX);
        self.last_fire = now;
    }
}

/// `at` moved by a uniform offset in `[-jitter, +jitter]`, in whole milliseconds (the
/// resolution of tokio's timer wheel, so a planned time is the time the timer fires).
pub(crate) fn jittered(at: Instant, jitter: Duration, rng: &mut impl Rng) -> Instant {
    let j = i64::try_from(jitter.as_millis()).unwrap_or(i64::MAX);
    if j == 0 {
        return at;
    }
    let offset = rng.gen_range(-j..=j);
    let magnitude = Duration::from_millis(offset.unsigned_abs());
    if offset < 0 {
        at.checked_sub(magnitude).unwrap_or(at)
    } else {
        at.checked_add(magnitude).unwrap_or(at)
    }
}

fn far_future() -> Instant {
    // About 30 years: far enough to mean "never", near enough not to overflow timer wheels.
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn timing(interval: u64, jitter: u64, floor: u64) -> Timing {
        Timing {
            interval: Duration::from_millis(interval),
            jitter: Duration::from_millis(jitter),
            floor: Duration::from_millis(floor),
        }
    }

    #[test]
    fn fixed_rate_stays_on_the_grid_within_the_jitter() {
        let t = timing(30_000, 5_000, 1_000);
        let origin = Instant::now();
        let mut plan = Plan::new(origin);
        let mut rng = StdRng::seed_from_u64(7);
        let (mut below, mut above) = (0, 0);
        for k in 1..=10_000u32 {
            let slot = origin + t.interval * k;
            let next = plan.next_fixed_rate(&t, slot - Duration::from_secs(6), &mut rng);
            assert_eq!(next.missed, 0);
            assert!(
                next.at >= slot - t.jitter && next.at <= slot + t.jitter,
                "slot {k}"
            );
            if next.at < slot {
                below += 1;
            } else if next.at > slot {
                above += 1;
            }
        }
        assert!(
            below > 4000 && above > 4000,
            "jitter must be symmetric: {below} below, {above} above"
        );
    }

    #[test]
    fn floor_holds_when_jitter_is_close_to_the_interval() {
        let t = timing(1_000, 900, 1_000);
        let mut plan = Plan::new(Instant::now());
        let mut rng = StdRng::seed_from_u64(1);
        let mut prev = plan.next_fixed_rate(&t, Instant::now(), &mut rng).at;
        for _ in 0..1000 {
            let next = plan.next_fixed_rate(&t, prev, &mut rng).at;
            assert!(next - prev >= t.floor);
            prev = next;
        }
    }

    #[test]
    fn a_pause_skips_missed_slots_instead_of_replaying_them() {
        let t = timing(1_000, 0, 0);
        let origin = Instant::now();
        let mut plan = Plan::new(origin);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            plan.next_fixed_rate(&t, origin, &mut rng).at,
            origin + Duration::from_secs(1)
        );
        // We wake up 10.5 s after the origin: slots 2..=10 are gone; the next is slot 11.
        let next = plan.next_fixed_rate(&t, origin + Duration::from_millis(10_500), &mut rng);
        assert_eq!(
            next,
            Next {
                at: origin + Duration::from_secs(11),
                missed: 9
            }
        );
    }

    #[test]
    fn fixed_delay_counts_from_the_end_of_the_run() {
        let t = timing(1_000, 0, 0);
        let mut plan = Plan::new(Instant::now());
        let end = Instant::now() + Duration::from_millis(2_345);
        assert_eq!(
            plan.next_fixed_delay(&t, end, &mut StdRng::seed_from_u64(1)),
            end + t.interval
        );
    }
}
