//! Reload (SIGHUP) on the real binary: live sessions are untouched, new ones follow
//! the new config, backend state carries over, a bad reload changes nothing, a
//! renewed certificate is served at once, listeners come and go, and removed
//! backends' sessions get 1012 spread over the window. Plus, in process, health
//! checks across reloads: no gap, no duplicate probe.

mod common;
use common::bin::{Bin, bin_config, scratch_dir};
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Sends a text and expects it back.
async fn echoes(ws: &mut Ws, what: &str) {
    ws.send(Message::text(what)).await.expect("send");
    match within("echo", ws.next()).await {
        Some(Ok(m)) => assert_eq!(m, Message::text(what)),
        other => panic!("{what}: expected the echo, got {other:?}"),
    }
}

/// Opens a session to `path` and returns it with the backend it landed on.
async fn open(addr: SocketAddr, path: &str) -> (Ws, String) {
    let (ws, resp) = ws_connect(addr, path).await;
    (ws, landed(&resp))
}

fn pool(name: &str, balance: &str, extra: &str, backends: &[&EchoServer]) -> String {
    let mut s = format!(
        r#"[[pool]]
name = "{name}"
balance = "{balance}"
{extra}
"#
    );
    for b in backends {
        s += &format!(
            r#"[[pool.backend]]
address = "{}"
"#,
            b.addr
        );
    }
    s
}

fn route(prefix: &str, pool: &str) -> String {
    format!(
        r#"[[route]]
path_prefix = "{prefix}"
pool = "{pool}"
"#
    )
}

/// Waits until the log has `pat` (a line wsgate logs once, e.g. a state change).
async fn log_has(b: &Bin, pat: &str) {
    let t0 = Instant::now();
    while !b.log().contains(pat) {
        assert!(
            t0.elapsed() < DEADLINE,
            "log never said {pat:?}:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Pool `d`: backend `x` fails its http check (an echo backend answers a plain GET
/// with no status line) and stays down (rise = 100); `y` is checked by tcp.
fn down_pool(x: &EchoServer, y: &EchoServer) -> String {
    format!(
        r#"[[pool]]
name = "d"
[pool.health]
kind = "http"
interval = "60s"
timeout = "1s"
rise = 100
fall = 1
[[pool.backend]]
address = "{}"
[[pool.backend]]
address = "{}"
[pool.backend.health]
kind = "tcp"
"#,
        x.addr, y.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_100_live_sessions_drops_none_and_keeps_backend_state() {
    let (e1, e2, e3, e4) = (
        echo("e1").await,
        echo("e2").await,
        echo("e3").await,
        echo("e4").await,
    );
    let (x, y) = (echo("x").await, echo("y").await);
    let before = bin_config(
        0,
        &format!(
            "{}{}{}{}",
            pool("p", "least_conn", "", &[&e1, &e2]),
            down_pool(&x, &y),
            route("/", "p"),
            route("/d", "d")
        ),
    );
    let mut w = Bin::start("reload-100", &before).await;
    let addr = w.addr();
    log_has(&w, &format!("backend is DOWN pool=d backend={}", x.addr)).await;

    let mut sessions = Vec::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..100 {
        let (ws, at) = open(addr, "/").await;
        *counts.entry(at).or_default() += 1;
        sessions.push(ws);
    }
    assert_eq!((counts["e1"], counts["e2"]), (50, 50), "{counts:?}");

    w.write_config(&bin_config(
        0,
        &format!(
            "{}{}{}{}{}{}",
            pool("p", "least_conn", "", &[&e1, &e2, &e3]),
            down_pool(&x, &y),
            pool("q", "round_robin", "", &[&e4]),
            route("/", "p"),
            route("/d", "d"),
            route("/q", "q")
        ),
    ));
    let status = w.reload().await;
    assert!(!status.contains("reload failed"), "{status}\n{}", w.log());

    for (i, ws) in sessions.iter_mut().enumerate() {
        echoes(ws, &format!("still here {i}")).await;
    }
    // least_conn still counts the 100 live sessions: the next 50 all go to e3.
    let mut fresh = Vec::new();
    for i in 0..50 {
        let (ws, at) = open(addr, "/").await;
        assert_eq!(at, "e3", "new session {i} (live counts were lost?)");
        fresh.push(ws);
    }
    let (mut q, at) = open(addr, "/q").await;
    assert_eq!(at, "e4", "the new route is in effect");
    echoes(&mut q, "new route").await;
    // x was down before the reload and stays down: its next check is a minute away.
    for _ in 0..10 {
        let (_ws, at) = open(addr, "/d").await;
        assert_eq!(at, "y", "a down backend came back up across the reload");
    }
    for ws in sessions.iter_mut().chain(fresh.iter_mut()) {
        ws.close(None).await.unwrap();
    }
}

/// Each broken reload keeps the running generation; the one log line names file,
/// line and key, and the systemd status says it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_keeps_the_old_generation_serving() {
    let e1 = echo("e1").await;
    let e2 = echo("e2").await;
    let good = bin_config(
        0,
        &format!(
            "{}{}",
            pool("p", "round_robin", "", &[&e1]),
            route("/", "p")
        ),
    );
    let mut w = Bin::start("reload-bad", &good).await;
    let addr = w.addr();
    let (mut live, _) = open(addr, "/").await;

    let other = scratch_dir("reload-bad-key");
    let stranger = common::certs::good_chain(&other);
    let conf = w.conf.display().to_string();
    let to_e2 = format!(
        "{}{}",
        pool("p", "round_robin", "", &[&e2]),
        route("/", "p")
    );
    let cases = [
        (
            "a syntax error",
            format!("{}\n[[pool]\n", bin_config(0, &to_e2)),
            format!("{conf}:"),
        ),
        (
            "a missing certificate",
            bin_config(0, &to_e2).replace(
                &format!("{CERTS}/fullchain.pem"),
                "/nonexistent/fullchain.pem",
            ),
            format!("{conf}:7:1: listener[0].cert: /nonexistent/fullchain.pem"),
        ),
        (
            "a key that does not match",
            bin_config(0, &to_e2).replace(
                &format!("{CERTS}/key.pem"),
                &stranger.key.display().to_string(),
            ),
            format!("{conf}:8:1: listener[0].key: "),
        ),
    ];
    for (what, text, says) in cases {
        w.write_config(&text);
        let status = w.reload().await;
        assert!(status.contains("STATUS=reload failed"), "{what}: {status}");
        let log = w.log();
        let line = log
            .lines()
            .rfind(|l| l.contains("reload failed"))
            .unwrap_or_else(|| panic!("{what}: no failure logged:\n{log}"));
        assert!(
            line.contains("still serving generation 1"),
            "{what}: {line}"
        );
        assert!(line.contains(&says), "{what}: expected {says:?} in: {line}");
        echoes(&mut live, what).await;
        let (_ws, at) = open(addr, "/").await;
        assert_eq!(at, "e1", "{what}: the old config no longer serves");
    }
    let _ = std::fs::remove_dir_all(&other);
}

/// A TLS client that trusts only `ca`.
async fn wss_with_ca(addr: SocketAddr, ca: &std::path::Path) -> Result<Ws, String> {
    let tls = tls_connect_with(addr, client_tls_trusting(ca), None)
        .await
        .map_err(|e| e.to_string())?;
    tokio_tungstenite::client_async(ws_request("/"), tls)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_swapped_on_reload_is_served_to_new_clients() {
    let e = echo("e").await;
    let dir_a = scratch_dir("cert-a");
    let dir_b = scratch_dir("cert-b");
    let (a, b) = (
        common::certs::good_chain(&dir_a),
        common::certs::good_chain(&dir_b),
    );
    let live_dir = scratch_dir("cert-live");
    let (cert, key) = (live_dir.join("fullchain.pem"), live_dir.join("key.pem"));
    std::fs::copy(&a.cert, &cert).unwrap();
    std::fs::copy(&a.key, &key).unwrap();
    let text = format!(
        r#"[server]
drain_spread = "0s"
[limits]
exempt = ["127.0.0.0/8"]
[[listener]]
address = "127.0.0.1:0"
cert = "{}"
key = "{}"
{}{}"#,
        cert.display(),
        key.display(),
        pool("p", "round_robin", "", &[&e]),
        route("/", "p")
    );
    let mut w = Bin::start("reload-cert", &text).await;
    let addr = w.addr();
    let mut old = wss_with_ca(addr, &a.ca).await.expect("chain A served");
    assert!(wss_with_ca(addr, &b.ca).await.is_err(), "chain B not yet");

    std::fs::copy(&b.cert, &cert).unwrap();
    std::fs::copy(&b.key, &key).unwrap();
    let status = w.reload().await;
    assert!(!status.contains("reload failed"), "{status}");

    let mut new = wss_with_ca(addr, &b.ca)
        .await
        .expect("chain B served after the reload");
    echoes(&mut new, "under B").await;
    let refused = wss_with_ca(addr, &a.ca).await;
    assert!(refused.is_err(), "chain A still served: {refused:?}");
    echoes(&mut old, "made under A, still echoing").await;
    for d in [dir_a, dir_b, live_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_added_and_removed_by_a_reload() {
    let e = echo("e").await;
    let rest = format!("{}{}", pool("p", "round_robin", "", &[&e]), route("/", "p"));
    let two = format!(
        r#"[[listener]]
name = "two"
address = "127.0.0.1:0"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"
"#
    );
    let one = bin_config(0, &rest).replace(
        "[[listener]]\n",
        r#"[[listener]]
name = "one"
"#,
    );
    let mut w = Bin::start("reload-listeners", &one).await;
    let first = w.addr();
    let (mut via_first, _) = open(first, "/").await;

    w.write_config(&format!("{one}\n{two}"));
    let status = w.reload().await;
    assert!(!status.contains("reload failed"), "{status}");
    let added = *w.listening().last().unwrap();
    assert_ne!(added, first);
    let (mut via_added, _) = open(added, "/").await;
    echoes(&mut via_added, "via the added listener").await;

    // Only "two" now: "one" stops accepting; its session goes on.
    let only_two = one.split("[[listener]]").next().unwrap().to_string() + &two + &rest;
    w.write_config(&only_two);
    let status = w.reload().await;
    assert!(!status.contains("reload failed"), "{status}\n{}", w.log());
    let refused = tokio::net::TcpStream::connect(first).await;
    assert!(refused.is_err(), "the removed listener still accepts");
    echoes(&mut via_first, "accepted by a listener since removed").await;
    let (mut again, _) = open(added, "/").await;
    echoes(&mut again, "the kept listener").await;
}

/// `on_backend_removed = "close"`: the removed backend's sessions get 1012 at
/// moments spread over the window; the others are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_a_removed_backend_get_1012_spread_over_the_window() {
    let (e1, e2) = (echo("e1").await, echo("e2").await);
    let keys = r#"on_backend_removed = "close"
removed_close_spread = "2s""#;
    let text = |bs: &[&EchoServer]| {
        bin_config(
            0,
            &format!("{}{}", pool("p", "round_robin", keys, bs), route("/", "p")),
        )
    };
    let mut w = Bin::start("reload-removed", &text(&[&e1, &e2])).await;
    let addr = w.addr();
    let (mut stay, mut go) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        let (ws, at) = open(addr, "/").await;
        if at == "e1" {
            stay.push(ws)
        } else {
            go.push(ws)
        }
    }
    assert_eq!((stay.len(), go.len()), (20, 20));

    w.write_config(&text(&[&e1]));
    let t0 = Instant::now();
    let status = w.reload().await;
    assert!(!status.contains("reload failed"), "{status}");
    // Each session waits for its Close on its own task, so each time is when that
    // Close came, not when the test got round to reading it.
    let waits: Vec<_> = go
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                within_for(Duration::from_secs(5), "Close 1012", async {
                    loop {
                        match ws.next().await {
                            Some(Ok(Message::Close(Some(c)))) => {
                                assert_eq!(u16::from(c.code), 1012, "{c:?}");
                                return t0.elapsed();
                            }
                            Some(Ok(_)) => continue,
                            other => panic!("expected Close 1012, got {other:?}"),
                        }
                    }
                })
                .await
            })
        })
        .collect();
    let mut times = Vec::new();
    for w in waits {
        times.push(w.await.unwrap());
    }
    times.sort();
    let (first, last) = (times[0], times[times.len() - 1]);
    assert!(
        last <= Duration::from_millis(2500),
        "closes ran past the window: {times:?}"
    );
    assert!(
        last - first >= Duration::from_millis(500),
        "closes not spread: {times:?}"
    );
    for (i, ws) in stay.iter_mut().enumerate() {
        echoes(ws, &format!("e1 session {i} untouched")).await;
    }
}

/// Health checks of a backend that stays: reloads replace the checker tasks, yet
/// probes keep their interval, with no gap and no probe twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_run_on_without_gap_or_duplicate_across_reloads() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    let probes = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = tx.send(Instant::now());
            drop(s);
        }
    });
    let text = format!(
        r#"[[pool]]
name = "p"
[pool.health]
kind = "tcp"
interval = "200ms"
timeout = "100ms"
[[pool.backend]]
address = "{backend}"

[[route]]
pool = "p"
"#
    );
    let mut p = start_proxy(&text).await;
    within("the first probe", rx.recv()).await;
    let t0 = Instant::now();
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(130)).await;
        // Alternate the config so each reload really builds a new generation.
        let next = if i % 2 == 0 {
            text.replace(
                "[[route]]",
                r#"[[route]]
path_prefix = "/x""#,
            )
        } else {
            text.clone()
        };
        let cfg =
            wsgate::config::Config::parse(&config_text(&next), std::path::Path::new("t.toml"))
                .unwrap();
        p.running.reload(&cfg).await.expect("reload");
    }
    let span = t0.elapsed();
    let mut times = Vec::new();
    while let Ok(t) = rx.try_recv() {
        times.push(t);
    }
    probes.abort();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let expected = span.as_millis() / 200;
    assert!(
        (times.len() as u128).abs_diff(expected) <= 1,
        "{} probes in {span:?}, expected about {expected}: gaps {gaps:?}",
        times.len()
    );
    assert!(
        gaps.iter()
            .all(|g| *g > Duration::from_millis(120) && *g < Duration::from_millis(320)),
        "a probe doubled or skipped: gaps {gaps:?}"
    );
}

/// `log_level` follows the file on reload (when RUST_LOG is not set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_follows_the_file_on_reload() {
    let e = echo("e").await;
    let text = |level: &str| {
        bin_config(
            0,
            &format!(
                r#"[server]
drain_spread = "0s"
log_level = "{level}"
{}{}"#,
                pool("p", "round_robin", "", &[&e]),
                route("/", "p")
            ),
        )
    };
    let mut w = Bin::start("reload-log-level", &text("warn")).await;
    assert!(
        !w.log().contains("listening on"),
        "info lines at warn:\n{}",
        w.log()
    );
    w.write_config(&text("info"));
    let status = w.reload().await;
    assert!(!status.contains("reload failed"), "{status}");
    assert!(
        w.log().contains("reload succeeded"),
        "still at warn:\n{}",
        w.log()
    );
}
