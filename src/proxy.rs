//! One request, from a parsed HTTP head to a running relay (or a refusal).
//!
//! Owns: the order of the steps (check the upgrade, route, check Origin, pick a
//! backend, open it, answer the client, start the relay) and the per-request log
//! line. Does not own any single step: each has its own module.

use crate::access;
use crate::admission::Admitted;
use crate::answer::{Body, Refusal};
use crate::balance::{Lease, Pool};
use crate::conn::ConnInfo;
use crate::handshake::UpgradeRequest;
use crate::metrics::{BackendL, Ended, FailureL, Metrics, RouteL};
use crate::origin::OriginRefusal;
use crate::relay::{self, RelayConfig};
use crate::runtime::{Generation, Runtime};
use crate::upstream::{self, Answer, ClientInfo};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// One admitted client connection: who it is, the generation it was accepted
/// under, and the process state.
#[derive(Debug)]
pub struct Client {
    pub info: ConnInfo,
    pub generation: Arc<Generation>,
    pub rt: Arc<Runtime>,
    pub admitted: Arc<Admitted>,
}

/// Handles one request on a connection whose stream type is `IO`.
pub async fn handle<IO>(mut req: Request<Incoming>, client: Arc<Client>) -> Response<Body>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = client.info.peer;
    if crate::handshake::head_size(&req) > client.generation.conn.max_header_bytes {
        return refuse(Refusal::HeaderTooLarge, &client, &req, None);
    }
    let upgrade = match UpgradeRequest::parse(&req) {
        Ok(u) => u,
        Err(r) => return refuse(r, &client, &req, None),
    };
    let Some(route) = client
        .generation
        .router
        .route(&upgrade.host, upgrade.path())
        .cloned()
    else {
        return refuse(Refusal::NoRoute, &client, &req, None);
    };
    if let Err(e) = route.origin.check(
        req.headers()
            .get(hyper::header::ORIGIN)
            .map(|v| v.as_bytes()),
    ) {
        let r = match e {
            OriginRefusal::Missing => Refusal::OriginMissing,
            OriginRefusal::NotAllowed(_) => Refusal::OriginNotAllowed,
        };
        return refuse(r, &client, &req, Some(&route.name));
    }
    let pool = &route.pool;
    let info = ClientInfo {
        ip: peer.ip(),
        tls: client.info.tls,
        addrs: (peer, client.info.local),
    };
    let metrics = &client.rt.metrics;
    let (lease, answer) = match open_any(pool, &upgrade, &req, info, metrics).await {
        Ok(v) => v,
        Err(r) => return refuse(r, &client, &req, Some(&route.name)),
    };
    let (stream, pre, headers, extensions) = match answer {
        Answer::Refused(resp) => {
            let status = resp.status().as_u16();
            count_upgrade(metrics, Some(&route.name), status);
            access::refused(&access::Refused {
                conn: &client.info,
                route: Some(&route.name),
                path: upgrade.path(),
                status,
                reason: None,
                backend: Some(lease.backend().id.address.clone()),
            });
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
        ..route.relay.clone()
    };
    let path = upgrade.path().to_string();
    let subprotocol = headers
        .get(hyper::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Boxed once here: the session task stays small while it waits for the upgrade.
    let stop = Box::pin(lease.backend().session_end());
    let live = client.rt.sessions.enter();
    count_upgrade(metrics, Some(&route.name), 101);
    metrics
        .handshake_duration
        .get_or_create(&RouteL {
            route: route.name.to_string(),
        })
        .observe(client.info.accepted.elapsed().as_secs_f64());
    tokio::spawn(async move {
        let _live = live;
        let client = client; // its slot, per-IP place and open count last as long as the session
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
        let backend = lease.backend();
        tracing::debug!(client = %peer, backend = %backend.addr, %path, "session open");
        let counted = client
            .rt
            .metrics
            .session_start(&route.name, &backend.id.address);
        let outcome = relay::run(
            parts.io.into_inner(),
            parts.read_buf,
            stream,
            pre,
            &cfg,
            stop,
            counted.stats().clone(),
        )
        .await;
        let duration = started.elapsed();
        access::session(&access::Session {
            conn: &client.info,
            route: &route.name,
            pool: &route.pool.name,
            backend: &backend.id.address,
            path: &path,
            subprotocol: subprotocol.as_deref(),
            duration,
            stats: counted.stats(),
            outcome,
        });
        counted.end(&Ended { outcome, duration });
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
    metrics: &Metrics,
) -> Result<(Lease, Answer), Refusal> {
    let labels = |b: &crate::backend::Backend| BackendL {
        pool: pool.name.clone(),
        backend: b.id.address.clone(),
    };
    let failed = |b: &crate::backend::Backend, reason: &str| {
        let BackendL { pool, backend } = labels(b);
        metrics
            .backend_failures
            .get_or_create(&FailureL {
                pool,
                backend,
                reason: reason.into(),
            })
            .inc();
    };
    let active_checks = pool.conf.active_checks;
    let mut tried = Vec::new();
    let mut settled = 0; // attempts whose outcome was recorded
    let mut last = None;
    let attempts = async {
        for _ in 0..=pool.conf.retries {
            let Some(lease) = pool.pick(client.ip, &tried) else {
                break;
            };
            tried.push(lease.index());
            let host = pool.conf.host_header.as_deref();
            let fwd = upstream::forwarded_request(upgrade, req.headers(), client, host);
            let connect_time = metrics
                .backend_connect
                .get_or_create_owned(&labels(lease.backend()));
            match upstream::open(
                lease.backend().addr,
                pool,
                client,
                fwd,
                upgrade,
                &connect_time,
            )
            .await
            {
                Ok(answer) => {
                    lease.backend().record_success();
                    return Some((lease, answer));
                }
                Err(e) => {
                    tracing::warn!(pool = %pool.name, "{e}");
                    failed(lease.backend(), e.reason());
                    lease.backend().record_failure(active_checks);
                    settled += 1;
                    last = Some(e);
                }
            }
        }
        None
    };
    match tokio::time::timeout(pool.conf.upstream_deadline, attempts).await {
        Ok(Some(ok)) => Ok(ok),
        Err(_) => {
            // The attempt cut short by the deadline counts against its backend too,
            // or a hung backend would never be marked down by passive checks.
            if let Some(&i) = tried.get(settled) {
                tracing::warn!(pool = %pool.name, backend = %pool.backends[i].addr, "no answer within upstream_deadline");
                failed(&pool.backends[i], "deadline");
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

/// Counts and logs the refusal (the path only: query strings carry tokens) and
/// answers it.
fn refuse(
    r: Refusal,
    client: &Client,
    req: &Request<Incoming>,
    route: Option<&str>,
) -> Response<Body> {
    let status = r.status().as_u16();
    let metrics = &client.rt.metrics;
    count_upgrade(metrics, route, status);
    access::refused(&access::Refused {
        conn: &client.info,
        route,
        path: req.uri().path(),
        status,
        reason: Some(r.reason()),
        backend: None,
    });
    r.response()
}

fn count_upgrade(metrics: &Metrics, route: Option<&str>, status: u16) {
    metrics.count_upgrade(route, status);
}
