//! Local errors are local (issue 22), on the real binary: in a network namespace of
//! its own whose ephemeral port range is 8 ports, wsgate opens sessions to one echo
//! backend address until the kernel has no port left (EADDRNOTAVAIL). The next
//! client gets 503 with the local-exhaustion reason, the backend stays up in
//! `/backends`, `wsgate_local_exhaustion_total{reason="eaddrnotavail"}` counts it,
//! the log warns once for the episode and logs the recovery once a session opens
//! again; with `source_addresses = ["127.0.0.1", "127.0.0.2"]` twice as many fit.
//!
//! Each test re-runs itself under `unshare --net` (as tests/restart.rs does), with
//! `lo` up, 127.0.0.2 added to it and `net.ipv4.ip_local_port_range` narrowed, so
//! the host's settings are left alone; the test process, its echo backend and the
//! wsgate it starts all live in that namespace, and every connection is over its
//! loopback. Without the privileges for a namespace it skips, saying why.
//!
//! Every fixed port (listeners, admin, backend) is outside the narrowed range:
//! a port bound in the range would take it from the ports connect() may use. The
//! clients reach wsgate on several listener ports, because their own connections
//! draw from the same 8 ports (per destination).

mod common;
use common::admin;
use common::bin::Bin;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The ephemeral port range inside the namespace: 8 ports.
const RANGE: (u16, u16) = (40000, 40007);
const PORTS: usize = (RANGE.1 - RANGE.0 + 1) as usize;
const BACKEND: &str = "127.0.0.1:9000";
const ADMIN_ADDR: &str = "127.0.0.1:9901";
/// Client-facing listeners: a client holds one port per session toward each.
const LISTENERS: [u16; 6] = [8443, 8444, 8445, 8446, 8447, 8448];
const REASON: &str = "wsgate is out of local resources";

/// Inside the namespace: true. Outside: runs `test` again in a namespace of its own,
/// checks that it passed there (or prints why it was skipped), and returns false.
fn in_namespace(test: &str) -> bool {
    if std::env::var("WSGATE_TEST_IN_NETNS").is_ok() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let setup = format!(
        "ip link set lo up && ip addr add 127.0.0.2/8 dev lo && \
         sysctl -qw net.ipv4.ip_local_port_range=\"{} {}\" && \
         exec \"$0\" --exact {test} --nocapture --test-threads=1",
        RANGE.0, RANGE.1
    );
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c"])
        .arg(setup)
        .arg(&exe)
        .env("WSGATE_TEST_IN_NETNS", "1")
        .output();
    match out {
        Err(e) => println!("skipped: cannot run unshare ({e})"),
        Ok(o) if !o.status.success() && String::from_utf8_lossy(&o.stdout).is_empty() => println!(
            "skipped: no network namespace with a narrowed port range here ({})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(o) => {
            let stdout = String::from_utf8_lossy(&o.stdout);
            println!("{stdout}");
            assert!(
                o.status.success() && stdout.contains("1 passed"),
                "the scenario failed in its namespace:\n{stdout}\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    false
}

fn config(sources: &[&str]) -> String {
    let mut s = format!(
        r#"[server]
drain_spread = "0s"
[limits]
exempt = ["127.0.0.0/8"]
[admin]
address = "{ADMIN_ADDR}"
"#
    );
    for (i, port) in LISTENERS.iter().enumerate() {
        s += &format!(
            r#"[[listener]]
name = "l{i}"
address = "127.0.0.1:{port}"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"
"#
        );
    }
    let list: Vec<String> = sources.iter().map(|a| format!("{a:?}")).collect();
    s += &format!(
        r#"[[pool]]
name = "p"
retries = 2
source_addresses = [{}]
[[pool.backend]]
address = "{BACKEND}"
[[route]]
pool = "p"
"#,
        list.join(", ")
    );
    s
}

/// What one client got: a session (echo checked), or wsgate's refusal.
enum Got {
    Session(Box<Ws>),
    Refused(u16, String),
}

async fn attempt(n: usize) -> Got {
    let addr = SocketAddr::from(([127, 0, 0, 1], LISTENERS[n % LISTENERS.len()]));
    match ws_connect_req(addr, ws_request("/"), None).await {
        Ok((mut ws, _)) => {
            ws.send(Message::text(format!("hello {n}"))).await.unwrap();
            match within("echo", ws.next()).await {
                Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), format!("hello {n}")),
                other => panic!("no echo on session {n}: {other:?}"),
            }
            Got::Session(Box::new(ws))
        }
        Err(WsError::Http(resp)) => {
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
            Got::Refused(resp.status().as_u16(), body.into_owned())
        }
        Err(e) => panic!("attempt {n}: {e}"),
    }
}

async fn backend_state(adm: SocketAddr) -> String {
    let r = admin::get(adm, "/backends").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).expect("JSON");
    v["pools"][0]["backends"][0]["state"]
        .as_str()
        .unwrap_or_else(|| panic!("no backend state in {v}"))
        .to_string()
}

/// The whole story with `sources`: `fit` sessions open, the next is refused.
async fn exhaust_and_recover(sources: &[&str], fit: usize) {
    let _echo = EchoServer::spawn(BACKEND.parse().unwrap(), "e")
        .await
        .expect("echo backend on 127.0.0.1:9000");
    let mut wsgate = Bin::start("local-exhaustion", &config(sources)).await;
    let adm: SocketAddr = ADMIN_ADDR.parse().unwrap();
    let warning = format!("can take only {fit} connections from this host");
    assert!(
        wsgate.log().contains(&warning) && wsgate.log().contains("pool \"p\": max_connections"),
        "no start-up warning {warning:?}:\n{}",
        wsgate.log()
    );

    // Open sessions until wsgate runs out of ports (bounded: a few past `fit`).
    let mut held = Vec::new();
    let (status, body) = loop {
        assert!(held.len() <= fit + 2, "more than {fit} sessions fit");
        match attempt(held.len()).await {
            Got::Session(ws) => held.push(*ws),
            Got::Refused(status, body) => break (status, body),
        }
    };
    assert_eq!(held.len(), fit, "sessions that fit before EADDRNOTAVAIL");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(REASON), "{body}");
    // A second client in the same episode: 503 again, still one warning.
    match attempt(held.len() + 1).await {
        Got::Refused(503, b) => assert!(b.contains(REASON), "{b}"),
        Got::Refused(s, b) => panic!("second refusal: {s} {b}"),
        Got::Session(_) => panic!("a session opened with every port taken"),
    }

    assert_eq!(
        backend_state(adm).await,
        "up",
        "the backend was held responsible"
    );
    let m = admin::scrape(adm).await;
    let n = m.count(
        "wsgate_local_exhaustion_total",
        &[("reason", "eaddrnotavail")],
    );
    assert!(n >= 2.0, "wsgate_local_exhaustion_total = {n}\n{}", m.text);
    assert_eq!(
        m.count("wsgate_backend_failures_total", &[]),
        0.0,
        "{}",
        m.text
    );
    let log = wsgate.log();
    assert_eq!(
        log.matches("not held against the backend").count(),
        1,
        "one warning per episode:\n{log}"
    );

    // One session ends: its port is free again, and the next client is served
    // (its TIME_WAIT, if wsgate's side closed first, is reused on loopback after a
    // second at most: bounded retries within the deadline).
    close_session(held.pop().unwrap()).await;
    let t0 = Instant::now();
    let mut n = 100;
    loop {
        match attempt(n).await {
            Got::Session(ws) => {
                held.push(*ws);
                break;
            }
            Got::Refused(503, _) => {
                assert!(t0.elapsed() < DEADLINE, "no session after one closed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                n += 1;
            }
            Got::Refused(s, b) => panic!("{s} {b}"),
        }
    }
    let log = wsgate.log();
    assert!(
        log.contains("backend connections open again after local exhaustion"),
        "no recovery line:\n{log}"
    );
    for l in log.lines().filter(|l| {
        l.contains("local resources") || l.contains("open again") || l.contains("can take only")
    }) {
        println!("wsgate: {l}");
    }
    for ws in held {
        close_session(ws).await;
    }
    wsgate.signal(libc::SIGTERM);
    wsgate.exit_within(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_ports_is_a_503_and_the_backend_stays_up() {
    if in_namespace("out_of_ports_is_a_503_and_the_backend_stays_up") {
        exhaust_and_recover(&[], PORTS).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_source_addresses_hold_twice_as_many_sessions() {
    if in_namespace("two_source_addresses_hold_twice_as_many_sessions") {
        exhaust_and_recover(&["127.0.0.1", "127.0.0.2"], 2 * PORTS).await;
    }
}
