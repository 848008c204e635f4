//! Talking to a backend: connect, forward the upgrade, check its answer.
//!
//! Owns: the forwarded request and the headers of any forwarded request, upgrade or
//! plain HTTP (hop-by-hop headers dropped, X-Forwarded-* added, Host kept unless the
//! pool sets `host_header`), the connection (TCP, then TLS for a `tls = true` pool,
//! both within `connect_timeout`), the checks on the backend's 101
//! (Accept, subprotocol, extensions), and `UpstreamError`, which says what went wrong
//! with which backend. Also the source address of a backend connection (the pool's
//! `source_addresses`, each socket bound with `IP_BIND_ADDRESS_NO_PORT`), and telling
//! wsgate's own shortage (no ephemeral port left, no descriptor, no memory:
//! `UpstreamError::Local`) from a backend's failure. Does not own: picking the backend
//! or retrying (http/upgrade.rs, http/forward.rs), or the pool's TLS settings
//! (tls/upstream.rs).

use crate::backends::backend::Backend;
use crate::backends::balance::Pool;
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
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
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

/// Why a backend could not be used; each counts against it and may be retried
/// elsewhere, except `Local`: wsgate's own shortage, which is no fault of the backend.
/// `Display` names the backend and what failed; `source()` gives the io, TLS or HTTP
/// error beneath (log it with `errors::ErrorChain`).
#[derive(Debug)]
pub enum UpstreamError {
    Connect(SocketAddr, std::io::Error),
    /// socket, bind or connect failed for want of something on wsgate's own side: an
    /// ephemeral port toward this address (from `from`, when the pool binds one), a
    /// file descriptor, socket buffers or memory.
    Local {
        backend: SocketAddr,
        from: Option<IpAddr>,
        reason: LocalReason,
        error: std::io::Error,
    },
    ConnectTimeout(SocketAddr),
    /// The TLS handshake failed (certificate not verified, no common version...).
    Tls(SocketAddr, std::io::Error),
    Http(SocketAddr, hyper::Error),
    UpgradeTimeout(SocketAddr),
    NotWebSocket(SocketAddr),
    BadAccept(SocketAddr),
    BadProtocol(SocketAddr, String),
    BadExtension(SocketAddr, String),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use UpstreamError::*;
        match self {
            Connect(a, _) => write!(f, "backend {a}: connect failed"),
            Local {
                backend,
                from,
                reason,
                ..
            } => {
                write!(f, "backend {backend}: ")?;
                if let Some(ip) = from {
                    write!(f, "from {ip}: ")?;
                }
                write!(f, "wsgate is out of local resources ({})", reason.label())
            }
            ConnectTimeout(a) => write!(f, "backend {a}: connect timed out"),
            Tls(a, _) => write!(f, "backend {a}: TLS handshake failed"),
            Http(a, _) => write!(f, "backend {a}: bad HTTP answer to the upgrade"),
            UpgradeTimeout(a) => write!(f, "backend {a}: no answer to the upgrade in time"),
            NotWebSocket(a) => write!(
                f,
                "backend {a}: 101 without Upgrade: websocket / Connection: upgrade"
            ),
            BadAccept(a) => write!(f, "backend {a}: wrong Sec-WebSocket-Accept"),
            BadProtocol(a, p) => write!(
                f,
                "backend {a}: chose subprotocol {p:?} the client did not offer"
            ),
            BadExtension(a, e) => write!(
                f,
                "backend {a}: chose extension {e:?} the client did not offer"
            ),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        use UpstreamError::*;
        match self {
            Connect(_, e) | Tls(_, e) | Local { error: e, .. } => Some(e),
            Http(_, e) => Some(e),
            ConnectTimeout(_) | UpgradeTimeout(_) | NotWebSocket(_) | BadAccept(_)
            | BadProtocol(..) | BadExtension(..) => None,
        }
    }
}

impl UpstreamError {
    /// The `reason` label of `wsgate_backend_failures_total`.
    pub fn reason(&self) -> &'static str {
        use UpstreamError::*;
        match self {
            Connect(..) => "connect_failed",
            Local { reason, .. } => reason.label(),
            ConnectTimeout(_) => "connect_timeout",
            Http(..) => "bad_http",
            UpgradeTimeout(_) => "upgrade_timeout",
            NotWebSocket(_) => "not_websocket",
            BadAccept(_) => "bad_accept",
            BadProtocol(..) => "bad_subprotocol",
            BadExtension(..) => "bad_extension",
            Tls(..) => "tls_failed",
        }
    }

    /// What ran out on wsgate's side, when this is no fault of the backend.
    pub fn local(&self) -> Option<LocalReason> {
        match self {
            UpstreamError::Local { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

/// What wsgate itself ran out of when it tried to open a backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalReason {
    /// EADDRNOTAVAIL: every ephemeral port toward this address (from this source
    /// address) is taken, or a `source_addresses` entry is not on this host.
    AddrNotAvail,
    /// EMFILE: the process's open-file limit.
    Mfile,
    /// ENFILE: the system's open-file limit.
    Nfile,
    /// ENOBUFS: no socket buffer space.
    Nobufs,
    /// ENOMEM: no kernel memory.
    Nomem,
}

impl LocalReason {
    pub const ALL: [LocalReason; 5] = [
        LocalReason::AddrNotAvail,
        LocalReason::Mfile,
        LocalReason::Nfile,
        LocalReason::Nobufs,
        LocalReason::Nomem,
    ];

    /// The local shortage `e` (from socket, bind or connect) reports, if it is one.
    pub fn of(e: &std::io::Error) -> Option<LocalReason> {
        use rustix::io::Errno;
        let errno = Errno::from_io_error(e)?;
        Some(match errno {
            Errno::ADDRNOTAVAIL => LocalReason::AddrNotAvail,
            Errno::MFILE => LocalReason::Mfile,
            Errno::NFILE => LocalReason::Nfile,
            Errno::NOBUFS => LocalReason::Nobufs,
            Errno::NOMEM => LocalReason::Nomem,
            _ => return None,
        })
    }

    /// The `reason` label of `wsgate_local_exhaustion_total` (one of
    /// `metrics::local::REASONS`).
    pub fn label(self) -> &'static str {
        match self {
            LocalReason::AddrNotAvail => "eaddrnotavail",
            LocalReason::Mfile => "emfile",
            LocalReason::Nfile => "enfile",
            LocalReason::Nobufs => "enobufs",
            LocalReason::Nomem => "enomem",
        }
    }

    /// Whether another backend address may still work: ephemeral ports run out per
    /// destination, so another address has ports of its own; descriptors, buffers
    /// and memory are the whole process's (or machine's), so trying elsewhere would
    /// only pile on.
    pub fn per_destination(self) -> bool {
        self == LocalReason::AddrNotAvail
    }
}

/// A connect error, told apart: wsgate's own shortage (`Local`) or the backend's.
fn connect_error(
    backend: SocketAddr,
    from: Option<IpAddr>,
    error: std::io::Error,
) -> UpstreamError {
    match LocalReason::of(&error) {
        Some(reason) => UpstreamError::Local {
            backend,
            from,
            reason,
            error,
        },
        None => UpstreamError::Connect(backend, error),
    }
}

/// Where the next backend connection of any pool starts among its source addresses
/// (round robin; when one is out of ports the next ones are tried).
static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// TCP to `addr`: from the kernel's choice of source address when `sources` has none
/// of `addr`'s family, else from one of them, round robin. A source address out of
/// ports toward `addr` (EADDRNOTAVAIL) hands over to the next one, so the pool can
/// hold as many connections to one address as all its source addresses together.
async fn tcp_connect(addr: SocketAddr, sources: &[IpAddr]) -> Result<TcpStream, UpstreamError> {
    let same = |ip: &&IpAddr| ip.is_ipv4() == addr.is_ipv4();
    let n = sources.iter().filter(same).count();
    if n == 0 {
        return TcpStream::connect(addr)
            .await
            .map_err(|e| connect_error(addr, None, e));
    }
    let start = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed);
    let mut last = None;
    for k in 0..n {
        let Some(&ip) = sources.iter().filter(same).nth((start + k) % n) else {
            break;
        };
        match connect_from(ip, addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => {
                let e = connect_error(addr, Some(ip), e);
                if e.local() != Some(LocalReason::AddrNotAvail) {
                    return Err(e);
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        connect_error(
            addr,
            None,
            std::io::Error::from(std::io::ErrorKind::AddrNotAvailable),
        )
    }))
}

/// A socket bound to `ip:0` with `IP_BIND_ADDRESS_NO_PORT` (the kernel picks the
/// port at connect time, per destination, instead of reserving one for every
/// destination at bind time), connected to `addr`.
async fn connect_from(ip: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    bind_address_no_port(&socket)?;
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// The ephemeral port range (`net.ipv4.ip_local_port_range`) of this network
/// namespace: where the kernel takes the port of every backend connection.
pub fn local_port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi => Some((lo, hi)),
        _ => None,
    }
}

/// The start-up warning for pool `pool` when `max_connections` sessions could not
/// all reach one of its `backends` addresses: from one source address the kernel
/// has `range` ports toward one address (IPv6 too), so one backend address holds
/// at most (ports × source addresses of its family) connections.
pub fn port_shortfall(
    pool: &str,
    backends: impl IntoIterator<Item = SocketAddr>,
    sources: &[IpAddr],
    max_connections: usize,
    (lo, hi): (u16, u16),
) -> Option<String> {
    let ports = usize::from(hi - lo) + 1;
    let (cap, addr, n) = backends
        .into_iter()
        .map(|b| {
            let n = sources
                .iter()
                .filter(|s| s.is_ipv4() == b.is_ipv4())
                .count()
                .max(1);
            (ports * n, b, n)
        })
        .min_by_key(|(cap, ..)| *cap)?;
    (max_connections > cap).then(|| {
        let plural = if n == 1 { "" } else { "es" };
        format!(
            "pool {pool:?}: max_connections = {max_connections} but backend {addr} can take only {cap} connections from this host (ip_local_port_range {lo}-{hi}: {ports} ports x {n} source address{plural}); sessions past that get 503 from wsgate: add source_addresses to the pool, or widen net.ipv4.ip_local_port_range"
        )
    })
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` (Linux >= 4.2; it applies to IPv6 sockets too).
fn bind_address_no_port(socket: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket this function borrows (open for the call), with
    // a pointer to a live c_int and its exact size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
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
    fn each_cause_shows_once() {
        let addr: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let e = UpstreamError::Tls(addr, std::io::Error::other("UnknownIssuer"));
        assert_eq!(e.to_string(), "backend 192.0.2.1:443: TLS handshake failed");
        assert_eq!(
            crate::errors::ErrorChain(&e).to_string(),
            "backend 192.0.2.1:443: TLS handshake failed: UnknownIssuer"
        );
        assert_eq!(e.reason(), "tls_failed");
    }

    #[test]
    fn local_shortages_are_told_from_backend_failures() {
        use rustix::io::Errno;
        let addr: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let os = |e: Errno| std::io::Error::from_raw_os_error(e.raw_os_error());
        for (errno, reason, label) in [
            (
                Errno::ADDRNOTAVAIL,
                LocalReason::AddrNotAvail,
                "eaddrnotavail",
            ),
            (Errno::MFILE, LocalReason::Mfile, "emfile"),
            (Errno::NFILE, LocalReason::Nfile, "enfile"),
            (Errno::NOBUFS, LocalReason::Nobufs, "enobufs"),
            (Errno::NOMEM, LocalReason::Nomem, "enomem"),
        ] {
            let e = connect_error(addr, None, os(errno));
            assert_eq!(e.local(), Some(reason));
            assert_eq!(e.reason(), label);
            assert!(crate::metrics::local::REASONS.contains(&label));
            assert!(std::error::Error::source(&e).is_some(), "{e:?}");
        }
        assert_eq!(LocalReason::ALL.len(), crate::metrics::local::REASONS.len());
        for errno in [
            Errno::CONNREFUSED,
            Errno::HOSTUNREACH,
            Errno::NETUNREACH,
            Errno::TIMEDOUT,
        ] {
            let e = connect_error(addr, None, os(errno));
            assert_eq!(e.local(), None, "{errno:?} is the backend's");
            assert_eq!(e.reason(), "connect_failed");
        }
        assert_eq!(LocalReason::of(&std::io::Error::other("x")), None);
        let from = Some("127.0.0.2".parse().unwrap());
        let e = connect_error(addr, from, os(Errno::ADDRNOTAVAIL));
        assert_eq!(
            crate::errors::ErrorChain(&e).to_string(),
            format!(
                "backend 192.0.2.1:443: from 127.0.0.2: wsgate is out of local resources (eaddrnotavail): {}",
                os(Errno::ADDRNOTAVAIL)
            )
        );
        assert!(LocalReason::AddrNotAvail.per_destination());
        assert!(!LocalReason::Mfile.per_destination());
    }

    #[tokio::test]
    async fn a_source_address_is_bound_and_one_not_on_this_host_is_local() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = l.local_addr().unwrap();
        let from: IpAddr = "127.0.0.3".parse().unwrap();
        let tcp = tcp_connect(to, &[from]).await.unwrap();
        assert_eq!(tcp.local_addr().unwrap().ip(), from);
        // An IPv6 source is not used for an IPv4 backend: the kernel chooses.
        let tcp = tcp_connect(to, &["::1".parse().unwrap()]).await.unwrap();
        assert_eq!(tcp.local_addr().unwrap().ip(), IpAddr::from([127, 0, 0, 1]));
        // TEST-NET-1 is on no interface here: bind fails, and that is wsgate's side.
        let away: IpAddr = "192.0.2.1".parse().unwrap();
        let e = tcp_connect(to, &[away]).await.unwrap_err();
        assert_eq!(e.local(), Some(LocalReason::AddrNotAvail), "{e}");
        // With another source still usable, the one that fails hands over.
        for _ in 0..4 {
            let tcp = tcp_connect(to, &[away, from]).await.unwrap();
            assert_eq!(tcp.local_addr().unwrap().ip(), from);
        }
    }

    #[test]
    fn the_port_range_bounds_the_connections_to_one_backend_address() {
        let v4: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[fd00::1]:80".parse().unwrap();
        let two: Vec<IpAddr> = vec!["10.0.0.9".parse().unwrap(), "10.0.0.10".parse().unwrap()];
        let range = (32768, 60999);
        assert_eq!(port_shortfall("p", [v4], &[], 28_232, range), None);
        let w = port_shortfall("p", [v4], &[], 28_233, range).unwrap();
        assert!(
            w.starts_with("pool \"p\": max_connections = 28233 but backend 10.0.0.1:80 can take only 28232 connections")
                && w.contains("28232 ports x 1 source address)"),
            "{w}"
        );
        assert_eq!(port_shortfall("p", [v4], &two, 56_464, range), None);
        // The IPv6 backend has no IPv6 source address: it is the bound.
        let w = port_shortfall("p", [v4, v6], &two, 56_464, range).unwrap();
        assert!(
            w.contains("backend [fd00::1]:80 can take only 28232"),
            "{w}"
        );
        assert_eq!(port_shortfall("p", [], &two, 1_000_000, range), None);
    }

    #[test]
    fn a_local_shortage_is_retried_once_on_another_address_at_most() {
        use crate::http::upgrade::local_retry;
        let mut retried = false;
        assert!(local_retry(None, &mut retried));
        assert!(!local_retry(Some(LocalReason::Mfile), &mut retried));
        assert!(!retried);
        assert!(local_retry(Some(LocalReason::AddrNotAvail), &mut retried));
        assert!(!local_retry(Some(LocalReason::AddrNotAvail), &mut retried));
        assert!(local_retry(None, &mut retried));
    }

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
