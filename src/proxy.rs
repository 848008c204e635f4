//! One request, from a parsed HTTP head to a running relay (or a refusal).
//!
//! Owns: the order of the steps (check the upgrade, route, check Origin, pick a
//! backend, open it, answer the client, start the relay) and the per-request log
//! line. Does not own any single step: each lives in its own module.

use crate::admission::{Admission, Admitted};
use crate::balance::{Lease, Pool};
use crate::handshake::{Body, Refusal, UpgradeRequest};
use crate::listen::ConnSettings;
use crate::origin::OriginRefusal;
use crate::relay::{self, RelayConfig};
use crate::route::Router;
use crate::session::Sessions;
use crate::upstream::{self, Answer, ClientInfo};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Everything a request needs, built once from the config.
#[derive(Debug)]
pub struct Shared {
    pub router: Router,
    pub pools: Vec<Pool>,
    /// Relay settings per route (its limits), in route config order.
    pub route_relay: Vec<RelayConfig>,
    pub sessions: Sessions,
    pub admission: Arc<Admission>,
    /// One permit per client connection under `max_connections`.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Timeouts and sizes every client connection runs under (listen.rs).
    pub conn: ConnSettings,
}

/// Handles one request on a connection whose stream type is `IO`.
pub async fn handle<IO>(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    admitted: Arc<Admitted>,
) -> Response<Body>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if crate::handshake::head_size(&req) > shared.conn.max_header_bytes {
        return refuse(Refusal::HeaderTooLarge, peer, &req);
    }
    let upgrade = match UpgradeRequest::parse(&req) {
        Ok(u) => u,
        Err(r) => return refuse(r, peer, &req),
    };
    let Some(route) = shared.router.route(&upgrade.host, upgrade.path()) else {
        return refuse(Refusal::NoRoute, peer, &req);
    };
    if let Err(e) = route.origin.check(
        req.headers()
            .get(hyper::header::ORIGIN)
            .map(|v| v.as_bytes()),
    ) {
        return refuse(
            match e {
                OriginRefusal::Missing => Refusal::OriginMissing,
                OriginRefusal::NotAllowed(_) => Refusal::OriginNotAllowed,
            },
            peer,
            &req,
        );
    }
    let pool = &shared.pools[route.pool];
    let client = ClientInfo { ip: peer.ip(), tls };
    let (lease, answer) = match open_any(pool, &upgrade, &req, client).await {
        Ok(v) => v,
        Err(r) => return refuse(r, peer, &req),
    };
    let (stream, pre, headers, extensions) = match answer {
        Answer::Refused(resp) => {
            tracing::info!(client = %peer, pool = %pool.name, backend = %lease.backend().addr, status = resp.status().as_u16(), "backend refused the upgrade");
            let (mut parts, body) = resp.into_parts();
            parts.headers = upstream::end_to_end_headers(&parts.headers);
            parts.headers.insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            return Response::from_parts(parts, Either::Right(body));
        }
        Answer::Switched {
            stream,
            pre,
            headers,
            extensions,
        } => (stream, pre, headers, extensions),
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    let cfg = RelayConfig {
        extensions,
        ..shared.route_relay[route.index].clone()
    };
    let shared2 = shared.clone();
    let path = upgrade.path_and_query.clone();
    tokio::spawn(async move {
        let _live = shared2.sessions.enter();
        let _admitted = admitted;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(client = %peer, "client upgrade did not complete: {e}");
                return;
            }
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<IO>>() else {
            tracing::error!("upgraded stream has an unexpected type");
            return;
        };
        let started = Instant::now();
        let backend = lease.backend().addr;
        tracing::debug!(client = %peer, %backend, %path, "session open");
        let outcome = relay::run(
            parts.io.into_inner(),
            parts.read_buf,
            stream,
            pre,
            &cfg,
            shared2.sessions.going_away(),
        )
        .await;
        tracing::info!(client = %peer, %backend, %path, ?outcome, secs = started.elapsed().as_secs_f64(), "session closed");
        drop(lease);
    });

    let mut resp = Response::new(Either::Left(http_body_util::Full::default()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *resp.headers_mut() = headers;
    resp
}

/// Picks backends and opens one. A failed connect or upgrade counts against that
/// backend (passive checks) and the next backend is tried, up to the pool's
/// `retries`, never the same one twice, all within `upstream_deadline`. A backend's
/// own non-101 answer is not a failure: it is the answer.
async fn open_any(
    pool: &Pool,
    upgrade: &UpgradeRequest,
    req: &Request<Incoming>,
    client: ClientInfo,
) -> Result<(Lease, Answer), Refusal> {
    let active_checks = pool.checks.is_some();
    let mut tried = Vec::new();
    let mut settled = 0; // attempts whose outcome was recorded
    let mut last = None;
    let attempts = async {
        for _ in 0..=pool.retries {
            let Some(lease) = pool.pick(client.ip, &tried) else {
                break;
            };
            tried.push(lease.index());
            let host = pool.host_header.as_deref();
            let fwd = upstream::forwarded_request(upgrade, req.headers(), client, host);
            match upstream::open(lease.backend().addr, pool, fwd, upgrade).await {
                Ok(answer) => {
                    lease.backend().record_success();
                    return Some((lease, answer));
                }
                Err(e) => {
                    tracing::warn!(pool = %pool.name, "{e}");
                    lease.backend().record_failure(active_checks);
                    settled += 1;
                    last = Some(e);
                }
            }
        }
        None
    };
    match tokio::time::timeout(pool.upstream_deadline.get(), attempts).await {
        Ok(Some(ok)) => Ok(ok),
        Err(_) => {
            // The attempt cut short by the deadline counts against its backend too,
            // or a hung backend would never be marked down by passive checks.
            if let Some(&i) = tried.get(settled) {
                tracing::warn!(pool = %pool.name, backend = %pool.backends[i].addr, "no answer within upstream_deadline");
                pool.backends[i].record_failure(active_checks);
            }
            Err(Refusal::GatewayTimeout)
        }
        Ok(None) => Err(match last {
            Some(e) => Refusal::BadGateway(format!("bad gateway: {}", short(&e))),
            None => Refusal::NoBackend,
        }),
    }
}

/// The part of an upstream error a client may see (no addresses).
fn short(e: &upstream::UpstreamError) -> &'static str {
    use upstream::UpstreamError::*;
    match e {
        Connect(..) | ConnectTimeout(_) => "backend unreachable",
        Http(..) | UpgradeTimeout(_) | NotWebSocket(_) => "backend did not upgrade",
        BadAccept(_) => "backend sent a wrong Sec-WebSocket-Accept",
        BadProtocol(..) => "backend chose a subprotocol that was not offered",
        BadExtension(..) => "backend chose an extension that was not offered",
    }
}

fn refuse(r: Refusal, peer: SocketAddr, req: &Request<Incoming>) -> Response<Body> {
    tracing::info!(client = %peer, status = r.status().as_u16(), uri = %req.uri(), "refused: {}", r.reason());
    r.response()
}
