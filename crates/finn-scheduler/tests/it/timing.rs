//! Jitter bounds, no drift, no burst after a pause, fixed delay.

use finn_scheduler::{Cadence, RunOutcome};
use tokio::time::Instant;

use crate::util::*;

#[tokio::test(start_paused = true)]
async fn jitter_stays_within_bounds_symmetric_and_above_the_floor() {
    let s = scheduler();
    let log = Log::default();
    // The anchor object-store sync: 30 s ± 5 s, default 1 s floor.
    register_logging(
        &s,
        finn_scheduler::TaskSpec::new("sync", secs(30)).jitter(secs(5)),
        &log,
        ms(100),
    );
    let origin = Instant::now();
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(30 * 300) + secs(10)).await;
    let starts = log.times("sync");
    assert_eq!(starts.len(), 300);
    let (mut early, mut late) = (0, 0);
    for (k, start) in starts.iter().enumerate() {
        let slot = origin + secs(30 * (k as u64 + 1));
        assert!(
            *start >= slot - secs(5) && *start <= slot + secs(5),
            "run {k} at {:?} from its slot",
            *start - origin
        );
        if *start < slot {
            early += 1;
        } else if *start > slot {
            late += 1;
        }
    }
    // The anchor library's jitter was additive only; ours is symmetric.
    assert!(early > 100 && late > 100, "{early} early, {late} late");
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] >= secs(1));
    }
}

#[tokio::test(start_paused = true)]
async fn no_drift_over_1000_intervals_whatever_the_run_length() {
    let s = scheduler();
    let log = Log::default();
    // Each run takes 300 ms of a 1 s interval: a scheduler planning from the end of the previous
    // run would be 300 s late after 1000 runs.
    register_logging(&s, spec("t", secs(1)), &log, ms(300));
    let origin = Instant::now();
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(1000) + ms(500)).await;
    let starts = log.times("t");
    assert_eq!(starts.len(), 1000);
    for (k, start) in starts.iter().enumerate() {
        assert_eq!(*start, origin + secs(k as u64 + 1), "run {k} drifted");
    }
}

#[tokio::test(start_paused = true)]
async fn no_drift_with_jitter_the_1000th_run_is_still_within_the_jitter_of_its_slot() {
    let s = scheduler();
    let log = Log::default();
    register_logging(&s, spec("t", secs(10)).jitter(secs(2)), &log, ms(1500));
    let origin = Instant::now();
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(10_000) + secs(5)).await;
    let starts = log.times("t");
    assert_eq!(starts.len(), 1000);
    let last = starts[999];
    let slot = origin + secs(10_000);
    assert!(last >= slot - secs(2) && last <= slot + secs(2));
}

#[tokio::test(start_paused = true)]
async fn late_ticks_after_a_pause_run_once_not_in_a_burst() {
    let s = scheduler();
    let log = Log::default();
    register_logging(&s, spec("t", secs(10)), &log, ms(1));
    let origin = Instant::now();
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(10) + ms(500)).await;
    assert_eq!(log.count("t"), 1);
    // The process is frozen (SIGSTOP, a suspended laptop) for 95 s: the clock jumps.
    tokio::time::advance(secs(95)).await;
    settle().await;
    assert_eq!(log.count("t"), 2, "one catch-up run, not nine");
    let status = s.status("t").unwrap();
    assert_eq!(status.missed_ticks, 8);
    // Back on the original grid: the next run is at 110 s.
    assert_eq!(status.next_run, Some(origin + secs(110)));
    tokio::time::sleep_until(origin + secs(110) + ms(500)).await;
    assert_eq!(log.times("t")[2], origin + secs(110));
}

#[tokio::test(start_paused = true)]
async fn fixed_delay_plans_from_the_end_of_the_previous_run() {
    let s = scheduler();
    let log = Log::default();
    register_logging(
        &s,
        spec("t", secs(10)).cadence(Cadence::FixedDelay),
        &log,
        secs(3),
    );
    let origin = Instant::now();
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(40)).await;
    let starts: Vec<_> = log.times("t").iter().map(|t| *t - origin).collect();
    assert_eq!(starts, vec![secs(10), secs(23), secs(36)]);
    assert_eq!(
        s.status("t").unwrap().last_outcome,
        Some(RunOutcome::Succeeded)
    );
}

#[tokio::test(start_paused = true)]
async fn invalid_specs_are_rejected_with_typed_errors() {
    use finn_scheduler::{RegisterError, SpecError, TaskSpec};
    let s = scheduler();
    let cases = [
        (TaskSpec::new("", secs(10)), SpecError::EmptyId),
        (TaskSpec::new("a", secs(0)), SpecError::ZeroInterval),
        (
            TaskSpec::new("a", secs(10)).jitter(secs(10)),
            SpecError::JitterNotBelowInterval {
                jitter: secs(10),
                interval: secs(10),
            },
        ),
        (
            TaskSpec::new("a", ms(500)),
            SpecError::MinDelayAboveInterval {
                min_delay: secs(1),
                interval: ms(500),
            },
        ),
        (
            TaskSpec::new("a", secs(10)).timeout(secs(0)),
            SpecError::ZeroTimeout,
        ),
    ];
    for (spec, expected) in cases {
        let err = s.register(spec, |_| async { Ok(()) }).unwrap_err();
        assert!(
            matches!(&err, RegisterError::Invalid { reason, .. } if *reason == expected),
            "{err:?}"
        );
    }
}
