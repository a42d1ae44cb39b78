//! Integration tests of finn-scheduler, deterministic under tokio's paused clock. `anchor`
//! ports every scheduler scenario of anchors.md §11.6; the other modules test finn's own
//! guarantees (drift, pauses, timeouts, exclusion, control, shutdown).

mod anchor;
mod breaker;
mod control;
mod exclusion;
mod health;
mod shutdown;
mod timeout;
mod timing;
mod util;
