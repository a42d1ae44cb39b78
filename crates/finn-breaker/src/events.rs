//! Delivery of [`Transition`]s to callbacks and subscribers, outside the breaker's state lock.
//!
//! Transitions are queued while the state lock is held (so the queue order is the order they
//! happened) and delivered after it is released, so a callback may call back into the breaker
//! without deadlocking. Whichever thread holds the delivery lock drains the queue; a thread that
//! finds it taken leaves its events for the holder, which re-checks the queue after letting go.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use crate::state::Transition;

/// A state-change callback.
pub(crate) type Callback = Arc<dyn Fn(&Transition) + Send + Sync>;

#[derive(Default)]
pub(crate) struct Listeners {
    callbacks: Vec<Callback>,
    subscribers: Vec<mpsc::Sender<Transition>>,
}

#[derive(Default)]
pub(crate) struct Dispatcher {
    /// Set whenever `pending` (which lives under the state lock) may hold events.
    has_pending: AtomicBool,
    /// Held by the thread delivering; makes delivery ordered across threads.
    delivering: Mutex<()>,
    listeners: Mutex<Listeners>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("has_pending", &self.has_pending)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    pub(crate) fn mark_pending(&self) {
        self.has_pending.store(true, Ordering::SeqCst);
    }

    pub(crate) fn add_callback(&self, cb: Callback) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .callbacks
            .push(cb);
    }

    pub(crate) fn subscribe(&self) -> mpsc::Receiver<Transition> {
        let (tx, rx) = mpsc::channel();
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .subscribers
            .push(tx);
        rx
    }

    /// Delivers queued events. `drain` takes the queue under the state lock.
    pub(crate) fn deliver(&self, mut drain: impl FnMut() -> VecDeque<Transition>) {
        loop {
            if !self.has_pending.load(Ordering::SeqCst) {
                return;
            }
            let delivering = match self.delivering.try_lock() {
                Ok(l) => l,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                // Another thread (or a callback of ours, re-entering) is delivering; it re-checks
                // `has_pending` after releasing the lock, so our events are not stranded.
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            self.has_pending.store(false, Ordering::SeqCst);
            let events = drain();
            for event in &events {
                // Callbacks are cloned out so that one may register another without deadlocking.
                let callbacks = {
                    let mut listeners = self
                        .listeners
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    listeners
                        .subscribers
                        .retain(|tx| tx.send(event.clone()).is_ok());
                    listeners.callbacks.clone()
                };
                for cb in &callbacks {
                    cb(event);
                }
            }
            drop(delivering);
        }
    }
}
