//! Active health checks: one task per checked backend, off the accept and relay paths.
//!
//! Owns: probing (tcp connect; http `GET path` expecting a status; websocket: a full
//! upgrade with the Accept verified, then a clean close) and spreading the probes of
//! a pool over its interval so they do not all fire at once. Results go to
//! `Backend::record_check`, which applies rise/fall and logs transitions.

use crate::backend::Backend;
use crate::balance::Pool;
use crate::config::{Check, CheckKind};
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};

/// Starts the checks of every pool that has `[pool.health]`.
pub fn spawn(pools: &[Pool], stop: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for pool in pools {
        let Some(checks) = &pool.checks else { continue };
        let n = pool.backends.len().max(1) as u32;
        for (i, (backend, check)) in pool.backends.iter().zip(checks).enumerate() {
            // Spread the pool's probes evenly over one interval.
            let offset = check.interval.get() * i as u32 / n;
            tasks.push(tokio::spawn(run(
                backend.clone(),
                check.clone(),
                offset,
                stop.clone(),
            )));
        }
    }
    tasks
}

async fn run(
    backend: Arc<Backend>,
    check: Check,
    offset: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = interval_at(Instant::now() + offset, check.interval.get());
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let probed = tokio::select! {
            r = timeout(check.timeout.get(), probe(backend.addr, &check)) => r,
            _ = stop.wait_for(|s| *s) => return, // shutting down: no probe outlives it
        };
        let result = match probed {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", check.timeout.get())),
        };
        match result {
            Ok(()) => backend.record_check(true, check.rise, check.fall, ""),
            Err(why) => {
                tracing::debug!(backend = %backend.addr, "health check failed: {why}");
                backend.record_check(false, check.rise, check.fall, &why);
            }
        }
    }
}

/// One probe; `Err` says why it failed.
pub async fn probe(addr: SocketAddr, check: &Check) -> Result<(), String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let host = check.host.clone().unwrap_or_else(|| addr.to_string());
    match check.kind {
        CheckKind::Tcp => Ok(()),
        CheckKind::Http => {
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: wsgate-health\r\nConnection: close\r\n\r\n",
                check.path
            );
            tcp.write_all(req.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let status = read_status(&mut tcp).await?;
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
            let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
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
async fn read_status(tcp: &mut TcpStream) -> Result<u16, String> {
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
