//! Quality gates: the [`Scorer`] trait, scorecards with reasons, and configurable thresholds.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::record::{GateScores, ScoreInput};

/// One of the four quality gates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// How deeply the problem was investigated.
    DiscoveryDepth,
    /// How applicable the learning is beyond its origin.
    Reusability,
    /// How clearly the trigger says when it applies.
    TriggerClarity,
    /// How well the solution is verified.
    Verification,
}

impl Gate {
    /// The four gates in the anchors' order.
    pub const ALL: [Gate; 4] = [
        Gate::DiscoveryDepth,
        Gate::Reusability,
        Gate::TriggerClarity,
        Gate::Verification,
    ];

    /// The snake_case name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::DiscoveryDepth => "discovery_depth",
            Gate::Reusability => "reusability",
            Gate::TriggerClarity => "trigger_clarity",
            Gate::Verification => "verification",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scoring rule that fired and the points it gave (negative for penalties).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    /// What the rule saw, e.g. `"trigger has a conditional (when/if/...)"`.
    pub rule: String,
    /// Points added (or, if negative, removed) before clamping.
    pub points: i16,
}

/// A gate's score and the rules that produced it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateScore {
    /// The score, 0–10.
    pub score: u8,
    /// Every rule that fired, in evaluation order.
    pub reasons: Vec<Contribution>,
}

impl GateScore {
    /// A score with no recorded reasons (scores stated by a file, not computed).
    pub fn stated(score: u8) -> Self {
        GateScore {
            score,
            reasons: Vec::new(),
        }
    }
}

/// A [`Scorer`]'s result: each gate's score and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scorecard {
    /// Discovery depth.
    pub discovery_depth: GateScore,
    /// Reusability.
    pub reusability: GateScore,
    /// Trigger clarity.
    pub trigger_clarity: GateScore,
    /// Verification.
    pub verification: GateScore,
}

impl Scorecard {
    /// The score of one gate.
    pub fn gate(&self, gate: Gate) -> &GateScore {
        match gate {
            Gate::DiscoveryDepth => &self.discovery_depth,
            Gate::Reusability => &self.reusability,
            Gate::TriggerClarity => &self.trigger_clarity,
            Gate::Verification => &self.verification,
        }
    }

    /// The bare scores.
    pub fn scores(&self) -> GateScores {
        GateScores {
            discovery_depth: self.discovery_depth.score,
            reusability: self.reusability.score,
            trigger_clarity: self.trigger_clarity.score,
            verification: self.verification.score,
        }
    }

    /// A scorecard of stated scores (from a file), without reasons.
    pub fn stated(s: GateScores) -> Self {
        Scorecard {
            discovery_depth: GateScore::stated(s.discovery_depth),
            reusability: GateScore::stated(s.reusability),
            trigger_clarity: GateScore::stated(s.trigger_clarity),
            verification: GateScore::stated(s.verification),
        }
    }
}

/// Scores a learning on the four gates.
///
/// [`HeuristicScorer`](crate::HeuristicScorer) implements the anchors' rules; plug in your own
/// (an LLM judge, a human rubric) with [`StoreOptions::scorer`](crate::StoreOptions::scorer).
pub trait Scorer: Send + Sync + fmt::Debug {
    /// Scores `input`. Must be deterministic for the same input.
    fn score(&self, input: ScoreInput<'_>) -> Scorecard;
}

/// Minimum scores a learning needs. Defaults are the anchors' `GATE_THRESHOLDS` and
/// `MINIMUM_TOTAL_SCORE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Default: 5.
    pub discovery_depth: u8,
    /// Default: 5.
    pub reusability: u8,
    /// Default: 5.
    pub trigger_clarity: u8,
    /// Default: 3.
    pub verification: u8,
    /// Minimum sum of the four. Default: 18.
    pub total: u16,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            discovery_depth: 5,
            reusability: 5,
            trigger_clarity: 5,
            verification: 3,
            total: 18,
        }
    }
}

impl Thresholds {
    /// The minimum for one gate.
    pub fn minimum(&self, gate: Gate) -> u8 {
        match gate {
            Gate::DiscoveryDepth => self.discovery_depth,
            Gate::Reusability => self.reusability,
            Gate::TriggerClarity => self.trigger_clarity,
            Gate::Verification => self.verification,
        }
    }

    /// Checks a scorecard against every threshold; the result lists every gate, passed or not.
    pub fn evaluate(&self, card: &Scorecard) -> Evaluation {
        let gates: Vec<GateVerdict> = Gate::ALL
            .iter()
            .map(|&gate| {
                let g = card.gate(gate);
                let threshold = self.minimum(gate);
                GateVerdict {
                    gate,
                    score: g.score,
                    threshold,
                    passed: g.score >= threshold,
                    reasons: g.reasons.clone(),
                }
            })
            .collect();
        let total = card.scores().total();
        let passed = gates.iter().all(|g| g.passed) && total >= self.total;
        Evaluation {
            gates,
            total,
            min_total: self.total,
            passed,
        }
    }
}

/// One gate's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateVerdict {
    /// Which gate.
    pub gate: Gate,
    /// Its score.
    pub score: u8,
    /// The minimum it needed.
    pub threshold: u8,
    /// `score >= threshold`.
    pub passed: bool,
    /// Why it scored what it did.
    pub reasons: Vec<Contribution>,
}

/// Every gate's outcome plus the total check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The four gates, in [`Gate::ALL`] order.
    pub gates: Vec<GateVerdict>,
    /// Sum of the four scores.
    pub total: u16,
    /// The minimum total.
    pub min_total: u16,
    /// Every gate passed and `total >= min_total`.
    pub passed: bool,
}

impl Evaluation {
    /// The bare scores.
    pub fn scores(&self) -> GateScores {
        let get = |g: Gate| {
            self.gates
                .iter()
                .find(|v| v.gate == g)
                .map_or(0, |v| v.score)
        };
        GateScores {
            discovery_depth: get(Gate::DiscoveryDepth),
            reusability: get(Gate::Reusability),
            trigger_clarity: get(Gate::TriggerClarity),
            verification: get(Gate::Verification),
        }
    }

    /// The gates that failed.
    pub fn failed(&self) -> impl Iterator<Item = &GateVerdict> {
        self.gates.iter().filter(|g| !g.passed)
    }
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.gates.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{} {}/{}{}",
                g.gate,
                g.score,
                g.threshold,
                if g.passed { "" } else { " (failed)" }
            )?;
        }
        write!(f, ", total {}/{}", self.total, self.min_total)
    }
}
