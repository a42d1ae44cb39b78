//! WAL records written by the store: the event types and their payload encoding.
//!
//! Every record is a keyed `Put` of [`Kind::Bead`](finn_wal::Kind::Bead). The payload is the
//! complete state of one bead *after* the mutation (its post-image), plus the list of [`Change`]s
//! that produced it. The fold only reads the post-image, so:
//! - applying a record twice changes nothing (the second put writes the same value);
//! - records apply in LSN order and the last one per key wins, which is exactly what WAL
//!   compaction keeps, so bead history shrinks under compaction instead of growing forever;
//! - a create carries its id, so replay never mints a new one.
//!
//! The byte format is documented in `docs/formats/finn-beads.md`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bead::{Bead, DepType, Status};
use crate::timestamp::Timestamp;

/// Payload format version written by this release; readers accept `<=` this.
pub const PAYLOAD_VERSION: u32 = 1;

/// WAL key prefix of bead records (`bead/<id>`).
pub const BEAD_KEY_PREFIX: &str = "bead/";
/// WAL key prefix of non-issue records such as memories (`record/<key>`).
pub const RECORD_KEY_PREFIX: &str = "record/";

/// One step of a mutation, recorded beside the post-image for audit and debugging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// The bead was created.
    Create,
    /// Fields were set or cleared.
    Update {
        /// Names of the fields touched.
        fields: Vec<String>,
    },
    /// The status was set.
    SetStatus {
        /// New status.
        status: Status,
    },
    /// The bead was closed.
    Close {
        /// Close reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The bead was reopened.
    Reopen,
    /// `defer_until` was set or cleared.
    Defer {
        /// New deferral instant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<Timestamp>,
    },
    /// Labels were added or removed.
    Labels {
        /// Added labels.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        add: Vec<String>,
        /// Removed labels.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remove: Vec<String>,
    },
    /// A comment was added.
    Comment,
    /// A dependency edge was added.
    DependencyAdd {
        /// Target bead.
        target: String,
        /// Edge kind.
        dep_type: DepType,
    },
    /// Dependency edges were removed.
    DependencyRemove {
        /// Target bead.
        target: String,
        /// Edge kind; `None` removed every edge to the target.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dep_type: Option<DepType>,
    },
    /// The bead was deleted (it becomes a tombstone).
    Delete {
        /// Delete reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The bead was written by an import.
    Import,
    /// A worker claimed the bead.
    Claim {
        /// Claim id.
        claim_id: String,
        /// Worker name.
        worker: String,
    },
    /// The holder extended its lease.
    Heartbeat {
        /// Claim id.
        claim_id: String,
    },
    /// The holder released the bead.
    Release {
        /// Claim id.
        claim_id: String,
        /// `done` or `blocked`.
        outcome: String,
    },
    /// A stale lease expired and the bead went back to the queue.
    Expire {
        /// Claim id.
        claim_id: String,
    },
    /// A session handoff note was recorded.
    Handoff {
        /// Session id.
        session_id: String,
    },
}

/// A worker's hold on a bead, with a deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Unique id of this claim (a ULID).
    pub claim_id: String,
    /// Worker holding the bead.
    pub worker: String,
    /// When it was claimed.
    pub claimed_at: Timestamp,
    /// When the lease runs out unless renewed by a heartbeat.
    pub expires_at: Timestamp,
    /// Assignee before the claim, restored if the lease expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_assignee: Option<String>,
}

/// Payload of a `bead/<id>` record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct BeadPayload {
    pub(crate) v: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) changes: Vec<Change>,
    pub(crate) bead: Bead,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lease: Option<Lease>,
}

/// [`BeadPayload`] borrowed, for encoding: same fields, same skip rules.
#[derive(Serialize)]
pub(crate) struct BeadPayloadRef<'a> {
    pub(crate) v: u32,
    #[serde(skip_serializing_if = "<[Change]>::is_empty")]
    pub(crate) changes: &'a [Change],
    pub(crate) bead: &'a Bead,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lease: Option<&'a Lease>,
}

/// Payload of a `record/<key>` record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RecordPayload {
    pub(crate) v: u32,
    pub(crate) record: Map<String, Value>,
}

/// WAL key of a bead.
pub(crate) fn bead_key(id: &str) -> String {
    let mut k = String::with_capacity(BEAD_KEY_PREFIX.len() + id.len());
    k.push_str(BEAD_KEY_PREFIX);
    k.push_str(id);
    k
}

/// WAL key of a non-issue record.
pub(crate) fn record_key(key: &str) -> String {
    format!("{RECORD_KEY_PREFIX}{key}")
}
