//! `/metrics` against traffic the test generated itself: N sessions with M messages
//! each way, K refusals of each kind (handshake statuses, per-IP and connect-rate
//! admission), closes by side and code, a limit hit; scraped over HTTP from the
//! admin listener and read with a real Prometheus text parser. Also the admin
//! listener's other answers and its `allow` list.

mod admin_listener;
#[path = "../common/mod.rs"]
mod common;
mod sessions;
mod traffic;

use common::admin;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

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
