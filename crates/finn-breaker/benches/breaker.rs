//! Per-call overhead of a closed breaker on the success path, next to a bare function call.
//!
//! Run with `cargo bench -p finn-breaker`. Report the ratio `breaker / bare` from the same run;
//! absolute numbers depend on the machine. The 2-thread group runs the same loop on two threads
//! sharing one breaker, to show the success path does not contend.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use finn_breaker::Breaker;

#[inline(never)]
fn work(x: u64) -> Result<u64, ()> {
    Ok(black_box(x).wrapping_add(1))
}

/// Runs `per_thread` on `threads` threads at once for `iters` iterations each; returns the wall
/// time divided by nothing (criterion divides by `iters`), so the result is time per call per
/// thread under contention.
fn parallel(
    threads: usize,
    iters: u64,
    per_thread: impl Fn(u64) + Send + Sync + 'static,
) -> Duration {
    let f = Arc::new(per_thread);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let f = Arc::clone(&f);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                f(iters);
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("bench thread panicked");
    }
    start.elapsed()
}

fn closed_success(c: &mut Criterion) {
    let mut g = c.benchmark_group("closed_success_1_thread");
    g.bench_function("bare_fn", |b| b.iter(|| work(black_box(1))));
    let breaker = Breaker::default();
    g.bench_function("breaker_call", |b| {
        b.iter(|| breaker.call(|| work(black_box(1))))
    });
    g.bench_function("breaker_try_acquire_record", |b| {
        b.iter(|| {
            let permit = breaker.try_acquire().expect("closed breaker admits");
            let r = work(black_box(1));
            permit.success();
            r
        })
    });
    g.finish();

    let mut g = c.benchmark_group("closed_success_2_threads");
    g.bench_function("bare_fn", |b| {
        b.iter_custom(|iters| {
            parallel(2, iters, |n| {
                for i in 0..n {
                    let _ = black_box(work(i));
                }
            })
        })
    });
    let shared = Arc::new(Breaker::default());
    g.bench_function("breaker_call", |b| {
        b.iter_custom(|iters| {
            let breaker = Arc::clone(&shared);
            parallel(2, iters, move |n| {
                for i in 0..n {
                    let _ = black_box(breaker.call(|| work(i)));
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, closed_success);
criterion_main!(benches);
