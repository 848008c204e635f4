//! Failover: a killed backend is routed around and rejoins, ip_hash keeps the
//! survivors' clients in place, all down is a 503, slow start ramps the weight.

use super::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

// ------------------------------------------------------------- kill, failover, recover

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_fails_over_without_errors_then_recovers() {
    let (a, b) = (echo("a").await, echo("b").await);
    // max_fails = 0: no passive marking, so only the active checks take b down and
    // the clients before that are saved by retries alone.
    let p = start_proxy(&with_route(&format!(
        r#"[[pool]]
name = "p"
max_fails = 0
[pool.health]
kind = "tcp"
interval = "200ms"
timeout = "200ms"
rise = 2
fall = 2
{}"#,
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
        r#"[[pool]]
name = "p"
balance = "ip_hash"
[pool.health]
kind = "tcp"
interval = "100ms"
timeout = "100ms"
fall = 2
{}"#,
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

// ------------------------------------------------------------- nothing left, then back

#[tokio::test]
async fn all_down_is_503_with_retry_after_then_recovers() {
    let (a, b) = (echo("a").await, echo("b").await);
    let p = start_proxy(&with_route(&format!(
        r#"[[pool]]
name = "p"
[pool.health]
kind = "tcp"
interval = "100ms"
timeout = "100ms"
rise = 2
fall = 1
{}"#,
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
        r#"[[pool]]
name = "p"
slow_start = "3s"
[pool.health]
kind = "tcp"
interval = "50ms"
timeout = "50ms"
rise = 1
fall = 1
[[pool.backend]]
address = "{}"
weight = 100
[[pool.backend]]
address = "{}"
weight = 100
"#,
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
