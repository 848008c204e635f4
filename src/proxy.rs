//! One request, from a parsed HTTP head to a running relay (or a refusal).
//!
//! Owns: the order of the steps (check the upgrade, route, check Origin, check the
//! token, pick a backend, open it, answer the client, start the relay) and the
//! per-request log line. Does not own any single step: each has its own module.

use crate::admission::Admitted;
use crate::answer::{Body, Refusal};
use crate::balance::{Lease, Pool};
use crate::conn::ConnInfo;
use crate::handshake::UpgradeRequest;
use crate::origin::OriginRefusal;
use crate::relay::{self, RelayConfig};
use crate::runtime::{Generation, Runtime};
use crate::upstream::{self, Answer, BackendStream, ClientInfo};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
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
        return refuse(Refusal::HeaderTooLarge, &client.info, &req);
    }
    let mut upgrade = match UpgradeRequest::parse(&req) {
        Ok(u) => u,
        Err(r) => return refuse(r, &client.info, &req),
    };
    let Some(route) = client
        .generation
        .router
        .route(&upgrade.host, upgrade.path())
        .cloned()
    else {
        return refuse(Refusal::NoRoute, &client.info, &req);
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
        return refuse(r, &client.info, &req);
    }
    let grant = match &route.auth {
        None => None,
        Some(jwt) => match jwt.check(req.headers(), &upgrade.path_and_query) {
            Ok(g) => Some(g),
            Err(f) => return refuse(f.refusal(), &client.info, &req),
        },
    };
    if let Some(entry) = grant.as_ref().and_then(|g| g.protocol_entry.as_ref()) {
        upgrade.protocols.retain(|p| p != entry); // the backend never sees it
    }
    let listener = client.generation.listener(&client.info.listener);
    let subject = listener
        .and_then(|l| l.client_subject_header.as_ref())
        .zip(client.info.client_subject.as_deref());
    let headers = crate::auth::backend_headers(
        req.headers(),
        &client.generation.identity_headers,
        grant.as_ref(),
        subject,
    );
    let pool = &route.pool;
    let info = ClientInfo {
        ip: peer.ip(),
        tls: client.info.tls,
    };
    let (lease, answer) = match open_any(pool, &upgrade, &headers, info).await {
        Ok(v) => v,
        Err(r) => return refuse(r, &client.info, &req),
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
        ..route.relay.clone()
    };
    let path = upgrade.path().to_string();
    // Boxed once here: the session task stays small while it waits for the upgrade.
    let end = lease.backend().session_end();
    let stop: relay::StopSignal = match grant.and_then(|g| g.expires) {
        Some(at) => Box::pin(crate::auth::until_expiry(end, at)),
        None => Box::pin(end),
    };
    let live = client.rt.sessions.enter();
    tokio::spawn(async move {
        let _live = live;
        let _client = client; // its slot, per-IP place and open count last as long as the session
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
        let (io, read_buf) = (parts.io.into_inner(), parts.read_buf);
        let outcome = match stream {
            BackendStream::Plain(s) => relay::run(io, read_buf, s, pre, &cfg, stop).await,
            BackendStream::Tls(s) => relay::run(io, read_buf, s, pre, &cfg, stop).await,
        };
        tracing::info!(client = %peer, %backend, %path, route = route.index, ?outcome, secs = started.elapsed().as_secs_f64(), "session closed");
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
    headers: &HeaderMap,
    client: ClientInfo,
) -> Result<(Lease, Answer), Refusal> {
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
            let fwd = upstream::forwarded_request(upgrade, headers, client, host);
            match upstream::open(lease.backend(), pool, fwd, upgrade).await {
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
    match tokio::time::timeout(pool.conf.upstream_deadline, attempts).await {
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
        Tls(..) => "backend TLS handshake failed",
        Http(..) | UpgradeTimeout(_) | NotWebSocket(_) => "backend did not upgrade",
        BadAccept(_) => "backend sent a wrong Sec-WebSocket-Accept",
        BadProtocol(..) => "backend chose a subprotocol that was not offered",
        BadExtension(..) => "backend chose an extension that was not offered",
    }
}

/// Logs the refusal (the path only: query strings carry tokens) and answers it.
fn refuse(r: Refusal, conn: &ConnInfo, req: &Request<Incoming>) -> Response<Body> {
    tracing::info!(client = %conn.peer, listener = %conn.listener, status = r.status().as_u16(), path = req.uri().path(), "refused: {}", r.reason());
    r.response()
}
