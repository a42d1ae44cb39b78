//! Remote-durable acknowledgement: a background shipper with a recovery point objective.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Lsn;
use crate::checkpoint::Checkpointer;
use crate::error::Error;
use crate::levels::LevelPolicy;

/// Default recovery point objective when a remote is configured.
pub const DEFAULT_RPO: Duration = Duration::from_secs(1);

/// What the shipper ships from and to. Implemented for a [`Checkpointer`] and a WAL by
/// [`CheckpointerShip`]; implement it to put something else between the two.
#[async_trait::async_trait]
pub trait ShipSource: Send + Sync + 'static {
    /// The newest LSN that is durable locally (what may be shipped).
    fn durable_lsn(&self) -> Lsn;
    /// The newest LSN appended (durable or not).
    fn last_lsn(&self) -> Lsn;
    /// Ships everything durable; returns the highest LSN confirmed shipped.
    async fn ship(&self) -> Result<Lsn, Error>;
    /// Compacts shipped WAL into levels. Default: nothing.
    async fn compact(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// [`ShipSource`] for a [`Checkpointer`] and the WAL it ships, with optional level compaction.
#[derive(Debug, Clone)]
pub struct CheckpointerShip {
    /// The writer (holds the lease).
    pub checkpointer: Arc<Checkpointer>,
    /// The WAL shipped.
    pub wal: Arc<finn_wal::Wal>,
    /// Level compaction run every [`ShipperOptions::compact_every`]; none: no compaction.
    pub compaction: Option<LevelPolicy>,
}

#[async_trait::async_trait]
impl ShipSource for CheckpointerShip {
    fn durable_lsn(&self) -> Lsn {
        self.wal.durable_lsn()
    }

    fn last_lsn(&self) -> Lsn {
        self.wal.last_lsn()
    }

    async fn ship(&self) -> Result<Lsn, Error> {
        Ok(self.checkpointer.ship_wal(&self.wal).await?.shipped_lsn)
    }

    async fn compact(&self) -> Result<(), Error> {
        if let Some(policy) = &self.compaction {
            self.checkpointer.compact_wal(policy).await?;
        }
        Ok(())
    }
}

/// Shipper settings. Every field has a default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ShipperOptions {
    /// Longest a synced record waits before a ship starts. Default: 1 s ([`DEFAULT_RPO`]).
    pub rpo: Duration,
    /// Longest wait between attempts while shipping fails. Default: 30 s.
    pub max_backoff: Duration,
    /// How often [`ShipSource::compact`] runs. Default: 30 s.
    pub compact_every: Duration,
}

impl Default for ShipperOptions {
    fn default() -> Self {
        Self {
            rpo: DEFAULT_RPO,
            max_backoff: Duration::from_secs(30),
            compact_every: Duration::from_secs(30),
        }
    }
}

impl ShipperOptions {
    /// Sets the RPO.
    pub fn rpo(mut self, rpo: Duration) -> Self {
        self.rpo = rpo;
        self
    }

    /// Sets the compaction interval.
    pub fn compact_every(mut self, every: Duration) -> Self {
        self.compact_every = every;
        self
    }
}

/// Where shipping stands.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct ShipStatus {
    /// Highest LSN confirmed in the object store.
    pub shipped_lsn: Lsn,
    /// Ship attempts started.
    pub attempts: u64,
    /// Attempts that failed in a row (0 when the last one succeeded).
    pub consecutive_failures: u32,
    /// The last failure, with its causes.
    pub last_error: Option<String>,
    /// Whether the shipper has stopped (shut down or fenced off).
    pub stopped: bool,
    #[serde(skip)]
    failed_attempt: u64,
    #[serde(skip)]
    failure: Option<Arc<Error>>,
}

struct Shared {
    status: tokio::sync::watch::Sender<ShipStatus>,
    nudge: tokio::sync::Notify,
    stop: tokio::sync::Notify,
    source: Arc<dyn ShipSource>,
}

/// Ships synced WAL records in the background within the RPO.
///
/// A record is *local-durable* once the WAL has fdatasynced it and *remote-durable* once the
/// shipped batch holding it is in the object store. The [`Shipper`] ships every synced record
/// within [`ShipperOptions::rpo`] (the longest a synced record waits before a ship starts;
/// default 1 s), and [`Shipper::await_shipped`] lets a caller wait for one record to be
/// remote-durable — per write, so an agent can acknowledge most writes locally and the few
/// that matter (a payment, a promise to a user) only once they left the machine.
///
/// While the store fails, ships are retried with exponential backoff (up to
/// [`ShipperOptions::max_backoff`]); the RPO cannot be kept then, and [`Shipper::status`] says
/// how far behind shipping is. A waiter whose record could not be shipped by an attempt that
/// began after it started waiting gets [`Error::NotShipped`] with the cause (it may wait again).
/// A fenced-off writer stops the shipper for good.
pub struct Shipper {
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("status", &*self.shared.status.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Shipper {
    /// Starts shipping from `source` on the current Tokio runtime. `shipped` is what the remote
    /// already holds (e.g. [`Checkpointer::shipped_lsn`]).
    pub fn spawn(source: Arc<dyn ShipSource>, shipped: Lsn, options: ShipperOptions) -> Self {
        let (status, _) = tokio::sync::watch::channel(ShipStatus {
            shipped_lsn: shipped,
            ..ShipStatus::default()
        });
        let shared = Arc::new(Shared {
            status,
            nudge: tokio::sync::Notify::new(),
            stop: tokio::sync::Notify::new(),
            source,
        });
        let task = tokio::spawn(run(shared.clone(), options));
        Self {
            shared,
            task: Some(task),
        }
    }

    /// Starts shipping `wal` through `checkpointer`, compacting with `compaction` if given.
    pub async fn for_checkpointer(
        checkpointer: Arc<Checkpointer>,
        wal: Arc<finn_wal::Wal>,
        compaction: Option<LevelPolicy>,
        options: ShipperOptions,
    ) -> Self {
        let shipped = checkpointer.shipped_lsn().await;
        let source = CheckpointerShip {
            checkpointer,
            wal,
            compaction,
        };
        Self::spawn(Arc::new(source), shipped, options)
    }

    /// Highest LSN confirmed in the object store.
    pub fn shipped_lsn(&self) -> Lsn {
        self.shared.status.borrow().shipped_lsn
    }

    /// Where shipping stands.
    pub fn status(&self) -> ShipStatus {
        self.shared.status.borrow().clone()
    }

    /// Asks for a ship now instead of at the next RPO tick.
    pub fn ship_now(&self) {
        self.shared.nudge.notify_one();
    }

    /// Waits until record `lsn` is in the object store (remote-durable) and returns the shipped
    /// LSN. Starts a ship right away rather than waiting for the RPO tick; a record not yet
    /// synced locally is shipped once it is. Fails with [`Error::NotShipped`] if an attempt that
    /// began after this call failed, [`Error::ShipperStopped`] if the shipper stopped, and
    /// [`Error::NotAppended`] for an LSN the WAL never appended.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future only stops the wait.
    pub async fn await_shipped(&self, lsn: Lsn) -> Result<Lsn, Error> {
        let mut rx = self.shared.status.subscribe();
        let began = {
            let s = rx.borrow_and_update();
            if s.shipped_lsn >= lsn {
                return Ok(s.shipped_lsn);
            }
            s.attempts
        };
        let last = self.shared.source.last_lsn();
        if lsn > last {
            return Err(Error::NotAppended { lsn, last });
        }
        self.shared.nudge.notify_one();
        loop {
            {
                let s = rx.borrow_and_update();
                if s.shipped_lsn >= lsn {
                    return Ok(s.shipped_lsn);
                }
                if s.failed_attempt > began
                    && let Some(source) = &s.failure
                {
                    return Err(Error::NotShipped {
                        lsn,
                        source: source.clone(),
                    });
                }
                if s.stopped {
                    return Err(Error::ShipperStopped);
                }
            }
            if rx.changed().await.is_err() {
                return Err(Error::ShipperStopped);
            }
        }
    }

    /// Stops the shipper after one last ship of everything synced; returns the shipped LSN, or
    /// the last attempt's error.
    pub async fn shutdown(mut self) -> Result<Lsn, Error> {
        self.shared.stop.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let s = self.shared.status.borrow().clone();
        match s.failure {
            Some(e) if s.consecutive_failures > 0 => Err(Error::NotShipped {
                lsn: self.shared.source.durable_lsn(),
                source: e,
            }),
            _ => Ok(s.shipped_lsn),
        }
    }
}

/// One ship attempt, with its outcome published.
async fn attempt(shared: &Shared) -> Result<(), Arc<Error>> {
    let mut number = 0;
    shared.status.send_modify(|s| {
        s.attempts += 1;
        number = s.attempts;
    });
    let result = shared.source.ship().await;
    let fenced = result.as_ref().err().is_some_and(Error::is_fenced);
    match result {
        Ok(lsn) => {
            shared.status.send_modify(|s| {
                s.shipped_lsn = s.shipped_lsn.max(lsn);
                s.consecutive_failures = 0;
            });
            Ok(())
        }
        Err(e) => {
            let e = Arc::new(e);
            tracing::warn!(error = %e, "wal ship failed");
            shared.status.send_modify(|s| {
                s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                s.last_error = Some(crate::error_chain(&e));
                s.failed_attempt = number;
                s.failure = Some(e.clone());
                s.stopped |= fenced;
            });
            Err(e)
        }
    }
}

async fn run(shared: Arc<Shared>, options: ShipperOptions) {
    let rpo = options.rpo.max(Duration::from_millis(1));
    let mut wait = rpo;
    let mut failures = 0u32;
    let mut last_compaction = Instant::now();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = shared.nudge.notified() => false,
            _ = shared.stop.notified() => true,
        };
        let shipped = shared.status.borrow().shipped_lsn;
        if shared.source.durable_lsn() > shipped || failures > 0 {
            match attempt(&shared).await {
                Ok(()) => failures = 0,
                Err(e) if e.is_fenced() => {
                    tracing::error!(error = %e, "wal shipper fenced off; stopping");
                    break;
                }
                Err(_) => failures = failures.saturating_add(1),
            }
        }
        if stopping {
            break;
        }
        if failures == 0
            && options.compact_every > Duration::ZERO
            && last_compaction.elapsed() >= options.compact_every
        {
            last_compaction = Instant::now();
            if let Err(e) = shared.source.compact().await {
                tracing::warn!(error = %e, "wal compaction failed");
                if e.is_fenced() {
                    break;
                }
            }
        }
        wait = if failures == 0 {
            rpo
        } else {
            rpo.saturating_mul(1 << failures.min(16))
                .min(options.max_backoff.max(rpo))
        };
    }
    shared.status.send_modify(|s| s.stopped = true);
}
