//! Active health checks through the whole proxy: real echo backends killed and
//! restarted (on the same port) inside each test, real TLS clients, and raw TCP
//! backends that answer checks badly on purpose. Every wait polls the state it
//! waits for against a deadline; no sleep decides an outcome.

#[path = "../common/mod.rs"]
mod common;
use common::*;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use wsgate::backend::Backend;

/// How often state is polled.
const POLL: Duration = Duration::from_millis(10);

/// A catch-all route to pool `p` after `pools` (full `[[pool]]` text).
fn with_route(pools: &str) -> String {
    format!("{pools}\n[[route]]\npool = \"p\"\n")
}

/// `[[pool.backend]]` entries for these addresses.
fn backends(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| format!("[[pool.backend]]\naddress = \"{a}\"\n"))
        .collect()
}

fn backend(p: &Proxy, pool: &str, i: usize) -> Arc<Backend> {
    p.running.pool(pool).expect("pool exists").backends[i].clone()
}

/// Polls `b.is_up()` until it equals `up`; returns how long that took.
async fn wait_up(b: &Backend, up: bool, limit: Duration, what: &str) -> Duration {
    let t0 = Instant::now();
    within_for(limit, what, async {
        while b.is_up() != up {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    t0.elapsed()
}

/// A killed backend's port, held bound but not listening: it refuses connections,
/// and no other socket on this host (another test's listener, or a connect that
/// picks it as its own source port) can take it until the backend is restarted.
struct DeadPort {
    addr: SocketAddr,
    _hold: tokio::net::TcpSocket,
}

/// Stops an echo backend and holds its port once the listener is gone.
async fn kill(server: EchoServer) -> DeadPort {
    let addr = server.addr;
    drop(server);
    let hold = within("the killed backend's listener to close", async {
        loop {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.set_reuseaddr(true).unwrap();
            // Fails while the old listener still listens.
            if s.bind(addr).is_ok() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a killed backend's port accepts connections"
    );
    DeadPort { addr, _hold: hold }
}

/// Binds a new echo backend on the port of a killed one.
async fn restart(dead: DeadPort, name: &str) -> EchoServer {
    let addr = dead.addr;
    drop(dead);
    within("rebinding a killed backend's port", async {
        loop {
            match EchoServer::spawn(addr, name).await {
                Ok(s) => return s,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
}

async fn close(mut ws: Ws) {
    within("close handshake", async {
        ws.close(None).await.expect("send Close");
        while let Some(m) = ws.next().await {
            assert!(m.expect("clean end of the session").is_close());
        }
    })
    .await
}

/// Opens (from `from`), notes where it landed, closes.
async fn land(p: &Proxy, from: Option<IpAddr>) -> String {
    let (ws, resp) = ws_connect_req(p.addr, ws_request("/"), from)
        .await
        .unwrap_or_else(|e| panic!("WebSocket through the proxy (from {from:?}): {e}"));
    close(ws).await;
    landed(&resp)
}

/// A raw HTTP backend that answers every request with `answer` and records each head.
async fn http_backend(answer: &'static str) -> (RawBackend, Arc<Mutex<Vec<String>>>) {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let b = raw_backend(move |head, mut s| {
        seen.lock().unwrap().push(head);
        async move {
            let _ = s.write_all(answer.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    })
    .await;
    (b, heads)
}

fn count(heads: &Mutex<Vec<String>>) -> usize {
    heads.lock().unwrap().len()
}

/// Waits for `n` more requests at a raw backend, asserting `b` is up at every poll.
async fn stays_up(b: &Backend, heads: &Mutex<Vec<String>>, n: usize, what: &str) {
    let target = count(heads) + n;
    within(what, async {
        while count(heads) < target {
            assert!(b.is_up(), "{what}: went down");
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    assert!(b.is_up(), "{what}: went down");
}

// ------------------------------------------------------------- kill, failover, recover

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_fails_over_without_errors_then_recovers() {
    let (a, b) = (echo("a").await, echo("b").await);
    // max_fails = 0: no passive marking, so only the active checks take b down and
    // the clients before that are saved by retries alone.
    let p = start_proxy(&with_route(&format!(
        "[[pool]]\nname = \"p\"\nmax_fails = 0\n\
         [pool.health]\nkind = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\nrise = 2\nfall = 2\n{}",
        backends(&[a.addr, b.addr])
    )))
    .await;
    let dead = backend(&p, "p", 1);
    assert!(dead.is_up());

    let b_dead = kill(b).await;
    let killed = Instant::now();
    let watcher = {
        let dead = dead.clone();
        tokio::spawn(async move {
            while dead.is_up() {
                tokio::time::sleep(POLL).await;
            }
            killed.elapsed()
        })
    };
    let mut to_b_while_up = 0;
    for i in 0..200 {
        let up_before = dead.is_up();
        let at = land(&p, None).await;
        assert_eq!(at, "a", "connection {i} after the kill");
        to_b_while_up += usize::from(up_before);
    }
    let down_after = within_for(Duration::from_secs(2), "b marked down", watcher)
        .await
        .unwrap();
    println!(
        "tcp check, interval 200ms, fall 2: marked down {down_after:?} after the kill; \
         {to_b_while_up} of 200 clients connected while b was still up"
    );
    assert!(
        down_after >= Duration::from_millis(150),
        "down after {down_after:?}: faster than fall x interval allows"
    );
    assert!(!dead.is_up());

    let b = restart(b_dead, "b").await;
    let up_after = wait_up(&dead, true, Duration::from_secs(2), "b back up").await;
    println!("tcp check, interval 200ms, rise 2: back up {up_after:?} after the restart");
    assert!(
        up_after >= Duration::from_millis(150),
        "up after {up_after:?}: faster than rise x interval allows"
    );

    let mut picks = Vec::new();
    for _ in 0..10 {
        picks.push(land(&p, None).await);
    }
    let on_b = picks.iter().filter(|s| *s == "b").count();
    assert!(on_b >= 4, "round robin after recovery: {picks:?}");
    assert_eq!(
        picks[6..].iter().filter(|s| *s == "b").count(),
        2,
        "alternating again: {picks:?}"
    );
    drop(b);
}

#[tokio::test]
async fn ip_hash_keeps_survivors_clients_in_place() {
    let servers = vec![echo("x").await, echo("y").await, echo("z").await];
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let p = start_proxy(&with_route(&format!(
        "[[pool]]\nname = \"p\"\nbalance = \"ip_hash\"\n\
         [pool.health]\nkind = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nfall = 2\n{}",
        backends(&addrs)
    )))
    .await;

    let clients: Vec<IpAddr> = (1..=30)
        .map(|d| IpAddr::V4(Ipv4Addr::new(127, 0, 3, d)))
        .collect();
    let mut before = BTreeMap::new();
    for ip in &clients {
        before.insert(*ip, land(&p, Some(*ip)).await);
    }
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for at in before.values() {
        *per.entry(at.as_str()).or_default() += 1;
    }
    let (victim, n) = per.iter().max_by_key(|(_, n)| **n).unwrap();
    let (victim, n) = (victim.to_string(), *n);
    assert!(n >= 1 && per.len() >= 2, "30 clients spread: {per:?}");

    let i = ["x", "y", "z"].iter().position(|s| *s == victim).unwrap();
    let mut servers: Vec<Option<EchoServer>> = servers.into_iter().map(Some).collect();
    let _dead = kill(servers[i].take().unwrap()).await;
    let t = wait_up(&backend(&p, "p", i), false, Duration::from_secs(2), "down").await;
    println!("ip_hash: {victim} (with {n} of 30 clients) marked down {t:?} after the kill");

    for ip in &clients {
        let now = land(&p, Some(*ip)).await;
        if before[ip] == victim {
            assert!(
                now != victim && ["x", "y", "z"].contains(&now.as_str()),
                "client {ip} of killed {victim} landed on {now}"
            );
        } else {
            assert_eq!(now, before[ip], "client {ip} of a surviving backend moved");
        }
    }
}

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
    let check = "kind = \"http\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nfall = 2\npath = \"/health\"\n";
    let p = start_proxy(&with_route(&format!(
        // p: the 500 backend, and the echo backend (checked by tcp: it speaks only WebSocket).
        "[[pool]]\nname = \"p\"\n[pool.health]\n{check}\
         [[pool.backend]]\naddress = \"{}\"\n\
         [[pool.backend]]\naddress = \"{}\"\n[pool.backend.health]\nkind = \"tcp\"\n\n\
         [[pool]]\nname = \"q\"\n[pool.health]\n{check}\
         [[pool.backend]]\naddress = \"{}\"\n\
         [[pool.backend]]\naddress = \"{}\"\n[pool.backend.health]\nexpect_status = 204\n\
         [[pool.backend]]\naddress = \"{}\"\n[pool.backend.health]\nexpect_status = 204\n",
        bad.addr, good.addr, ok200.addr, ok204.addr, wrong.addr
    )))
    .await;

    let t = wait_up(&backend(&p, "p", 0), false, DEADLINE, "500 backend down").await;
    println!("http check, interval 100ms, fall 2: the 500 backend down after {t:?}");
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
        "[[pool]]\nname = \"p\"\n\
         [pool.health]\nkind = \"websocket\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nfall = 2\npath = \"/hc\"\n{}",
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
        "websocket check, interval 100ms, fall 2: wrong Accept down after {:?}",
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

// ------------------------------------------------------------- nothing left, then back

#[tokio::test]
async fn all_down_is_503_with_retry_after_then_recovers() {
    let (a, b) = (echo("a").await, echo("b").await);
    let p = start_proxy(&with_route(&format!(
        "[[pool]]\nname = \"p\"\n\
         [pool.health]\nkind = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 2\nfall = 1\n{}",
        backends(&[a.addr, b.addr])
    )))
    .await;
    let (ab, bb) = (backend(&p, "p", 0), backend(&p, "p", 1));
    let a_dead = kill(a).await;
    let _b_dead = kill(b).await;
    wait_up(&ab, false, Duration::from_secs(2), "a down").await;
    wait_up(&bb, false, Duration::from_secs(2), "b down").await;

    for _ in 0..3 {
        let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
        assert_eq!(r.status, 503, "{r:?}");
        let secs: u64 = r
            .header("retry-after")
            .expect("Retry-After on a 503")
            .parse()
            .expect("Retry-After in seconds");
        assert!(secs >= 1, "{r:?}");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain")),
            "{r:?}"
        );
        assert!(r.body.contains("no healthy backend"), "{r:?}");
    }

    let a = restart(a_dead, "a").await;
    let t = wait_up(&ab, true, Duration::from_secs(2), "a back up").await;
    println!("tcp check, interval 100ms, rise 2: back up {t:?} after the restart");
    for _ in 0..3 {
        assert_eq!(land(&p, None).await, "a");
    }
    assert!(!bb.is_up());
    drop(a);
}

// -------------------------------------------------------------------- slow start

#[tokio::test]
async fn slow_start_ramps_the_recovered_backends_weight() {
    let (a, b) = (echo("a").await, echo("b").await);
    let p = start_proxy(&with_route(&format!(
        "[[pool]]\nname = \"p\"\nslow_start = \"3s\"\n\
         [pool.health]\nkind = \"tcp\"\ninterval = \"50ms\"\ntimeout = \"50ms\"\nrise = 1\nfall = 1\n\
         [[pool.backend]]\naddress = \"{}\"\nweight = 100\n\
         [[pool.backend]]\naddress = \"{}\"\nweight = 100\n",
        a.addr, b.addr
    )))
    .await;
    let bb = backend(&p, "p", 1);
    assert_eq!(bb.effective_weight(), 100, "no ramp before any recovery");

    let b_dead = kill(b).await;
    wait_up(&bb, false, Duration::from_secs(2), "b down").await;
    let b = restart(b_dead, "b").await;
    wait_up(&bb, true, Duration::from_secs(2), "b back up").await;
    let up = Instant::now();
    let first = bb.effective_weight();
    assert!(first < 50, "right after recovery: weight {first}");

    // Early in the ramp (weight <= 20 of 100) b gets far fewer new sessions than a;
    // one may go there at once (round robin's state from before the failure).
    let (mut on_b, mut early) = (0, 0);
    while early < 20 && up.elapsed() < Duration::from_millis(600) {
        on_b += usize::from(land(&p, None).await == "b");
        early += 1;
    }
    let mut samples = vec![first];
    within("full weight again", async {
        loop {
            let w = bb.effective_weight();
            samples.push(w);
            if w == 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let took = up.elapsed();
    println!(
        "slow start 3s: {on_b} of {early} early sessions on b; weight reached 100 after {took:?}"
    );
    assert!(
        on_b <= 1 + early / 4,
        "{on_b} of {early} early sessions on the ramping backend"
    );
    assert!(
        samples.windows(2).all(|w| w[0] <= w[1]),
        "weight must only grow: {samples:?}"
    );
    assert!(
        samples.iter().any(|w| *w > first + 10 && *w < 90),
        "a gradual ramp, not a jump: {samples:?}"
    );
    assert!(
        took >= Duration::from_millis(2500),
        "full weight after {took:?}"
    );
    drop(b);
}

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
        "[[pool]]\nname = \"p\"\n[pool.health]\nkind = \"http\"\ninterval = \"10s\"\ntimeout = \"5s\"\n\
         [[pool.backend]]\naddress = \"{}\"\n\n[[route]]\npool = \"p\"\n",
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
    let mut text = "[[pool]]\nname = \"p\"\n[pool.health]\nkind = \"tcp\"\ninterval = \"400ms\"\ntimeout = \"300ms\"\n".to_string();
    for a in &addrs {
        text += &format!("[[pool.backend]]\naddress = \"{a}\"\n");
    }
    text += "\n[[route]]\npool = \"p\"\n";
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
            "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = false\n\
             [[pool]]\nname = \"p\"\n[pool.health]\nkind = \"tcp\"\ninterval = \"50ms\"\ntimeout = \"40ms\"\nrise = 1\nfall = 1\n\
             [[pool.backend]]\naddress = \"{addr}\"\n\n[[route]]\npool = \"p\"\n"
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
