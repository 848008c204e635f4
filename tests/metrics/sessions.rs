//! Sessions while they run: live gauges and counts folded once at the end,
//! keepalive round trips in the client RTT histogram, sessions asked to end
//! counted as draining.

use super::*;

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
