//! Per-task breakers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use finn_breaker::{Options, State};
use finn_scheduler::{RunNowError, SchedulerEvent, SkipReason, TaskError, TaskState};
use tokio::time::Instant;

use crate::util::*;

/// A task that fails while `failing` is set, logging each call.
fn register_flaky(s: &finn_scheduler::Scheduler, log: &Log, failing: &Arc<AtomicBool>) {
    let (log, failing) = (log.clone(), failing.clone());
    s.register(
        spec("t", secs(10)).breaker(Options::default().reset_timeout(secs(60))),
        move |_| {
            let (log, fail) = (log.clone(), failing.load(Ordering::SeqCst));
            async move {
                log.push("call");
                if fail {
                    Err(TaskError::msg("dependency down"))
                } else {
                    Ok(())
                }
            }
        },
    )
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_after_failures_skips_ticks_and_probes_after_the_reset_timeout() {
    let s = scheduler();
    let log = Log::default();
    let failing = Arc::new(AtomicBool::new(true));
    register_flaky(&s, &log, &failing);
    let events = Log::default();
    let e = events.clone();
    s.on_event(move |ev| match ev {
        SchedulerEvent::Breaker { transition, .. } => {
            e.push(format!("{}->{}", transition.from, transition.to))
        }
        SchedulerEvent::Skipped {
            reason: SkipReason::BreakerOpen,
            ..
        } => e.push("skip"),
        _ => {}
    });
    let origin = Instant::now();
    s.start().unwrap();
    // Failures at 10, 20, 30 open the circuit at 30 s.
    tokio::time::sleep_until(origin + secs(31)).await;
    let st = s.status("t").unwrap();
    assert_eq!(
        (st.breaker, st.state, st.failures),
        (Some(State::Open), TaskState::CircuitOpen, 3)
    );
    assert!(matches!(
        s.run_now("t").await,
        Err(RunNowError::BreakerOpen { .. })
    ));
    // Ticks at 40..80 are skipped, not failed; the reset timeout counts from 30 s, so 90 probes.
    failing.store(false, Ordering::SeqCst);
    tokio::time::sleep_until(origin + secs(91)).await;
    let calls: Vec<_> = log.times("call").iter().map(|t| *t - origin).collect();
    assert_eq!(calls, vec![secs(10), secs(20), secs(30), secs(90)]);
    let st = s.status("t").unwrap();
    assert_eq!(
        (st.breaker, st.failures, st.skipped_breaker),
        (Some(State::Closed), 3, 6)
    );
    let ev = events.labels();
    assert_eq!(ev.first().map(String::as_str), Some("closed->open"));
    assert_eq!(ev.iter().filter(|l| *l == "skip").count(), 6);
    assert_eq!(
        &ev[ev.len() - 2..],
        ["open->half-open", "half-open->closed"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_another_reset_timeout() {
    let s = scheduler();
    let log = Log::default();
    let failing = Arc::new(AtomicBool::new(true));
    register_flaky(&s, &log, &failing);
    let origin = Instant::now();
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(95)).await;
    assert_eq!(
        s.status("t").unwrap().breaker,
        Some(State::Open),
        "probe at 90 failed"
    );
    failing.store(false, Ordering::SeqCst);
    tokio::time::sleep_until(origin + secs(151)).await;
    let calls: Vec<_> = log.times("call").iter().map(|t| *t - origin).collect();
    assert_eq!(
        calls,
        vec![secs(10), secs(20), secs(30), secs(90), secs(150)]
    );
    assert_eq!(s.status("t").unwrap().breaker, Some(State::Closed));
}

#[tokio::test(start_paused = true)]
async fn retry_after_from_a_handler_holds_the_task_breaker_open() {
    let s = scheduler();
    let log = Log::default();
    let l = log.clone();
    s.register(spec("t", secs(10)), move |_| {
        let l = l.clone();
        async move {
            l.push("call");
            if l.count("call") == 1 {
                Err(TaskError::msg("429 too many requests").retry_after(secs(45)))
            } else {
                Ok(())
            }
        }
    })
    .unwrap();
    let origin = Instant::now();
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(61)).await;
    let calls: Vec<_> = log.times("call").iter().map(|t| *t - origin).collect();
    // Held open 10..55 s: ticks 20..50 skipped; 60 probes and closes.
    assert_eq!(calls, vec![secs(10), secs(60)]);
    let st = s.status("t").unwrap();
    assert_eq!((st.breaker, st.skipped_breaker), (Some(State::Closed), 4));
}

#[tokio::test(start_paused = true)]
async fn breaker_state_can_be_persisted_and_restored_through_the_scheduler() {
    let s = scheduler();
    s.register(spec("t", secs(10)), |_| async {
        Err(TaskError::msg("down"))
    })
    .unwrap();
    for _ in 0..3 {
        let _ = s.run_now("t").await;
    }
    let snapshot = s.breaker("t").unwrap().unwrap().snapshot();
    assert_eq!(snapshot.state, State::Open);
    let fresh = scheduler();
    fresh
        .register(spec("t", secs(10)), |_| async { Ok(()) })
        .unwrap();
    fresh
        .breaker("t")
        .unwrap()
        .unwrap()
        .restore(&snapshot)
        .unwrap();
    assert!(matches!(
        fresh.run_now("t").await,
        Err(RunNowError::BreakerOpen { .. })
    ));
}
