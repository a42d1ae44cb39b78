//! Callbacks and subscriptions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use finn_breaker::{Breaker, ManualClock, Options, State, Timestamp};

#[test]
fn a_callback_may_call_back_into_the_breaker_without_deadlock() {
    let clock = ManualClock::new(Timestamp::ZERO);
    let breaker = Arc::new(
        Breaker::builder()
            .clock(clock.clone())
            .options(Options::default().reset_timeout(Duration::from_millis(10)))
            .build()
            .unwrap(),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (b, s) = (Arc::downgrade(&breaker), Arc::clone(&seen));
    breaker.on_transition(move |t| {
        let b = b.upgrade().unwrap();
        // Re-entrant: reads state, and on opening immediately resets (a transition from inside
        // a callback, delivered after this one).
        s.lock().unwrap().push((t.to, b.failure_count()));
        if t.to == State::Open {
            b.reset();
        }
    });
    breaker.trip();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(State::Open, 0), (State::Closed, 0)]
    );
}

#[test]
fn dropped_subscribers_are_forgotten_and_others_still_receive() {
    let breaker = Breaker::builder()
        .clock(ManualClock::new(Timestamp::ZERO))
        .build()
        .unwrap();
    let kept = breaker.subscribe();
    drop(breaker.subscribe());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    breaker.on_transition(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    breaker.trip();
    breaker.reset();
    assert_eq!(kept.try_iter().count(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn transitions_carry_the_breaker_name_and_serialize() {
    let breaker = Breaker::builder()
        .name("git_sync")
        .clock(ManualClock::new(Timestamp::from_millis(42)))
        .build()
        .unwrap();
    let rx = breaker.subscribe();
    breaker.trip();
    let t = rx.try_recv().unwrap();
    assert_eq!(t.name.as_deref(), Some("git_sync"));
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(
        json,
        r#"{"name":"git_sync","from":"closed","to":"open","reason":{"kind":"manual-trip"},"at":42,"generation":1}"#
    );
}
