//! Restarts and binary upgrades without refused connections, with real processes:
//! - socket activation: wsgate takes the listening socket from `LISTEN_FDS` (by
//!   `FileDescriptorName=` or by address), with a socket the test holds across a
//!   restart and with systemd's own `systemd-socket-activate`;
//! - SO_REUSEPORT: a second wsgate binds the same port, the old one is sent
//!   SIGTERM, and no connection attempt fails while its sessions get 1001 spread
//!   over the drain window.

mod common;
use common::bin::{Bin, scratch_dir};
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// One complete attempt a client makes: connect, TLS, upgrade, one echo. A Close
/// instead of the echo (the session was drained) still counts as served.
async fn attempt(addr: SocketAddr) -> Result<(), String> {
    let (mut ws, _) = ws_connect_req(addr, ws_request("/"), None)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    ws.send(Message::text("ping"))
        .await
        .map_err(|e| format!("send: {e}"))?;
    match within("echo", ws.next()).await {
        Some(Ok(Message::Text(_))) | Some(Ok(Message::Close(_))) => {}
        other => return Err(format!("no echo: {other:?}")),
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// Waits until `ok` has grown by `more` (the clients got through), with a deadline.
async fn successes(ok: &AtomicUsize, more: usize) {
    let goal = ok.load(Ordering::Relaxed) + more;
    let t0 = Instant::now();
    while ok.load(Ordering::Relaxed) < goal {
        assert!(
            t0.elapsed() < DEADLINE,
            "clients stalled below {goal} sessions"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Clients attempting sessions back to back until `stop`, counting successes in
/// `ok`; the task returns (successes, failures).
fn client_loops(
    addr: SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (stop, ok) = (stop.clone(), ok.clone());
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match attempt(addr).await {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => failures.push(e),
                        }
                    }
                    failures
                })
            })
            .collect();
        let mut failures = Vec::new();
        for t in tasks {
            failures.extend(t.await.unwrap());
        }
        (ok.load(Ordering::Relaxed), failures)
    })
}

fn config_with(listener: &str, backend: SocketAddr) -> String {
    format!(
        r#"[server]
drain_spread = "0s"
[limits]
exempt = ["127.0.0.0/8"]
{listener}
{}"#,
        pool_and_route("p", "round_robin", &[(backend, 1)])
    )
}

fn tls_listener(name: &str, addr: &str, extra: &str) -> String {
    format!(
        r#"[[listener]]
name = "{name}"
address = "{addr}"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"
{extra}"#
    )
}

/// `wsgate run` with `fd` passed as fd 3, the way systemd passes a socket.
fn activated(dir: std::path::PathBuf, config: &str, fd: i32, names: Option<&str>) -> Bin {
    let names = names.map(str::to_string);
    Bin::spawn_command(dir, config, move |conf| {
        // LISTEN_PID must be wsgate's own pid: the shell's, which exec keeps.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("LISTEN_PID=$$ exec \"$0\" run -c \"$1\"")
            .arg(env!("CARGO_BIN_EXE_wsgate"))
            .arg(conf)
            .env("LISTEN_FDS", "1");
        if let Some(n) = names {
            cmd.env("LISTEN_FDNAMES", n);
        }
        use std::os::unix::process::CommandExt;
        // SAFETY: dup2 is async-signal-safe; the new fd 3 does not close on exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_by_name_and_by_address() {
    let e = echo("e").await;
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    // By name: the config's address is another one, never bound.
    let unused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let text = config_with(&tls_listener("public", &unused.to_string(), ""), e.addr);
    let mut w = activated(
        scratch_dir("activation-name"),
        &text,
        held.as_raw_fd(),
        Some("public"),
    );
    w.wait_ready().await;
    attempt(addr)
        .await
        .expect("a session on the inherited socket");
    assert!(
        tokio::net::TcpStream::connect(unused).await.is_err(),
        "wsgate bound the configured address instead of taking the socket"
    );
    assert!(
        w.log().contains("using the socket systemd passed"),
        "{}",
        w.log()
    );
    drop(w);

    // By address: no names passed (systemd's "unknown").
    let text = config_with(&tls_listener("public", &addr.to_string(), ""), e.addr);
    let mut w = activated(
        scratch_dir("activation-addr"),
        &text,
        held.as_raw_fd(),
        None,
    );
    w.wait_ready().await;
    attempt(addr)
        .await
        .expect("a session on the socket matched by address");
}

/// A restart under socket activation: the socket stays open in the test (as in
/// systemd), so connections made while no wsgate runs wait in the kernel's queue
/// and are served by the next one. None is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_socket_activation_refuses_nothing() {
    let e = echo("e").await;
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let text = config_with(&tls_listener("public", &addr.to_string(), ""), e.addr);
    let mut first = activated(
        scratch_dir("restart-1"),
        &text,
        held.as_raw_fd(),
        Some("public"),
    );
    first.wait_ready().await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let clients = client_loops(addr, 4, stop.clone(), ok.clone());
    successes(&ok, 10).await; // traffic before the restart
    first.signal(libc::SIGTERM);
    first.exit_within(Duration::from_secs(10)).await;
    let mut second = activated(
        scratch_dir("restart-2"),
        &text,
        held.as_raw_fd(),
        Some("public"),
    );
    second.wait_ready().await;
    successes(&ok, 10).await; // traffic after it
    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = within("the clients", clients).await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failed of {}: {failures:?}",
        failures.len(),
        ok + failures.len()
    );
    assert!(ok >= 20, "only {ok} sessions");
}

/// The real `systemd-socket-activate` (systemd's test tool) passes the socket with
/// its name, on the first connection: wsgate serves that one and the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_socket_activate_hands_over_a_named_socket() {
    if Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: systemd-socket-activate is not installed");
        return;
    }
    let e = echo("e").await;
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let text = config_with(&tls_listener("public", "127.0.0.1:9", ""), e.addr);
    let mut w = Bin::spawn_command(scratch_dir("socket-activate"), &text, |conf| {
        let mut cmd = Command::new("systemd-socket-activate");
        cmd.arg("-l")
            .arg(addr.to_string())
            .arg("--fdname=public")
            .arg("-E")
            .arg("NOTIFY_SOCKET")
            .arg(env!("CARGO_BIN_EXE_wsgate"))
            .args(["run", "-c"])
            .arg(conf);
        cmd
    });
    // Like systemd, the tool starts the service when the first connection comes;
    // that connection waits in the socket's queue until wsgate takes it.
    let t0 = Instant::now();
    while !w.log().contains("Listening on") {
        assert!(
            t0.elapsed() < DEADLINE,
            "systemd-socket-activate did not listen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = tokio::spawn(attempt(addr));
    w.wait_ready().await;
    within("the first session", first)
        .await
        .unwrap()
        .expect("the connection that started wsgate is served");
    attempt(addr).await.expect("a session on systemd's socket");
}

/// Run by `two_processes_on_one_port_refuse_nothing` inside a network namespace of
/// its own, where `net.ipv4.tcp_migrate_req = 1` (see that test).
async fn upgrade_scenario() {
    let e = echo("e").await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let text = format!(
        r#"[server]
drain_spread = "2s"
shutdown_timeout = "5s"
close_timeout = "1s"
[limits]
exempt = ["127.0.0.0/8"]
{}
{}"#,
        tls_listener("public", &addr.to_string(), "reuse_port = true\n"),
        pool_and_route("p", "round_robin", &[(e.addr, 1)])
    );
    let mut old = Bin::start("upgrade-old", &text).await;
    // Sessions on the old process, each timing its own Close.
    let t_term = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut drained = Vec::new();
    for _ in 0..30 {
        let (mut ws, _) = ws_connect(addr, "/").await;
        let t_term = t_term.clone();
        drained.push(tokio::spawn(async move {
            loop {
                match within_for(
                    Duration::from_secs(20),
                    "Close from the old process",
                    ws.next(),
                )
                .await
                {
                    Some(Ok(Message::Close(Some(c)))) => {
                        let since = t_term.lock().unwrap().map(|t| t.elapsed());
                        while let Some(Ok(_)) = ws.next().await {}
                        return (u16::from(c.code), since);
                    }
                    Some(Ok(_)) => continue,
                    other => panic!("expected Close 1001, got {other:?}"),
                }
            }
        }));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let clients = client_loops(addr, 16, stop.clone(), ok.clone());
    successes(&ok, 20).await;
    // The upgrade: start the new process on the same port, wait until it is
    // ready, then SIGTERM the old one.
    let mut new = Bin::start("upgrade-new", &text).await;
    successes(&ok, 20).await; // both processes take connections now
    *t_term.lock().unwrap() = Some(Instant::now());
    old.signal(libc::SIGTERM);
    let st = old.exit_within(Duration::from_secs(10)).await;
    assert!(st.success(), "{st:?}");
    successes(&ok, 20).await; // the new process alone
    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = within("the clients", clients).await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} attempts failed: {failures:?}",
        failures.len(),
        ok + failures.len()
    );
    assert!(ok >= 60, "only {ok} sessions");
    let mut times = Vec::new();
    for d in drained {
        let (code, since) = d.await.unwrap();
        assert_eq!(code, 1001);
        times.push(since.expect("closed only after SIGTERM"));
    }
    times.sort();
    let spread = times[times.len() - 1] - times[0];
    assert!(
        times[times.len() - 1] < Duration::from_millis(2600),
        "{times:?}"
    );
    assert!(
        spread > Duration::from_millis(1000),
        "closes not spread over the window: {times:?}"
    );
    attempt(addr).await.expect("the new process serves");
    new.signal(libc::SIGTERM);
    new.exit_within(Duration::from_secs(10)).await;
}

/// Two processes on one port during an upgrade (SO_REUSEPORT): no attempt fails.
///
/// When the old process closes its listening socket, Linux resets the connections
/// still queued on it unless `net.ipv4.tcp_migrate_req = 1` (Linux >= 5.14), which
/// moves them to the new process's socket; the README's upgrade procedure says to
/// set it. This test runs its scenario in a network namespace of its own with that
/// setting (re-running this test binary under `unshare --net`), so the host's
/// setting is left alone; without the privileges for that it runs in place if the
/// setting is already on, and otherwise skips, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_port_refuse_nothing() {
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    if std::env::var("WSGATE_TEST_IN_NETNS").is_ok() || migrate {
        upgrade_scenario().await;
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c"])
        .arg("ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1 && exec \"$0\" --exact two_processes_on_one_port_refuse_nothing --nocapture --test-threads=1")
        .arg(&exe)
        .env("WSGATE_TEST_IN_NETNS", "1")
        .output();
    match out {
        Err(e) => println!("skipped: cannot run unshare ({e}) and tcp_migrate_req is 0"),
        Ok(o) if !o.status.success() && String::from_utf8_lossy(&o.stdout).is_empty() => println!(
            "skipped: no network namespace with tcp_migrate_req = 1 here ({}); tcp_migrate_req is 0",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(o) => {
            let stdout = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success() && stdout.contains("1 passed"),
                "the scenario failed in its namespace:\n{stdout}\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}
