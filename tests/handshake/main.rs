//! The upgrade handshake as a client and a backend see it, over real TLS on
//! loopback: every refusal's status, headers and one-line body (one table); the
//! requests that the same setups let through (another); the checks on a
//! backend's answer; the request a backend receives; the header deadline.

#[path = "../common/mod.rs"]
mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

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
    assert!(connection_has(r, "close"), "no Connection: close: {r:?}");
}

fn connection_has(r: &RawResponse, token: &str) -> bool {
    r.header("connection")
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// A request head: `first_line`, then exactly the header lines given (so a row
/// can leave any of them out).
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
/// The `Sec-WebSocket-Accept` for `KEY` (RFC 6455 section 1.3).
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// `GET /` with these header lines.
fn get(headers: &[&str]) -> String {
    head("GET / HTTP/1.1", headers)
}

/// A valid upgrade for `/` with one more header line.
fn upgrade_with(line: &str) -> String {
    upgrade_head("/", &format!("{line}\r\n"))
}

// ---------------------------------------------------------------------------
// What a row's proxy is set up with.

#[derive(Debug, Clone, Copy)]
enum Setup {
    /// A catch-all route to an echo backend.
    Echo,
    /// An echo backend routed for `Host: only.example` only.
    OnlyHost,
    /// A catch-all route to an echo backend, `max_header_bytes = 2048`.
    SmallHeads,
    /// A route with an Origin allowlist (`https://app.example.com`,
    /// `https://*.example.org`), with or without `allow_missing_origin`.
    Origins { allow_missing: bool },
    /// A backend whose 101 carries a wrong `Sec-WebSocket-Accept`.
    WrongAccept,
    /// A backend whose 101 picks the subprotocol `superchat`.
    PicksSuperchat,
    /// A backend address where nothing listens.
    DeadBackend,
}

/// A started row: the proxy, the backend kept alive for it, and the backend's
/// address (which no refusal may show the client).
struct Rig {
    proxy: Proxy,
    backend_addr: SocketAddr,
    _echo: Option<EchoServer>,
    _raw: Option<RawBackend>,
}

/// A backend that writes `answer(request head)` and holds the socket until the
/// proxy closes it.
async fn scripted(answer: fn(&str) -> String) -> RawBackend {
    raw_backend(move |head, mut s| async move {
        let _ = s.write_all(answer(&head).as_bytes()).await;
        hold_until_closed(&mut s).await;
    })
    .await
}

impl Setup {
    async fn start(self) -> Rig {
        let mut echo_backend = None;
        let mut raw = None;
        let backend_addr = match self {
            Setup::Echo | Setup::OnlyHost | Setup::SmallHeads | Setup::Origins { .. } => {
                echo_backend.insert(echo("e").await).addr
            }
            Setup::WrongAccept => {
                raw.insert(
                    scripted(|_| {
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\n\
                         Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
                            .to_string()
                    })
                    .await,
                )
                .addr
            }
            Setup::PicksSuperchat => {
                raw.insert(
                    scripted(|head| switching(head, "Sec-WebSocket-Protocol: superchat\r\n")).await,
                )
                .addr
            }
            Setup::DeadBackend => {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap()
            }
        };
        let a = backend_addr;
        let proxy = match self {
            Setup::OnlyHost => {
                start_proxy(&format!(
                    r#"
[[pool]]
name = "p"
[[pool.backend]]
address = "{a}"

[[route]]
host = "only.example"
pool = "p"
"#
                ))
                .await
            }
            Setup::SmallHeads => {
                proxy_with_server(
                    "max_header_bytes = 2048",
                    &pool_and_route("p", "round_robin", &[(a, 1)]),
                )
                .await
            }
            Setup::Origins { allow_missing } => {
                start_proxy(&format!(
                    r#"
[[pool]]
name = "p"
[[pool.backend]]
address = "{a}"

[[route]]
pool = "p"
allowed_origins = ["https://app.example.com", "https://*.example.org"]
allow_missing_origin = {allow_missing}
"#
                ))
                .await
            }
            _ => proxy_to(a).await,
        };
        Rig {
            proxy,
            backend_addr,
            _echo: echo_backend,
            _raw: raw,
        }
    }
}

// ---------------------------------------------------------------------------
// Refusals: one row each, all checked by `every_refusal_row`.

/// A request wsgate refuses with a one-line text body of its own: `status`, a
/// body containing `says`, `Connection: close` (plus any `connection` tokens),
/// exactly these `headers`, and never the backend's address.
struct Refusal {
    name: &'static str,
    setup: Setup,
    request: String,
    status: u16,
    says: &'static str,
    headers: &'static [(&'static str, &'static str)],
    connection: &'static [&'static str],
}

fn refused(
    name: &'static str,
    setup: Setup,
    request: String,
    status: u16,
    says: &'static str,
) -> Refusal {
    Refusal {
        name,
        setup,
        request,
        status,
        says,
        headers: &[],
        connection: &[],
    }
}

impl Refusal {
    fn headers(self, headers: &'static [(&'static str, &'static str)]) -> Refusal {
        Refusal { headers, ..self }
    }
    fn connection(self, connection: &'static [&'static str]) -> Refusal {
        Refusal { connection, ..self }
    }
}

#[expect(clippy::too_many_lines, reason = "a table: one row per refusal")]
fn refusals() -> Vec<Refusal> {
    use Setup::*;
    let all = [HOST, UPGRADE, CONN, KEY, VERSION];
    vec![
        refused("POST", Echo, head("POST / HTTP/1.1", &all), 405, "GET")
            .headers(&[("allow", "GET")]),
        refused(
            "HTTP/1.0",
            Echo,
            head("GET / HTTP/1.0", &all),
            505,
            "HTTP/1.1",
        ),
        // RFC 9110 section 7.8: whoever sends Upgrade also lists it in Connection.
        refused("a plain GET", Echo, get(&[HOST]), 426, "WebSocket")
            .headers(&[("upgrade", "websocket")])
            .connection(&["upgrade"]),
        refused(
            "Connection: keep-alive without Upgrade",
            Echo,
            get(&[HOST, UPGRADE, "Connection: keep-alive", KEY, VERSION]),
            400,
            "Connection",
        ),
        refused(
            "no Host",
            Echo,
            get(&[UPGRADE, CONN, KEY, VERSION]),
            400,
            "Host",
        ),
        // base64 of the 5 bytes "short"
        refused(
            "a key that is not 16 bytes",
            Echo,
            get(&[HOST, UPGRADE, CONN, "Sec-WebSocket-Key: c2hvcnQ=", VERSION]),
            400,
            "Sec-WebSocket-Key",
        ),
        refused(
            "version 8",
            Echo,
            get(&[HOST, UPGRADE, CONN, KEY, "Sec-WebSocket-Version: 8"]),
            426,
            "Sec-WebSocket-Version",
        )
        .headers(&[("sec-websocket-version", "13")]),
        refused(
            "a request with a body",
            Echo,
            get(&[HOST, UPGRADE, CONN, KEY, VERSION, "Content-Length: 5"]) + "hello",
            400,
            "body",
        ),
        refused(
            "an unrouted host",
            OnlyHost,
            upgrade_head("/", ""),
            404,
            "route",
        ),
        refused(
            "a head over max_header_bytes",
            SmallHeads,
            upgrade_with(&format!("X-Big: {}", "a".repeat(4096))),
            431,
            "header",
        ),
        refused(
            "an Origin not listed",
            Origins {
                allow_missing: false,
            },
            upgrade_with("Origin: https://evil.com"),
            403,
            "Origin",
        ),
        // The bare parent of the wildcard is not a subdomain of it.
        refused(
            "the wildcard's bare parent as Origin",
            Origins {
                allow_missing: false,
            },
            upgrade_with("Origin: https://example.org"),
            403,
            "Origin",
        ),
        refused(
            "no Origin",
            Origins {
                allow_missing: false,
            },
            upgrade_head("/", ""),
            403,
            "Origin",
        ),
        // allow_missing_origin does not open the door to a wrong Origin.
        refused(
            "an Origin not listed, missing ones allowed",
            Origins {
                allow_missing: true,
            },
            upgrade_with("Origin: https://evil.com"),
            403,
            "Origin",
        ),
        refused(
            "a backend's wrong Accept",
            WrongAccept,
            upgrade_head("/", ""),
            502,
            "Accept",
        ),
        refused(
            "a subprotocol the client did not offer",
            PicksSuperchat,
            upgrade_with("Sec-WebSocket-Protocol: chat"),
            502,
            "subprotocol",
        ),
        refused(
            "a backend that refuses connections",
            DeadBackend,
            upgrade_head("/", ""),
            502,
            "unreachable",
        ),
    ]
}

/// Sends one row's request to a proxy of its own and checks the answer.
async fn check_refusal(row: Refusal) {
    let rig = row.setup.start().await;
    let r = raw_http(rig.proxy.addr, row.request.as_bytes()).await;
    assert_refusal(&r, row.status, row.says);
    for (name, value) in row.headers {
        assert_eq!(r.header(name), Some(*value), "{name}: {r:?}");
    }
    for token in row.connection {
        assert!(connection_has(&r, token), "no {token} in Connection: {r:?}");
    }
    let backend = rig.backend_addr.to_string();
    assert!(
        !r.body.contains(&backend),
        "leaks the backend address: {r:?}"
    );
}

#[tokio::test]
async fn every_refusal_row() {
    run_rows(refusals().into_iter().map(|r| (r.name, check_refusal(r)))).await;
}

// ---------------------------------------------------------------------------
// The same setups let these through: 101 with the right Accept.

fn accepted() -> Vec<(&'static str, Setup, String)> {
    use Setup::*;
    vec![
        (
            "Connection: keep-alive, Upgrade",
            Echo,
            get(&[
                HOST,
                UPGRADE,
                "Connection: keep-alive, Upgrade",
                KEY,
                VERSION,
            ]),
        ),
        (
            "the routed host",
            OnlyHost,
            upgrade_head("/", "").replace(HOST, "Host: only.example"),
        ),
        (
            "a head under max_header_bytes",
            SmallHeads,
            upgrade_with(&format!("X-Small: {}", "a".repeat(512))),
        ),
        (
            "an exact Origin",
            Origins {
                allow_missing: false,
            },
            upgrade_with("Origin: https://app.example.com"),
        ),
        (
            "an Origin under the wildcard",
            Origins {
                allow_missing: false,
            },
            upgrade_with("Origin: https://chat.example.org"),
        ),
        (
            "no Origin, missing ones allowed",
            Origins {
                allow_missing: true,
            },
            upgrade_head("/", ""),
        ),
    ]
}

#[tokio::test]
async fn every_accepted_row() {
    run_rows(accepted().into_iter().map(|(name, setup, request)| {
        (name, async move {
            let rig = setup.start().await;
            let r = raw_http(rig.proxy.addr, request.as_bytes()).await;
            assert_eq!(r.status, 101, "{r:?}");
            assert_eq!(r.header("sec-websocket-accept"), Some(ACCEPT), "{r:?}");
        })
    }))
    .await;
}

// ---------------------------------------------------------------------------
// More than a status: one request per connection, the header deadline.

#[tokio::test]
async fn plain_get_426_closes_the_connection() {
    let rig = Setup::Echo.start().await;
    let mut s = tls_connect(rig.proxy.addr).await;
    write_all(&mut s, get(&[HOST]).as_bytes()).await;
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
async fn half_a_head_gets_408_after_header_read_timeout() {
    let e = echo("e").await;
    let p = proxy_with_server(
        r#"header_read_timeout = "300ms""#,
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
async fn header_timeout_does_not_end_an_open_session() {
    let e = echo("e").await;
    let p = proxy_with_server(
        r#"header_read_timeout = "300ms""#,
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
        r#"[[pool]]
name = "p"
host_header = "backend.internal"
[[pool.backend]]
address = "{}"

[[route]]
pool = "p"
"#,
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
