//! Many threads against one breaker.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use finn_breaker::{Breaker, ManualClock, Options, Rejected, State, Timestamp};

const THREADS: usize = 32;

fn half_open_breaker(probes: u32) -> (Arc<Breaker>, ManualClock) {
    let clock = ManualClock::new(Timestamp::ZERO);
    let breaker = Breaker::builder()
        .clock(clock.clone())
        .options(
            Options::default()
                .reset_timeout(Duration::from_secs(1))
                .half_open_probes(probes)
                .half_open_successes(probes),
        )
        .build()
        .unwrap();
    breaker.trip();
    clock.advance(Duration::from_secs(1));
    (Arc::new(breaker), clock)
}

/// Every thread tries to acquire at the same moment and holds what it gets until all have tried.
fn race(breaker: &Arc<Breaker>) -> (u32, u32) {
    let admitted = Arc::new(AtomicU32::new(0));
    let full = Arc::new(AtomicU32::new(0));
    let start = Arc::new(Barrier::new(THREADS));
    let tried = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (breaker, admitted, full) = (
                Arc::clone(breaker),
                Arc::clone(&admitted),
                Arc::clone(&full),
            );
            let (start, tried) = (Arc::clone(&start), Arc::clone(&tried));
            thread::spawn(move || {
                start.wait();
                let permit = breaker.try_acquire();
                match &permit {
                    Ok(p) => {
                        assert!(p.is_probe());
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(Rejected::HalfOpenFull { .. }) => {
                        full.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => panic!("unexpected rejection {e}"),
                }
                tried.wait();
                if let Ok(p) = permit {
                    p.success();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (admitted.load(Ordering::SeqCst), full.load(Ordering::SeqCst))
}

#[test]
fn half_open_admits_exactly_the_configured_number_of_probes_under_contention() {
    for probes in [1, 2, 5] {
        for round in 0..20 {
            let (breaker, _clock) = half_open_breaker(probes);
            let (admitted, full) = race(&breaker);
            assert_eq!(admitted, probes, "probes {probes}, round {round}");
            assert_eq!(full, THREADS as u32 - probes);
            assert_eq!(
                breaker.state(),
                State::Closed,
                "all admitted probes succeeded"
            );
            assert_eq!(breaker.probe_count(), u64::from(probes));
        }
    }
}

#[test]
fn concurrent_failures_open_the_circuit_exactly_once() {
    let breaker = Arc::new(
        Breaker::builder()
            .clock(ManualClock::new(Timestamp::ZERO))
            .build()
            .unwrap(),
    );
    let events = breaker.subscribe();
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (breaker, start) = (Arc::clone(&breaker), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for _ in 0..100 {
                    let _ = breaker.call(|| Err::<(), _>(()));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(breaker.state(), State::Open);
    let transitions: Vec<_> = events.try_iter().collect();
    assert_eq!(transitions.len(), 1, "{transitions:?}");
}

#[test]
fn concurrent_successes_in_closed_state_never_transition() {
    let breaker = Arc::new(Breaker::default());
    let events = breaker.subscribe();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let breaker = Arc::clone(&breaker);
            thread::spawn(move || {
                for i in 0..100_000u32 {
                    assert_eq!(breaker.call(|| Ok::<_, ()>(i)).unwrap(), i);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        (breaker.state(), breaker.failure_count()),
        (State::Closed, 0)
    );
    assert!(events.try_recv().is_err());
}
