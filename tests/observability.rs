//! The admin interface and the access log on the real binary and a real proxy:
//! `/readyz` turns 503 at SIGTERM before any session is closed, `/backends` follows
//! a backend killed and restarted, JSON access log lines parse and carry their
//! fields, and secrets planted in a session (cookie, Authorization, a query token,
//! Sec-WebSocket-Key, the payload) appear in no log line and no admin answer.
//! `wsgate_sessions_active` has a 0 series for each configured route × backend from
//! the start, and loses one only when a reload removed it and its sessions ended.
mod common;
use common::admin;
use common::bin::{Bin, bin_config};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const ADMIN: &str = r#"[admin]
address = "127.0.0.1:0"
"#;

fn chat_route(backend: SocketAddr) -> String {
    format!(
        r#"[[pool]]
name = "p"
[[pool.backend]]
address = "{backend}"

[[route]]
name = "chat"
path_prefix = "/chat"
pool = "p"
"#
    )
}

async fn poll<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    within(what, async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn readyz_turns_503_at_sigterm_before_any_session_is_closed() {
    let backend = echo("e").await;
    let config = bin_config(
        0,
        &format!(
            r#"[server]
drain_spread = "0s"
shutdown_grace = "1s"
{ADMIN}
{}"#,
            chat_route(backend.addr)
        ),
    );
    let mut b = Bin::start("readyz", &config).await;
    let adm = b.admin_addr().expect("admin address in the log");
    assert_eq!(admin::get(adm, "/readyz").await.status, 200);
    assert_eq!(admin::get(adm, "/healthz").await.status, 200);
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(ws_connect(b.addr(), "/chat").await.0);
    }
    b.signal(libc::SIGTERM);
    let t0 = Instant::now();
    let flipped = poll("/readyz to answer 503", async || {
        (admin::get(adm, "/readyz").await.status == 503).then(Instant::now)
    })
    .await;
    for (i, ws) in sessions.iter_mut().enumerate() {
        let early = tokio::time::timeout(Duration::from_millis(1), ws.next()).await;
        assert!(
            early.is_err(),
            "session {i} got {early:?} before /readyz turned 503"
        );
    }
    // Still not ready, still serving the admin interface, sessions still open.
    assert_eq!(admin::get(adm, "/readyz").await.status, 503);
    assert_eq!(admin::get(adm, "/healthz").await.status, 200);
    for ws in &mut sessions {
        let m = within("the drain's Close", ws.next()).await;
        match m {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Away),
            other => panic!("expected Close 1001, got {other:?}"),
        }
    }
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "sessions were closed during shutdown_grace"
    );
    assert!(flipped.duration_since(t0) < Duration::from_secs(1));
    b.exit_within(DEADLINE).await;
}

async fn backend_state(adm: SocketAddr, addr: &str) -> (String, Value) {
    let r = admin::get(adm, "/backends").await;
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_str(&r.body).expect("JSON");
    let b = v["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == addr)
        .cloned()
        .unwrap_or_else(|| panic!("{addr} not in {v}"));
    (b["state"].as_str().unwrap().to_string(), b)
}

#[tokio::test]
async fn backends_follows_a_backend_killed_and_restarted() {
    let e = echo("e").await;
    let addr = e.addr;
    let other = echo("o").await;
    let p = start_proxy(&format!(
        r#"{ADMIN}[[pool]]
name = "p"
[pool.health]
kind = "websocket"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1
[[pool.backend]]
address = "{addr}"
[[pool.backend]]
address = "{}"

[[route]]
pool = "p"
"#,
        other.addr
    ))
    .await;
    let adm = p.running.admin_addr().unwrap();
    let key = addr.to_string();
    let (_, up) = poll("a first check", async || {
        let (s, b) = backend_state(adm, &key).await;
        (s == "up" && b["last_check"]["result"] == "ok").then_some((s, b))
    })
    .await;
    assert!(up["last_check"]["time"].as_str().unwrap().ends_with('Z'));
    let (ws, _) = ws_connect(p.addr, "/").await;
    let with_session = backend_state(adm, &key).await.1["sessions"]
        .as_u64()
        .unwrap()
        + backend_state(adm, &other.addr.to_string()).await.1["sessions"]
            .as_u64()
            .unwrap();
    assert_eq!(with_session, 1);
    drop(ws);

    drop(e);
    let down = poll("the killed backend to show down", async || {
        let (s, b) = backend_state(adm, &key).await;
        (s == "down").then_some(b)
    })
    .await;
    assert_eq!(down["last_check"]["result"], "failed");
    assert!(down["last_check"]["error"].as_str().unwrap().len() > 3);
    assert!(down["last_change"].is_string());
    let s = admin::scrape(adm).await;
    assert_eq!(
        s.value("wsgate_backend_up", &[("pool", "p"), ("backend", &key)]),
        Some(0.0)
    );
    // A failed check is counted under its reason (connect_failed here, most likely).
    let failed: f64 = wsgate::backends::probe::ProbeError::LABELS
        .iter()
        .map(|r| {
            s.count(
                "wsgate_backend_checks_total",
                &[("pool", "p"), ("backend", &key), ("result", r)],
            )
        })
        .sum();
    assert!(failed >= 1.0);

    let _again = poll("the port to be free again", async || {
        EchoServer::spawn(addr, "e2").await.ok()
    })
    .await;
    let back = poll("the restarted backend to show up", async || {
        let (s, b) = backend_state(adm, &key).await;
        (s == "up").then_some(b)
    })
    .await;
    assert_eq!(back["last_check"]["result"], "ok");
    assert_ne!(back["last_change"], down["last_change"]);
    let s = admin::scrape(adm).await;
    assert_eq!(
        s.value("wsgate_backend_up", &[("pool", "p"), ("backend", &key)]),
        Some(1.0)
    );
}

/// Waits until the binary's log has `n` lines containing `needle`.
async fn log_lines(b: &Bin, needle: &str, n: usize) -> Vec<String> {
    poll(&format!("{n} log lines with {needle:?}"), async || {
        let lines: Vec<String> = b
            .log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect();
        (lines.len() >= n).then_some(lines)
    })
    .await
}

#[tokio::test]
async fn json_access_log_lines_parse_and_carry_the_fields() {
    let backend = echo("e").await;
    let config = bin_config(
        0,
        &format!(
            r#"[server]
drain_spread = "0s"
log_format = "json"
{ADMIN}
{}"#,
            chat_route(backend.addr)
        ),
    );
    let b = Bin::start("jsonlog", &config).await;
    let mut req = ws_request("/chat/room?token=abc");
    req.headers_mut()
        .insert("sec-websocket-protocol", "chat".parse().unwrap());
    let (mut ws, _) = ws_connect_req(b.addr(), req, None).await.unwrap();
    for m in ["one", "three"] {
        within("send", ws.send(Message::text(m))).await.unwrap();
        within("echo", ws.next()).await.unwrap().unwrap();
    }
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    within("close", ws.close(Some(frame))).await.unwrap();
    while let Some(Ok(_)) = within("end", ws.next()).await {}
    let r = raw_http(b.addr(), upgrade_head("/nowhere?token=abc", "").as_bytes()).await;
    assert_eq!(r.status, 404);

    log_lines(&b, "handshake refused", 1).await;
    log_lines(&b, "session ended", 1).await;
    let log = b.log();
    let mut access = Vec::new();
    for line in log.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        if v["target"] == "access" {
            access.push(v);
        }
    }
    let session = access
        .iter()
        .find(|v| v["message"] == "session ended")
        .unwrap();
    let local = session["client"].as_str().unwrap();
    assert!(local.starts_with("127.0.0.1:"), "{session}");
    for (k, want) in [
        ("listener", "127.0.0.1:0"),
        ("route", "chat"),
        ("pool", "p"),
        ("path", "/chat/room"),
        ("subprotocol", "chat"),
        ("closed_by", "client"),
        ("client_close_reason", "bye"),
        ("outcome", "closed"),
    ] {
        assert_eq!(session[k], want, "{k} in {session}");
    }
    assert_eq!(session["backend"], backend.addr.to_string());
    for (k, n) in [
        ("client_messages", 2),
        ("backend_messages", 2),
        ("client_bytes", 8),
        ("backend_bytes", 8),
        ("client_close_code", 1000),
        ("backend_close_code", 1000),
    ] {
        assert_eq!(session[k], n, "{k} in {session}");
    }
    assert!(session["duration_s"].as_f64().unwrap() > 0.0);
    assert!(session.get("wsgate_close_to_client").is_none(), "{session}");
    let refused = access
        .iter()
        .find(|v| v["message"] == "handshake refused")
        .unwrap();
    assert_eq!(refused["status"], 404);
    assert_eq!(refused["path"], "/nowhere");
    assert_eq!(refused["refused_by"], "wsgate");
    assert_eq!(refused["reason"], "no route for this host and path");
    assert!(refused.get("route").is_none());
    assert!(!log.contains("token=abc"));
}

/// base64 of the 16 bytes "wsgate-secret-k4".
const SECRET_KEY: &str = "d3NnYXRlLXNlY3JldC1rNA==";
const SECRETS: [&str; 7] = [
    "SECRETCOOKIE1",
    "SECRETAUTH2",
    "SECRETTOKEN3",
    SECRET_KEY,
    "SECRETPAYLOAD5",
    "SECRETTOKEN6",
    "SECRETCOOKIE7",
];

#[tokio::test]
async fn planted_secrets_appear_in_no_log_line_and_no_admin_answer() {
    for format in ["text", "json"] {
        let backend = echo("e").await;
        let config = bin_config(
            0,
            &format!(
                r#"[server]
drain_spread = "0s"
log_level = "debug"
log_format = "{format}"
{ADMIN}
{}"#,
                chat_route(backend.addr)
            ),
        );
        let b = Bin::start("secrets", &config).await;
        let mut s = tls_connect(b.addr()).await;
        let head = format!(
            "GET /chat/x?token=SECRETTOKEN3&a=1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {SECRET_KEY}\r\nSec-WebSocket-Version: 13\r\n\
             Cookie: session=SECRETCOOKIE1\r\nAuthorization: Bearer SECRETAUTH2\r\n\r\n"
        );
        write_all(&mut s, head.as_bytes()).await;
        assert_eq!(read_response(&mut s).await.status, 101);
        let mask = Some([1, 2, 3, 4]);
        write_all(
            &mut s,
            &encode_frame(true, 0, op::TEXT, b"SECRETPAYLOAD5", mask),
        )
        .await;
        let echoed = within("echo", read_frame(&mut s)).await.unwrap();
        assert_eq!(echoed.payload, b"SECRETPAYLOAD5");
        write_all(
            &mut s,
            &encode_frame(true, 0, op::CLOSE, &1000u16.to_be_bytes(), mask),
        )
        .await;
        let _ = read_frames_to_eof(&mut s).await;
        let _ = s.shutdown().await;
        let refused = raw_http(
            b.addr(),
            upgrade_head(
                "/nowhere?token=SECRETTOKEN6",
                "Cookie: a=SECRETCOOKIE7\r\nAuthorization: Basic SECRETAUTH2\r\n",
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(refused.status, 404);
        log_lines(&b, "session ended", 1).await;
        log_lines(&b, "handshake refused", 1).await;
        let adm = b.admin_addr().unwrap();
        let mut seen = vec![("log".to_string(), b.log())];
        for path in ["/metrics", "/backends", "/status.json", "/"] {
            seen.push((path.to_string(), admin::get(adm, path).await.body));
        }
        for (what, text) in &seen {
            for secret in SECRETS {
                assert!(
                    !text.contains(secret),
                    "{format}: {secret} found in {what}:\n{text}"
                );
            }
        }
        assert!(seen[0].1.contains("/chat/x"), "the path itself is logged");
    }
}

#[tokio::test]
async fn a_proxied_plain_request_gets_an_access_line_without_its_secrets() {
    let backend = common::http::HttpBackend::spawn("b").await;
    let pool = common::http::http_pool("p", "round_robin", &[backend.addr], "", "");
    let config = bin_config(
        0,
        &format!(
            r#"[server]
drain_spread = "0s"
log_format = "json"
{pool}"#
        ),
    );
    let b = Bin::start("httplog", &config).await;
    let req = "POST /plain/x?token=abc HTTP/1.1\r\nHost: localhost\r\n\
               Cookie: s=cookiesecret\r\nAuthorization: Bearer authsecret\r\n\
               Content-Length: 5\r\nConnection: close\r\n\r\nhello";
    let r = raw_http(b.addr(), req.as_bytes()).await;
    assert_eq!(r.status, 200);
    let line = log_lines(&b, "\"http request\"", 1).await.remove(0);
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["target"], "access", "{v}");
    for (k, want) in [
        ("route", "p"),
        ("method", "POST"),
        ("path", "/plain/x"),
        ("answered_by", "backend"),
    ] {
        assert_eq!(v[k], want, "{k} in {v}");
    }
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["request_body_bytes"], 5, "{v}");
    assert_eq!(v["backend"], backend.addr.to_string(), "{v}");
    assert!(v.get("reason").is_none(), "{v}");
    let log = b.log();
    for secret in ["token=abc", "cookiesecret", "authsecret"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

/// Pool `p` (round robin over `p`), pool `q` (`q_backend`); route `chat` on `p`,
/// route `split` on `p` and on `q` at weight 0 (no client goes there).
fn pairs_config(p: &[SocketAddr], q_backend: SocketAddr) -> String {
    let backends: String = p
        .iter()
        .map(|a| format!("[[pool.backend]]\naddress = \"{a}\"\n"))
        .collect();
    format!(
        "[admin]\naddress = \"127.0.0.1:0\"\n\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\n\
         cert = \"{CERTS}/fullchain.pem\"\nkey = \"{CERTS}/key.pem\"\n\n\
         [[pool]]\nname = \"p\"\n{backends}\n\
         [[pool]]\nname = \"q\"\n[[pool.backend]]\naddress = \"{q_backend}\"\n\n\
         [[route]]\nname = \"chat\"\npath_prefix = \"/chat\"\npool = \"p\"\n\n\
         [[route]]\nname = \"split\"\npath_prefix = \"/split\"\n\
         pools = [{{ pool = \"p\", weight = 1 }}, {{ pool = \"q\", weight = 0 }}]\n"
    )
}

fn active(s: &admin::Scrape, route: &str, backend: SocketAddr) -> Option<f64> {
    let b = backend.to_string();
    s.value(
        "wsgate_sessions_active",
        &[("route", route), ("backend", b.as_str())],
    )
}

fn active_series(s: &admin::Scrape) -> usize {
    s.samples
        .iter()
        .filter(|x| x.metric == "wsgate_sessions_active")
        .count()
}

#[tokio::test]
async fn sessions_active_keeps_a_zero_series_per_configured_route_and_backend() {
    let (one, two, canary) = (echo("one").await, echo("two").await, echo("canary").await);
    let addr_of = |name: &str| match name {
        "one" => one.addr,
        "two" => two.addr,
        other => panic!("landed on {other}"),
    };
    let mut p = start_proxy_raw(&pairs_config(&[one.addr, two.addr], canary.addr)).await;
    let adm = p.running.admin_addr().expect("admin listener runs");

    // Before any session: a 0 for each route × backend a route can send to.
    let s = admin::scrape(adm).await;
    for (route, b) in [("chat", one.addr), ("chat", two.addr)] {
        assert_eq!(active(&s, route, b), Some(0.0), "{route} {b}\n{}", s.text);
    }
    assert_eq!(active(&s, "split", one.addr), Some(0.0));
    assert_eq!(active(&s, "split", two.addr), Some(0.0));
    assert_eq!(
        active(&s, "split", canary.addr),
        None,
        "weight 0: no client"
    );
    assert_eq!(active_series(&s), 4, "{}", s.text);

    // One session: 1 on its backend, the other stays 0; after it, 0 (not absent).
    let (ws, resp) = ws_connect(p.addr, "/chat").await;
    let used = addr_of(&landed(&resp));
    let other = if used == one.addr { two.addr } else { one.addr };
    let s = poll("the session counted", async || {
        let s = admin::scrape(adm).await;
        (active(&s, "chat", used) == Some(1.0)).then_some(s)
    })
    .await;
    assert_eq!(active(&s, "chat", other), Some(0.0));
    close_session(ws).await;
    let s = poll("the series back at 0", async || {
        let s = admin::scrape(adm).await;
        (active(&s, "chat", used) == Some(0.0)).then_some(s)
    })
    .await;
    assert_eq!(active_series(&s), 4, "{}", s.text);

    // A reload removes a backend while a session runs on it (on_backend_removed =
    // keep): its series stays while the session does, then goes.
    let (ws, resp) = ws_connect(p.addr, "/chat").await;
    let removed = addr_of(&landed(&resp));
    let kept = if removed == one.addr {
        two.addr
    } else {
        one.addr
    };
    let cfg = wsgate::config::Config::parse(
        &pairs_config(&[kept], canary.addr),
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    p.running.reload(&cfg).await.expect("reload");
    let s = admin::scrape(adm).await;
    assert_eq!(s.value("wsgate_config_generation", &[]), Some(2.0));
    assert_eq!(active(&s, "chat", removed), Some(1.0), "{}", s.text);
    assert_eq!(active(&s, "split", removed), None, "removed, no session");
    assert_eq!(active(&s, "chat", kept), Some(0.0));
    assert_eq!(active(&s, "split", kept), Some(0.0));
    close_session(ws).await;
    let s = poll("the removed backend's series to go", async || {
        let s = admin::scrape(adm).await;
        active(&s, "chat", removed).is_none().then_some(s)
    })
    .await;
    assert_eq!(active(&s, "chat", kept), Some(0.0), "{}", s.text);
    assert_eq!(active(&s, "split", kept), Some(0.0));
    assert_eq!(active_series(&s), 2, "{}", s.text);
}

/// A handshake refused for its Origin (403) is logged with that Origin (scheme,
/// host and port only), never the cookies, Authorization or query string it came with.
#[tokio::test]
async fn a_refused_origin_is_named_in_the_access_line() {
    let backend = echo("e").await;
    let config = bin_config(
        0,
        &format!(
            r#"[server]
drain_spread = "0s"
log_format = "json"

[[pool]]
name = "p"
[[pool.backend]]
address = "{}"

[[route]]
name = "chat"
pool = "p"
allowed_origins = ["https://app.example.com"]
"#,
            backend.addr
        ),
    );
    let b = Bin::start("origin-log", &config).await;
    let extra = "Origin: https://evil.example.net:8443/x?y=SECRETQUERY9\r\n\
                 Cookie: s=SECRETCOOKIE8\r\nAuthorization: Bearer SECRETAUTH8\r\n";
    let r = raw_http(
        b.addr(),
        upgrade_head("/chat?token=SECRETTOKEN8", extra).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403);
    let lines = log_lines(&b, "handshake refused", 1).await;
    let v: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["target"], "access", "{v}");
    assert_eq!(v["status"], 403, "{v}");
    assert_eq!(v["reason"], "Origin not allowed", "{v}");
    assert_eq!(v["origin"], "https://evil.example.net:8443", "{v}");
    let log = b.log();
    for secret in [
        "SECRETQUERY9",
        "SECRETCOOKIE8",
        "SECRETAUTH8",
        "SECRETTOKEN8",
    ] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
    // Refusals for other reasons carry no origin.
    let old_version = upgrade_head("/chat", "Origin: https://evil.example.net\r\n")
        .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let r = raw_http(b.addr(), old_version.as_bytes()).await;
    assert_ne!(r.status, 101);
    let lines = log_lines(&b, "handshake refused", 2).await;
    let v: Value = serde_json::from_str(&lines[1]).unwrap();
    assert!(v.get("origin").is_none(), "{v}");
}
