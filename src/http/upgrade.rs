//! One upgrade request, from a parsed HTTP head to a running relay (or a refusal).
//!
//! Owns: the order of the steps (check the upgrade, route, check Origin, check the
//! token, choose the route's pool, pick a backend (its sticky cookie honoured), open
//! it, answer the client, run the relay) and the per-request log line. Does not own
//! any single step: each has its own module. The connection, and writing what
//! `handle` decides, are `http::serve`'s; plain HTTP requests are `http::forward`'s.

use super::conn::{ConnCtx, identity_headers};
use super::handshake::UpgradeRequest;
use crate::access;
use crate::backends::balance::{Failure, Lease, Pool};
use crate::backends::connect::{self, BackendStream, ClientInfo, UpgradeReply};
use crate::backends::error;
use crate::census::Live;
use crate::metrics::{BackendLabels, Ended, FailureLabels, Metrics, RouteLabels};
use crate::refusal::{Body, Refusal};
use crate::relay::frame::Extensions;
use crate::relay::{self, End, StopSignal};
use crate::route::auth::Grant;
use crate::route::origin::OriginRefusal;
use crate::route::{Lookup, Route};
use bytes::Bytes;
use http_body_util::Either;
use hyper::header::{HeaderMap, SET_COOKIE};
use hyper::{Request, Response};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// What became of an upgrade request.
pub enum Handled {
    /// An answer for the client; the connection closes after it.
    Respond(Response<Body>),
    /// The backend switched protocols: write the 101 with these headers, then `run`.
    Switch(Box<Switch>),
}

/// An upgraded session, ready to run once the client has its 101.
pub struct Switch {
    /// The 101's headers: the backend's (end to end), and a sticky cookie if needed.
    pub headers: HeaderMap,
    client: Arc<ConnCtx>,
    lease: Lease,
    stream: BackendStream,
    pre: Bytes,
    /// What the backend's 101 agreed (permessage-deflate...): the relay's frame rules
    /// follow it.
    extensions: Extensions,
    route: Arc<Route>,
    /// The pool the route chose for this client (weighted routes have several).
    pool: String,
    path: String,
    subprotocol: Option<String>,
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
            extensions,
            route,
            pool,
            path,
            subprotocol,
            stop,
            live,
            ..
        } = self;
        let peer = client.info.peer;
        let started = Instant::now();
        let backend = lease.backend();
        tracing::debug!(client = %peer, backend = %backend.addr, %path, "session open");
        let counted = client
            .rt
            .metrics
            .session_start(&route.name, &backend.id.address);
        let stats = counted.stats().clone();
        let client_end = End { io, pre };
        let cfg = &route.relay;
        // A forced stop (census) cuts the close short: the line below is still written.
        let forced = Some(client.rt.census.forced());
        // One call for either kind of backend stream (the relay is generic over it).
        macro_rules! relay_to {
            ($io:expr) => {
                relay::run_forcible(
                    client_end,
                    End {
                        io: $io,
                        pre: backend_pre,
                    },
                    cfg,
                    extensions,
                    stop,
                    forced,
                    stats,
                )
                .await
            };
        }
        let outcome = match stream {
            BackendStream::Plain(s) => relay_to!(s),
            BackendStream::Tls(s) => relay_to!(s),
        };
        let duration = started.elapsed();
        access::session(&access::Session {
            conn: &client.info,
            route: &route.name,
            pool: &pool,
            backend: &backend.id.address,
            path: &path,
            subprotocol: subprotocol.as_deref(),
            duration,
            stats: counted.stats(),
            outcome,
        });
        counted.end(&Ended { outcome, duration });
        drop(lease);
        // The connection is no longer open before the session stops being live, so
        // a count taken once no session is live finds only other connections.
        drop(client);
        drop(live);
    }
}

/// Handles one upgrade request (a request with `Upgrade: websocket`).
pub async fn handle(req: &Request<()>, client: &Arc<ConnCtx>) -> Handled {
    let peer = client.info.peer;
    if crate::http::handshake::head_size(req) > client.generation.conn.max_header_bytes {
        return refuse(Refusal::HeaderTooLarge, client, req, None);
    }
    let mut upgrade = match UpgradeRequest::parse(req) {
        Ok(u) => u,
        Err(r) => return refuse(r, client, req, None),
    };
    let lookup = Lookup::new(&upgrade.host, &upgrade.path_and_query, req.headers());
    let Some(route) = client.generation.router.route(&lookup).cloned() else {
        return refuse(Refusal::NoRoute, client, req, None);
    };
    let grant = match admit(req, &mut upgrade, &route) {
        Ok(g) => g,
        Err(r) => return refuse(r, client, req, Some(&route.name)),
    };
    let headers = identity_headers(req.headers(), client, grant.as_ref());
    let pool = route.pool_for(peer.ip(), req.headers());
    let sticky = pool
        .sticky_cookie()
        .and_then(|c| crate::backends::cookie::get(req.headers(), c));
    let info = ClientInfo {
        ip: peer.ip(),
        tls: client.info.tls,
        addrs: (peer, client.info.local),
    };
    let metrics = &client.rt.metrics;
    let (lease, answer) = match open_any(pool, &upgrade, &headers, info, sticky, metrics).await {
        Ok(v) => v,
        Err(r) => return refuse(r, client, req, Some(&route.name)),
    };
    let set_cookie = pool.sticky_set_cookie(lease.index(), sticky, client.info.tls);
    let (stream, pre, mut headers, extensions) = match answer {
        UpgradeReply::Refused(resp) => {
            return passed_on(
                resp,
                client,
                &route.name,
                upgrade.path(),
                &lease,
                set_cookie,
            );
        }
        UpgradeReply::Switched {
            stream,
            pre,
            headers,
            extensions,
        } => (stream, pre, headers, extensions),
    };
    if let Some(v) = set_cookie {
        headers.append(SET_COOKIE, v);
    }
    let subprotocol = headers
        .get(hyper::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Boxed once here: the session task stays small while it runs.
    let end = lease.backend().session_end();
    let end = client.rt.census.stop_signal(end);
    let stop: relay::StopSignal = match grant.and_then(|g| g.expires) {
        Some(at) => Box::pin(crate::route::auth::until_expiry(end, at)),
        None => Box::pin(end),
    };
    count_upgrade(metrics, Some(&route.name), 101);
    metrics
        .handshake_duration
        .get_or_create(&RouteLabels {
            route: route.name.to_string(),
        })
        .observe(client.info.accepted.elapsed().as_secs_f64());
    Handled::Switch(Box::new(Switch {
        headers,
        client: client.clone(),
        lease,
        stream,
        pre,
        extensions,
        pool: pool.name.clone(),
        path: upgrade.path().to_string(),
        subprotocol,
        route,
        stop,
        live: client.rt.census.enter(),
    }))
}

/// The route's own checks of an upgrade: its Origin policy, then its token (whose
/// subprotocol entry, if the token rode in one, is taken out: the backend never
/// sees it). Returns the token's grant.
fn admit(
    req: &Request<()>,
    upgrade: &mut UpgradeRequest,
    route: &Route,
) -> Result<Option<Grant>, Refusal> {
    let origin = req.headers().get(hyper::header::ORIGIN);
    if let Err(e) = route.origin.check(origin.map(|v| v.as_bytes())) {
        return Err(match e {
            OriginRefusal::Missing => Refusal::OriginMissing,
            OriginRefusal::NotAllowed(_) => Refusal::OriginNotAllowed,
        });
    }
    let grant = match &route.auth {
        None => None,
        Some(jwt) => Some(
            jwt.check(req.headers(), &upgrade.path_and_query)
                .map_err(|f| f.refusal())?,
        ),
    };
    if let Some(entry) = grant.as_ref().and_then(|g| g.protocol_entry.as_ref()) {
        upgrade.protocols.retain(|p| p != entry);
    }
    Ok(grant)
}

/// A backend's own answer other than 101, passed to the client as it is (end-to-end
/// headers only, `Connection: close`, and the sticky cookie if one was chosen);
/// counted and logged as a refusal by that backend.
fn passed_on(
    resp: Response<hyper::body::Incoming>,
    client: &ConnCtx,
    route: &str,
    path: &str,
    lease: &Lease,
    set_cookie: Option<hyper::header::HeaderValue>,
) -> Handled {
    let status = resp.status().as_u16();
    count_upgrade(&client.rt.metrics, Some(route), status);
    access::refused(&access::Refused {
        conn: &client.info,
        route: Some(route),
        path,
        status,
        reason: None,
        backend: Some(lease.backend().id.address.clone()),
    });
    let (mut parts, body) = resp.into_parts();
    parts.headers = connect::end_to_end_headers(&parts.headers);
    parts.headers.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    if let Some(v) = set_cookie {
        parts.headers.append(SET_COOKIE, v);
    }
    Handled::Respond(Response::from_parts(parts, Either::Right(body)))
}

/// Picks backends and opens one. A failed connect or upgrade counts against that
/// backend (passive checks) and the next backend is tried, up to the pool's
/// `retries`, never the same one twice, all within `upstream_deadline`. A backend's
/// own non-101 answer is not a failure: it is the answer. A connect that failed for
/// want of wsgate's own resources (`UpstreamError::Local`) counts against no
/// backend, is retried only as `error::local_retry` says, and ends in a 503.
async fn open_any(
    pool: &Pool,
    upgrade: &UpgradeRequest,
    headers: &HeaderMap,
    client: ClientInfo,
    sticky: Option<&str>,
    metrics: &Metrics,
) -> Result<(Lease, UpgradeReply), Refusal> {
    let labels = |b: &crate::backends::backend::Backend| BackendLabels {
        pool: pool.name.clone(),
        backend: b.id.address.clone(),
    };
    let failed = |b: &crate::backends::backend::Backend, reason: &str| {
        let BackendLabels { pool, backend } = labels(b);
        metrics
            .backend_failures
            .get_or_create(&FailureLabels {
                pool,
                backend,
                reason: reason.into(),
            })
            .inc();
    };
    let mut tried = Vec::new();
    let mut settled = 0; // attempts whose outcome was recorded
    let mut last = None;
    let mut local_retried = false;
    let attempts = async {
        for _ in 0..=pool.conf.retries {
            let Some(lease) = pool.pick_for(client.ip, sticky, &tried) else {
                break;
            };
            tried.push(lease.index());
            let host = pool.conf.host_header.as_deref();
            let mut fwd = connect::forwarded_request(upgrade, headers, client, host);
            if let Some(c) = pool.sticky_cookie() {
                crate::backends::cookie::remove(fwd.headers_mut(), c);
            }
            let connect_time = metrics
                .backend_connect
                .get_or_create_owned(&labels(lease.backend()));
            let local = &metrics.local_exhaustion;
            let opened = connect::open(
                lease.backend(),
                pool,
                client,
                fwd,
                upgrade,
                &connect_time,
                local,
            );
            match opened.await {
                Ok(answer) => {
                    lease.backend().record_success();
                    return Some((lease, answer));
                }
                Err(e) => {
                    settled += 1;
                    let local = e.local();
                    if local.is_none() {
                        tracing::warn!(pool = %pool.name, "{}", crate::errors::ErrorChain(&e));
                        failed(lease.backend(), e.reason());
                        pool.record_failure(&lease, Failure::of(&e));
                    }
                    last = Some(e);
                    if !error::local_retry(local, &mut local_retried) {
                        break;
                    }
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
                pool.record_cut_short(i);
            }
            Err(Refusal::GatewayTimeout)
        }
        Ok(None) => Err(match last {
            Some(e) if e.local().is_some() => {
                metrics.local_exhaustion.refused();
                Refusal::LocalExhaustion
            }
            Some(e) => Refusal::BadGateway(format!("bad gateway: {}", short(&e))),
            None => Refusal::NoBackend,
        }),
    }
}

/// The part of an upstream error a client may see (no addresses).
fn short(e: &crate::backends::error::UpstreamError) -> &'static str {
    use crate::backends::error::UpstreamError::*;
    match e {
        Connect(..) | ConnectTimeout(_) => "backend unreachable",
        Local { .. } => "wsgate is out of local resources",
        Tls(..) => "backend TLS handshake failed",
        Http(..) | UpgradeTimeout(_) | NotWebSocket(_) => "backend did not upgrade",
        BadAccept(_) => "backend sent a wrong Sec-WebSocket-Accept",
        BadProtocol(..) => "backend chose a subprotocol that was not offered",
        BadExtension(..) => "backend chose an extension that was not offered",
    }
}

/// Counts, logs (the path only: query strings carry tokens; for an Origin refused,
/// that Origin) and answers a refusal.
fn refuse(r: Refusal, client: &ConnCtx, req: &Request<()>, route: Option<&str>) -> Handled {
    let origin = match r {
        Refusal::OriginNotAllowed => req
            .headers()
            .get(hyper::header::ORIGIN)
            .map(|v| access::origin_for_log(v.as_bytes())),
        _ => None,
    };
    Handled::Respond(refusal_of(r, client, req.uri().path(), route, origin))
}

/// Counts a refusal of the request for `path` in the handshake metrics, writes its
/// access-log line (the path only: query strings carry tokens) and makes its answer.
pub fn refusal(r: Refusal, client: &ConnCtx, path: &str, route: Option<&str>) -> Response<Body> {
    refusal_of(r, client, path, route, None)
}

fn refusal_of(
    r: Refusal,
    client: &ConnCtx,
    path: &str,
    route: Option<&str>,
    origin: Option<String>,
) -> Response<Body> {
    let status = r.status().as_u16();
    count_upgrade(&client.rt.metrics, route, status);
    let line = access::Refused {
        conn: &client.info,
        route,
        path,
        status,
        reason: Some(r.reason()),
        backend: None,
    };
    access::refused_origin(&line, origin.as_deref());
    r.response()
}

fn count_upgrade(metrics: &Metrics, route: Option<&str>, status: u16) {
    metrics.count_upgrade(route, status);
}
