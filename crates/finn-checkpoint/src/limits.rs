//! Request-cost discipline: how many uploads run at once, how fast they send, and how many
//! requests of each kind a [`Remote`](crate::Remote) made.
//!
//! Object stores bill per request (S3: a LIST or PUT costs about ten GETs) and some cap
//! concurrency (Cloudflare R2 answers more than a few concurrent uploads to one bucket with
//! errors). An [`UploadLimits`] shared by every handle on a store bounds concurrent uploads and
//! their bandwidth; [`UploadLimits::for_endpoint`] knows the providers' limits.
//! [`RequestCounts`] is what an operator looks at to find the request that dominates the bill.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::RemoteOp;

/// Concurrent uploads Cloudflare R2 tolerates to one bucket before it starts failing them.
pub const R2_MAX_CONCURRENT_UPLOADS: usize = 2;

/// Limits on uploads (single puts, and each part of a multipart upload). Shared by every clone
/// and [`child`](crate::Remote::child) of a remote handle.
#[derive(Debug, Default)]
pub struct UploadLimits {
    concurrency: Option<(usize, Semaphore)>,
    bandwidth: Option<Bandwidth>,
}

#[derive(Debug)]
struct Bandwidth {
    bytes_per_sec: u64,
    /// Theoretical arrival time of the next byte (a GCRA virtual clock): sending `n` bytes moves
    /// it `n / rate` forward, and a sender waits until it is less than one second ahead of now.
    tat: Mutex<Option<Instant>>,
}

/// A held upload slot; dropping it frees the slot.
#[derive(Debug)]
pub struct UploadPermit<'a> {
    _permit: Option<SemaphorePermit<'a>>,
}

impl UploadLimits {
    /// No limits.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// At most `n` uploads at once (at least 1).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        let n = n.max(1);
        self.concurrency = Some((n, Semaphore::new(n)));
        self
    }

    /// At most `bytes_per_sec` payload bytes per second on average, with bursts of up to one
    /// second's worth (at least 1 byte/s).
    pub fn bandwidth(mut self, bytes_per_sec: u64) -> Self {
        self.bandwidth = Some(Bandwidth {
            bytes_per_sec: bytes_per_sec.max(1),
            tat: Mutex::new(None),
        });
        self
    }

    /// The limits a provider needs, recognised by its endpoint (or bucket URL): at most
    /// [`R2_MAX_CONCURRENT_UPLOADS`] concurrent uploads for Cloudflare R2, none otherwise.
    pub fn for_endpoint(endpoint: &str) -> Self {
        if endpoint.contains(".r2.cloudflarestorage.com") || endpoint.contains(".r2.dev") {
            Self::default().max_concurrent(R2_MAX_CONCURRENT_UPLOADS)
        } else {
            Self::default()
        }
    }

    /// The concurrency limit, if any.
    pub fn concurrency_limit(&self) -> Option<usize> {
        self.concurrency.as_ref().map(|(n, _)| *n)
    }

    /// The bandwidth limit in bytes per second, if any.
    pub fn bandwidth_limit(&self) -> Option<u64> {
        self.bandwidth.as_ref().map(|b| b.bytes_per_sec)
    }

    /// Waits for an upload slot and for the bandwidth to send `bytes`.
    pub async fn acquire(&self, bytes: u64) -> UploadPermit<'_> {
        let permit = match &self.concurrency {
            // The semaphore is never closed, so acquire cannot fail; without a permit the upload
            // still runs (an unlimited upload beats a lost one).
            Some((_, s)) => s.acquire().await.ok(),
            None => None,
        };
        if let Some(bw) = &self.bandwidth {
            let wait = bw.reserve(bytes, Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        UploadPermit { _permit: permit }
    }
}

impl Bandwidth {
    /// Reserves `bytes` at `now`; returns how long the sender must wait first.
    fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let start = tat.map_or(now, |t| t.max(now));
        let next = start + cost;
        *tat = Some(next);
        next.saturating_duration_since(now + Duration::from_secs(1))
    }
}

/// Requests made through a remote handle (and every clone and child), by kind, since it was
/// created. Counted whether they succeeded or not.
#[derive(Debug, Default)]
pub struct RequestStats {
    counts: [AtomicU64; 6],
    failures: AtomicU64,
    bytes_sent: AtomicU64,
}

fn slot(op: RemoteOp) -> usize {
    match op {
        RemoteOp::Put => 0,
        RemoteOp::Multipart => 1,
        RemoteOp::Get => 2,
        RemoteOp::Head => 3,
        RemoteOp::List => 4,
        RemoteOp::Delete => 5,
    }
}

impl RequestStats {
    pub(crate) fn record(&self, op: RemoteOp) {
        self.counts[slot(op)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A snapshot of the counters.
    pub fn snapshot(&self) -> RequestCounts {
        let c = |op| self.counts[slot(op)].load(Ordering::Relaxed);
        RequestCounts {
            put: c(RemoteOp::Put),
            multipart: c(RemoteOp::Multipart),
            get: c(RemoteOp::Get),
            head: c(RemoteOp::Head),
            list: c(RemoteOp::List),
            delete: c(RemoteOp::Delete),
            failures: self.failures.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
        }
    }
}

/// Requests by kind (see [`Remote::requests`](crate::Remote::requests)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RequestCounts {
    /// Single-request uploads (including create-if-absent).
    pub put: u64,
    /// Multipart upload requests (start, each part, completion, abort).
    pub multipart: u64,
    /// Downloads.
    pub get: u64,
    /// Metadata requests.
    pub head: u64,
    /// Listings (one per listing call; a provider may page it into several requests).
    pub list: u64,
    /// Deletions.
    pub delete: u64,
    /// Calls that failed (timeouts, errors, open circuit), of any kind.
    pub failures: u64,
    /// Payload bytes uploaded.
    pub bytes_sent: u64,
}

impl RequestCounts {
    /// The count of one kind.
    pub fn get(&self, op: RemoteOp) -> u64 {
        match op {
            RemoteOp::Put => self.put,
            RemoteOp::Multipart => self.multipart,
            RemoteOp::Get => self.get,
            RemoteOp::Head => self.head,
            RemoteOp::List => self.list,
            RemoteOp::Delete => self.delete,
        }
    }

    /// Every kind with its metric label, in a fixed order.
    pub fn by_op(&self) -> [(&'static str, u64); 6] {
        [
            ("put", self.put),
            ("multipart", self.multipart),
            ("get", self.get),
            ("head", self.head),
            ("list", self.list),
            ("delete", self.delete),
        ]
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.by_op().iter().map(|(_, n)| n).sum()
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            put: self.put.saturating_sub(earlier.put),
            multipart: self.multipart.saturating_sub(earlier.multipart),
            get: self.get.saturating_sub(earlier.get),
            head: self.head.saturating_sub(earlier.head),
            list: self.list.saturating_sub(earlier.list),
            delete: self.delete.saturating_sub(earlier.delete),
            failures: self.failures.saturating_sub(earlier.failures),
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_allows_one_second_burst_then_paces() {
        let bw = Bandwidth {
            bytes_per_sec: 1000,
            tat: Mutex::new(None),
        };
        let t0 = Instant::now();
        assert_eq!(bw.reserve(1000, t0), Duration::ZERO, "one second of burst");
        assert_eq!(bw.reserve(500, t0), Duration::from_millis(500));
        // Later, the clock has caught up: no wait.
        assert_eq!(bw.reserve(100, t0 + Duration::from_secs(5)), Duration::ZERO);
    }

    #[test]
    fn provider_limits() {
        let r2 = UploadLimits::for_endpoint("https://acct.r2.cloudflarestorage.com");
        assert_eq!(r2.concurrency_limit(), Some(R2_MAX_CONCURRENT_UPLOADS));
        assert_eq!(
            UploadLimits::for_endpoint("https://s3.amazonaws.com").concurrency_limit(),
            None
        );
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let limits = std::sync::Arc::new(UploadLimits::default().max_concurrent(2));
        let running = std::sync::Arc::new(AtomicU64::new(0));
        let peak = std::sync::Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (limits, running, peak) = (limits.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    let _p = limits.acquire(10).await;
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }
}
