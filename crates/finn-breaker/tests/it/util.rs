use std::sync::{Arc, Mutex};
use std::time::Duration;

use finn_breaker::{Breaker, ManualClock, Options, State, Timestamp, Transition};

pub const RESET: Duration = Duration::from_millis(500);

/// A breaker on a manual clock standing at 0, with every transition recorded.
pub struct Rig {
    pub breaker: Breaker,
    pub clock: ManualClock,
    pub log: Arc<Mutex<Vec<Transition>>>,
}

impl Rig {
    pub fn new(options: Options) -> Rig {
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let breaker = Breaker::builder()
            .options(options)
            .clock(clock.clone())
            .on_transition(move |t| sink.lock().unwrap().push(t.clone()))
            .build()
            .unwrap();
        Rig {
            breaker,
            clock,
            log,
        }
    }

    /// Default options but a 500 ms reset timeout, as in the anchor tests.
    pub fn anchor() -> Rig {
        Rig::new(Options::default().reset_timeout(RESET))
    }

    pub fn pairs(&self) -> Vec<(State, State)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|t| (t.from, t.to))
            .collect()
    }

    pub fn fail(&self) {
        let _ = self.breaker.call(|| Err::<(), _>("boom"));
    }

    pub fn succeed(&self) {
        let _ = self.breaker.call(|| Ok::<_, &str>(()));
    }
}
