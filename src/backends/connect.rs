//! Talking to a backend: connect, forward the upgrade, check its answer.
//!
//! Owns: the forwarded request and the headers of any forwarded request, upgrade or
//! plain HTTP (hop-by-hop headers dropped, X-Forwarded-* added, Host kept unless the
//! pool sets `host_header`), the connection (TCP, then TLS for a `tls = true` pool,
//! both within `connect_timeout`), the checks on the backend's 101
//! (Accept, subprotocol, extensions). Does not own: the socket and its source
//! address (socket.rs), what a failure means (error.rs), picking the backend or
//! retrying (http/upgrade.rs, http/forward.rs), or the pool's TLS settings
//! (tls/upstream.rs).

use crate::backends::backend::Backend;
use crate::backends::balance::Pool;
use crate::backends::error::UpstreamError;
use crate::backends::socket::tcp_connect;
use crate::http::handshake::{UpgradeRequest, has_token, tokens};
use crate::metrics::LocalExhaustion;
use crate::relay::frame::Extensions;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::histogram::Histogram;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;

/// A connection to a backend: plain TCP, or TLS for a `tls = true` pool (boxed, so a
/// session's task is no bigger for plain backends).
pub enum BackendStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// What the client side contributes to the forwarded request.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub tls: bool,
    /// The client and the address it connected to: what a PROXY header to the
    /// backend carries (`send_proxy_protocol`).
    pub addrs: (SocketAddr, SocketAddr),
}

/// The backend's answer to a forwarded upgrade.
pub enum UpgradeReply {
    /// 101, checked: the stream, bytes it sent right after the head, and the
    /// headers to hand on to the client.
    Switched {
        stream: BackendStream,
        pre: Bytes,
        headers: HeaderMap,
        extensions: Extensions,
    },
    /// Any other status: the backend's own answer, passed to the client as it is.
    Refused(Response<Incoming>),
}

/// Headers that describe one hop and are never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
];

/// Copies `src` without hop-by-hop headers, including those `Connection` names.
pub fn end_to_end_headers(src: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = tokens(src, &header::CONNECTION)
        .map(str::to_ascii_lowercase)
        .collect();
    let mut out = HeaderMap::with_capacity(src.len());
    for (name, value) in src {
        if HOP_BY_HOP.contains(name) || named.iter().any(|n| n == name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The headers a request is forwarded with: the client's end-to-end headers, with
/// X-Forwarded-For (appended to), -Proto, -Host and X-Real-IP set by wsgate (a
/// client's own values of the last three are replaced), and Host replaced when the
/// pool sets `host_header`. `host` is the Host the client sent.
pub fn forwarded_headers(
    client_headers: &HeaderMap,
    host: &str,
    client: ClientInfo,
    host_header: Option<&str>,
) -> HeaderMap {
    let mut h = end_to_end_headers(client_headers);
    let xff_prev: Vec<String> = tokens(client_headers, &HeaderName::from_static("x-forwarded-for"))
        .map(str::to_string)
        .collect();
    for n in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
    ] {
        h.remove(n);
    }
    let ip = client.ip.to_canonical().to_string();
    let xff = if xff_prev.is_empty() {
        ip.clone()
    } else {
        format!("{}, {ip}", xff_prev.join(", "))
    };
    let set = |h: &mut HeaderMap, name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set(&mut h, "x-forwarded-for", &xff);
    set(
        &mut h,
        "x-forwarded-proto",
        if client.tls { "https" } else { "http" },
    );
    if !host.is_empty() {
        set(&mut h, "x-forwarded-host", host);
    }
    set(&mut h, "x-real-ip", &ip);
    if let Some(host) = host_header {
        set(&mut h, "host", host);
    }
    h
}

/// The upgrade request sent to the backend.
pub fn forwarded_request(
    req: &UpgradeRequest,
    client_headers: &HeaderMap,
    client: ClientInfo,
    host_header: Option<&str>,
) -> Request<Empty<Bytes>> {
    let mut h = forwarded_headers(client_headers, &req.host, client, host_header);
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let mut out = Request::new(Empty::new());
    *out.uri_mut() = req
        .path_and_query
        .parse()
        .unwrap_or_else(|_| hyper::Uri::from_static("/"));
    *out.headers_mut() = h;
    out
}

/// Opens a connection to `backend` for `client` (the client's address and the one it
/// connected to): TCP, the pool's PROXY header if it sends one (in the clear, before
/// any TLS), then TLS if the pool says so, all within the pool's `connect_timeout`.
/// The TCP connect time goes to `connect_time` when given. A local shortage is
/// counted and logged in `local` (once per episode), and a connection opened ends
/// an episode. Upgrades and plain HTTP requests (http/forward.rs) both open their
/// backend connections here.
pub async fn connect(
    backend: &Backend,
    pool: &Pool,
    client: (std::net::SocketAddr, std::net::SocketAddr),
    connect_time: Option<&Histogram>,
    local: &LocalExhaustion,
) -> Result<BackendStream, UpstreamError> {
    let addr = backend.addr;
    let connect = async {
        let t0 = std::time::Instant::now();
        let mut tcp = match tcp_connect(addr, &pool.conf.source_addresses).await {
            Ok(tcp) => tcp,
            Err(e) => {
                if let Some(reason) = e.local() {
                    local.hit(reason.label(), &pool.name, &crate::errors::ErrorChain(&e));
                }
                return Err(e);
            }
        };
        local.connected();
        if let Some(h) = connect_time {
            h.observe(t0.elapsed().as_secs_f64());
        }
        let _ = tcp.set_nodelay(true);
        if let Some(v) = pool.conf.send_proxy_protocol {
            crate::accept::proxy_proto::write_header(&mut tcp, v, Some(client))
                .await
                .map_err(|e| UpstreamError::Connect(addr, e))?;
        }
        Ok(match &pool.tls {
            None => BackendStream::Plain(tcp),
            Some(tls) => BackendStream::Tls(Box::new(
                tls.connect(&backend.id.address, tcp)
                    .await
                    .map_err(|e| UpstreamError::Tls(addr, e))?,
            )),
        })
    };
    match timeout(pool.conf.connect_timeout, connect).await {
        Err(_) => Err(UpstreamError::ConnectTimeout(addr)),
        Ok(r) => r,
    }
}

/// Connects to `backend` (`connect`), forwards the upgrade and checks the answer.
pub async fn open(
    backend: &Backend,
    pool: &Pool,
    client: ClientInfo,
    forwarded: Request<Empty<Bytes>>,
    req: &UpgradeRequest,
    connect_time: &Histogram,
    local: &LocalExhaustion,
) -> Result<UpgradeReply, UpstreamError> {
    let addr = backend.addr;
    let stream = connect(backend, pool, client.addrs, Some(connect_time), local).await?;
    let exchange = async {
        match stream {
            BackendStream::Plain(s) => upgrade(addr, s, forwarded, req, BackendStream::Plain).await,
            BackendStream::Tls(s) => upgrade(addr, s, forwarded, req, BackendStream::Tls).await,
        }
    };
    match timeout(pool.conf.upgrade_timeout, exchange).await {
        Err(_) => Err(UpstreamError::UpgradeTimeout(addr)),
        Ok(r) => r,
    }
}

/// The HTTP upgrade over an open stream; `wrap` names the stream type for the relay.
async fn upgrade<S>(
    addr: SocketAddr,
    stream: S,
    forwarded: Request<Empty<Bytes>>,
    req: &UpgradeRequest,
    wrap: fn(S) -> BackendStream,
) -> Result<UpgradeReply, UpstreamError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| UpstreamError::Http(addr, e))?;
    tokio::spawn(conn.with_upgrades());
    let resp = sender
        .send_request(forwarded)
        .await
        .map_err(|e| UpstreamError::Http(addr, e))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(UpgradeReply::Refused(resp));
    }
    let extensions = check_switch(addr, req, resp.headers())?;
    let mut headers = end_to_end_headers(resp.headers());
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let upgraded = hyper::upgrade::on(resp)
        .await
        .map_err(|e| UpstreamError::Http(addr, e))?;
    let parts = upgraded
        .downcast::<TokioIo<S>>()
        .map_err(|_| UpstreamError::NotWebSocket(addr))?;
    Ok(UpgradeReply::Switched {
        stream: wrap(parts.io.into_inner()),
        pre: parts.read_buf,
        headers,
        extensions,
    })
}

/// Checks a backend's 101 against what the client asked for.
fn check_switch(
    addr: SocketAddr,
    req: &UpgradeRequest,
    h: &HeaderMap,
) -> Result<Extensions, UpstreamError> {
    if !has_token(h, &header::UPGRADE, "websocket") || !has_token(h, &header::CONNECTION, "upgrade")
    {
        return Err(UpstreamError::NotWebSocket(addr));
    }
    let expected = tungstenite::handshake::derive_accept_key(req.key.as_bytes());
    let mut accepts = h.get_all(header::SEC_WEBSOCKET_ACCEPT).iter();
    if accepts.next().map(HeaderValue::as_bytes) != Some(expected.as_bytes())
        || accepts.next().is_some()
    {
        return Err(UpstreamError::BadAccept(addr));
    }
    let chosen: Vec<&str> = tokens(h, &header::SEC_WEBSOCKET_PROTOCOL).collect();
    match chosen.as_slice() {
        [] => {}
        [p] if req.protocols.iter().any(|o| o == p) => {}
        _ => return Err(UpstreamError::BadProtocol(addr, chosen.join(", "))),
    }
    let mut ext = Extensions::default();
    for e in tokens(h, &header::SEC_WEBSOCKET_EXTENSIONS) {
        let name = e
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !req.extensions.contains(&name) {
            return Err(UpstreamError::BadExtension(addr, name));
        }
        match name.as_str() {
            "permessage-deflate" => ext.deflate = true,
            _ => ext.unknown = true,
        }
    }
    Ok(ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_and_forwarding_headers_set() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("chat.example.com"));
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("cookie", HeaderValue::from_static("a=b"));
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        let req = UpgradeRequest {
            host: "chat.example.com".into(),
            path_and_query: "/ws?room=1".into(),
            key: HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
            protocols: vec![],
            extensions: vec![],
        };
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let out = forwarded_request(
            &req,
            &h,
            ClientInfo {
                ip,
                tls: true,
                addrs: (SocketAddr::new(ip, 1), SocketAddr::new(ip, 2)),
            },
            None,
        );
        let o = out.headers();
        assert_eq!(out.uri(), "/ws?room=1");
        for gone in ["x-secret", "keep-alive", "proxy-authorization", "te"] {
            assert!(!o.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(o["connection"], "Upgrade");
        assert_eq!(o["upgrade"], "websocket");
        assert_eq!(o["cookie"], "a=b");
        assert_eq!(o["authorization"], "Bearer t");
        assert_eq!(o["host"], "chat.example.com");
        assert_eq!(o["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(o["x-real-ip"], "192.0.2.7");
        assert_eq!(o["x-forwarded-proto"], "https");
        assert_eq!(o["x-forwarded-host"], "chat.example.com");
        let out = forwarded_request(
            &req,
            &h,
            ClientInfo {
                ip,
                tls: false,
                addrs: (SocketAddr::new(ip, 1), SocketAddr::new(ip, 2)),
            },
            Some("internal:9000"),
        );
        assert_eq!(out.headers()["host"], "internal:9000");
        assert_eq!(out.headers()["x-forwarded-proto"], "http");
    }
}
