//! Plain HTTP peers for the pass-through tests: a hyper backend (keep-alive, streamed
//! bodies, WebSocket upgrades too) that records what reached it and counts its
//! connections, and a raw HTTP/1.1 reader for the client side (Content-Length,
//! chunked, or no body) that leaves a kept-alive connection usable.

use super::{DEADLINE, RawResponse, within};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::Role;

/// What one request looked like when it reached the backend.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 backend. Paths:
/// - `/echo`: the request body streamed back (no Content-Length: chunked);
/// - `/len`: reads the body as it comes; answers `len=N sum=S` (`Digest` of the bytes);
/// - `/big?n=N`: N bytes, `block()` over and over, in 64 KiB frames, no Content-Length;
/// - `/slow?ms=M`: answers after M ms;
/// - `/hop`: answers with hop-by-hop headers that must not reach the client;
/// - `/close`: answers with `Connection: close`;
/// - `/early`: 413 at once, without reading the body;
/// - anything else: `NAME PATH` with Content-Length.
///
/// Every answer names the backend in `x-backend`; upgrades get a WebSocket echo.
pub struct HttpBackend {
    pub addr: SocketAddr,
    pub name: String,
    pub conns: Arc<AtomicUsize>,
    /// Connections open now.
    pub open: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpBackend {
    pub async fn spawn(name: &str) -> HttpBackend {
        HttpBackend::spawn_on("127.0.0.1:0".parse().unwrap(), name).await
    }

    pub async fn spawn_on(addr: SocketAddr, name: &str) -> HttpBackend {
        let l = TcpListener::bind(addr).await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, o, s, n) = (conns.clone(), open.clone(), seen.clone(), name.to_string());
        let task = tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::Relaxed);
                o.fetch_add(1, Ordering::Relaxed);
                let (o, s, n) = (o.clone(), s.clone(), n.clone());
                tasks.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (s, n) = (s.clone(), n.clone());
                        async move { Ok::<_, Infallible>(handle(req, &n, &s).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                    o.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        HttpBackend {
            addr,
            name: name.to_string(),
            conns,
            open,
            seen,
            task,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::Relaxed)
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// What `/big` repeats: 64 KiB of a fixed pattern.
pub fn block() -> Bytes {
    Bytes::from((0..BLOCK).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}
pub const BLOCK: usize = 64 * 1024;

/// A streaming digest of a body, the same however the body is split (std's SipHash,
/// fast even in a debug build since std is built optimized).
#[derive(Clone, Default)]
pub struct Digest(std::hash::DefaultHasher, u64);

impl Digest {
    pub fn update(&mut self, data: &[u8]) {
        use std::hash::Hasher;
        self.0.write(data);
        self.1 += data.len() as u64;
    }
    pub fn finish(&self) -> u64 {
        std::hash::Hasher::finish(&self.0)
    }
    pub fn len(&self) -> u64 {
        self.1
    }
    /// `len=N sum=S`, as `/len` answers.
    pub fn answer(&self) -> String {
        format!("len={} sum={}", self.1, self.finish())
    }
    pub fn of(data: &[u8]) -> Digest {
        let mut d = Digest::default();
        d.update(data);
        d
    }
}

fn query(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok())?
    })
}

async fn handle(mut req: Request<Incoming>, name: &str, seen: &Mutex<Vec<Seen>>) -> Response<Body> {
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        target: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
    });
    let mut resp = if req.headers().contains_key("sec-websocket-key") {
        upgrade(&mut req)
    } else {
        match req.uri().path() {
            "/echo" => {
                let body = req.into_body();
                let stream = futures_util::stream::unfold(body, |mut b| async move {
                    match b.frame().await {
                        Some(Ok(f)) => f.into_data().ok().map(|d| (Ok(Frame::data(d)), b)),
                        _ => None,
                    }
                });
                Response::new(BodyExt::boxed(StreamBody::new(stream)))
            }
            "/len" => {
                let mut body = req.into_body();
                let mut digest = Digest::default();
                while let Some(Ok(f)) = body.frame().await {
                    if let Ok(d) = f.into_data() {
                        digest.update(&d);
                    }
                }
                Response::new(full(digest.answer()))
            }
            "/big" => {
                let n = query(&req, "n").unwrap_or(0);
                let block = block();
                let stream = futures_util::stream::unfold(0u64, move |at| {
                    let block = block.clone();
                    async move {
                        if at >= n {
                            return None;
                        }
                        let len = (n - at).min(BLOCK as u64);
                        Some((Ok(Frame::data(block.slice(..len as usize))), at + len))
                    }
                });
                Response::new(BodyExt::boxed(StreamBody::new(stream)))
            }
            "/slow" => {
                let ms = query(&req, "ms").unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Response::new(full("slow"))
            }
            "/hop" => {
                let mut r = Response::new(full("hop"));
                let h = r.headers_mut();
                h.insert("connection", "x-hop".parse().unwrap());
                h.insert("x-hop", "1".parse().unwrap());
                h.insert("keep-alive", "timeout=5".parse().unwrap());
                h.insert("x-kept", "1".parse().unwrap());
                r
            }
            "/early" => {
                let mut r = Response::new(full("no thanks"));
                *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                r
            }
            "/close" => {
                let mut r = Response::new(full("bye"));
                r.headers_mut()
                    .insert("connection", "close".parse().unwrap());
                r
            }
            p => Response::new(full(format!("{name} {p}"))),
        }
    };
    resp.headers_mut()
        .insert("x-backend", name.parse().unwrap());
    resp
}

/// A 101 for a WebSocket upgrade, then an echo on the upgraded connection.
fn upgrade(req: &mut Request<Incoming>) -> Response<Body> {
    let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(up),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(m)) = ws.next().await {
            if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                break;
            }
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("connection", "Upgrade".parse().unwrap());
    h.insert("sec-websocket-accept", accept.parse().unwrap());
    r
}

/// Reads one response off a kept-alive connection: its head, then a body framed by
/// Content-Length or chunked (decoded), none (HEAD, 1xx, 204, 304), or, with
/// neither header, everything until the connection ends.
pub async fn read_http<S: AsyncRead + Unpin>(s: &mut S, head_request: bool) -> RawResponse {
    let (status, headers) = super::read_head(s).await;
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    let no_body = head_request || status < 200 || status == 204 || status == 304;
    if no_body {
    } else if let Some(n) = get("content-length") {
        body.resize(n.parse().unwrap(), 0);
        within("response body", s.read_exact(&mut body))
            .await
            .unwrap();
    } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        body = read_chunked(s).await;
    } else {
        let _ = within("response body to EOF", s.read_to_end(&mut body)).await;
    }
    RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

async fn line<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut l = Vec::new();
    let mut b = [0u8; 1];
    while !l.ends_with(b"\r\n") {
        within_line(s, &mut b).await;
        l.push(b[0]);
    }
    String::from_utf8_lossy(&l[..l.len() - 2]).to_string()
}

async fn within_line<S: AsyncRead + Unpin>(s: &mut S, b: &mut [u8; 1]) {
    let n = tokio::time::timeout(DEADLINE, s.read(b))
        .await
        .expect("chunked body in time")
        .unwrap();
    assert_eq!(n, 1, "connection closed inside a chunked body");
}

/// A chunked body, decoded (trailers skipped).
pub async fn read_chunked<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let size = line(s).await;
        let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if n == 0 {
            while !line(s).await.is_empty() {}
            return out;
        }
        let at = out.len();
        out.resize(at + n, 0);
        within("chunk", s.read_exact(&mut out[at..])).await.unwrap();
        assert_eq!(line(s).await, "", "chunk not followed by CRLF");
    }
}

/// A proxy config: `[[pool]]` named `name` with `backends` and a catch-all route with
/// `http = "proxy"` and `route_extra` lines.
pub fn http_pool(
    name: &str,
    balance: &str,
    backends: &[SocketAddr],
    pool_extra: &str,
    route_extra: &str,
) -> String {
    let mut s = format!(
        r#"[[pool]]
name = "{name}"
balance = "{balance}"
{pool_extra}
"#
    );
    for a in backends {
        s += &format!(
            r#"[[pool.backend]]
address = "{a}"
"#
        );
    }
    s += &format!(
        r#"
[[route]]
pool = "{name}"
http = "proxy"
{route_extra}
"#
    );
    s
}
