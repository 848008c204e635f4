//! One plain HTTP request on a route with `http = "proxy"`: to a backend of the
//! route's pool and back; a small request body read whole first, a large one and
//! the response streamed.
//!
//! Owns: the checks before a backend is involved (`check`), `Expect: 100-continue`,
//! reading the body ahead before a backend is chosen (`ahead`),
//! the forwarded request (`outgoing`), reusing a backend's idle connection or opening
//! one, the response-head wait (`await_head`), retries (`exchange`), the sticky
//! `Set-Cookie`, giving the connection back, and whether the client's may be kept.
//! Does not own: decoding the body (body.rs), framing the response (write.rs), or the
//! connection loop (serve.rs).

use super::body::{self, BodyError, ReqBody};
use super::conn::{
    Conn, ConnCtx, identity_headers, reply_for, respond_and_close, respond_and_close_on, single,
};
use super::head::{Framing, Head};
use super::idle::Sender;
use crate::backends::balance::{Failure, Lease, Pool};
use crate::backends::connect::{self, ClientInfo};
use crate::refusal::Refusal;
use crate::route::Route;
use crate::route::auth::Grant;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, Uri, Version};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};

/// A request to send again if the first try fails: its method, target and headers.
struct Outgoing {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    /// GET or HEAD without a body: may be sent again after it went out.
    idempotent: bool,
}

impl Outgoing {
    fn request(&self, body: ReqBody) -> Request<ReqBody> {
        let mut r = Request::new(body);
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = Version::HTTP_11;
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// The backend's response head, and what to give back when its body is done.
struct Exchange {
    resp: Response<Incoming>,
    sender: Sender,
    lease: Lease,
}

/// What the connection does after a proxied request (the connection loop maps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// The exchange ended cleanly: read the next request.
    KeepAlive,
    /// Close now (the client or the backend asked, or the client is gone).
    Close,
    /// Close after draining what the client may still send (its body was not read).
    Linger,
}

/// Proxies `head` (whose body, if any, is still on the connection) to `route`.
pub async fn forward<IO>(
    c: &mut Conn<IO>,
    head: Head,
    route: Arc<Route>,
    client: &Arc<ConnCtx>,
) -> Forwarded
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let Head { req, framing } = head;
    let info = &client.info;
    let reply = reply_for(&req, false);
    let (host, grant) = match check(&req, framing, &route) {
        Ok(v) => v,
        Err(r) => return refuse(c, r, client, &route, &req, started).await,
    };
    let pool = route.pool_for(info.peer.ip(), req.headers()).clone();
    let sticky = pool
        .sticky_cookie()
        .and_then(|n| crate::backends::cookie::get(req.headers(), n))
        .map(str::to_string);
    let out = outgoing(&req, framing, &host, grant.as_ref(), &pool, client);
    if framing != Framing::Empty
        && req.version() == Version::HTTP_11
        && crate::http::handshake::has_token(req.headers(), &header::EXPECT, "100-continue")
        && c.wr
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return Forwarded::Close;
    }
    let mut reader = body_reader(framing, &route, client);
    let (tx, reqbody) = match ahead(c, &mut reader, &route).await {
        Ok(v) => v,
        Err(BodyError::ClientGone) => return Forwarded::Close,
        Err(e) => return refuse(c, body_refusal(e), client, &route, &req, started).await,
    };
    let (done_tx, done_rx) = watch::channel(tx.is_none());
    let Conn { rd, wr, buf } = c;
    let feed = async {
        match tx {
            Some((tx, first)) => body::feed(rd, buf, &mut reader, first, tx).await,
            None => Ok(reader.total()),
        }
    };
    let to = To {
        addrs: (info.peer, info.local),
        sticky: sticky.as_deref(),
        local: &client.rt.metrics.local_exhaustion,
    };
    let exchange = exchange(&pool, &out, reqbody, done_rx, to);
    tokio::pin!(feed);
    let mut fed: Option<Result<u64, BodyError>> = None;
    let got = exchange_while_feeding(exchange, feed.as_mut(), &mut fed, &done_tx).await;
    let ex = match got {
        Ok(ex) => ex,
        Err(_) if fed == Some(Err(BodyError::ClientGone)) => return Forwarded::Close,
        Err(r) => {
            let body = fed.and_then(Result::ok);
            logged(client, &route, &req, By::Wsgate(&r), body, started);
            respond_and_close_on(wr, r.response(), reply).await;
            return Forwarded::Linger;
        }
    };
    let Exchange {
        resp,
        sender,
        lease,
    } = ex;
    let status = resp.status();
    let (mut parts, resp_body) = resp.into_parts();
    parts.headers = connect::end_to_end_headers(&parts.headers);
    if let Some(v) = pool.sticky_set_cookie(lease.index(), sticky.as_deref(), info.tls) {
        parts.headers.append(header::SET_COOKIE, v);
    }
    let closing = *client.rt.census.closing().borrow();
    let reply = super::write::Reply {
        close: reply.close || closing,
        ..reply
    };
    let respond = super::write::write_response(
        wr,
        Response::from_parts(parts, resp_body),
        reply,
        Some(pool.conf.response_timeout),
    );
    let written = write_while_feeding(respond, feed, &mut fed, &done_tx).await;
    let by = By::Backend(status.as_u16(), &lease.backend().id.address);
    logged(client, &route, &req, by, fed.and_then(Result::ok), started);
    let body_done = matches!(fed, Some(Ok(_))) || framing == Framing::Empty;
    match written {
        Ok(close) if body_done => {
            if pool.conf.send_proxy_protocol.is_none() {
                give_back(sender, lease);
            }
            if close {
                Forwarded::Close
            } else {
                Forwarded::KeepAlive
            }
        }
        // The response is complete but the client's body is not (the backend answered
        // early, or stopped reading it): the connection cannot be read in step any
        // more, and the client may still be sending.
        Ok(_) => Forwarded::Linger,
        Err(_) => Forwarded::Close,
    }
}

/// The checks a plain request passes before any backend is chosen: one Host (none
/// only on HTTP/1.0), a declared body within the route's limit, and the route's
/// token, as for upgrades. Returns the Host and the token's grant.
fn check(
    req: &Request<()>,
    framing: Framing,
    route: &Route,
) -> Result<(String, Option<Grant>), Refusal> {
    let host = match single(req.headers(), &header::HOST) {
        Some(h) => h.to_string(),
        None if req.version() == Version::HTTP_10 && !req.headers().contains_key(header::HOST) => {
            String::new()
        }
        None => return Err(Refusal::MissingHost),
    };
    let max = route.max_request_body_bytes;
    if let Framing::Length(n) = framing
        && max > 0
        && n > max
    {
        return Err(Refusal::BodyTooLarge);
    }
    let grant = match &route.auth {
        None => None,
        Some(jwt) => {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            Some(jwt.check(req.headers(), target).map_err(|f| f.refusal())?)
        }
    };
    Ok((host, grant))
}

/// The request as the backend gets it: identity headers (claims, client subject)
/// never the client's own, X-Forwarded-* set, `Expect` and the sticky cookie removed.
fn outgoing(
    req: &Request<()>,
    framing: Framing,
    host: &str,
    grant: Option<&Grant>,
    pool: &Pool,
    client: &ConnCtx,
) -> Outgoing {
    let info = &client.info;
    let identity = identity_headers(req.headers(), client, grant);
    let mut headers = connect::forwarded_headers(
        &identity,
        host,
        ClientInfo {
            ip: info.peer.ip(),
            tls: info.tls,
            addrs: (info.peer, info.local),
        },
        pool.conf.host_header.as_deref(),
    );
    headers.remove(header::EXPECT);
    if let Some(name) = pool.sticky_cookie() {
        crate::backends::cookie::remove(&mut headers, name);
    }
    Outgoing {
        method: req.method().clone(),
        uri: req.uri().clone(),
        headers,
        idempotent: framing == Framing::Empty
            && (req.method() == Method::GET || req.method() == Method::HEAD),
    }
}

/// The reader of the request's body, under the route's limits: its size, the gap
/// between reads (`request_body_timeout`), and its minimum rate.
fn body_reader(framing: Framing, route: &Route, client: &ConnCtx) -> body::Reader {
    let l = &route.relay.limits;
    let pace = body::Pace::new(l.request_body_min_rate, l.request_body_min_rate_grace.get());
    let gap = client.generation.conn.request_body_timeout;
    body::Reader::new(framing, route.max_request_body_bytes, gap, pace)
}

/// The first part of the body, sent with the rest to come.
type Streamed = Option<(mpsc::Sender<body::Piece>, Bytes)>;

/// Reads the body from the client before any backend is chosen, up to
/// `request_buffer_bytes` (as nginx's `proxy_request_buffering`, bounded), so a
/// slow uploader holds no backend connection: a body that ends within it goes out
/// whole (none to stream); a larger one is the body hyper sends, fed with that first
/// part and then the rest (`Streamed`).
async fn ahead<IO: AsyncRead + Unpin>(
    c: &mut Conn<IO>,
    reader: &mut body::Reader,
    route: &Route,
) -> Result<(Streamed, ReqBody), BodyError> {
    let framing = reader.framing();
    if framing == Framing::Empty {
        return Ok((None, ReqBody::empty()));
    }
    let limit = route.relay.limits.request_buffer_bytes;
    match body::read_ahead(&mut c.rd, &mut c.buf, reader, limit).await? {
        body::Ahead::Whole(b) => Ok((None, ReqBody::whole(b))),
        body::Ahead::Part(first) => {
            let exact = match framing {
                Framing::Length(n) => Some(n),
                _ => None,
            };
            let (tx, b) = ReqBody::channel(exact);
            Ok((Some((tx, first)), b))
        }
    }
}

/// How the client's body ended, once it has (`None` while it is still coming).
type Fed = Option<Result<u64, BodyError>>;

/// Runs the backend exchange while the client's body feeds it: a body that ends
/// well tells the exchange (`done`), one the client breaks ends the exchange with
/// its refusal. `fed` records how the body ended.
async fn exchange_while_feeding<E, F>(
    exchange: E,
    mut feed: Pin<&mut F>,
    fed: &mut Fed,
    done: &watch::Sender<bool>,
) -> Result<Exchange, Refusal>
where
    E: Future<Output = Result<Exchange, Refusal>>,
    F: Future<Output = Result<u64, BodyError>>,
{
    tokio::pin!(exchange);
    loop {
        tokio::select! {
            r = &mut exchange => return r,
            r = &mut feed, if fed.is_none() => {
                match r {
                    Ok(_) => {
                        done.send_replace(true);
                    }
                    // The backend exchange dropped the body; its own result follows.
                    Err(BodyError::Abandoned) => {}
                    Err(e) => {
                        *fed = Some(Err(e));
                        return Err(body_refusal(e));
                    }
                }
                *fed = Some(r);
            }
        }
    }
}

/// Writes the response while the rest of the client's body (if any) still feeds
/// the backend; returns the write's result (`Ok(close)`).
async fn write_while_feeding<W, F>(
    respond: W,
    mut feed: Pin<&mut F>,
    fed: &mut Fed,
    done: &watch::Sender<bool>,
) -> std::io::Result<bool>
where
    W: Future<Output = std::io::Result<bool>>,
    F: Future<Output = Result<u64, BodyError>>,
{
    tokio::pin!(respond);
    loop {
        tokio::select! {
            r = &mut respond => return r,
            r = &mut feed, if fed.is_none() => {
                if r.is_ok() {
                    done.send_replace(true);
                }
                *fed = Some(r);
            }
        }
    }
}

/// A body that cannot be passed on, as the client's answer.
fn body_refusal(e: BodyError) -> Refusal {
    match e {
        BodyError::TooLarge => Refusal::BodyTooLarge,
        BodyError::Timeout => Refusal::BodyTimeout,
        BodyError::TooSlow => Refusal::BodyTooSlow,
        BodyError::BadChunk => Refusal::BadChunkedBody,
        BodyError::ClientGone | BodyError::Abandoned => {
            Refusal::BadGateway("bad gateway: the request could not be sent".into())
        }
    }
}

async fn refuse<IO: AsyncWrite>(
    c: &mut Conn<IO>,
    r: Refusal,
    client: &ConnCtx,
    route: &Route,
    req: &Request<()>,
    started: Instant,
) -> Forwarded {
    logged(client, route, req, By::Wsgate(&r), None, started);
    respond_and_close(c, r.response(), reply_for(req, true)).await;
    Forwarded::Linger
}

/// Who answered a plain request: wsgate (its refusal) or a backend (status, address).
enum By<'a> {
    Wsgate(&'a Refusal),
    Backend(u16, &'a str),
}

/// Counts a plain request in `wsgate_http_requests_total` and writes its access line.
fn logged(
    client: &ConnCtx,
    route: &Route,
    req: &Request<()>,
    by: By<'_>,
    request_body_bytes: Option<u64>,
    started: Instant,
) {
    let (status, reason, backend) = match by {
        By::Wsgate(r) => (r.status().as_u16(), Some(r.reason()), None),
        By::Backend(status, addr) => (status, None, Some(addr)),
    };
    client.rt.metrics.count_http(&route.name, status);
    crate::access::http_request(&crate::access::HttpRequest {
        conn: &client.info,
        route: &route.name,
        method: req.method().as_str(),
        path: req.uri().path(),
        status,
        reason,
        backend,
        request_body_bytes,
        duration: started.elapsed(),
    });
}

/// Keeps the backend connection for the next request once hyper has finished with
/// this one (it may still be reading the end of the response); a connection the
/// backend closes, or marks `Connection: close`, is not kept.
fn give_back(mut sender: Sender, lease: Lease) {
    let backend = lease.backend().clone();
    drop(lease);
    if backend.is_removed() {
        return;
    }
    let limit = backend.idle.max_idle();
    tokio::spawn(async move {
        if let Ok(Ok(())) = timeout(limit, sender.ready()).await {
            backend.idle.put(sender);
        }
    });
}

/// Opens a connection to `backend` for plain HTTP (`connect::connect`: TCP, the
/// pool's PROXY header, TLS) and starts hyper's client on it.
async fn connect(
    backend: &crate::backends::backend::Backend,
    pool: &Pool,
    to: &To<'_>,
) -> Result<Sender, crate::backends::error::UpstreamError> {
    use connect::BackendStream;
    match connect::connect(backend, pool, to.addrs, None, to.local).await? {
        BackendStream::Plain(tcp) => start_client(backend.addr, tcp).await,
        BackendStream::Tls(stream) => start_client(backend.addr, stream).await,
    }
}

/// hyper's HTTP/1.1 client on `stream`, its connection driven by a task of its own.
async fn start_client<S>(
    addr: std::net::SocketAddr,
    stream: S,
) -> Result<Sender, crate::backends::error::UpstreamError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, ReqBody>(TokioIo::new(stream))
        .await
        .map_err(|e| crate::backends::error::UpstreamError::Http(addr, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(backend = %addr, "backend connection ended: {e}");
        }
    });
    Ok(sender)
}

/// Waits for `fut` (the response head): without a limit while the request body is
/// still going out, then within `limit` (`response_timeout`, counted from the end
/// of the request body).
async fn await_head<F: Future>(
    fut: F,
    body_done: &mut watch::Receiver<bool>,
    limit: Duration,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::pin!(fut);
    if !*body_done.borrow() {
        tokio::select! {
            r = &mut fut => return Ok(r),
            _ = body_done.wait_for(|d| *d) => {}
        }
    }
    timeout(limit, fut).await
}

/// A connect to `backend` failed with `e` (kept in `last`): held against the backend
/// unless it is wsgate's own shortage. Returns whether to try another backend (a
/// local shortage: as `backends::error::local_retry` says).
fn connect_failed(
    pool: &Pool,
    lease: &Lease,
    e: crate::backends::error::UpstreamError,
    last: &mut Option<crate::backends::error::UpstreamError>,
    local_retried: &mut bool,
) -> bool {
    let local = e.local();
    if local.is_none() {
        tracing::warn!(pool = %pool.name, "{}", crate::errors::ErrorChain(&e));
        pool.record_failure(lease, Failure::of(&e));
    }
    *last = Some(e);
    crate::backends::error::local_retry(local, local_retried)
}

/// Who a request is for: the client's address and the one it connected to (for a
/// PROXY header), and its sticky cookie; and where wsgate's own shortages are
/// counted.
struct To<'a> {
    addrs: (std::net::SocketAddr, std::net::SocketAddr),
    sticky: Option<&'a str>,
    local: &'a crate::metrics::LocalExhaustion,
}

/// Sends the request to a backend of `pool` and waits for its response head.
///
/// Retries: a request that never left wsgate (the connect failed, or a pooled
/// connection turned out closed) is tried again whatever its method; one that was
/// sent and got no response head is tried again (on a fresh connection, then on
/// another backend) only when it is GET or HEAD without a body. Failures on a
/// reused connection are not held against the backend (the usual cause is a
/// keep-alive race, not a sick backend), nor is wsgate's own shortage (no ephemeral
/// port, descriptor or memory: a 503, tried on one other backend at most, as
/// `backends::error::local_retry` says).
///
/// A pool with `send_proxy_protocol` writes the client's PROXY header first on each
/// backend connection, so such a connection is the client's own: it is never taken
/// from or given back to the idle set (as HAProxy makes connections with a PROXY
/// header private).
async fn exchange(
    pool: &Pool,
    out: &Outgoing,
    body: ReqBody,
    mut body_done: watch::Receiver<bool>,
    to: To<'_>,
) -> Result<Exchange, Refusal> {
    // A connection that carries a client's PROXY header is that client's alone.
    let shared = pool.conf.send_proxy_protocol.is_none();
    let mut body = Some(body);
    let mut tried = Vec::new();
    let mut last = None;
    let mut local_retried = false;
    'backends: for _ in 0..=pool.conf.retries {
        let Some(lease) = pool.pick_for(to.addrs.0.ip(), to.sticky, &tried) else {
            break;
        };
        tried.push(lease.index());
        let backend = lease.backend().clone();
        let mut fresh_only = false;
        loop {
            let pooled = if fresh_only || !shared {
                None
            } else {
                backend.idle.take()
            };
            let reused = pooled.is_some();
            let mut sender = match pooled {
                Some(s) => s,
                None => match connect(&backend, pool, &to).await {
                    Ok(s) => s,
                    Err(e) => {
                        if connect_failed(pool, &lease, e, &mut last, &mut local_retried) {
                            continue 'backends;
                        }
                        break 'backends;
                    }
                },
            };
            let Some(b) = body.take() else {
                break 'backends;
            };
            let sent = sender.try_send_request(out.request(b));
            match await_head(sent, &mut body_done, pool.conf.response_timeout).await {
                Ok(Ok(resp)) => {
                    if !reused {
                        backend.record_success();
                    }
                    return Ok(Exchange {
                        resp,
                        sender,
                        lease,
                    });
                }
                Err(_) => {
                    tracing::warn!(pool = %pool.name, backend = %backend.addr, "no response head within response_timeout");
                    pool.record_failure(&lease, Failure::Timeout);
                    return Err(Refusal::ResponseTimeout);
                }
                Ok(Err(mut e)) => {
                    if let Some(r) = e.take_message() {
                        // Never sent: the same request, on another connection.
                        body = Some(r.into_body());
                        if reused {
                            continue;
                        }
                    } else if out.idempotent {
                        body = Some(ReqBody::empty());
                        if reused {
                            fresh_only = true;
                            continue;
                        }
                    } else if reused {
                        tracing::warn!(pool = %pool.name, backend = %backend.addr, "a reused connection failed after the request was sent: {}", e.error());
                        return Err(Refusal::BadGateway(
                            "bad gateway: the backend closed the connection".into(),
                        ));
                    }
                    let e =
                        crate::backends::error::UpstreamError::Http(backend.addr, e.into_error());
                    tracing::warn!(pool = %pool.name, "{}", crate::errors::ErrorChain(&e));
                    pool.record_failure(&lease, Failure::Error);
                    last = Some(e);
                    if body.is_none() {
                        break 'backends;
                    }
                    continue 'backends;
                }
            }
        }
    }
    Err(match last {
        Some(crate::backends::error::UpstreamError::Local { .. }) => {
            to.local.refused();
            Refusal::LocalExhaustion
        }
        Some(
            crate::backends::error::UpstreamError::Connect(..)
            | crate::backends::error::UpstreamError::ConnectTimeout(_),
        ) => Refusal::BadGateway("bad gateway: backend unreachable".into()),
        Some(_) => Refusal::BadGateway("bad gateway: the backend closed the connection".into()),
        None => Refusal::NoBackend,
    })
}
