//! Graceful shutdown with a deadline.

use std::sync::{Arc, Mutex};

use finn_scheduler::{
    CancellationToken, RegisterError, RunNowError, RunOutcome, ShutdownReport, StartError,
    TaskError, TaskId,
};
use tokio::time::Instant;

use crate::util::*;

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_quick_runs_and_cancels_what_outlives_the_deadline() {
    let s = scheduler();
    let log = Log::default();
    register_logging(&s, spec("quick", secs(3600)), &log, ms(50));
    let token: Arc<Mutex<Option<CancellationToken>>> = Arc::default();
    let t = token.clone();
    s.register(spec("forever", secs(3600)).no_timeout(), move |tok| {
        *t.lock().unwrap() = Some(tok);
        std::future::pending::<Result<(), TaskError>>()
    })
    .unwrap();
    let (s1, s2) = (s.clone(), s.clone());
    let quick = tokio::spawn(async move { s1.run_now("quick").await });
    let forever = tokio::spawn(async move { s2.run_now("forever").await });
    settle().await;
    let t0 = Instant::now();
    let report = s.shutdown(ms(100)).await;
    assert_eq!(
        Instant::now() - t0,
        ms(100),
        "returns at the deadline, not later"
    );
    assert_eq!(
        report,
        ShutdownReport {
            completed: vec![TaskId::from("quick")],
            cancelled: vec![TaskId::from("forever")],
            abandoned: vec![]
        }
    );
    assert!(token.lock().unwrap().as_ref().unwrap().is_cancelled());
    assert!(!s.is_running("forever").unwrap());
    assert_eq!(quick.await.unwrap().unwrap().outcome, RunOutcome::Succeeded);
    assert_eq!(
        forever.await.unwrap().unwrap().outcome,
        RunOutcome::Cancelled
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_as_soon_as_runs_drain() {
    let s = scheduler();
    let log = Log::default();
    register_logging(&s, spec("t", secs(3600)), &log, ms(50));
    let s1 = s.clone();
    tokio::spawn(async move { s1.run_now("t").await });
    settle().await;
    let t0 = Instant::now();
    let report = s.shutdown(secs(5)).await;
    assert_eq!(Instant::now() - t0, ms(50));
    assert_eq!(report.completed, vec![TaskId::from("t")]);
    assert!(report.cancelled.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_timers_is_idempotent_and_closes_the_scheduler() {
    let s = scheduler();
    let log = Log::default();
    register_logging(&s, spec("t", secs(10)), &log, ms(1));
    s.start().unwrap();
    let (a, b) = tokio::join!(s.shutdown(secs(1)), s.shutdown(secs(1)));
    assert_eq!(a, b);
    assert!(!s.is_started());
    tokio::time::sleep(secs(100)).await;
    assert_eq!(log.count("t"), 0, "no timer fires after shutdown");
    assert_eq!(s.shutdown(secs(1)).await, a);
    assert!(matches!(s.run_now("t").await, Err(RunNowError::ShutDown)));
    assert_eq!(s.start(), Err(StartError::ShutDown));
    assert_eq!(
        s.register(spec("u", secs(10)), |_| async { Ok(()) }),
        Err(RegisterError::ShutDown)
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_runs_still_waiting_for_their_group() {
    use finn_scheduler::GroupPolicy;
    let s = scheduler();
    let log = Log::default();
    register_logging(
        &s,
        spec("holder", secs(3600))
            .group("g", GroupPolicy::Wait)
            .no_timeout(),
        &log,
        secs(3600),
    );
    register_logging(
        &s,
        spec("waiter", secs(3600)).group("g", GroupPolicy::Wait),
        &log,
        secs(1),
    );
    let (s1, s2) = (s.clone(), s.clone());
    tokio::spawn(async move { s1.run_now("holder").await });
    settle().await;
    let waiter = tokio::spawn(async move { s2.run_now("waiter").await });
    settle().await;
    let report = s.shutdown(secs(1)).await;
    assert_eq!(
        report.cancelled,
        vec![TaskId::from("holder"), TaskId::from("waiter")]
    );
    assert_eq!(
        waiter.await.unwrap().unwrap().outcome,
        RunOutcome::Cancelled
    );
    assert_eq!(log.count("waiter"), 0);
}
