//! Mutual-exclusion groups and overlap policies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use finn_scheduler::{
    GroupPolicy, OverlapPolicy, RunNowError, RunOutcome, TaskError, TaskSpec, TaskState, Trigger,
};
use tokio::time::Instant;

use crate::util::*;

/// Registers a task that tracks how many tasks of `in_group` run at once.
fn register_counting(
    s: &finn_scheduler::Scheduler,
    spec: TaskSpec,
    in_group: &Arc<AtomicUsize>,
    max: &Arc<AtomicUsize>,
    work: std::time::Duration,
) {
    let (in_group, max) = (in_group.clone(), max.clone());
    s.register(spec, move |_| {
        let (in_group, max) = (in_group.clone(), max.clone());
        async move {
            let now = in_group.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(work).await;
            in_group.fetch_sub(1, Ordering::SeqCst);
            Ok::<(), TaskError>(())
        }
    })
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn mutual_exclusion_never_runs_two_of_a_group_at_once() {
    let s = scheduler();
    let (in_group, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // The runtime's sync group: runs long enough that schedules collide constantly.
    for (id, interval, work) in [("sync", 3, 2), ("archive", 7, 5), ("prune", 11, 4)] {
        let spec = spec(id, secs(interval))
            .jitter(secs(1))
            .group("sync", GroupPolicy::Wait)
            .timeout(secs(60));
        register_counting(&s, spec, &in_group, &max, secs(work));
    }
    s.start().unwrap();
    tokio::time::sleep(secs(2000)).await;
    assert_eq!(max.load(Ordering::SeqCst), 1);
    let runs: u64 = s.statuses().iter().map(|st| st.runs).sum();
    assert!(runs > 300, "the group made progress: {runs} runs");
    // Nobody starved: every task ran many times.
    for st in s.statuses() {
        assert!(st.runs > 50, "{} ran {} times", st.id, st.runs);
    }
}

#[tokio::test(start_paused = true)]
async fn a_group_waiter_is_served_first_come_first_served() {
    let s = scheduler();
    let log = Log::default();
    for id in ["a", "b", "c"] {
        register_logging(
            &s,
            spec(id, secs(3600)).group("g", GroupPolicy::Wait),
            &log,
            secs(1),
        );
    }
    let (ra, rb, rc) = tokio::join!(s.run_now("a"), s.run_now("b"), s.run_now("c"));
    assert!(ra.is_ok() && rb.is_ok() && rc.is_ok());
    assert_eq!(log.labels(), vec!["a", "a-end", "b", "b-end", "c", "c-end"]);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_run_reports_waiting_for_group_and_its_timeout_starts_after_the_wait() {
    let s = scheduler();
    let log = Log::default();
    register_logging(
        &s,
        spec("long", secs(3600)).group("g", GroupPolicy::Wait),
        &log,
        secs(30),
    );
    register_logging(
        &s,
        spec("short", secs(3600))
            .group("g", GroupPolicy::Wait)
            .timeout(secs(5)),
        &log,
        secs(1),
    );
    let s2 = s.clone();
    let long = tokio::spawn(async move { s2.run_now("long").await });
    settle().await;
    let s3 = s.clone();
    let short = tokio::spawn(async move { s3.run_now("short").await });
    settle().await;
    assert_eq!(s.status("short").unwrap().state, TaskState::WaitingForGroup);
    long.await.unwrap().unwrap();
    let report = short.await.unwrap().unwrap();
    assert_eq!(
        report.outcome,
        RunOutcome::Succeeded,
        "30 s in the queue is not 5 s of run time"
    );
}

#[tokio::test(start_paused = true)]
async fn group_skip_policy_skips_only_this_tick() {
    let s = scheduler();
    let log = Log::default();
    register_logging(
        &s,
        spec("archive", secs(3600)).group("sync", GroupPolicy::Wait),
        &log,
        secs(25),
    );
    register_logging(
        &s,
        spec("sync", secs(10)).group("sync", GroupPolicy::Skip),
        &log,
        secs(1),
    );
    let origin = Instant::now();
    s.start().unwrap();
    let s2 = s.clone();
    tokio::spawn(async move { s2.run_now("archive").await });
    // archive holds the group 0..25 s: sync's ticks at 10 and 20 are skipped, 30 runs.
    tokio::time::sleep_until(origin + secs(35)).await;
    let st = s.status("sync").unwrap();
    assert_eq!((st.skipped_group, st.runs), (2, 1));
    assert_eq!(log.times("sync"), vec![origin + secs(30)]);
    let s4 = s.clone();
    tokio::spawn(async move { s4.run_now("archive").await });
    settle().await;
    assert!(matches!(
        s.run_now("sync").await,
        Err(RunNowError::GroupBusy { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn different_groups_and_ungrouped_tasks_run_concurrently() {
    let s = scheduler();
    let log = Log::default();
    register_logging(
        &s,
        spec("a", secs(3600)).group("g1", GroupPolicy::Wait),
        &log,
        secs(1),
    );
    register_logging(
        &s,
        spec("b", secs(3600)).group("g2", GroupPolicy::Wait),
        &log,
        secs(1),
    );
    register_logging(&s, spec("c", secs(3600)), &log, secs(1));
    register_logging(&s, spec("d", secs(3600)), &log, secs(1));
    let t0 = Instant::now();
    let (a, b, c, d) = tokio::join!(
        s.run_now("a"),
        s.run_now("b"),
        s.run_now("c"),
        s.run_now("d")
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok() && d.is_ok());
    assert_eq!(
        Instant::now() - t0,
        secs(1),
        "all four ran at the same time"
    );
}

#[tokio::test(start_paused = true)]
async fn overlap_skip_drops_ticks_and_run_now_while_running() {
    let s = scheduler();
    let log = Log::default();
    // Runs take 25 s on a 10 s schedule.
    register_logging(&s, spec("t", secs(10)).timeout(secs(60)), &log, secs(25));
    let origin = Instant::now();
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(12)).await;
    assert!(matches!(
        s.run_now("t").await,
        Err(RunNowError::AlreadyRunning { .. })
    ));
    tokio::time::sleep_until(origin + secs(41)).await;
    // Run at 10 (ends 35); ticks at 20, 30 skipped, plus the run_now; next run at 40.
    assert_eq!(log.times("t"), vec![origin + secs(10), origin + secs(40)]);
    assert_eq!(s.status("t").unwrap().skipped_overlap, 3);
}

#[tokio::test(start_paused = true)]
async fn overlap_queue_one_runs_one_queued_run_after_the_current_one() {
    let s = scheduler();
    let log = Log::default();
    register_logging(
        &s,
        spec("t", secs(3600)).overlap(OverlapPolicy::QueueOne),
        &log,
        secs(5),
    );
    let t0 = Instant::now();
    let s1 = s.clone();
    let first = tokio::spawn(async move { s1.run_now("t").await });
    settle().await;
    // Two more requests while running: they share the single queued run.
    let (second, third) = tokio::join!(s.run_now("t"), s.run_now("t"));
    let first = first.await.unwrap().unwrap();
    let (second, third) = (second.unwrap(), third.unwrap());
    assert_eq!(first.trigger, Trigger::Manual);
    assert_eq!(second.trigger, Trigger::Queued);
    assert_eq!(second, third);
    assert_eq!(second.started, t0 + secs(5));
    assert_eq!(log.times("t"), vec![t0, t0 + secs(5)]);
}
