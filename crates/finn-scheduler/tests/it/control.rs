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

#[tokio::test(start_paused = true)]
async fn register_from_a_thread_outside_the_runtime_while_started() {
    let s = scheduler();
    s.start().unwrap();
    let log = Log::default();
    let (s1, l1) = (s.clone(), log.clone());
    std::thread::spawn(move || register_logging(&s1, spec("t", secs(10)), &l1, ms(1)))
        .join()
        .unwrap();
    tokio::time::sleep(secs(11)).await;
    assert_eq!(log.count("t"), 1);
}

#[tokio::test(start_paused = true)]
async fn the_default_task_table_matches_the_runtime_and_registers() {
    use finn_scheduler::table::{
        DEFAULT_TASKS, GIT_ARCHIVE, HEALTH_CHECK, OBJECT_STORE_SYNC, SYNC_GROUP, WAL_PRUNE,
    };
    assert_eq!(
        (OBJECT_STORE_SYNC.interval, OBJECT_STORE_SYNC.jitter),
        (secs(30), secs(5))
    );
    assert_eq!(
        (GIT_ARCHIVE.interval, GIT_ARCHIVE.jitter),
        (secs(3600), secs(300))
    );
    assert_eq!(
        (WAL_PRUNE.interval, WAL_PRUNE.jitter),
        (secs(3600), secs(300))
    );
    assert_eq!(
        (HEALTH_CHECK.interval, HEALTH_CHECK.jitter),
        (secs(300), secs(30))
    );
    // Sync, archive and prune exclude each other (anchor weakness 7.7-4); health does not wait.
    for row in [OBJECT_STORE_SYNC, GIT_ARCHIVE, WAL_PRUNE] {
        assert_eq!(row.group, Some(SYNC_GROUP));
    }
    assert_eq!(HEALTH_CHECK.group, None);
    let s = scheduler();
    for row in DEFAULT_TASKS {
        s.register(row.spec(), |_| async { Ok(()) }).unwrap();
    }
    s.start().unwrap();
    tokio::time::sleep(secs(2 * 3600 + 360)).await;
    let runs: Vec<(String, u64)> = s
        .statuses()
        .iter()
        .map(|st| (st.id.to_string(), st.runs))
        .collect();
    let sync_runs = runs
        .iter()
        .find(|(id, _)| id == "object_store_sync")
        .unwrap()
        .1;
    assert!((240..=264).contains(&sync_runs), "{runs:?}");
    assert!(runs.iter().all(|(_, n)| *n >= 2), "{runs:?}");
}
