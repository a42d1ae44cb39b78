//! The optional loopback HTTP endpoint `finn run` serves: `GET /metrics` (Prometheus text
//! format), `GET /status` (the [`Status`](crate::status::Status) as JSON) and `GET /health`
//! (200 when healthy, 503 otherwise, with the report as JSON).
//!
//! A deliberately tiny HTTP/1.1 server on tokio: one request per connection, 8 KiB of request
//! head at most, a 5 s read timeout, no keep-alive, no TLS, no authentication. It binds only to
//! loopback addresses (metrics and status name keys, LSNs and bucket paths); put a reverse proxy
//! in front to expose it further.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::runtime::Finn;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The address is not a loopback address.
    #[error(
        "refusing to serve metrics on {addr}: only loopback addresses (127.0.0.1, ::1) are allowed"
    )]
    NotLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Binding failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running endpoint; dropping it stops it.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const MAX_HEAD: usize = 8 << 10;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

impl Endpoint {
    /// Serves `finn` on `addr` (a loopback address; port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, finn: Finn) -> Result<Endpoint, EndpointError> {
        if !addr.ip().is_loopback() {
            return Err(EndpointError::NotLoopback { addr });
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| EndpointError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EndpointError::Bind { addr, source })?;
        let finn = Arc::new(finn);
        let task = tokio::spawn(async move {
            loop {
                let (sock, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let finn = finn.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(sock, &finn).await {
                        tracing::debug!(error = %e, "metrics endpoint connection");
                    }
                });
            }
        });
        tracing::info!(%addr, "serving /metrics, /status and /health");
        Ok(Endpoint { addr, task })
    }

    /// The address served (with the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn serve(mut sock: TcpStream, finn: &Finn) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(READ_TIMEOUT, sock.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(&mut sock, 431, "text/plain", b"request head too large").await;
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" {
        return respond(&mut sock, 405, "text/plain", b"only GET").await;
    }
    match path {
        "/metrics" => {
            let text = finn.metrics_text();
            respond(
                &mut sock,
                200,
                crate::metrics::CONTENT_TYPE,
                text.as_bytes(),
            )
            .await
        }
        "/status" => {
            let body = serde_json::to_vec_pretty(&finn.status()).unwrap_or_default();
            respond(&mut sock, 200, "application/json", &body).await
        }
        "/health" => {
            let report = finn.health().await;
            let healthy = report.overall == finn_scheduler::Health::Healthy;
            let body =
                serde_json::to_vec_pretty(&crate::status::health_json(&report)).unwrap_or_default();
            let code = if healthy { 200 } else { 503 };
            respond(&mut sock, code, "application/json", &body).await
        }
        _ => {
            respond(
                &mut sock,
                404,
                "text/plain",
                b"try /metrics, /status or /health",
            )
            .await
        }
    }
}

async fn respond(
    sock: &mut TcpStream,
    code: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\ncache-control: no-store\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body).await?;
    sock.shutdown().await
}
