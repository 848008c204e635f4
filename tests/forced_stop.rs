//! A forced stop on the real binary loses no record: with a backend that never
//! answers a Close (so the drain cannot finish) and a long `close_timeout`, a
//! second SIGTERM, or `shutdown_timeout` passing, closes every session still open
//! with Close 1001 (never 1006: the client gets a Close frame, then EOF), writes
//! each session's access line, and ends the log with a line that counts sessions
//! drained, sessions forced and connections cut.

mod common;
use common::bin::{Bin, bin_config};
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const SESSIONS: usize = 4;
const ADMIN: &str = r#"[admin]
address = "127.0.0.1:0"
"#;

/// A backend that upgrades, then reads and drops everything: it never answers
/// wsgate's Close, and never closes.
async fn mute_backend() -> RawBackend {
    raw_backend(|head, mut s| async move {
        write_all(&mut s, switching(&head, "").as_bytes()).await;
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                // wsgate closed: keep the socket until the test ends.
                std::future::pending::<()>().await;
            }
        }
    })
    .await
}

fn config(backend: SocketAddr, server: &str) -> String {
    bin_config(
        0,
        &format!(
            "[server]\n{server}close_timeout = \"60s\"\nlog_format = \"json\"\n{ADMIN}\n{}",
            pool_and_route("p", "round_robin", &[(backend, 1)])
        ),
    )
}

/// One raw client session: it waits for wsgate's Close, answers it (as browsers
/// do), then reads to EOF. Returns its own address and the Close code it got
/// (`None`: EOF or an error before any Close, what a client reports as 1006).
async fn client(addr: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<Option<u16>>) {
    let (mut s, resp) = raw_ws(addr, "/", "").await;
    assert_eq!(resp.status, 101);
    let local = s.get_ref().0.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let code = loop {
            match read_frame(&mut s).await {
                Ok(f) if f.opcode == op::CLOSE => break f.close_code(),
                Ok(_) => continue,
                Err(_) => return None,
            }
        };
        let answer = encode_frame(
            true,
            0,
            op::CLOSE,
            &1001u16.to_be_bytes(),
            Some([1, 2, 3, 4]),
        );
        use tokio::io::AsyncWriteExt;
        let _ = s.write_all(&answer).await;
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        code
    });
    (local, task)
}

/// The log's JSON lines.
fn lines(b: &Bin) -> Vec<Value> {
    b.log()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until the admin listener counts `n` open connections.
async fn open_connections(b: &Bin, n: u64) {
    let admin = b.admin_addr().expect("admin listener");
    let t0 = Instant::now();
    loop {
        let r = common::admin::get(admin, "/status.json").await;
        let v: Value = serde_json::from_str(&r.body).unwrap();
        if v["sessions"]["open_connections"] == n {
            return;
        }
        assert!(t0.elapsed() < DEADLINE, "open connections never {n}: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every client got Close 1001; the access log has one `session ended` line for
/// each, and the last line of the log is `last`.
async fn check_records(
    b: &mut Bin,
    clients: Vec<(SocketAddr, tokio::task::JoinHandle<Option<u16>>)>,
    last: &str,
) {
    let st = b.exit_within(Duration::from_secs(5)).await;
    assert!(st.success(), "{st:?}");
    for (local, task) in clients {
        let code = within("client's Close", task).await.unwrap();
        assert_eq!(code, Some(1001), "client {local}\nlog:\n{}", b.log());
    }
    let lines = lines(b);
    let sessions: Vec<&Value> = lines
        .iter()
        .filter(|v| v["target"] == "access" && v["message"] == "session ended")
        .collect();
    assert_eq!(sessions.len(), SESSIONS, "log:\n{}", b.log());
    for s in &sessions {
        assert_eq!(s["wsgate_close_to_client"], 1001, "{s}");
    }
    let final_line = lines.last().expect("a log line");
    assert_eq!(final_line["message"], last, "log:\n{}", b.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_closes_every_session_with_1001_and_logs_it() {
    let backend = mute_backend().await;
    // A long drain: the second signal comes before (almost) any session drew its
    // moment, so the forced stop itself sends the Closes.
    let server = "drain_spread = \"60s\"\nshutdown_timeout = \"90s\"\n";
    let mut b = Bin::start("forced-signal", &config(backend.addr, server)).await;
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        clients.push(client(b.addr()).await);
    }
    // One more connection that never starts its TLS handshake: cut, not a session.
    let _idle = TcpStream::connect(b.addr()).await.unwrap();
    open_connections(&b, SESSIONS as u64 + 1).await;
    b.signal(libc::SIGTERM);
    b.wait_note("STOPPING=1").await;
    let t0 = Instant::now();
    b.signal(libc::SIGTERM);
    check_records(
        &mut b,
        clients,
        "stopped (second signal): 0 sessions drained, 4 sessions forced, 1 connections cut",
    )
    .await;
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_closes_every_session_with_1001_and_logs_it() {
    let backend = mute_backend().await;
    // Every session gets the drain's Close at once; the backend never answers it
    // and close_timeout is long: only shutdown_timeout ends them.
    let server = "drain_spread = \"0s\"\nshutdown_timeout = \"1s\"\n";
    let mut b = Bin::start("forced-timeout", &config(backend.addr, server)).await;
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        clients.push(client(b.addr()).await);
    }
    open_connections(&b, SESSIONS as u64).await;
    b.signal(libc::SIGTERM);
    check_records(
        &mut b,
        clients,
        "stopped (shutdown_timeout (1s) passed): 0 sessions drained, 4 sessions forced, 0 connections cut",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_finishes_says_so_in_its_last_line() {
    let e = echo("e").await;
    let text = bin_config(
        0,
        &format!(
            "[server]\ndrain_spread = \"0s\"\nlog_format = \"json\"\n{}",
            pool_and_route("p", "round_robin", &[(e.addr, 1)])
        ),
    );
    let mut b = Bin::start("forced-none", &text).await;
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        clients.push(client(b.addr()).await);
    }
    b.signal(libc::SIGTERM);
    check_records(
        &mut b,
        clients,
        "stopped (drain complete): 4 sessions drained, 0 sessions forced, 0 connections cut",
    )
    .await;
}
