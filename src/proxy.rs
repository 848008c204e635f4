//! One upgrade request, from a parsed HTTP head to a running relay (or a refusal).
//!
//! Owns: the order of the steps (check the upgrade, route, check Origin, choose the
//! route's pool, pick a backend (its sticky cookie honoured), open it, answer the
//! client, run the relay) and the per-request log line. Does not own any single
//! step: each has its own module. The connection, and writing what `handle` decides,
//! are `http::serve`'s; plain HTTP requests are `http::forward`'s.

use crate::admission::Admitted;
use crate::answer::{Body, Refusal};
use crate::balance::{Lease, Pool};
use crate::conn::ConnInfo;
use crate::handshake::UpgradeRequest;
use crate::origin::OriginRefusal;
use crate::relay::{self, RelayConfig, StopSignal};
use crate::route::{Lookup, Route};
use crate::runtime::{Generation, Runtime};
use crate::session::Live;
use crate::upstream::{self, Answer, ClientInfo};
use bytes::Bytes;
use http_body_util::Either;
use hyper::header::{HeaderMap, SET_COOKIE};
use hyper::{Request, Response};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// One admitted client connection: who it is, the generation its current request
/// runs under, and the process state.
#[derive(Debug)]
pub struct Client {
    pub info: ConnInfo,
    pub generation: Arc<Generation>,
    pub rt: Arc<Runtime>,
    pub admitted: Arc<Admitted>,
}

/// What became of an upgrade request.
pub enum Handled {
    /// An answer for the client; the connection closes after it.
    Answer(Response<Body>),
    /// The backend switched protocols: write the 101 with these headers, then `run`.
    Switch(Box<Switch>),
}

/// An upgraded session, ready to run once the client has its 101.
pub struct Switch {
    /// The 101's headers: the backend's (end to end), and a sticky cookie if needed.
    pub headers: HeaderMap,
    client: Arc<Client>,
    lease: Lease,
    stream: TcpStream,
    pre: Bytes,
    cfg: RelayConfig,
    route: Arc<Route>,
    path: String,
    stop: StopSignal,
    live: Live,
}

impl Switch {
    /// Relays the session over the client's connection; `pre` holds the bytes the
    /// client sent after its request head. The connection's slot, per-IP place and
    /// open count (in `client`) last as long as the session.
    pub async fn run<C>(self, io: C, pre: Bytes)
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let Switch {
            client,
            lease,
            stream,
            pre: backend_pre,
            cfg,
            route,
            path,
            stop,
            live,
            ..
        } = self;
        let _live = live;
        let peer = client.info.peer;
        let started = Instant::now();
        let backend = lease.backend().addr;
        tracing::debug!(client = %peer, %backend, %path, "session open");
        let outcome = relay::run(io, pre, stream, backend_pre, &cfg, stop).await;
        tracing::info!(client = %peer, %backend, %path, route = route.index, ?outcome, secs = started.elapsed().as_secs_f64(), "session closed");
        drop(lease);
    }
}

/// Handles one upgrade request (a request with `Upgrade: websocket`).
pub async fn handle(req: &Request<()>, client: &Arc<Client>) -> Handled {
    let peer = client.info.peer;
    if crate::handshake::head_size(req) > client.generation.conn.max_header_bytes {
        return refuse(Refusal::HeaderTooLarge, &client.info, req);
    }
    let upgrade = match UpgradeRequest::parse(req) {
        Ok(u) => u,
        Err(r) => return refuse(r, &client.info, req),
    };
    let lookup = Lookup::new(&upgrade.host, &upgrade.path_and_query, req.headers());
    let Some(route) = client.generation.router.route(&lookup).cloned() else {
        return refuse(Refusal::NoRoute, &client.info, req);
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
        return refuse(r, &client.info, req);
    }
    let pool = route.pool_for(peer.ip(), req.headers());
    let sticky = pool
        .sticky_cookie()
        .and_then(|c| crate::cookie::get(req.headers(), c));
    let info = ClientInfo {
        ip: peer.ip(),
        tls: client.info.tls,
    };
    let (lease, answer) = match open_any(pool, &upgrade, req, info, sticky).await {
        Ok(v) => v,
        Err(r) => return refuse(r, &client.info, req),
    };
    let set_cookie = pool.sticky_set_cookie(lease.index(), sticky, client.info.tls);
    let (stream, pre, mut headers, extensions) = match answer {
        Answer::Refused(resp) => {
            tracing::info!(client = %peer, pool = %pool.name, backend = %lease.backend().addr, status = resp.status().as_u16(), "backend refused the upgrade");
            let (mut parts, body) = resp.into_parts();
            parts.headers = upstream::end_to_end_headers(&parts.headers);
            parts.headers.insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            if let Some(v) = set_cookie {
                parts.headers.append(SET_COOKIE, v);
            }
            return Handled::Answer(Response::from_parts(parts, Either::Right(body)));
        }
        Answer::Switched {
            stream,
            pre,
            headers,
            extensions,
        } => (stream, pre, headers, extensions),
    };
    if let Some(v) = set_cookie {
        headers.append(SET_COOKIE, v);
    }
    let cfg = RelayConfig {
        extensions,
        ..route.relay.clone()
    };
    // Boxed once here: the session task stays small while it runs.
    let stop = Box::pin(lease.backend().session_end());
    Handled::Switch(Box::new(Switch {
        headers,
        client: client.clone(),
        lease,
        stream,
        pre,
        cfg,
        path: upgrade.path().to_string(),
        route,
        stop,
        live: client.rt.sessions.enter(),
    }))
}

/// Picks backends and opens one. A failed connect or upgrade counts against that
/// backend (passive checks) and the next backend is tried, up to the pool's
/// `retries`, never the same one twice, all within `upstream_deadline`. A backend's
/// own non-101 answer is not a failure: it is the answer.
async fn open_any(
    pool: &Pool,
    upgrade: &UpgradeRequest,
    req: &Request<()>,
    client: ClientInfo,
    sticky: Option<&str>,
) -> Result<(Lease, Answer), Refusal> {
    let active_checks = pool.conf.active_checks;
    let mut tried = Vec::new();
    let mut settled = 0; // attempts whose outcome was recorded
    let mut last = None;
    let attempts = async {
        for _ in 0..=pool.conf.retries {
            let Some(lease) = pool.pick_for(client.ip, sticky, &tried) else {
                break;
            };
            tried.push(lease.index());
            let host = pool.conf.host_header.as_deref();
            let mut fwd = upstream::forwarded_request(upgrade, req.headers(), client, host);
            if let Some(c) = pool.sticky_cookie() {
                crate::cookie::remove(fwd.headers_mut(), c);
            }
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
        Http(..) | UpgradeTimeout(_) | NotWebSocket(_) => "backend did not upgrade",
        BadAccept(_) => "backend sent a wrong Sec-WebSocket-Accept",
        BadProtocol(..) => "backend chose a subprotocol that was not offered",
        BadExtension(..) => "backend chose an extension that was not offered",
    }
}

/// Logs the refusal (the path only: query strings carry tokens) and answers it.
fn refuse(r: Refusal, conn: &ConnInfo, req: &Request<()>) -> Handled {
    Handled::Answer(refusal(r, conn, req))
}

/// Logs a refusal of `req` (the path only: query strings carry tokens) and makes its answer.
pub fn refusal(r: Refusal, conn: &ConnInfo, req: &Request<()>) -> Response<Body> {
    tracing::info!(client = %conn.peer, listener = %conn.listener, status = r.status().as_u16(), path = req.uri().path(), "refused: {}", r.reason());
    r.response()
}
