//! Session-memory entries, their content gates, and the two frequency miners the anchors use to
//! turn repeated observations into learnings.
//!
//! - [`gates`]: the anchors' memory gates (temporal, speculation, instruction, confidence,
//!   quality, technical), matching whole words instead of substrings.
//! - [`PatternMiner`]: the anchors' `CompoundLearningCycle` (bounded FIFO of entries, groups of
//!   identical content, confidence from frequency).
//! - [`Extractor`]: the anchors' `CompoundLearningExtractor` (success-rate confidence, minimum
//!   occurrences, capped output).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

use serde_json::Value;

use crate::{LearningId, Timestamp};

/// An observation from a session.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryEntry {
    /// What was observed.
    pub content: String,
    /// When.
    pub timestamp: Timestamp,
    /// Where it came from (a session, a tool).
    pub source: String,
    /// Optional confidence 0–1.
    pub confidence: Option<f64>,
    /// Optional metadata.
    pub metadata: Option<Value>,
}

impl MemoryEntry {
    /// An entry stamped now, without confidence or metadata.
    pub fn new(content: impl Into<String>, source: impl Into<String>) -> Self {
        MemoryEntry {
            content: content.into(),
            timestamp: Timestamp::now(),
            source: source.into(),
            confidence: None,
            metadata: None,
        }
    }
}

/// The memory-entry gates.
pub mod gates {
    use super::MemoryEntry;
    use crate::Timestamp;
    use crate::words::{WordList, words};

    /// Which gate refused an entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum MemoryGate {
        /// Too old.
        Temporal,
        /// Hedged language.
        Speculation,
        /// An instruction, not an observation.
        Instruction,
        /// Confidence below the threshold.
        Confidence,
        /// Too short or too repetitive.
        Quality,
        /// Nothing technical in it.
        Technical,
    }

    /// Why an entry was refused.
    #[derive(Clone, Debug, PartialEq, thiserror::Error)]
    #[error("{gate:?} gate: {reason}")]
    pub struct GateFailure {
        /// The gate.
        pub gate: MemoryGate,
        /// What it saw.
        pub reason: String,
    }

    fn fail(gate: MemoryGate, reason: impl Into<String>) -> Result<(), GateFailure> {
        Err(GateFailure {
            gate,
            reason: reason.into(),
        })
    }

    const HEDGES: &[&str] = &[
        "might",
        "maybe",
        "perhaps",
        "probably",
        "possibly",
        "could be",
        "likely",
        "unlikely",
        "it seems",
        "i think",
        "i believe",
        "not sure",
        "uncertain",
        "guess",
        "assume",
    ];
    const INSTRUCTION_LEADS: &[&str] = &[
        "please",
        "you should",
        "make sure",
        "don't forget",
        "remember to",
        "try to",
        "always",
        "never",
        "do not",
    ];
    const CODE_KEYWORDS: &[&str] = &[
        "function",
        "class",
        "const",
        "let",
        "var",
        "import",
        "export",
        "return",
        "async",
        "await",
        "def",
        "fn",
        "struct",
        "impl",
        "enum",
        "interface",
        "type",
        "module",
    ];
    const TECH_NOUNS: &[&str] = &[
        "api",
        "database",
        "server",
        "endpoint",
        "cache",
        "query",
        "schema",
        "docker",
        "kubernetes",
        "git",
        "npm",
        "cargo",
        "http",
        "https",
        "json",
        "sql",
        "bug",
        "error",
        "exception",
        "stack",
        "thread",
        "process",
        "memory",
        "cpu",
        "disk",
        "file",
        "deploy",
        "build",
        "test",
        "compile",
        "log",
        "wal",
        "fsync",
        "socket",
        "request",
        "response",
    ];
    const CONFIG_WORDS: &[&str] = &[
        "config",
        "configuration",
        "env",
        "environment",
        "setting",
        "variable",
        "flag",
        "option",
        "port",
        "timeout",
        "threshold",
        "parameter",
    ];

    /// Fails when the entry is older than `max_age_ms` at `now`.
    pub fn temporal(
        entry: &MemoryEntry,
        max_age_ms: i64,
        now: Timestamp,
    ) -> Result<(), GateFailure> {
        let age = now.as_millis() - entry.timestamp.as_millis();
        if age > max_age_ms {
            return fail(
                MemoryGate::Temporal,
                format!("age {age} ms > {max_age_ms} ms"),
            );
        }
        Ok(())
    }

    /// Fails on hedged language ("might", "probably", "i think", …) as whole words.
    pub fn speculation(entry: &MemoryEntry) -> Result<(), GateFailure> {
        let w = WordList::new(&entry.content);
        match HEDGES.iter().find(|h| {
            let parts = words(h);
            w.as_slice()
                .windows(parts.len())
                .any(|win| win == parts.as_slice())
        }) {
            Some(h) => fail(MemoryGate::Speculation, format!("hedge {h:?}")),
            None => Ok(()),
        }
    }

    /// Fails when the content starts with an instruction ("please", "you should", "always", …).
    pub fn instruction(entry: &MemoryEntry) -> Result<(), GateFailure> {
        let w = words(&entry.content);
        match INSTRUCTION_LEADS.iter().find(|lead| {
            let parts = words(lead);
            w.len() >= parts.len() && w[..parts.len()] == parts[..]
        }) {
            Some(l) => fail(MemoryGate::Instruction, format!("starts with {l:?}")),
            None => Ok(()),
        }
    }

    /// Fails only when a confidence is present and below `threshold` (anchors' default 0.5).
    pub fn confidence(entry: &MemoryEntry, threshold: f64) -> Result<(), GateFailure> {
        match entry.confidence {
            Some(c) if c < threshold => fail(
                MemoryGate::Confidence,
                format!("confidence {c} < {threshold}"),
            ),
            _ => Ok(()),
        }
    }

    /// Fails below 10 characters (trimmed) or with fewer than 3 distinct words.
    pub fn quality(entry: &MemoryEntry) -> Result<(), GateFailure> {
        let t = entry.content.trim();
        let len = t.chars().count();
        if len < 10 {
            return fail(MemoryGate::Quality, format!("{len} characters < 10"));
        }
        let unique: std::collections::HashSet<String> = words(t).into_iter().collect();
        if unique.len() < 3 {
            return fail(
                MemoryGate::Quality,
                format!("{} distinct words < 3", unique.len()),
            );
        }
        Ok(())
    }

    fn has_version(s: &str) -> bool {
        let b = s.as_bytes();
        (1..b.len().saturating_sub(1))
            .any(|i| b[i] == b'.' && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit())
    }

    fn has_path_punctuation(s: &str) -> bool {
        let p = |c: u8| matches!(c, b'.' | b'/' | b':' | b'_' | b'-');
        s.as_bytes().windows(2).any(|w| p(w[0]) && p(w[1]))
    }

    /// Passes when the content looks technical: a code keyword, a technical noun, a configuration
    /// word, path-like punctuation (`::`, `./`, `--`) or a version number.
    pub fn technical(entry: &MemoryEntry) -> Result<(), GateFailure> {
        let w = WordList::new(&entry.content);
        let technical = [CODE_KEYWORDS, TECH_NOUNS, CONFIG_WORDS]
            .iter()
            .any(|list| list.iter().any(|t| w.contains(t)))
            || has_path_punctuation(&entry.content)
            || has_version(&entry.content);
        if technical {
            Ok(())
        } else {
            fail(MemoryGate::Technical, "no technical content")
        }
    }

    /// Settings for [`evaluate_all`].
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct GateConfig {
        /// Apply the temporal gate with this maximum age. Default: `None` (not applied).
        pub max_age_ms: Option<i64>,
        /// Confidence threshold. Default: 0.5.
        pub confidence_threshold: f64,
    }

    impl Default for GateConfig {
        fn default() -> Self {
            GateConfig {
                max_age_ms: None,
                confidence_threshold: 0.5,
            }
        }
    }

    /// Runs every gate in order (temporal only if configured) and returns the first failure.
    pub fn evaluate_all(
        entry: &MemoryEntry,
        config: &GateConfig,
        now: Timestamp,
    ) -> Result<(), GateFailure> {
        if let Some(max) = config.max_age_ms {
            temporal(entry, max, now)?;
        }
        speculation(entry)?;
        instruction(entry)?;
        confidence(entry, config.confidence_threshold)?;
        quality(entry)?;
        technical(entry)
    }
}

/// The anchors' default cap on remembered entries.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// Content seen at least twice.
#[derive(Clone, Debug, PartialEq)]
pub struct MinedPattern {
    /// The content, lower-cased and trimmed.
    pub content: String,
    /// How often it was seen.
    pub frequency: usize,
    /// `min(1, frequency / 5)`.
    pub confidence: f64,
    /// First time seen.
    pub first_seen: Timestamp,
    /// Last time seen.
    pub last_seen: Timestamp,
    /// Distinct sources, sorted.
    pub sources: Vec<String>,
}

type Observer = Box<dyn Fn(&MemoryEntry) + Send + Sync>;

/// A bounded log of memory entries that finds recurring content (the anchors'
/// `CompoundLearningCycle`). In memory only; persist what it finds through the store.
pub struct PatternMiner {
    entries: VecDeque<MemoryEntry>,
    max_entries: usize,
    observer: Option<Observer>,
}

impl fmt::Debug for PatternMiner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatternMiner")
            .field("entries", &self.entries.len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl Default for PatternMiner {
    fn default() -> Self {
        PatternMiner::new(DEFAULT_MAX_ENTRIES)
    }
}

impl PatternMiner {
    /// A miner keeping at most `max_entries` (oldest evicted first).
    pub fn new(max_entries: usize) -> Self {
        PatternMiner {
            entries: VecDeque::new(),
            max_entries: max_entries.max(1),
            observer: None,
        }
    }

    /// Calls `f` for every added entry (the anchors' logger hook).
    pub fn with_observer(mut self, f: impl Fn(&MemoryEntry) + Send + Sync + 'static) -> Self {
        self.observer = Some(Box::new(f));
        self
    }

    /// The cap.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Adds an entry, evicting the oldest beyond the cap.
    pub fn add(&mut self, entry: MemoryEntry) {
        if let Some(f) = &self.observer {
            f(&entry);
        }
        self.entries.push_back(entry);
        while self.entries.len() > self.max_entries {
            self.entries.pop_front();
        }
    }

    /// The retained entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &MemoryEntry> {
        self.entries.iter()
    }

    /// Content seen at least twice, most frequent first (ties: earliest first seen, then content).
    pub fn extract_patterns(&self) -> Vec<MinedPattern> {
        let mut groups: HashMap<String, (usize, Timestamp, Timestamp, BTreeSet<String>)> =
            HashMap::new();
        for e in &self.entries {
            let key = e.content.trim().to_lowercase();
            let g = groups
                .entry(key)
                .or_insert((0, e.timestamp, e.timestamp, BTreeSet::new()));
            g.0 += 1;
            g.1 = g.1.min(e.timestamp);
            g.2 = g.2.max(e.timestamp);
            g.3.insert(e.source.clone());
        }
        let mut out: Vec<MinedPattern> = groups
            .into_iter()
            .filter(|(_, g)| g.0 >= 2)
            .map(
                |(content, (frequency, first_seen, last_seen, sources))| MinedPattern {
                    content,
                    frequency,
                    confidence: (frequency as f64 / 5.0).min(1.0),
                    first_seen,
                    last_seen,
                    sources: sources.into_iter().collect(),
                },
            )
            .collect();
        out.sort_by(|a, b| {
            b.frequency
                .cmp(&a.frequency)
                .then(a.first_seen.cmp(&b.first_seen))
                .then_with(|| a.content.cmp(&b.content))
        });
        out
    }

    /// Entries passing `gate` (all entries when `gate` is `None`).
    pub fn qualified(&self, gate: Option<&dyn Fn(&MemoryEntry) -> bool>) -> Vec<&MemoryEntry> {
        self.entries
            .iter()
            .filter(|e| gate.is_none_or(|g| g(e)))
            .collect()
    }
}

/// Settings of the [`Extractor`]; defaults are the anchors'.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExtractorConfig {
    /// Default: 3.
    pub min_occurrences: u32,
    /// Default: 0.7.
    pub min_confidence: f64,
    /// Default: 50.
    pub max_learnings: usize,
}

impl Default for ExtractorConfig {
    fn default() -> Self {
        ExtractorConfig {
            min_occurrences: 3,
            min_confidence: 0.7,
            max_learnings: 50,
        }
    }
}

/// The outcome of one task that used a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskOutcome {
    /// The pattern used.
    pub pattern: String,
    /// Whether the task succeeded.
    pub success: bool,
}

/// A pattern with its success statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct PatternCandidate {
    /// The pattern.
    pub pattern: String,
    /// Successful uses.
    pub occurrences: u32,
    /// All uses counted (failures count only once the pattern has succeeded before).
    pub total: u32,
    /// `occurrences / total`.
    pub confidence: f64,
}

/// Why the extractor refused a candidate.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractorRejection {
    /// Success rate too low (checked first).
    #[error("confidence {actual} < {required}")]
    Confidence {
        /// The candidate's confidence.
        actual: f64,
        /// The minimum.
        required: f64,
    },
    /// Too few successes.
    #[error("occurrences {actual} < {required}")]
    Occurrences {
        /// The candidate's occurrences.
        actual: u32,
        /// The minimum.
        required: u32,
    },
}

/// A candidate ready to store, with a fresh id and time.
#[derive(Clone, Debug, PartialEq)]
pub struct PersistableLearning {
    /// A new ULID id (the anchors used `cl-{ms}-{random}`).
    pub id: LearningId,
    /// When it was made persistable.
    pub timestamp: Timestamp,
    /// The candidate.
    pub candidate: PatternCandidate,
}

/// The anchors' `CompoundLearningExtractor`: success-rate statistics per pattern.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Extractor {
    /// Settings.
    pub config: ExtractorConfig,
}

impl Extractor {
    /// Counts successes per pattern; a failure counts toward a pattern's total only after that
    /// pattern has succeeded once (the anchors' rule). Order of first success is kept.
    pub fn extract_candidates(&self, outcomes: &[TaskOutcome]) -> Vec<PatternCandidate> {
        let mut order: Vec<String> = Vec::new();
        let mut stats: HashMap<String, (u32, u32)> = HashMap::new();
        for o in outcomes {
            match stats.get_mut(&o.pattern) {
                Some(s) => {
                    s.1 += 1;
                    if o.success {
                        s.0 += 1;
                    }
                }
                None if o.success => {
                    order.push(o.pattern.clone());
                    stats.insert(o.pattern.clone(), (1, 1));
                }
                None => {}
            }
        }
        order
            .into_iter()
            .map(|p| {
                let (occurrences, total) = stats.get(&p).copied().unwrap_or((0, 1));
                PatternCandidate {
                    confidence: f64::from(occurrences) / f64::from(total.max(1)),
                    pattern: p,
                    occurrences,
                    total,
                }
            })
            .collect()
    }

    /// Confidence first, then occurrences.
    pub fn quality_gate(&self, c: &PatternCandidate) -> Result<(), ExtractorRejection> {
        if c.confidence < self.config.min_confidence {
            return Err(ExtractorRejection::Confidence {
                actual: c.confidence,
                required: self.config.min_confidence,
            });
        }
        if c.occurrences < self.config.min_occurrences {
            return Err(ExtractorRejection::Occurrences {
                actual: c.occurrences,
                required: self.config.min_occurrences,
            });
        }
        Ok(())
    }

    /// Ids and timestamps for at most `max_learnings` candidates.
    pub fn to_persistable(&self, candidates: &[PatternCandidate]) -> Vec<PersistableLearning> {
        candidates
            .iter()
            .take(self.config.max_learnings)
            .map(|c| PersistableLearning {
                id: LearningId::generate(),
                timestamp: Timestamp::now(),
                candidate: c.clone(),
            })
            .collect()
    }
}
