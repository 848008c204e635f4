//! Weighted pools on one route (a canary): 2,000 distinct clients (distinct 127.x
//! source addresses) split 95/5, each on one version across reconnects; a reload to
//! 90/10 moves only clients from v1 to v2, about as many as the weights require; a
//! header match always reaches v2. Through the proxy, over plain TCP (TLS is not what
//! is tested here, and 6,000 handshakes would dominate the run).
mod common;
use common::*;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

const CLIENTS: u32 = 2000;

fn client(i: u32) -> IpAddr {
    IpAddr::from([
        127,
        10 + (i / 60000) as u8,
        ((i / 250) % 240) as u8,
        (i % 250 + 1) as u8,
    ])
}

fn config(v1: SocketAddr, v2: SocketAddr, w1: u32, w2: u32) -> String {
    format!(
        r#"[limits]
exempt = ["127.0.0.0/8"]
[[listener]]
address = "127.0.0.1:0"
tls = false
[[pool]]
name = "v1"
[[pool.backend]]
address = "{v1}"
[[pool]]
name = "v2"
max_fails = 1
[[pool.backend]]
address = "{v2}"
[[route]]
pools = [{{ pool = "v1", weight = {w1} }}, {{ pool = "v2", weight = {w2} }}]
[[route]]
pool = "v2"
match_header = {{ name = "X-Canary", value = "true" }}
"#
    )
}

/// Upgrades from `from` (plain TCP) and returns the backend that answered.
async fn version(proxy: SocketAddr, from: IpAddr, extra: &str) -> String {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    let mut s = within("connect", sock.connect(proxy)).await.unwrap();
    write_all(&mut s, upgrade_head("/", extra).as_bytes()).await;
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 101, "{r:?}");
    r.header("x-backend").unwrap().to_string()
}

/// The versions of the first `n` clients, 64 at a time.
async fn versions(proxy: SocketAddr, n: u32, extra: &'static str) -> Vec<String> {
    let gate = Arc::new(Semaphore::new(64));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _p = gate.acquire().await.unwrap();
                version(proxy, client(i), extra).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(within("a client", t).await.unwrap());
    }
    out
}

fn count(v: &[String], name: &str) -> usize {
    v.iter().filter(|x| *x == name).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_reach_v2_stay_there_and_a_reload_moves_only_whom_it_must() {
    let v1 = echo("v1").await;
    let v2 = echo("v2").await;
    let mut p = start_proxy_raw(&config(v1.addr, v2.addr, 95, 5)).await;
    let first = versions(p.addr, CLIENTS, "").await;
    let on_v2 = count(&first, "v2");
    eprintln!("95/5: {on_v2} of {CLIENTS} on v2");
    assert!(
        (70..=130).contains(&on_v2),
        "{on_v2} of {CLIENTS} on v2 (5 % is 100)"
    );
    assert_eq!(
        versions(p.addr, CLIENTS, "").await,
        first,
        "a client changed version on reconnecting"
    );

    let cfg = wsgate::config::Config::parse(&config(v1.addr, v2.addr, 90, 10), Path::new("t.toml"))
        .unwrap();
    p.running.reload(&cfg).await.unwrap();
    let after = versions(p.addr, CLIENTS, "").await;
    let mut moves: HashMap<(&str, &str), usize> = HashMap::new();
    for (b, a) in first.iter().zip(&after) {
        *moves.entry((b.as_str(), a.as_str())).or_default() += 1;
    }
    eprintln!("95/5 -> 90/10: {moves:?}");
    assert_eq!(
        moves.get(&("v2", "v1")),
        None,
        "a v2 client went back to v1"
    );
    let moved = moves.get(&("v1", "v2")).copied().unwrap_or(0);
    assert!(
        (60..=140).contains(&moved),
        "{moved} moved to v2 (5 % of 2000 is 100)"
    );

    // The header route wins for everyone, whatever their hash (the first 300
    // clients hold about 270 v1 clients).
    let canary = versions(p.addr, 300, "X-Canary: true\r\n").await;
    assert_eq!(count(&canary, "v2"), 300);
    // Another value is not a match: back to the split.
    let other = versions(p.addr, 300, "X-Canary: false\r\n").await;
    assert_eq!(other, after[..300]);
}

#[tokio::test]
async fn a_canary_without_a_healthy_backend_sends_its_clients_to_the_other_pool() {
    let v1 = echo("v1").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // 0/100: everyone belongs to v2, which is down: v1 takes them (after v2's
    // backend is marked down by the first failure) instead of answering 502.
    let p = start_proxy_raw(&config(v1.addr, dead, 1, 10000)).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    write_all(&mut s, upgrade_head("/", "").as_bytes()).await;
    assert_eq!(
        read_response(&mut s).await.status,
        502,
        "the first try meets the dead backend"
    );
    for i in 0..20 {
        assert_eq!(version(p.addr, client(i), "").await, "v1");
    }
}
