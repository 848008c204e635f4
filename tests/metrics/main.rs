//! `/metrics` against traffic the test generated itself: N sessions with M messages
//! each way, K refusals of each kind (handshake statuses, per-IP and connect-rate
//! admission), closes by side and code, a limit hit; scraped over HTTP from the
//! admin listener and read with a real Prometheus text parser. Also the admin
//! listener's other answers and its `allow` list.
#[path = "../common/mod.rs"]
mod common;
use common::admin::{self, Scrape};
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const N: usize = 5;
const M: usize = 6;
const MSG: &str = "0123456789"; // 10 bytes

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config(backend: SocketAddr, admin_allow: &str) -> String {
    format!(
        r#"[limits]
exempt = ["127.0.0.1/32"]
max_connections_per_ip = 2
connect_rate = 0.01
connect_burst = 3

[admin]
address = "127.0.0.1:0"
{admin_allow}

[[listener]]
address = "127.0.0.1:0"
name = "public"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"

[[pool]]
name = "p"
[[pool.backend]]
address = "{backend}"

[[route]]
name = "chat"
path_prefix = "/chat"
pool = "p"

[[route]]
name = "small"
path_prefix = "/small"
pool = "p"
[route.limits]
max_message_bytes = 100
"#
    )
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    within(what, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// A TCP connection from `from` that the proxy accepts or refuses; returns whether
/// the TLS handshake went through.
async fn tls_from(
    addr: SocketAddr,
    from: IpAddr,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from, 0)).unwrap();
    let tcp = within("TCP connect", s.connect(addr)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let c = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_tls_config()));
    within("TLS attempt", c.connect(name, tcp)).await.ok()
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: the traffic it makes is what every family's count is checked against"
)]
async fn metrics_count_the_traffic_a_test_generated() {
    let backend = echo("e").await;
    let p = start_proxy_raw(&config(backend.addr, "")).await;
    let adm = p.running.admin_addr().expect("admin listener runs");
    let mut accepted = 0; // connections that pass admission

    // N sessions, M messages each way; N - 1 close with 1000, one with 4001.
    for i in 0..N {
        let (mut ws, _) = ws_connect(p.addr, "/chat/room?token=x").await;
        accepted += 1;
        for _ in 0..M {
            within("send", ws.send(Message::text(MSG))).await.unwrap();
            let m = within("echo", ws.next()).await.unwrap().unwrap();
            assert_eq!(m, Message::text(MSG));
        }
        let code = if i == 0 {
            CloseCode::from(4001)
        } else {
            CloseCode::Normal
        };
        let frame = CloseFrame {
            code,
            reason: "done".into(),
        };
        within("close", ws.close(Some(frame))).await.unwrap();
        while let Some(Ok(_)) = within("end of stream", ws.next()).await {}
    }
    // One session over its route's max_message_bytes: 1009 to the client.
    let (mut ws, _) = ws_connect(p.addr, "/small").await;
    accepted += 1;
    within("send", ws.send(Message::text("x".repeat(200))))
        .await
        .unwrap();
    while let Some(Ok(_)) = within("end of stream", ws.next()).await {}

    // K = 2 refusals of each handshake kind.
    for _ in 0..2 {
        let r = raw_http(p.addr, upgrade_head("/nothing", "").as_bytes()).await;
        assert_eq!(r.status, 404);
        let r = raw_http(p.addr, b"POST /chat HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert_eq!(r.status, 405);
        let r = raw_http(p.addr, b"GET /chat HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert_eq!(r.status, 426);
        accepted += 3;
    }
    // Per-IP: two held from 127.0.0.21, then 3 refused.
    let held = [
        tls_from(p.addr, ip("127.0.0.21")).await.expect("admitted"),
        tls_from(p.addr, ip("127.0.0.21")).await.expect("admitted"),
    ];
    accepted += 2;
    for _ in 0..3 {
        assert!(tls_from(p.addr, ip("127.0.0.21")).await.is_none());
    }
    // Connect rate: a burst of 3 from 127.0.0.22 (one at a time), then 2 refused.
    for _ in 0..3 {
        let s = tls_from(p.addr, ip("127.0.0.22")).await.expect("admitted");
        drop(s);
        accepted += 1;
        eventually("the connection to be released", || {
            p.running.admission().tracked().0 <= 1
        })
        .await;
    }
    for _ in 0..2 {
        assert!(tls_from(p.addr, ip("127.0.0.22")).await.is_none());
    }
    drop(held);
    eventually("every connection to end", || {
        p.running.open_connections() == 0
    })
    .await;

    let s = admin::scrape(adm).await;
    let be = backend.addr.to_string();
    let be = be.as_str();
    let n = N as f64;
    let up = |route, status| {
        s.count(
            "wsgate_upgrades_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(up("chat", "101"), n);
    assert_eq!(up("small", "101"), 1.0);
    for status in ["404", "405", "426"] {
        assert_eq!(up("", status), 2.0, "status {status}\n{}", s.text);
    }
    for dir in ["client_to_backend", "backend_to_client"] {
        let l = [("route", "chat"), ("direction", dir)];
        assert_eq!(s.count("wsgate_messages_total", &l), n * M as f64, "{dir}");
        assert_eq!(
            s.count("wsgate_payload_bytes_total", &l),
            n * (M * MSG.len()) as f64
        );
    }
    let small_in = [("route", "small"), ("direction", "client_to_backend")];
    assert_eq!(s.count("wsgate_messages_total", &small_in), 0.0);
    let sessions = |route, outcome| {
        s.count(
            "wsgate_sessions_total",
            &[("route", route), ("backend", be), ("outcome", outcome)],
        )
    };
    assert_eq!(sessions("chat", "closed"), n);
    assert_eq!(sessions("small", "client_too_big"), 1.0);
    let closes = |route, side, code| {
        s.count(
            "wsgate_closes_total",
            &[("route", route), ("side", side), ("code", code)],
        )
    };
    for side in ["client", "backend"] {
        assert_eq!(closes("chat", side, "1000"), n - 1.0, "{side}");
        assert_eq!(closes("chat", side, "other"), 1.0, "{side}");
    }
    assert_eq!(closes("chat", "wsgate", "1000"), 0.0);
    assert_eq!(closes("small", "wsgate", "1009"), 1.0);
    assert_eq!(closes("small", "wsgate", "1001"), 1.0);
    assert_eq!(
        s.count(
            "wsgate_limit_hits_total",
            &[("route", "small"), ("limit", "max_message_bytes")]
        ),
        1.0
    );
    let refused = |reason| s.count("wsgate_connections_refused_total", &[("reason", reason)]);
    assert_eq!(refused("max_connections_per_ip"), 3.0);
    assert_eq!(refused("connect_rate"), 2.0);
    assert_eq!(
        s.count(
            "wsgate_connections_accepted_total",
            &[("listener", "public")]
        ),
        accepted as f64
    );
    assert_eq!(
        s.count(
            "wsgate_tls_handshakes_total",
            &[("listener", "public"), ("version", "1.3"), ("result", "ok")]
        ),
        accepted as f64
    );
    assert_eq!(s.value("wsgate_connections_open", &[]), Some(0.0));
    assert_eq!(
        s.histogram_count("wsgate_session_duration_seconds", &[("route", "chat")]),
        Some(N as u64)
    );
    assert_eq!(
        s.histogram_count("wsgate_handshake_duration_seconds", &[("route", "chat")]),
        Some(N as u64)
    );
    assert_eq!(
        s.histogram_count(
            "wsgate_backend_connect_seconds",
            &[("pool", "p"), ("backend", be)]
        ),
        Some(N as u64 + 1)
    );
    assert!(
        s.samples
            .iter()
            .filter(|x| x.metric == "wsgate_sessions_active")
            .all(|x| matches!(x.value, prometheus_parse::Value::Gauge(v) if v == 0.0))
    );
    assert_eq!(
        s.value("wsgate_backend_up", &[("pool", "p"), ("backend", be)]),
        Some(1.0)
    );
    assert_eq!(s.value("wsgate_config_generation", &[]), Some(1.0));
    assert_eq!(s.value("wsgate_draining_sessions", &[]), Some(0.0));
    let expiry = s
        .value(
            "wsgate_tls_certificate_expiry_timestamp_seconds",
            &[("listener", "public")],
        )
        .unwrap();
    assert!(expiry > 1.7e9, "{expiry}");
    for m in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
    ] {
        assert!(s.value(m, &[]).is_some_and(|v| v > 0.0), "{m}");
    }
    // No client address and no path in any label.
    for x in &s.samples {
        for (k, v) in x.labels.iter() {
            assert!(
                !v.starts_with("127.0.0.2") && !v.contains('/') && !v.contains("token"),
                "{} has {k}={v}",
                x.metric
            );
        }
    }
}

#[tokio::test]
async fn live_sessions_are_counted_while_they_run() {
    let backend = echo("e").await;
    let p = start_proxy_raw(&config(backend.addr, "")).await;
    let adm = p.running.admin_addr().unwrap();
    let (mut ws, _) = ws_connect(p.addr, "/chat").await;
    for _ in 0..3 {
        within("send", ws.send(Message::binary(vec![7u8; 100])))
            .await
            .unwrap();
        within("echo", ws.next()).await.unwrap().unwrap();
    }
    let s = admin::scrape(adm).await;
    let be = backend.addr.to_string();
    assert_eq!(
        s.value(
            "wsgate_sessions_active",
            &[("route", "chat"), ("backend", &be)]
        ),
        Some(1.0)
    );
    let l = [("route", "chat"), ("direction", "backend_to_client")];
    assert_eq!(s.count("wsgate_messages_total", &l), 3.0);
    assert_eq!(s.count("wsgate_payload_bytes_total", &l), 300.0);
    within("close", ws.close(None)).await.unwrap();
    while let Some(Ok(_)) = within("end", ws.next()).await {}
    eventually("the session to end", || p.running.live_sessions() == 0).await;
    let s = admin::scrape(adm).await;
    assert_eq!(s.count("wsgate_messages_total", &l), 3.0, "folded once");
    assert_eq!(
        s.count(
            "wsgate_closes_total",
            &[("route", "chat"), ("side", "client"), ("code", "none")]
        ),
        1.0
    );
}

#[tokio::test]
async fn admin_answers_and_refuses_clients_outside_allow() {
    let backend = echo("e").await;
    let p = start_proxy_raw(&config(backend.addr, r#"allow = ["127.0.0.2/32"]"#)).await;
    let adm = p.running.admin_addr().unwrap();
    let inside = Some(ip("127.0.0.2"));
    for path in ["/metrics", "/healthz", "/readyz", "/backends", "/"] {
        let r = admin::get_from(adm, path, None).await;
        assert_eq!(r.status, 403, "{path} from 127.0.0.1: {}", r.body);
        let r = admin::get_from(adm, path, inside).await;
        assert_eq!(r.status, 200, "{path} from 127.0.0.2: {}", r.body);
    }
    let page = admin::get_from(adm, "/", inside).await;
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        !page.body.contains("http://")
            && !page.body.contains("https://")
            && !page.body.contains("src="),
        "the status page loads nothing from elsewhere"
    );
    let r = admin::get_from(adm, "/nope", inside).await;
    assert_eq!(r.status, 404);
    let r = admin::request_from(adm, "POST", "/metrics", inside).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = admin::get_from(adm, "/metrics", inside).await;
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    Scrape::parse(&r.body);
    // The per-IP limits of the proxy do not apply: many admin requests from one IP.
    for _ in 0..10 {
        assert_eq!(admin::get_from(adm, "/healthz", inside).await.status, 200);
    }
}

#[tokio::test]
async fn an_admin_address_that_cannot_be_bound_is_a_located_error_unless_it_is_the_default() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let backend = echo("e").await;
    let text = config(backend.addr, "").replace(
        r#"[admin]
address = "127.0.0.1:0""#,
        &format!(
            r#"[admin]
address = "{addr}""#
        ),
    );
    let cfg = wsgate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let e = match wsgate::control::server::start(&cfg).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started on a taken admin address"),
    };
    assert!(e.contains("admin.address") && e.contains("t.toml:"), "{e}");
    let bad = config(backend.addr, "").replace(
        r#"[admin]
address = "127.0.0.1:0""#,
        r#"[admin]
address = "nonsense""#,
    );
    let e = wsgate::config::Config::parse(&bad, std::path::Path::new("t.toml")).unwrap_err();
    assert!(e.to_string().contains("admin.address"), "{e}");
}

#[tokio::test]
async fn keepalive_round_trips_feed_the_client_rtt_histogram() {
    let backend = echo("e").await;
    let text = config(backend.addr, "").replace(
        "[route.limits]\nmax_message_bytes = 100\n",
        r#"[route.limits]
ping_interval = "100ms"
idle_timeout = "5s"
"#,
    );
    let text = text.replace(
        r#"name = "small"
path_prefix = "/small""#,
        r#"name = "quiet"
path_prefix = "/quiet""#,
    );
    let p = start_proxy_raw(&text).await;
    let adm = p.running.admin_addr().unwrap();
    let (mut ws, _) = ws_connect(p.addr, "/quiet").await;
    // A silent client that reads: tungstenite answers each Ping with a Pong.
    let mut pings = 0;
    while pings < 3 {
        match within("a keepalive ping", ws.next()).await {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected a Ping, got {other:?}"),
        }
    }
    let s = within("two round trips observed", async {
        loop {
            let s = admin::scrape(adm).await;
            if s.histogram_count("wsgate_client_rtt_seconds", &[("route", "quiet")])
                .is_some_and(|n| n >= 2)
            {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        s.text
            .contains("wsgate_client_rtt_seconds_bucket{le=\"0.8\",route=\"quiet\"}")
            || s.text
                .contains("wsgate_client_rtt_seconds_bucket{route=\"quiet\",le=\"0.8\"}"),
        "{}",
        s.text
    );
    // The Pongs answered wsgate and were not forwarded: the backend saw nothing.
    let l = [("route", "quiet"), ("direction", "client_to_backend")];
    assert_eq!(s.count("wsgate_messages_total", &l), 0.0);
}

/// Every metric the shipped alerting rules use is one wsgate exports (promtool
/// checks the rules themselves: deploy/prometheus/check.sh).
#[tokio::test]
async fn the_alert_rules_use_only_exported_metrics() {
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/wsgate-alerts.yml"
    ))
    .unwrap();
    let backend = echo("e").await;
    let p = start_proxy_raw(&config(backend.addr, "")).await;
    let (ws, _) = ws_connect(p.addr, "/chat").await;
    drop(ws);
    // A limit hit, so that family has a series too.
    let (mut ws, _) = ws_connect(p.addr, "/small").await;
    within("send", ws.send(Message::text("x".repeat(200))))
        .await
        .unwrap();
    while let Some(Ok(_)) = within("end of stream", ws.next()).await {}
    eventually("the sessions to end", || p.running.live_sessions() == 0).await;
    let text = admin::get(p.running.admin_addr().unwrap(), "/metrics")
        .await
        .body;
    let mut used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("wsgate_") || w.starts_with("process_"))
        .collect();
    used.sort();
    used.dedup();
    assert!(used.len() >= 7, "{used:?}");
    for name in used {
        let base = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_total"))
            .unwrap_or(name);
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {base}"))),
            "{name} is not exported:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_reload_applies_the_allow_list_and_moves_the_admin_listener() {
    let backend = echo("e").await;
    let mut p = start_proxy_raw(&config(backend.addr, r#"allow = ["127.0.0.2/32"]"#)).await;
    let first = p.running.admin_addr().unwrap();
    assert_eq!(admin::get(first, "/healthz").await.status, 403);
    let cfg =
        |text: &str| wsgate::config::Config::parse(text, std::path::Path::new("t.toml")).unwrap();
    p.running
        .reload(&cfg(&config(backend.addr, "")))
        .await
        .unwrap();
    assert_eq!(
        p.running.admin_addr(),
        Some(first),
        "same address: not rebound"
    );
    assert_eq!(admin::get(first, "/healthz").await.status, 200);
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let moved = config(backend.addr, "").replace(
        r#"[admin]
address = "127.0.0.1:0""#,
        &format!(
            r#"[admin]
address = "{free}""#
        ),
    );
    p.running.reload(&cfg(&moved)).await.unwrap();
    assert_eq!(p.running.admin_addr(), Some(free));
    assert_eq!(admin::get(free, "/readyz").await.status, 200);
    assert!(
        tokio::net::TcpStream::connect(first).await.is_err(),
        "the old admin address still accepts"
    );
    let s = admin::scrape(free).await;
    assert_eq!(s.value("wsgate_config_generation", &[]), Some(3.0));
    assert_eq!(
        s.value("wsgate_config_reloads_total", &[("result", "success")]),
        Some(0.0),
        "Running::reload is not reload_file: only the file reloads are counted"
    );
    let off = config(backend.addr, "").replace(
        r#"[admin]
address = "127.0.0.1:0""#,
        r#"[admin]
address = """#,
    );
    p.running.reload(&cfg(&off)).await.unwrap();
    assert_eq!(p.running.admin_addr(), None);
    assert!(tokio::net::TcpStream::connect(free).await.is_err());
}

#[tokio::test]
async fn failed_and_timed_out_tls_handshakes_are_counted() {
    let backend = echo("e").await;
    let text = format!(
        r#"[server]
tls_handshake_timeout = "200ms"
{}"#,
        config(backend.addr, "")
    );
    let p = start_proxy_raw(&text).await;
    let adm = p.running.admin_addr().unwrap();
    // Not TLS at all: the handshake fails.
    let mut t = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    t.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = within("the proxy to hang up", t.read_to_end(&mut sink)).await;
    // Silent: the handshake times out.
    let mut t = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let _ = within("the proxy to hang up", t.read_to_end(&mut sink)).await;
    let s = admin::scrape(adm).await;
    let tls = |version, result| {
        s.count(
            "wsgate_tls_handshakes_total",
            &[
                ("listener", "public"),
                ("version", version),
                ("result", result),
            ],
        )
    };
    assert_eq!(tls("none", "failed"), 1.0, "{}", s.text);
    assert_eq!(tls("none", "timeout"), 1.0);
    assert_eq!(tls("1.3", "ok"), 0.0);
}

#[tokio::test]
async fn sessions_asked_to_end_count_as_draining_until_they_do() {
    let backend = echo("e").await;
    let p = start_proxy_raw(&config(backend.addr, "")).await;
    let adm = p.running.admin_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(ws_connect(p.addr, "/chat").await.0);
    }
    let s = admin::scrape(adm).await;
    assert_eq!(s.value("wsgate_draining_sessions", &[]), Some(0.0));
    p.running.close_sessions(Duration::from_secs(60));
    let s = admin::scrape(adm).await;
    assert_eq!(s.value("wsgate_draining_sessions", &[]), Some(2.0));
    let status: serde_json::Value =
        serde_json::from_str(&admin::get(adm, "/status.json").await.body).unwrap();
    assert_eq!(status["sessions"]["draining"], 2);
    assert_eq!(status["ready"], false, "a drain is not ready");
    assert_eq!(admin::get(adm, "/readyz").await.status, 503);
}
