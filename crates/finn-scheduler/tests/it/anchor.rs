//! The scheduler scenarios of anchors.md §11.6, one test each, named after the anchor file and
//! test. Where finn deliberately differs, the test says so.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use finn_breaker::{Options, State};
use finn_scheduler::{
    CancellationToken, ComponentHealth, DEFAULT_TIMEOUT, Health, HealthAggregator, OverlapPolicy,
    RegisterError, RunNowError, RunOutcome, Scheduler, SchedulerEvent, TaskError, TaskState,
    UnknownTask,
};
use tokio::time::Instant;

use crate::util::*;

fn ok_task(s: &Scheduler, id: &str) {
    s.register(spec(id, secs(60)), |_| async { Ok(()) })
        .unwrap();
}

fn counting_task(s: &Scheduler, id: &str, fail: bool) -> Arc<AtomicU32> {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    s.register(
        spec(id, secs(60)).breaker(Options::default().reset_timeout(secs(5))),
        move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            async move {
                if fail {
                    Err(TaskError::msg("boom"))
                } else {
                    Ok(())
                }
            }
        },
    )
    .unwrap();
    calls
}

// ---- finn .claude/lib/__tests__/scheduler.test.ts -------------------------------------------

#[tokio::test(start_paused = true)]
async fn scheduler_create_scheduler_returns_a_scheduler() {
    let s = scheduler();
    assert!(s.statuses().is_empty());
    assert!(!s.is_started());
}

#[tokio::test(start_paused = true)]
async fn scheduler_register_adds_a_task() {
    let s = scheduler();
    ok_task(&s, "a");
    assert_eq!(s.status("a").unwrap().state, TaskState::Idle);
}

#[tokio::test(start_paused = true)]
async fn scheduler_register_throws_on_duplicate_id() {
    let s = scheduler();
    ok_task(&s, "a");
    let err = s
        .register(spec("a", secs(60)), |_| async { Ok(()) })
        .unwrap_err();
    assert_eq!(err, RegisterError::Duplicate { id: "a".into() });
}

#[tokio::test(start_paused = true)]
async fn scheduler_unregister_removes_a_task() {
    let s = scheduler();
    ok_task(&s, "a");
    s.unregister("a").unwrap();
    assert!(s.statuses().is_empty());
    assert_eq!(s.unregister("a"), Err(UnknownTask { id: "a".into() }));
}

#[tokio::test(start_paused = true)]
async fn scheduler_get_status_throws_for_unknown_task() {
    assert_eq!(
        scheduler().status("nope").unwrap_err().to_string(),
        "no task nope is registered"
    );
}

#[tokio::test(start_paused = true)]
async fn scheduler_get_all_statuses_returns_all_tasks() {
    let s = scheduler();
    ok_task(&s, "b");
    ok_task(&s, "a");
    let ids: Vec<String> = s.statuses().iter().map(|st| st.id.to_string()).collect();
    assert_eq!(ids, ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn scheduler_disable_prevents_task_from_running() {
    let s = scheduler();
    let calls = counting_task(&s, "a", false);
    s.disable("a").unwrap();
    assert!(matches!(
        s.run_now("a").await,
        Err(RunNowError::Disabled { .. })
    ));
    s.start().unwrap();
    tokio::time::sleep(secs(600)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(s.status("a").unwrap().state, TaskState::Disabled);
}

#[tokio::test(start_paused = true)]
async fn scheduler_enable_re_enables() {
    let s = scheduler();
    let calls = counting_task(&s, "a", false);
    s.disable("a").unwrap();
    s.enable("a").unwrap();
    s.run_now("a").await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn scheduler_register_with_enabled_false_starts_disabled() {
    let s = scheduler();
    s.register(spec("a", secs(60)).enabled(false), |_| async { Ok(()) })
        .unwrap();
    let st = s.status("a").unwrap();
    assert_eq!((st.enabled, st.state), (false, TaskState::Disabled));
}

#[tokio::test(start_paused = true)]
async fn scheduler_run_now_executes_task_immediately() {
    let s = scheduler();
    let calls = counting_task(&s, "a", false);
    let t0 = Instant::now();
    let report = s.run_now("a").await.unwrap();
    assert_eq!(
        (report.outcome, report.started),
        (RunOutcome::Succeeded, t0)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn scheduler_run_now_records_failure_state() {
    let s = scheduler();
    counting_task(&s, "a", true);
    let report = s.run_now("a").await.unwrap();
    assert_eq!(
        (report.outcome, report.error.as_deref()),
        (RunOutcome::Failed, Some("boom"))
    );
    let st = s.status("a").unwrap();
    assert_eq!(
        (st.failures, st.last_error.as_deref(), st.last_outcome),
        (1, Some("boom"), Some(RunOutcome::Failed))
    );
}

/// The anchor's PENDING → RUNNING → COMPLETED | FAILED: here `state` says where the task is and
/// `last_outcome` how the last run ended.
async fn state_walk(fail: bool) -> (TaskState, TaskState, TaskState, Option<RunOutcome>) {
    let s = scheduler();
    s.register(spec("a", secs(60)), move |_| async move {
        tokio::time::sleep(secs(1)).await;
        if fail {
            Err(TaskError::msg("boom"))
        } else {
            Ok(())
        }
    })
    .unwrap();
    let before = s.status("a").unwrap();
    let s1 = s.clone();
    let run = tokio::spawn(async move { s1.run_now("a").await });
    settle().await;
    let during = s.status("a").unwrap().state;
    run.await.unwrap().unwrap();
    let after = s.status("a").unwrap();
    assert_eq!(before.last_outcome, None);
    (before.state, during, after.state, after.last_outcome)
}

#[tokio::test(start_paused = true)]
async fn scheduler_state_pending_running_completed() {
    assert_eq!(
        state_walk(false).await,
        (
            TaskState::Idle,
            TaskState::Running,
            TaskState::Idle,
            Some(RunOutcome::Succeeded)
        )
    );
}

#[tokio::test(start_paused = true)]
async fn scheduler_state_pending_running_failed() {
    assert_eq!(
        state_walk(true).await,
        (
            TaskState::Idle,
            TaskState::Running,
            TaskState::Idle,
            Some(RunOutcome::Failed)
        )
    );
}

#[tokio::test(start_paused = true)]
async fn scheduler_calls_on_task_error_on_failure() {
    let s = scheduler();
    counting_task(&s, "a", true);
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e = errors.clone();
    s.on_event(move |ev| {
        if let SchedulerEvent::RunFinished(r) = ev
            && r.outcome == RunOutcome::Failed
        {
            e.lock()
                .unwrap()
                .push((r.task.to_string(), r.error.clone()));
        }
    });
    let _ = s.run_now("a").await;
    assert_eq!(
        *errors.lock().unwrap(),
        vec![("a".to_string(), Some("boom".to_string()))]
    );
}

#[tokio::test(start_paused = true)]
async fn scheduler_logger_info_on_register_and_error_on_failure() {
    let logs = Logs::default();
    let _guard = logs.install();
    let s = scheduler();
    counting_task(&s, "a", true);
    let _ = s.run_now("a").await;
    let text = logs.text();
    assert!(
        text.contains("INFO") && text.contains("task registered") && text.contains("task=a"),
        "{text}"
    );
    assert!(
        text.contains("ERROR") && text.contains("task run failed"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn scheduler_start_stop_toggles_running_state_and_start_is_idempotent() {
    let s = scheduler();
    s.start().unwrap();
    s.start().unwrap();
    assert!(s.is_started());
    s.stop();
    assert!(!s.is_started());
    s.stop();
}

#[tokio::test(start_paused = true)]
async fn scheduler_fr_3_1_three_tasks_at_different_intervals_fire_correctly() {
    // The anchor used runNow; here the timers themselves are checked.
    let s = scheduler();
    let log = Log::default();
    for (id, interval) in [("fast", 10), ("medium", 30), ("slow", 60)] {
        register_logging(&s, spec(id, secs(interval)), &log, ms(1));
    }
    s.start().unwrap();
    tokio::time::sleep(secs(121)).await;
    assert_eq!(
        (log.count("fast"), log.count("medium"), log.count("slow")),
        (12, 4, 2)
    );
    for id in ["fast", "medium", "slow"] {
        assert_eq!(s.run_now(id).await.unwrap().outcome, RunOutcome::Succeeded);
    }
}

#[tokio::test(start_paused = true)]
async fn scheduler_jitter_ms_accepted() {
    let s = scheduler();
    s.register(spec("a", secs(60)).jitter(secs(5)), |_| async { Ok(()) })
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn scheduler_skip_on_overlap_defaults_to_true() {
    assert_eq!(OverlapPolicy::default(), OverlapPolicy::Skip);
}

// ---- finn .claude/lib/__tests__/scheduler-cb.test.ts ----------------------------------------

#[tokio::test(start_paused = true)]
async fn scheduler_cb_status_shows_cb_state_closed_when_configured() {
    let s = scheduler();
    counting_task(&s, "a", false);
    assert_eq!(s.status("a").unwrap().breaker, Some(State::Closed));
}

#[tokio::test(start_paused = true)]
async fn scheduler_cb_status_has_no_cb_state_without_cb() {
    let s = scheduler();
    s.register(spec("a", secs(60)).no_breaker(), |_| async { Ok(()) })
        .unwrap();
    assert_eq!(s.status("a").unwrap().breaker, None);
}

#[tokio::test(start_paused = true)]
async fn scheduler_cb_opens_after_3_consecutive_failures() {
    let s = scheduler();
    counting_task(&s, "a", true);
    let mut states = Vec::new();
    for _ in 0..3 {
        let _ = s.run_now("a").await;
        states.push(s.status("a").unwrap().breaker.unwrap());
    }
    assert_eq!(states, [State::Closed, State::Closed, State::Open]);
}

#[tokio::test(start_paused = true)]
async fn scheduler_cb_skips_execution_when_open() {
    let s = scheduler();
    let calls = counting_task(&s, "a", true);
    for _ in 0..3 {
        let _ = s.run_now("a").await;
    }
    assert!(matches!(
        s.run_now("a").await,
        Err(RunNowError::BreakerOpen { .. })
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // finn fix: an open-circuit skip is not recorded as a failure (anchor weakness 7.7-4).
    assert_eq!(s.status("a").unwrap().failures, 3);
}

#[tokio::test(start_paused = true)]
async fn scheduler_cb_half_open_after_reset_timeout() {
    let s = scheduler();
    counting_task(&s, "a", true);
    for _ in 0..3 {
        let _ = s.run_now("a").await;
    }
    tokio::time::sleep(secs(5) + ms(1)).await;
    assert_eq!(s.status("a").unwrap().breaker, Some(State::HalfOpen));
}

/// Three failures, wait out the reset timeout, then probe with `probe_fails`.
async fn probe(probe_fails: bool) -> (Scheduler, finn_scheduler::RunReport) {
    let s = scheduler();
    let n = Arc::new(AtomicU32::new(0));
    let c = n.clone();
    s.register(
        spec("a", secs(60)).breaker(Options::default().reset_timeout(secs(5))),
        move |_| {
            let call = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if call < 3 || probe_fails {
                    Err(TaskError::msg("boom"))
                } else {
                    Ok(())
                }
            }
        },
    )
    .unwrap();
    for _ in 0..3 {
        let _ = s.run_now("a").await;
    }
    tokio::time::sleep(secs(5)).await;
    let report = s.run_now("a").await.unwrap();
    (s, report)
}

#[tokio::test(start_paused = true)]
async fn scheduler_cb_half_open_to_closed_on_successful_probe() {
    let (s, report) = probe(false).await;
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    assert_eq!(s.status("a").unwrap().breaker, Some(State::Closed));
}

#[tokio::test(start_paused = true)]
async fn scheduler_cb_half_open_to_open_on_failed_probe() {
    let (s, report) = probe(true).await;
    assert_eq!(report.outcome, RunOutcome::Failed);
    assert_eq!(s.status("a").unwrap().breaker, Some(State::Open));
}

#[tokio::test(start_paused = true)]
async fn scheduler_cb_success_resets_failure_count() {
    let s = scheduler();
    let n = Arc::new(AtomicU32::new(0));
    let c = n.clone();
    s.register(spec("a", secs(60)), move |_| {
        let call = c.fetch_add(1, Ordering::SeqCst);
        async move {
            if call % 3 == 2 {
                Ok(())
            } else {
                Err(TaskError::msg("boom"))
            }
        }
    })
    .unwrap();
    for _ in 0..9 {
        let _ = s.run_now("a").await;
    }
    let st = s.status("a").unwrap();
    assert_eq!(
        (st.breaker, st.breaker_failures, st.failures),
        (Some(State::Closed), Some(0), 6)
    );
}

#[tokio::test(start_paused = true)]
async fn scheduler_cb_logs_when_skipping_due_to_open_cb() {
    let logs = Logs::default();
    let _guard = logs.install();
    let s = scheduler();
    counting_task(&s, "a", true);
    for _ in 0..4 {
        let _ = s.run_now("a").await;
    }
    assert!(
        logs.text().contains("run skipped: circuit breaker"),
        "{}",
        logs.text()
    );
}

// ---- finn .claude/lib/__tests__/scheduler-mutex.test.ts -------------------------------------
// Serial order within a group, concurrency across groups and without a group: see
// exclusion::a_group_waiter_is_served_first_come_first_served and
// exclusion::different_groups_and_ungrouped_tasks_run_concurrently. Repeated here by name.

#[tokio::test(start_paused = true)]
async fn scheduler_mutex_same_group_executes_serially() {
    let s = scheduler();
    let log = Log::default();
    for id in ["a", "b"] {
        register_logging(
            &s,
            spec(id, secs(60)).group("g", finn_scheduler::GroupPolicy::Wait),
            &log,
            ms(10),
        );
    }
    let (a, b) = tokio::join!(s.run_now("a"), s.run_now("b"));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(log.labels(), ["a", "a-end", "b", "b-end"]);
}

#[tokio::test(start_paused = true)]
async fn scheduler_mutex_different_groups_and_no_group_run_concurrently() {
    let s = scheduler();
    let log = Log::default();
    register_logging(
        &s,
        spec("a", secs(60)).group("g1", finn_scheduler::GroupPolicy::Wait),
        &log,
        ms(10),
    );
    register_logging(
        &s,
        spec("b", secs(60)).group("g2", finn_scheduler::GroupPolicy::Wait),
        &log,
        ms(10),
    );
    register_logging(&s, spec("c", secs(60)), &log, ms(10));
    let _ = tokio::join!(s.run_now("a"), s.run_now("b"), s.run_now("c"));
    assert_eq!(log.labels()[..3], ["a", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn scheduler_mutex_cancel_aborts_a_running_task_via_its_token() {
    let s = scheduler();
    let seen: Arc<Mutex<Option<CancellationToken>>> = Arc::default();
    let t = seen.clone();
    s.register(spec("a", secs(60)), move |token| {
        *t.lock().unwrap() = Some(token.clone());
        async move {
            token.cancelled().await;
            Ok(())
        }
    })
    .unwrap();
    let s1 = s.clone();
    let run = tokio::spawn(async move { s1.run_now("a").await });
    settle().await;
    assert!(s.cancel("a").unwrap());
    assert_eq!(run.await.unwrap().unwrap().outcome, RunOutcome::Cancelled);
    assert!(seen.lock().unwrap().as_ref().unwrap().is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn scheduler_mutex_fn_receives_a_fresh_token_every_execution() {
    let s = scheduler();
    let tokens: Arc<Mutex<Vec<CancellationToken>>> = Arc::default();
    let t = tokens.clone();
    s.register(spec("a", secs(60)), move |token| {
        t.lock().unwrap().push(token);
        async { Ok(()) }
    })
    .unwrap();
    s.run_now("a").await.unwrap();
    let s1 = s.clone();
    let run = tokio::spawn(async move { s1.run_now("a").await });
    settle().await;
    s.cancel("a").unwrap();
    let _ = run.await;
    s.run_now("a").await.unwrap();
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), 3);
    assert!(
        tokens.iter().all(|t| !t.is_cancelled()),
        "a cancel never leaks into another run"
    );
}

#[tokio::test(start_paused = true)]
async fn scheduler_mutex_cancel_on_a_non_running_task_is_a_no_op() {
    let s = scheduler();
    ok_task(&s, "a");
    assert!(!s.cancel("a").unwrap());
    assert_eq!(s.run_now("a").await.unwrap().outcome, RunOutcome::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn scheduler_mutex_shutdown_stops_timers_and_aborts_running_tasks() {
    let s = scheduler();
    let seen: Arc<Mutex<Option<CancellationToken>>> = Arc::default();
    let t = seen.clone();
    s.register(spec("a", secs(10)).no_timeout(), move |token| {
        *t.lock().unwrap() = Some(token);
        std::future::pending()
    })
    .unwrap();
    s.start().unwrap();
    tokio::time::sleep(secs(11)).await;
    let report = s.shutdown(ms(100)).await;
    assert_eq!(report.cancelled, vec!["a".into()]);
    assert!(seen.lock().unwrap().as_ref().unwrap().is_cancelled());
    assert!(!s.is_running("a").unwrap());
    assert!(!s.is_started());
}

#[tokio::test(start_paused = true)]
async fn scheduler_mutex_shutdown_waits_for_running_tasks_to_drain() {
    let s = scheduler();
    let log = Log::default();
    register_logging(&s, spec("a", secs(60)), &log, ms(50));
    let s1 = s.clone();
    tokio::spawn(async move { s1.run_now("a").await });
    settle().await;
    let report = s.shutdown(secs(5)).await;
    assert_eq!(
        (report.completed, log.count("a-end")),
        (vec!["a".into()], 1)
    );
}

#[tokio::test(start_paused = true)]
async fn scheduler_mutex_shutdown_respects_timeout() {
    let s = scheduler();
    s.register(spec("a", secs(60)).no_timeout(), |_| std::future::pending())
        .unwrap();
    let s1 = s.clone();
    tokio::spawn(async move { s1.run_now("a").await });
    settle().await;
    let t0 = Instant::now();
    s.shutdown(ms(100)).await;
    assert!(Instant::now() - t0 < ms(500));
}

#[tokio::test(start_paused = true)]
async fn scheduler_mutex_shutdown_is_idempotent() {
    let s = scheduler();
    ok_task(&s, "a");
    assert_eq!(s.shutdown(secs(1)).await, s.shutdown(secs(1)).await);
}

#[tokio::test(start_paused = true)]
async fn scheduler_mutex_shutdown_logs_shutting_down_and_complete() {
    let logs = Logs::default();
    let _guard = logs.install();
    scheduler().shutdown(secs(1)).await;
    let text = logs.text();
    assert!(
        text.contains("scheduler shutting down") && text.contains("scheduler shutdown complete"),
        "{text}"
    );
}

// ---- finn .claude/lib/__tests__/review-fixes.test.ts (scheduler parts) ----------------------

#[tokio::test(start_paused = true)]
async fn review_fixes_unregister_during_execution_prevents_rescheduling() {
    let s = scheduler();
    let log = Log::default();
    register_logging(&s, spec("a", secs(10)), &log, secs(5));
    s.start().unwrap();
    tokio::time::sleep(secs(12)).await;
    s.unregister("a").unwrap();
    tokio::time::sleep(secs(60)).await;
    assert_eq!(log.count("a"), 1);
}

#[tokio::test(start_paused = true)]
async fn review_fixes_cancellation_does_not_count_toward_cb_failures() {
    let s = scheduler();
    s.register(spec("a", secs(60)), |token| async move {
        token.cancelled().await;
        Err(TaskError::msg("aborted"))
    })
    .unwrap();
    for _ in 0..5 {
        let s1 = s.clone();
        let run = tokio::spawn(async move { s1.run_now("a").await });
        settle().await;
        s.cancel("a").unwrap();
        assert_eq!(run.await.unwrap().unwrap().outcome, RunOutcome::Cancelled);
    }
    let st = s.status("a").unwrap();
    assert_eq!(
        (st.breaker, st.breaker_failures, st.cancellations),
        (Some(State::Closed), Some(0), 5)
    );
}

#[tokio::test(start_paused = true)]
async fn review_fixes_real_failures_still_trip_the_cb() {
    let s = scheduler();
    counting_task(&s, "a", true);
    for _ in 0..3 {
        let _ = s.run_now("a").await;
    }
    assert_eq!(s.status("a").unwrap().breaker, Some(State::Open));
}

#[tokio::test(start_paused = true)]
async fn review_fixes_start_triggers_execution_via_timer() {
    let s = scheduler();
    let calls = counting_task(&s, "a", false);
    s.start().unwrap();
    tokio::time::sleep(secs(61)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn review_fixes_stop_halts_timer_execution() {
    let s = scheduler();
    let calls = counting_task(&s, "a", false);
    s.start().unwrap();
    tokio::time::sleep(secs(61)).await;
    s.stop();
    tokio::time::sleep(secs(600)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn review_fixes_disabled_task_does_not_fire_via_timer() {
    let s = scheduler();
    let calls = counting_task(&s, "a", false);
    s.disable("a").unwrap();
    s.start().unwrap();
    tokio::time::sleep(secs(600)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// ---- finn .claude/lib/__tests__/timeout-enforcer.test.ts -------------------------------------
// finn has no separate TimeoutEnforcer: every task has a per-run timeout that really cancels.
// The anchor's per-model timeouts (opus 120 s, haiku 10 s) are agent-runtime policy: the runtime
// picks the task's timeout; there is nothing model-specific in a scheduler.

#[tokio::test(start_paused = true)]
async fn timeout_enforcer_run_returns_fn_result_and_passes_a_token() {
    let s = scheduler();
    s.register(spec("a", secs(60)), |token: CancellationToken| async move {
        assert!(!token.is_cancelled());
        Ok(())
    })
    .unwrap();
    assert_eq!(s.run_now("a").await.unwrap().outcome, RunOutcome::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn timeout_enforcer_times_out_when_fn_exceeds_timeout() {
    let s = scheduler();
    s.register(spec("a", secs(60)).timeout(ms(100)), |_| async {
        tokio::time::sleep(secs(1)).await;
        Ok(())
    })
    .unwrap();
    let report = s.run_now("a").await.unwrap();
    assert_eq!(
        (report.outcome, report.error.as_deref()),
        (RunOutcome::TimedOut, Some("timed out after 100ms"))
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_enforcer_per_task_timeout_overrides_the_default() {
    assert_eq!(DEFAULT_TIMEOUT, secs(300));
    let s = scheduler();
    s.register(spec("a", secs(600)), |_| async {
        tokio::time::sleep(secs(301)).await;
        Ok(())
    })
    .unwrap();
    s.register(spec("b", secs(600)).timeout(secs(400)), |_| async {
        tokio::time::sleep(secs(301)).await;
        Ok(())
    })
    .unwrap();
    assert_eq!(s.run_now("a").await.unwrap().outcome, RunOutcome::TimedOut);
    assert_eq!(s.run_now("b").await.unwrap().outcome, RunOutcome::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn timeout_enforcer_external_cancel_is_not_a_timeout() {
    let s = scheduler();
    s.register(spec("a", secs(60)).timeout(secs(10)), |_| {
        std::future::pending()
    })
    .unwrap();
    let s1 = s.clone();
    let run = tokio::spawn(async move { s1.run_now("a").await });
    tokio::time::sleep(secs(1)).await;
    s.cancel("a").unwrap();
    assert_eq!(run.await.unwrap().unwrap().outcome, RunOutcome::Cancelled);
    assert_eq!(s.status("a").unwrap().timeouts, 0);
}

#[tokio::test(start_paused = true)]
async fn timeout_enforcer_already_cancelled_run_stops_immediately() {
    // The anchor's "already-aborted external signal": a run cancelled before its handler
    // starts (here: while waiting for its group) never calls the handler.
    let s = scheduler();
    let log = Log::default();
    register_logging(
        &s,
        spec("holder", secs(60)).group("g", finn_scheduler::GroupPolicy::Wait),
        &log,
        secs(30),
    );
    register_logging(
        &s,
        spec("a", secs(60)).group("g", finn_scheduler::GroupPolicy::Wait),
        &log,
        secs(1),
    );
    let (s1, s2) = (s.clone(), s.clone());
    tokio::spawn(async move { s1.run_now("holder").await });
    settle().await;
    let run = tokio::spawn(async move { s2.run_now("a").await });
    settle().await;
    let t0 = Instant::now();
    s.cancel("a").unwrap();
    assert_eq!(run.await.unwrap().unwrap().outcome, RunOutcome::Cancelled);
    assert_eq!(Instant::now(), t0);
    assert_eq!(log.count("a"), 0);
}

#[tokio::test(start_paused = true)]
async fn timeout_enforcer_fn_errors_propagate_unchanged() {
    let s = scheduler();
    s.register(spec("a", secs(60)), |_| async {
        Err(std::io::Error::other("disk on fire").into())
    })
    .unwrap();
    let report = s.run_now("a").await.unwrap();
    assert_eq!(
        (report.outcome, report.error.as_deref()),
        (RunOutcome::Failed, Some("disk on fire"))
    );
}

// ---- finn .claude/lib/__tests__/health-aggregator.test.ts ------------------------------------

fn component(name: &str, health: Health) -> ComponentHealth {
    match health {
        Health::Healthy => ComponentHealth::healthy(name),
        Health::Degraded => ComponentHealth::degraded(name, "slow"),
        Health::Unhealthy => ComponentHealth::unhealthy(name, "down"),
    }
}

async fn overall(healths: &[Health]) -> Health {
    let h = HealthAggregator::new();
    for (i, health) in healths.iter().enumerate() {
        let c = component(&format!("c{i}"), *health);
        h.add_fn(format!("c{i}"), move || {
            let c = c.clone();
            async move { Ok(c) }
        });
    }
    h.check().await.overall
}

#[tokio::test(start_paused = true)]
async fn health_aggregator_factory() {
    let report = HealthAggregator::default().check().await;
    assert!(report.components.is_empty());
}

#[tokio::test(start_paused = true)]
async fn health_aggregator_healthy_when_all_healthy() {
    assert_eq!(
        overall(&[Health::Healthy, Health::Healthy]).await,
        Health::Healthy
    );
}

#[tokio::test(start_paused = true)]
async fn health_aggregator_degraded_if_any_degraded() {
    assert_eq!(
        overall(&[Health::Healthy, Health::Degraded]).await,
        Health::Degraded
    );
}

#[tokio::test(start_paused = true)]
async fn health_aggregator_unhealthy_if_any_unhealthy() {
    assert_eq!(
        overall(&[Health::Healthy, Health::Unhealthy]).await,
        Health::Unhealthy
    );
}

#[tokio::test(start_paused = true)]
async fn health_aggregator_unhealthy_beats_degraded() {
    assert_eq!(
        overall(&[Health::Degraded, Health::Unhealthy, Health::Healthy]).await,
        Health::Unhealthy
    );
}

#[tokio::test(start_paused = true)]
async fn health_aggregator_healthy_with_no_reporters() {
    assert_eq!(overall(&[]).await, Health::Healthy);
}

#[tokio::test(start_paused = true)]
async fn health_aggregator_throwing_reporter_counts_as_unhealthy() {
    let h = HealthAggregator::new();
    h.add_fn("r2", || async { Err("connection refused".into()) });
    let report = h.check().await;
    assert_eq!(report.overall, Health::Unhealthy);
    assert_eq!(
        report.reasons(),
        ["r2: health check failed: connection refused"]
    );
}

#[tokio::test(start_paused = true)]
async fn health_aggregator_async_reporters_supported_and_run_in_parallel() {
    let h = HealthAggregator::new();
    for name in ["a", "b", "c"] {
        h.add_fn(name, move || async move {
            tokio::time::sleep(secs(1)).await;
            Ok(ComponentHealth::healthy(name))
        });
    }
    let t0 = Instant::now();
    assert_eq!(h.check().await.components.len(), 3);
    assert_eq!(Instant::now() - t0, secs(1));
}

#[tokio::test(start_paused = true)]
async fn health_aggregator_per_subsystem_details_returned() {
    let h = HealthAggregator::new();
    h.add_fn("wal", || async {
        Ok(ComponentHealth::healthy("wal").with_detail("segments", 12))
    });
    h.report(
        ComponentHealth::degraded("recovery", "template fallback")
            .with_detail("source", "template"),
    );
    let report = h.check().await;
    assert_eq!(report.component("wal").unwrap().details["segments"], "12");
    assert_eq!(
        report.component("recovery").unwrap().details["source"],
        "template"
    );
    assert_eq!(report.overall, Health::Degraded);
}
