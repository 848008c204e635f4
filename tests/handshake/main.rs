//! The upgrade handshake as a client and a backend see it, over real TLS on
//! loopback: every refusal's status, headers and one-line body (one table); the
//! requests that the same setups let through (another); the checks on a
//! backend's answer; the request a backend receives; the header deadline.

mod accepted;
mod backend;
#[path = "../common/mod.rs"]
mod common;
mod connection;
mod refusals;

use common::*;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Holds a scripted backend's socket open until the proxy closes it.
async fn hold_until_closed(s: &mut TcpStream) {
    let mut b = [0u8; 256];
    while let Ok(Ok(n)) = tokio::time::timeout(DEADLINE, s.read(&mut b)).await {
        if n == 0 {
            break;
        }
    }
}
