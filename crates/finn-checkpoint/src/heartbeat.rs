//! A dead man's switch: a URL pinged only after a *verified* sync, so silence means trouble.
//!
//! Monitoring services (healthchecks.io, Cronitor, Better Stack, a Prometheus blackbox probe)
//! alert when a URL stops being requested. A [`Heartbeat`] requests it (HTTP GET) only when the
//! caller says the last sync succeeded *and* the last validation of the remote found nothing
//! wrong, at most once per [`Heartbeat::min_interval`]: a writer that keeps "succeeding" while
//! the bucket silently loses objects stops the pings just like a dead one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a ping failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeartbeatError {
    /// The URL is not an absolute `http` or `https` URL.
    #[error("heartbeat url {url:?} is not an http(s) url")]
    InvalidUrl {
        /// The URL given.
        url: String,
    },
    /// The request failed (connection, timeout, TLS).
    #[error("heartbeat request to {url} failed")]
    Request {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("heartbeat url {url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
}

/// A heartbeat URL with its rate limit; see the [module docs](self).
#[derive(Debug)]
pub struct Heartbeat {
    url: String,
    client: reqwest::Client,
    min_interval: Duration,
    last: Mutex<Option<Instant>>,
}

/// What [`Heartbeat::beat`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beat {
    /// The URL was requested and answered with a success status.
    Sent,
    /// Not sent: the last ping was less than the minimum interval ago.
    TooSoon,
    /// Not sent: the sync or the validation was not good.
    Withheld,
}

impl Heartbeat {
    /// A heartbeat to `url`, at most once a minute, each request timing out after 10 s.
    pub fn new(url: &str) -> Result<Self, HeartbeatError> {
        let parsed = url::Url::parse(url).map_err(|_| HeartbeatError::InvalidUrl {
            url: url.to_owned(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(HeartbeatError::InvalidUrl {
                url: url.to_owned(),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| HeartbeatError::Request {
                url: url.to_owned(),
                source,
            })?;
        Ok(Self {
            url: url.to_owned(),
            client,
            min_interval: Duration::from_secs(60),
            last: Mutex::new(None),
        })
    }

    /// Sets the minimum interval between pings.
    pub fn min_interval(mut self, d: Duration) -> Self {
        self.min_interval = d;
        self
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Pings if `verified` (the sync succeeded and the remote validated) and the minimum
    /// interval has passed.
    pub async fn beat(&self, verified: bool) -> Result<Beat, HeartbeatError> {
        if !verified {
            return Ok(Beat::Withheld);
        }
        {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.min_interval) {
                return Ok(Beat::TooSoon);
            }
        }
        let response =
            self.client
                .get(&self.url)
                .send()
                .await
                .map_err(|source| HeartbeatError::Request {
                    url: self.url.clone(),
                    source,
                })?;
        let status = response.status();
        if !status.is_success() {
            return Err(HeartbeatError::Status {
                url: self.url.clone(),
                status: status.as_u16(),
            });
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        Ok(Beat::Sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server answering every request with `status`, counting requests.
    async fn server(status: u16) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    if got.starts_with(b"GET /ping/abc ") {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        (format!("http://{addr}/ping/abc"), hits)
    }

    #[tokio::test]
    async fn pings_only_when_verified_and_not_too_often() {
        let (url, hits) = server(200).await;
        let hb = Heartbeat::new(&url)
            .unwrap()
            .min_interval(Duration::from_secs(3600));
        assert_eq!(hb.beat(false).await.unwrap(), Beat::Withheld);
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        assert_eq!(hb.beat(true).await.unwrap(), Beat::Sent);
        assert_eq!(hb.beat(true).await.unwrap(), Beat::TooSoon);
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        let (url, _) = server(500).await;
        let hb = Heartbeat::new(&url).unwrap();
        assert!(matches!(
            hb.beat(true).await,
            Err(HeartbeatError::Status { status: 500, .. })
        ));
        assert!(matches!(
            Heartbeat::new("ftp://x/y"),
            Err(HeartbeatError::InvalidUrl { .. })
        ));
    }
}
