//! The runtime's metrics in the Prometheus text exposition format (OpenMetrics 1.0, which every
//! Prometheus server scrapes), through `prometheus-client`.
//!
//! Event metrics (latencies, task outcomes, GC) are recorded when they happen; state metrics
//! (LSNs, lag, checkpoint age, breaker states, request counts) are sampled at each scrape by
//! [`Finn::metrics_text`](crate::Finn::metrics_text), so a scrape always shows the present.
//!
//! | series | type | meaning |
//! |---|---|---|
//! | `finn_wal_append_duration_seconds` | histogram | one acknowledged append (includes the fdatasync in `Sync` durability) |
//! | `finn_wal_sync_duration_seconds` | histogram | one explicit WAL sync (before a checkpoint, at shutdown) |
//! | `finn_wal_group_commit_records` | histogram | records made durable per fdatasync, averaged per scrape interval |
//! | `finn_wal_syncs` / `finn_wal_appends` | counter | fdatasyncs and appends since the process started |
//! | `finn_wal_bytes` | gauge | bytes held by WAL segments |
//! | `finn_lsn{which}` | gauge | `local` (appended), `durable`, `shipped`, `checkpointed` |
//! | `finn_ship_lag_records` | gauge | durable records not yet in the object store |
//! | `finn_ship_lag_seconds` | gauge | age of the oldest such record |
//! | `finn_pending_bytes` | gauge | payload bytes of those records |
//! | `finn_checkpoint_age_seconds` | gauge | time since the newest published checkpoint |
//! | `finn_remote_sync_duration_seconds` | histogram | one scheduled sync (ship + checkpoint) |
//! | `finn_remote_requests{op}` | counter | object-store requests by operation (`list` should stay flat) |
//! | `finn_remote_request_failures` | counter | failed object-store requests |
//! | `finn_gc_deleted_bytes` / `finn_gc_deleted_objects` | counter | what GC and retention removed |
//! | `finn_breaker_state{breaker}` | gauge | 0 closed, 1 half-open, 2 open |
//! | `finn_task_runs{task,outcome}` | counter | scheduled runs by outcome |
//! | `finn_task_last_success_timestamp_seconds{task}` | gauge | wall-clock time of the last success |
//! | `finn_restore_duration_seconds{kind}` | histogram | `boot` recovery and `drill` restores |
//! | `finn_verify_ok` / `finn_verify_findings` | gauge | last remote validation |
//! | `finn_verify_last_timestamp_seconds` | gauge | when it ran |
//! | `finn_drill_ok` / `finn_restorable_as_of_timestamp_seconds` | gauge | last restore drill |

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn latency_buckets() -> Histogram {
    // 50 µs .. ~105 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 22))
}

fn restore_histogram() -> Histogram {
    // 10 ms .. ~45 min.
    Histogram::new(exponential_buckets(0.01, 2.0, 18))
}

/// State sampled at a scrape.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Sample {
    /// Newest appended LSN.
    pub local_lsn: u64,
    /// Newest durable LSN.
    pub durable_lsn: u64,
    /// Newest LSN in shipped WAL.
    pub shipped_lsn: u64,
    /// Newest LSN covered by a published checkpoint.
    pub checkpointed_lsn: u64,
    /// Durable records not yet remotely durable.
    pub lag_records: u64,
    /// Age of the oldest of them, seconds.
    pub lag_seconds: f64,
    /// Their payload bytes.
    pub pending_bytes: u64,
    /// Seconds since the newest checkpoint was published (none: no checkpoint yet).
    pub checkpoint_age_seconds: Option<f64>,
    /// WAL segment bytes.
    pub wal_bytes: u64,
    /// fdatasyncs since open.
    pub wal_syncs: u64,
    /// Appends since open.
    pub wal_appends: u64,
    /// Average records per fdatasync since open.
    pub wal_average_group: f64,
    /// Breaker states by name: 0 closed, 1 half-open, 2 open.
    pub breakers: Vec<(String, i64)>,
    /// Object-store requests by operation since the remote was opened, and failures.
    pub requests: Vec<(&'static str, u64)>,
    /// Failed object-store requests.
    pub request_failures: u64,
}

#[derive(Debug, Default)]
struct Seen {
    requests: std::collections::BTreeMap<&'static str, u64>,
    failures: u64,
    syncs: u64,
    appends: u64,
    synced_records: f64,
}

/// The registry and every metric; see the [module docs](self).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    append: Histogram,
    wal_sync: Histogram,
    group_commit: Histogram,
    wal_syncs: Counter,
    wal_appends: Counter,
    wal_bytes: Gauge,
    lsn: Family<Labels, Gauge>,
    lag_records: Gauge,
    lag_seconds: FloatGauge,
    pending_bytes: Gauge,
    checkpoint_age: FloatGauge,
    remote_sync: Histogram,
    remote_requests: Family<Labels, Counter>,
    remote_failures: Counter,
    gc_bytes: Counter,
    gc_objects: Counter,
    breaker_state: Family<Labels, Gauge>,
    task_runs: Family<Labels, Counter>,
    task_last_success: Family<Labels, FloatGauge>,
    restore: Family<Labels, Histogram, fn() -> Histogram>,
    verify_ok: Gauge,
    verify_findings: Gauge,
    verify_last: FloatGauge,
    drill_ok: Gauge,
    restorable_as_of: FloatGauge,
    seen: Mutex<Seen>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Metrics {
    /// Every metric, registered, at zero.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Metrics {
            append: latency_buckets(),
            wal_sync: latency_buckets(),
            group_commit: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            wal_syncs: Counter::default(),
            wal_appends: Counter::default(),
            wal_bytes: Gauge::default(),
            lsn: Family::default(),
            lag_records: Gauge::default(),
            lag_seconds: FloatGauge::default(),
            pending_bytes: Gauge::default(),
            checkpoint_age: FloatGauge::default(),
            remote_sync: latency_buckets(),
            remote_requests: Family::default(),
            remote_failures: Counter::default(),
            gc_bytes: Counter::default(),
            gc_objects: Counter::default(),
            breaker_state: Family::default(),
            task_runs: Family::default(),
            task_last_success: Family::default(),
            restore: Family::new_with_constructor(restore_histogram as fn() -> Histogram),
            verify_ok: Gauge::default(),
            verify_findings: Gauge::default(),
            verify_last: FloatGauge::default(),
            drill_ok: Gauge::default(),
            restorable_as_of: FloatGauge::default(),
            seen: Mutex::new(Seen::default()),
            registry: Registry::default(),
        };
        r.register(
            "finn_wal_append_duration_seconds",
            "Latency of one acknowledged WAL append",
            m.append.clone(),
        );
        r.register(
            "finn_wal_sync_duration_seconds",
            "Latency of one explicit WAL sync",
            m.wal_sync.clone(),
        );
        r.register(
            "finn_wal_group_commit_records",
            "Records made durable per fdatasync, averaged per scrape interval",
            m.group_commit.clone(),
        );
        r.register(
            "finn_wal_syncs",
            "fdatasyncs covering appended records",
            m.wal_syncs.clone(),
        );
        r.register(
            "finn_wal_appends",
            "Records appended",
            m.wal_appends.clone(),
        );
        r.register(
            "finn_wal_bytes",
            "Bytes held by WAL segments",
            m.wal_bytes.clone(),
        );
        r.register(
            "finn_lsn",
            "Log sequence numbers: local, durable, shipped, checkpointed",
            m.lsn.clone(),
        );
        r.register(
            "finn_ship_lag_records",
            "Durable records not yet in the object store",
            m.lag_records.clone(),
        );
        r.register(
            "finn_ship_lag_seconds",
            "Age of the oldest durable record not yet in the object store",
            m.lag_seconds.clone(),
        );
        r.register(
            "finn_pending_bytes",
            "Payload bytes of durable records not yet in the object store",
            m.pending_bytes.clone(),
        );
        r.register(
            "finn_checkpoint_age_seconds",
            "Time since the newest published checkpoint",
            m.checkpoint_age.clone(),
        );
        r.register(
            "finn_remote_sync_duration_seconds",
            "Duration of one scheduled object-store sync (ship and checkpoint)",
            m.remote_sync.clone(),
        );
        r.register(
            "finn_remote_requests",
            "Object-store requests by operation",
            m.remote_requests.clone(),
        );
        r.register(
            "finn_remote_request_failures",
            "Failed object-store requests",
            m.remote_failures.clone(),
        );
        r.register(
            "finn_gc_deleted_bytes",
            "Stored bytes deleted by GC and retention",
            m.gc_bytes.clone(),
        );
        r.register(
            "finn_gc_deleted_objects",
            "Objects deleted by GC and retention",
            m.gc_objects.clone(),
        );
        r.register(
            "finn_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            m.breaker_state.clone(),
        );
        r.register(
            "finn_task_runs",
            "Scheduled task runs by outcome",
            m.task_runs.clone(),
        );
        r.register(
            "finn_task_last_success_timestamp_seconds",
            "Wall-clock time of each task's last successful run",
            m.task_last_success.clone(),
        );
        r.register(
            "finn_restore_duration_seconds",
            "Duration of restores: boot recovery and restore drills",
            m.restore.clone(),
        );
        r.register(
            "finn_verify_ok",
            "Whether the last remote validation found nothing wrong (1) or not (0)",
            m.verify_ok.clone(),
        );
        r.register(
            "finn_verify_findings",
            "Findings of the last remote validation",
            m.verify_findings.clone(),
        );
        r.register(
            "finn_verify_last_timestamp_seconds",
            "When the remote was last validated",
            m.verify_last.clone(),
        );
        r.register(
            "finn_drill_ok",
            "Whether the last restore drill passed (1) or failed (0)",
            m.drill_ok.clone(),
        );
        r.register(
            "finn_restorable_as_of_timestamp_seconds",
            "The moment a restore from the remote alone gets back to, per the last drill",
            m.restorable_as_of.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Records one append's latency.
    pub fn observe_append(&self, d: Duration) {
        self.append.observe(secs(d));
    }

    /// Records one explicit WAL sync's latency.
    pub fn observe_wal_sync(&self, d: Duration) {
        self.wal_sync.observe(secs(d));
    }

    /// Records one scheduled object-store sync's duration.
    pub fn observe_remote_sync(&self, d: Duration) {
        self.remote_sync.observe(secs(d));
    }

    /// Records a restore's duration (`kind`: `boot` or `drill`).
    pub fn observe_restore(&self, kind: &str, d: Duration) {
        self.restore
            .get_or_create(&vec![("kind", kind.to_owned())])
            .observe(secs(d));
    }

    /// Records a scheduled run's outcome (and, for a success, its wall-clock time).
    pub fn task_finished(&self, task: &str, outcome: &str, now_ms: u64) {
        self.task_runs
            .get_or_create(&vec![
                ("task", task.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
        if outcome == "succeeded" {
            self.task_last_success
                .get_or_create(&vec![("task", task.to_owned())])
                .set(now_ms as f64 / 1000.0);
        }
    }

    /// Records what GC or retention deleted.
    pub fn deleted(&self, objects: u64, bytes: u64) {
        self.gc_objects.inc_by(objects);
        self.gc_bytes.inc_by(bytes);
    }

    /// Records a remote validation's outcome.
    pub fn verified(&self, ok: bool, findings: usize, at_ms: u64) {
        self.verify_ok.set(i64::from(ok));
        self.verify_findings.set(findings as i64);
        self.verify_last.set(at_ms as f64 / 1000.0);
    }

    /// Records a restore drill's outcome.
    pub fn drilled(&self, ok: bool, restorable_as_of_ms: Option<u64>) {
        self.drill_ok.set(i64::from(ok));
        if let Some(t) = restorable_as_of_ms {
            self.restorable_as_of.set(t as f64 / 1000.0);
        }
    }

    /// Applies a scrape-time sample.
    pub fn sample(&self, s: &Sample) {
        for (which, v) in [
            ("local", s.local_lsn),
            ("durable", s.durable_lsn),
            ("shipped", s.shipped_lsn),
            ("checkpointed", s.checkpointed_lsn),
        ] {
            self.lsn
                .get_or_create(&vec![("which", which.to_owned())])
                .set(v as i64);
        }
        self.lag_records.set(s.lag_records as i64);
        self.lag_seconds.set(s.lag_seconds);
        self.pending_bytes.set(s.pending_bytes as i64);
        self.wal_bytes.set(s.wal_bytes as i64);
        if let Some(age) = s.checkpoint_age_seconds {
            self.checkpoint_age.set(age);
        }
        for (name, state) in &s.breakers {
            self.breaker_state
                .get_or_create(&vec![("breaker", name.clone())])
                .set(*state);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for (op, n) in &s.requests {
            let before = seen.requests.insert(op, *n).unwrap_or(0);
            // Counters only grow: a smaller value is a new remote handle starting over.
            let delta = n.checked_sub(before).unwrap_or(*n);
            self.remote_requests
                .get_or_create(&vec![("op", (*op).to_owned())])
                .inc_by(delta);
        }
        let failures = s.request_failures;
        self.remote_failures
            .inc_by(failures.checked_sub(seen.failures).unwrap_or(failures));
        seen.failures = failures;
        let syncs = s.wal_syncs.saturating_sub(seen.syncs);
        let appends = s.wal_appends.saturating_sub(seen.appends);
        self.wal_syncs.inc_by(syncs);
        self.wal_appends.inc_by(appends);
        let synced = s.wal_average_group * s.wal_syncs as f64;
        if syncs > 0 {
            self.group_commit
                .observe(((synced - seen.synced_records) / syncs as f64).max(1.0));
        }
        seen.syncs = s.wal_syncs;
        seen.appends = s.wal_appends;
        seen.synced_records = synced;
    }

    /// The exposition text (OpenMetrics 1.0, ends with `# EOF`); serve with [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
