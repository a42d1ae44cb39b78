//! Scheduler overhead per run: `run_now` of a trivial task (spawn, breaker, timeout, status
//! bookkeeping, reply) next to awaiting the same handler directly.
//!
//! Run with `cargo bench -p finn-scheduler`; report the ratio from one run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use finn_scheduler::{Scheduler, TaskError, TaskSpec};

async fn handler(x: u64) -> Result<(), TaskError> {
    black_box(x);
    Ok(())
}

fn run_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let scheduler = rt.block_on(async {
        let s = Scheduler::default();
        s.register(TaskSpec::new("bench", Duration::from_secs(3600)), |_| {
            handler(1)
        })
        .expect("register");
        s
    });
    let mut g = c.benchmark_group("run");
    g.bench_function("direct_await", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    handler(i).await.expect("ok");
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("scheduler_run_now", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    scheduler.run_now("bench").await.expect("run");
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, run_overhead);
criterion_main!(benches);
