//! DNS service discovery against a DNS server the test runs on loopback UDP
//! (tests/common/dns.rs), whose answers change while sessions are live.
mod common;

use common::dns::DnsServer;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use wsgate::echo::EchoServer;

/// Echo backends named `e2`, `e3`, ... on 127.0.0.2, 127.0.0.3, ... sharing one port
/// (a DNS answer carries addresses, the port comes from the config).
async fn echoes_on_one_port(n: u8) -> (u16, Vec<EchoServer>) {
    'again: loop {
        let first = EchoServer::spawn("127.0.0.2:0".parse().unwrap(), "e2")
            .await
            .unwrap();
        let port = first.addr.port();
        let mut all = vec![first];
        for i in 3..2 + n {
            match EchoServer::spawn(
                SocketAddr::new([127, 0, 0, i].into(), port),
                &format!("e{i}"),
            )
            .await
            {
                Ok(e) => all.push(e),
                Err(_) => continue 'again,
            }
        }
        return (port, all);
    }
}

fn ip(last: u8) -> IpAddr {
    [127, 0, 0, last].into()
}

fn config(dns: SocketAddr, port: u16, pool_keys: &str) -> String {
    format!(
        r#"[server]
resolver = "{dns}"

[[pool]]
name = "p"
{pool_keys}
[pool.health]
kind = "tcp"
interval = "200ms"
timeout = "150ms"
[[pool.backend]]
address = "echo.test:{port}"
resolve = "200ms"

[[route]]
pool = "p"
"#
    )
}

async fn wait_backends(p: &Proxy, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    within("the pool to hold the DNS answer", async {
        loop {
            let pool = p.running.pool("p").unwrap();
            let mut have: Vec<String> = pool
                .backends
                .iter()
                .map(|b| b.addr.ip().to_string())
                .collect();
            have.sort();
            if have == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn echo_ok(ws: &mut Ws, what: &str) {
    within(what, async {
        ws.send(Message::text("ping")).await.unwrap();
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    assert_eq!(t.as_str(), "ping", "{what}");
                    return;
                }
                Some(Ok(_)) => continue,
                other => panic!("{what}: {other:?}"),
            }
        }
    })
    .await
}

/// Addresses added get sessions and health checks; addresses removed get no new
/// sessions while their live sessions go on; the backend that stays is the same
/// object; a reload keeps the discovered set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_come_and_go_while_sessions_live() {
    let dns = DnsServer::start().await;
    let (port, _echoes) = echoes_on_one_port(3).await;
    dns.set("echo.test", &[ip(2)]);
    let p = start_proxy(&config(dns.addr, port, "")).await;
    wait_backends(&p, &["127.0.0.2"]).await;
    let (mut on_e2, resp) = ws_connect(p.addr, "/").await;
    assert_eq!(landed(&resp), "e2");
    let kept = p.running.pool("p").unwrap().backends[0].clone();

    dns.set("echo.test", &[ip(2), ip(3)]);
    wait_backends(&p, &["127.0.0.2", "127.0.0.3"]).await;
    let pool = p.running.pool("p").unwrap();
    let e3 = pool
        .backends
        .iter()
        .find(|b| b.addr.ip() == ip(3))
        .unwrap()
        .clone();
    assert!(
        std::sync::Arc::ptr_eq(
            &kept,
            pool.backends.iter().find(|b| b.addr.ip() == ip(2)).unwrap()
        ),
        "the address that stayed is the same backend"
    );
    within("the new address is health-checked", async {
        while e3.snapshot().last_check.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut landed_on = Vec::new();
    for _ in 0..4 {
        let (_ws, resp) = ws_connect(p.addr, "/").await;
        landed_on.push(landed(&resp));
    }
    assert!(landed_on.iter().any(|l| l == "e3"), "{landed_on:?}");

    dns.set("echo.test", &[ip(3)]);
    wait_backends(&p, &["127.0.0.3"]).await;
    for _ in 0..4 {
        let (_ws, resp) = ws_connect(p.addr, "/").await;
        assert_eq!(landed(&resp), "e3", "a removed address got a new session");
    }
    echo_ok(&mut on_e2, "the session on the removed address goes on").await;

    // A reload looks everything up itself and keeps the discovered backend.
    let cfg = wsgate::config::Config::parse(
        &config_text(&config(dns.addr, port, "")),
        std::path::Path::new("test.toml"),
    )
    .unwrap();
    let mut running = p.running;
    running.reload(&cfg).await.expect("reload");
    let pool = running.pool("p").unwrap();
    assert_eq!(pool.backends.len(), 1);
    assert!(
        std::sync::Arc::ptr_eq(&pool.backends[0], &e3),
        "the reload kept the discovered backend"
    );
}

/// `on_backend_removed = "close"`: the sessions of an address that left get 1012.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_address_sessions_get_1012_with_close() {
    let dns = DnsServer::start().await;
    let (port, _echoes) = echoes_on_one_port(2).await;
    dns.set("echo.test", &[ip(2), ip(3)]);
    let keys = r#"on_backend_removed = "close"
removed_close_spread = "200ms""#;
    let p = start_proxy(&config(dns.addr, port, keys)).await;
    wait_backends(&p, &["127.0.0.2", "127.0.0.3"]).await;
    let mut on = std::collections::HashMap::new();
    while on.len() < 2 {
        let (ws, resp) = ws_connect(p.addr, "/").await;
        on.entry(landed(&resp)).or_insert(ws);
    }
    dns.set("echo.test", &[ip(3)]);
    let mut gone = on.remove("e2").unwrap();
    within("Close 1012", async {
        loop {
            match gone.next().await {
                Some(Ok(Message::Close(Some(c)))) => {
                    assert_eq!(u16::from(c.code), 1012, "{c:?}");
                    return;
                }
                Some(Ok(_)) => continue,
                other => panic!("expected Close 1012, got {other:?}"),
            }
        }
    })
    .await;
    echo_ok(
        on.get_mut("e3").unwrap(),
        "the session on the address that stayed",
    )
    .await;
}

/// A DNS server that stops answering: the last set stays, the failure is logged
/// once however many lookups fail, counted, and the return is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_keeps_the_last_set_and_logs_once() {
    use common::bin::{Bin, bin_config};
    let dns = DnsServer::start().await;
    let (port, _echoes) = echoes_on_one_port(2).await;
    dns.set("echo.test", &[ip(2), ip(3)]);
    let text = bin_config(
        0,
        &format!(
            r#"{}
[admin]
address = "127.0.0.1:0"
"#,
            config(dns.addr, port, "")
        ),
    );
    let w = Bin::start("dns-silent", &text).await;
    dns.silent(true);
    // Two whole failed lookups (each takes the client's timeouts).
    within_for(Duration::from_secs(40), "two failed lookups", async {
        loop {
            if w.log().matches("DNS lookup failed").count() >= 1 {
                let n = dns.queries();
                dns.wait_queries(n + 4).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let admin = w.admin_addr().unwrap();
    within_for(Duration::from_secs(30), "two failures counted", async {
        loop {
            let s = common::admin::scrape(admin).await;
            if s.count("wsgate_dns_lookups_total", &[("result", "failed")]) >= 2.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(
        w.log().matches("DNS lookup failed").count(),
        1,
        "{}",
        w.log()
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let (_ws, resp) = ws_connect(w.addr(), "/").await;
        seen.insert(landed(&resp));
    }
    assert_eq!(seen.len(), 2, "the last set is kept: {seen:?}");
    dns.silent(false);
    within_for(Duration::from_secs(20), "the return is logged", async {
        while !w.log().contains("DNS lookup succeeds again") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// Bad `resolve` and `resolver` values are located config errors.
#[test]
fn bad_resolve_and_resolver_values_are_located() {
    let cases = [
        (
            r#"[[pool.backend]]
address = "echo.test:9000"
resolve = "10ms""#,
            "pool[0].backend[0].resolve: must be at least 100ms",
        ),
        (
            r#"[[pool.backend]]
address = "127.0.0.1:9000"
resolve = "10s""#,
            "pool[0].backend[0].address: \"127.0.0.1:9000\" is an IP address",
        ),
        (
            r#"[[pool.backend]]
address = "echo.test"
resolve = "10s""#,
            "pool[0].backend[0].address: \"echo.test\" needs a port",
        ),
        (
            r#"[[pool.backend]]
address = "echo.test:9000"
resolve = "often""#,
            "invalid duration \"often\"",
        ),
        (
            r#"[[pool.backend]]
address = "bad name!:9000"
resolve = "10s""#,
            "is not a host name",
        ),
    ];
    for (backend, want) in cases {
        let text = format!(
            r#"[[listener]]
address = "127.0.0.1:0"
tls = false
[[route]]
pool = "p"
[[pool]]
name = "p"
{backend}
"#
        );
        let err = wsgate::config::Config::parse(&text, std::path::Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(want) && err.contains("t.toml:"),
            "want {want:?} in {err}"
        );
    }
    for (resolver, want) in [
        (
            "\"127.0.0.1:0\"",
            "server.resolver: 127.0.0.1:0 is not a DNS server",
        ),
        ("\"dns.local\"", "t.toml:2:12: server.resolver"),
    ] {
        let text = format!(
            r#"[server]
resolver = {resolver}
[[listener]]
address = "127.0.0.1:0"
tls = false
[[route]]
pool = "p"
[[pool]]
name = "p"
[[pool.backend]]
address = "127.0.0.1:1"
"#
        );
        let err = wsgate::config::Config::parse(&text, std::path::Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "want {want:?} in {err}");
    }
}
