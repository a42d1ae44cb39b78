//! A table-driven walk of every transition of the state machine, on a manual clock.

use std::time::Duration;

use finn_breaker::{FailureWindow, Options, Outcome, Permit, Reason, Rejected, State};

use crate::util::Rig;

#[derive(Clone, Copy, Debug)]
enum Step {
    /// A call that fails / succeeds / is ignored / asks for a pause, through `call_with`.
    Call(Outcome),
    /// A call that must be rejected because the circuit is open (the closure must not run).
    RejectedOpen,
    /// A call that must be rejected because every probe slot is taken.
    RejectedFull,
    /// Acquire a permit and keep it; `probe` says whether it must be a probe.
    Hold {
        probe: bool,
    },
    /// Record the outcome of the oldest held permit.
    Release(Outcome),
    Advance(u64),
    Reset,
    Trip,
    /// The state must be this (read through `state()`, which may itself half-open).
    Expect(State),
    ExpectFailures(u32),
}

use Outcome::{Failure as F, Ignored as I, Success as S};
use Step::*;

fn retry(ms: u64) -> Outcome {
    Outcome::RetryAfter(Duration::from_millis(ms))
}

struct Case {
    name: &'static str,
    options: Options,
    steps: Vec<Step>,
    /// Expected transitions (from, to, reason), in order.
    transitions: Vec<(State, State, Reason)>,
}

const C: State = State::Closed;
const O: State = State::Open;
const H: State = State::HalfOpen;

fn base() -> Options {
    Options::default().reset_timeout(Duration::from_millis(500))
}

fn cases() -> Vec<Case> {
    let three = Reason::ConsecutiveFailures { count: 3 };
    vec![
        Case {
            name: "closed: success keeps closed and resets the consecutive count",
            options: base(),
            steps: vec![
                Call(F),
                Call(F),
                ExpectFailures(2),
                Call(S),
                ExpectFailures(0),
                Call(F),
                Call(F),
                Expect(C),
            ],
            transitions: vec![],
        },
        Case {
            name: "closed: ignored outcomes change nothing",
            options: base(),
            steps: vec![
                Call(F),
                Call(F),
                Call(I),
                Call(I),
                ExpectFailures(2),
                Call(F),
                Expect(O),
            ],
            transitions: vec![(C, O, three)],
        },
        Case {
            name: "closed -> open after 3 consecutive failures",
            options: base(),
            steps: vec![
                Call(F),
                Call(F),
                Expect(C),
                Call(F),
                Expect(O),
                ExpectFailures(3),
                RejectedOpen,
            ],
            transitions: vec![(C, O, three)],
        },
        Case {
            name: "closed -> open after 3 failures in the rolling window; stale ones are evicted",
            options: base()
                .consecutive_failures(None)
                .failure_window(Some(FailureWindow::new(3, Duration::from_millis(1000)))),
            steps: vec![
                Call(F),
                Advance(1000), // first failure leaves the window
                Call(F),
                Call(S), // successes do not clear the window by default
                Call(F),
                Expect(C),
                Call(F),
                Expect(O),
            ],
            transitions: vec![(C, O, Reason::FailureWindow { count: 3 })],
        },
        Case {
            name: "closed: window with clear_on_success forgets failures on a success",
            options: base()
                .consecutive_failures(None)
                .failure_window(Some(FailureWindow {
                    failures: 2,
                    window: Duration::from_millis(1000),
                    clear_on_success: true,
                })),
            steps: vec![Call(F), Call(S), Call(F), Expect(C), Call(F), Expect(O)],
            transitions: vec![(C, O, Reason::FailureWindow { count: 2 })],
        },
        Case {
            name: "closed -> open on Retry-After, for exactly the hold, without counting a failure",
            options: base(),
            steps: vec![
                Call(retry(2000)),
                Expect(O),
                ExpectFailures(0),
                Advance(1999),
                RejectedOpen,
                Advance(1),
                Expect(H),
                Call(S),
                Expect(C),
            ],
            transitions: vec![
                (
                    C,
                    O,
                    Reason::RetryAfter {
                        hold: Duration::from_millis(2000),
                    },
                ),
                (O, H, Reason::ResetTimeoutElapsed),
                (H, C, Reason::ProbesSucceeded { count: 1 }),
            ],
        },
        Case {
            name: "retry-after is capped by max_retry_after; zero is ignored",
            options: base().max_retry_after(Duration::from_millis(100)),
            steps: vec![
                Call(retry(0)),
                Expect(C),
                Call(retry(1_000_000)),
                Advance(99),
                RejectedOpen,
                Advance(1),
                Expect(H),
            ],
            transitions: vec![
                (
                    C,
                    O,
                    Reason::RetryAfter {
                        hold: Duration::from_millis(100),
                    },
                ),
                (O, H, Reason::ResetTimeoutElapsed),
            ],
        },
        Case {
            name: "open -> half-open exactly when the reset timeout since opening has passed",
            options: base(),
            steps: vec![
                Call(F),
                Call(F),
                Advance(400),
                Call(F),
                Advance(499),
                RejectedOpen,
                Expect(O),
                Advance(1),
                Expect(H),
            ],
            transitions: vec![(C, O, three), (O, H, Reason::ResetTimeoutElapsed)],
        },
        Case {
            name: "open: a late failure from a call admitted while closed does not restart the timer",
            options: base(),
            steps: vec![
                Hold { probe: false },
                Call(F),
                Call(F),
                Call(F),
                Advance(300),
                Release(F), // stale: admitted in the closed generation
                ExpectFailures(3),
                Advance(200),
                Expect(H),
            ],
            transitions: vec![(C, O, three), (O, H, Reason::ResetTimeoutElapsed)],
        },
        Case {
            name: "open: a longer Retry-After extends the open period",
            options: base(),
            steps: vec![
                Hold { probe: false },
                Call(F),
                Call(F),
                Call(F),
                Advance(500),
                Expect(H),
                Trip,
                Release(retry(3000)),
                Advance(2999),
                RejectedOpen,
                Advance(1),
                Expect(H),
            ],
            transitions: vec![
                (C, O, three),
                (O, H, Reason::ResetTimeoutElapsed),
                (H, O, Reason::ManualTrip),
                (O, H, Reason::ResetTimeoutElapsed),
            ],
        },
        Case {
            name: "half-open -> closed after one successful probe (default)",
            options: base(),
            steps: vec![
                Call(F),
                Call(F),
                Call(F),
                Advance(500),
                Call(S),
                Expect(C),
                ExpectFailures(0),
            ],
            transitions: vec![
                (C, O, three),
                (O, H, Reason::ResetTimeoutElapsed),
                (H, C, Reason::ProbesSucceeded { count: 1 }),
            ],
        },
        Case {
            name: "half-open needs N successes when configured (N = 2)",
            options: base().half_open_successes(2),
            steps: vec![
                Call(F),
                Call(F),
                Call(F),
                Advance(500),
                Call(S),
                Expect(H),
                Call(S),
                Expect(C),
            ],
            transitions: vec![
                (C, O, three),
                (O, H, Reason::ResetTimeoutElapsed),
                (H, C, Reason::ProbesSucceeded { count: 2 }),
            ],
        },
        Case {
            name: "half-open -> open on a failed probe; the timer restarts from the probe failure",
            options: base(),
            steps: vec![
                Call(F),
                Call(F),
                Call(F),
                Advance(500),
                Call(F),
                Expect(O),
                ExpectFailures(4),
                Advance(499),
                RejectedOpen,
                Advance(1),
                Expect(H),
            ],
            transitions: vec![
                (C, O, three),
                (O, H, Reason::ResetTimeoutElapsed),
                (H, O, Reason::ProbeFailed),
                (O, H, Reason::ResetTimeoutElapsed),
            ],
        },
        Case {
            name: "half-open admits one probe at a time; extra calls are rejected as full",
            options: base(),
            steps: vec![
                Call(F),
                Call(F),
                Call(F),
                Advance(500),
                Hold { probe: true },
                RejectedFull,
                RejectedFull,
                Release(S),
                Expect(C),
            ],
            transitions: vec![
                (C, O, three),
                (O, H, Reason::ResetTimeoutElapsed),
                (H, C, Reason::ProbesSucceeded { count: 1 }),
            ],
        },
        Case {
            name: "half-open with 2 probe slots admits two",
            options: base().half_open_probes(2).half_open_successes(2),
            steps: vec![
                Call(F),
                Call(F),
                Call(F),
                Advance(500),
                Hold { probe: true },
                Hold { probe: true },
                RejectedFull,
                Release(S),
                Release(S),
                Expect(C),
            ],
            transitions: vec![
                (C, O, three),
                (O, H, Reason::ResetTimeoutElapsed),
                (H, C, Reason::ProbesSucceeded { count: 2 }),
            ],
        },
        Case {
            name: "half-open: an ignored probe frees its slot and changes nothing",
            options: base(),
            steps: vec![
                Call(F),
                Call(F),
                Call(F),
                Advance(500),
                Call(I),
                Expect(H),
                Hold { probe: true },
                Release(S),
                Expect(C),
            ],
            transitions: vec![
                (C, O, three),
                (O, H, Reason::ResetTimeoutElapsed),
                (H, C, Reason::ProbesSucceeded { count: 1 }),
            ],
        },
        Case {
            name: "half-open -> open on a probe answered with Retry-After",
            options: base(),
            steps: vec![
                Call(F),
                Call(F),
                Call(F),
                Advance(500),
                Call(retry(5000)),
                Expect(O),
                Advance(4999),
                RejectedOpen,
                Advance(1),
                Expect(H),
            ],
            transitions: vec![
                (C, O, three),
                (O, H, Reason::ResetTimeoutElapsed),
                (
                    H,
                    O,
                    Reason::RetryAfter {
                        hold: Duration::from_millis(5000),
                    },
                ),
                (O, H, Reason::ResetTimeoutElapsed),
            ],
        },
        Case {
            name: "half-open: a stale success from before the circuit opened does not close it",
            options: base(),
            steps: vec![
                Hold { probe: false },
                Call(F),
                Call(F),
                Call(F),
                Advance(500),
                Expect(H),
                Release(S),
                Expect(H),
            ],
            transitions: vec![(C, O, three), (O, H, Reason::ResetTimeoutElapsed)],
        },
        Case {
            name: "reset from open and from half-open closes and clears counters",
            options: base(),
            steps: vec![
                Call(F),
                Call(F),
                Call(F),
                Reset,
                Expect(C),
                ExpectFailures(0),
                Call(F),
                Call(F),
                Call(F),
                Advance(500),
                Expect(H),
                Reset,
                Expect(C),
                Reset,
            ],
            transitions: vec![
                (C, O, three),
                (O, C, Reason::ManualReset),
                (C, O, three),
                (O, H, Reason::ResetTimeoutElapsed),
                (H, C, Reason::ManualReset),
            ],
        },
        Case {
            name: "trip opens a closed circuit for one reset timeout",
            options: base(),
            steps: vec![Trip, Expect(O), RejectedOpen, Advance(500), Expect(H)],
            transitions: vec![
                (C, O, Reason::ManualTrip),
                (O, H, Reason::ResetTimeoutElapsed),
            ],
        },
    ]
}

#[test]
fn every_transition_of_the_state_machine_with_a_fake_clock() {
    for case in cases() {
        let rig = Rig::new(case.options.clone());
        let mut held: Vec<Permit<'_>> = Vec::new();
        for (i, step) in case.steps.iter().enumerate() {
            let at = format!("case {:?}, step {i} {step:?}", case.name);
            match *step {
                Call(outcome) => {
                    let _ = rig.breaker.call_with(
                        |_: &()| outcome,
                        || if outcome == S { Ok(()) } else { Err(()) },
                    );
                }
                RejectedOpen => {
                    let mut ran = false;
                    let r = rig.breaker.call(|| {
                        ran = true;
                        Ok::<_, ()>(())
                    });
                    assert!(
                        matches!(r.unwrap_err().rejected(), Some(Rejected::Open { .. })),
                        "{at}"
                    );
                    assert!(!ran, "{at}: the function must not run while open");
                }
                RejectedFull => {
                    let r = rig.breaker.try_acquire();
                    assert!(
                        matches!(r, Err(Rejected::HalfOpenFull { .. })),
                        "{at}: {r:?}"
                    );
                }
                Hold { probe } => {
                    let p = rig
                        .breaker
                        .try_acquire()
                        .unwrap_or_else(|e| panic!("{at}: {e}"));
                    assert_eq!(p.is_probe(), probe, "{at}");
                    held.push(p);
                }
                Release(outcome) => held.remove(0).record(outcome),
                Advance(ms) => rig.clock.advance(Duration::from_millis(ms)),
                Reset => rig.breaker.reset(),
                Trip => rig.breaker.trip(),
                Expect(state) => assert_eq!(rig.breaker.state(), state, "{at}"),
                ExpectFailures(n) => assert_eq!(rig.breaker.failure_count(), n, "{at}"),
            }
        }
        let got: Vec<_> = rig
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|t| (t.from, t.to, t.reason))
            .collect();
        assert_eq!(got, case.transitions, "case {:?}", case.name);
        let generations: Vec<u64> = rig
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.generation)
            .collect();
        assert_eq!(
            generations,
            (1..=generations.len() as u64).collect::<Vec<_>>(),
            "case {:?}",
            case.name
        );
    }
}

#[test]
fn invalid_options_are_rejected_with_a_typed_error() {
    use finn_breaker::{Breaker, OptionsError};
    let cases = [
        (
            Options::default().consecutive_failures(None),
            OptionsError::NoTripPolicy,
        ),
        (
            Options::default().consecutive_failures(Some(0)),
            OptionsError::ZeroConsecutiveFailures,
        ),
        (
            Options::default().half_open_probes(0),
            OptionsError::ZeroHalfOpenProbes,
        ),
        (
            Options::default().half_open_successes(0),
            OptionsError::ZeroHalfOpenSuccesses,
        ),
        (
            Options::default().failure_window(Some(FailureWindow::new(0, Duration::from_secs(1)))),
            OptionsError::ZeroWindowFailures,
        ),
        (
            Options::default().failure_window(Some(FailureWindow::new(1, Duration::ZERO))),
            OptionsError::ZeroWindow,
        ),
    ];
    for (options, expected) in cases {
        assert_eq!(Breaker::new(options).unwrap_err(), expected);
    }
}

#[test]
fn a_panicking_call_counts_as_a_failure() {
    let rig = Rig::anchor();
    for _ in 0..3 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = rig
                .breaker
                .call(|| -> Result<(), ()> { panic!("handler bug") });
        }));
        assert!(r.is_err());
    }
    assert_eq!(rig.breaker.state(), State::Open);
}

#[test]
fn a_dropped_probe_frees_its_slot() {
    let rig = Rig::anchor();
    rig.breaker.trip();
    rig.clock.advance(Duration::from_millis(500));
    let probe = rig.breaker.try_acquire().unwrap();
    assert!(rig.breaker.try_acquire().is_err());
    drop(probe);
    assert!(rig.breaker.try_acquire().unwrap().is_probe());
    assert_eq!(rig.breaker.state(), State::HalfOpen);
}

#[test]
fn async_calls_are_admitted_recorded_and_cancel_safe() {
    use futures::FutureExt;
    let rig = Rig::anchor();
    for _ in 0..3 {
        let r = futures::executor::block_on(rig.breaker.call_async(async { Err::<(), _>("down") }));
        assert!(r.unwrap_err().into_inner().is_some());
    }
    assert_eq!(rig.breaker.state(), State::Open);
    rig.clock.advance(Duration::from_millis(500));
    // A probe future polled once and dropped gives its slot back.
    let mut pending = Box::pin(
        rig.breaker
            .call_async(futures::future::pending::<Result<(), ()>>()),
    );
    assert!((&mut pending).now_or_never().is_none());
    assert!(matches!(
        rig.breaker.try_acquire(),
        Err(Rejected::HalfOpenFull { probes: 1 })
    ));
    drop(pending);
    let r = futures::executor::block_on(
        rig.breaker
            .call_async_with(|_: &()| Outcome::Failure, async { Ok(7) }),
    );
    assert_eq!(r.unwrap(), 7);
    assert_eq!(rig.breaker.state(), State::Closed);
}
