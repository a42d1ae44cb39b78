//! A crash-safe compound learning store with quality gates, lifecycle and retrieval.
//!
//! `finn-learning` keeps what an agent learned — a *trigger* (when it applies), a *pattern* (what
//! was observed) and a *solution* (what to do) — in a [`finn_wal`] write-ahead log, gates new
//! learnings on four quality scores, moves them through an audited lifecycle, tracks how well they
//! work, and finds the ones that fit a situation. It is the Rust form of the Loa framework's
//! `LearningStore`, quality gates and compound cycle; most users want the
//! [`finn`](https://docs.rs/finn) facade.
//!
//! # Example
//! ```
//! use finn_learning::{AddError, LearningStore, NewLearning, Source, StoreOptions, Target};
//! # let dir = tempfile::tempdir()?;
//! let (store, _report) = LearningStore::open(dir.path(), StoreOptions::default())?;
//!
//! // Scored by the heuristic scorer and admitted: it passes every gate.
//! let good = store.add(NewLearning::new(
//!     Source::Sprint,
//!     Target::Devcontainer,
//!     "When the build fails and if the deploy step reports an error",
//!     "A common pattern: a stale lockfile breaks the build; the same approach fixes every package manager",
//!     "Delete the lockfile with `rm package-lock.json`, reinstall; tested and verified.",
//! ))?;
//!
//! // Refused, with every gate's score and reason; nothing is stored.
//! let Err(AddError::Rejected(rejection)) =
//!     store.add(NewLearning::new(Source::Retrospective, Target::Openclaw, "", "", "retry"))
//! else { panic!("an empty learning must not pass") };
//! assert!(!rejection.evaluation.passed);
//!
//! store.record_application(&good.id, true)?;
//! let found = store.find_matching("the deploy failed with a build error", 3);
//! assert_eq!(found[0].learning.id, good.id);
//! store.archive(&good.id, "alice")?; // audited: who, when, from, to
//! assert!(store.find_matching("the deploy failed with a build error", 3).is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! - **Acknowledged means durable.** Every change (add, transition, application, import) is one
//!   `Kind::Learning` WAL record or one atomic batch of them, fdatasynced before the call returns
//!   (with the default [`Durability::Sync`](finn_wal::Durability)). State in memory changes only
//!   after the WAL accepted the write, so a failed call leaves nothing visible. After `kill -9` the
//!   reopened store holds exactly the acknowledged changes (plus, at most, the one in flight).
//! - **One writer.** The WAL's directory lock makes a second opener — another process or another
//!   store in this one — fail with `Locked` instead of silently losing updates.
//! - **Nothing damaged is overwritten.** A snapshot or export file that fails its check is renamed
//!   aside (`*.damaged-{ULID}`) and reported; the state is rebuilt from the WAL. Whole-file writes
//!   are temp file → fdatasync → rename → directory fsync ([`finn_wal::fs::write_atomic`]).
//! - **Gate failures are errors.** [`LearningStore::add`] returns [`AddError::Rejected`] with
//!   every gate's score, threshold and reasons; a refused learning is never stored or disguised as
//!   pending.
//! - **An explicit lifecycle.** Only `pending → approved → active → archived`,
//!   `pending → rejected` and `archived → active` (restore) are allowed; each is a WAL record
//!   with who, when, from and to ([`LearningStore::history`]). `approved` is a real state.
//! - **Whole words.** Scoring and retrieval match whole words (with light inflection), never
//!   substrings: "if" does not match "different".
//! - **Round trips.** Importing a Loa learnings file or the anchors' layout and exporting it
//!   unchanged gives the same JSON; unknown fields are kept ([`format`](mod@format)).
//!
//! # What it does not do
//!
//! - It does not prune or compact the WAL: [`LearningStore::snapshot`] returns the position it
//!   covers and the WAL's owner decides (finn-checkpoint ships WAL and snapshots off-machine).
//! - Retrieval is lexical (BM25), not semantic; there are no embeddings.
//! - Imported learnings keep the gate scores and status their file states; the store's scorer is
//!   run and reported but does not refuse them.
//! - The heuristic scorer is the anchors' heuristic; it measures the shape of a text, not its truth.
//!
//! # On-disk format
//!
//! ```text
//! {dir}/wal/                 finn-wal segments; learning records are Kind::Learning keyed puts:
//!                              learning/{id}             {"v":1,"type":"learning","learning":{…}}
//!                              transition/{id}/{seq:010} {"v":1,"type":"transition","transition":{…}}
//!                              collection/{name}         {"v":1,"type":"collection","collection":{…}}
//! {dir}/learnings.snapshot   header line {"format","version","lsn","len","blake3"} + JSON body
//! ```
//! Payloads are JSON so that imported records (arbitrary JSON fields) survive unchanged. The
//! byte-level description is `docs/formats/finn-learning.md`.
//!
//! # Compound cycle
//!
//! [`CompoundCycle`] reads a trajectory ([`trajectory`]), extracts error-recovery and
//! repeated-pattern candidates, screens them with the anchors' checks, runs the quality gates and
//! stores those that pass, reporting every candidate's fate.
//!
//! # Minimum supported Rust version
//!
//! The workspace `rust-version` (1.89).

mod compound;
mod error;
pub mod format;
mod gates;
mod id;
mod index;
mod lifecycle;
pub mod memory;
mod record;
mod scorer;
mod snapshot;
mod store;
mod timestamp;
pub mod trajectory;
pub mod words;

pub use compound::{CompoundCycle, CycleOptions, CycleReport};
pub use error::{AddError, ExportError, GateRejection, ImportError, OpenError, TransitionError};
pub use gates::{
    Contribution, Evaluation, Gate, GateScore, GateVerdict, Scorecard, Scorer, Thresholds,
};
pub use id::{InvalidId, LearningId, MAX_ID_LEN};
pub use index::Match;
pub use lifecycle::{Action, Status, TransitionRecord};
pub use record::{
    Effectiveness, GateScores, Learning, NewLearning, Origin, ScoreInput, Source, Target,
};
pub use scorer::HeuristicScorer;
pub use snapshot::{Damage, SNAPSHOT_FILE, SNAPSHOT_VERSION};
pub use store::{
    ExportReport, Found, ImportReport, ImportedScore, LearningStore, MAX_TEXT_LEN, OpenReport,
    PAYLOAD_VERSION, SnapshotStatus, Stats, StoreOptions, WAL_DIR,
};
pub use timestamp::Timestamp;
