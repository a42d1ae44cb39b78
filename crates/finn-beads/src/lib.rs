//! Work items (beads) as WAL events: issues.jsonl interop, ready queue, leased claims and run state.
//!
//! (crate docs are completed below)

mod bead;
mod error;
mod event;
mod export;
mod import;
mod jsonl;
mod queue;
mod ready;
mod run;
mod state;
mod store;
mod timestamp;
mod tx;
mod validate;

pub use bead::{Bead, Comment, DepType, Dependency, IssueType, Priority, Status, WaitsForGate};
pub use error::Error;
pub use event::{BEAD_KEY_PREFIX, Change, Lease, PAYLOAD_VERSION, RECORD_KEY_PREFIX};
pub use import::{IMPORT_CHUNK, ImportOptions, ImportReport, SkippedOlder};
pub use jsonl::{Line, LineError, Reader, other_record_key, parse_line};
pub use queue::{Claim, Expired, Handoff, Outcome, previous_handoff};
pub use ready::{
    BlockedBead, EpicProgress, Excluded, Exclusion, Explanation, FilterMiss, HYBRID_RECENT_WINDOW,
    ReadyQuery, SortPolicy, TreeNode,
};
pub use run::{
    CircuitBreaker, RunState, SprintState, derive_run_state, derive_sprint_state, labels,
    parse_same_issue, same_issue_label,
};
pub use state::{
    ApplyError, BlockReason, Blocker, Entry, FAILURE_CLOSE_KEYWORDS, State, is_failure_close,
};
pub use store::{Clock, DEFAULT_SEGMENT_SIZE, LOCK_FILE, Options, Sharing, Store, WAL_DIR};
pub use timestamp::{Timestamp, TimestampError};
pub use tx::{Patch, Tx};
pub use validate::{
    ALLOWED_TYPES, Limits, MAX_BEAD_ID_LENGTH, MAX_LABEL_LENGTH, MAX_PRIORITY, MAX_STRING_LENGTH,
    MAX_TEXT_LENGTH, ValidationError, is_valid_id_chars, is_valid_label_chars,
};
