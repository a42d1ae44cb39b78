//! The bead (issue) model of the beads JSONL format, with lossless serde.
//!
//! Every field `bd` and `br` document is typed. Anything else (fields of newer or older versions,
//! fields of forks such as `source_repo_path`, explicit `null`s) is kept in [`Bead::extra`] and
//! written back, so an import followed by an export yields the same JSON object.
//!
//! Three rules make the round trip exact:
//! - optional fields are `Option`s: absent stays absent, `null` is remembered in `extra`;
//! - fields with a natural default (`title`, `status`, `priority`, `issue_type`, `labels`,
//!   `dependencies`, `comments`) remember whether the source had them, and are omitted on export only
//!   while they were absent *and* still hold the default;
//! - timestamps keep their original text ([`Timestamp`]).

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::timestamp::Timestamp;

macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this version does not know; kept verbatim.
            Other(String),
        }

        impl $name {
            /// The spelling used in beads files.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )*
                    Self::Other(s) => s,
                }
            }

            /// Reads the spelling used in beads files; unknown spellings become `Other`.
            pub fn parse(s: &str) -> Self {
                match s {
                    $( $text => Self::$variant, )*
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a string")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok($name::parse(v))
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

string_enum! {
    /// Lifecycle status of a bead.
    pub enum Status {
        /// Ready to be worked on (if nothing blocks it).
        Open = "open",
        /// Claimed and being worked on.
        InProgress = "in_progress",
        /// Manually marked blocked.
        Blocked = "blocked",
        /// Postponed.
        Deferred = "deferred",
        /// Done (see `close_reason`).
        Closed = "closed",
        /// Deleted; kept so the deletion propagates through exports.
        Tombstone = "tombstone",
        /// Pinned (`bd` extension); never in the ready set.
        Pinned = "pinned",
        /// Hooked (`bd` extension); never in the ready set.
        Hooked = "hooked",
    }
}

impl Status {
    /// Closed and tombstoned beads are terminal: they never block anything.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Closed | Self::Tombstone)
    }
}

// The variants come from a macro that cannot carry `#[default]` for one enum only.
#[allow(clippy::derivable_impls)]
impl Default for Status {
    fn default() -> Self {
        Self::Open
    }
}

string_enum! {
    /// Kind of work item.
    pub enum IssueType {
        /// A unit of work.
        Task = "task",
        /// A defect.
        Bug = "bug",
        /// New functionality.
        Feature = "feature",
        /// A container of child beads.
        Epic = "epic",
        /// A user story.
        Story = "story",
        /// Technical debt (the anchors' circuit-breaker beads use it).
        Debt = "debt",
        /// Time-boxed research.
        Spike = "spike",
        /// Maintenance.
        Chore = "chore",
    }
}

#[allow(clippy::derivable_impls)]
impl Default for IssueType {
    fn default() -> Self {
        Self::Task
    }
}

string_enum! {
    /// Kind of a dependency edge `issue_id -> depends_on_id`.
    pub enum DepType {
        /// `depends_on_id` must close before `issue_id` is ready.
        Blocks = "blocks",
        /// `issue_id` is a child of `depends_on_id`; a blocked or deferred parent holds its children.
        ParentChild = "parent-child",
        /// `issue_id` runs only if `depends_on_id` fails (closes with a failure reason).
        ConditionalBlocks = "conditional-blocks",
        /// `issue_id` waits for the children of `depends_on_id` (gate in `metadata`).
        WaitsFor = "waits-for",
        /// Informational; never blocks.
        Related = "related",
        /// Provenance; never blocks.
        DiscoveredFrom = "discovered-from",
    }
}

impl DepType {
    /// Whether this edge type can keep a bead out of the ready set (and so must stay acyclic).
    pub fn affects_ready(&self) -> bool {
        matches!(
            self,
            Self::Blocks | Self::ParentChild | Self::ConditionalBlocks | Self::WaitsFor
        )
    }
}

/// Priority 0 (critical) .. 4 (backlog) in `bd`; the anchors accept up to 10.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(pub u8);

impl Priority {
    /// `bd`'s default, P2.
    pub const DEFAULT: Priority = Priority(2);
}

impl Default for Priority {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

/// A dependency edge stored on the dependent bead.
#[derive(Clone, Debug, PartialEq)]
pub struct Dependency {
    /// The dependent bead (the one holding the edge); absent in some older files.
    pub issue_id: Option<String>,
    /// The bead depended on.
    pub depends_on_id: String,
    /// Edge kind.
    pub dep_type: DepType,
    /// When the edge was added.
    pub created_at: Option<Timestamp>,
    /// Who added it.
    pub created_by: Option<String>,
    /// Free-form metadata: `bd` writes a JSON document as a string (`"{}"`), kept as found.
    pub metadata: Option<Value>,
    /// Fields this version does not type (`thread_id`, ...), kept verbatim.
    pub extra: Map<String, Value>,
}

impl Dependency {
    /// A new edge `issue_id -> depends_on_id` of kind `dep_type`.
    pub fn new(issue_id: &str, depends_on_id: &str, dep_type: DepType) -> Self {
        Self {
            issue_id: Some(issue_id.to_owned()),
            depends_on_id: depends_on_id.to_owned(),
            dep_type,
            created_at: None,
            created_by: None,
            metadata: None,
            extra: Map::new(),
        }
    }

    /// The waits-for gate from `metadata` (`{"gate":"any-children"}`); anything else means all children.
    pub fn waits_for_gate(&self) -> WaitsForGate {
        let parsed;
        let obj = match &self.metadata {
            Some(Value::String(s)) => {
                parsed = serde_json::from_str::<Value>(s).ok();
                parsed.as_ref()
            }
            Some(v) => Some(v),
            None => None,
        };
        match obj.and_then(|v| v.get("gate")).and_then(Value::as_str) {
            Some("any-children") => WaitsForGate::AnyChildren,
            _ => WaitsForGate::AllChildren,
        }
    }
}

/// When a `waits-for` edge releases its dependent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitsForGate {
    /// Every child of the spawner is closed (the default).
    AllChildren,
    /// At least one child of the spawner is closed.
    AnyChildren,
}

/// A comment on a bead.
#[derive(Clone, Debug, PartialEq)]
pub struct Comment {
    /// Comment id: an integer in older `bd`, a string in newer ones; kept as found.
    pub id: Option<Value>,
    /// Bead the comment belongs to.
    pub issue_id: Option<String>,
    /// Author.
    pub author: Option<String>,
    /// Body.
    pub text: String,
    /// When it was written.
    pub created_at: Option<Timestamp>,
    /// Fields this version does not type, kept verbatim.
    pub extra: Map<String, Value>,
}

/// Which fields with a natural default were absent in the source record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Absent(u8);

impl Absent {
    const TITLE: u8 = 1;
    const STATUS: u8 = 1 << 1;
    const PRIORITY: u8 = 1 << 2;
    const ISSUE_TYPE: u8 = 1 << 3;
    const LABELS: u8 = 1 << 4;
    const DEPENDENCIES: u8 = 1 << 5;
    const COMMENTS: u8 = 1 << 6;
    const ALL: u8 = 0x7f;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// One work item: a line of `issues.jsonl` without a `_type` (or with `"_type":"issue"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Bead {
    /// Unique id (`bd-a1b2`).
    pub id: String,
    /// One-line summary.
    pub title: String,
    /// Long description.
    pub description: Option<String>,
    /// Design notes.
    pub design: Option<String>,
    /// Acceptance criteria.
    pub acceptance_criteria: Option<String>,
    /// Working notes.
    pub notes: Option<String>,
    /// Lifecycle status.
    pub status: Status,
    /// Priority (lower is more urgent).
    pub priority: Priority,
    /// Kind of work item.
    pub issue_type: IssueType,
    /// Who works on it.
    pub assignee: Option<String>,
    /// Who owns it.
    pub owner: Option<String>,
    /// Estimate in minutes.
    pub estimated_minutes: Option<i64>,
    /// Creation time.
    pub created_at: Option<Timestamp>,
    /// Creator.
    pub created_by: Option<String>,
    /// Last change; import merges compare it.
    pub updated_at: Option<Timestamp>,
    /// When it was closed.
    pub closed_at: Option<Timestamp>,
    /// Why it was closed.
    pub close_reason: Option<String>,
    /// Session that closed it.
    pub closed_by_session: Option<String>,
    /// Due date.
    pub due_at: Option<Timestamp>,
    /// Not ready before this instant.
    pub defer_until: Option<Timestamp>,
    /// Reference in an external tracker.
    pub external_ref: Option<String>,
    /// External system of origin.
    pub source_system: Option<String>,
    /// Repository of origin.
    pub source_repo: Option<String>,
    /// Deletion time (tombstones).
    pub deleted_at: Option<Timestamp>,
    /// Who deleted it.
    pub deleted_by: Option<String>,
    /// Why it was deleted.
    pub delete_reason: Option<String>,
    /// Type before deletion.
    pub original_type: Option<String>,
    /// Compaction level (`bd compact`).
    pub compaction_level: Option<i64>,
    /// When it was compacted.
    pub compacted_at: Option<Timestamp>,
    /// Commit at compaction.
    pub compacted_at_commit: Option<String>,
    /// Size before compaction.
    pub original_size: Option<i64>,
    /// Sender (messages).
    pub sender: Option<String>,
    /// Ephemeral beads are never ready.
    pub ephemeral: Option<bool>,
    /// Pinned flag.
    pub pinned: Option<bool>,
    /// Templates are never ready.
    pub is_template: Option<bool>,
    /// Labels, in file order.
    pub labels: Vec<String>,
    /// Outgoing dependency edges.
    pub dependencies: Vec<Dependency>,
    /// Comments, oldest first.
    pub comments: Vec<Comment>,
    /// Every field this version does not type, plus explicit `null`s of typed fields.
    pub extra: Map<String, Value>,
    pub(crate) absent: Absent,
}

impl Bead {
    /// A new open task with `bd`'s defaults (P2, no labels). Timestamps are set by the store.
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            description: None,
            design: None,
            acceptance_criteria: None,
            notes: None,
            status: Status::Open,
            priority: Priority::DEFAULT,
            issue_type: IssueType::Task,
            assignee: None,
            owner: None,
            estimated_minutes: None,
            created_at: None,
            created_by: None,
            updated_at: None,
            closed_at: None,
            close_reason: None,
            closed_by_session: None,
            due_at: None,
            defer_until: None,
            external_ref: None,
            source_system: None,
            source_repo: None,
            deleted_at: None,
            deleted_by: None,
            delete_reason: None,
            original_type: None,
            compaction_level: None,
            compacted_at: None,
            compacted_at_commit: None,
            original_size: None,
            sender: None,
            ephemeral: None,
            pinned: None,
            is_template: None,
            labels: Vec::new(),
            dependencies: Vec::new(),
            comments: Vec::new(),
            extra: Map::new(),
            absent: Absent::default(),
        }
    }

    /// Whether the bead carries `label`.
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }

    /// Labels starting with `prefix`.
    pub fn labels_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.labels
            .iter()
            .filter(move |l| l.starts_with(prefix))
            .map(String::as_str)
    }

    /// Parent ids (targets of `parent-child` edges).
    pub fn parents(&self) -> impl Iterator<Item = &str> {
        self.dependencies
            .iter()
            .filter(|d| d.dep_type == DepType::ParentChild)
            .map(|d| d.depends_on_id.as_str())
    }

    /// Deferred at `now`: status `deferred`, or a `defer_until` in the future.
    pub fn is_deferred_at(&self, now: &Timestamp) -> bool {
        self.status == Status::Deferred
            || self
                .defer_until
                .as_ref()
                .is_some_and(|until| until.is_after(now))
    }
}

// ---------------------------------------------------------------------------------------------
// Serialization. Field names and order follow `bd`'s JSONL export.

fn put<M: SerializeMap, T: Serialize + ?Sized>(
    m: &mut M,
    key: &str,
    v: Option<&T>,
) -> Result<(), M::Error> {
    match v {
        Some(v) => m.serialize_entry(key, v),
        None => Ok(()),
    }
}

fn put_extra<M: SerializeMap>(
    m: &mut M,
    extra: &Map<String, Value>,
    emitted: impl Fn(&str) -> bool,
) -> Result<(), M::Error> {
    for (k, v) in extra {
        if !emitted(k) {
            m.serialize_entry(k, v)?;
        }
    }
    Ok(())
}

impl Serialize for Bead {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.absent;
        let emit_title = !(a.has(Absent::TITLE) && self.title.is_empty());
        let emit_status = !(a.has(Absent::STATUS) && self.status == Status::Open);
        let emit_priority = !(a.has(Absent::PRIORITY) && self.priority == Priority::DEFAULT);
        let emit_type = !(a.has(Absent::ISSUE_TYPE) && self.issue_type == IssueType::Task);
        let emit_labels = !(a.has(Absent::LABELS) && self.labels.is_empty());
        let emit_deps = !(a.has(Absent::DEPENDENCIES) && self.dependencies.is_empty());
        let emit_comments = !(a.has(Absent::COMMENTS) && self.comments.is_empty());

        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &self.id)?;
        if emit_title {
            m.serialize_entry("title", &self.title)?;
        }
        put(&mut m, "description", self.description.as_ref())?;
        put(&mut m, "design", self.design.as_ref())?;
        put(
            &mut m,
            "acceptance_criteria",
            self.acceptance_criteria.as_ref(),
        )?;
        put(&mut m, "notes", self.notes.as_ref())?;
        if emit_status {
            m.serialize_entry("status", &self.status)?;
        }
        if emit_priority {
            m.serialize_entry("priority", &self.priority)?;
        }
        if emit_type {
            m.serialize_entry("issue_type", &self.issue_type)?;
        }
        put(&mut m, "assignee", self.assignee.as_ref())?;
        put(&mut m, "owner", self.owner.as_ref())?;
        put(&mut m, "estimated_minutes", self.estimated_minutes.as_ref())?;
        put(&mut m, "created_at", self.created_at.as_ref())?;
        put(&mut m, "created_by", self.created_by.as_ref())?;
        put(&mut m, "updated_at", self.updated_at.as_ref())?;
        put(&mut m, "closed_at", self.closed_at.as_ref())?;
        put(&mut m, "close_reason", self.close_reason.as_ref())?;
        put(&mut m, "closed_by_session", self.closed_by_session.as_ref())?;
        put(&mut m, "due_at", self.due_at.as_ref())?;
        put(&mut m, "defer_until", self.defer_until.as_ref())?;
        put(&mut m, "external_ref", self.external_ref.as_ref())?;
        put(&mut m, "source_system", self.source_system.as_ref())?;
        put(&mut m, "source_repo", self.source_repo.as_ref())?;
        put(&mut m, "deleted_at", self.deleted_at.as_ref())?;
        put(&mut m, "deleted_by", self.deleted_by.as_ref())?;
        put(&mut m, "delete_reason", self.delete_reason.as_ref())?;
        put(&mut m, "original_type", self.original_type.as_ref())?;
        put(&mut m, "compaction_level", self.compaction_level.as_ref())?;
        put(&mut m, "compacted_at", self.compacted_at.as_ref())?;
        put(
            &mut m,
            "compacted_at_commit",
            self.compacted_at_commit.as_ref(),
        )?;
        put(&mut m, "original_size", self.original_size.as_ref())?;
        put(&mut m, "sender", self.sender.as_ref())?;
        put(&mut m, "ephemeral", self.ephemeral.as_ref())?;
        put(&mut m, "pinned", self.pinned.as_ref())?;
        put(&mut m, "is_template", self.is_template.as_ref())?;
        if emit_labels {
            m.serialize_entry("labels", &self.labels)?;
        }
        if emit_deps {
            m.serialize_entry("dependencies", &self.dependencies)?;
        }
        if emit_comments {
            m.serialize_entry("comments", &self.comments)?;
        }
        put_extra(&mut m, &self.extra, |k| match BeadField::from_name(k) {
            BeadField::Other => false,
            BeadField::Id => true,
            BeadField::Title => emit_title,
            BeadField::Status => emit_status,
            BeadField::Priority => emit_priority,
            BeadField::IssueType => emit_type,
            BeadField::Labels => emit_labels,
            BeadField::Dependencies => emit_deps,
            BeadField::Comments => emit_comments,
            f => self.typed_is_some(f),
        })?;
        m.end()
    }
}

impl Bead {
    fn typed_is_some(&self, f: BeadField) -> bool {
        use BeadField as F;
        match f {
            F::Description => self.description.is_some(),
            F::Design => self.design.is_some(),
            F::AcceptanceCriteria => self.acceptance_criteria.is_some(),
            F::Notes => self.notes.is_some(),
            F::Assignee => self.assignee.is_some(),
            F::Owner => self.owner.is_some(),
            F::EstimatedMinutes => self.estimated_minutes.is_some(),
            F::CreatedAt => self.created_at.is_some(),
            F::CreatedBy => self.created_by.is_some(),
            F::UpdatedAt => self.updated_at.is_some(),
            F::ClosedAt => self.closed_at.is_some(),
            F::CloseReason => self.close_reason.is_some(),
            F::ClosedBySession => self.closed_by_session.is_some(),
            F::DueAt => self.due_at.is_some(),
            F::DeferUntil => self.defer_until.is_some(),
            F::ExternalRef => self.external_ref.is_some(),
            F::SourceSystem => self.source_system.is_some(),
            F::SourceRepo => self.source_repo.is_some(),
            F::DeletedAt => self.deleted_at.is_some(),
            F::DeletedBy => self.deleted_by.is_some(),
            F::DeleteReason => self.delete_reason.is_some(),
            F::OriginalType => self.original_type.is_some(),
            F::CompactionLevel => self.compaction_level.is_some(),
            F::CompactedAt => self.compacted_at.is_some(),
            F::CompactedAtCommit => self.compacted_at_commit.is_some(),
            F::OriginalSize => self.original_size.is_some(),
            F::Sender => self.sender.is_some(),
            F::Ephemeral => self.ephemeral.is_some(),
            F::Pinned => self.pinned.is_some(),
            F::IsTemplate => self.is_template.is_some(),
            _ => true,
        }
    }
}

impl Serialize for Dependency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        put(&mut m, "issue_id", self.issue_id.as_ref())?;
        m.serialize_entry("depends_on_id", &self.depends_on_id)?;
        m.serialize_entry("type", &self.dep_type)?;
        put(&mut m, "created_at", self.created_at.as_ref())?;
        put(&mut m, "created_by", self.created_by.as_ref())?;
        put(&mut m, "metadata", self.metadata.as_ref())?;
        put_extra(&mut m, &self.extra, |k| match k {
            "depends_on_id" | "type" => true,
            "issue_id" => self.issue_id.is_some(),
            "created_at" => self.created_at.is_some(),
            "created_by" => self.created_by.is_some(),
            "metadata" => self.metadata.is_some(),
            _ => false,
        })?;
        m.end()
    }
}

impl Serialize for Comment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        put(&mut m, "id", self.id.as_ref())?;
        put(&mut m, "issue_id", self.issue_id.as_ref())?;
        put(&mut m, "author", self.author.as_ref())?;
        m.serialize_entry("text", &self.text)?;
        put(&mut m, "created_at", self.created_at.as_ref())?;
        put_extra(&mut m, &self.extra, |k| match k {
            "text" => true,
            "id" => self.id.is_some(),
            "issue_id" => self.issue_id.is_some(),
            "author" => self.author.is_some(),
            "created_at" => self.created_at.is_some(),
            _ => false,
        })?;
        m.end()
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialization: a map visitor that types known keys without allocating for them and keeps
// every other key (and every explicit null) in `extra`.

macro_rules! fields {
    ($name:ident { $( $variant:ident = $text:literal ),* $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum $name { $( $variant, )* Other }
        impl $name {
            fn from_name(s: &str) -> Self {
                match s { $( $text => Self::$variant, )* _ => Self::Other }
            }
        }
    };
}

fields!(BeadField {
    Id = "id",
    Title = "title",
    Description = "description",
    Design = "design",
    AcceptanceCriteria = "acceptance_criteria",
    Notes = "notes",
    Status = "status",
    Priority = "priority",
    IssueType = "issue_type",
    Assignee = "assignee",
    Owner = "owner",
    EstimatedMinutes = "estimated_minutes",
    CreatedAt = "created_at",
    CreatedBy = "created_by",
    UpdatedAt = "updated_at",
    ClosedAt = "closed_at",
    CloseReason = "close_reason",
    ClosedBySession = "closed_by_session",
    DueAt = "due_at",
    DeferUntil = "defer_until",
    ExternalRef = "external_ref",
    SourceSystem = "source_system",
    SourceRepo = "source_repo",
    DeletedAt = "deleted_at",
    DeletedBy = "deleted_by",
    DeleteReason = "delete_reason",
    OriginalType = "original_type",
    CompactionLevel = "compaction_level",
    CompactedAt = "compacted_at",
    CompactedAtCommit = "compacted_at_commit",
    OriginalSize = "original_size",
    Sender = "sender",
    Ephemeral = "ephemeral",
    Pinned = "pinned",
    IsTemplate = "is_template",
    Labels = "labels",
    Dependencies = "dependencies",
    Comments = "comments",
});

/// A map key: borrowed when the input allows, owned otherwise.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads an optional typed value; an explicit `null` is remembered in `extra`.
fn opt<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    key: &str,
    extra: &mut Map<String, Value>,
) -> Result<Option<T>, A::Error> {
    let v: Option<T> = map.next_value()?;
    if v.is_none() {
        keep(extra, key.to_owned(), Value::Null);
    }
    Ok(v)
}

/// Adds an untyped field to `extra`. Records carry one such field or none (`bd` writes a
/// `thread_id` on every dependency), so the first one gets a map sized for one entry instead of
/// the default growth to three: a store of 100,000 beads keeps that difference in memory.
fn keep(extra: &mut Map<String, Value>, key: String, value: Value) {
    if extra.is_empty() {
        *extra = Map::with_capacity(1);
    }
    extra.insert(key, value);
}

/// A list as read, without the spare capacity its growth left: beads live in the state for
/// the store's lifetime, and a list of one dependency would otherwise keep room for four.
fn exact<T>(mut v: Vec<T>) -> Vec<T> {
    v.shrink_to_fit();
    v
}

impl<'de> Deserialize<'de> for Bead {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bead;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bead (JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bead, A::Error> {
                use BeadField as F;
                let mut b = Bead::new(String::new(), String::new());
                let mut seen = 0u8;
                let mut id = None;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let x = &mut b.extra;
                    match F::from_name(&key) {
                        F::Id => id = Some(map.next_value::<String>()?),
                        F::Title => {
                            if let Some(t) = opt(&mut map, &key, x)? {
                                b.title = t;
                                seen |= Absent::TITLE;
                            }
                        }
                        F::Description => b.description = opt(&mut map, &key, x)?,
                        F::Design => b.design = opt(&mut map, &key, x)?,
                        F::AcceptanceCriteria => b.acceptance_criteria = opt(&mut map, &key, x)?,
                        F::Notes => b.notes = opt(&mut map, &key, x)?,
                        F::Status => {
                            if let Some(v) = opt(&mut map, &key, x)? {
                                b.status = v;
                                seen |= Absent::STATUS;
                            }
                        }
                        F::Priority => {
                            if let Some(v) = opt(&mut map, &key, x)? {
                                b.priority = v;
                                seen |= Absent::PRIORITY;
                            }
                        }
                        F::IssueType => {
                            if let Some(v) = opt(&mut map, &key, x)? {
                                b.issue_type = v;
                                seen |= Absent::ISSUE_TYPE;
                            }
                        }
                        F::Assignee => b.assignee = opt(&mut map, &key, x)?,
                        F::Owner => b.owner = opt(&mut map, &key, x)?,
                        F::EstimatedMinutes => b.estimated_minutes = opt(&mut map, &key, x)?,
                        F::CreatedAt => b.created_at = opt(&mut map, &key, x)?,
                        F::CreatedBy => b.created_by = opt(&mut map, &key, x)?,
                        F::UpdatedAt => b.updated_at = opt(&mut map, &key, x)?,
                        F::ClosedAt => b.closed_at = opt(&mut map, &key, x)?,
                        F::CloseReason => b.close_reason = opt(&mut map, &key, x)?,
                        F::ClosedBySession => b.closed_by_session = opt(&mut map, &key, x)?,
                        F::DueAt => b.due_at = opt(&mut map, &key, x)?,
                        F::DeferUntil => b.defer_until = opt(&mut map, &key, x)?,
                        F::ExternalRef => b.external_ref = opt(&mut map, &key, x)?,
                        F::SourceSystem => b.source_system = opt(&mut map, &key, x)?,
                        F::SourceRepo => b.source_repo = opt(&mut map, &key, x)?,
                        F::DeletedAt => b.deleted_at = opt(&mut map, &key, x)?,
                        F::DeletedBy => b.deleted_by = opt(&mut map, &key, x)?,
                        F::DeleteReason => b.delete_reason = opt(&mut map, &key, x)?,
                        F::OriginalType => b.original_type = opt(&mut map, &key, x)?,
                        F::CompactionLevel => b.compaction_level = opt(&mut map, &key, x)?,
                        F::CompactedAt => b.compacted_at = opt(&mut map, &key, x)?,
                        F::CompactedAtCommit => b.compacted_at_commit = opt(&mut map, &key, x)?,
                        F::OriginalSize => b.original_size = opt(&mut map, &key, x)?,
                        F::Sender => b.sender = opt(&mut map, &key, x)?,
                        F::Ephemeral => b.ephemeral = opt(&mut map, &key, x)?,
                        F::Pinned => b.pinned = opt(&mut map, &key, x)?,
                        F::IsTemplate => b.is_template = opt(&mut map, &key, x)?,
                        F::Labels => {
                            if let Some(v) = opt(&mut map, &key, x)? {
                                b.labels = exact(v);
                                seen |= Absent::LABELS;
                            }
                        }
                        F::Dependencies => {
                            if let Some(v) = opt(&mut map, &key, x)? {
                                b.dependencies = exact(v);
                                seen |= Absent::DEPENDENCIES;
                            }
                        }
                        F::Comments => {
                            if let Some(v) = opt(&mut map, &key, x)? {
                                b.comments = exact(v);
                                seen |= Absent::COMMENTS;
                            }
                        }
                        F::Other => {
                            let v: Value = map.next_value()?;
                            keep(&mut b.extra, key.into_owned(), v);
                        }
                    }
                }
                b.id = id.ok_or_else(|| de::Error::missing_field("id"))?;
                b.absent = Absent(Absent::ALL & !seen);
                Ok(b)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Dependency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Dependency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dependency (JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dependency, A::Error> {
                let mut dep = Dependency::new("", "", DepType::Blocks);
                dep.issue_id = None;
                let (mut target, mut kind) = (None, None);
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let x = &mut dep.extra;
                    match &*key {
                        "issue_id" => dep.issue_id = opt(&mut map, &key, x)?,
                        "depends_on_id" => target = Some(map.next_value::<String>()?),
                        "type" => kind = Some(map.next_value::<DepType>()?),
                        "created_at" => dep.created_at = opt(&mut map, &key, x)?,
                        "created_by" => dep.created_by = opt(&mut map, &key, x)?,
                        "metadata" => dep.metadata = opt(&mut map, &key, x)?,
                        _ => {
                            let v: Value = map.next_value()?;
                            keep(&mut dep.extra, key.into_owned(), v);
                        }
                    }
                }
                dep.depends_on_id =
                    target.ok_or_else(|| de::Error::missing_field("depends_on_id"))?;
                dep.dep_type = kind.ok_or_else(|| de::Error::missing_field("type"))?;
                Ok(dep)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Comment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Comment;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a comment (JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Comment, A::Error> {
                let mut c = Comment {
                    id: None,
                    issue_id: None,
                    author: None,
                    text: String::new(),
                    created_at: None,
                    extra: Map::new(),
                };
                let mut text = None;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let x = &mut c.extra;
                    match &*key {
                        "id" => c.id = opt(&mut map, &key, x)?,
                        "issue_id" => c.issue_id = opt(&mut map, &key, x)?,
                        "author" => c.author = opt(&mut map, &key, x)?,
                        "text" => text = Some(map.next_value::<String>()?),
                        "created_at" => c.created_at = opt(&mut map, &key, x)?,
                        _ => {
                            let v: Value = map.next_value()?;
                            keep(&mut c.extra, key.into_owned(), v);
                        }
                    }
                }
                c.text = text.ok_or_else(|| de::Error::missing_field("text"))?;
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(line: &str) {
        let b: Bead = serde_json::from_str(line).unwrap();
        let out = serde_json::to_value(&b).unwrap();
        let expected: Value = serde_json::from_str(line).unwrap();
        assert_eq!(out, expected, "line {line}");
    }

    #[test]
    fn parsed_lists_keep_no_spare_room_and_keep_every_field() {
        let line = r#"{"id":"bd-1","labels":["a"],"dependencies":[{"depends_on_id":"bd-0","type":"blocks","thread_id":"","x":1}],"comments":[{"text":"c"}],"y":null}"#;
        let b: Bead = serde_json::from_str(line).unwrap();
        assert_eq!(b.labels.capacity(), 1);
        assert_eq!(b.dependencies.capacity(), 1);
        assert_eq!(b.comments.capacity(), 1);
        // The map sized for one untyped field grows for a second one and loses neither.
        assert_eq!(b.dependencies[0].extra.len(), 2);
        roundtrip(line);
    }

    #[test]
    fn round_trips_minimal_and_odd_records() {
        roundtrip(r#"{"id":"bd-1"}"#);
        roundtrip(r#"{"id":"bd-1","title":"","labels":[],"dependencies":[],"comments":[]}"#);
        roundtrip(r#"{"id":"bd-1","assignee":null,"status":null,"future_field":{"a":[1,2]}}"#);
        roundtrip(
            r#"{"id":"bd-1","status":"hooked","issue_type":"molecule","priority":0,
               "dependencies":[{"depends_on_id":"bd-2","type":"tracks","thread_id":"","metadata":{"gate":"x"}}],
               "comments":[{"id":7,"text":"hi","created_at":"2026-01-01T00:00:00Z","edited":true}]}"#,
        );
    }

    #[test]
    fn typed_fields_win_over_remembered_nulls_after_edits() {
        let mut b: Bead = serde_json::from_str(r#"{"id":"bd-1","assignee":null}"#).unwrap();
        b.assignee = Some("alice".into());
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["assignee"], "alice");
        let text = serde_json::to_string(&b).unwrap();
        assert_eq!(text.matches("assignee").count(), 1);
    }

    #[test]
    fn status_change_on_record_without_status_is_exported() {
        let mut b: Bead = serde_json::from_str(r#"{"id":"bd-1"}"#).unwrap();
        b.status = Status::Closed;
        assert_eq!(serde_json::to_value(&b).unwrap()["status"], "closed");
    }

    #[test]
    fn missing_id_and_bad_timestamp_are_errors() {
        assert!(serde_json::from_str::<Bead>(r#"{"title":"x"}"#).is_err());
        assert!(serde_json::from_str::<Bead>(r#"{"id":"a","created_at":"soon"}"#).is_err());
    }

    #[test]
    fn waits_for_gate_reads_string_or_object_metadata() {
        let mut d = Dependency::new("a", "b", DepType::WaitsFor);
        assert_eq!(d.waits_for_gate(), WaitsForGate::AllChildren);
        d.metadata = Some(Value::String(r#"{"gate":"any-children"}"#.into()));
        assert_eq!(d.waits_for_gate(), WaitsForGate::AnyChildren);
        d.metadata = Some(serde_json::json!({"gate": "all-children"}));
        assert_eq!(d.waits_for_gate(), WaitsForGate::AllChildren);
    }
}
