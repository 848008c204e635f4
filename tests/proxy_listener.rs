//! PROXY protocol on a real TLS listener and toward a real backend: the header's
//! source becomes the client (X-Forwarded-For, X-Real-IP, per-IP admission, the
//! header wsgate writes to the backend); untrusted peers and connections without a
//! valid header are closed and counted; LOCAL keeps the connection's own address;
//! health checks of a `send_proxy_protocol` pool start with a LOCAL header.
mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::client::Response;
use wsgate::accept::proxy_proto::{self, Version};

/// What the backend saw on one connection: the PROXY header as ppp read it
/// (`None`: there was none) and the request head.
#[derive(Debug, Clone)]
struct Seen {
    proxy: Option<String>,
    head: String,
}

/// A backend that reads an optional PROXY header with ppp (independent of our
/// parser), then the request head, and answers 101 with what it saw in
/// `x-proxy` and `x-seen-xff` / `x-seen-real-ip` headers.
async fn proxy_backend() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 1];
                let mut proxy = None;
                // The header, byte by byte, until ppp has a complete one.
                loop {
                    match s.read(&mut b).await {
                        Ok(1) => buf.push(b[0]),
                        _ => {
                            if let Some(p) = header_text(&buf) {
                                log.lock().unwrap().push(Seen {
                                    proxy: Some(p),
                                    head: String::new(),
                                });
                            }
                            return;
                        }
                    }
                    if buf[0] == b'G' {
                        break;
                    }
                    if let Some(p) = header_text(&buf) {
                        proxy = Some(p);
                        buf.clear();
                        break;
                    }
                }
                while !buf.ends_with(b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(1) => buf.push(b[0]),
                        _ => {
                            // A health check: the header, then nothing.
                            log.lock().unwrap().push(Seen {
                                proxy,
                                head: String::from_utf8_lossy(&buf).to_string(),
                            });
                            return;
                        }
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let xff = head_header(&head, "x-forwarded-for").unwrap_or_default();
                let xri = head_header(&head, "x-real-ip").unwrap_or_default();
                let p = proxy.clone().unwrap_or_else(|| "none".into());
                log.lock().unwrap().push(Seen {
                    proxy,
                    head: head.clone(),
                });
                let answer = switching(
                    &head,
                    &format!("x-proxy: {p}\r\nx-seen-xff: {xff}\r\nx-seen-real-ip: {xri}\r\n"),
                );
                let _ = s.write_all(answer.as_bytes()).await;
                let mut sink = [0u8; 256];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    (addr, seen)
}

/// ppp's reading of a complete header: "src dst", "local" or "unknown".
fn header_text(buf: &[u8]) -> Option<String> {
    use ppp::{HeaderResult, PartialResult};
    // ppp judges a v1 line cut inside a port as complete (and invalid): whole lines only.
    if buf.first() == Some(&b'P') && !buf.ends_with(b"\n") {
        return None;
    }
    let r = HeaderResult::parse(buf);
    if r.is_incomplete() {
        return None;
    }
    Some(match r {
        HeaderResult::V1(Ok(h)) => match h.addresses {
            ppp::v1::Addresses::Tcp4(a) => format!(
                "v1 {}:{} {}:{}",
                a.source_address, a.source_port, a.destination_address, a.destination_port
            ),
            ppp::v1::Addresses::Tcp6(a) => format!(
                "v1 [{}]:{} [{}]:{}",
                a.source_address, a.source_port, a.destination_address, a.destination_port
            ),
            ppp::v1::Addresses::Unknown => "v1 unknown".into(),
        },
        HeaderResult::V2(Ok(h)) => match (h.command, h.addresses) {
            (ppp::v2::Command::Local, _) => "v2 local".into(),
            (_, ppp::v2::Addresses::IPv4(a)) => format!(
                "v2 {}:{} {}:{}",
                a.source_address, a.source_port, a.destination_address, a.destination_port
            ),
            (_, ppp::v2::Addresses::IPv6(a)) => format!(
                "v2 [{}]:{} [{}]:{}",
                a.source_address, a.source_port, a.destination_address, a.destination_port
            ),
            (_, a) => format!("v2 other {a:?}"),
        },
        other => format!("invalid {other:?}"),
    })
}

fn config(trusted: &str, limits: &str, pool_extra: &str, backend: SocketAddr) -> String {
    format!(
        r#"{limits}
[[listener]]
address = "127.0.0.1:0"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"
proxy_protocol = true
trusted_proxies = [{trusted}]

[[pool]]
name = "p"
{pool_extra}
[[pool.backend]]
address = "{backend}"

[[route]]
pool = "p"
"#
    )
}

/// Connects, sends `header`, then TLS and a WebSocket upgrade.
async fn connect_with_header(
    addr: SocketAddr,
    header: &[u8],
) -> Result<(Ws, Response), tokio_tungstenite::tungstenite::Error> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(header).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = within(
        "TLS after the PROXY header",
        tokio_rustls::TlsConnector::from(Arc::new(client_tls_config())).connect(name, tcp),
    )
    .await?;
    within(
        "WebSocket handshake",
        tokio_tungstenite::client_async(ws_request("/"), tls),
    )
    .await
}

fn h<'a>(r: &'a Response, n: &str) -> &'a str {
    r.headers()
        .get(n)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
}

/// The proxy closes the connection without a byte of TLS.
async fn closed_without_tls(addr: SocketAddr, first: &[u8]) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(first).await;
    let mut b = [0u8; 64];
    let n = within("the proxy closes", tcp.read(&mut b))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "expected a close, got {:?}", &b[..n]);
}

#[tokio::test]
async fn the_header_source_is_the_client_everywhere() {
    let (backend, seen) = proxy_backend().await;
    let p = start_proxy_raw(&config(
        "\"127.0.0.1/32\"",
        "",
        r#"send_proxy_protocol = "v2""#,
        backend,
    ))
    .await;
    let src: SocketAddr = "203.0.113.9:4444".parse().unwrap();
    let dst: SocketAddr = "198.51.100.1:443".parse().unwrap();
    for v in [Version::V1, Version::V2] {
        let (mut ws, r) = connect_with_header(p.addr, &proxy_proto::encode(v, src, dst))
            .await
            .expect("upgrade through a PROXY listener");
        assert_eq!(h(&r, "x-seen-xff"), "203.0.113.9");
        assert_eq!(h(&r, "x-seen-real-ip"), "203.0.113.9");
        assert_eq!(h(&r, "x-proxy"), "v2 203.0.113.9:4444 198.51.100.1:443");
        let _ = ws.close(None).await;
    }
    // IPv6 client, through a v1 pool.
    let (backend1, _) = proxy_backend().await;
    let p1 = start_proxy_raw(&config(
        "\"127.0.0.0/8\"",
        "",
        r#"send_proxy_protocol = "v1""#,
        backend1,
    ))
    .await;
    let src6: SocketAddr = "[2001:db8::7]:5555".parse().unwrap();
    let dst6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
    let (_ws, r) = connect_with_header(p1.addr, &proxy_proto::encode(Version::V2, src6, dst6))
        .await
        .unwrap();
    assert_eq!(h(&r, "x-seen-xff"), "2001:db8::7");
    assert_eq!(h(&r, "x-proxy"), "v1 [2001:db8::7]:5555 [2001:db8::1]:443");
    // LOCAL (a balancer's own connection): the TCP peer stays the client.
    let (_ws, r) = connect_with_header(p.addr, &proxy_proto::encode_local(Version::V2))
        .await
        .unwrap();
    assert_eq!(h(&r, "x-seen-xff"), "127.0.0.1");
    assert!(h(&r, "x-proxy").starts_with("v2 127.0.0.1:"), "{r:?}");
    let (_ws, r) = connect_with_header(p.addr, b"PROXY UNKNOWN\r\n")
        .await
        .unwrap();
    assert_eq!(h(&r, "x-seen-xff"), "127.0.0.1");
    assert!(seen.lock().unwrap().iter().all(|s| s.proxy.is_some()));
    // The forwarded request carries the header's address too.
    assert!(
        seen.lock().unwrap()[0]
            .head
            .contains("x-forwarded-for: 203.0.113.9")
    );
}

#[tokio::test]
async fn untrusted_peers_and_missing_headers_are_closed_and_counted() {
    let (backend, seen) = proxy_backend().await;
    let untrusted = start_proxy_raw(&config("\"10.0.0.0/8\"", "", "", backend)).await;
    let src: SocketAddr = "203.0.113.9:4444".parse().unwrap();
    closed_without_tls(untrusted.addr, &proxy_proto::encode(Version::V2, src, src)).await;
    let c = &untrusted.running.admission().counters;
    assert_eq!(c.untrusted_proxy.load(Ordering::Relaxed), 1);

    let p = start_proxy_raw(&config("\"127.0.0.1\"", "", "", backend)).await;
    // A TLS ClientHello where the header should be.
    closed_without_tls(p.addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").await;
    // A broken v1 line, a v2 header announcing too much.
    closed_without_tls(p.addr, b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n").await;
    let mut big = proxy_proto::V2_SIG.to_vec();
    big.extend_from_slice(&[0x21, 0x11, 0x10, 0x00]);
    closed_without_tls(p.addr, &big).await;
    let c = &p.running.admission().counters;
    assert_eq!(c.proxy_header.load(Ordering::Relaxed), 3);
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the backend"
    );
    // The proxy still serves a correct client after all that.
    connect_with_header(p.addr, &proxy_proto::encode(Version::V1, src, src))
        .await
        .expect("a valid header is served");
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_deadline() {
    let (backend, _) = proxy_backend().await;
    let text = config("\"127.0.0.1\"", "", "", backend).replace(
        "[[listener]]",
        r#"[server]
tls_handshake_timeout = "300ms"

[[listener]]"#,
    );
    let p = start_proxy_raw(&text).await;
    let mut tcp = TcpStream::connect(p.addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
    let mut b = [0u8; 8];
    let n = within("the header deadline", tcp.read(&mut b))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0);
    let c = &p.running.admission().counters;
    assert_eq!(c.proxy_header.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn per_ip_limits_apply_to_the_address_in_the_header() {
    let (backend, _) = proxy_backend().await;
    let p = start_proxy_raw(&config(
        "\"127.0.0.1\"",
        "[limits]\nmax_connections_per_ip = 1\nexempt = []\n",
        "",
        backend,
    ))
    .await;
    let dst: SocketAddr = "198.51.100.1:443".parse().unwrap();
    let a: SocketAddr = "203.0.113.1:1000".parse().unwrap();
    let b: SocketAddr = "203.0.113.2:1000".parse().unwrap();
    // All three come from 127.0.0.1; only the header tells them apart.
    let (_one, _) = connect_with_header(p.addr, &proxy_proto::encode(Version::V2, a, dst))
        .await
        .expect("first client of 203.0.113.1");
    let (_two, _) = connect_with_header(p.addr, &proxy_proto::encode(Version::V2, b, dst))
        .await
        .expect("first client of 203.0.113.2");
    closed_without_tls(p.addr, &proxy_proto::encode(Version::V2, a, dst)).await;
    let c = &p.running.admission().counters;
    assert_eq!(c.too_many_from_ip.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn health_checks_of_a_proxy_pool_send_a_local_header() {
    let (backend, seen) = proxy_backend().await;
    let p = start_proxy_raw(&config(
        "\"127.0.0.1\"",
        "",
        r#"send_proxy_protocol = "v2"
[pool.health]
kind = "tcp"
interval = "100ms"
timeout = "100ms"
"#,
        backend,
    ))
    .await;
    within("a health check with a LOCAL header", async {
        loop {
            if seen
                .lock()
                .unwrap()
                .iter()
                .any(|s| s.proxy.as_deref() == Some("v2 local"))
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(p);
}

/// A plain HTTP backend behind a PROXY pool: reads the header (ppp) once per
/// connection, then answers every request on it with `x-proxy` (what the header said)
/// and `x-conn` (the connection's number).
async fn plain_proxy_backend() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 1];
                let proxy = loop {
                    if !matches!(s.read(&mut b).await, Ok(1)) {
                        return;
                    }
                    buf.push(b[0]);
                    if buf[0] != b'P' && buf[0] != b'\r' {
                        break "none".to_string();
                    }
                    if let Some(p) = header_text(&buf) {
                        buf.clear();
                        break p;
                    }
                };
                loop {
                    while !buf.ends_with(b"\r\n\r\n") {
                        if !matches!(s.read(&mut b).await, Ok(1)) {
                            return;
                        }
                        buf.push(b[0]);
                    }
                    buf.clear();
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-proxy: {proxy}\r\nx-conn: {n}\r\n\r\n"
                    );
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns)
}

/// Plain HTTP requests on a `send_proxy_protocol` pool: each backend connection
/// starts with its own client's header, so none is shared between clients (nor
/// kept idle for the next one).
#[tokio::test]
async fn plain_http_backend_connections_carry_their_clients_header() {
    use tokio_rustls::client::TlsStream;
    let (backend, conns) = plain_proxy_backend().await;
    let text = config(
        "\"127.0.0.1/32\"",
        "",
        r#"send_proxy_protocol = "v2""#,
        backend,
    ) + r#"http = "proxy"
"#;
    let p = start_proxy_raw(&text).await;
    async fn client(addr: SocketAddr, src: SocketAddr) -> TlsStream<TcpStream> {
        let dst: SocketAddr = "198.51.100.1:443".parse().unwrap();
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&proxy_proto::encode(Version::V2, src, dst))
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        within(
            "TLS",
            tokio_rustls::TlsConnector::from(Arc::new(client_tls_config())).connect(name, tcp),
        )
        .await
        .unwrap()
    }
    async fn get(s: &mut TlsStream<TcpStream>) -> String {
        s.write_all(b"GET /x HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            let n = within("a response", s.read(&mut b)).await.unwrap();
            assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&got));
            got.push(b[0]);
        }
        let head = String::from_utf8_lossy(&got).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        head_header(&head, "x-proxy").unwrap_or_default()
    }
    let a: SocketAddr = "203.0.113.1:1111".parse().unwrap();
    let b: SocketAddr = "203.0.113.2:2222".parse().unwrap();
    let mut ca = client(p.addr, a).await;
    let mut cb = client(p.addr, b).await;
    for _ in 0..2 {
        assert_eq!(get(&mut ca).await, "v2 203.0.113.1:1111 198.51.100.1:443");
        assert_eq!(get(&mut cb).await, "v2 203.0.113.2:2222 198.51.100.1:443");
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        4,
        "one backend connection per request: none shared between clients"
    );
}
