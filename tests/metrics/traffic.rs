//! The whole scenario: sessions, messages, refusals, closes and a limit hit,
//! each family's count checked against the traffic made; TLS handshakes that fail
//! or time out.

use super::*;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

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
