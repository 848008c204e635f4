//! Shutdown and systemd on the real binary: SIGTERM drains sessions with 1001 at
//! moments spread over `drain_spread` and exits by `shutdown_timeout`; a handshake
//! waiting on its backend is finished, then drained; systemd hears READY=1 (once
//! listening), RELOADING=1 with MONOTONIC_USEC, READY=1, STOPPING=1 (before any
//! session is closed), STATUS lines and watchdog pings, all on the test's own
//! NOTIFY_SOCKET.

mod common;
use common::bin::{Bin, bin_config};
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

fn rest(backend: std::net::SocketAddr) -> String {
    pool_and_route("p", "round_robin", &[(backend, 1)])
}

/// Reads until a Close arrives; returns its code.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(c)))) => return u16::from(c.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a Close, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_spreads_1001_over_drain_spread_and_exits() {
    let e = echo("e").await;
    let text = format!(
        r#"[server]
drain_spread = "3s"
shutdown_timeout = "6s"
close_timeout = "1s"
{}"#,
        rest(e.addr)
    );
    let mut w = Bin::start("drain", &bin_config(0, &text)).await;
    let addr = w.addr();
    let mut sessions = Vec::new();
    for _ in 0..40 {
        sessions.push(ws_connect(addr, "/").await.0);
    }
    // One client that never answers the Close: the process must not wait for it
    // past close_timeout.
    let (mut mute, resp) = raw_ws(addr, "/", "").await;
    assert_eq!(resp.status, 101);

    let t0 = Instant::now();
    w.signal(libc::SIGTERM);
    let stopping = w.wait_note("STOPPING=1").await;
    assert!(stopping.contains("STATUS=draining"), "{stopping}");
    let stopping_at = t0.elapsed();
    // Every session waits for its Close on its own task, so each arrival time is
    // when that Close came, not when the test got round to reading it.
    let waits: Vec<_> = sessions
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let code = within("Close 1001", close_code(&mut ws)).await;
                let at = t0.elapsed();
                // The client answers the Close (tungstenite does so while polling).
                while let Some(Ok(_)) = within("session end", ws.next()).await {}
                (code, at)
            })
        })
        .collect();
    let mut closes = Vec::new();
    for t in waits {
        let (code, at) = t.await.unwrap();
        assert_eq!(code, 1001);
        closes.push(at);
    }
    closes.sort();
    assert!(stopping_at <= closes[0], "STOPPING=1 after the first Close");
    let (first, last) = (closes[0], closes[closes.len() - 1]);
    assert!(
        last <= Duration::from_millis(3500),
        "past drain_spread: {closes:?}"
    );
    assert!(
        last - first >= Duration::from_millis(1500),
        "not spread: {closes:?}"
    );
    let early = closes
        .iter()
        .filter(|t| **t < Duration::from_millis(1500))
        .count();
    assert!(
        (8..=32).contains(&early),
        "{early} of 40 in the first half: {closes:?}"
    );
    // The mute client is closed by wsgate anyway, and the process exits.
    let frames = read_frames_to_eof(&mut mute).await;
    assert!(
        frames.iter().any(|f| f.close_code() == Some(1001)),
        "{frames:?}"
    );
    let st = w.exit_within(Duration::from_secs(7)).await;
    assert!(st.success(), "{st:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "exit took {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_bounds_the_exit() {
    let e = echo("e").await;
    // The session's Close comes within 1.5 s, the client never answers it, and
    // close_timeout is long: only shutdown_timeout (2 s) ends the process.
    let text = format!(
        r#"[server]
drain_spread = "1500ms"
shutdown_timeout = "2s"
close_timeout = "30s"
{}"#,
        rest(e.addr)
    );
    let mut w = Bin::start("shutdown-timeout", &bin_config(0, &text)).await;
    // A raw client that never answers the Close holds its session open.
    let (mut s, resp) = raw_ws(w.addr(), "/", "").await;
    assert_eq!(resp.status, 101);
    let t0 = Instant::now();
    w.signal(libc::SIGTERM);
    let st = w.exit_within(Duration::from_secs(4)).await;
    assert!(st.success(), "{st:?}");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3000),
        "exit after {took:?}, shutdown_timeout is 2 s"
    );
    let _ = s.shutdown().await;
}

/// A handshake still waiting on its backend when SIGTERM arrives is counted: it
/// completes (101), is then drained with 1001, and the process exits after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_waiting_on_its_backend_is_finished_then_drained() {
    let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let slow = raw_backend(move |head, mut s| {
        let mut gate = gate_rx.clone();
        let seen = seen_tx.clone();
        async move {
            let _ = seen.send(());
            let _ = gate.wait_for(|g| *g).await;
            write_all(&mut s, switching(&head, "").as_bytes()).await;
            // Echo frames back until the proxy closes (enough for a Close exchange).
            let mut buf = [0u8; 1024];
            use tokio::io::AsyncReadExt;
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                // The proxy's Close to us is masked; answer with an unmasked Close.
                let _ = s
                    .write_all(&encode_frame(
                        true,
                        0,
                        op::CLOSE,
                        &1001u16.to_be_bytes(),
                        None,
                    ))
                    .await;
            }
        }
    })
    .await;
    // The raw client below never answers wsgate's Close: close_timeout ends it.
    let text = format!(
        r#"[server]
drain_spread = "0s"
close_timeout = "1s"
{}"#,
        rest(slow.addr)
    );
    let mut w = Bin::start("shutdown-handshake", &bin_config(0, &text)).await;
    let addr = w.addr();
    let client = tokio::spawn(async move { raw_ws(addr, "/", "").await });
    within("the backend to get the upgrade", seen_rx.recv()).await;
    w.signal(libc::SIGTERM);
    w.wait_note("STOPPING=1").await;
    gate_tx.send_replace(true);
    let (mut s, resp) = within("the handshake", client).await.unwrap();
    assert_eq!(resp.status, 101, "the handshake in flight was finished");
    let frames = read_frames_to_eof(&mut s).await;
    assert!(
        frames.iter().any(|f| f.close_code() == Some(1001)),
        "then drained: {frames:?}"
    );
    let st = w.exit_within(Duration::from_secs(5)).await;
    assert!(st.success());
}

/// Reads CLOCK_MONOTONIC in microseconds, as systemd does.
fn monotonic_usec() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000 + ts.tv_nsec as u128 / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_every_state_in_order() {
    let e = echo("e").await;
    let mut w = Bin::start_with("notify", &bin_config(0, &rest(e.addr)), |c| {
        c.env("WATCHDOG_USEC", "200000");
    })
    .await;
    // READY=1 means listening: a session opens at once.
    let ready = w.notes.last().unwrap().clone();
    assert!(ready.contains("STATUS="), "{ready}");
    let (mut ws, _) = ws_connect(w.addr(), "/").await;
    ws.send(Message::text("hi")).await.unwrap();
    within("echo", ws.next()).await;

    // Watchdog pings every 100 ms (half of WATCHDOG_USEC).
    let t0 = Instant::now();
    w.wait_note("WATCHDOG=1").await;
    w.wait_note("WATCHDOG=1").await;
    w.wait_note("WATCHDOG=1").await;
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());

    let before = monotonic_usec();
    w.signal(libc::SIGHUP);
    let reloading = w.wait_note("RELOADING=1").await;
    let after = monotonic_usec();
    let stamp: u128 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC with RELOADING=1: {reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&stamp),
        "{before} <= {stamp} <= {after}"
    );
    let ready = w.wait_ready().await;
    assert!(ready.contains("configuration generation 2"), "{ready}");

    // The client answers wsgate's Close, so the drain ends at once.
    let client = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    w.signal(libc::SIGTERM);
    w.wait_note("STOPPING=1").await;
    let st = w.exit_within(Duration::from_secs(5)).await;
    assert!(st.success());
    within("the client's end", client).await.unwrap();
    // In order: READY, RELOADING, READY, STOPPING (STATUS and WATCHDOG aside).
    let states: Vec<&str> = w
        .notes
        .iter()
        .flat_map(|n| n.lines())
        .filter(|l| ["READY=1", "RELOADING=1", "STOPPING=1"].contains(l))
        .collect();
    assert_eq!(states, ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]);
}

/// `wsgate reload` refuses a broken file without signalling, and signals the
/// process named by the pid file otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reload_command_checks_then_signals_through_the_pid_file() {
    let e = echo("e").await;
    let dir = common::bin::scratch_dir("reload-cmd");
    let pid_file = dir.join("wsgate.pid");
    let text = bin_config(
        0,
        &format!(
            r#"[server]
drain_spread = "0s"
pid_file = "{}"
{}"#,
            pid_file.display(),
            rest(e.addr)
        ),
    );
    let mut w = Bin::start("reload-cmd-bin", &text).await;
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        w.child.id().to_string()
    );
    let run = |conf: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .args(["reload", "-c"])
            .arg(conf)
            .output()
            .unwrap()
    };
    w.write_config(&text.replace("[[pool]]", "[[pool]"));
    let out = run(&w.conf);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not reloading"));

    w.write_config(&text);
    let out = run(&w.conf);
    assert!(out.status.success(), "{out:?}");
    w.wait_note("RELOADING=1").await;
    let ready = w.wait_ready().await;
    assert!(ready.contains("generation 2"), "{ready}");
    w.signal(libc::SIGTERM);
    w.exit_within(Duration::from_secs(5)).await;
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    let _ = std::fs::remove_dir_all(dir);
}
