//! Balancing through the whole proxy: real TLS over loopback, real WebSocket clients,
//! real echo backends that name themselves in `x-backend`. Every landing is read from
//! the 101 the client got; every session is closed with a full close handshake.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Opens a session through the proxy (from `from`, if given); returns it and where it landed.
async fn open(p: &Proxy, from: Option<IpAddr>) -> (Ws, String) {
    let (ws, resp) = ws_connect_req(p.addr, ws_request("/"), from)
        .await
        .unwrap_or_else(|e| panic!("WebSocket handshake through the proxy (from {from:?}): {e}"));
    let at = landed(&resp);
    assert_ne!(at, "?", "the 101 carries no x-backend header");
    (ws, at)
}

/// Opens, notes where it landed, and closes a session.
async fn land(p: &Proxy, from: Option<IpAddr>) -> String {
    let (ws, at) = open(p, from).await;
    close_session(ws).await;
    at
}

/// Waits until the proxy counts exactly `n` live sessions. A session's lease on its
/// backend is released before its live count, so after this the balancer sees the
/// closed sessions gone (and, with `n` just opened, every session entered).
async fn live_becomes(p: &Proxy, n: usize) {
    within(&format!("{n} live sessions"), async {
        while p.running.live_sessions() != n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

fn count<'a>(names: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.clone()).or_insert(0) += 1;
    }
    m
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

// ---------------------------------------------------------------- round robin

#[tokio::test]
async fn smooth_weighted_round_robin_is_exact_over_700_connections() {
    let (a, b, c) = (echo("a").await, echo("b").await, echo("c").await);
    let p = start_proxy(&pool_and_route(
        "p",
        "round_robin",
        &[(a.addr, 5), (b.addr, 1), (c.addr, 1)],
    ))
    .await;

    let mut picks = Vec::with_capacity(700);
    for _ in 0..700 {
        picks.push(land(&p, None).await);
    }

    let first: Vec<&str> = picks[..7].iter().map(String::as_str).collect();
    assert_eq!(first, ["a", "a", "b", "a", "c", "a", "a"], "smooth pattern");
    let counts = count(&picks);
    assert_eq!(
        counts,
        BTreeMap::from([("a".into(), 500), ("b".into(), 100), ("c".into(), 100)])
    );
    for (i, w) in picks.windows(7).enumerate() {
        let c = count(w);
        assert_eq!(
            (c.get("a"), c.get("b"), c.get("c")),
            (Some(&5), Some(&1), Some(&1)),
            "window of 7 picks starting at {i}: {w:?}"
        );
    }
    live_becomes(&p, 0).await;
}

// -------------------------------------------------------------------- ip_hash

#[tokio::test]
async fn ip_hash_is_stable_per_client() {
    let (a, b, c) = (echo("a").await, echo("b").await, echo("c").await);
    let p = start_proxy(&pool_and_route(
        "p",
        "ip_hash",
        &[(a.addr, 1), (b.addr, 1), (c.addr, 1)],
    ))
    .await;

    let mut clients: Vec<IpAddr> = (2..=41).map(|d| v4(127, 0, 0, d)).collect();
    clients.extend([
        v4(127, 1, 0, 1),
        v4(127, 1, 2, 3),
        v4(127, 1, 77, 200),
        v4(127, 1, 255, 254),
    ]);
    let mut home = BTreeMap::new();
    for ip in &clients {
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(land(&p, Some(*ip)).await);
        }
        assert!(
            seen.iter().all(|s| *s == seen[0]),
            "client {ip} moved between backends: {seen:?}"
        );
        home.insert(*ip, seen[0].clone());
    }
    let used = count(home.values());
    assert_eq!(
        used.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b", "c"],
        "{} clients should use all 3 backends: {used:?}",
        clients.len()
    );
}

#[tokio::test]
async fn ip_hash_moves_only_the_removed_backends_clients() {
    let (x, y, z) = (echo("x").await, echo("y").await, echo("z").await);
    let pa = start_proxy(&pool_and_route(
        "p",
        "ip_hash",
        &[(x.addr, 1), (y.addr, 1), (z.addr, 1)],
    ))
    .await;
    let pb = start_proxy(&pool_and_route("p", "ip_hash", &[(x.addr, 1), (y.addr, 1)])).await;

    let clients: Vec<IpAddr> = (1..=60).map(|d| v4(127, 2, 0, d)).collect();
    let mut z_clients_went = Vec::new();
    let mut in_a = Vec::new();
    for ip in &clients {
        let la = land(&pa, Some(*ip)).await;
        let lb = land(&pb, Some(*ip)).await;
        match la.as_str() {
            "x" | "y" => assert_eq!(lb, la, "client {ip} of a surviving backend moved"),
            "z" => {
                assert!(lb == "x" || lb == "y", "client {ip} landed on {lb} in B");
                z_clients_went.push(lb);
            }
            other => panic!("client {ip} landed on unknown backend {other}"),
        }
        in_a.push(la);
    }
    let used_a = count(&in_a);
    assert_eq!(
        used_a.len(),
        3,
        "60 clients should use x, y and z: {used_a:?}"
    );
    let spread = count(&z_clients_went);
    assert_eq!(
        spread.keys().map(String::as_str).collect::<Vec<_>>(),
        ["x", "y"],
        "z's clients should spread over x and y: {spread:?}"
    );
}

// ----------------------------------------------------------------- least_conn

#[tokio::test]
async fn least_conn_sends_a_new_session_to_the_freed_backend() {
    let (a, b) = (echo("a").await, echo("b").await);
    let p = start_proxy(&pool_and_route(
        "p",
        "least_conn",
        &[(a.addr, 1), (b.addr, 1)],
    ))
    .await;

    // Two sessions, one on each backend.
    let mut held = vec![open(&p, None).await, open(&p, None).await];
    live_becomes(&p, 2).await;
    let on: BTreeSet<&str> = held.iter().map(|(_, at)| at.as_str()).collect();
    assert_eq!(
        on,
        BTreeSet::from(["a", "b"]),
        "2 sessions on 2 idle backends"
    );

    // Free one backend, then another, and so on: the newcomer must take the free one.
    for round in 0..6 {
        let free = if round % 2 == 0 { "a" } else { "b" };
        let i = held.iter().position(|(_, at)| at == free).unwrap();
        let (ws, _) = held.swap_remove(i);
        close_session(ws).await;
        live_becomes(&p, 1).await;
        let (ws, at) = open(&p, None).await;
        assert_eq!(at, free, "round {round}: 1 session on the other backend");
        held.push((ws, at));
        live_becomes(&p, 2).await;
    }
    for (ws, _) in held {
        close_session(ws).await;
    }
    live_becomes(&p, 0).await;
}

#[tokio::test]
async fn least_conn_after_closing_one_backends_sessions() {
    let (a, b) = (echo("a").await, echo("b").await);
    let p = start_proxy(&pool_and_route(
        "p",
        "least_conn",
        &[(a.addr, 1), (b.addr, 1)],
    ))
    .await;

    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open(&p, None).await);
    }
    live_becomes(&p, 3).await;
    let counts = count(held.iter().map(|(_, at)| at));
    let mut sizes: Vec<usize> = counts.values().copied().collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [1, 2],
        "3 sessions spread over 2 backends: {counts:?}"
    );
    let busy = counts.iter().find(|(_, n)| **n == 2).unwrap().0.clone();
    let quiet = counts.iter().find(|(_, n)| **n == 1).unwrap().0.clone();

    // Close both sessions on the busy backend: it now has 0 against 1.
    let (gone, kept): (Vec<_>, Vec<_>) = held.into_iter().partition(|(_, at)| *at == busy);
    for (ws, _) in gone {
        close_session(ws).await;
    }
    live_becomes(&p, 1).await;
    let (ws, at) = open(&p, None).await;
    assert_eq!(at, busy, "0 live sessions there against 1 on {quiet}");
    let mut held = kept;
    held.push((ws, at));
    live_becomes(&p, 2).await;

    // One more on each side (1:1 is a tie either way), then empty the quiet one: 0 vs 2.
    held.push(open(&p, None).await);
    held.push(open(&p, None).await);
    live_becomes(&p, 4).await;
    let counts = count(held.iter().map(|(_, at)| at));
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [2, 2]);
    let (gone, mut held): (Vec<_>, Vec<_>) = held.into_iter().partition(|(_, at)| *at == quiet);
    for (ws, _) in gone {
        close_session(ws).await;
    }
    live_becomes(&p, 2).await;
    held.push(open(&p, None).await);
    assert_eq!(
        held.last().unwrap().1,
        quiet,
        "0 live sessions there against 2"
    );

    for (ws, _) in held {
        close_session(ws).await;
    }
    live_becomes(&p, 0).await;
}

#[tokio::test]
async fn least_conn_is_relative_to_weight() {
    let (a, b) = (echo("a").await, echo("b").await);
    let p = start_proxy(&pool_and_route(
        "p",
        "least_conn",
        &[(a.addr, 1), (b.addr, 3)],
    ))
    .await;

    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(open(&p, None).await);
    }
    live_becomes(&p, 8).await;
    let counts = count(held.iter().map(|(_, at)| at));
    assert_eq!(
        counts,
        BTreeMap::from([("a".into(), 2), ("b".into(), 6)]),
        "8 sessions at weights 1:3"
    );

    // Close 3 of b's 6: a has 2/1 = 2, b has 3/3 = 1, so b gets the next one.
    for _ in 0..3 {
        let i = held.iter().position(|(_, at)| at == "b").unwrap();
        close_session(held.swap_remove(i).0).await;
    }
    live_becomes(&p, 5).await;
    let (ws, at) = open(&p, None).await;
    assert_eq!(at, "b", "a at 2/1 against b at 3/3");
    held.push((ws, at));

    for (ws, _) in held {
        close_session(ws).await;
    }
    live_becomes(&p, 0).await;
}
