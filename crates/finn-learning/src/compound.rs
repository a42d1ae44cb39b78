//! The compound cycle: trajectory → candidates → screening → quality gates → stored learnings.

use crate::LearningId;
use crate::error::{AddError, GateRejection};
use crate::record::{Learning, Target};
use crate::store::LearningStore;
use crate::trajectory::{self, Candidate, Screening, TrajectoryEntry};

/// Settings of a [`CompoundCycle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CycleOptions {
    /// Target of the learnings the cycle stores. Default: [`Target::Openclaw`] (as finn does).
    pub target: Target,
    /// Sessions a failure must recur in to become a repeated-pattern candidate. Default: 2.
    pub min_sessions: usize,
}

impl Default for CycleOptions {
    fn default() -> Self {
        CycleOptions {
            target: Target::Openclaw,
            min_sessions: 2,
        }
    }
}

/// What one run of the cycle found and did. Every candidate ends in exactly one of the lists.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct CycleReport {
    /// Candidates the anchors' screening refused, with the checks.
    pub screened_out: Vec<(Candidate, Screening)>,
    /// Candidates the quality gates refused, with every gate's score and reason.
    pub rejected: Vec<(Candidate, GateRejection)>,
    /// Candidates whose trigger an existing learning already has.
    pub duplicates: Vec<(Candidate, LearningId)>,
    /// Learnings stored.
    pub persisted: Vec<Learning>,
}

impl CycleReport {
    /// Number of candidates considered.
    pub fn candidates(&self) -> usize {
        self.screened_out.len() + self.rejected.len() + self.duplicates.len() + self.persisted.len()
    }
}

/// Runs the compound cycle against a store.
///
/// Unlike finn's `CompoundLearning`, candidates always pass the store's quality gates before they
/// are stored, the store write *is* the WAL write (there is no second, later WAL append that a
/// crash could separate from it), and any number of trajectory files can be fed in.
#[derive(Debug)]
pub struct CompoundCycle<'a> {
    store: &'a LearningStore,
    options: CycleOptions,
}

impl<'a> CompoundCycle<'a> {
    /// A cycle storing into `store`.
    pub fn new(store: &'a LearningStore, options: CycleOptions) -> Self {
        CompoundCycle { store, options }
    }

    /// Candidates of a trajectory: every error recovery, then repeated patterns across sessions.
    pub fn extract(&self, entries: &[TrajectoryEntry]) -> Vec<Candidate> {
        let mut out = trajectory::extract_error_recoveries(entries, None);
        let repeated = trajectory::extract_repeated(&out, self.options.min_sessions);
        out.extend(repeated);
        out
    }

    /// Extracts, screens, gates and stores.
    pub fn run(&self, entries: &[TrajectoryEntry]) -> Result<CycleReport, AddError> {
        let candidates = self.extract(entries);
        self.persist(candidates)
    }

    /// Screens, gates and stores the given candidates.
    pub fn persist(&self, candidates: Vec<Candidate>) -> Result<CycleReport, AddError> {
        let mut report = CycleReport::default();
        for c in candidates {
            let s = trajectory::screen(&c);
            if !s.accepted {
                report.screened_out.push((c, s));
                continue;
            }
            let new = c.to_new_learning(self.options.target);
            if let Some(existing) = self.store.find_by_trigger(&new.trigger) {
                report.duplicates.push((c, existing));
                continue;
            }
            match self.store.add(new) {
                Ok(l) => report.persisted.push(l),
                Err(AddError::Rejected(r)) => report.rejected.push((c, *r)),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}
