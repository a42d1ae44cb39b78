//! Snapshots: round trips, clock skew, versions.

use std::time::Duration;

use finn_breaker::{
    Breaker, FailureWindow, ManualClock, Options, Outcome, Reason, RestoreError, SNAPSHOT_VERSION,
    Snapshot, State, Timestamp,
};

fn breaker(clock: &ManualClock) -> Breaker {
    Breaker::builder()
        .clock(clock.clone())
        .options(
            Options::default()
                .reset_timeout(Duration::from_secs(60))
                .failure_window(Some(FailureWindow::new(10, Duration::from_secs(600)))),
        )
        .build()
        .unwrap()
}

#[test]
fn an_open_circuit_survives_a_restart_through_json() {
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let before = breaker(&clock);
    for _ in 0..3 {
        before.try_acquire().unwrap().record(Outcome::Failure);
    }
    clock.advance(Duration::from_secs(20));
    let json = serde_json::to_string(&before.snapshot()).unwrap();

    // A new process, 10 s later.
    clock.advance(Duration::from_secs(10));
    let after = breaker(&clock);
    let events = after.subscribe();
    after
        .restore(&serde_json::from_str::<Snapshot>(&json).unwrap())
        .unwrap();
    assert_eq!(after.state(), State::Open);
    assert_eq!(events.try_recv().unwrap().reason, Reason::Restored);
    // Opened at 1_000_000, so the 60 s reset timeout ends at 1_060_000 however late we restored.
    clock.set(Timestamp::from_millis(1_059_999));
    assert_eq!(after.state(), State::Open);
    clock.set(Timestamp::from_millis(1_060_000));
    assert_eq!(after.state(), State::HalfOpen);
    assert_eq!(after.snapshot().window_failures.len(), 3);
}

#[test]
fn snapshot_json_layout_is_stable() {
    let clock = ManualClock::new(Timestamp::from_millis(7));
    let b = breaker(&clock);
    b.trip();
    let json = serde_json::to_string(&b.snapshot()).unwrap();
    assert_eq!(
        json,
        r#"{"version":1,"state":"open","consecutive-failures":0,"window-failures":[],"opened-at":7,"open-until":60007,"half-open-successes":0,"probes":0,"taken-at":7}"#
    );
}

#[test]
fn restore_pulls_future_timestamps_back_to_now() {
    // The snapshot was written by a process whose wall clock was a day ahead.
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let b = breaker(&clock);
    let day = 86_400_000;
    b.restore(&Snapshot {
        version: SNAPSHOT_VERSION,
        state: State::Open,
        consecutive_failures: 3,
        window_failures: vec![Timestamp::from_millis(day)],
        opened_at: Some(Timestamp::from_millis(day)),
        open_until: Some(Timestamp::from_millis(day + 60_000)),
        half_open_successes: 0,
        probes: 0,
        taken_at: Timestamp::from_millis(day),
    })
    .unwrap();
    let snap = b.snapshot();
    assert_eq!(snap.opened_at, Some(Timestamp::from_millis(1_000)));
    assert_eq!(snap.open_until, Some(Timestamp::from_millis(61_000)));
    assert_eq!(snap.window_failures, vec![Timestamp::from_millis(1_000)]);
    clock.set(Timestamp::from_millis(61_000));
    assert_eq!(b.state(), State::HalfOpen);
}

#[test]
fn restore_refuses_newer_versions_and_open_without_time_and_changes_nothing() {
    let clock = ManualClock::new(Timestamp::ZERO);
    let b = breaker(&clock);
    let mut snap = b.snapshot();
    snap.version = SNAPSHOT_VERSION + 1;
    snap.state = State::Open;
    assert_eq!(
        b.restore(&snap),
        Err(RestoreError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    );
    snap.version = SNAPSHOT_VERSION;
    snap.opened_at = None;
    assert_eq!(b.restore(&snap), Err(RestoreError::OpenWithoutTime));
    assert_eq!(b.state(), State::Closed);
}
