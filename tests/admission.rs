//! Admission control before TLS, through a real proxy on loopback: the per-IP
//! connection count, the per-IP connect-rate bucket, exempt CIDRs, bounded keyed
//! state, the global `max_connections` pause, and accept errors (EMFILE) that must
//! not bring the process down. Source addresses are picked from 127.0.0.0/8 so that
//! each test counts under IPs of its own.
mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::sleep;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

/// A whole config: `[limits]` as given (nothing exempt unless it says so), one TLS
/// listener, then `rest`.
fn config(limits: &str, rest: &str) -> String {
    format!(
        r#"[limits]
{limits}

[[listener]]
address = "127.0.0.1:0"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"

{rest}"#
    )
}

async fn proxy(limits: &str, backend: SocketAddr) -> Proxy {
    start_proxy_raw(&config(
        limits,
        &pool_and_route("p", "round_robin", &[(backend, 1)]),
    ))
    .await
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A plain TCP connection from `from` (the kernel completes it whatever the proxy
/// decides; admission happens at accept).
async fn tcp_from(addr: SocketAddr, from: IpAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from, 0)).unwrap();
    within("TCP connect", s.connect(addr)).await.unwrap()
}

/// A TLS handshake over an open TCP connection.
async fn tls_over(tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let c = tokio_rustls::TlsConnector::from(Arc::new(client_tls_config()));
    within("TLS handshake attempt", c.connect(name, tcp)).await
}

/// Whether a new connection from `from` gets through the TLS handshake.
async fn admitted(addr: SocketAddr, from: IpAddr) -> bool {
    tls_over(tcp_from(addr, from).await).await.is_ok()
}

/// Asserts the proxy closes a fresh connection from `from` without a single byte:
/// refused before TLS. (An admitted one would wait silently for a ClientHello.)
async fn assert_refused_before_tls(addr: SocketAddr, from: IpAddr) {
    let mut tcp = tcp_from(addr, from).await;
    let mut b = [0u8; 64];
    match within("refused connection to close", tcp.read(&mut b)).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("a refused connection got {n} bytes: {:?}", &b[..n]),
    }
    assert!(
        !admitted(addr, from).await,
        "a TLS handshake from {from} must fail while refused"
    );
}

async fn ws_from(addr: SocketAddr, from: IpAddr) -> Ws {
    ws_connect_req(addr, ws_request("/"), Some(from))
        .await
        .unwrap_or_else(|e| panic!("WebSocket from {from} must be admitted: {e}"))
        .0
}

async fn echo_once(ws: &mut Ws, text: &str) {
    within("send", ws.send(Message::text(text))).await.unwrap();
    let m = within("echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(m, Message::text(text));
}

/// Closes a session cleanly and waits for the end of its stream.
async fn close_ws(mut ws: Ws) {
    within("client close", ws.close(None)).await.unwrap();
    while let Some(Ok(_)) = within("end of stream", ws.next()).await {}
}

/// Polls `f` until it holds, failing after `d`.
async fn eventually(d: Duration, what: &str, mut f: impl FnMut() -> bool) {
    within_for(d, what, async {
        while !f() {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// What `open_connections()` reports with nothing connected, once the accept loop
/// runs. It should be 0; see `open_connections_counts_admitted_connections_only`.
async fn idle_open_connections(p: &Proxy) -> usize {
    let _ = ws_connect_req(p.addr, ws_request("/nowhere"), Some(ip("127.0.0.250"))).await;
    eventually(DEADLINE, "the probe connection to end", || {
        p.running.admission().tracked().0 == 0
    })
    .await;
    p.running.open_connections()
}

#[tokio::test]
async fn over_max_connections_per_ip_is_refused_before_tls_until_one_closes() {
    let a = echo("a").await;
    let p = proxy("max_connections_per_ip = 3", a.addr).await;
    let me = ip("127.0.0.5");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(ws_from(p.addr, me).await);
    }
    assert_refused_before_tls(p.addr, me).await;
    let counters = &p.running.admission().counters;
    assert_eq!(counters.too_many_from_ip.load(Ordering::Relaxed), 2);
    assert_eq!(counters.connect_rate.load(Ordering::Relaxed), 0);
    // Another IP is not affected.
    let mut other = ws_from(p.addr, ip("127.0.0.6")).await;
    echo_once(&mut other, "other").await;

    close_ws(held.pop().unwrap()).await;
    let mut again = within("admitted again after one closed", async {
        loop {
            if let Ok((ws, _)) = ws_connect_req(p.addr, ws_request("/"), Some(me)).await {
                break ws;
            }
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    echo_once(&mut again, "again").await;
    for ws in &mut held {
        echo_once(ws, "still held").await;
    }
    assert!(counters.too_many_from_ip.load(Ordering::Relaxed) >= 2);
    assert_refused_before_tls(p.addr, me).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_burst_then_connect_rate() {
    let a = echo("a").await;
    let p = proxy("connect_burst = 5\nconnect_rate = 10.0", a.addr).await;
    let me = ip("127.0.0.7");
    let t0 = Instant::now();
    // Six connections at once: admission decides at accept, in connect order.
    let mut tcps = Vec::new();
    for _ in 0..6 {
        tcps.push(tcp_from(p.addr, me).await);
    }
    let mut results = Vec::new();
    for t in tcps {
        results.push(tls_over(t).await.is_ok());
    }
    assert_eq!(results, [true, true, true, true, true, false], "burst of 5");
    let counters = &p.running.admission().counters;
    assert_eq!(counters.connect_rate.load(Ordering::Relaxed), 1);

    // The next token comes 100 ms after the burst: retry until it does.
    let mut n_admitted = 5;
    within("a connection admitted after the refill", async {
        while !admitted(p.addr, me).await {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    n_admitted += 1;
    let first_refill = t0.elapsed();
    assert!(
        first_refill >= Duration::from_millis(90),
        "the 6th connection came {first_refill:?} after the burst: before the refill"
    );
    assert!(
        first_refill < Duration::from_millis(600),
        "refill too slow: {first_refill:?}"
    );

    // Keep asking for a bounded window: what gets in follows burst + rate * elapsed.
    let window = Duration::from_millis(1500);
    while t0.elapsed() < window {
        if admitted(p.addr, me).await {
            n_admitted += 1;
        }
        sleep(Duration::from_millis(10)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let expected = 5.0 + 10.0 * elapsed;
    assert!(
        (n_admitted as f64 - expected).abs() <= 2.0,
        "admitted {n_admitted} in {elapsed:.3}s, expected about {expected:.1}"
    );
    assert!(counters.connect_rate.load(Ordering::Relaxed) > 10);
}

#[tokio::test]
async fn exempt_cidr_is_not_limited_while_another_ip_is() {
    let a = echo("a").await;
    let limits = r#"max_connections_per_ip = 1
connect_burst = 1
exempt = ["127.0.0.9/32"]"#;
    let p = proxy(limits, a.addr).await;
    let free = ip("127.0.0.9");
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(ws_from(p.addr, free).await);
    }
    for ws in &mut held {
        echo_once(ws, "exempt").await;
    }
    let limited = ip("127.0.0.10");
    let mut one = ws_from(p.addr, limited).await;
    assert_refused_before_tls(p.addr, limited).await;
    echo_once(&mut one, "limited").await;
    // More from the exempt address still get in while the other one is refused.
    held.push(ws_from(p.addr, free).await);
    let adm = p.running.admission();
    assert_eq!(adm.counters.too_many_from_ip.load(Ordering::Relaxed), 2);
    assert_eq!(adm.counters.connect_rate.load(Ordering::Relaxed), 0);
    // Only the limited IP is tracked at all.
    assert_eq!(adm.tracked(), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_state_stays_bounded_across_many_addresses() {
    let a = echo("a").await;
    // One token used refills in 1 s, after which the periodic prune may drop the key.
    let p = proxy("connect_rate = 1.0\nconnect_burst = 2", a.addr).await;
    let idle = idle_open_connections(&p).await;
    let n = 500;
    let mut conns = Vec::new();
    for i in 0..n {
        let from = IpAddr::from([127, 1, (i / 250) as u8, (i % 250 + 1) as u8]);
        conns.push(tcp_from(p.addr, from).await);
    }
    let adm = p.running.admission();
    eventually(DEADLINE, "all connections admitted", || {
        adm.tracked().0 == n
    })
    .await;
    assert!(p.running.open_connections() >= n);
    let (live, rate) = adm.tracked();
    assert_eq!(live, n, "one live entry per address");
    assert!(
        (n - 50..=n + 1).contains(&rate),
        "rate state for about {n} addresses: {rate}"
    );
    assert_eq!(adm.counters.too_many_from_ip.load(Ordering::Relaxed), 0);
    assert_eq!(adm.counters.connect_rate.load(Ordering::Relaxed), 0);

    drop(conns);
    eventually(DEADLINE, "live entries gone", || adm.tracked().0 == 0).await;
    eventually(DEADLINE, "connections released", || {
        p.running.open_connections() == idle
    })
    .await;
    eventually(Duration::from_secs(5), "rate state pruned", || {
        adm.tracked().1 <= 5
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_accepting_pauses_until_a_slot_frees() {
    let a = echo("a").await;
    let p = proxy(
        r#"max_connections = 4
exempt = ["127.0.0.0/8"]"#,
        a.addr,
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(ws_connect(p.addr, "/").await.0);
    }
    assert_eq!(p.running.open_connections(), 4);
    let addr = p.addr;
    let mut fifth = tokio::spawn(async move {
        let t = tls_connect_with(addr, client_tls_config(), None).await?;
        let req = ws_request("/");
        let (ws, _) = tokio_tungstenite::client_async(req, t)
            .await
            .map_err(std::io::Error::other)?;
        Ok::<_, std::io::Error>(ws)
    });
    // Bounded check: the kernel holds the 5th in the backlog, no TLS answer comes.
    let early = tokio::time::timeout(Duration::from_millis(700), &mut fifth).await;
    assert!(early.is_err(), "the 5th connection got through: {early:?}");
    assert_eq!(p.running.open_connections(), 4);
    for ws in &mut held {
        echo_once(ws, "held").await;
    }

    close_ws(held.pop().unwrap()).await;
    let mut ws = within("5th handshake after a slot freed", fifth)
        .await
        .unwrap()
        .expect("5th handshake completes");
    echo_once(&mut ws, "fifth").await;
    assert_eq!(p.running.open_connections(), 4);
    assert_eq!(
        p.running
            .admission()
            .counters
            .too_many_from_ip
            .load(Ordering::Relaxed),
        0
    );
}

/// The real binary with 40 file descriptors: 80 connections at once make accept
/// fail with EMFILE; once they are gone it must serve normally again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_do_not_crash_the_process() {
    let a = echo("a").await;
    let text = config(
        r#"max_connections = 100000
max_connections_per_ip = 100000
exempt = ["127.0.0.0/8"]"#,
        &format!(
            r#"[server]
log_level = "info"

{}"#,
            pool_and_route("p", "round_robin", &[(a.addr, 1)])
        ),
    );
    let path = std::env::temp_dir().join(format!("wsgate-emfile-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 40 && exec \"$0\" run -c \"$1\"")
        .arg(env!("CARGO_BIN_EXE_wsgate"))
        .arg(&path)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("wsgate starts");
    let log = Arc::new(Mutex::new(String::new()));
    for out in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let mut g = log.lock().unwrap();
                g.push_str(&l);
                g.push('\n');
            }
        });
    }
    let seen = |what: &str| log.lock().unwrap().contains(what);
    eventually(DEADLINE, "wsgate to listen", || seen("listening on")).await;
    let addr: SocketAddr = {
        let g = log.lock().unwrap();
        let at = g.find("listening on ").unwrap() + "listening on ".len();
        let rest = &g[at..];
        rest[..rest.find(' ').unwrap()].parse().unwrap()
    };

    let mut conns = Vec::new();
    for _ in 0..80 {
        conns.push(
            within("TCP connect", TcpStream::connect(addr))
                .await
                .unwrap(),
        );
    }
    eventually(DEADLINE, "an accept error to be logged", || {
        seen("accept failed")
    })
    .await;
    assert!(child.try_wait().unwrap().is_none(), "wsgate exited");
    drop(conns);

    // Accepting backs off up to 1 s after errors; the handshake's own deadline covers it.
    let (mut ws, resp) = ws_connect(addr, "/").await;
    assert_eq!(landed(&resp), "a");
    echo_once(&mut ws, "after EMFILE").await;
    close_ws(ws).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "wsgate exited:\n{}",
        log.lock().unwrap()
    );
    child.kill().await.unwrap();
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn open_connections_counts_admitted_connections_only() {
    let a = echo("a").await;
    let p = proxy("", a.addr).await;
    let (ws, _) = ws_connect(p.addr, "/").await;
    assert_eq!(p.running.open_connections(), 1, "one session open");
    close_ws(ws).await;
    eventually(DEADLINE, "the session to end", || {
        p.running.admission().tracked().0 == 0
    })
    .await;
    assert_eq!(p.running.open_connections(), 0, "nothing open");
}
