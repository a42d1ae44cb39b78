//! What a usable identity document must contain, and which gaps reject it.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::document::IdentityDocument;

/// A problem found in an identity document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Issue {
    /// No document has been loaded yet (only from [`Loader::validate`](crate::Loader::validate)).
    #[error("identity not loaded")]
    NotLoaded,
    /// No numbered `### N. Name` heading under `## Core Principles`.
    #[error("no core principles found")]
    NoCorePrinciples,
    /// Neither `What I Won't Do` nor `What I Always Do` has an item.
    #[error("no boundaries defined")]
    NoBoundaries,
    /// No `###` heading under `## Interaction Style`.
    #[error("no interaction style defined")]
    NoInteractionStyle,
    /// No code block under `## Recovery Protocol`, or an empty one.
    #[error("no recovery protocol defined")]
    NoRecoveryProtocol,
    /// Two principles share a number, so looking one up by number is ambiguous.
    #[error("principle number {number} is used more than once")]
    DuplicatePrinciple {
        /// The repeated number.
        number: u32,
    },
    /// No `**Version**:` line.
    #[error("no version given")]
    NoVersion,
}

impl Issue {
    /// The issue's kind, which is what a [`ValidationPolicy`] decides on.
    pub fn kind(&self) -> IssueKind {
        match self {
            Self::NotLoaded => IssueKind::NotLoaded,
            Self::NoCorePrinciples => IssueKind::NoCorePrinciples,
            Self::NoBoundaries => IssueKind::NoBoundaries,
            Self::NoInteractionStyle => IssueKind::NoInteractionStyle,
            Self::NoRecoveryProtocol => IssueKind::NoRecoveryProtocol,
            Self::DuplicatePrinciple { .. } => IssueKind::DuplicatePrinciple,
            Self::NoVersion => IssueKind::NoVersion,
        }
    }
}

/// The kind of an [`Issue`], without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IssueKind {
    /// See [`Issue::NotLoaded`].
    NotLoaded,
    /// See [`Issue::NoCorePrinciples`].
    NoCorePrinciples,
    /// See [`Issue::NoBoundaries`].
    NoBoundaries,
    /// See [`Issue::NoInteractionStyle`].
    NoInteractionStyle,
    /// See [`Issue::NoRecoveryProtocol`].
    NoRecoveryProtocol,
    /// See [`Issue::DuplicatePrinciple`].
    DuplicatePrinciple,
    /// See [`Issue::NoVersion`].
    NoVersion,
}

/// The result of [`validate`]: every issue found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Validation {
    /// Every issue, in a fixed order.
    pub issues: Vec<Issue>,
}

impl Validation {
    /// True when no issue was found.
    pub fn is_valid(&self) -> bool {
        self.issues.is_empty()
    }
}

/// Checks a document for the issues listed on [`Issue`].
///
/// ```
/// use finn_identity::{Issue, parse_str, validate};
/// let v = validate(&parse_str("# Me\n"));
/// assert!(!v.is_valid());
/// assert!(v.issues.contains(&Issue::NoCorePrinciples));
/// ```
pub fn validate(doc: &IdentityDocument) -> Validation {
    let mut issues = Vec::new();
    if doc.principles.is_empty() {
        issues.push(Issue::NoCorePrinciples);
    }
    if doc.boundaries.is_empty() {
        issues.push(Issue::NoBoundaries);
    }
    if doc.interaction_style.is_empty() {
        issues.push(Issue::NoInteractionStyle);
    }
    if doc
        .recovery_protocol
        .as_ref()
        .is_none_or(|p| p.steps.trim().is_empty())
    {
        issues.push(Issue::NoRecoveryProtocol);
    }
    let mut seen = BTreeSet::new();
    let mut reported = BTreeSet::new();
    for p in &doc.principles {
        if !seen.insert(p.number) && reported.insert(p.number) {
            issues.push(Issue::DuplicatePrinciple { number: p.number });
        }
    }
    if doc.metadata.version.is_none() {
        issues.push(Issue::NoVersion);
    }
    Validation { issues }
}

/// Which issues make [`Loader::load`](crate::Loader::load) refuse a document and keep the last
/// known good one active.
///
/// Issues the policy tolerates are still reported (in [`Health`](crate::Health) and events).
///
/// ```
/// use finn_identity::{IssueKind, ValidationPolicy};
/// let p = ValidationPolicy::default().tolerate(IssueKind::NoRecoveryProtocol);
/// assert!(!p.rejects(IssueKind::NoRecoveryProtocol));
/// assert!(p.rejects(IssueKind::NoCorePrinciples));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationPolicy {
    reject: BTreeSet<IssueKind>,
}

impl Default for ValidationPolicy {
    /// Rejects the four gaps the TypeScript loader's `validate()` reported (no principles, no
    /// boundaries, no interaction style, no recovery protocol) and duplicate principle numbers;
    /// tolerates a missing version.
    fn default() -> Self {
        Self {
            reject: [
                IssueKind::NotLoaded,
                IssueKind::NoCorePrinciples,
                IssueKind::NoBoundaries,
                IssueKind::NoInteractionStyle,
                IssueKind::NoRecoveryProtocol,
                IssueKind::DuplicatePrinciple,
            ]
            .into_iter()
            .collect(),
        }
    }
}

impl ValidationPolicy {
    /// Rejects a document with any issue at all.
    pub fn strict() -> Self {
        Self::default().reject(IssueKind::NoVersion)
    }

    /// Accepts any document that has at least one core principle and no duplicate numbers.
    pub fn require_principles() -> Self {
        Self {
            reject: [
                IssueKind::NotLoaded,
                IssueKind::NoCorePrinciples,
                IssueKind::DuplicatePrinciple,
            ]
            .into_iter()
            .collect(),
        }
    }

    /// Also rejects documents with `kind`.
    #[must_use]
    pub fn reject(mut self, kind: IssueKind) -> Self {
        self.reject.insert(kind);
        self
    }

    /// Accepts documents with `kind` (the issue is still reported).
    #[must_use]
    pub fn tolerate(mut self, kind: IssueKind) -> Self {
        self.reject.remove(&kind);
        self
    }

    /// Whether an issue of this kind rejects a document.
    pub fn rejects(&self, kind: IssueKind) -> bool {
        self.reject.contains(&kind)
    }

    /// Whether this validation result rejects the document.
    pub fn rejects_any(&self, validation: &Validation) -> bool {
        validation.issues.iter().any(|i| self.rejects(i.kind()))
    }
}

/// `a; b; c` for error messages.
pub(crate) fn issue_list(issues: &[Issue]) -> impl fmt::Display + '_ {
    struct List<'a>(&'a [Issue]);
    impl fmt::Display for List<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for (i, issue) in self.0.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{issue}")?;
            }
            Ok(())
        }
    }
    List(issues)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_str;

    #[test]
    fn duplicate_numbers_are_reported_once_each() {
        let doc =
            parse_str("## Core Principles\n### 1. A\nx\n### 1. B\ny\n### 1. C\nz\n### 2. D\nw\n");
        let v = validate(&doc);
        assert_eq!(
            v.issues
                .iter()
                .filter(|i| matches!(i, Issue::DuplicatePrinciple { number: 1 }))
                .count(),
            1
        );
        assert!(ValidationPolicy::default().rejects_any(&v));
    }

    #[test]
    fn policies_differ_on_what_they_reject() {
        let v = Validation {
            issues: vec![Issue::NoVersion],
        };
        assert!(!ValidationPolicy::default().rejects_any(&v));
        assert!(ValidationPolicy::strict().rejects_any(&v));
        let v = Validation {
            issues: vec![Issue::NoBoundaries, Issue::NoRecoveryProtocol],
        };
        assert!(ValidationPolicy::default().rejects_any(&v));
        assert!(!ValidationPolicy::require_principles().rejects_any(&v));
    }
}
