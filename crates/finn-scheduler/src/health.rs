//! Health aggregation: components report healthy / degraded / unhealthy with reasons, and the
//! [`HealthAggregator`] folds them into one [`HealthReport`].
//!
//! The fold is the anchors' rule: the overall health is the worst component's (unhealthy beats
//! degraded beats healthy; no components is healthy). The anchor runtime's components map onto
//! it like this, and the finn runtime reports the same way:
//!
//! | Component | Unhealthy when | Degraded when |
//! |---|---|---|
//! | WAL | disk pressure critical | disk pressure warning |
//! | agent | not ok | — |
//! | recovery | loop detected | running degraded (template or partial restore) |
//! | object store | — | last sync timed out |
//! | git archive | — | push conflict |
//! | scheduler ([`Scheduler::health`](crate::Scheduler::health)) | — | any task's breaker open |
//! | beads | — | unavailable |
//!
//! Components either are polled ([`HealthAggregator::add_reporter`], run in parallel on every
//! [`HealthAggregator::check`], each under a timeout) or push their state when it changes
//! ([`HealthAggregator::report`]). A reporter that fails, panics or times out is unhealthy,
//! with the reason.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;

/// Default bound on one reporter's check.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How healthy something is. Ordered: `Healthy < Degraded < Unhealthy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Working as intended.
    Healthy,
    /// Working, with reduced guarantees (a dependency down, a circuit open).
    Degraded,
    /// Not working; needs attention.
    Unhealthy,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
        })
    }
}

/// One component's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentHealth {
    /// The component.
    pub name: String,
    /// Its health.
    pub health: Health,
    /// Why it is not healthy (empty when healthy).
    pub reasons: Vec<String>,
    /// Free-form facts for operators (segment count, last sync, …).
    pub details: BTreeMap<String, String>,
}

impl ComponentHealth {
    /// A healthy component.
    pub fn healthy(name: impl Into<String>) -> Self {
        ComponentHealth {
            name: name.into(),
            health: Health::Healthy,
            reasons: Vec::new(),
            details: BTreeMap::new(),
        }
    }

    /// A degraded component, with the reason.
    pub fn degraded(name: impl Into<String>, reason: impl Into<String>) -> Self {
        ComponentHealth {
            health: Health::Degraded,
            reasons: vec![reason.into()],
            ..Self::healthy(name)
        }
    }

    /// An unhealthy component, with the reason.
    pub fn unhealthy(name: impl Into<String>, reason: impl Into<String>) -> Self {
        ComponentHealth {
            health: Health::Unhealthy,
            reasons: vec![reason.into()],
            ..Self::healthy(name)
        }
    }

    /// Adds a detail.
    pub fn with_detail(mut self, key: impl Into<String>, value: impl fmt::Display) -> Self {
        self.details.insert(key.into(), value.to_string());
        self
    }
}

/// The error a reporter may return; it makes the component unhealthy.
pub type CheckError = Box<dyn Error + Send + Sync>;

/// The future of one check.
pub type CheckFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ComponentHealth, CheckError>> + Send + 'a>>;

/// Something that can say how healthy it is.
pub trait HealthCheck: Send + Sync + 'static {
    /// Checks the component. The aggregator bounds the call by its check timeout.
    fn check(&self) -> CheckFuture<'_>;
}

impl HealthCheck for crate::Scheduler {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move { Ok(self.health()) })
    }
}

struct FnCheck<F>(F);

impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ComponentHealth, CheckError>> + Send + 'static,
{
    fn check(&self) -> CheckFuture<'_> {
        Box::pin((self.0)())
    }
}

/// The folded health of every component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// The worst component health; healthy when there are no components.
    pub overall: Health,
    /// Every component, ordered by name.
    pub components: Vec<ComponentHealth>,
}

impl HealthReport {
    /// Every reason of every component that is not healthy, as `"component: reason"`.
    pub fn reasons(&self) -> Vec<String> {
        self.components
            .iter()
            .filter(|c| c.health != Health::Healthy)
            .flat_map(|c| c.reasons.iter().map(move |r| format!("{}: {r}", c.name)))
            .collect()
    }

    /// One component by name.
    pub fn component(&self, name: &str) -> Option<&ComponentHealth> {
        self.components.iter().find(|c| c.name == name)
    }
}

/// Collects component health (the anchors' `HealthAggregator`).
///
/// ```
/// use finn_scheduler::{ComponentHealth, Health, HealthAggregator};
///
/// # tokio_test_block_on(async {
/// let health = HealthAggregator::new();
/// health.report(ComponentHealth::degraded("wal", "disk pressure warning"));
/// health.add_fn("agent", || async { Ok(ComponentHealth::healthy("agent")) });
/// let report = health.check().await;
/// assert_eq!(report.overall, Health::Degraded);
/// assert_eq!(report.reasons(), vec!["wal: disk pressure warning"]);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
pub struct HealthAggregator {
    reporters: Mutex<Vec<(String, Arc<dyn HealthCheck>)>>,
    pushed: Mutex<BTreeMap<String, ComponentHealth>>,
    check_timeout: Duration,
}

impl fmt::Debug for HealthAggregator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .reporters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        f.debug_struct("HealthAggregator")
            .field("reporters", &names)
            .finish_non_exhaustive()
    }
}

impl Default for HealthAggregator {
    fn default() -> Self {
        HealthAggregator::new()
    }
}

impl HealthAggregator {
    /// An aggregator with no components and the [`DEFAULT_CHECK_TIMEOUT`].
    pub fn new() -> Self {
        HealthAggregator::with_check_timeout(DEFAULT_CHECK_TIMEOUT)
    }

    /// An aggregator whose reporters each get at most `timeout`.
    pub fn with_check_timeout(timeout: Duration) -> Self {
        HealthAggregator {
            reporters: Mutex::new(Vec::new()),
            pushed: Mutex::new(BTreeMap::new()),
            check_timeout: timeout,
        }
    }

    /// Adds a polled component. Its report is filed under `name` whatever name it gives itself.
    pub fn add_reporter(&self, name: impl Into<String>, check: impl HealthCheck) {
        self.reporters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.into(), Arc::new(check)));
    }

    /// Adds a polled component from an async closure.
    pub fn add_fn<F, Fut>(&self, name: impl Into<String>, f: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ComponentHealth, CheckError>> + Send + 'static,
    {
        self.add_reporter(name, FnCheck(f));
    }

    /// Records a pushed component's current health, replacing its previous report.
    pub fn report(&self, component: ComponentHealth) {
        self.pushed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(component.name.clone(), component);
    }

    /// Forgets a component (pushed or polled). Returns whether it existed.
    pub fn remove(&self, name: &str) -> bool {
        let pushed = self
            .pushed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
            .is_some();
        let mut reporters = self
            .reporters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let before = reporters.len();
        reporters.retain(|(n, _)| n != name);
        pushed || reporters.len() != before
    }

    /// Polls every reporter in parallel and folds them with the pushed reports.
    pub async fn check(&self) -> HealthReport {
        let reporters = self
            .reporters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let timeout = self.check_timeout;
        let polled =
            futures::future::join_all(reporters.into_iter().map(|(name, reporter)| async move {
                let checked = tokio::time::timeout(
                    timeout,
                    AssertUnwindSafe(async { reporter.check().await }).catch_unwind(),
                );
                let mut component = match checked.await {
                    Ok(Ok(Ok(component))) => component,
                    Ok(Ok(Err(e))) => {
                        ComponentHealth::unhealthy(&name, format!("health check failed: {e}"))
                    }
                    Ok(Err(_)) => ComponentHealth::unhealthy(&name, "health check panicked"),
                    Err(_) => ComponentHealth::unhealthy(
                        &name,
                        format!("health check timed out after {timeout:?}"),
                    ),
                };
                component.name = name;
                component
            }))
            .await;
        let mut components: BTreeMap<String, ComponentHealth> = self
            .pushed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for component in polled {
            components.insert(component.name.clone(), component);
        }
        let components: Vec<ComponentHealth> = components.into_values().collect();
        let overall = components
            .iter()
            .map(|c| c.health)
            .max()
            .unwrap_or(Health::Healthy);
        HealthReport {
            overall,
            components,
        }
    }
}
