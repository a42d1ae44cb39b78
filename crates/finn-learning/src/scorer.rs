//! The default heuristic scorer: the anchors' quality-gate rules with whole-word matching.
//!
//! # Where scores differ from the anchors, and why
//!
//! The rules, points and caps are the anchors' (`quality-gates.ts`). What differs:
//!
//! - **Whole words, not substrings.** The anchors test `text.includes(term)`, so `if` fires on
//!   "different", `all` on "install", `any` on "company", `test` on "latest", `in` on "begin".
//!   Those are false positives and inflate scores; finn counts a term only as a whole word or the
//!   word plus an inflection ("fail" in "failed", "deploy" in "deploying", see
//!   [`words::term_matches`](crate::words::term_matches)). Texts that relied on such accidents score
//!   *lower* here; a test pins examples.
//! - **Conditional forms** (`when`/`if`/… followed by a word) are found between words, so
//!   punctuation between them ("if, later") does not count where the anchors' `\s+\w+` would not
//!   either; the two agree on ordinary prose.
//! - **Lengths are counted in characters** (Unicode scalar values); JavaScript counts UTF-16 code
//!   units. They differ only for text outside the Basic Multilingual Plane.
//! - **A missing target** (Loa files have none) scores like a non-`loa` target (+1), and a missing
//!   source gives no verification points.

use crate::gates::{Contribution, GateScore, Scorecard, Scorer};
use crate::record::{ScoreInput, Source, Target};
use crate::words::WordList;

const CONDITIONALS: &[&str] = &["when", "if", "after", "before", "during"];
const CLARITY_CONDITIONALS: &[&str] = &["when", "if", "after", "before", "during", "whenever"];
const GENERIC_TERMS: &[&str] = &[
    "similar", "pattern", "approach", "strategy", "general", "common", "typical", "often",
    "usually", "any", "all",
];
const SPECIFIC_PHRASES: &[&str] = &[
    "only this file",
    "just for",
    "exactly this",
    "specific to",
    "unique case",
    "one-time",
    "temporary fix",
];
const BREADTH_TERMS: &[&str] = &["or", "and", "also", "as well", "multiple"];
const ACTION_FAMILIES: &[&[&str]] = &[
    &["error", "fail", "crash", "exception"],
    &["deploy", "build", "test", "install"],
    &["create", "update", "delete", "modify"],
    &["start", "stop", "restart", "initialize"],
    &["request", "response", "api", "endpoint"],
];
const PREPOSITIONS: &[&str] = &["in", "with", "using", "for"];
const VERIFICATION_TERMS: &[&str] = &[
    "tested",
    "verified",
    "confirmed",
    "works",
    "successful",
    "passed",
    "validated",
    "checked",
];

/// The anchors' `DefaultQualityGateScorer`, with whole-word matching (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct HeuristicScorer;

struct Tally {
    points: i16,
    reasons: Vec<Contribution>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            points: 0,
            reasons: Vec::new(),
        }
    }

    /// Records a rule's outcome. Measured quantities (lengths, counts) are recorded even when
    /// they give 0 points, so every score, including 0, says what it was made of.
    fn add(&mut self, points: i16, rule: impl Into<String>) {
        self.points += points;
        self.reasons.push(Contribution {
            rule: rule.into(),
            points,
        });
    }

    /// Records an observation that gives no points (so a zero score still says why).
    fn note(&mut self, rule: impl Into<String>) {
        self.reasons.push(Contribution {
            rule: rule.into(),
            points: 0,
        });
    }

    fn finish(self) -> GateScore {
        GateScore {
            score: u8::try_from(self.points.clamp(0, 10)).unwrap_or(0),
            reasons: self.reasons,
        }
    }
}

fn length_points(len: usize) -> i16 {
    match len {
        n if n > 500 => 3,
        n if n > 200 => 2,
        n if n > 50 => 1,
        _ => 0,
    }
}

fn has_code(text: &str) -> bool {
    text.contains("```") || {
        // Inline code: a backtick pair with something between.
        let mut parts = text.split('`');
        parts.next();
        parts.next().is_some_and(|inner| !inner.is_empty()) && text.matches('`').count() >= 2
    }
}

fn count_i16(n: usize) -> i16 {
    i16::try_from(n).unwrap_or(i16::MAX)
}

impl HeuristicScorer {
    fn discovery_depth(&self, l: &ScoreInput<'_>, trigger: &WordList) -> GateScore {
        let mut t = Tally::new();
        let p = l.pattern.chars().count();
        t.add(length_points(p), format!("pattern is {p} characters"));
        let s = l.solution.chars().count();
        t.add(length_points(s), format!("solution is {s} characters"));
        if has_code(l.solution) {
            t.add(2, "solution contains code");
        }
        if CONDITIONALS.iter().any(|c| trigger.contains(c)) {
            t.add(2, "trigger has a conditional (when/if/after/before/during)");
        }
        t.finish()
    }

    fn reusability(&self, l: &ScoreInput<'_>, trigger: &WordList) -> GateScore {
        let mut t = Tally::new();
        let both = WordList::new(&format!("{} {}", l.trigger, l.pattern));
        let generic = both.count_present(GENERIC_TERMS);
        t.add(
            count_i16(generic).min(3),
            format!("{generic} generic term(s) in trigger and pattern"),
        );
        let specific = both.count_present(SPECIFIC_PHRASES);
        t.add(
            -(2 * count_i16(specific)).min(3),
            format!("{specific} specificity phrase(s) in trigger and pattern"),
        );
        if BREADTH_TERMS.iter().any(|b| trigger.contains(b)) {
            t.add(
                2,
                "trigger covers several cases (or/and/also/as well/multiple)",
            );
        }
        match l.target {
            Some(Target::Loa | Target::Devcontainer) => t.add(2, "target is loa or devcontainer"),
            _ => t.add(1, "target is an application"),
        }
        if !l.pattern.trim().is_empty() {
            t.add(2, "pattern is stated");
        }
        t.finish()
    }

    fn trigger_clarity(&self, l: &ScoreInput<'_>, trigger: &WordList) -> GateScore {
        let mut t = Tally::new();
        if l.trigger.trim().is_empty() {
            t.note("trigger is empty");
            return t.finish();
        }
        let forms = CLARITY_CONDITIONALS
            .iter()
            .filter(|c| trigger.followed_by_word(c))
            .count();
        t.add(
            (2 * count_i16(forms)).min(4),
            format!("{forms} conditional form(s)"),
        );
        let families = ACTION_FAMILIES
            .iter()
            .filter(|fam| fam.iter().any(|w| trigger.contains(w)))
            .count();
        t.add(
            count_i16(families).min(3),
            format!("{families} action famil(ies)"),
        );
        let len = l.trigger.chars().count();
        if (20..=200).contains(&len) {
            t.add(2, format!("trigger is {len} characters (20-200)"));
        } else if len >= 10 {
            t.add(1, format!("trigger is {len} characters"));
        } else {
            t.add(0, format!("trigger is {len} characters (under 10)"));
        }
        if PREPOSITIONS.iter().any(|p| trigger.followed_by_word(p)) {
            t.add(1, "trigger names a context (in/with/using/for ...)");
        }
        t.finish()
    }

    fn verification(&self, l: &ScoreInput<'_>) -> GateScore {
        let mut t = Tally::new();
        match l.source {
            Some(Source::Sprint) => t.add(3, "source is a sprint"),
            Some(Source::ErrorCycle) => t.add(2, "source is an error cycle"),
            Some(Source::Retrospective) => t.add(1, "source is a retrospective"),
            None => {}
        }
        let solution = WordList::new(l.solution);
        let n = solution.count_present(VERIFICATION_TERMS);
        t.add(
            count_i16(n).min(3),
            format!("{n} verification term(s) in solution"),
        );
        if let Some(rate) = l.effectiveness.and_then(|e| e.success_rate()) {
            let points = if rate >= 0.8 {
                3
            } else if rate >= 0.6 {
                2
            } else if rate >= 0.4 {
                1
            } else {
                0
            };
            t.add(points, format!("success rate {rate:.2}"));
        }
        if !l.solution.trim().is_empty() {
            t.add(1, "solution is stated");
        }
        t.finish()
    }
}

impl Scorer for HeuristicScorer {
    fn score(&self, input: ScoreInput<'_>) -> Scorecard {
        let trigger = WordList::new(input.trigger);
        Scorecard {
            discovery_depth: self.discovery_depth(&input, &trigger),
            reusability: self.reusability(&input, &trigger),
            trigger_clarity: self.trigger_clarity(&input, &trigger),
            verification: self.verification(&input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Thresholds;
    use crate::record::{Effectiveness, GateScores, NewLearning};

    fn score(l: &NewLearning) -> GateScores {
        HeuristicScorer.score(l.into()).scores()
    }

    /// Worked by hand, rule by rule, in the comments.
    #[test]
    fn hand_checked_high_quality_learning() {
        let l = NewLearning::new(
            Source::Sprint,
            Target::Devcontainer,
            // 61 chars; "when" + word, "if" + word -> 2 forms (+4); families: build/deploy and
            // error/fail -> +2; length 20-200 -> +2; no in/with/using/for -> 0. Clarity 8.
            // Discovery: conditional -> +2. Reusability: "and" -> +2.
            "When the build fails and if the deploy step reports an error",
            // 97 chars -> +1 discovery. Generic terms: "common", "pattern", "approach" -> +3.
            "A common pattern: a stale lockfile breaks the build; the same approach fixes every package manager",
            // 81 chars -> +1; inline code -> +2; "tested", "verified" -> +2 verification.
            "Delete the lockfile with `rm package-lock.json`, reinstall; tested and verified.",
        );
        // discovery 1 + 1 + 2 + 2 = 6; reusability 3 + 2 + 2 (devcontainer) + 2 (pattern) = 9;
        // clarity 4 + 2 + 2 = 8; verification 3 (sprint) + 2 + 1 (solution) = 6. Total 29.
        assert_eq!(
            score(&l),
            GateScores {
                discovery_depth: 6,
                reusability: 9,
                trigger_clarity: 8,
                verification: 6
            }
        );
        let eval = Thresholds::default().evaluate(&HeuristicScorer.score((&l).into()));
        assert!(eval.passed);
        assert_eq!(eval.total, 29);
    }

    #[test]
    fn empty_trigger_scores_zero_clarity_and_fails() {
        let l = NewLearning::new(
            Source::Sprint,
            Target::Openclaw,
            "",
            "Something happened",
            "Fix it",
        );
        let card = HeuristicScorer.score((&l).into());
        assert_eq!(card.trigger_clarity.score, 0);
        assert_eq!(card.trigger_clarity.reasons[0].rule, "trigger is empty");
        let eval = Thresholds::default().evaluate(&card);
        assert!(!eval.passed);
        assert!(!eval.gates[2].passed);
    }

    /// The anchors' substring matching scores this trigger on "if" (in "different"), "all" (in
    /// "install"), "test" (in "latest") and "in" (in "begin"); finn does not.
    #[test]
    fn substring_accidents_do_not_score() {
        let l = NewLearning::new(
            Source::Retrospective,
            Target::Openclaw,
            "different install begin latest",
            "",
            "",
        );
        let card = HeuristicScorer.score((&l).into());
        // Anchors: discovery +2 ("if"), clarity: action family "test"/"install" +1, length +2,
        // "in" + word +1; finn: only the length (30 chars -> +2) and "install" as a whole word (+1).
        assert_eq!(card.discovery_depth.score, 0);
        assert_eq!(card.trigger_clarity.score, 3);
        // Anchors: "all" generic +1; finn: none. Target openclaw +1 only.
        assert_eq!(card.reusability.score, 1);
    }

    #[test]
    fn specificity_penalty_and_clamp() {
        let l = NewLearning::new(
            Source::ErrorCycle,
            Target::Openclaw,
            "x",
            "only this file, just for today, a temporary fix",
            "",
        );
        let card = HeuristicScorer.score((&l).into());
        // -min(3, 2*3) = -3, target +1, pattern +2 -> 0.
        assert_eq!(card.reusability.score, 0);
        assert!(card.reusability.reasons.iter().any(|c| c.points == -3));
    }

    #[test]
    fn effectiveness_raises_verification() {
        let l = NewLearning::new(Source::ErrorCycle, Target::Openclaw, "t", "p", "works");
        let mut input: ScoreInput<'_> = (&l).into();
        let base = HeuristicScorer.score(input).verification.score;
        assert_eq!(base, 2 + 1 + 1);
        let eff = Effectiveness {
            applications: 5,
            successes: 4,
            failures: 1,
            last_applied: None,
        };
        input.effectiveness = Some(&eff);
        assert_eq!(HeuristicScorer.score(input).verification.score, base + 3);
    }
}
