//! Run state: the anchors' label state machine (anchors.md §6.4) as typed, atomic operations.
//!
//! A run is an epic labelled `run:current` + `run:epic`; sprints are beads labelled
//! `sprint:<n>`, `run:<run-id>` and one of `sprint:pending` / `sprint:in_progress` /
//! `sprint:complete`; circuit breakers are `debt` beads labelled `circuit-breaker` and
//! `same-issue-<n>x`. Each operation is one transaction, so a crash never leaves a half-applied
//! transition (the anchors issued one CLI call per label).

use serde::{Deserialize, Serialize};

use crate::bead::{Bead, IssueType, Priority, Status};
use crate::error::Error;
use crate::state::State;
use crate::store::Store;

/// Label names used by the run-state machine.
pub mod labels {
    /// The active run epic.
    pub const RUN_CURRENT: &str = "run:current";
    /// Marks run epics.
    pub const RUN_EPIC: &str = "run:epic";
    /// Sprint being worked on.
    pub const SPRINT_IN_PROGRESS: &str = "sprint:in_progress";
    /// Sprint not started.
    pub const SPRINT_PENDING: &str = "sprint:pending";
    /// Sprint finished.
    pub const SPRINT_COMPLETE: &str = "sprint:complete";
    /// Halts the run (on the run epic) / marks a circuit-breaker bead.
    pub const CIRCUIT_BREAKER: &str = "circuit-breaker";
    /// Prefix of `same-issue-<n>x`.
    pub const SAME_ISSUE_PREFIX: &str = "same-issue-";
    /// Prefix of `session:<id>`.
    pub const SESSION_PREFIX: &str = "session:";
    /// Prefix of `handoff:<id>`.
    pub const HANDOFF_PREFIX: &str = "handoff:";
}

/// State of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    /// No run, or a run not started.
    Ready,
    /// Sprints are pending or in progress.
    Running,
    /// A circuit breaker is open.
    Halted,
    /// All sprints complete.
    Complete,
}

/// State of a sprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SprintState {
    /// Not started.
    Pending,
    /// Being worked on.
    InProgress,
    /// Finished.
    Complete,
}

/// `same-issue-<n>x`.
pub fn same_issue_label(n: u32) -> String {
    format!("{}{n}x", labels::SAME_ISSUE_PREFIX)
}

/// The `n` of `same-issue-<n>x`, or `None` for any other label.
pub fn parse_same_issue(label: &str) -> Option<u32> {
    label
        .strip_prefix(labels::SAME_ISSUE_PREFIX)?
        .strip_suffix('x')?
        .parse()
        .ok()
}

/// Run state from one bead's labels: `circuit-breaker` → Halted, `sprint:complete` → Complete,
/// `run:current` → Running, else Ready.
pub fn derive_run_state(labels: &[String]) -> RunState {
    let has = |l: &str| labels.iter().any(|x| x == l);
    if has(labels::CIRCUIT_BREAKER) {
        RunState::Halted
    } else if has(labels::SPRINT_COMPLETE) {
        RunState::Complete
    } else if has(labels::RUN_CURRENT) {
        RunState::Running
    } else {
        RunState::Ready
    }
}

/// Sprint state from labels: complete > in_progress > pending.
pub fn derive_sprint_state(labels: &[String]) -> SprintState {
    let has = |l: &str| labels.iter().any(|x| x == l);
    if has(labels::SPRINT_COMPLETE) {
        SprintState::Complete
    } else if has(labels::SPRINT_IN_PROGRESS) {
        SprintState::InProgress
    } else {
        SprintState::Pending
    }
}

/// An open circuit breaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CircuitBreaker {
    /// The breaker bead.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Highest `same-issue-<n>x` label (1 when none).
    pub failure_count: u32,
}

impl State {
    /// The current run epic: the newest non-terminal bead labelled `run:current`.
    pub fn current_run(&self) -> Option<&Bead> {
        self.beads()
            .filter(|b| b.has_label(labels::RUN_CURRENT) && !b.status.is_terminal())
            .max_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)))
    }

    /// Sprints of a run (beads labelled `run:<run-id>`), by sprint number.
    pub fn sprints(&self, run_id: &str) -> Vec<&Bead> {
        let tag = format!("run:{run_id}");
        let mut v: Vec<&Bead> = self.beads().filter(|b| b.has_label(&tag)).collect();
        v.sort_by_key(|b| (sprint_number(b).unwrap_or(u32::MAX), b.id.clone()));
        v
    }

    /// The run state (anchors' `getRunState`, with the run's own sprints instead of any bead's).
    pub fn run_state(&self) -> RunState {
        let Some(run) = self.current_run() else {
            return RunState::Ready;
        };
        if let s @ (RunState::Halted | RunState::Complete) = derive_run_state(&run.labels) {
            return s;
        }
        let sprints = self.sprints(&run.id);
        let states: Vec<SprintState> = sprints
            .iter()
            .map(|b| derive_sprint_state(&b.labels))
            .collect();
        if states.contains(&SprintState::InProgress) {
            RunState::Running
        } else if !states.contains(&SprintState::Pending) {
            RunState::Complete
        } else {
            RunState::Running
        }
    }

    /// The first sprint in progress of the current run.
    pub fn current_sprint(&self) -> Option<&Bead> {
        let run = self.current_run()?;
        self.sprints(&run.id)
            .into_iter()
            .find(|b| derive_sprint_state(&b.labels) == SprintState::InProgress)
    }

    /// Open circuit-breaker beads.
    pub fn active_circuit_breakers(&self) -> Vec<CircuitBreaker> {
        let mut v: Vec<CircuitBreaker> = self
            .beads()
            .filter(|b| {
                b.has_label(labels::CIRCUIT_BREAKER)
                    && b.issue_type == IssueType::Debt
                    && !b.status.is_terminal()
            })
            .map(|b| CircuitBreaker {
                id: b.id.clone(),
                title: b.title.clone(),
                failure_count: b
                    .labels
                    .iter()
                    .filter_map(|l| parse_same_issue(l))
                    .max()
                    .unwrap_or(1),
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

fn sprint_number(b: &Bead) -> Option<u32> {
    b.labels
        .iter()
        .filter_map(|l| l.strip_prefix("sprint:"))
        .find_map(|n| n.parse().ok())
}

impl Store {
    /// Starts a run over existing sprint beads: creates the run epic ("Run: YYYY-MM-DD", P0,
    /// `run:current` + `run:epic`), labels sprint `i` with `sprint:<i+1>`, `sprint:pending` and
    /// `run:<run-id>`, and takes `run:current` off any previous run. Returns the run id.
    pub fn start_run(&self, sprint_ids: &[&str]) -> Result<String, Error> {
        for id in sprint_ids {
            self.options().limits.check_id(id)?;
        }
        self.transact(|tx| {
            let previous: Vec<String> = tx
                .state()
                .beads()
                .filter(|b| b.has_label(labels::RUN_CURRENT) && !b.status.is_terminal())
                .map(|b| b.id.clone())
                .collect();
            for p in previous {
                tx.remove_labels(&p, &[labels::RUN_CURRENT])?;
            }
            let date = &tx.now().as_str()[..10.min(tx.now().as_str().len())];
            let mut epic = Bead::new("", format!("Run: {date}"));
            epic.issue_type = IssueType::Epic;
            epic.priority = Priority(0);
            epic.labels = vec![labels::RUN_CURRENT.into(), labels::RUN_EPIC.into()];
            let run_id = tx.create(epic)?;
            let run_label = format!("run:{run_id}");
            for (i, id) in sprint_ids.iter().enumerate() {
                let n = format!("sprint:{}", i + 1);
                tx.add_labels(id, &[&n, labels::SPRINT_PENDING, &run_label])?;
            }
            Ok(run_id)
        })
    }

    /// `sprint:pending` → `sprint:in_progress`.
    pub fn start_sprint(&self, sprint_id: &str) -> Result<(), Error> {
        self.transact(|tx| {
            tx.remove_labels(sprint_id, &[labels::SPRINT_PENDING])?;
            tx.add_labels(sprint_id, &[labels::SPRINT_IN_PROGRESS])?;
            Ok(())
        })
    }

    /// `sprint:in_progress` → `sprint:complete`, and closes the sprint bead.
    pub fn complete_sprint(&self, sprint_id: &str) -> Result<(), Error> {
        self.transact(|tx| {
            tx.remove_labels(sprint_id, &[labels::SPRINT_IN_PROGRESS])?;
            tx.add_labels(sprint_id, &[labels::SPRINT_COMPLETE])?;
            tx.close(sprint_id, Some("sprint complete"))?;
            Ok(())
        })
    }

    /// Opens a circuit breaker: a `debt` bead "Circuit Breaker: Sprint &lt;id&gt;" (P0,
    /// `circuit-breaker`, `same-issue-<n>x`) with a "Triggered: &lt;reason&gt;" comment, and labels the
    /// current run `circuit-breaker`. Returns the breaker's id.
    pub fn create_circuit_breaker(
        &self,
        sprint_id: &str,
        reason: &str,
        failure_count: u32,
    ) -> Result<String, Error> {
        self.transact(|tx| {
            let mut b = Bead::new("", format!("Circuit Breaker: Sprint {sprint_id}"));
            b.issue_type = IssueType::Debt;
            b.priority = Priority(0);
            b.labels = vec![
                labels::CIRCUIT_BREAKER.into(),
                same_issue_label(failure_count),
            ];
            let id = tx.create(b)?;
            tx.comment(&id, None, &format!("Triggered: {reason}"))?;
            if let Some(run) = tx.state().current_run().map(|r| r.id.clone()) {
                tx.add_labels(&run, &[labels::CIRCUIT_BREAKER])?;
            }
            Ok(id)
        })
    }

    /// Halts the run: a circuit breaker for the current sprint (or "unknown").
    pub fn halt_run(&self, reason: &str) -> Result<String, Error> {
        let sprint = self
            .read(|s| s.current_sprint().map(|b| b.id.clone()))
            .unwrap_or_else(|| "unknown".to_owned());
        self.create_circuit_breaker(&sprint, reason, 1)
    }

    /// Closes a circuit breaker ("Resolved at &lt;time&gt;") and, when no other breaker stays open,
    /// takes `circuit-breaker` off the current run.
    pub fn resolve_circuit_breaker(&self, id: &str) -> Result<(), Error> {
        self.transact(|tx| resolve_in(tx, &[id.to_owned()]))
    }

    /// Resolves every open circuit breaker; returns their ids.
    pub fn resume_run(&self) -> Result<Vec<String>, Error> {
        self.transact(|tx| {
            let ids: Vec<String> = tx
                .state()
                .active_circuit_breakers()
                .into_iter()
                .map(|c| c.id)
                .collect();
            resolve_in(tx, &ids)?;
            Ok(ids)
        })
    }

    /// The run state.
    pub fn run_state(&self) -> RunState {
        self.read(State::run_state)
    }
}

fn resolve_in(tx: &mut crate::tx::Tx<'_>, ids: &[String]) -> Result<(), Error> {
    for id in ids {
        let now = tx.now().clone();
        tx.comment(id, None, &format!("Resolved at {now}"))?;
        tx.close(id, Some("resolved"))?;
    }
    let still_open =
        tx.state().active_circuit_breakers().iter().any(|c| {
            !ids.contains(&c.id) && tx.get(&c.id).is_some_and(|b| b.status != Status::Closed)
        });
    if !still_open && let Some(run) = tx.state().current_run().map(|r| r.id.clone()) {
        tx.remove_labels(&run, &[labels::CIRCUIT_BREAKER])?;
    }
    Ok(())
}
