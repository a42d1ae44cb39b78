//! Timeouts that really cancel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use finn_scheduler::{CancellationToken, RunOutcome, TaskError};
use tokio::time::Instant;

use crate::util::*;

/// Sets its flag when dropped: proves the handler future was dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn timeout_cancels_a_handler_that_ignores_its_token_and_counts_it_as_timed_out() {
    let s = scheduler();
    let dropped = Arc::new(AtomicBool::new(false));
    let token_seen: Arc<Mutex<Option<CancellationToken>>> = Arc::default();
    let (d, t) = (dropped.clone(), token_seen.clone());
    s.register(spec("hang", secs(60)).timeout(secs(5)), move |token| {
        *t.lock().unwrap() = Some(token);
        let flag = DropFlag(d.clone());
        async move {
            let _flag = flag;
            // Awaits something that never completes and never looks at the token.
            std::future::pending::<()>().await;
            Ok::<(), TaskError>(())
        }
    })
    .unwrap();
    let t0 = Instant::now();
    let report = s.run_now("hang").await.unwrap();
    assert_eq!(report.outcome, RunOutcome::TimedOut);
    assert_eq!(report.finished - report.started, secs(5));
    assert_eq!(Instant::now() - t0, secs(5));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the handler future must be dropped"
    );
    assert!(
        token_seen.lock().unwrap().as_ref().unwrap().is_cancelled(),
        "the token must be cancelled"
    );
    let status = s.status("hang").unwrap();
    assert_eq!((status.timeouts, status.failures, status.runs), (1, 0, 1));
    assert_eq!(
        status.breaker_failures,
        Some(1),
        "a timeout is a breaker failure"
    );
    assert!(status.last_error.unwrap().contains("timed out after 5s"));
    assert!(!s.is_running("hang").unwrap());
}

#[tokio::test(start_paused = true)]
async fn the_token_is_cancelled_before_the_handler_future_is_dropped() {
    // Work the handler spawned elsewhere (spawn_blocking, child tasks) only has the token, so it
    // must already be cancelled when the handler's own future is dropped.
    let s = scheduler();
    let log = Log::default();
    let l = log.clone();
    s.register(spec("t", secs(60)).timeout(secs(1)), move |token| {
        struct Guard(Log, CancellationToken);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.push(format!(
                    "dropped; token cancelled: {}",
                    self.1.is_cancelled()
                ));
            }
        }
        let guard = Guard(l.clone(), token);
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok::<(), TaskError>(())
        }
    })
    .unwrap();
    s.run_now("t").await.unwrap();
    assert_eq!(log.labels(), vec!["dropped; token cancelled: true"]);
}

#[tokio::test(start_paused = true)]
async fn scheduled_runs_time_out_too_and_the_next_tick_runs_normally() {
    let s = scheduler();
    let log = Log::default();
    let l = log.clone();
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    s.register(spec("t", secs(10)).timeout(secs(3)), move |_| {
        let (l, n) = (l.clone(), c.fetch_add(1, Ordering::SeqCst));
        async move {
            l.push("start");
            if n == 0 {
                std::future::pending::<()>().await;
            }
            Ok::<(), TaskError>(())
        }
    })
    .unwrap();
    let origin = Instant::now();
    s.start().unwrap();
    tokio::time::sleep_until(origin + secs(25)).await;
    let status = s.status("t").unwrap();
    assert_eq!((status.runs, status.timeouts, status.successes), (2, 1, 1));
    assert_eq!(
        log.times("start"),
        vec![origin + secs(10), origin + secs(20)]
    );
}
