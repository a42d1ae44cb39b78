//! The learning record and its parts.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{LearningId, Status, Timestamp};

/// How a learning was discovered (anchors: `source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Found while delivering a sprint.
    Sprint,
    /// Found by an error followed by a fix (the compound cycle's source).
    ErrorCycle,
    /// Found looking back over past work.
    Retrospective,
}

/// Who the learning is for (anchors: `target`). `Loa` learnings improve the framework itself and
/// therefore start `pending` until a human approves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The Loa framework itself (self-improvement; needs approval).
    Loa,
    /// The development container.
    Devcontainer,
    /// The moltworker runtime.
    Moltworker,
    /// The openclaw agent.
    Openclaw,
}

/// The four quality-gate scores, each 0–10 (anchors: `gates`; Loa files: `quality_gates`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateScores {
    /// How deeply the problem was investigated.
    pub discovery_depth: u8,
    /// How applicable the learning is beyond its origin.
    pub reusability: u8,
    /// How clearly the trigger says when it applies.
    pub trigger_clarity: u8,
    /// How well the solution is verified.
    pub verification: u8,
}

impl GateScores {
    /// Sum of the four scores.
    pub fn total(&self) -> u16 {
        u16::from(self.discovery_depth)
            + u16::from(self.reusability)
            + u16::from(self.trigger_clarity)
            + u16::from(self.verification)
    }
}

/// How often a learning was applied and how that went (anchors: `effectiveness`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Effectiveness {
    /// Times applied.
    pub applications: u32,
    /// Applications that worked.
    pub successes: u32,
    /// Applications that did not.
    pub failures: u32,
    /// When it was last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<Timestamp>,
}

impl Effectiveness {
    /// `successes / applications`, or `None` before the first application.
    pub fn success_rate(&self) -> Option<f64> {
        (self.applications > 0).then(|| f64::from(self.successes) / f64::from(self.applications))
    }

    /// The ranking multiplier: `0.5 + (successes + 1) / (applications + 2)`, between 0.5 and 1.5.
    ///
    /// Laplace smoothing keeps an untried learning at 1.0 and lets evidence move it gradually, so
    /// one lucky application does not outrank a learning with a long, good record.
    pub fn ranking_weight(&self) -> f64 {
        0.5 + (f64::from(self.successes) + 1.0) / (f64::from(self.applications) + 2.0)
    }
}

/// A learning as stored.
///
/// Holds every field of the anchors' record (`id`, `created`, `source`, `trigger`, `pattern`,
/// `solution`, `gates`, `target`, `status`, `approved_by`, `approved_at`, `effectiveness`) plus the
/// fields the Loa learnings files add that finn uses (`title`, `tags`). Fields that are optional
/// here are the ones some real file omits. Everything else an imported file carried is kept in
/// [`extra`](Self::extra) and written back on export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Learning {
    /// The id (ULID for new learnings, verbatim for imported ones).
    pub id: LearningId,
    /// When the learning was created; absent only for imports that did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Timestamp>,
    /// How it was discovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// When it applies.
    #[serde(default)]
    pub trigger: String,
    /// What was observed.
    #[serde(default)]
    pub pattern: String,
    /// What to do.
    #[serde(default)]
    pub solution: String,
    /// A short title (Loa files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Tags (Loa files); part of what retrieval searches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The gate scores the learning was admitted with (or the ones its file stated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<GateScores>,
    /// Who it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Lifecycle status.
    pub status: Status,
    /// Who approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// When it was approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Timestamp>,
    /// Application record; absent until first applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effectiveness: Option<Effectiveness>,
    /// Fields of an imported record that finn does not model, kept for export.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// The modelled fields exactly as an import read them, so an unchanged field is exported
    /// byte-for-byte as it came in (see [`crate::format`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// The original text of an imported record's modelled fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// The file format the record came from.
    pub dialect: crate::format::Dialect,
    /// The modelled fields as read.
    pub fields: Map<String, Value>,
    /// Every key of the original object, in order, so export keeps the layout.
    pub keys: Vec<String>,
}

/// What a caller supplies to [`LearningStore::add`](crate::LearningStore::add).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLearning {
    /// How it was discovered.
    pub source: Source,
    /// When it applies.
    pub trigger: String,
    /// What was observed.
    pub pattern: String,
    /// What to do.
    pub solution: String,
    /// Who it is for; `Target::Loa` starts `pending`, every other target `active`.
    pub target: Target,
    /// Optional short title.
    pub title: Option<String>,
    /// Optional tags.
    pub tags: Vec<String>,
}

impl NewLearning {
    /// A learning with no title and no tags.
    pub fn new(
        source: Source,
        target: Target,
        trigger: impl Into<String>,
        pattern: impl Into<String>,
        solution: impl Into<String>,
    ) -> Self {
        NewLearning {
            source,
            trigger: trigger.into(),
            pattern: pattern.into(),
            solution: solution.into(),
            target,
            title: None,
            tags: Vec::new(),
        }
    }

    /// Adds tags.
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// The status a new learning with this target starts in (the anchors' rule).
    pub fn initial_status(&self) -> Status {
        match self.target {
            Target::Loa => Status::Pending,
            _ => Status::Active,
        }
    }
}

/// The fields a [`Scorer`](crate::Scorer) looks at, borrowed from either a stored [`Learning`] or
/// a [`NewLearning`].
#[derive(Clone, Copy, Debug)]
pub struct ScoreInput<'a> {
    /// How it was discovered.
    pub source: Option<Source>,
    /// When it applies.
    pub trigger: &'a str,
    /// What was observed.
    pub pattern: &'a str,
    /// What to do.
    pub solution: &'a str,
    /// Who it is for.
    pub target: Option<Target>,
    /// Application record, if any.
    pub effectiveness: Option<&'a Effectiveness>,
}

impl<'a> From<&'a Learning> for ScoreInput<'a> {
    fn from(l: &'a Learning) -> Self {
        ScoreInput {
            source: l.source,
            trigger: &l.trigger,
            pattern: &l.pattern,
            solution: &l.solution,
            target: l.target,
            effectiveness: l.effectiveness.as_ref(),
        }
    }
}

impl<'a> From<&'a NewLearning> for ScoreInput<'a> {
    fn from(l: &'a NewLearning) -> Self {
        ScoreInput {
            source: Some(l.source),
            trigger: &l.trigger,
            pattern: &l.pattern,
            solution: &l.solution,
            target: Some(l.target),
            effectiveness: None,
        }
    }
}
