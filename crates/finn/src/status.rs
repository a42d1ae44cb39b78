//! What [`Finn::status`](crate::Finn::status) and `finn status` report: how far the WAL is
//! durable locally, shipped and checkpointed, the lag in records and seconds, each scheduled
//! task's last success and failure, and what the object store was asked.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// A task's last success and failure, by wall clock (the scheduler's own times are monotonic
/// and process-local).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TaskTimes {
    /// When the last successful run finished (ms since the Unix epoch).
    pub last_success_ms: Option<u64>,
    /// When the last failed, panicked or timed-out run finished.
    pub last_failure_ms: Option<u64>,
    /// That run's error.
    pub last_error: Option<String>,
}

/// Wall-clock times of every task's runs, fed from the scheduler's events.
#[derive(Debug, Default)]
pub(crate) struct TaskBook {
    tasks: Mutex<BTreeMap<String, TaskTimes>>,
}

impl TaskBook {
    pub(crate) fn record(&self, task: &str, ok: bool, error: Option<String>, now_ms: u64) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let t = tasks.entry(task.to_owned()).or_default();
        if ok {
            t.last_success_ms = Some(now_ms);
        } else {
            t.last_failure_ms = Some(now_ms);
            t.last_error = error;
        }
    }

    pub(crate) fn get(&self, task: &str) -> TaskTimes {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(task)
            .cloned()
            .unwrap_or_default()
    }
}

/// One scheduled task.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct TaskInfo {
    /// Task id.
    pub id: String,
    /// `idle`, `running`, `waiting_for_group`, `disabled` or `circuit_open`.
    pub state: String,
    /// Runs whose handler started.
    pub runs: u64,
    /// Runs that succeeded.
    pub successes: u64,
    /// Runs that failed, panicked or timed out.
    pub failures: u64,
    /// How the last run ended.
    pub last_outcome: Option<String>,
    /// Wall-clock times of the last success and failure.
    #[serde(flatten)]
    pub times: TaskTimes,
    /// The task's breaker: `closed`, `half_open` or `open`.
    pub breaker: Option<String>,
}

/// The newest published checkpoint.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CheckpointInfo {
    /// Its version.
    pub version: u64,
    /// The LSN it covers.
    pub covered_lsn: u64,
    /// When it was created (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// Seconds since then.
    pub age_seconds: f64,
}

/// The runtime's status; see the [module docs](self).
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// When it was taken (ms since the Unix epoch).
    pub at_ms: u64,
    /// Newest appended LSN.
    pub local_lsn: u64,
    /// Newest LSN made durable by an fdatasync.
    pub durable_lsn: u64,
    /// Newest LSN in shipped WAL.
    pub shipped_lsn: u64,
    /// Newest LSN covered by a published checkpoint.
    pub checkpointed_lsn: u64,
    /// Durable records not yet in the object store.
    pub lag_records: u64,
    /// Age of the oldest of them in seconds (0 when in sync).
    pub lag_seconds: f64,
    /// Whether every durable record is in the object store.
    pub in_sync: bool,
    /// Payload bytes of the records not yet in the object store.
    pub pending_bytes: u64,
    /// Newest published checkpoint, if any.
    pub checkpoint: Option<CheckpointInfo>,
    /// Every scheduled task.
    pub tasks: Vec<TaskInfo>,
    /// Object-store requests by operation since the runtime opened.
    pub remote_requests: finn_checkpoint::RequestCounts,
    /// The last remote validation, if one ran.
    pub verification: Option<finn_checkpoint::remote_index::ValidationSummary>,
    /// Findings of the last validation, rendered.
    pub findings: Vec<String>,
    /// The last restore drill: when, whether it passed, and as of when a restore would be.
    pub drill: Option<DrillInfo>,
}

/// The last restore drill.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct DrillInfo {
    /// When it finished (ms since the Unix epoch).
    pub at_ms: u64,
    /// Whether it passed.
    pub ok: bool,
    /// The LSN restored.
    pub restored_lsn: u64,
    /// "Restorable as of T": the time of the newest restored record.
    pub restorable_as_of_ms: Option<u64>,
    /// How long it took in milliseconds.
    pub duration_ms: u64,
    /// Why it failed, with causes.
    pub error: Option<String>,
}

/// A health report as JSON (for `finn health --json` and `GET /health`).
pub fn health_json(report: &finn_scheduler::HealthReport) -> serde_json::Value {
    serde_json::json!({
        "overall": report.overall.to_string(),
        "components": report.components.iter().map(|c| serde_json::json!({
            "name": c.name,
            "health": c.health.to_string(),
            "reasons": c.reasons,
            "details": c.details,
        })).collect::<Vec<_>>(),
    })
}
