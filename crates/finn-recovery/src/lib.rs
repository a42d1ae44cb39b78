//! A recovery cascade (object store, git, template) with verified restores, WAL replay and
//! boot-loop detection.
//!
//! `finn-recovery` brings an agent's state up at boot, whatever happened to the machine. Most
//! users want the [finn](https://docs.rs/finn) facade, which wires it to finn-wal and
//! finn-checkpoint.
//!
//! (Crate docs are completed below once the sources land.)

mod cascade;
mod durable;
mod error;
mod layout;
mod loop_guard;
mod options;
mod replay;
mod report;
pub mod source;
mod stage;
mod state;
mod verify;

pub use cascade::{Cascade, CascadeBuilder, Recovery};
pub use error::{CascadeError, SourceFailure};
pub use layout::Layout;
pub use loop_guard::{
    Attempt, BootJournal, Clock, JournalError, LoopVerdict, Outcome, SystemClock,
};
pub use options::{BootConfirmation, LoopPolicy, Mode, Timeouts};
pub use report::{DegradedReason, ManifestInfo, PhaseTiming, RecoveryReport, SourceUsed, Warning};
pub use source::template::TemplateSource;
pub use source::{Candidate, RecoverySource, SourceError, SourceKind, Staged};
pub use stage::{StageError, Staging};
pub use state::{Event, State};
pub use verify::{ExpectedFile, ValidationError, Validator, Validators, VerifyError};
