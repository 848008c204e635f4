//! Overload protection on the real binary: during a storm of new TLS connections
//! the established sessions keep echoing promptly, because the accept loop paces
//! at `max_connect_rate` and pauses above `max_memory` (the kernel queues the rest);
//! each episode is logged once; `max_connections` defaults from the open-file limit.

mod common;
use common::admin::scrape;
use common::bin::{Bin, bin_config};
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Established sessions, each echoing a message every 20 ms until `stop`; returns
/// every round trip's time.
fn pingers(
    addr: SocketAddr,
    sessions: Vec<Ws>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    let _ = addr;
    tokio::spawn(async move {
        let tasks: Vec<_> = sessions
            .into_iter()
            .map(|mut ws| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut rtts = Vec::new();
                    while !*stop.borrow() {
                        let t = Instant::now();
                        ws.send(Message::binary(vec![7u8; 32])).await.unwrap();
                        match within("echo during the storm", ws.next()).await {
                            Some(Ok(Message::Binary(_))) => rtts.push(t.elapsed()),
                            other => panic!("session broken during the storm: {other:?}"),
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    rtts
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        all
    })
}

/// `n` new TLS connections at once, each completing its handshake and upgrade;
/// returns when each completed, measured from the start.
async fn storm(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                let (ws, _) = within_for(
                    Duration::from_secs(30),
                    "a storm connection",
                    ws_connect_req(addr, ws_request("/"), None),
                )
                .await
                .expect("a storm connection is served, late but not refused");
                let at = t0.elapsed();
                drop(ws);
                at
            })
        })
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    done.sort();
    done
}

fn p(v: &[Duration], q: f64) -> Duration {
    v[((v.len() - 1) as f64 * q) as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_storm_is_paced_and_live_sessions_stay_prompt() {
    let e = echo("e").await;
    let text = bin_config(
        0,
        &format!(
            r#"[server]
drain_spread = "0s"
[admin]
address = "127.0.0.1:0"
[limits]
exempt = ["127.0.0.0/8"]
max_connect_rate = 40
max_connect_burst = 10
{}"#,
            pool_and_route("p", "round_robin", &[(e.addr, 1)])
        ),
    );
    let w = Bin::start("overload-rate", &text).await;
    let addr = w.addr();
    let mut live = Vec::new();
    for _ in 0..4 {
        live.push(ws_connect(addr, "/").await.0);
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the bucket refills
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ping = pingers(addr, live, stop_rx);
    let done = storm(addr, 90).await;
    stop_tx.send_replace(true);
    let rtts = ping.await.unwrap();

    // 10 at once, then 40 per second: the last of 90 after about 2 s.
    let last = *done.last().unwrap();
    assert!(
        last >= Duration::from_millis(1800),
        "not paced: all 90 in {last:?}"
    );
    assert!(
        last < Duration::from_secs(6),
        "paced far below the rate: {last:?}"
    );
    assert!(rtts.len() >= 20, "{} echoes", rtts.len());
    assert!(
        p(&rtts, 0.5) < Duration::from_millis(50) && p(&rtts, 0.9) < Duration::from_millis(150),
        "live sessions slowed by the storm: p50 {:?} p90 {:?} max {:?}",
        p(&rtts, 0.5),
        p(&rtts, 0.9),
        rtts.last()
    );
    let log = w.log();
    assert_eq!(log.matches("pacing accepts").count(), 1, "{log}");
    let m = scrape(w.admin_addr().expect("admin listener")).await;
    assert_eq!(
        m.value(
            "wsgate_overload_episodes_total",
            &[("kind", "connect_rate")]
        ),
        Some(1.0),
        "{}",
        m.text
    );
    let paced = m.count("wsgate_accepts_paced_total", &[]);
    assert!(paced >= 70.0, "{paced} accepts paced of 90 (burst 10)");
}

/// The RSS of process `pid`, in bytes.
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_max_memory_accepting_pauses_and_live_sessions_go_on() {
    let e = echo("e").await;
    let text = |max_memory: &str| {
        bin_config(
            0,
            &format!(
                r#"[server]
drain_spread = "0s"
[admin]
address = "127.0.0.1:0"
[limits]
exempt = ["127.0.0.0/8"]
max_memory = "{max_memory}"
{}"#,
                pool_and_route("p", "round_robin", &[(e.addr, 1)])
            ),
        )
    };
    let mut w = Bin::start("overload-memory", &text("4GiB")).await;
    let addr = w.addr();
    let mut live = Vec::new();
    for _ in 0..4 {
        live.push(ws_connect(addr, "/").await.0);
    }
    // A watermark under what the process holds now: accepting pauses.
    let rss = rss_of(w.child.id());
    w.write_config(&text(&format!("{}", rss / 2)));
    let status = w.reload().await;
    assert!(!status.contains("reload failed"), "{status}");
    let t0 = Instant::now();
    while !w.log().contains("accepting paused") {
        assert!(t0.elapsed() < DEADLINE, "never paused:\n{}", w.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let admin = w.admin_addr().expect("admin listener");
    let m = scrape(admin).await;
    assert_eq!(
        m.value("wsgate_accepting_paused", &[]),
        Some(1.0),
        "{}",
        m.text
    );
    let waiting = tokio::spawn(storm(addr, 20));
    // The storm waits in the kernel's queue; the live sessions echo meanwhile.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ping = pingers(addr, live, stop_rx);
    tokio::time::sleep(Duration::from_millis(700)).await; // a window: nothing may be accepted
    assert!(
        !waiting.is_finished(),
        "connections were accepted above max_memory"
    );
    // Raise the watermark: accepting resumes and the queued connections are served.
    w.write_config(&text("4GiB"));
    let status = w.reload().await;
    assert!(!status.contains("reload failed"), "{status}");
    let done = within("the queued storm", waiting).await.unwrap();
    assert_eq!(done.len(), 20);
    assert!(done[0] >= Duration::from_millis(700), "{done:?}");
    stop_tx.send_replace(true);
    let rtts = ping.await.unwrap();
    assert!(p(&rtts, 0.9) < Duration::from_millis(150), "{rtts:?}");
    let log = w.log();
    assert_eq!(log.matches("accepting paused").count(), 1, "{log}");
    assert_eq!(log.matches("accepting again").count(), 1, "{log}");
    let m = scrape(admin).await;
    assert_eq!(
        m.value("wsgate_accepting_paused", &[]),
        Some(0.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.value("wsgate_overload_episodes_total", &[("kind", "memory")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_defaults_from_the_open_file_limit() {
    let e = echo("e").await;
    let text = bin_config(0, &pool_and_route("p", "round_robin", &[(e.addr, 1)]));
    // Run under `ulimit -n 200`: 2 per session after a reserve.
    let w = Bin::start_with("overload-nofile", &text, |c| {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 200,
                    rlim_max: 200,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
    .await;
    let log = w.log();
    // 200 - (32 + 1 listener + 1 backend) = 166, halved.
    assert!(
        log.contains(
            "max_connections = 83 (from the open-file limit 200: 2 per session, 34 kept back)"
        ),
        "{log}"
    );
}
