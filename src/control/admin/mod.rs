//! The admin interface: a plain-HTTP listener of its own (`[admin]`), never one of the
//! proxy's listeners and outside their admission limits. Its paths and answers: the
//! table in README.md "The admin interface" (its one home).
//!
//! Owns: binding, the accept loop (at most `MAX_CONNECTIONS` at once, each request
//! head within `HEADER_TIMEOUT`), the allow check (403 outside `allow`, following the
//! current generation), and dispatch. A new address takes a reload that rebinds.
//! Does not own: what the answers contain (scrape.rs, status.rs, reload.rs).

pub mod reload;
mod scrape;
mod status;

use crate::runtime::Runtime;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use reload::ReloadLog;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

pub use status::rfc3339;

/// Admin connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;
/// A request head must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

const PAGE: &str = include_str!("page.html");

/// A running admin listener.
#[derive(Debug)]
pub struct Admin {
    /// As configured, and as bound.
    pub configured: SocketAddr,
    pub local: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Admin {
    /// Binds `addr` (SO_REUSEADDR, like the proxy's listeners).
    pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
        crate::accept::listen::bind(addr, false)
    }

    /// Serves on `listener` until stopped or dropped; `/reload` answers from `reloads`.
    pub fn serve(
        configured: SocketAddr,
        listener: TcpListener,
        rt: Arc<Runtime>,
        reloads: Arc<ReloadLog>,
    ) -> Admin {
        let local = listener.local_addr().unwrap_or(configured);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, rt, reloads, rx));
        Admin {
            configured,
            local,
            stop,
            task,
        }
    }

    /// Stops accepting; requests in flight finish on their own.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    rt: Arc<Runtime>,
    reloads: Arc<ReloadLog>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("admin: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // dropped: too many admin connections
        };
        let rt = rt.clone();
        let reloads = reloads.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req| {
                let rt = rt.clone();
                let reloads = reloads.clone();
                async move { Ok::<_, Infallible>(route_request(&rt, &reloads, peer.ip(), &req)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, line: &str) -> Resp {
    respond(status, "text/plain; charset=utf-8", format!("{line}\n"))
}

/// Whether `ip` may use the admin interface under the current configuration.
pub fn allowed(rt: &Runtime, ip: IpAddr) -> bool {
    rt.current()
        .config
        .admin
        .allow
        .iter()
        .any(|c| c.contains(ip))
}

fn route_request<B>(rt: &Runtime, reloads: &ReloadLog, ip: IpAddr, req: &Request<B>) -> Resp {
    if !allowed(rt, ip) {
        return text(
            StatusCode::FORBIDDEN,
            "forbidden: this address is not in [admin] allow",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    const JSON: &str = "application/json";
    match req.uri().path() {
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            rt.metrics.encode(&scrape::derived(rt)),
        ),
        "/healthz" => text(StatusCode::OK, "ok"),
        "/readyz" if rt.is_ready() => text(StatusCode::OK, "ready"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or shutting down",
        ),
        "/backends" => respond(StatusCode::OK, JSON, status::backends(rt).to_string()),
        "/status.json" => respond(StatusCode::OK, JSON, status::status(rt).to_string()),
        "/reload" => respond(
            StatusCode::OK,
            JSON,
            reloads.to_json(rt.current().id).to_string(),
        ),
        "/" => respond(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /, /metrics, /healthz, /readyz, /backends, /status.json, /reload",
        ),
    }
}
