//! The lifecycle state machine: which status changes are allowed, and the audit record of each.
//!
//! ```text
//!            approve            activate            archive
//!  pending ───────────▶ approved ─────────▶ active ─────────▶ archived
//!     │                                        ▲                  │
//!     │ reject                                 └──── restore ─────┘
//!     ▼
//!  rejected
//! ```
//!
//! Everything else is refused with [`TransitionError`](crate::TransitionError). In the anchors any
//! status could be set to any other, `approved` was never stored (it was folded into `active`), and
//! archiving a pending learning deleted it without a trace; here every change is a WAL record with
//! who, when, from and to (see [`TransitionRecord`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{LearningId, Timestamp};

/// Where a learning is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Awaiting human approval (the anchors' `pending-self` learnings, target `loa`).
    Pending,
    /// Approved by someone, not yet in use.
    Approved,
    /// In use: the only status [`find_matching`](crate::LearningStore::find_matching) returns.
    Active,
    /// Retired; kept with its history and restorable.
    Archived,
    /// Refused at review; kept with its history, never matched.
    Rejected,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Approved,
        Status::Active,
        Status::Archived,
        Status::Rejected,
    ];

    /// The lower-case name used in files and WAL payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Active => "active",
            Status::Archived => "archived",
            Status::Rejected => "rejected",
        }
    }

    /// The action that moves a learning from `self` to `to`, if that move is allowed.
    pub fn action_to(self, to: Status) -> Option<Action> {
        match (self, to) {
            (Status::Pending, Status::Approved) => Some(Action::Approve),
            (Status::Pending, Status::Rejected) => Some(Action::Reject),
            (Status::Approved, Status::Active) => Some(Action::Activate),
            (Status::Active, Status::Archived) => Some(Action::Archive),
            (Status::Archived, Status::Active) => Some(Action::Restore),
            _ => None,
        }
    }

    /// Whether `self → to` is an allowed transition.
    pub fn can_transition_to(self, to: Status) -> bool {
        self.action_to(to).is_some()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named, allowed status change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `pending → approved`; records the approver in `approved_by` / `approved_at`.
    Approve,
    /// `pending → rejected`.
    Reject,
    /// `approved → active`.
    Activate,
    /// `active → archived`.
    Archive,
    /// `archived → active`, only ever by this explicit action.
    Restore,
}

impl Action {
    /// The status the action starts from and the status it ends in.
    pub fn edge(self) -> (Status, Status) {
        match self {
            Action::Approve => (Status::Pending, Status::Approved),
            Action::Reject => (Status::Pending, Status::Rejected),
            Action::Activate => (Status::Approved, Status::Active),
            Action::Archive => (Status::Active, Status::Archived),
            Action::Restore => (Status::Archived, Status::Active),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Activate => "activate",
            Action::Archive => "archive",
            Action::Restore => "restore",
        })
    }
}

/// The audit record of one status change, stored in the WAL next to the new learning state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionRecord {
    /// The learning that changed.
    pub id: LearningId,
    /// Position in this learning's history, from 1.
    pub seq: u32,
    /// Status before.
    pub from: Status,
    /// Status after.
    pub to: Status,
    /// Who made the change (a user name, an agent id, `"import"`).
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// Optional free-text reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_documented_transitions_are_allowed() {
        let allowed = [
            (Status::Pending, Status::Approved),
            (Status::Pending, Status::Rejected),
            (Status::Approved, Status::Active),
            (Status::Active, Status::Archived),
            (Status::Archived, Status::Active),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn action_edges_agree_with_action_to() {
        for a in [
            Action::Approve,
            Action::Reject,
            Action::Activate,
            Action::Archive,
            Action::Restore,
        ] {
            let (from, to) = a.edge();
            assert_eq!(from.action_to(to), Some(a));
        }
    }
}
