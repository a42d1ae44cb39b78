//! Control calls while runs are in flight.

use finn_scheduler::{RunNowError, RunOutcome, TaskState};
use tokio::time::Instant;

use crate::util::*;

#[tokio::test(start_paused = true)]
async fn unregister_during_a_run_lets_it_finish_and_never_reschedules() {
    let s = scheduler();
    let log = Log::default();
    register_logging(&s, spec("t", secs(10)), &log, secs(5));
    let origin = Instant::now();
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(12)).await;
    assert!(s.is_running("t").unwrap());
    s.unregister("t").unwrap();
    tokio::time::sleep_until(origin + secs(100)).await;
    assert_eq!(log.labels(), vec!["t", "t-end"]);
    assert!(s.status("t").is_err());
    // The id is free again.
    register_logging(&s, spec("t", secs(10)), &log, secs(1));
}

#[tokio::test(start_paused = true)]
async fn disable_during_a_run_sticks_after_the_run_ends() {
    let s = scheduler();
    let log = Log::default();
    register_logging(&s, spec("t", secs(10)), &log, secs(5));
    let origin = Instant::now();
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(12)).await;
    s.disable("t").unwrap();
    assert_eq!(s.status("t").unwrap().state, TaskState::Running);
    tokio::time::sleep_until(origin + secs(100)).await;
    assert_eq!(log.count("t"), 1);
    let st = s.status("t").unwrap();
    assert_eq!(
        (st.state, st.enabled, st.next_run),
        (TaskState::Disabled, false, None)
    );
    assert_eq!(st.last_outcome, Some(RunOutcome::Succeeded));
    assert!(matches!(
        s.run_now("t").await,
        Err(RunNowError::Disabled { .. })
    ));
    // Enabling resumes on the original grid.
    s.enable("t").unwrap();
    assert_eq!(s.status("t").unwrap().next_run, Some(origin + secs(110)));
    tokio::time::sleep_until(origin + secs(111)).await;
    assert_eq!(log.times("t")[1], origin + secs(110));
}

#[tokio::test(start_paused = true)]
async fn disable_or_unregister_drops_a_queued_run() {
    use finn_scheduler::OverlapPolicy;
    let s = scheduler();
    let log = Log::default();
    register_logging(
        &s,
        spec("t", secs(3600)).overlap(OverlapPolicy::QueueOne),
        &log,
        secs(5),
    );
    let s1 = s.clone();
    let first = tokio::spawn(async move { s1.run_now("t").await });
    settle().await;
    let s2 = s.clone();
    let queued = tokio::spawn(async move { s2.run_now("t").await });
    settle().await;
    s.disable("t").unwrap();
    assert!(matches!(
        queued.await.unwrap(),
        Err(RunNowError::Dropped { .. })
    ));
    assert_eq!(first.await.unwrap().unwrap().outcome, RunOutcome::Succeeded);
    assert_eq!(log.count("t"), 1);
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_a_run_and_a_cooperative_handler_sees_its_token() {
    let s = scheduler();
    s.register(spec("t", secs(3600)), |token| async move {
        token.cancelled().await;
        Err(finn_scheduler::TaskError::msg("observed cancellation"))
    })
    .unwrap();
    let s1 = s.clone();
    let run = tokio::spawn(async move { s1.run_now("t").await });
    settle().await;
    assert!(s.cancel("t").unwrap());
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.outcome, RunOutcome::Cancelled);
    let st = s.status("t").unwrap();
    assert_eq!(
        (st.cancellations, st.failures, st.breaker_failures),
        (1, 0, Some(0))
    );
    assert!(
        !s.cancel("t").unwrap(),
        "cancel with nothing running is a no-op"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_a_failed_run_not_a_dead_scheduler() {
    let s = scheduler();
    s.register(spec("t", secs(10)), |_| async { panic!("handler bug") })
        .unwrap();
    let report = s.run_now("t").await.unwrap();
    assert_eq!(report.outcome, RunOutcome::Panicked);
    assert_eq!(
        report.error.as_deref(),
        Some("handler panicked: handler bug")
    );
    assert_eq!(s.status("t").unwrap().failures, 1);
    assert_eq!(s.run_now("t").await.unwrap().outcome, RunOutcome::Panicked);
}

#[tokio::test(start_paused = true)]
async fn stop_then_start_replans_from_the_new_start() {
    let s = scheduler();
    let log = Log::default();
    register_logging(&s, spec("t", secs(10)), &log, ms(1));
    let origin = Instant::now();
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(15)).await;
    s.stop();
    assert_eq!(s.status("t").unwrap().next_run, None);
    tokio::time::sleep_until(origin + secs(53)).await;
    assert_eq!(log.count("t"), 1);
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(64)).await;
    assert_eq!(log.times("t"), vec![origin + secs(10), origin + secs(63)]);
}
