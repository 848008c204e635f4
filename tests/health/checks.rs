//! The checks themselves: http (status, expect_status) and websocket (Accept)
//! kinds, probes spread over the interval, stopping without waiting for
//! probes, transitions logged once.

use super::*;

// ---------------------------------------------------------------- check kinds

const ANSWER_500: &str =
    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const ANSWER_200: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
const ANSWER_204: &str = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn http_check_takes_down_a_500_backend_and_honours_expect_status() {
    let (bad, bad_heads) = http_backend(ANSWER_500).await;
    let good = echo("good").await;
    let (ok200, heads200) = http_backend(ANSWER_200).await;
    let (ok204, heads204) = http_backend(ANSWER_204).await;
    let (wrong, _) = http_backend(ANSWER_200).await;
    // 300 ms, not less: the proxy, the backends and the test's own TLS clients share
    // one thread (debug build), so a handshake can stall a probe of the echo backend.
    let check = r#"kind = "http"
interval = "300ms"
timeout = "300ms"
fall = 2
path = "/health"
"#;
    let p = start_proxy(&with_route(&format!(
        // p: the 500 backend, and the echo backend (checked by tcp: it speaks only WebSocket).
        r#"[[pool]]
name = "p"
[pool.health]
{check}[[pool.backend]]
address = "{}"
[[pool.backend]]
address = "{}"
[pool.backend.health]
kind = "tcp"

[[pool]]
name = "q"
[pool.health]
{check}[[pool.backend]]
address = "{}"
[[pool.backend]]
address = "{}"
[pool.backend.health]
expect_status = 204
[[pool.backend]]
address = "{}"
[pool.backend.health]
expect_status = 204
"#,
        bad.addr, good.addr, ok200.addr, ok204.addr, wrong.addr
    )))
    .await;

    let t = wait_up(&backend(&p, "p", 0), false, DEADLINE, "500 backend down").await;
    println!("http check, interval 300ms, fall 2: the 500 backend down after {t:?}");
    let (wrong_b, ok200_b, ok204_b) = (
        backend(&p, "q", 2),
        backend(&p, "q", 0),
        backend(&p, "q", 1),
    );
    wait_up(
        &wrong_b,
        false,
        DEADLINE,
        "200 backend expected to say 204: down",
    )
    .await;

    {
        let heads = bad_heads.lock().unwrap();
        let h = &heads[0];
        assert!(
            h.starts_with("GET /health HTTP/1.1\r\n"),
            "check request: {h:?}"
        );
        assert_eq!(
            head_header(h, "user-agent").as_deref(),
            Some("wsgate-health")
        );
        assert_eq!(head_header(h, "host"), Some(bad.addr.to_string()));
    }
    for i in 0..20 {
        assert_eq!(land(&p, None).await, "good", "connection {i}");
    }
    assert!(backend(&p, "p", 1).is_up());
    assert!(!backend(&p, "p", 0).is_up());
    let upgrades = bad_heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| head_header(h, "upgrade").is_some())
        .count();
    assert_eq!(upgrades, 0, "the 500 backend was picked for a session");

    stays_up(&ok200_b, &heads200, 3, "200 backend, expecting 200").await;
    stays_up(&ok204_b, &heads204, 3, "204 backend, expecting 204").await;
    assert!(!wrong_b.is_up());
}

#[tokio::test]
async fn websocket_check_takes_down_a_wrong_accept_backend() {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let bad = raw_backend(move |head, mut s| {
        seen.lock().unwrap().push(head);
        async move {
            let _ = s
                .write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
                )
                .await;
            let _ = s.shutdown().await;
        }
    })
    .await;
    let good = echo("good").await;
    let p = start_proxy(&with_route(&format!(
        r#"[[pool]]
name = "p"
[pool.health]
kind = "websocket"
interval = "300ms"
timeout = "300ms"
fall = 2
path = "/hc"
{}"#,
        backends(&[bad.addr, good.addr])
    )))
    .await;
    let (bad_b, good_b) = (backend(&p, "p", 0), backend(&p, "p", 1));

    let t0 = Instant::now();
    within("wrong-accept backend down", async {
        while bad_b.is_up() {
            assert!(good_b.is_up(), "the echo backend failed a websocket check");
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    println!(
        "websocket check, interval 300ms, fall 2: wrong Accept down after {:?}",
        t0.elapsed()
    );
    {
        let heads = heads.lock().unwrap();
        let h = &heads[0];
        assert!(
            h.starts_with("GET /hc HTTP/1.1\r\n"),
            "check request: {h:?}"
        );
        assert!(head_header(h, "sec-websocket-key").is_some(), "{h:?}");
        assert_eq!(
            head_header(h, "upgrade").map(|v| v.to_ascii_lowercase()),
            Some("websocket".into())
        );
    }
    // The echo backend keeps passing while the bad one keeps being checked.
    let target = count(&heads) + 3;
    within("more checks", async {
        while count(&heads) < target {
            assert!(good_b.is_up(), "the echo backend failed a websocket check");
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    assert!(good_b.is_up() && !bad_b.is_up());
    for i in 0..10 {
        assert_eq!(land(&p, None).await, "good", "connection {i}");
    }
}

/// The WebSocket check ends with Close 1000 and a reason (not an empty Close, which
/// a backend logs as 1005), and waits for the backend's answer.
#[tokio::test]
async fn websocket_check_closes_with_1000_and_a_reason() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let closes = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = closes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Close(frame) = msg {
                        let got = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        seen.lock().unwrap().push(got);
                        let _ = ws.close(None).await;
                        break;
                    }
                }
                let _ = ws.flush().await;
            });
        }
    });
    let p = start_proxy(&with_route(&format!(
        r#"[[pool]]
name = "p"
[pool.health]
kind = "websocket"
interval = "200ms"
timeout = "200ms"
path = "/hc"
{}"#,
        backends(&[addr])
    )))
    .await;
    let b = backend(&p, "p", 0);
    within("two checks closed", async {
        while closes.lock().unwrap().len() < 2 {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    assert!(b.is_up());
    for got in closes.lock().unwrap().iter() {
        assert_eq!(
            got.as_ref().map(|(code, reason)| (*code, reason.as_str())),
            Some((1000, "wsgate health check"))
        );
    }
}

// ------------------------------------------------------------- the prober itself

/// Stopping does not wait for health probes in flight: a probe against a backend
/// that never answers (timeout 5 s) does not hold up `stop_accepting`.
#[tokio::test]
async fn stopping_does_not_wait_for_probes_in_flight() {
    let (probed_tx, mut probed) = tokio::sync::mpsc::unbounded_channel::<()>();
    let hang = raw_backend(move |_head, s| {
        let probed_tx = probed_tx.clone();
        async move {
            // Got the probe's request; never answer, hold the socket.
            let _ = probed_tx.send(());
            std::future::pending::<()>().await;
            drop(s);
        }
    })
    .await;
    let text = format!(
        r#"[[pool]]
name = "p"
[pool.health]
kind = "http"
interval = "10s"
timeout = "5s"
[[pool.backend]]
address = "{}"

[[route]]
pool = "p"
"#,
        hang.addr
    );
    let mut p = start_proxy(&text).await;
    within("the first probe to reach the backend", probed.recv()).await;
    let t0 = std::time::Instant::now();
    within_for(
        Duration::from_secs(2),
        "stop_accepting",
        p.running.stop_accepting(),
    )
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "stopping took {:?}",
        t0.elapsed()
    );
}

/// A pool's probes are spread over the interval, not fired all at once: with four
/// backends and a 400 ms interval, the first probes arrive about 100 ms apart.
#[tokio::test]
async fn probes_are_spread_over_the_interval() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, std::time::Instant)>();
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..4 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(l.local_addr().unwrap());
        let tx = tx.clone();
        listeners.push(tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let _ = tx.send((i, std::time::Instant::now()));
                drop(s);
            }
        }));
    }
    let mut text = r#"[[pool]]
name = "p"
[pool.health]
kind = "tcp"
interval = "400ms"
timeout = "300ms"
"#
    .to_string();
    for a in &addrs {
        text += &format!(
            r#"[[pool.backend]]
address = "{a}"
"#
        );
    }
    text += r#"
[[route]]
pool = "p"
"#;
    let _p = start_proxy(&text).await;
    let mut first = [None; 4];
    while first.iter().any(Option::is_none) {
        let (i, t) = within("a first probe from every backend", rx.recv())
            .await
            .unwrap();
        first[i].get_or_insert(t);
    }
    let times: Vec<std::time::Instant> = first.iter().map(|t| t.unwrap()).collect();
    let span = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    // Offsets are 0, 100, 200 and 300 ms; all at once would be a span of ~0.
    assert!(
        span >= Duration::from_millis(150),
        "first probes spanned only {span:?}"
    );
    for l in listeners {
        l.abort();
    }
}

/// Health transitions are logged once each, not once per check: the real binary,
/// with debug logs on, shows many failed probes but a single "is DOWN", then a
/// single "is UP" after the backend comes back.
#[tokio::test]
async fn transitions_are_logged_once_not_per_check() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let dir = std::env::temp_dir().join(format!("wsgate-health-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("w.toml");
    std::fs::write(
        &conf,
        format!(
            r#"[[listener]]
address = "127.0.0.1:0"
tls = false
[[pool]]
name = "p"
[pool.health]
kind = "tcp"
interval = "50ms"
timeout = "40ms"
rise = 1
fall = 1
[[pool.backend]]
address = "{addr}"

[[route]]
pool = "p"
"#
        ),
    )
    .unwrap();
    let log = dir.join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["run", "-c"])
        .arg(&conf)
        .env("RUST_LOG", "wsgate=debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let count = |s: &str, pat: &str| s.matches(pat).count();
    let wait_for = |pred: &dyn Fn(&str) -> bool, what: &str| {
        let t0 = std::time::Instant::now();
        loop {
            let s = read();
            if pred(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < DEADLINE,
                "timed out waiting for {what}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let s = wait_for(
        &|s| count(s, "health check failed:") >= 6,
        "six failed probes",
    );
    assert_eq!(count(&s, "backend is DOWN"), 1, "{s}");
    // Bring the backend back on the same port: one UP, then quiet.
    let back = tokio::net::TcpListener::bind(addr).await.unwrap();
    let accepting = tokio::spawn(async move {
        while let Ok((c, _)) = back.accept().await {
            drop(c);
        }
    });
    let s = wait_for(
        &|s| count(s, "backend is UP") >= 1,
        "the backend to come back up",
    );
    let probes_then = count(&s, "health check failed:");
    // A window, not a wait for an event: several more (passing) probes run in it and
    // must log nothing.
    std::thread::sleep(Duration::from_millis(300));
    let s = read();
    assert_eq!(count(&s, "backend is UP"), 1, "{s}");
    assert_eq!(count(&s, "backend is DOWN"), 1, "{s}");
    assert_eq!(count(&s, "health check failed:"), probes_then, "{s}");
    let _ = child.kill();
    let _ = child.wait();
    accepting.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
