//! Shared test support: a proxy on real TLS over loopback, real WebSocket clients
//! and backends, raw HTTP and raw frame I/O for the cases a polite client never sends.
#![allow(unreachable_pub)]
#![allow(dead_code)]
pub mod admin;
pub mod bin;
pub mod certs;
pub mod dns;
pub mod frames;
pub mod fuzz;
pub mod http;
pub mod jwt;
pub mod pki;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use wsgate::control::server::Running;
pub use wsgate::echo::EchoServer;

// The frame helpers keep their old paths (`common::op`, `common::read_frame`, ...).
#[allow(
    unused_imports,
    reason = "a test target that writes no raw frames uses none of them"
)]
pub use frames::*;

pub const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs-example");

/// Every wait in a test is bounded by this unless a test says otherwise.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Awaits `f`, failing the test (with `what`) if it takes longer than `DEADLINE`.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    within_for(DEADLINE, what, f).await
}

pub async fn within_for<T>(d: Duration, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {d:?} waiting for: {what}"),
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub running: Running,
}

/// A TLS listener on 127.0.0.1:0 with certs-example, followed by `rest`. Unless
/// `rest` has its own `[limits]`, loopback is exempt from the per-IP admission
/// limits (tests open many connections from 127.0.0.1 quickly).
pub fn config_text(rest: &str) -> String {
    let limits = if rest.contains("[limits]") {
        ""
    } else {
        r#"[limits]
exempt = ["127.0.0.0/8"]

"#
    };
    format!(
        r#"{limits}[[listener]]
address = "127.0.0.1:0"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"

{rest}"#
    )
}

/// Starts a proxy from `config_text(rest)`.
pub async fn start_proxy(rest: &str) -> Proxy {
    start_proxy_raw(&config_text(rest)).await
}

/// Starts a proxy from a whole config text.
pub async fn start_proxy_raw(text: &str) -> Proxy {
    let cfg = wsgate::config::Config::parse(text, Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    let running = wsgate::control::server::start(&cfg)
        .await
        .expect("proxy starts");
    Proxy {
        addr: running.local_addrs()[0],
        running,
    }
}

/// `[[pool]]` named `name` with `(address, weight)` backends, plus a catch-all route to it.
pub fn pool_and_route(name: &str, balance: &str, backends: &[(SocketAddr, u32)]) -> String {
    let mut s = format!(
        r#"[[pool]]
name = "{name}"
balance = "{balance}"
"#
    );
    for (a, w) in backends {
        s += &format!(
            r#"[[pool.backend]]
address = "{a}"
weight = {w}
"#
        );
    }
    s += &format!(
        r#"
[[route]]
pool = "{name}"
"#
    );
    s
}

pub async fn echo(name: &str) -> EchoServer {
    EchoServer::spawn("127.0.0.1:0".parse().unwrap(), name)
        .await
        .expect("echo backend starts")
}

/// A client TLS config that trusts only certs-example/ca.pem (so the proxy must serve
/// the intermediate).
pub fn client_tls_config() -> rustls::ClientConfig {
    client_tls_trusting(Path::new(&format!("{CERTS}/ca.pem")))
}

/// A client TLS config that trusts exactly the certificates in `ca`, ALPN http/1.1.
pub fn client_tls_trusting(ca: &Path) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg
}

pub async fn tls_connect_with(
    addr: SocketAddr,
    cfg: rustls::ClientConfig,
    from: Option<IpAddr>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = match from {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let s = TcpSocket::new_v4()?;
            s.bind(SocketAddr::new(ip, 0))?;
            s.connect(addr).await?
        }
    };
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
}

pub async fn tls_connect(addr: SocketAddr) -> TlsStream<TcpStream> {
    within(
        "TLS connect",
        tls_connect_with(addr, client_tls_config(), None),
    )
    .await
    .expect("TLS handshake")
}

pub type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// Closes a session properly: our Close, then read until the peer's Close ends the
/// stream (within the default deadline).
pub async fn close_session(mut ws: Ws) {
    use futures_util::StreamExt;
    within("close handshake", async {
        ws.close(None).await.expect("send Close");
        while let Some(m) = ws.next().await {
            let m = m.expect("clean end of the session");
            assert!(m.is_close(), "unexpected message while closing: {m:?}");
        }
    })
    .await
}

/// A WebSocket request for `wss://localhost{path}`, to add headers to.
pub fn ws_request(path: &str) -> Request {
    format!("wss://localhost{path}")
        .into_client_request()
        .unwrap()
}

/// Opens a WebSocket through the proxy, optionally from a given source address.
pub async fn ws_connect_req(
    addr: SocketAddr,
    req: Request,
    from: Option<IpAddr>,
) -> Result<(Ws, Response), tokio_tungstenite::tungstenite::Error> {
    let tls = within(
        "TLS connect",
        tls_connect_with(addr, client_tls_config(), from),
    )
    .await?;
    within(
        "WebSocket handshake",
        tokio_tungstenite::client_async(req, tls),
    )
    .await
}

pub async fn ws_connect(addr: SocketAddr, path: &str) -> (Ws, Response) {
    ws_connect_req(addr, ws_request(path), None)
        .await
        .expect("WebSocket handshake through the proxy")
}

/// The `x-backend` header the echo backend sets: where a client landed.
pub fn landed(resp: &Response) -> String {
    resp.headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string()
}

/// A parsed HTTP response read raw off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes over TLS and reads the whole response until the proxy closes.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut s = tls_connect(addr).await;
    s.write_all(request).await.unwrap();
    s.flush().await.unwrap();
    read_response(&mut s).await
}

/// Reads a response head: its status and headers (names lower-cased).
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> (u16, Vec<(String, String)>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = within("response head", s.read(&mut byte))
            .await
            .unwrap_or(0);
        if n == 0 {
            panic!(
                "connection closed before a full response head: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers)
}

/// Reads a response head and its body (Content-Length or to EOF).
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> RawResponse {
    let (status, headers) = read_head(s).await;
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            within("response body", s.read_exact(&mut body))
                .await
                .unwrap();
        }
        None if status != 101 => {
            let _ = within("response body to EOF", s.read_to_end(&mut body)).await;
        }
        None => {}
    }
    RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

/// A minimal valid upgrade request head for `path`, with `extra` header lines.
pub fn upgrade_head(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A backend we script by hand: it reads the request head, then `handler` owns the socket.
pub struct RawBackend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn raw_backend<F, Fut>(handler: F) -> RawBackend
where
    F: Fn(String, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let h = handler.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(1) => head.push(b[0]),
                        _ => return,
                    }
                }
                h(String::from_utf8_lossy(&head).to_string(), s).await;
            });
        }
    });
    RawBackend { addr, task }
}

/// The value of header `name` in a raw request head.
pub fn head_header(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A correct 101 for a raw request head, with `extra` header lines.
pub fn switching(head: &str, extra: &str) -> String {
    let key = head_header(head, "sec-websocket-key").unwrap_or_default();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
}

/// Opens a raw WebSocket through the proxy: TLS, our own upgrade head, the 101 read.
/// Returns the stream positioned at the first frame.
pub async fn raw_ws(
    addr: SocketAddr,
    path: &str,
    extra: &str,
) -> (TlsStream<TcpStream>, RawResponse) {
    let mut s = tls_connect(addr).await;
    s.write_all(upgrade_head(path, extra).as_bytes())
        .await
        .unwrap();
    let resp = read_response(&mut s).await;
    (s, resp)
}

pub async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, b: &[u8]) {
    w.write_all(b).await.unwrap();
    w.flush().await.unwrap();
}

/// A raw backend that answers every upgrade with a plain 101 and hands the socket
/// to the test.
pub async fn handoff() -> (RawBackend, tokio::sync::mpsc::UnboundedReceiver<TcpStream>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let b = raw_backend(move |head, mut s| {
        let tx = tx.clone();
        async move {
            write_all(&mut s, switching(&head, "").as_bytes()).await;
            let _ = tx.send(s);
        }
    })
    .await;
    (b, rx)
}

/// A proxy in front of a handoff backend, and one raw client session through it.
pub struct RawSession {
    pub _backend: RawBackend,
    pub proxy: Proxy,
    pub client: TlsStream<TcpStream>,
    pub backend: TcpStream,
}

impl RawSession {
    /// `config` gets the backend's address and returns the whole proxy config text.
    pub async fn start(config: impl FnOnce(SocketAddr) -> String) -> RawSession {
        let (b, mut rx) = handoff().await;
        let proxy = start_proxy_raw(&config(b.addr)).await;
        let (client, resp) = raw_ws(proxy.addr, "/", "").await;
        assert_eq!(resp.status, 101);
        let backend = within("backend connection", rx.recv()).await.unwrap();
        RawSession {
            _backend: b,
            proxy,
            client,
            backend,
        }
    }
}

/// Everything `r` sends until a clean EOF.
pub async fn bytes_to_eof<R: AsyncRead + Unpin>(what: &str, r: &mut R) -> Vec<u8> {
    let mut v = Vec::new();
    within(what, r.read_to_end(&mut v))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    v
}

/// Waits (polling every 20 ms) until `f` holds, failing after `d`.
pub async fn eventually(d: Duration, what: &str, mut f: impl FnMut() -> bool) {
    within_for(d, what, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Runs table rows one after the other, each `(name, check)` in a task of its
/// own, and fails naming every row whose check panicked, with its message.
pub async fn run_rows<F>(rows: impl IntoIterator<Item = (&'static str, F)>)
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut failed = Vec::new();
    for (name, check) in rows {
        if let Err(e) = tokio::spawn(check).await {
            let e = e.into_panic();
            let why = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            failed.push(format!("{name}: {why}"));
        }
    }
    assert!(failed.is_empty(), "rows failed:\n{}", failed.join("\n"));
}
