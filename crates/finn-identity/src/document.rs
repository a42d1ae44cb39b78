//! The typed identity document and its parts.

use std::fmt;

use serde::Serialize;

use crate::checksum::Checksum;

/// A parsed identity document (`BEAUVOIR.md`).
///
/// The typed fields are views onto the document; [`sections`](Self::sections) and
/// [`preamble`](Self::preamble) hold every byte of it, so nothing a typed field does not
/// understand is lost: [`IdentityDocument::to_markdown`] gives back the source text (with CRLF
/// line endings turned into LF and a leading byte-order mark removed).
///
/// Parsing never fails: a section that is absent leaves its field empty, and
/// [`validate`](crate::validate) reports what is missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct IdentityDocument {
    /// BLAKE3 of the raw bytes the document was parsed from.
    pub checksum: Checksum,
    /// The text of the first level-1 heading, e.g. `Beauvoir - Identity Document`.
    pub title: Option<String>,
    /// `**Version**:`, `**Last Updated**:` and `**Change Log**:` lines.
    pub metadata: Metadata,
    /// The `## Identity` section, verbatim.
    pub identity: Option<Section>,
    /// The numbered `### N. Name` headings under `## Core Principles …`, in document order.
    pub principles: Vec<Principle>,
    /// Items of the `### What I Won't Do` and `### What I Always Do` sections.
    pub boundaries: Boundaries,
    /// The `## Operational Stance` section, verbatim.
    pub operational_stance: Option<Section>,
    /// The `###` headings under `## Interaction Style`, in document order.
    pub interaction_style: Vec<StyleEntry>,
    /// The first code block under `## Recovery Protocol`.
    pub recovery_protocol: Option<RecoveryProtocol>,
    /// Text before the first heading.
    pub preamble: String,
    /// Every top-level heading of the document as an outline tree, with its source text.
    pub sections: Vec<Section>,
}

impl IdentityDocument {
    /// The principle numbered `number`, if the document has one.
    pub fn principle(&self, number: u32) -> Option<&Principle> {
        self.principles.iter().find(|p| p.number == number)
    }

    /// The items of one kind of boundary.
    pub fn boundaries(&self, kind: BoundaryKind) -> &[BoundaryItem] {
        match kind {
            BoundaryKind::WillNot => &self.boundaries.will_not,
            BoundaryKind::Always => &self.boundaries.always,
        }
    }

    /// Every section, depth first in document order, including nested ones.
    pub fn all_sections(&self) -> impl Iterator<Item = &Section> {
        let mut stack: Vec<&Section> = self.sections.iter().rev().collect();
        std::iter::from_fn(move || {
            let next = stack.pop()?;
            stack.extend(next.children.iter().rev());
            Some(next)
        })
    }

    /// The first section (at any depth) whose title matches `title`, compared the way the parser
    /// compares section names: case-insensitive, curly apostrophes equal to straight ones,
    /// whitespace collapsed.
    pub fn section(&self, title: &str) -> Option<&Section> {
        let wanted = crate::parse::normalize_title(title);
        self.all_sections()
            .find(|s| crate::parse::normalize_title(&s.title) == wanted)
    }

    /// The document's text rebuilt from [`preamble`](Self::preamble) and
    /// [`sections`](Self::sections): the parsed source with line endings as LF.
    pub fn to_markdown(&self) -> String {
        fn push(out: &mut String, section: &Section) {
            out.push_str(&section.heading);
            out.push_str(&section.body);
            for child in &section.children {
                push(out, child);
            }
        }
        let mut out = self.preamble.clone();
        for section in &self.sections {
            push(&mut out, section);
        }
        out
    }
}

/// Document metadata from bold-key lines such as `> **Version**: 0.3.0`.
///
/// Each field is the text after the key on the same line, trimmed. A field that is absent stays
/// `None`; no default is invented (the TypeScript loader filled in today's date).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Metadata {
    /// `**Version**:`
    pub version: Option<String>,
    /// `**Last Updated**:`
    pub last_updated: Option<String>,
    /// `**Change Log**:` (also `**Changelog**:`)
    pub change_log: Option<String>,
}

/// One heading of the document and the text up to the next heading.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Section {
    /// Heading level, 1 to 6.
    pub level: u8,
    /// The heading's text without markers or inline markup, e.g. `What I Won’t Do`.
    pub title: String,
    /// The heading's source, e.g. `### What I Won’t Do\n`.
    pub heading: String,
    /// Source text between this heading and the next heading of any level.
    pub body: String,
    /// Sections with a deeper level that follow before the next heading of this level or above.
    pub children: Vec<Section>,
}

impl Section {
    /// The section's text including its heading and all nested sections, as in the source.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.heading);
        out.push_str(&self.body);
        for child in &self.children {
            out.push_str(&child.to_markdown());
        }
        out
    }
}

/// A numbered core principle: `### 1. Understand Before Acting`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Principle {
    /// The number in the heading.
    pub number: u32,
    /// The heading text after the number.
    pub name: String,
    /// Markdown before the `**In practice**` paragraph, trimmed.
    pub description: String,
    /// Text of the first bold span in the description (the TypeScript loader's `description`).
    pub summary: Option<String>,
    /// Markdown after `**In practice**:` to the end of the principle, trimmed.
    pub in_practice: Option<String>,
}

/// The two lists of boundaries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Boundaries {
    /// Items of every `What I Won't Do` section.
    pub will_not: Vec<BoundaryItem>,
    /// Items of every `What I Always Do` section.
    pub always: Vec<BoundaryItem>,
}

impl Boundaries {
    /// True when neither list has an item.
    pub fn is_empty(&self) -> bool {
        self.will_not.is_empty() && self.always.is_empty()
    }
}

/// Which boundary list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundaryKind {
    /// `What I Won't Do`.
    WillNot,
    /// `What I Always Do`.
    Always,
}

/// A list item of a boundary section: `1. **Title** - description`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BoundaryItem {
    /// The bold lead of the item, or the whole item when it has none.
    pub title: String,
    /// What follows the bold lead, without a leading `-`, `–`, `—` or `:`.
    pub description: Option<String>,
}

impl fmt::Display for BoundaryItem {
    /// `Title: description`, or `Title` alone, as the TypeScript loader rendered items.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.description {
            Some(d) => write!(f, "{}: {}", self.title, d),
            None => f.write_str(&self.title),
        }
    }
}

/// One `###` heading under `## Interaction Style`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StyleEntry {
    /// The heading text, e.g. `Concise`.
    pub name: String,
    /// The text of each list item under the heading.
    pub points: Vec<String>,
    /// The markdown under the heading, trimmed.
    pub body: String,
}

/// The recovery protocol: the first code block under `## Recovery Protocol`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RecoveryProtocol {
    /// The code block's content without leading blank lines and trailing whitespace.
    pub steps: String,
    /// The info string of a fenced block (e.g. `text`), if any.
    pub language: Option<String>,
}
