//! Crash-resilient state for AI-agent runtimes: a write-ahead log, signed checkpoints to any object
//! store, a recovery cascade, work items, learnings and identity documents.
//!
//! Every module below is its own crate; depend on that crate alone if it is all you need.
//!
//! **Status:** the facade re-exports the crates and holds the configuration; the full-stack runtime
//! grows as the crates land.
#![deny(missing_docs)]

pub mod config;
#[cfg(feature = "wal")]
pub mod confirm;
pub mod prelude;
#[cfg(all(feature = "recovery", feature = "scheduler"))]
pub mod runtime;
#[cfg(feature = "wal")]
pub mod state;
#[cfg(feature = "wal")]
pub mod threads;

pub use config::{Config, ConfigError};
#[cfg(all(feature = "recovery", feature = "scheduler"))]
pub use runtime::{Finn, FinnBuilder};

#[cfg(feature = "beads")]
pub use finn_beads as beads;
#[cfg(feature = "breaker")]
pub use finn_breaker as breaker;
#[cfg(feature = "checkpoint")]
pub use finn_checkpoint as checkpoint;
#[cfg(feature = "identity")]
pub use finn_identity as identity;
#[cfg(feature = "learning")]
pub use finn_learning as learning;
#[cfg(feature = "recovery")]
pub use finn_recovery as recovery;
#[cfg(feature = "scheduler")]
pub use finn_scheduler as scheduler;
#[cfg(feature = "wal")]
pub use finn_wal as wal;
