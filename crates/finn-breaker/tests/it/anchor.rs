//! The breaker scenarios of anchors.md §11.6, one test each, named after the anchor test they
//! port. Where finn deliberately differs from the anchor, the test says so.

use std::time::Duration;

use finn_breaker::{
    ANCHOR_CRON_WINDOW, Breaker, CallError, FailureClass, FailureWindow, ManualClock, Options,
    Outcome, Reason, Rejected, Snapshot, State, Timestamp, http_outcome,
};

use crate::util::Rig;

const C: State = State::Closed;
const O: State = State::Open;
const H: State = State::HalfOpen;

// ---- framework circuit-breaker.test.ts and circuit-breaker-golden.test.ts -------------------

#[test]
fn cb_starts_in_closed_state_with_zero_failures() {
    let rig = Rig::anchor();
    assert_eq!(rig.breaker.state(), C);
    assert_eq!(rig.breaker.failure_count(), 0);
}

#[test]
fn cb_closed_to_open_after_max_failures_consecutive_failures() {
    let rig = Rig::anchor();
    for _ in 0..3 {
        rig.fail();
    }
    assert_eq!(rig.breaker.state(), O);
    assert_eq!(rig.pairs(), vec![(C, O)]);
}

#[test]
fn cb_resets_failure_count_on_success_before_reaching_threshold() {
    let rig = Rig::anchor();
    rig.fail();
    rig.fail();
    rig.succeed();
    assert_eq!(rig.breaker.failure_count(), 0);
    rig.fail();
    rig.fail();
    assert_eq!(rig.breaker.state(), C);
}

#[test]
fn cb_execute_passes_through_on_closed_and_returns_the_value() {
    let rig = Rig::anchor();
    assert_eq!(rig.breaker.call(|| Ok::<_, ()>(42)).unwrap(), 42);
}

#[test]
fn cb_execute_is_rejected_with_cb_open_when_open() {
    let rig = Rig::anchor();
    rig.breaker.trip();
    let err = rig.breaker.call(|| Ok::<_, ()>(42)).unwrap_err();
    assert!(matches!(err, CallError::Rejected(Rejected::Open { .. })));
    assert!(err.to_string().starts_with("circuit is open"), "{err}");
}

#[test]
fn cb_execute_records_failure_on_throw_and_rethrows() {
    let rig = Rig::anchor();
    let err = rig.breaker.call(|| Err::<(), _>("boom")).unwrap_err();
    assert_eq!(err.into_inner(), Some("boom"));
    assert_eq!(rig.breaker.failure_count(), 1);
    rig.succeed();
    assert_eq!(rig.breaker.failure_count(), 0);
}

#[test]
fn cb_open_to_half_open_after_reset_time_elapses_open_at_500_half_open_at_1000() {
    let rig = Rig::anchor();
    rig.clock.set(Timestamp::from_millis(500));
    for _ in 0..3 {
        rig.fail();
    }
    assert_eq!(rig.breaker.state(), O);
    rig.clock.set(Timestamp::from_millis(999));
    assert_eq!(rig.breaker.state(), O);
    rig.clock.set(Timestamp::from_millis(1000));
    assert_eq!(rig.breaker.state(), H);
    assert_eq!(rig.pairs(), vec![(C, O), (O, H)]);
    assert_eq!(rig.log.lock().unwrap()[1].at, Timestamp::from_millis(1000));
}

#[test]
fn cb_half_open_to_closed_after_half_open_retries_successes() {
    let rig = Rig::new(
        Options::default()
            .reset_timeout(Duration::from_millis(500))
            .half_open_successes(2),
    );
    for _ in 0..3 {
        rig.fail();
    }
    rig.clock.advance(Duration::from_millis(500));
    rig.succeed();
    assert_eq!(rig.breaker.state(), H);
    rig.succeed();
    assert_eq!(rig.breaker.state(), C);
    assert_eq!(rig.breaker.failure_count(), 0);
}

#[test]
fn cb_half_open_to_open_on_failure_during_probe() {
    let rig = Rig::anchor();
    for _ in 0..3 {
        rig.fail();
    }
    rig.clock.advance(Duration::from_millis(500));
    rig.fail();
    assert_eq!(rig.pairs().last(), Some(&(H, O)));
}

#[test]
fn cb_reset_forces_closed_regardless_of_current_state() {
    for setup in [State::Closed, State::Open, State::HalfOpen] {
        let rig = Rig::anchor();
        if setup != C {
            rig.breaker.trip();
        }
        if setup == H {
            rig.clock.advance(Duration::from_millis(500));
            assert_eq!(rig.breaker.state(), H);
        }
        rig.breaker.reset();
        assert_eq!(rig.breaker.state(), C, "from {setup}");
        assert_eq!(rig.breaker.failure_count(), 0);
    }
}

#[test]
fn cb_get_failure_count_tracks_consecutive_failures() {
    let rig = Rig::anchor();
    rig.fail();
    assert_eq!(rig.breaker.failure_count(), 1);
    rig.fail();
    assert_eq!(rig.breaker.failure_count(), 2);
    rig.succeed();
    assert_eq!(rig.breaker.failure_count(), 0);
}

// ---- finn circuit-breaker-convergence.test.ts -----------------------------------------------
// The anchor's `taskId` is the breaker's name; its opt-in probe counter is always on here.

#[test]
fn convergence_task_id_is_none_when_not_configured() {
    assert_eq!(Breaker::default().name(), None);
}

#[test]
fn convergence_returns_configured_task_id() {
    let b = Breaker::builder().name("r2_sync").build().unwrap();
    assert_eq!(b.name(), Some("r2_sync"));
}

#[test]
fn convergence_probe_count_is_zero_initially_and_not_incremented_on_closed_calls() {
    let rig = Rig::anchor();
    assert_eq!(rig.breaker.probe_count(), 0);
    rig.succeed();
    rig.fail();
    assert_eq!(rig.breaker.probe_count(), 0);
}

#[test]
fn convergence_probe_count_increments_per_half_open_call() {
    let rig = Rig::new(
        Options::default()
            .reset_timeout(Duration::from_millis(500))
            .half_open_successes(3),
    );
    rig.breaker.trip();
    rig.clock.advance(Duration::from_millis(500));
    rig.succeed();
    assert_eq!(rig.breaker.probe_count(), 1);
    rig.succeed();
    assert_eq!(rig.breaker.probe_count(), 2);
}

#[test]
fn convergence_task_id_and_probe_counter_together_probe_then_closed() {
    let clock = ManualClock::new(Timestamp::ZERO);
    let b = Breaker::builder()
        .name("git_sync")
        .clock(clock.clone())
        .options(Options::default().reset_timeout(Duration::from_millis(100)))
        .build()
        .unwrap();
    b.trip();
    clock.advance(Duration::from_millis(100));
    b.call(|| Ok::<_, ()>(())).unwrap();
    assert_eq!(
        (b.name(), b.probe_count(), b.state()),
        (Some("git_sync"), 1, C)
    );
}

// ---- finn tests/finn/circuit-breaker.test.ts (the cron breaker) -----------------------------

fn cron_rig(window_failures: u32) -> Rig {
    Rig::new(
        Options::default()
            .consecutive_failures(None)
            .failure_window(Some(FailureWindow {
                failures: window_failures,
                ..ANCHOR_CRON_WINDOW
            }))
            .reset_timeout(Duration::from_secs(30 * 60))
            .half_open_probes(2)
            .half_open_successes(2),
    )
}

fn record(rig: &Rig, outcome: Outcome) {
    rig.breaker.try_acquire().unwrap().record(outcome);
}

#[test]
fn cron_starts_closed_and_can_execute() {
    let rig = cron_rig(5);
    assert_eq!(rig.breaker.state(), C);
    assert!(rig.breaker.try_acquire().is_ok());
}

#[test]
fn cron_record_success_resets_failures_when_closed() {
    let rig = cron_rig(5);
    record(&rig, Outcome::Failure);
    record(&rig, Outcome::Success);
    assert_eq!(rig.breaker.failure_count(), 0);
}

#[test]
fn cron_threshold_failures_open_and_block_execution() {
    let rig = cron_rig(5);
    for _ in 0..5 {
        record(&rig, Outcome::Failure);
    }
    assert_eq!(rig.breaker.state(), O);
    assert!(rig.breaker.try_acquire().is_err());
}

#[test]
fn cron_open_to_half_open_after_open_duration() {
    let rig = cron_rig(5);
    rig.breaker.trip();
    rig.clock.advance(Duration::from_secs(30 * 60));
    assert_eq!(rig.breaker.state(), H);
}

#[test]
fn cron_half_open_probe_successes_reaching_probe_count_close_and_reset_counters() {
    let rig = cron_rig(5);
    for _ in 0..5 {
        record(&rig, Outcome::Failure);
    }
    rig.clock.advance(Duration::from_secs(30 * 60));
    let a = rig.breaker.try_acquire().unwrap();
    let b = rig.breaker.try_acquire().unwrap();
    assert!(a.is_probe() && b.is_probe());
    a.success();
    assert_eq!(rig.breaker.state(), H);
    b.success();
    assert_eq!(rig.breaker.state(), C);
    assert_eq!(rig.breaker.failure_count(), 0);
    assert_eq!(rig.breaker.snapshot().window_failures, vec![]);
}

#[test]
fn cron_any_half_open_failure_reopens() {
    let rig = cron_rig(5);
    rig.breaker.trip();
    rig.clock.advance(Duration::from_secs(30 * 60));
    record(&rig, Outcome::Success);
    record(&rig, Outcome::Failure);
    assert_eq!(rig.breaker.state(), O);
}

#[test]
fn cron_expected_failures_do_not_count() {
    let rig = cron_rig(5);
    for _ in 0..10 {
        record(&rig, FailureClass::Expected.outcome());
    }
    assert_eq!((rig.breaker.state(), rig.breaker.failure_count()), (C, 0));
}

#[test]
fn cron_rate_limited_failures_count() {
    let rig = cron_rig(5);
    for _ in 0..5 {
        record(
            &rig,
            FailureClass::RateLimited { retry_after: None }.outcome(),
        );
    }
    assert_eq!(rig.breaker.state(), O);
}

#[test]
fn cron_rate_limited_with_retry_after_holds_open_for_that_long() {
    // finn addition: the anchor counted a Retry-After as an ordinary failure.
    let rig = cron_rig(5);
    record(&rig, http_outcome(429, Some(Duration::from_secs(90))));
    assert_eq!(rig.breaker.state(), O);
    rig.clock.advance(Duration::from_secs(89));
    assert!(matches!(
        rig.breaker.try_acquire(),
        Err(Rejected::Open { .. })
    ));
    rig.clock.advance(Duration::from_secs(1));
    assert_eq!(rig.breaker.state(), H);
}

#[test]
fn cron_rolling_window_evicts_stale_failures() {
    let rig = cron_rig(3);
    record(&rig, Outcome::Failure);
    record(&rig, Outcome::Failure);
    rig.clock.advance(Duration::from_secs(60 * 60)); // both leave the 1 h window
    record(&rig, Outcome::Failure);
    assert_eq!(
        rig.breaker.state(),
        C,
        "one in-window failure must not trip"
    );
    record(&rig, Outcome::Failure);
    record(&rig, Outcome::Failure);
    assert_eq!(rig.breaker.state(), O, "three in-window failures trip");
}

#[test]
fn cron_all_in_window_failures_count() {
    let rig = cron_rig(3);
    for _ in 0..3 {
        record(&rig, Outcome::Failure);
        rig.clock.advance(Duration::from_secs(20 * 60 - 1));
    }
    assert_eq!(rig.breaker.state(), O);
    assert!(matches!(
        rig.log.lock().unwrap()[0].reason,
        Reason::FailureWindow { count: 3 }
    ));
}

#[test]
fn cron_classify_github_failure() {
    let ra = Some(Duration::from_secs(60));
    let table = [
        (429, None, FailureClass::RateLimited { retry_after: None }),
        (429, ra, FailureClass::RateLimited { retry_after: ra }),
        (403, ra, FailureClass::RateLimited { retry_after: ra }),
        (403, None, FailureClass::External),
        (500, None, FailureClass::Transient),
        (502, None, FailureClass::Transient),
        (503, None, FailureClass::Transient),
        (422, None, FailureClass::Permanent),
        (404, None, FailureClass::Expected),
        (400, None, FailureClass::External),
        (401, None, FailureClass::External),
        (418, None, FailureClass::External),
    ];
    for (status, retry_after, class) in table {
        assert_eq!(
            FailureClass::from_http(status, retry_after),
            class,
            "status {status}"
        );
    }
    assert_eq!(http_outcome(204, None), Outcome::Success);
}

#[test]
fn cron_manual_reset_from_open_closes() {
    let rig = cron_rig(5);
    rig.breaker.trip();
    rig.breaker.reset();
    assert_eq!(rig.breaker.state(), C);
}

#[test]
fn cron_events_opened_from_closed_and_closed_from_half_open_and_manual_reset() {
    let rig = cron_rig(1);
    let events = rig.breaker.subscribe();
    record(&rig, Outcome::Failure);
    rig.clock.advance(Duration::from_secs(30 * 60));
    record(&rig, Outcome::Success);
    record(&rig, Outcome::Success);
    rig.breaker.trip();
    rig.breaker.reset();
    let got: Vec<_> = events.try_iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(got, vec![(C, O), (O, H), (H, C), (C, O), (O, C)]);
}

#[test]
fn cron_restore_state_restores_persisted_open_state() {
    let rig = cron_rig(5);
    rig.clock.set(Timestamp::from_millis(6000));
    let saved = Snapshot {
        version: 1,
        state: O,
        consecutive_failures: 4,
        window_failures: vec![Timestamp::from_millis(4500)],
        opened_at: Some(Timestamp::from_millis(5000)),
        open_until: None,
        half_open_successes: 0,
        probes: 0,
        taken_at: Timestamp::from_millis(5000),
    };
    rig.breaker.restore(&saved).unwrap();
    assert_eq!(rig.breaker.state(), O);
    assert_eq!(rig.breaker.failure_count(), 4);
    let snap = rig.breaker.snapshot();
    assert_eq!(snap.opened_at, Some(Timestamp::from_millis(5000)));
    assert_eq!(snap.window_failures, vec![Timestamp::from_millis(4500)]);
    assert_eq!(
        snap.open_until,
        Some(Timestamp::from_millis(5000 + 30 * 60 * 1000))
    );
}

#[test]
fn cron_restored_half_open_allows_probing_and_closes_on_success() {
    let rig = cron_rig(5);
    let saved = Snapshot {
        version: 1,
        state: H,
        consecutive_failures: 5,
        window_failures: vec![],
        opened_at: Some(Timestamp::ZERO),
        open_until: None,
        half_open_successes: 1,
        probes: 1,
        taken_at: Timestamp::ZERO,
    };
    rig.breaker.restore(&saved).unwrap();
    assert_eq!(rig.breaker.state(), H);
    record(&rig, Outcome::Success); // the second of two required probes
    assert_eq!(rig.breaker.state(), C);
    assert_eq!(rig.pairs(), vec![(C, H), (H, C)]);
}
