//! Input limits from the anchors' validation library (anchors.md §6.3), applied before anything is
//! written: an invalid mutation returns a [`ValidationError`] and leaves no WAL record.

use serde::{Deserialize, Serialize};

use crate::bead::{Bead, IssueType, Priority};

/// Longest bead id accepted (anchors `MAX_BEAD_ID_LENGTH`).
pub const MAX_BEAD_ID_LENGTH: usize = 128;
/// Longest label accepted (anchors `MAX_LABEL_LENGTH`).
pub const MAX_LABEL_LENGTH: usize = 64;
/// Longest short string accepted: titles, reasons, assignees (anchors `MAX_STRING_LENGTH`).
pub const MAX_STRING_LENGTH: usize = 1024;
/// Longest long-form text accepted: descriptions, design, notes, comments (finn's own limit; the
/// anchors truncated these to 1024 characters when quoting them for a shell, which lost data).
pub const MAX_TEXT_LENGTH: usize = 1 << 20;
/// Highest priority number accepted (anchors `validatePriority` default range 0–10).
pub const MAX_PRIORITY: u8 = 10;
/// Issue types accepted by mutations: the anchors' `ALLOWED_TYPES` plus `bd`'s own `chore`.
pub const ALLOWED_TYPES: &[&str] = &[
    "task", "bug", "feature", "epic", "story", "debt", "spike", "chore",
];

/// Limits applied to mutations. Imports apply only the id rules (see [`Limits::check_imported`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest id. Default: [`MAX_BEAD_ID_LENGTH`].
    pub max_id_len: usize,
    /// Longest label. Default: [`MAX_LABEL_LENGTH`].
    pub max_label_len: usize,
    /// Longest title, reason, assignee or other short field. Default: [`MAX_STRING_LENGTH`].
    pub max_string_len: usize,
    /// Longest description, design, notes, acceptance criteria or comment. Default: [`MAX_TEXT_LENGTH`].
    pub max_text_len: usize,
    /// Highest priority number. Default: [`MAX_PRIORITY`].
    pub max_priority: u8,
    /// Allowed issue types. Default: [`ALLOWED_TYPES`].
    pub allowed_types: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_id_len: MAX_BEAD_ID_LENGTH,
            max_label_len: MAX_LABEL_LENGTH,
            max_string_len: MAX_STRING_LENGTH,
            max_text_len: MAX_TEXT_LENGTH,
            max_priority: MAX_PRIORITY,
            allowed_types: ALLOWED_TYPES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// Why an input was rejected. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The id is empty, too long, or has characters outside `[a-zA-Z0-9_-]`.
    #[error("invalid bead id {id:?}: must be 1 to {max} characters of [a-zA-Z0-9_-]")]
    InvalidId {
        /// The rejected id.
        id: String,
        /// The length limit in force.
        max: usize,
    },
    /// The label is empty, too long, or has characters outside `[a-zA-Z0-9_:-]`.
    #[error("invalid label {label:?}: must be 1 to {max} characters of [a-zA-Z0-9_:-]")]
    InvalidLabel {
        /// The rejected label.
        label: String,
        /// The length limit in force.
        max: usize,
    },
    /// A text field is longer than its limit.
    #[error("field {field} is {len} characters long, the limit is {max}")]
    TooLong {
        /// Field name.
        field: &'static str,
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A required text field is empty.
    #[error("field {field} must not be empty")]
    Empty {
        /// Field name.
        field: &'static str,
    },
    /// A text field contains a NUL character.
    #[error("field {field} contains a NUL character")]
    Nul {
        /// Field name.
        field: &'static str,
    },
    /// Priority outside `0..=max`.
    #[error("priority {priority} is outside 0..={max}")]
    PriorityOutOfRange {
        /// The rejected priority.
        priority: u8,
        /// The highest allowed.
        max: u8,
    },
    /// Issue type not in the allowed list.
    #[error("issue type {issue_type:?} is not allowed")]
    TypeNotAllowed {
        /// The rejected type.
        issue_type: String,
    },
    /// A bead with this id already exists.
    #[error("bead {id} already exists")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// No bead has this id.
    #[error("bead {id} does not exist")]
    UnknownBead {
        /// The id.
        id: String,
    },
    /// The bead is a tombstone and cannot be changed.
    #[error("bead {id} is deleted")]
    Deleted {
        /// The id.
        id: String,
    },
    /// A dependency points at a bead that does not exist.
    #[error("dependency target {target} of bead {id} does not exist")]
    DependencyTargetMissing {
        /// The dependent bead.
        id: String,
        /// The missing target.
        target: String,
    },
    /// A bead cannot depend on itself.
    #[error("bead {id} cannot depend on itself")]
    SelfDependency {
        /// The id.
        id: String,
    },
    /// The edge would close a cycle through edges that affect readiness.
    #[error("dependency would create a cycle: {}", path.join(" -> "))]
    DependencyCycle {
        /// The cycle, starting and ending at the same bead.
        path: Vec<String>,
    },
    /// The status change is not allowed (for example, setting `tombstone` outside `delete`).
    #[error("status {status} cannot be set directly; use {use_instead}")]
    StatusNotSettable {
        /// The rejected status.
        status: String,
        /// The operation to use.
        use_instead: &'static str,
    },
}

/// `^[a-zA-Z0-9_-]+$`, the anchors' `BEAD_ID_PATTERN`.
pub fn is_valid_id_chars(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `^[a-zA-Z0-9_:-]+$`, the anchors' `LABEL_PATTERN`.
pub fn is_valid_label_chars(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b':')
}

impl Limits {
    /// Checks a bead id.
    pub fn check_id(&self, id: &str) -> Result<(), ValidationError> {
        if id.len() > self.max_id_len || !is_valid_id_chars(id) {
            return Err(ValidationError::InvalidId {
                id: id.to_owned(),
                max: self.max_id_len,
            });
        }
        Ok(())
    }

    /// Checks a label.
    pub fn check_label(&self, label: &str) -> Result<(), ValidationError> {
        if label.len() > self.max_label_len || !is_valid_label_chars(label) {
            return Err(ValidationError::InvalidLabel {
                label: label.to_owned(),
                max: self.max_label_len,
            });
        }
        Ok(())
    }

    /// Checks a priority.
    pub fn check_priority(&self, p: Priority) -> Result<(), ValidationError> {
        if p.0 > self.max_priority {
            return Err(ValidationError::PriorityOutOfRange {
                priority: p.0,
                max: self.max_priority,
            });
        }
        Ok(())
    }

    /// Checks an issue type against the allowed list.
    pub fn check_type(&self, t: &IssueType) -> Result<(), ValidationError> {
        if !self.allowed_types.iter().any(|a| a == t.as_str()) {
            return Err(ValidationError::TypeNotAllowed {
                issue_type: t.as_str().to_owned(),
            });
        }
        Ok(())
    }

    /// Checks a short field (title, reason, assignee, ...).
    pub fn check_short(&self, field: &'static str, v: &str) -> Result<(), ValidationError> {
        check_len(field, v, self.max_string_len)
    }

    /// Checks a long-form field (description, notes, comment text, ...).
    pub fn check_text(&self, field: &'static str, v: &str) -> Result<(), ValidationError> {
        check_len(field, v, self.max_text_len)
    }

    /// Checks the fields a mutation may set on a bead (everything but graph rules).
    pub fn check_bead(&self, b: &Bead) -> Result<(), ValidationError> {
        self.check_id(&b.id)?;
        if b.title.trim().is_empty() {
            return Err(ValidationError::Empty { field: "title" });
        }
        self.check_short("title", &b.title)?;
        for (field, v) in [
            ("description", &b.description),
            ("design", &b.design),
            ("acceptance_criteria", &b.acceptance_criteria),
            ("notes", &b.notes),
        ] {
            if let Some(v) = v {
                self.check_text(field, v)?;
            }
        }
        for (field, v) in [
            ("assignee", &b.assignee),
            ("owner", &b.owner),
            ("close_reason", &b.close_reason),
            ("created_by", &b.created_by),
            ("delete_reason", &b.delete_reason),
            ("external_ref", &b.external_ref),
        ] {
            if let Some(v) = v {
                self.check_short(field, v)?;
            }
        }
        self.check_priority(b.priority)?;
        self.check_type(&b.issue_type)?;
        for l in &b.labels {
            self.check_label(l)?;
        }
        for c in &b.comments {
            self.check_text("comment", &c.text)?;
        }
        Ok(())
    }

    /// What an imported record must satisfy: a valid id (it becomes a WAL key). Everything else in
    /// a foreign file is data to preserve, not input to police; see the crate docs.
    pub fn check_imported(&self, b: &Bead) -> Result<(), ValidationError> {
        self.check_id(&b.id)
    }
}

fn check_len(field: &'static str, v: &str, max: usize) -> Result<(), ValidationError> {
    if v.contains('\0') {
        return Err(ValidationError::Nul { field });
    }
    let len = v.chars().count();
    if len > max {
        return Err(ValidationError::TooLong { field, len, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_anchor_pattern_and_length() {
        let l = Limits::default();
        for ok in ["bd-123", "a", "A_b-C9", &"x".repeat(128)] {
            assert!(l.check_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "a b",
            "a;rm -rf /",
            "$(whoami)",
            "a\nb",
            "a.b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(
                matches!(l.check_id(bad), Err(ValidationError::InvalidId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn labels_priorities_types_and_lengths() {
        let l = Limits::default();
        assert!(l.check_label("sprint:in_progress").is_ok());
        assert!(l.check_label("same-issue-3x").is_ok());
        assert!(l.check_label("has space").is_err());
        assert!(l.check_label("a;b").is_err());
        assert!(l.check_label(&"x".repeat(65)).is_err());
        assert!(l.check_label(&"x".repeat(64)).is_ok());
        assert!(l.check_priority(Priority(10)).is_ok());
        assert_eq!(
            l.check_priority(Priority(11)),
            Err(ValidationError::PriorityOutOfRange {
                priority: 11,
                max: 10
            })
        );
        assert!(l.check_type(&IssueType::Debt).is_ok());
        assert!(l.check_type(&IssueType::parse("rm -rf")).is_err());
        assert!(l.check_short("title", &"x".repeat(1024)).is_ok());
        assert!(matches!(
            l.check_short("title", &"x".repeat(1025)),
            Err(ValidationError::TooLong { len: 1025, .. })
        ));
        assert!(matches!(
            l.check_short("title", "a\0b"),
            Err(ValidationError::Nul { .. })
        ));
    }
}
