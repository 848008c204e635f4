//! A backend a reload removed stays visible while its sessions live: `/backends`
//! and `/status.json` list it in its pool with state `removed` and its live session
//! count until its last session ends, then it is gone; the reload's log names the
//! backend it added and the one it removed. On the real binary.

mod common;
use common::bin::{Bin, bin_config};
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const ADMIN: &str = r#"[admin]
address = "127.0.0.1:0"
"#;

fn config(backend: SocketAddr) -> String {
    bin_config(
        0,
        &format!(
            "{ADMIN}\n{}",
            pool_and_route("p", "round_robin", &[(backend, 1)])
        ),
    )
}

/// Pool `p`'s backends in `doc` (`/backends` or `/status.json`): (address, state,
/// sessions).
fn backends_of(doc: &Value) -> Vec<(String, String, u64)> {
    let pools = doc["pools"].as_array().expect("pools");
    let p = pools.iter().find(|p| p["name"] == "p").expect("pool p");
    p["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| {
            (
                b["address"].as_str().unwrap().to_string(),
                b["state"].as_str().unwrap().to_string(),
                b["sessions"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn json(admin: SocketAddr, path: &str) -> Value {
    let r = common::admin::get(admin, path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// Waits until both `/backends` and `/status.json` list exactly `want` in pool `p`.
async fn listed(admin: SocketAddr, want: &[(String, &str, u64)]) {
    let want: Vec<(String, String, u64)> = want
        .iter()
        .map(|(a, s, n)| (a.clone(), s.to_string(), *n))
        .collect();
    let t0 = Instant::now();
    loop {
        let a = backends_of(&json(admin, "/backends").await);
        let b = backends_of(&json(admin, "/status.json").await);
        if a == want && b == want {
            return;
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "want {want:?}\n/backends: {a:?}\n/status.json: {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backend_is_listed_as_removed_until_its_last_session_ends() {
    let old = echo("old").await;
    let new = echo("new").await;
    let mut b = Bin::start("removed-backend", &config(old.addr)).await;
    let admin = b.admin_addr().expect("admin listener");
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(ws_connect(b.addr(), "/").await.0);
    }
    let (o, n) = (old.addr.to_string(), new.addr.to_string());
    listed(admin, &[(o.clone(), "up", 3)]).await;

    b.write_config(&config(new.addr));
    let ready = b.reload().await;
    assert!(
        ready.contains("STATUS=") && !ready.contains("failed"),
        "{ready}"
    );
    let log = b.log();
    let named = |what: &str, addr: &str| {
        log.lines()
            .any(|l| l.contains(what) && l.contains("pool=p") && l.contains(addr))
    };
    assert!(named("backend added", &n), "no added line for {n}:\n{log}");
    assert!(
        named("backend removed", &o),
        "no removed line for {o}:\n{log}"
    );
    listed(admin, &[(n.clone(), "up", 0), (o.clone(), "removed", 3)]).await;

    // Sessions end one by one; the count follows, and the last takes it away.
    let last = sessions.pop().unwrap();
    for ws in sessions {
        close_session(ws).await;
    }
    listed(admin, &[(n.clone(), "up", 0), (o.clone(), "removed", 1)]).await;
    close_session(last).await;
    listed(admin, &[(n.clone(), "up", 0)]).await;
}
