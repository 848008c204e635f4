//! Passive health as outlier detection, through the whole proxy: a refusing backend
//! ejected after `consecutive_failures` in a row and no other; passive checks that
//! never empty a dead pool by themselves (`max_ejection_percent`), panic mode; a
//! pool every backend of which is down answered 503 at once, with the panic logged
//! (the real binary); a reconnect storm onto slow but alive backends that ejects
//! none (the real binary, scripted slow backends); nginx's keys keeping their
//! meaning. Loopback only; every wait is bounded, and no sleep decides an outcome.

mod common;
use common::admin::{Scrape, get, scrape};
use common::bin::Bin;
use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Pool `p` with extra pool keys `keys` and these backends, its route, and an admin
/// listener on a port of its own.
fn pool(keys: &str, addrs: &[SocketAddr]) -> String {
    let mut s = format!(
        r#"[admin]
address = "127.0.0.1:0"

[[pool]]
name = "p"
{keys}
"#
    );
    for a in addrs {
        s += &format!(
            r#"[[pool.backend]]
address = "{a}"
"#
        );
    }
    s + r#"
[[route]]
pool = "p"
"#
}

/// A port that refuses connections: bound but not listening, held until dropped.
fn dead_port() -> (SocketAddr, tokio::net::TcpSocket) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    (s.local_addr().unwrap(), s)
}

fn failures(m: &Scrape, backend: SocketAddr) -> f64 {
    let b = backend.to_string();
    m.samples
        .iter()
        .filter(|s| s.metric == "wsgate_backend_failures_total")
        .filter(|s| s.labels.get("backend") == Some(b.as_str()))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn ejected(m: &Scrape, backend: SocketAddr) -> f64 {
    m.count(
        "wsgate_backend_ejected",
        &[("pool", "p"), ("backend", &backend.to_string())],
    )
}

fn panic_gauge(m: &Scrape) -> f64 {
    m.count("wsgate_pool_panic", &[("pool", "p")])
}

/// An upgrade through the TLS proxy at `addr`: the status of its answer, within 2 s.
async fn upgrade_status(addr: SocketAddr) -> u16 {
    within_for(
        Duration::from_secs(2),
        "an answer to the upgrade",
        raw_http(addr, upgrade_head("/", "").as_bytes()),
    )
    .await
    .status
}

#[tokio::test]
async fn one_refusing_backend_of_three_is_ejected_after_five_in_a_row_and_no_other() {
    let (dead, _hold) = dead_port();
    let (a, b) = (echo("a").await, echo("b").await);
    let p = start_proxy(&pool("", &[dead, a.addr, b.addr])).await;
    let admin = p.running.admin_addr().expect("admin listener");
    let backends = p.running.pool("p").unwrap().backends.clone();
    let mut ejected_after = None;
    for i in 0..40 {
        let (ws, resp) = ws_connect(p.addr, "/").await;
        assert!(["a", "b"].contains(&landed(&resp).as_str()), "client {i}");
        close_session(ws).await;
        let m = scrape(admin).await;
        let f = failures(&m, dead);
        assert_eq!(
            backends[0].is_ejected(),
            f >= 5.0,
            "client {i}: {f} failures in a row, ejected {}",
            backends[0].is_ejected()
        );
        assert_eq!(ejected(&m, dead), if f >= 5.0 { 1.0 } else { 0.0 });
        assert!(!backends[1].is_ejected() && !backends[2].is_ejected());
        assert_eq!(failures(&m, a.addr) + failures(&m, b.addr), 0.0);
        if f >= 5.0 && ejected_after.is_none() {
            ejected_after = Some(i);
        }
    }
    let m = scrape(admin).await;
    assert_eq!(failures(&m, dead), 5.0, "not tried once ejected");
    assert_eq!(panic_gauge(&m), 0.0);
    println!(
        "refusing backend ejected after client {:?} (5 failures in a row)",
        ejected_after
    );
    let status = get(admin, "/backends").await;
    assert_eq!(
        status.body.matches(r#""ejected":true"#).count(),
        1,
        "{}",
        status.body
    );
}

#[tokio::test]
async fn passive_checks_alone_never_empty_a_dead_pool_and_panic_is_its_floor() {
    let holds: Vec<_> = (0..3).map(|_| dead_port()).collect();
    let addrs: Vec<SocketAddr> = holds.iter().map(|(a, _)| *a).collect();
    // Defaults: at most 10 % of the pool ejected, and at least one.
    let p = start_proxy(&pool("", &addrs)).await;
    let backends = p.running.pool("p").unwrap().backends.clone();
    for i in 0..15 {
        let t0 = Instant::now();
        assert_eq!(upgrade_status(p.addr).await, 502, "client {i}");
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "client {i}: {:?}",
            t0.elapsed()
        );
    }
    let out = backends.iter().filter(|b| b.is_ejected()).count();
    assert_eq!(out, 1, "passive checks took out {out} of 3");
    assert!(!p.running.pool("p").unwrap().panicking());

    // Every one may be ejected: then panic mode ignores the ejections, and clients
    // still get the answer of a real attempt, at once.
    let p = start_proxy(&pool("max_ejection_percent = 100", &addrs)).await;
    let admin = p.running.admin_addr().unwrap();
    let backends = p.running.pool("p").unwrap().backends.clone();
    for i in 0..15 {
        let t0 = Instant::now();
        assert_eq!(upgrade_status(p.addr).await, 502, "client {i}");
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "client {i}: {:?}",
            t0.elapsed()
        );
    }
    assert!(backends.iter().all(|b| b.is_ejected()));
    let m = scrape(admin).await;
    assert_eq!(panic_gauge(&m), 1.0);
    let tried: f64 = addrs.iter().map(|a| failures(&m, *a)).sum();
    assert_eq!(
        tried, 45.0,
        "each client tried three backends, ejected or not"
    );
}

#[tokio::test]
async fn every_backend_down_is_503_at_once_and_the_panic_is_logged_once() {
    let holds: Vec<_> = (0..3).map(|_| dead_port()).collect();
    let addrs: Vec<SocketAddr> = holds.iter().map(|(a, _)| *a).collect();
    let text = pool(
        r#"[pool.health]
kind = "tcp"
interval = "100ms"
timeout = "100ms"
fall = 1"#,
        &addrs,
    );
    let mut w = Bin::start("outlier-all-down", &common::bin::bin_config(0, &text)).await;
    let admin = w.admin_addr().expect("admin listener");
    let mut up = 3.0;
    let t0 = Instant::now();
    while up > 0.0 {
        assert!(t0.elapsed() < DEADLINE, "backends still up: {up}");
        let m = scrape(admin).await;
        up = addrs
            .iter()
            .map(|a| m.count("wsgate_backend_up", &[("backend", &a.to_string())]))
            .sum();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..5 {
        let t0 = Instant::now();
        let r = within_for(
            Duration::from_secs(1),
            "the 503",
            raw_http(w.addr(), upgrade_head("/", "").as_bytes()),
        )
        .await;
        assert_eq!(r.status, 503, "client {i}: {r:?}");
        assert!(r.header("retry-after").is_some(), "{r:?}");
        println!("client {i}: 503 after {:?}", t0.elapsed());
    }
    assert_eq!(panic_gauge(&scrape(admin).await), 1.0);
    eventually(DEADLINE, "the panic in the log", || {
        w.log().contains("pool in PANIC")
    })
    .await;
    let log = w.log();
    assert_eq!(log.matches("pool in PANIC").count(), 1, "{log}");
    assert!(!log.contains("ejected for"), "active checks did it: {log}");
    w.signal(libc::SIGTERM);
    w.exit_within(DEADLINE).await;
}

/// A backend that takes at most `at_once` upgrades at a time (the rest wait their
/// turn) and answers each after its delay: `base_ms` plus a spread of 0 to
/// `spread_ms` that varies from one upgrade to the next. Then it holds the session
/// open until the other side closes.
async fn slow_backend(at_once: usize, base_ms: u64, spread_ms: u64) -> RawBackend {
    let turn = Arc::new(tokio::sync::Semaphore::new(at_once));
    let n = Arc::new(AtomicUsize::new(0));
    raw_backend(move |head, mut s| {
        let (turn, k) = (turn.clone(), n.fetch_add(1, Ordering::Relaxed) as u64);
        async move {
            {
                let _t = turn.acquire().await.unwrap();
                let d = base_ms + (k * 397) % (spread_ms + 1);
                tokio::time::sleep(Duration::from_millis(d)).await;
                if s.write_all(switching(&head, "").as_bytes()).await.is_err() {
                    return;
                }
            }
            let mut buf = [0u8; 512];
            while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
        }
    })
    .await
}

#[tokio::test]
async fn a_storm_onto_slow_backends_ejects_none() {
    const CLIENTS: usize = 200;
    // Three backends taking 40 upgrades at a time each (120 of the 200 at once; the
    // rest wait their turn), answering each in 0.05 to 1.1 s: some answers come after
    // upgrade_timeout (1 s), more once queueing adds to them.
    let slow = [
        slow_backend(40, 50, 1050).await,
        slow_backend(40, 50, 1050).await,
        slow_backend(40, 50, 1050).await,
    ];
    let addrs: Vec<SocketAddr> = slow.iter().map(|b| b.addr).collect();
    // A plain listener: the storm is the backends' problem, not TLS work in wsgate.
    let text = format!(
        r#"[server]
drain_spread = "0s"

[limits]
exempt = ["127.0.0.0/8"]

[[listener]]
address = "127.0.0.1:0"
tls = false

{}"#,
        pool(
            r#"upgrade_timeout = "1s"
upstream_deadline = "4s""#,
            &addrs
        )
    );
    let mut w = Bin::start("outlier-storm", &text).await;
    let (proxy, admin) = (w.addr(), w.admin_addr().expect("admin listener"));
    let t0 = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                // Each client's patience: it connects or gets an answer within 10 s.
                within_for(
                    Duration::from_secs(10),
                    "an answer to a storm client",
                    async {
                        let mut s = TcpStream::connect(proxy).await.unwrap();
                        s.write_all(upgrade_head("/", "").as_bytes()).await.unwrap();
                        let (status, _) = read_head(&mut s).await;
                        (status, s)
                    },
                )
                .await
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut open = Vec::new();
    for c in clients {
        let (status, s) = c.await.unwrap();
        *statuses.entry(status).or_default() += 1;
        open.push(s);
    }
    let took = t0.elapsed();
    drop(open);
    let m = scrape(admin).await;
    let timeouts: f64 = m
        .samples
        .iter()
        .filter(|s| s.metric == "wsgate_backend_failures_total")
        .filter(|s| s.labels.get("reason") == Some("upgrade_timeout"))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    let lag = m.count("wsgate_scheduler_lag_seconds", &[]);
    println!(
        "storm of {CLIENTS}: {statuses:?} in {took:?}; {timeouts} upgrade timeouts; lag now {lag} s"
    );
    for (status, n) in &statuses {
        assert!(
            [101, 502, 503, 504].contains(status),
            "{n} clients got {status}"
        );
    }
    assert!(
        statuses.get(&101).copied().unwrap_or(0) >= CLIENTS / 2,
        "{statuses:?}"
    );
    assert!(
        timeouts > 0.0,
        "the storm must have timed some upgrades out"
    );
    for a in &addrs {
        assert_eq!(ejected(&m, *a), 0.0, "backend {a} ejected: {}", w.log());
    }
    assert_eq!(panic_gauge(&m), 0.0);
    assert!(!w.log().contains("ejected for"), "{}", w.log());
    w.signal(libc::SIGTERM);
    w.exit_within(DEADLINE).await;
}

#[tokio::test]
async fn nginx_keys_still_eject_on_one_failure_within_the_bounds() {
    let (dead, _hold) = dead_port();
    let (dead2, _hold2) = dead_port();
    let (a, b) = (echo("a").await, echo("b").await);
    let p = start_proxy(&pool(
        r#"max_fails = 1
fail_timeout = "2s""#,
        &[dead, dead2, a.addr, b.addr],
    ))
    .await;
    let backends = p.running.pool("p").unwrap().backends.clone();
    let (ws, _) = ws_connect(p.addr, "/").await;
    close_session(ws).await;
    // Round robin gave the first client dead, then dead2: one failure ejects the
    // first, but max_ejection_percent (10 %, at least one) keeps dead2 in.
    assert!(backends[0].is_ejected(), "one failure ejects");
    assert!(!backends[1].is_ejected(), "the bound keeps the second in");
    let t0 = Instant::now();
    for i in 0..10 {
        let (ws, resp) = ws_connect(p.addr, "/").await;
        assert!(["a", "b"].contains(&landed(&resp).as_str()), "client {i}");
        close_session(ws).await;
    }
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "too slow to test within fail_timeout"
    );
    assert!(
        backends[0].is_ejected(),
        "for fail_timeout, not one failure's worth"
    );
    // Back after fail_timeout (2 s), no growth.
    eventually(
        Duration::from_secs(4),
        "dead back after fail_timeout",
        || !backends[0].is_ejected(),
    )
    .await;
}
