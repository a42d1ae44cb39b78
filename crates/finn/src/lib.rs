//! Crash-resilient state for AI-agent runtimes: a write-ahead log, signed checkpoints to any object
//! store, a recovery cascade, work items, learnings and identity documents.
//!
//! Every module below is its own crate; depend on that crate alone if it is all you need. This
//! facade adds the [`Config`] (TOML + environment), the full-stack runtime [`Finn`] that wires
//! the crates to one WAL, and the `finn` command-line tool (feature `cli`).
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), finn::runtime::Error> {
//! use finn::prelude::*;
//!
//! let finn = Finn::builder("/var/lib/agent")
//!     .store_url("s3://agent-state/agent-1") // default: file://<data dir>/objects
//!     .open()                                 // lease → recovery cascade → replay → scheduler
//!     .await?;
//! let lsn = finn.put(Kind::Session, "session/42", b"{\"turn\":3}".to_vec())?; // fdatasynced
//! finn.ship().await?;                          // in the object store: survives losing the disk
//! assert!(finn.remote_durable_lsn() >= lsn);
//! finn.beads().ready(&finn::beads::ReadyQuery::default());
//! finn.shutdown().await?;                      // flush, checkpoint, release the lease
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - A write is **locally durable** when [`Finn::put`] (or a component's write) returns: with the
//!   default `Sync` durability it was fdatasynced and survives `kill -9` and power loss.
//! - It is **remotely durable** once [`Finn::remote_durable_lsn`] reaches its LSN — within the
//!   shipping interval (1 s by default) while the object store is healthy, at once after
//!   [`Finn::await_shipped`]: a restore on an empty disk
//!   brings it back — the newest verified checkpoint plus every shipped record after it.
//! - Restored bytes are verified (signatures, content hashes) before they become visible, and the
//!   previous state is set aside, never deleted. The WAL is pruned only below what is both
//!   checkpointed and shipped.
//! - `finn drill` exercises exactly this with a real `SIGKILL` and a deleted data directory.
//!
//! # What it does not do
//!
//! - Writes that are only locally durable are lost with the disk (the recovery point objective is
//!   the shipping interval, 1 s by default, longer while the store is failing). Acknowledge to
//!   the outside world after [`Finn::await_shipped`].
//! - One writer per data directory (OS lock) and per object-store prefix (fenced lease); a second
//!   writer is refused or fences the first.
//! - The git archive tier (hourly, when `git.remote` is configured) is a cold copy of published
//!   checkpoints only; it holds no shipped WAL, so restoring from it loses what came after.
//!
//! # Data directory
//!
//! ```text
//! <data_dir>/
//!   finn.toml        written by `finn init` (keep a copy, and the key, off this disk)
//!   wal/             the shared finn-wal log
//!   state/           what checkpoints carry: kv.bin (keyed state), learning/, BEAUVOIR.md
//!   recovery/        the cascade's lock, boot journal, staging and set-aside states
//!   confirmed.json   how far the WAL is checkpointed and shipped (gates pruning)
//!   keys/signing.pem the default signing key
//!   objects/         the default object store (a stand-in for a bucket)
//! ```
//!
//! # Crate features
//!
//! `full` (every crate), one feature per crate (`wal`, `checkpoint`, `recovery`, `breaker`,
//! `scheduler`, `beads`, `learning`, `identity`), and `cli` (the binary). Default: `full`, `cli`.
#![deny(missing_docs)]

pub mod config;
#[cfg(feature = "wal")]
pub mod confirm;
#[cfg(all(feature = "recovery", feature = "scheduler"))]
pub mod http;
#[cfg(all(feature = "recovery", feature = "scheduler"))]
pub mod metrics;
pub mod prelude;
#[cfg(all(feature = "recovery", feature = "scheduler"))]
pub mod runtime;
#[cfg(feature = "wal")]
pub mod state;
#[cfg(all(feature = "recovery", feature = "scheduler"))]
pub mod status;
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
