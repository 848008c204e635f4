//! One client connection's requests, in order, from its first byte to its close.
//!
//! Owns: reading each request head under its deadlines and deciding whether the
//! connection is kept for another (`serve`), answering heads that break the rules
//! (head.rs), and sending each request where it belongs (`dispatch`); for an upgrade
//! it writes the 101 and starts the session in a task of its own.
//! Does not own: what an upgrade or a proxied request does (upgrade.rs, forward.rs).

use super::conn::{Conn, ConnCtx, reply_for, respond_and_close};
use super::forward::{self, Forwarded};
use super::head::{self, Head};
use super::write::{self, Reply};
use crate::config::HttpMode;
use crate::http::handshake::{UpgradeRequest, has_token};
use crate::http::upgrade::{self, Handled, Switch};
use crate::refusal::Refusal;
use crate::route::Lookup;
use bytes::{Buf, BytesMut};
use hyper::StatusCode;
use hyper::header::{self, HeaderMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

/// What the connection does after a request.
pub enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close now: nothing more to read (or the client is gone).
    Close,
    /// Close after draining what the client may still send (a refused request whose
    /// body was not read), so the answer is not lost to a reset.
    Linger,
    /// The 101 was written: the connection becomes this session.
    Switch(Box<Switch>),
}

/// Draining before a close: at most this long, and this many bytes.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = 1 << 20;
/// Bytes asked of the client per read while a head is incomplete.
const HEAD_READ: usize = 4096;

/// Serves the connection until it closes or becomes a session (a task of its own,
/// holding the connection's slot).
///
/// The first head must arrive within `header_read_timeout` of the connection's
/// start; a later one within `keepalive_timeout` of idle for its first byte, then
/// `header_read_timeout` for the rest: 408 when a head is late, a silent close when
/// the idle time ends. A connection is kept only after a proxied request that ended
/// cleanly, and kept-alive connections close when shutdown begins. Each request
/// after the first runs under the generation current when its head arrived (the
/// first under the connection's).
pub async fn serve<IO>(io: IO, client: Arc<ConnCtx>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let mut c = Conn {
        rd,
        wr,
        buf: BytesMut::new(),
    };
    let mut client = client;
    let mut closing = client.rt.census.closing();
    let started = Instant::now();
    let mut first = true;
    let linger = loop {
        let s = client.generation.conn.clone();
        let deadline = if first {
            started + s.header_read_timeout
        } else {
            if c.buf.is_empty() {
                let idle = tokio::select! {
                    r = timeout(s.keepalive_timeout, fill(&mut c, HEAD_READ)) => r,
                    _ = closing.wait_for(|v| *v) => break false,
                };
                if !matches!(idle, Ok(Ok(n)) if n > 0) {
                    break false; // idle too long, or the client closed
                }
            }
            Instant::now() + s.header_read_timeout
        };
        let head = match read_head(&mut c, deadline, s.max_header_bytes).await {
            Ok(h) => h,
            Err(None) => break false,
            Err(Some(r)) => {
                if r == Refusal::HeaderTimeout {
                    tracing::debug!(client = %client.info.peer, "request header not received within {:?}", s.header_read_timeout);
                }
                // No head, so no path and no route: counted and logged as refused.
                respond_and_close(&mut c, upgrade::refusal(r, &client, "", None), CLOSE).await;
                break true;
            }
        };
        if !first {
            let current = client.rt.current();
            if !Arc::ptr_eq(&current, &client.generation) {
                client = Arc::new(ConnCtx {
                    info: client.info.clone(),
                    generation: current,
                    rt: client.rt.clone(),
                    admitted: client.admitted.clone(),
                });
            }
        }
        first = false;
        match Box::pin(dispatch(&mut c, head, &client)).await {
            Next::KeepAlive if !*closing.borrow() => {}
            Next::KeepAlive | Next::Close => break false,
            Next::Linger => break true,
            Next::Switch(mut session) => {
                // Copied out, so the read buffer (and the 101's headers) are freed
                // now rather than held for the session's life.
                let pre = bytes::Bytes::copy_from_slice(&c.buf);
                session.headers = HeaderMap::new();
                let io = c.rd.unsplit(c.wr);
                // A task of its own: this connection's larger future is freed, and
                // the session's holds only what the relay needs.
                tokio::spawn(session.run(io, pre));
                return;
            }
        }
    };
    close(c, linger).await;
}

/// `Err(None)`: the client closed; `Err(Some(refusal))`: answer it and close.
async fn read_head<IO: AsyncRead>(
    c: &mut Conn<IO>,
    deadline: Instant,
    max: usize,
) -> Result<Head, Option<Refusal>> {
    loop {
        if !c.buf.is_empty() {
            match head::parse(&c.buf, max) {
                Ok(Some((h, n))) => {
                    c.buf.advance(n);
                    return Ok(h);
                }
                Ok(None) => {}
                Err(r) => return Err(Some(r)),
            }
        }
        match timeout_at(deadline, fill(c, HEAD_READ)).await {
            Err(_) => return Err(Some(Refusal::HeaderTimeout)),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(None),
            Ok(Ok(_)) => {}
        }
    }
}

async fn fill<IO: AsyncRead>(c: &mut Conn<IO>, n: usize) -> std::io::Result<usize> {
    c.buf.reserve(n);
    c.rd.read_buf(&mut c.buf).await
}

const CLOSE: Reply = Reply {
    head_request: false,
    http11: true,
    close: true,
};

/// Ends the connection: flush and close our side; with `linger`, first read and drop
/// what the client still sends (bounded), so a refused client reads our answer
/// instead of a reset.
async fn close<IO: AsyncRead + AsyncWrite>(mut c: Conn<IO>, linger: bool) {
    let _ = timeout(Duration::from_secs(1), c.wr.shutdown()).await;
    if linger {
        let mut sink = tokio::io::sink();
        let mut rest = (&mut c.rd).take(LINGER_BYTES);
        let _ = timeout(LINGER_TIME, tokio::io::copy(&mut rest, &mut sink)).await;
    }
}

/// Sends one request where it belongs: an upgrade to `upgrade::handle` (and its 101
/// written here), a plain request on a route with `http = "proxy"` to
/// `forward::forward`, anything else to the answer it always had (426, 405, 505 ...),
/// after which the connection closes.
async fn dispatch<IO>(c: &mut Conn<IO>, head: Head, client: &Arc<ConnCtx>) -> Next
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let req = &head.req;
    if has_token(req.headers(), &header::UPGRADE, "websocket") {
        return match upgrade::handle(req, client).await {
            Handled::Respond(resp) => {
                respond_and_close(c, resp, reply_for(req, true)).await;
                Next::Linger
            }
            Handled::Switch(session) => {
                match write::write_head(
                    &mut c.wr,
                    StatusCode::SWITCHING_PROTOCOLS,
                    &session.headers,
                )
                .await
                {
                    Ok(()) => Next::Switch(session),
                    Err(e) => {
                        tracing::debug!(client = %client.info.peer, "client left before its 101: {e}");
                        Next::Close
                    }
                }
            }
        };
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let lookup = Lookup::new(host, target, req.headers());
    match client.generation.router.route(&lookup) {
        Some(route) if route.http == HttpMode::Proxy => {
            let route = route.clone();
            match forward::forward(c, head, route, client).await {
                Forwarded::KeepAlive => Next::KeepAlive,
                Forwarded::Close => Next::Close,
                Forwarded::Linger => Next::Linger,
            }
        }
        _ => {
            // Not an upgrade, and no route proxies plain HTTP: the answer wsgate has
            // always given (426, or 405/505 first), one request per connection.
            let r = UpgradeRequest::parse(req)
                .err()
                .unwrap_or(Refusal::NotWebSocket);
            respond_and_close(
                c,
                upgrade::refusal(r, client, req.uri().path(), None),
                reply_for(req, true),
            )
            .await;
            Next::Linger
        }
    }
}
