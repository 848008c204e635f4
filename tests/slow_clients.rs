//! Slow and half-open clients: a thousand connections that never finish TLS or
//! trickle their request head must neither starve a normal client nor leave
//! connections or memory behind once their timeouts have run.
//! Alone in its own test binary, so its load does not skew other tests' timing.
mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

/// Connections of each kind.
const EACH: usize = 500;

/// The process's resident set, from /proc/self/status (VmRSS, in kB).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// A distinct source address for attacker `i`, so per-IP limits refuse none of them.
fn attacker(i: usize) -> IpAddr {
    IpAddr::from([127, 2, (i / 250) as u8, (i % 250 + 1) as u8])
}

async fn tcp_from(addr: SocketAddr, from: IpAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from, 0)).unwrap();
    within("TCP connect", s.connect(addr)).await.unwrap()
}

/// Connects and sends nothing; returns once the proxy has dropped the connection.
async fn silent(addr: SocketAddr, from: IpAddr, connected: Arc<AtomicUsize>) {
    let mut tcp = tcp_from(addr, from).await;
    connected.fetch_add(1, Ordering::Relaxed);
    let mut b = [0u8; 64];
    match within("the proxy to drop a silent client", tcp.read(&mut b)).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("a client that never sent a ClientHello got {n} bytes"),
    }
}

/// Completes TLS, then sends an upgrade head one byte every 200 ms for half the
/// proxy's head deadline, then waits until the proxy answers or closes; returns what
/// the proxy sent.
async fn trickle(addr: SocketAddr, from: IpAddr, in_tls: Arc<AtomicUsize>) -> Vec<u8> {
    let mut s = within(
        "TLS connect",
        tls_connect_with(addr, client_tls_config(), Some(from)),
    )
    .await
    .expect("a trickling client completes TLS");
    in_tls.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let mut got = Vec::new();
    for b in upgrade_head("/", "").bytes() {
        // Then only read: a byte written after the proxy has answered and closed
        // draws a reset that can discard the answer unread (the proxy lingers 1 s
        // after its 408, and a client starved of CPU on a loaded machine can miss it).
        if started.elapsed() < Duration::from_millis(500)
            && (s.write_all(&[b]).await.is_err() || s.flush().await.is_err())
        {
            break;
        }
        let mut buf = [0u8; 512];
        match timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(n)) if n > 0 => {
                got.extend_from_slice(&buf[..n]);
                let _ = within("the rest of the answer", s.read_to_end(&mut got)).await;
                break;
            }
            Ok(_) => break,
        }
    }
    got
}

async fn echo_once(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    let m = within("echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(m, Message::text(text));
}

async fn eventually(d: Duration, what: &str, mut f: impl FnMut() -> bool) {
    within_for(d, what, async {
        while !f() {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_half_open_clients_neither_starve_others_nor_leak() {
    let a = echo("a").await;
    let text = format!(
        r#"[server]
tls_handshake_timeout = "1s"
header_read_timeout = "1s"

[limits]
max_connections = 5000

[[listener]]
address = "127.0.0.1:0"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"

{}"#,
        pool_and_route("p", "round_robin", &[(a.addr, 1)])
    );
    let p = start_proxy_raw(&text).await;
    let adm = p.running.admission();

    // Warm up (TLS, runtime, allocator), then take the baseline with nothing open.
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    echo_once(&mut ws, "warm").await;
    ws.close(None).await.unwrap();
    while within("end of stream", ws.next()).await.is_some() {}
    drop(ws);
    eventually(DEADLINE, "the warm-up session to end", || {
        adm.tracked().0 == 0
    })
    .await;
    // It should be 0 here; admission.rs has the (ignored) test for that.
    let idle = p.running.open_connections();
    let rss0 = rss_bytes();

    // The trickling clients first: their TLS handshakes cost this very process CPU
    // (client and proxy both), which is not what is measured here.
    let in_tls = Arc::new(AtomicUsize::new(0));
    let slow_tasks: Vec<_> = (0..EACH)
        .map(|i| tokio::spawn(trickle(p.addr, attacker(EACH + i), in_tls.clone())))
        .collect();
    eventually(DEADLINE, "trickling clients through TLS", || {
        in_tls.load(Ordering::Relaxed) == EACH
    })
    .await;
    let connected = Arc::new(AtomicUsize::new(0));
    let silent_tasks: Vec<_> = (0..EACH)
        .map(|i| tokio::spawn(silent(p.addr, attacker(i), connected.clone())))
        .collect();
    eventually(DEADLINE, "silent clients connected", || {
        connected.load(Ordering::Relaxed) == EACH
    })
    .await;
    eventually(DEADLINE, "silent clients admitted", || {
        adm.tracked().0 >= EACH
    })
    .await;

    let load = adm.tracked().0;
    let t0 = Instant::now();
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    echo_once(&mut ws, "under attack").await;
    let took = t0.elapsed();
    eprintln!("normal client: {took:?} with {load} slow connections open");
    assert!(
        took < Duration::from_secs(1),
        "a normal handshake and echo took {took:?} under attack"
    );

    for t in silent_tasks {
        within("silent clients dropped", t).await.unwrap();
    }
    let mut answered = 0;
    for t in slow_tasks {
        let got = within("trickling clients dropped", t).await.unwrap();
        if got.starts_with(b"HTTP/1.1 408") {
            answered += 1;
        }
    }
    assert_eq!(in_tls.load(Ordering::Relaxed), EACH);
    assert_eq!(answered, EACH, "every trickling client gets its 408");
    echo_once(&mut ws, "after the attack").await;
    ws.close(None).await.unwrap();
    while within("end of stream", ws.next()).await.is_some() {}
    drop(ws);

    eventually(DEADLINE, "every connection released", || {
        adm.tracked().0 == 0 && p.running.open_connections() == idle
    })
    .await;
    let limit = rss0 + (64 << 20);
    eventually(DEADLINE, "memory back near the baseline", || {
        rss_bytes() <= limit
    })
    .await;
    eprintln!(
        "RSS: baseline {} MiB, after {} MiB",
        rss0 >> 20,
        rss_bytes() >> 20
    );
}
