//! Active health checks: one task per checked backend, off the accept and relay paths.
//!
//! Owns: the checker tasks of one generation (`Checkers`), spreading a pool's probes
//! over its interval, and probing (`probe`: tcp, http or websocket, over TLS for a
//! `tls = true` pool); results go to `Backend::record_check`.
//! Does not own: the probe schedule (kept in each `Backend`), why a probe failed
//! (probe.rs, whose `label()` is the metric's `result`) or what a result does to the
//! backend (backend.rs).

use crate::backends::backend::Backend;
use crate::backends::balance::Pool;
use crate::backends::probe::ProbeError;
use crate::config::{Check, CheckKind, ProxyVersion};
use crate::metrics::{CheckLabels, Metrics};
use crate::tls::upstream::UpstreamTls;
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

/// The reason of the Close (code 1000) that ends a WebSocket check.
pub const CLOSE_REASON: &str = "wsgate health check";

/// One backend's `wsgate_backend_checks_total` series: `ok` made up front, each
/// failure's when it first happens.
struct Counts {
    family: Family<CheckLabels, Counter>,
    pool: String,
    backend: String,
    ok: Counter,
}

impl Counts {
    fn failed(&self, e: &ProbeError) {
        self.family
            .get_or_create(&CheckLabels {
                pool: self.pool.clone(),
                backend: self.backend.clone(),
                result: e.label().into(),
            })
            .inc();
    }
}

/// The checker tasks of one generation. The schedule lives in each `Backend`, so
/// when a reload replaces the checkers of a backend that stays, the new task takes
/// the next due probe and the old one stops after the probe it may be running: no
/// gap, no probe twice.
#[derive(Debug)]
pub struct Checkers {
    retire: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Checkers {
    /// Starts the checks of every backend that has one.
    pub fn spawn(pools: &[Arc<Pool>], metrics: &Metrics) -> Checkers {
        let (retire, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let now = Instant::now();
        for pool in pools {
            let n = pool.backends.len().max(1) as u32;
            for (i, (backend, conf)) in pool.backends.iter().zip(&pool.conf.backends).enumerate() {
                let Some(check) = &conf.check else { continue };
                // A new backend's first probe: the pool's probes spread over one interval.
                let first = now + check.interval.get() * i as u32 / n;
                let counts = Counts {
                    family: metrics.backend_checks.clone(),
                    pool: pool.name.clone(),
                    backend: conf.address.clone(),
                    ok: metrics.backend_checks.get_or_create_owned(&CheckLabels {
                        pool: pool.name.clone(),
                        backend: conf.address.clone(),
                        result: "ok".into(),
                    }),
                };
                tasks.push(tokio::spawn(run(
                    backend.clone(),
                    check.clone(),
                    pool.tls.clone(),
                    pool.conf.send_proxy_protocol,
                    first,
                    rx.clone(),
                    counts,
                )));
            }
        }
        Checkers { retire, tasks }
    }

    /// A reload replaced this generation: each task stops after its probe in flight.
    pub fn retire(&self) {
        self.retire.send_replace(true);
    }

    /// Shutdown: stop at once, probes in flight included.
    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Checkers {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Marks the claimed probe finished however its task ends (aborted included).
struct InFlight<'a>(&'a Backend);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.probe_done();
    }
}

async fn run(
    backend: Arc<Backend>,
    check: Check,
    tls: Option<Arc<UpstreamTls>>,
    proxy: Option<ProxyVersion>,
    first: Instant,
    mut retire: watch::Receiver<bool>,
    counts: Counts,
) {
    let interval = check.interval.get();
    loop {
        let due = backend.next_probe(first, interval);
        tokio::select! {
            _ = sleep_until(due) => {}
            _ = retire.wait_for(|r| *r) => return,
        }
        if *retire.borrow() || !backend.claim_probe(Instant::now(), interval) {
            continue; // another generation's checker has it, or we are retired
        }
        let _claimed = InFlight(&backend);
        let result = match timeout(
            check.timeout.get(),
            probe(&backend, &check, tls.as_deref(), proxy),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout(check.timeout.get())),
        };
        match result {
            Ok(()) => {
                counts.ok.inc();
            }
            Err(ref why) => {
                counts.failed(why);
                tracing::debug!(backend = %backend.addr, "health check failed: {}", crate::errors::ErrorChain(why));
            }
        };
        backend.record_check(result, check.rise, check.fall);
    }
}

/// One probe: tcp connects; http sends `GET path` and expects the status; websocket
/// makes a full upgrade, verifies the Accept, then closes cleanly (1000,
/// `CLOSE_REASON`). With `tls` (a `tls = true` pool) it talks TLS, verified like
/// the pool's sessions: a tcp check is then a connect and a TLS handshake, an http
/// or websocket check runs inside it. `Err` says why it failed. With
/// `proxy` (the pool's `send_proxy_protocol`) the probe starts with a LOCAL
/// header, as HAProxy's checks do when they go to the server's own port: a
/// backend that requires the header would refuse a probe without it.
pub async fn probe(
    backend: &Backend,
    check: &Check,
    tls: Option<&UpstreamTls>,
    proxy: Option<ProxyVersion>,
) -> Result<(), ProbeError> {
    let addr = backend.addr;
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(ProbeError::Connect)?;
    if let Some(v) = proxy {
        crate::accept::proxy_proto::write_header(&mut tcp, v, None)
            .await
            .map_err(ProbeError::ProxyHeader)?;
    }
    match tls {
        None => speak(tcp, addr, check).await,
        // Even a tcp check completes the (verified) handshake: that is what a session needs.
        Some(t) => {
            let s = t
                .connect(&backend.id.address, tcp)
                .await
                .map_err(ProbeError::Tls)?;
            speak(s, addr, check).await
        }
    }
}

/// The http or websocket part of a probe, over an open stream.
async fn speak<S>(mut stream: S, addr: SocketAddr, check: &Check) -> Result<(), ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let host = check.host.clone().unwrap_or_else(|| addr.to_string());
    match check.kind {
        CheckKind::Tcp => Ok(()),
        CheckKind::Http => {
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: wsgate-health\r\nConnection: close\r\n\r\n",
                check.path
            );
            stream
                .write_all(req.as_bytes())
                .await
                .map_err(ProbeError::Io)?;
            let status = read_status(&mut stream).await?;
            if status == check.expect_status {
                Ok(())
            } else {
                Err(ProbeError::BadStatus {
                    path: check.path.clone(),
                    status,
                    expected: check.expect_status,
                })
            }
        }
        CheckKind::Websocket => {
            let url = format!("ws://{host}{}", check.path);
            let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(r) => ProbeError::Not101 {
                        path: check.path.clone(),
                        status: r.status().as_u16(),
                    },
                    source => ProbeError::Upgrade {
                        path: check.path.clone(),
                        source,
                    },
                })?;
            // 1000 with a reason, so the backend logs a normal close, not 1005.
            let bye = tungstenite::protocol::CloseFrame {
                code: tungstenite::protocol::frame::coding::CloseCode::Normal,
                reason: CLOSE_REASON.into(),
            };
            ws.close(Some(bye)).await.map_err(ProbeError::Close)?;
            while let Some(msg) = ws.next().await {
                if msg.is_err() {
                    break;
                }
            }
            Ok(())
        }
    }
}

/// Reads the status code from an HTTP/1.x status line.
async fn read_status<S: AsyncRead + Unpin>(tcp: &mut S) -> Result<u16, ProbeError> {
    let mut line = Vec::with_capacity(64);
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() > 1024 || tcp.read(&mut b).await.map_err(ProbeError::Io)? == 0 {
            // What arrived, as far as it went (empty: the backend closed at once).
            let text = String::from_utf8_lossy(&line);
            return Err(ProbeError::BadStatusLine(text.trim_end().to_string()));
        }
        line.push(b[0]);
    }
    let text = String::from_utf8_lossy(&line);
    let mut parts = text.split(' ');
    match (parts.next(), parts.next().and_then(|c| c.parse().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code),
        _ => Err(ProbeError::BadStatusLine(text.trim_end().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn labels_are_few_and_fixed() {
        let io = || std::io::Error::other("x");
        let all = [
            ProbeError::Connect(io()),
            ProbeError::ProxyHeader(io()),
            ProbeError::Tls(io()),
            ProbeError::Timeout(Duration::from_secs(1)),
            ProbeError::Io(io()),
            ProbeError::BadStatusLine(String::new()),
            ProbeError::BadStatus {
                path: "/h".into(),
                status: 500,
                expected: 200,
            },
            ProbeError::Not101 {
                path: "/".into(),
                status: 404,
            },
            ProbeError::Upgrade {
                path: "/".into(),
                source: tungstenite::Error::ConnectionClosed,
            },
            ProbeError::Close(tungstenite::Error::ConnectionClosed),
        ];
        let labels: Vec<&str> = all.iter().map(ProbeError::label).collect();
        assert_eq!(labels, ProbeError::LABELS);
        let e = ProbeError::Tls(io());
        assert_eq!(e.to_string(), "TLS handshake failed");
        assert_eq!(
            crate::errors::ErrorChain(&e).to_string(),
            "TLS handshake failed: x"
        );
    }
}
