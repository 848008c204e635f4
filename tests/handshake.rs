//! The upgrade handshake as a client and a backend see it, over real TLS on
//! loopback: every refusal's status, headers and one-line body; the Origin
//! allowlist; the checks on a backend's answer; the request a backend receives;
//! the header and head-size limits.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A proxy with one echo backend behind a catch-all route, plus `more` config.
async fn proxy_to_echo(more: &str) -> (Proxy, EchoServer) {
    let e = echo("e").await;
    let p = start_proxy(&format!(
        "{}{more}",
        pool_and_route("p", "round_robin", &[(e.addr, 1)])
    ))
    .await;
    (p, e)
}

/// A proxy whose catch-all route goes to `backend`.
async fn proxy_to(backend: SocketAddr) -> Proxy {
    start_proxy(&pool_and_route("p", "round_robin", &[(backend, 1)])).await
}

/// A proxy with `[server]` settings in front of the usual listener and `rest`.
async fn proxy_with_server(server: &str, rest: &str) -> Proxy {
    start_proxy_raw(&format!("[server]\n{server}\n{}", config_text(rest))).await
}

/// Asserts a refusal wsgate wrote itself: `status`, plain text, a single
/// non-empty line that contains `says`, and `Connection: close`.
fn assert_refusal(r: &RawResponse, status: u16, says: &str) {
    assert_refusal_text(r, status, says);
    assert!(connection_has(r, "close"), "no Connection: close: {r:?}");
}

fn connection_has(r: &RawResponse, token: &str) -> bool {
    r.header("connection")
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Status, plain text, one non-empty line containing `says`.
fn assert_refusal_text(r: &RawResponse, status: u16, says: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "not plain text: {r:?}"
    );
    let line = r.body.strip_suffix('\n').unwrap_or(&r.body);
    assert!(
        !line.is_empty() && !line.contains('\n') && !line.contains('\r'),
        "body is not one line: {:?}",
        r.body
    );
    assert!(line.contains(says), "body {:?} lacks {says:?}", r.body);
}

/// An upgrade head with `Host: localhost`, `first_line`, and every other header
/// given by the caller (so a test can leave any of them out).
fn head(first_line: &str, headers: &[&str]) -> String {
    let mut s = format!("{first_line}\r\n");
    for h in headers {
        s += h;
        s += "\r\n";
    }
    s + "\r\n"
}

const HOST: &str = "Host: localhost";
const UPGRADE: &str = "Upgrade: websocket";
const CONN: &str = "Connection: Upgrade";
const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
const VERSION: &str = "Sec-WebSocket-Version: 13";

// ---------------------------------------------------------------------------
// The client's request.

#[tokio::test]
async fn post_is_405_with_allow_get() {
    let (p, _e) = proxy_to_echo("").await;
    let r = raw_http(
        p.addr,
        head("POST / HTTP/1.1", &[HOST, UPGRADE, CONN, KEY, VERSION]).as_bytes(),
    )
    .await;
    assert_refusal(&r, 405, "GET");
    assert_eq!(r.header("allow"), Some("GET"));
}

#[tokio::test]
async fn http_1_0_is_505() {
    let (p, _e) = proxy_to_echo("").await;
    let r = raw_http(
        p.addr,
        head("GET / HTTP/1.0", &[HOST, UPGRADE, CONN, KEY, VERSION]).as_bytes(),
    )
    .await;
    assert_refusal(&r, 505, "HTTP/1.1");
}

#[tokio::test]
async fn plain_get_is_426_with_upgrade_websocket() {
    let (p, _e) = proxy_to_echo("").await;
    let r = raw_http(p.addr, head("GET / HTTP/1.1", &[HOST]).as_bytes()).await;
    assert_refusal_text(&r, 426, "WebSocket");
    assert_eq!(r.header("upgrade"), Some("websocket"));
    // RFC 9110 section 7.8: whoever sends Upgrade also lists it in Connection.
    assert!(connection_has(&r, "upgrade"), "{r:?}");
}

#[tokio::test]
async fn plain_get_426_closes_the_connection() {
    let (p, _e) = proxy_to_echo("").await;
    let mut s = tls_connect(p.addr).await;
    write_all(&mut s, head("GET / HTTP/1.1", &[HOST]).as_bytes()).await;
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 426, "{r:?}");
    assert!(connection_has(&r, "close"), "no Connection: close: {r:?}");
    // One request per connection: a second one must not be served.
    let _ = s.write_all(upgrade_head("/", "").as_bytes()).await;
    let mut rest = Vec::new();
    let end = within_for(Duration::from_secs(3), "close after 426", async {
        s.read_to_end(&mut rest).await
    })
    .await;
    assert!(
        end.is_err() || rest.is_empty(),
        "served a second request: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn connection_keep_alive_alone_is_400() {
    let (p, _e) = proxy_to_echo("").await;
    let r = raw_http(
        p.addr,
        head(
            "GET / HTTP/1.1",
            &[HOST, UPGRADE, "Connection: keep-alive", KEY, VERSION],
        )
        .as_bytes(),
    )
    .await;
    assert_refusal(&r, 400, "Connection");
}

#[tokio::test]
async fn connection_keep_alive_upgrade_is_101() {
    let (p, _e) = proxy_to_echo("").await;
    let r = raw_http(
        p.addr,
        head(
            "GET / HTTP/1.1",
            &[
                HOST,
                UPGRADE,
                "Connection: keep-alive, Upgrade",
                KEY,
                VERSION,
            ],
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 101, "{r:?}");
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

#[tokio::test]
async fn missing_host_is_400() {
    let (p, _e) = proxy_to_echo("").await;
    let r = raw_http(
        p.addr,
        head("GET / HTTP/1.1", &[UPGRADE, CONN, KEY, VERSION]).as_bytes(),
    )
    .await;
    assert_refusal(&r, 400, "Host");
}

#[tokio::test]
async fn key_not_16_bytes_is_400() {
    let (p, _e) = proxy_to_echo("").await;
    // base64 of the 5 bytes "short"
    let r = raw_http(
        p.addr,
        head(
            "GET / HTTP/1.1",
            &[HOST, UPGRADE, CONN, "Sec-WebSocket-Key: c2hvcnQ=", VERSION],
        )
        .as_bytes(),
    )
    .await;
    assert_refusal(&r, 400, "Sec-WebSocket-Key");
}

#[tokio::test]
async fn version_8_is_426_with_version_13() {
    let (p, _e) = proxy_to_echo("").await;
    let r = raw_http(
        p.addr,
        head(
            "GET / HTTP/1.1",
            &[HOST, UPGRADE, CONN, KEY, "Sec-WebSocket-Version: 8"],
        )
        .as_bytes(),
    )
    .await;
    assert_refusal(&r, 426, "Sec-WebSocket-Version");
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
}

#[tokio::test]
async fn request_with_a_body_is_400() {
    let (p, _e) = proxy_to_echo("").await;
    let mut req = head(
        "GET / HTTP/1.1",
        &[HOST, UPGRADE, CONN, KEY, VERSION, "Content-Length: 5"],
    );
    req += "hello";
    let r = raw_http(p.addr, req.as_bytes()).await;
    assert_refusal(&r, 400, "body");
}

#[tokio::test]
async fn unrouted_host_is_404() {
    let e = echo("e").await;
    let p = start_proxy(&format!(
        "[[pool]]\nname = \"p\"\n[[pool.backend]]\naddress = \"{}\"\n\n\
         [[route]]\nhost = \"only.example\"\npool = \"p\"\n",
        e.addr
    ))
    .await;
    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    assert_refusal(&r, 404, "route");
    // The same request for the routed host goes through.
    let r = raw_http(
        p.addr,
        upgrade_head("/", "")
            .replace(HOST, "Host: only.example")
            .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 101, "{r:?}");
}

#[tokio::test]
async fn half_a_head_gets_408_after_header_read_timeout() {
    let e = echo("e").await;
    let p = proxy_with_server(
        "header_read_timeout = \"300ms\"",
        &pool_and_route("p", "round_robin", &[(e.addr, 1)]),
    )
    .await;
    let mut s = tls_connect(p.addr).await;
    let started = Instant::now();
    write_all(&mut s, b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgr").await;
    let r = read_response(&mut s).await;
    let waited = started.elapsed();
    assert_refusal(&r, 408, "in time");
    assert!(
        waited >= Duration::from_millis(250),
        "408 came before the deadline, after {waited:?}"
    );
    // The proxy closed the connection after its answer.
    let mut rest = Vec::new();
    let n = within("close after 408", s.read_to_end(&mut rest)).await;
    assert!(n.map_or(true, |n| n == 0), "bytes after the 408: {rest:?}");
}

#[tokio::test]
async fn head_over_max_header_bytes_is_431() {
    let e = echo("e").await;
    let p = proxy_with_server(
        "max_header_bytes = 2048",
        &pool_and_route("p", "round_robin", &[(e.addr, 1)]),
    )
    .await;
    let big = format!("X-Big: {}\r\n", "a".repeat(4096));
    let r = raw_http(p.addr, upgrade_head("/", &big).as_bytes()).await;
    assert_eq!(r.status, 431, "{r:?}");
    assert!(connection_has(&r, "close"), "{r:?}");
    // Under the limit, the same settings let an upgrade through.
    let small = format!("X-Small: {}\r\n", "a".repeat(512));
    let r = raw_http(p.addr, upgrade_head("/", &small).as_bytes()).await;
    assert_eq!(r.status, 101, "{r:?}");
}

#[tokio::test]
async fn header_timeout_does_not_end_an_open_session() {
    let e = echo("e").await;
    let p = proxy_with_server(
        "header_read_timeout = \"300ms\"",
        &pool_and_route("p", "round_robin", &[(e.addr, 1)]),
    )
    .await;
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    // Waiting is the point here: well past the header deadline.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    within("send after the wait", ws.send(Message::text("still here")))
        .await
        .unwrap();
    let m = within("echo after the wait", ws.next())
        .await
        .expect("session still open")
        .unwrap();
    assert_eq!(m, Message::text("still here"));
    assert_eq!(p.running.live_sessions(), 1);
}

#[tokio::test]
async fn head_over_max_header_bytes_431_has_a_text_body() {
    let e = echo("e").await;
    let p = proxy_with_server(
        "max_header_bytes = 2048",
        &pool_and_route("p", "round_robin", &[(e.addr, 1)]),
    )
    .await;
    let big = format!("X-Big: {}\r\n", "a".repeat(4096));
    let r = raw_http(p.addr, upgrade_head("/", &big).as_bytes()).await;
    assert_refusal(&r, 431, "header");
}

// ---------------------------------------------------------------------------
// Origin allowlist.

async fn origin_proxy(allow_missing: bool) -> (Proxy, EchoServer) {
    let e = echo("e").await;
    let mut route = format!(
        "[[pool]]\nname = \"p\"\n[[pool.backend]]\naddress = \"{}\"\n\n[[route]]\npool = \"p\"\n\
         allowed_origins = [\"https://app.example.com\", \"https://*.example.org\"]\n",
        e.addr
    );
    if allow_missing {
        route += "allow_missing_origin = true\n";
    }
    (start_proxy(&route).await, e)
}

async fn with_origin(p: &Proxy, origin: Option<&str>) -> RawResponse {
    let extra = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    raw_http(p.addr, upgrade_head("/", &extra).as_bytes()).await
}

#[tokio::test]
async fn origin_exact_and_wildcard_pass() {
    let (p, _e) = origin_proxy(false).await;
    let r = with_origin(&p, Some("https://app.example.com")).await;
    assert_eq!(r.status, 101, "{r:?}");
    let r = with_origin(&p, Some("https://chat.example.org")).await;
    assert_eq!(r.status, 101, "{r:?}");
}

#[tokio::test]
async fn origin_not_listed_is_403() {
    let (p, _e) = origin_proxy(false).await;
    let r = with_origin(&p, Some("https://evil.com")).await;
    assert_refusal(&r, 403, "Origin");
    // The bare parent of the wildcard is not a subdomain of it.
    let r = with_origin(&p, Some("https://example.org")).await;
    assert_refusal(&r, 403, "Origin");
}

#[tokio::test]
async fn origin_missing_is_403_unless_allowed() {
    let (p, _e) = origin_proxy(false).await;
    let r = with_origin(&p, None).await;
    assert_refusal(&r, 403, "Origin");
    let (p, _e) = origin_proxy(true).await;
    let r = with_origin(&p, None).await;
    assert_eq!(r.status, 101, "{r:?}");
    // allow_missing_origin does not open the door to a wrong Origin.
    let r = with_origin(&p, Some("https://evil.com")).await;
    assert_refusal(&r, 403, "Origin");
}

// ---------------------------------------------------------------------------
// The backend's answer.

/// Holds a scripted backend's socket open until the proxy closes it.
async fn hold_until_closed(s: &mut TcpStream) {
    let mut b = [0u8; 256];
    while let Ok(Ok(n)) = tokio::time::timeout(DEADLINE, s.read(&mut b)).await {
        if n == 0 {
            break;
        }
    }
}

#[tokio::test]
async fn wrong_accept_from_backend_is_502() {
    let b = raw_backend(|_head, mut s| async move {
        let _ = s
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
            )
            .await;
        hold_until_closed(&mut s).await;
    })
    .await;
    let p = proxy_to(b.addr).await;
    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    assert_refusal(&r, 502, "Accept");
}

#[tokio::test]
async fn subprotocol_not_offered_is_502() {
    let b = raw_backend(|head, mut s| async move {
        let resp = switching(&head, "Sec-WebSocket-Protocol: superchat\r\n");
        let _ = s.write_all(resp.as_bytes()).await;
        hold_until_closed(&mut s).await;
    })
    .await;
    let p = proxy_to(b.addr).await;
    let r = raw_http(
        p.addr,
        upgrade_head("/", "Sec-WebSocket-Protocol: chat\r\n").as_bytes(),
    )
    .await;
    assert_refusal(&r, 502, "subprotocol");
}

#[tokio::test]
async fn backend_refusal_is_passed_through() {
    let b = raw_backend(|_head, mut s| async move {
        let _ = s
            .write_all(
                b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nnope",
            )
            .await;
        hold_until_closed(&mut s).await;
    })
    .await;
    let p = proxy_to(b.addr).await;
    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body, "nope");
}

#[tokio::test]
async fn refused_backend_connection_is_502() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap();
    drop(l);
    let p = proxy_to(dead).await;
    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    assert_refusal(&r, 502, "unreachable");
    assert!(!r.body.contains(&dead.to_string()), "leaks the address");
}

// ---------------------------------------------------------------------------
// The request a backend receives.

/// A backend that reports each request head and accepts the upgrade.
async fn recording_backend() -> (RawBackend, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let b = raw_backend(move |head, mut s| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(head.clone());
            let _ = s.write_all(switching(&head, "").as_bytes()).await;
            hold_until_closed(&mut s).await;
        }
    })
    .await;
    (b, rx)
}

#[tokio::test]
async fn forwarded_request_headers() {
    let (b, mut heads) = recording_backend().await;
    let p = proxy_to(b.addr).await;
    let req = head(
        "GET /chat?room=1 HTTP/1.1",
        &[
            HOST,
            UPGRADE,
            "Connection: Upgrade, X-Hop",
            KEY,
            VERSION,
            "X-Hop: 1",
            "Keep-Alive: 5",
            "Proxy-Authorization: x",
            "Cookie: session=abc",
        ],
    );
    let r = raw_http(p.addr, req.as_bytes()).await;
    assert_eq!(r.status, 101, "{r:?}");
    let seen = within("forwarded head", heads.recv()).await.unwrap();
    assert!(
        seen.starts_with("GET /chat?room=1 HTTP/1.1\r\n"),
        "{seen:?}"
    );
    let h = |n: &str| head_header(&seen, n);
    assert_eq!(h("host").as_deref(), Some("localhost"), "{seen}");
    assert_eq!(h("x-forwarded-for").as_deref(), Some("127.0.0.1"), "{seen}");
    assert_eq!(h("x-real-ip").as_deref(), Some("127.0.0.1"), "{seen}");
    assert_eq!(h("x-forwarded-proto").as_deref(), Some("https"), "{seen}");
    assert_eq!(
        h("x-forwarded-host").as_deref(),
        Some("localhost"),
        "{seen}"
    );
    assert_eq!(h("cookie").as_deref(), Some("session=abc"), "{seen}");
    assert_eq!(h("upgrade").as_deref(), Some("websocket"), "{seen}");
    assert_eq!(h("connection").as_deref(), Some("Upgrade"), "{seen}");
    for gone in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert_eq!(h(gone), None, "{gone} was forwarded:\n{seen}");
    }
}

#[tokio::test]
async fn pool_host_header_replaces_host() {
    let (b, mut heads) = recording_backend().await;
    let p = start_proxy(&format!(
        "[[pool]]\nname = \"p\"\nhost_header = \"backend.internal\"\n\
         [[pool.backend]]\naddress = \"{}\"\n\n[[route]]\npool = \"p\"\n",
        b.addr
    ))
    .await;
    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    assert_eq!(r.status, 101, "{r:?}");
    let seen = within("forwarded head", heads.recv()).await.unwrap();
    assert_eq!(
        head_header(&seen, "host").as_deref(),
        Some("backend.internal")
    );
    assert_eq!(
        head_header(&seen, "x-forwarded-host").as_deref(),
        Some("localhost")
    );
}
