//! Active health checks: one task per checked backend, off the accept and relay paths.
//!
//! Owns: probing (tcp connect; http `GET path` expecting a status; websocket: a full
//! upgrade with the Accept verified, then a clean close), spreading the probes of a
//! pool over its interval so they do not all fire at once, and the checker tasks of
//! one generation (`Checkers`). The schedule lives in each `Backend`, so when a
//! reload replaces the checkers of a backend that stays, the new task takes the
//! next due probe and the old one stops after the probe it may be running: no gap,
//! no probe twice. Results go to `Backend::record_check` (rise/fall, logging).
//! A `tls = true` pool's probes talk TLS too, verified like its sessions: a tcp check
//! is then a connect and a TLS handshake, an http or websocket check runs inside it.

use crate::backends::backend::Backend;
use crate::backends::balance::Pool;
use crate::config::{Check, CheckKind, ProxyVersion};
use crate::metrics::{CheckLabels, Metrics};
use crate::tls::upstream::UpstreamTls;
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

/// The checker tasks of one generation.
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
                let counter = |result: &str| {
                    metrics.backend_checks.get_or_create_owned(&CheckLabels {
                        pool: pool.name.clone(),
                        backend: conf.address.clone(),
                        result: result.into(),
                    })
                };
                let counts = [counter("ok"), counter("failed")];
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
    [ok, failed]: [Counter; 2],
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
            Err(_) => Err(format!("no answer within {:?}", check.timeout.get())),
        };
        match result {
            Ok(()) => {
                ok.inc();
                backend.record_check(true, check.rise, check.fall, "")
            }
            Err(why) => {
                failed.inc();
                tracing::debug!(backend = %backend.addr, "health check failed: {why}");
                backend.record_check(false, check.rise, check.fall, &why);
            }
        }
    }
}

/// One probe (over TLS when `tls` is set); `Err` says why it failed. With
/// `proxy` (the pool's `send_proxy_protocol`) the probe starts with a LOCAL
/// header, as HAProxy's checks do when they go to the server's own port: a
/// backend that requires the header would refuse a probe without it.
pub async fn probe(
    backend: &Backend,
    check: &Check,
    tls: Option<&UpstreamTls>,
    proxy: Option<ProxyVersion>,
) -> Result<(), String> {
    let addr = backend.addr;
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if let Some(v) = proxy {
        crate::accept::proxy_proto::write_header(&mut tcp, v, None)
            .await
            .map_err(|e| format!("write PROXY header: {e}"))?;
    }
    match tls {
        None => speak(tcp, addr, check).await,
        // Even a tcp check completes the (verified) handshake: that is what a session needs.
        Some(t) => {
            let s = t
                .connect(&backend.id.address, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            speak(s, addr, check).await
        }
    }
}

/// The http or websocket part of a probe, over an open stream.
async fn speak<S>(mut stream: S, addr: SocketAddr, check: &Check) -> Result<(), String>
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
                .map_err(|e| format!("write: {e}"))?;
            let status = read_status(&mut stream).await?;
            if status == check.expect_status {
                Ok(())
            } else {
                Err(format!(
                    "GET {} answered {status}, expected {}",
                    check.path, check.expect_status
                ))
            }
        }
        CheckKind::Websocket => {
            let url = format!("ws://{host}{}", check.path);
            let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
                .await
                .map_err(|e| format!("upgrade to {}: {e}", check.path))?;
            ws.close(None).await.map_err(|e| format!("close: {e}"))?;
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
async fn read_status<S: AsyncRead + Unpin>(tcp: &mut S) -> Result<u16, String> {
    let mut line = Vec::with_capacity(64);
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() > 1024 || tcp.read(&mut b).await.map_err(|e| format!("read: {e}"))? == 0 {
            return Err("no HTTP status line".into());
        }
        line.push(b[0]);
    }
    let text = String::from_utf8_lossy(&line);
    let mut parts = text.split(' ');
    match (parts.next(), parts.next().and_then(|c| c.parse().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code),
        _ => Err(format!("bad status line {:?}", text.trim_end())),
    }
}
