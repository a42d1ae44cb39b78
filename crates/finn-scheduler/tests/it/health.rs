//! The health aggregator (anchor `HealthAggregator` scenarios are in `anchor.rs`).

use finn_scheduler::{ComponentHealth, Health, HealthAggregator, TaskError};

use crate::util::*;

#[tokio::test(start_paused = true)]
async fn a_reporter_that_hangs_is_unhealthy_after_the_check_timeout() {
    let h = HealthAggregator::with_check_timeout(secs(2));
    h.add_fn("git", || async {
        std::future::pending::<()>().await;
        Ok(ComponentHealth::healthy("git"))
    });
    let report = h.check().await;
    assert_eq!(report.overall, Health::Unhealthy);
    assert_eq!(
        report.reasons(),
        vec!["git: health check timed out after 2s"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_reporter_is_unhealthy() {
    let h = HealthAggregator::new();
    h.add_fn("beads", || async { panic!("bug") });
    let report = h.check().await;
    assert_eq!(report.component("beads").unwrap().health, Health::Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn pushed_reports_replace_each_other_and_can_be_removed() {
    let h = HealthAggregator::new();
    h.report(ComponentHealth::unhealthy("wal", "disk pressure critical"));
    h.report(ComponentHealth::degraded("wal", "disk pressure warning"));
    assert_eq!(h.check().await.overall, Health::Degraded);
    assert!(h.remove("wal"));
    assert_eq!(h.check().await.overall, Health::Healthy);
}

#[tokio::test(start_paused = true)]
async fn the_scheduler_reports_degraded_while_a_task_breaker_is_open() {
    let s = scheduler();
    s.register(spec("object_store_sync", secs(30)), |_| async {
        Err(TaskError::msg("timeout"))
    })
    .unwrap();
    s.register(spec("health", secs(300)), |_| async { Ok(()) })
        .unwrap();
    let h = HealthAggregator::new();
    h.add_reporter("scheduler", s.clone());
    assert_eq!(h.check().await.overall, Health::Healthy);
    for _ in 0..3 {
        let _ = s.run_now("object_store_sync").await;
    }
    let report = h.check().await;
    assert_eq!(report.overall, Health::Degraded);
    assert_eq!(
        report.reasons(),
        vec!["scheduler: task object_store_sync: circuit breaker open"]
    );
}
