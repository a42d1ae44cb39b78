//! Operating the runtime: status, metrics, continuous verification of the remote (validation
//! and restore drills as scheduled tasks), retention, and the heartbeat.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use finn_checkpoint::heartbeat::{Beat, Heartbeat};
use finn_checkpoint::remote_index::RemoteIndex;
use finn_checkpoint::{
    DrillOptions, DrillReport, Keyring, Reader, Remote, RetentionMode, RetentionPolicy,
    RetentionReport, ValidateOptions, ValidationReport,
};
use finn_scheduler::{ComponentHealth, RunOutcome, SchedulerEvent, TaskState};
use finn_wal::Lsn;

use super::{Error, Finn, Inner};
use crate::metrics::{Metrics, Sample};
use crate::status::{CheckpointInfo, DrillInfo, Status, TaskBook, TaskInfo};

/// Task id of the scheduled remote validation.
pub const REMOTE_VERIFY_TASK: &str = "remote_verify";
/// Task id of the scheduled restore drill.
pub const RESTORE_DRILL_TASK: &str = "restore_drill";
/// Task id of the scheduled retention (only when configured to delete on its own).
pub const RETENTION_TASK: &str = "retention";

/// How the runtime verifies its remote. Every field has a default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct VerifySettings {
    /// Period of the remote validation task; none disables it. Default: 1 h.
    pub validate_every: Option<Duration>,
    /// Period of the restore drill task; none disables it. Default: 24 h.
    pub drill_every: Option<Duration>,
    /// Known objects re-downloaded per validation. Default: 8.
    pub sample: usize,
    /// URL pinged after a sync when the last validation found nothing wrong. Default: none.
    pub heartbeat_url: Option<String>,
    /// Shortest time between two pings. Default: 60 s.
    pub heartbeat_min_interval: Duration,
}

impl Default for VerifySettings {
    fn default() -> Self {
        Self {
            validate_every: Some(Duration::from_secs(3600)),
            drill_every: Some(Duration::from_secs(24 * 3600)),
            sample: 8,
            heartbeat_url: None,
            heartbeat_min_interval: Duration::from_secs(60),
        }
    }
}

/// What the operating side of the runtime keeps.
#[derive(Debug)]
pub(super) struct Ops {
    pub(super) remote: Remote,
    pub(super) keyring: Keyring,
    pub(super) metrics: Metrics,
    pub(super) tasks: TaskBook,
    pub(super) settings: VerifySettings,
    pub(super) retention: Option<(RetentionPolicy, Duration)>,
    pub(super) heartbeat: Option<Heartbeat>,
    pub(super) index_path: PathBuf,
    pub(super) drill_dir: PathBuf,
    pub(super) observed: Mutex<Observed>,
    /// One validation at a time (they share the index file).
    pub(super) validating: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
pub(super) struct Observed {
    pub(super) validation: Option<ValidationReport>,
    pub(super) drill: Option<DrillInfo>,
    pub(super) checkpoint: Option<CheckpointInfo>,
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn breaker_code(s: finn_breaker::State) -> i64 {
    match s {
        finn_breaker::State::Closed => 0,
        finn_breaker::State::HalfOpen => 1,
        finn_breaker::State::Open => 2,
    }
}

fn breaker_name(s: finn_breaker::State) -> &'static str {
    match s {
        finn_breaker::State::Closed => "closed",
        finn_breaker::State::HalfOpen => "half_open",
        finn_breaker::State::Open => "open",
    }
}

impl Ops {
    pub(super) fn new(
        data_dir: &std::path::Path,
        remote: Remote,
        keyring: Keyring,
        settings: VerifySettings,
        retention: Option<(RetentionPolicy, Duration)>,
    ) -> Result<Self, Error> {
        let heartbeat = match &settings.heartbeat_url {
            Some(url) => Some(
                Heartbeat::new(url)
                    .map_err(|e| Error::Component {
                        component: "heartbeat",
                        source: Box::new(e),
                    })?
                    .min_interval(settings.heartbeat_min_interval),
            ),
            None => None,
        };
        Ok(Self {
            remote,
            keyring,
            metrics: Metrics::new(),
            tasks: TaskBook::default(),
            settings,
            retention,
            heartbeat,
            index_path: data_dir.join("remote-index.json"),
            drill_dir: data_dir.join(".drill"),
            observed: Mutex::new(Observed::default()),
            validating: tokio::sync::Mutex::new(()),
        })
    }

    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reader(&self) -> Reader {
        Reader::new(self.remote.clone(), self.keyring.clone())
    }

    /// Records a published checkpoint (for status and the checkpoint-age metric).
    pub(super) fn checkpointed(&self, version: u64, covered: Lsn, created_at_ms: u64) {
        self.observed().checkpoint = Some(CheckpointInfo {
            version,
            covered_lsn: covered.get(),
            created_at_ms,
            age_seconds: 0.0,
        });
    }

    /// Feeds scheduler events into the task book and the metrics.
    pub(super) fn on_event(&self, event: &SchedulerEvent) {
        if let SchedulerEvent::RunFinished(run) = event {
            let outcome = match run.outcome {
                RunOutcome::Succeeded => "succeeded",
                RunOutcome::Failed => "failed",
                RunOutcome::Panicked => "panicked",
                RunOutcome::TimedOut => "timed_out",
                RunOutcome::Cancelled => "cancelled",
            };
            let now = now_ms();
            self.metrics.task_finished(run.task.as_str(), outcome, now);
            if run.outcome != RunOutcome::Cancelled {
                self.tasks.record(
                    run.task.as_str(),
                    run.outcome == RunOutcome::Succeeded,
                    run.error.clone(),
                    now,
                );
            }
        }
    }
}

/// Up to this many unshipped records are read to measure the pending bytes and the lag time.
const PENDING_SCAN_LIMIT: usize = 100_000;

impl Inner {
    /// Lag in records and seconds and pending bytes: the durable records not yet remotely
    /// durable, read from the WAL (at most [`PENDING_SCAN_LIMIT`] of them).
    fn pending(&self, remote_durable: Lsn, durable: Lsn) -> (u64, f64, u64) {
        if durable <= remote_durable {
            return (0, 0.0, 0);
        }
        let mut records = 0u64;
        let mut bytes = 0u64;
        let mut oldest = None;
        if let Ok(iter) = self.wal.iter_from(remote_durable.next()) {
            for r in iter.take(PENDING_SCAN_LIMIT).flatten() {
                if r.lsn > durable {
                    break;
                }
                oldest.get_or_insert(r.timestamp_ms);
                records += 1;
                bytes += (r.payload.len() + r.key.as_ref().map_or(0, String::len)) as u64;
            }
        }
        // Past the scan limit, the LSN distance is the count (LSN jumps only overstate it).
        if records as usize == PENDING_SCAN_LIMIT {
            records = durable.get() - remote_durable.get();
        }
        let lag_seconds = oldest.map_or(0.0, |t| now_ms().saturating_sub(t) as f64 / 1000.0);
        (records, lag_seconds, bytes)
    }

    pub(super) fn status(&self) -> Status {
        let wal = self.wal.status();
        let c = self.confirmed();
        let remote_durable = c.checkpointed_lsn.max(c.shipped_lsn);
        let (lag_records, lag_seconds, pending_bytes) =
            self.pending(remote_durable, wal.durable_lsn);
        let now = now_ms();
        let observed = self.ops.observed();
        let checkpoint = observed.checkpoint.clone().map(|mut ck| {
            ck.age_seconds = now.saturating_sub(ck.created_at_ms) as f64 / 1000.0;
            ck
        });
        let tasks = self
            .scheduler
            .statuses()
            .into_iter()
            .map(|t| TaskInfo {
                id: t.id.as_str().to_owned(),
                state: match t.state {
                    TaskState::Idle => "idle",
                    TaskState::WaitingForGroup => "waiting_for_group",
                    TaskState::Running => "running",
                    TaskState::Disabled => "disabled",
                    TaskState::CircuitOpen => "circuit_open",
                }
                .to_owned(),
                runs: t.runs,
                successes: t.successes,
                failures: t.failures + t.timeouts,
                last_outcome: t.last_outcome.map(|o| format!("{o:?}").to_lowercase()),
                times: self.ops.tasks.get(t.id.as_str()),
                breaker: t.breaker.map(|b| breaker_name(b).to_owned()),
            })
            .collect();
        Status {
            at_ms: now,
            local_lsn: wal.last_lsn.get(),
            durable_lsn: wal.durable_lsn.get(),
            shipped_lsn: c.shipped_lsn.get(),
            checkpointed_lsn: c.checkpointed_lsn.get(),
            lag_records,
            lag_seconds,
            in_sync: lag_records == 0,
            pending_bytes,
            checkpoint,
            tasks,
            remote_requests: self.ops.remote.requests(),
            verification: observed.validation.as_ref().map(|v| {
                finn_checkpoint::remote_index::ValidationSummary {
                    at_ms: v.at_ms,
                    ok: v.is_ok(),
                    findings: v.findings.len(),
                    newest_version: v.newest_version,
                    restorable_lsn: v.restorable_lsn,
                    restorable_as_of_ms: v.restorable_as_of_ms,
                }
            }),
            findings: observed
                .validation
                .as_ref()
                .map(|v| v.findings.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            drill: observed.drill.clone(),
        }
    }

    pub(super) fn metrics_text(&self) -> String {
        let status = self.status();
        let wal = self.wal.status();
        let requests = status.remote_requests;
        let mut breakers = vec![(
            self.ops
                .remote
                .breaker()
                .name()
                .unwrap_or("object-store")
                .to_owned(),
            breaker_code(self.ops.remote.breaker().state()),
        )];
        for t in self.scheduler.statuses() {
            if let Some(b) = t.breaker {
                breakers.push((format!("task:{}", t.id.as_str()), breaker_code(b)));
            }
        }
        let sample = Sample {
            local_lsn: status.local_lsn,
            durable_lsn: status.durable_lsn,
            shipped_lsn: status.shipped_lsn,
            checkpointed_lsn: status.checkpointed_lsn,
            lag_records: status.lag_records,
            lag_seconds: status.lag_seconds,
            pending_bytes: status.pending_bytes,
            checkpoint_age_seconds: status.checkpoint.as_ref().map(|c| c.age_seconds),
            wal_bytes: wal.wal_bytes,
            wal_syncs: wal.syncs,
            wal_appends: wal.appends,
            wal_average_group: wal.average_group_size,
            breakers,
            requests: requests.by_op().to_vec(),
            request_failures: requests.failures,
        };
        self.ops.metrics.sample(&sample);
        self.ops.metrics.encode()
    }

    /// Validates the remote incrementally (index in `<data_dir>/remote-index.json`).
    pub(super) async fn verify_remote(
        &self,
        options: &ValidateOptions,
    ) -> Result<ValidationReport, Error> {
        let _one = self.ops.validating.lock().await;
        let reader = self.ops.reader();
        let mut index = RemoteIndex::load_or_new(&self.ops.index_path, &self.ops.remote);
        let mut report = reader.validate(&mut index, options).await?;
        if !report.is_ok() {
            // Confirm before raising the alarm: GC or retention deleting between this run's
            // listings can make a manifest's objects look lost. A second pass lists afresh.
            tracing::info!(
                findings = report.findings.len(),
                "validating again to confirm"
            );
            report = reader.validate(&mut index, options).await?;
        }
        index.save(&self.ops.index_path)?;
        self.ops
            .metrics
            .verified(report.is_ok(), report.findings.len(), report.at_ms);
        self.ops.observed().validation = Some(report.clone());
        Ok(report)
    }

    /// Runs a restore drill against the remote, compared with the live WAL and the confirmed
    /// LSN.
    pub(super) async fn restore_drill(&self) -> Result<DrillReport, Error> {
        let started = Instant::now();
        let c = self.confirmed();
        let expect = c.checkpointed_lsn.max(c.shipped_lsn);
        let options = DrillOptions::default().expect_lsn(finn_checkpoint::Lsn::new(expect.get()));
        let result = self
            .ops
            .reader()
            .restore_drill(&self.ops.drill_dir, Some(&self.wal), &options)
            .await;
        self.ops.metrics.observe_restore("drill", started.elapsed());
        let info = match &result {
            Ok(r) => DrillInfo {
                at_ms: r.at_ms,
                ok: true,
                restored_lsn: r.restored_lsn.get(),
                restorable_as_of_ms: r.restorable_as_of_ms,
                duration_ms: r.duration_ms,
                error: None,
            },
            Err(e) => DrillInfo {
                at_ms: now_ms(),
                ok: false,
                duration_ms: started.elapsed().as_millis() as u64,
                error: Some(finn_checkpoint::error_chain(e)),
                ..DrillInfo::default()
            },
        };
        self.ops.metrics.drilled(info.ok, info.restorable_as_of_ms);
        self.ops.observed().drill = Some(info);
        Ok(result.map_err(Box::new)?)
    }

    /// Applies a retention policy under the writer's lease and counts what it deleted.
    pub(super) async fn apply_retention(
        &self,
        policy: &RetentionPolicy,
        mode: RetentionMode,
    ) -> Result<RetentionReport, Error> {
        let guard = self.checkpointer.read().await;
        let checkpointer = guard.as_ref().ok_or(Error::ShutDown)?;
        let report = checkpointer.retention(policy, mode).await?;
        if !report.dry_run {
            let deleted = report.deleted_manifests.len()
                + report.deleted_wal.len()
                + report.deleted_objects.len();
            self.ops
                .metrics
                .deleted(deleted as u64, report.deleted_bytes);
        }
        Ok(report)
    }

    /// Pings the heartbeat when a sync succeeded and the last validation found nothing wrong.
    pub(super) async fn heartbeat(&self) {
        let Some(hb) = &self.ops.heartbeat else {
            return;
        };
        let verified = self
            .ops
            .observed()
            .validation
            .as_ref()
            .is_some_and(ValidationReport::is_ok);
        match hb.beat(verified).await {
            Ok(Beat::Withheld) => {
                tracing::warn!("heartbeat withheld: the remote has not validated clean")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %finn_checkpoint::error_chain(&e), "heartbeat failed"),
        }
    }

    /// The `remote` health component: the last validation and the last drill.
    pub(super) fn remote_health(&self) -> ComponentHealth {
        let observed = self.ops.observed();
        let mut h = ComponentHealth::healthy("remote");
        if let Some(v) = &observed.validation {
            h = if v.is_ok() {
                h
            } else {
                ComponentHealth::unhealthy(
                    "remote",
                    format!(
                        "validation found {} problem(s): {}",
                        v.findings.len(),
                        v.findings
                            .first()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    ),
                )
            };
            h = h
                .with_detail("validated_at_ms", v.at_ms)
                .with_detail("restorable_lsn", v.restorable_lsn);
        } else {
            h = h.with_detail("validated", "not yet");
        }
        if let Some(d) = &observed.drill {
            if !d.ok {
                let reason = format!(
                    "restore drill failed: {}",
                    d.error.as_deref().unwrap_or("unknown")
                );
                h.health = finn_scheduler::Health::Unhealthy;
                h.reasons.push(reason);
            }
            if let Some(t) = d.restorable_as_of_ms {
                h = h.with_detail("restorable_as_of_ms", t);
            }
        }
        h
    }

    pub(super) fn register_verify_tasks(self: &Arc<Self>) -> Result<(), Error> {
        use finn_scheduler::TaskError;
        let periodic = |id: &str, every: Duration, timeout: Duration| {
            finn_scheduler::TaskSpec::new(id, every)
                .jitter(every / 12)
                .min_delay(every.min(finn_scheduler::DEFAULT_MIN_DELAY))
                .timeout(timeout)
        };
        // Validation, retention and drills hold non-`Send` borrows across awaits in places
        // rustc cannot see through (as the checkpoint's do): each runs on a blocking thread.
        if let Some(every) = self.ops.settings.validate_every {
            let sample = self.ops.settings.sample;
            let spec = periodic(REMOTE_VERIFY_TASK, every, Duration::from_secs(30 * 60));
            self.register_task(spec, move |me| async move {
                let report = me
                    .on_blocking_thread("remote validation", move |me| async move {
                        me.verify_remote(&ValidateOptions::default().sample(sample))
                            .await
                    })
                    .await?;
                if report.is_ok() {
                    Ok(())
                } else {
                    Err(TaskError::msg(format!(
                        "remote validation found {} problem(s)",
                        report.findings.len()
                    )))
                }
            })?;
        }
        if let Some((policy, every)) = self.ops.retention.clone() {
            let spec = periodic(RETENTION_TASK, every, Duration::from_secs(30 * 60)).group(
                finn_scheduler::table::SYNC_GROUP,
                finn_scheduler::GroupPolicy::Wait,
            );
            self.register_task(spec, move |me| {
                let policy = policy.clone();
                async move {
                    let report = me
                        .on_blocking_thread("retention", move |me| async move {
                            me.apply_retention(&policy, RetentionMode::Delete).await
                        })
                        .await?;
                    if report.is_verified() {
                        Ok(())
                    } else {
                        Err(TaskError::msg(format!(
                            "{} deletes were acknowledged but not performed",
                            report.undeleted.len()
                        )))
                    }
                }
            })?;
        }
        if let Some(every) = self.ops.settings.drill_every {
            let spec = periodic(RESTORE_DRILL_TASK, every, Duration::from_secs(60 * 60));
            self.register_task(spec, |me| async move {
                me.on_blocking_thread(
                    "restore drill",
                    |me| async move { me.restore_drill().await },
                )
                .await?;
                Ok(())
            })?;
        }
        Ok(())
    }
}

impl Finn {
    /// Local, shipped and checkpointed LSN, lag, tasks, request counts, last validation and
    /// drill; see [`Status`].
    pub fn status(&self) -> Status {
        self.inner.status()
    }

    /// The metrics registry (for embedding into an application's own exporter).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.ops.metrics
    }

    /// Samples the runtime's state and renders every metric in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics_text()
    }

    /// Validates the remote now (see [`finn_checkpoint::validate`]); the result also feeds
    /// health, status, metrics and the heartbeat.
    pub async fn verify_remote(
        &self,
        options: &ValidateOptions,
    ) -> Result<ValidationReport, Error> {
        self.inner.verify_remote(options).await
    }

    /// Restores the remote into a scratch directory and compares it with the live WAL (see
    /// [`finn_checkpoint::drill`]); fails loudly when the remote is damaged.
    pub async fn restore_drill(&self) -> Result<DrillReport, Error> {
        self.inner.restore_drill().await
    }

    /// Applies a retention policy to the object store under this runtime's lease (a dry run
    /// unless `mode` says [`RetentionMode::Delete`]).
    pub async fn retention(
        &self,
        policy: &RetentionPolicy,
        mode: RetentionMode,
    ) -> Result<RetentionReport, Error> {
        self.inner.apply_retention(policy, mode).await
    }

    /// Serves `/metrics`, `/status` and `/health` on a loopback address (port 0: any free port).
    pub async fn serve_http(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<crate::http::Endpoint, crate::http::EndpointError> {
        crate::http::Endpoint::bind(addr, self.clone()).await
    }
}
