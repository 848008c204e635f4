//! Failover without active checks: passive marking (max_fails / fail_timeout), the
//! retries bound, a backend's own refusal passed through untried elsewhere, drain,
//! and what clients of a vanished backend are told. Real backends throughout; raw
//! TCP backends where a test must count what a backend saw.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use wsgate::backends::backend::Backend;

const POLL: Duration = Duration::from_millis(10);

/// A catch-all route to pool `p` after `pool` (full `[[pool]]` text).
fn with_route(pool: &str) -> String {
    format!(
        r#"{pool}
[[route]]
pool = "p"
"#
    )
}

/// Pool `p` with extra pool keys `keys` and these backends, plus its route.
fn pool(keys: &str, addrs: &[SocketAddr]) -> String {
    let mut s = format!(
        r#"[[pool]]
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
    with_route(&s)
}

fn backend(p: &Proxy, i: usize) -> Arc<Backend> {
    p.running.pool("p").expect("pool p").backends[i].clone()
}

/// A port that refuses connections: bound but not listening, and held (so no other
/// socket on this host can take it) until the returned socket is dropped.
fn dead_port() -> (SocketAddr, tokio::net::TcpSocket) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    (s.local_addr().unwrap(), s)
}

/// A TCP listener that counts accepted connections and drops each at once.
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, n, task)
}

/// Opens a session; `Ok(backend name)` or `Err(status)` of a refused upgrade.
async fn attempt(p: &Proxy) -> Result<(Ws, String), u16> {
    match ws_connect_req(p.addr, ws_request("/"), None).await {
        Ok((ws, resp)) => Ok((ws, landed(&resp))),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("neither a session nor an HTTP refusal: {e}"),
    }
}

async fn land(p: &Proxy) -> String {
    let (ws, at) = attempt(p).await.expect("session through the proxy");
    close_session(ws).await;
    at
}

async fn echo_once(ws: &mut Ws, text: &str) {
    within("echo", async {
        ws.send(Message::text(text)).await.unwrap();
        match ws.next().await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
            other => panic!("expected the echo of {text:?}, got {other:?}"),
        }
    })
    .await
}

// ------------------------------------------------------------------ passive checks

#[tokio::test]
async fn passive_marks_down_for_fail_timeout_then_tries_again() {
    let (dead, _hold) = dead_port();
    let (counted, attempts, _task) = counting_listener().await;
    let good = echo("good").await;
    // Round robin over [dead, counted, good]: the first client is given dead, then
    // (retry) counted, then (retry) good.
    // nginx's keys, with nginx's whole meaning: no bound on how many are ejected
    // (max_ejection_percent) and no panic mode.
    let p = start_proxy(&pool(
        r#"max_fails = 1
fail_timeout = "2s"
max_ejection_percent = 100
panic_threshold = 0"#,
        &[dead, counted, good.addr],
    ))
    .await;
    let (dead_b, counted_b) = (backend(&p, 0), backend(&p, 1));

    let t0 = Instant::now();
    assert_eq!(land(&p).await, "good", "first client, saved by retries");
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "counted was tried once");
    assert!(!dead_b.is_up(), "refused connect: marked down at once");
    assert!(!counted_b.is_up(), "dropped upgrade: marked down at once");

    // While marked down neither is tried.
    for i in 0..10 {
        assert_eq!(land(&p).await, "good", "connection {i} while marked down");
    }
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "too slow to test within fail_timeout"
    );
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "a backend marked down got a connection attempt"
    );

    within("counted usable again after fail_timeout", async {
        while !counted_b.is_up() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    let down_for = t0.elapsed();
    println!(
        "passive: max_fails 1, fail_timeout 2s: usable again {down_for:?} after the first client"
    );
    assert!(
        down_for >= Duration::from_millis(1990),
        "usable again after only {down_for:?}"
    );
    // Tried again: each client still succeeds, and counted sees an attempt.
    let mut n = 0;
    while attempts.load(Ordering::SeqCst) == 1 {
        n += 1;
        assert!(n <= 3, "counted not tried in 3 clients after fail_timeout");
        assert_eq!(land(&p).await, "good");
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------- vanished backend

/// Read off the wire: tungstenite (0.30) treats 1014 as an invalid code and hands
/// its caller a 1002 instead, so these clients are raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_backend_get_1014_within_a_second() {
    let a = echo("a").await;
    let p = start_proxy(&pool("", &[a.addr])).await;
    let mut clients = Vec::new();
    for i in 0..5u8 {
        let (mut s, resp) = raw_ws(p.addr, "/", "").await;
        assert_eq!((resp.status, resp.header("x-backend")), (101, Some("a")));
        write_all(
            &mut s,
            &encode_frame(true, 0, op::TEXT, &[b'0' + i], Some([1, 2, 3, 4])),
        )
        .await;
        let f = within("echo", read_frame(&mut s)).await.unwrap();
        assert_eq!((f.opcode, f.payload), (op::TEXT, vec![b'0' + i]));
        clients.push(s);
    }
    assert_eq!(backend(&p, 0).active(), 5);

    let killed = Instant::now();
    drop(a);
    let readers = clients.into_iter().map(|mut s| async move {
        let f = within("Close after the kill", read_frame(&mut s)).await;
        (f, killed.elapsed())
    });
    for (i, (f, after)) in futures_util::future::join_all(readers)
        .await
        .into_iter()
        .enumerate()
    {
        let f = f.unwrap_or_else(|e| panic!("client {i}: no frame after the kill: {e}"));
        println!("client {i}: {:?} {after:?} after the kill", f.close_code());
        assert_eq!(f.close_code(), Some(1014), "client {i}: {f:?}");
        assert!(!f.masked, "client {i}: a server frame is never masked");
        assert!(
            after < Duration::from_secs(1),
            "client {i}: Close after {after:?}"
        );
    }
}

// ------------------------------------------------------- a backend's own answer stands

#[tokio::test]
async fn a_backends_own_401_is_not_retried() {
    let (n401, n_other) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = n401.clone();
    let refuser = raw_backend(move |_head, mut s| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let _ = s
                .write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n\
                      Content-Length: 12\r\nConnection: close\r\n\r\nunauthorized",
                )
                .await;
        }
    })
    .await;
    let seen = n_other.clone();
    let other = raw_backend(move |head, mut s| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let _ = s
                .write_all(switching(&head, "x-backend: other\r\n").as_bytes())
                .await;
        }
    })
    .await;
    // retries = 2 (the default): other is reachable for a retry, and must get none.
    let p = start_proxy(&pool("", &[refuser.addr, other.addr])).await;

    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(r.body, "unauthorized");
    assert_eq!(n401.load(Ordering::SeqCst), 1);
    assert_eq!(n_other.load(Ordering::SeqCst), 0, "the 401 was retried");
    assert!(backend(&p, 0).is_up(), "a 401 is an answer, not a failure");

    // Round robin's next pick is the other backend: it was usable all along.
    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    assert_eq!(r.status, 101, "{r:?}");
    assert_eq!(r.header("x-backend"), Some("other"));
    assert_eq!(
        (n401.load(Ordering::SeqCst), n_other.load(Ordering::SeqCst)),
        (1, 1)
    );
}

// ------------------------------------------------------------------------- drain

#[tokio::test]
async fn backend_draining_in_config_gets_no_sessions() {
    let (a, b) = (echo("a").await, echo("b").await);
    let p = start_proxy(&with_route(&format!(
        r#"[[pool]]
name = "p"
[[pool.backend]]
address = "{}"
[[pool.backend]]
address = "{}"
drain = true
"#,
        a.addr, b.addr
    )))
    .await;
    let bb = backend(&p, 1);
    assert!(bb.draining() && bb.is_up() && !bb.pickable());
    for i in 0..10 {
        assert_eq!(land(&p).await, "a", "connection {i}");
    }
    bb.set_drain(false);
    let picks = [land(&p).await, land(&p).await];
    assert!(picks.contains(&"b".to_string()), "undrained: {picks:?}");
}

#[tokio::test]
async fn drain_at_runtime_keeps_live_sessions_and_moves_new_ones() {
    let (a, b) = (echo("a").await, echo("b").await);
    let p = start_proxy(&pool("", &[a.addr, b.addr])).await;
    let bb = backend(&p, 1);

    let mut held = None;
    let mut opened = Vec::new();
    while held.is_none() {
        assert!(opened.len() < 2, "round robin gave b nothing: {opened:?}");
        let (ws, at) = attempt(&p).await.expect("session");
        if at == "b" {
            held = Some(ws);
        } else {
            opened.push(ws);
        }
    }
    let mut on_b = held.unwrap();
    echo_once(&mut on_b, "before drain").await;

    bb.set_drain(true);
    assert!(bb.draining() && bb.is_up());
    for i in 0..10 {
        assert_eq!(land(&p).await, "a", "new session {i} while b drains");
        echo_once(&mut on_b, &format!("during drain {i}")).await;
    }
    assert_eq!(bb.active(), 1, "the live session on b");

    bb.set_drain(false);
    let picks = [land(&p).await, land(&p).await];
    assert!(picks.contains(&"b".to_string()), "undrained: {picks:?}");
    echo_once(&mut on_b, "after drain").await;
    close_session(on_b).await;
    for ws in opened {
        close_session(ws).await;
    }
}

// ------------------------------------------------------------------ retries bound

#[tokio::test]
async fn retries_zero_gives_502_when_given_the_dead_backend() {
    let alive = echo("alive").await;
    let (dead, _hold) = dead_port();
    // max_fails = 0: no passive marking, so round robin keeps handing out dead.
    let p = start_proxy(&pool("retries = 0\nmax_fails = 0", &[dead, alive.addr])).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(match attempt(&p).await {
            Ok((ws, at)) => {
                close_session(ws).await;
                at
            }
            Err(status) => status.to_string(),
        });
    }
    assert_eq!(seen, ["502", "alive", "502", "alive", "502", "alive"]);
    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("backend unreachable"), "{r:?}");
    assert!(
        !r.body.contains(&dead.port().to_string()),
        "leaks the address: {r:?}"
    );

    let p = start_proxy(&pool("retries = 2\nmax_fails = 0", &[dead, alive.addr])).await;
    for i in 0..6 {
        assert_eq!(land(&p).await, "alive", "connection {i} with retries = 2");
    }
}

// --------------------------------------------------------------- hanging backends

/// A backend that reads the upgrade request and never answers; counts requests.
async fn silent_backend() -> (RawBackend, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    let b = raw_backend(move |_head, s| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        }
    })
    .await;
    (b, n)
}

#[tokio::test]
async fn hanging_backend_is_retried_after_upgrade_timeout_and_marked_down() {
    let (silent, requests) = silent_backend().await;
    let good = echo("good").await;
    // One failure ejects (nginx's max_fails = 1, the default before outlier detection).
    let p = start_proxy(&pool(
        r#"upgrade_timeout = "200ms"
max_fails = 1"#,
        &[silent.addr, good.addr],
    ))
    .await;

    let t0 = Instant::now();
    assert_eq!(land(&p).await, "good", "given the silent backend first");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(200), "retried after {took:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    assert!(
        !backend(&p, 0).is_up(),
        "an upgrade timeout counts as a failure"
    );
    for i in 0..5 {
        assert_eq!(land(&p).await, "good", "connection {i}");
    }
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "tried while marked down"
    );
}

#[tokio::test]
async fn upstream_deadline_bounds_all_attempts_with_504() {
    let (s1, n1) = silent_backend().await;
    let (s2, n2) = silent_backend().await;
    let p = start_proxy(&pool(
        r#"upgrade_timeout = "10s"
upstream_deadline = "300ms"
max_fails = 1"#,
        &[s1.addr, s2.addr],
    ))
    .await;
    let t0 = Instant::now();
    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    let took = t0.elapsed();
    println!("upstream_deadline 300ms: 504 after {took:?}");
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.body.contains("no backend answered in time"), "{r:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "504 after {took:?}"
    );
    assert_eq!(
        n1.load(Ordering::SeqCst) + n2.load(Ordering::SeqCst),
        1,
        "the deadline expired during the first attempt"
    );
    // The hung backend's cut-short attempt counts against it (passive checks).
    let hung = usize::from(n2.load(Ordering::SeqCst) == 1);
    let backends = &p.running.pool("p").unwrap().backends;
    assert!(
        !backends[hung].is_up(),
        "the hung backend was not marked down"
    );
    assert!(backends[1 - hung].is_up());
}
