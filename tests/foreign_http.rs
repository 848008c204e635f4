//! Real peers we did not write, over plain HTTP and upgrades through wsgate (TLS):
//! a Socket.IO server (npm `socket.io`) on two backends with `balance = "cookie"`
//! and `socket.io-client` in its default mode (long-polling, then the upgrade), with
//! many clients behind one IP and a backend killed and restarted; and a SockJS
//! server (npm `sockjs`) with `sockjs-client` over WebSocket, xhr-streaming and
//! xhr-polling. The scripts live in tests/foreign/.
//!
//! Without Node or these packages the tests print `SKIP: reason` and pass; install
//! them with `npm ci --prefix tests/foreign` (`.ci/run` does).
mod common;
use common::http::http_pool;
use common::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

fn foreign_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/foreign")
}

/// `Err(reason)` when node or one of `packages` cannot be loaded.
fn node_with(packages: &[&str]) -> Result<(), String> {
    let requires: String = packages
        .iter()
        .map(|p| format!("require('{p}');"))
        .collect();
    match std::process::Command::new("node")
        .args(["-e", &requires])
        .current_dir(foreign_dir())
        .output()
    {
        Err(e) => Err(format!("node cannot be run: {e}")),
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "node packages {packages:?} are missing from tests/foreign/node_modules \
             (npm ci --prefix tests/foreign): {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .find(|l| l.contains("Error"))
                .unwrap_or("")
        )),
    }
}

/// A node process whose stdout lines are collected (and forwarded to `lines`).
struct Node {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
    what: String,
}

impl Node {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new("node");
        cmd.args(args)
            .current_dir(foreign_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("node starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (what, all) = (args.join(" "), seen.clone());
        let tag = what.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = r.next_line().await {
                eprintln!("[{tag}] {l}");
                all.lock().unwrap().push(l.clone());
                let _ = tx.send(l);
            }
        });
        Node {
            stdin: child.stdin.take(),
            child,
            lines,
            seen,
            what,
        }
    }

    /// The next line starting with `prefix` (the rest of it); fails on a FAIL line.
    async fn expect(&mut self, prefix: &str) -> String {
        let what = format!("{}: a line starting with {prefix:?}", self.what);
        within_for(Duration::from_secs(60), &what, async {
            loop {
                let l = self
                    .lines
                    .recv()
                    .await
                    .unwrap_or_else(|| panic!("{} ended", self.what));
                assert!(!l.starts_with("FAIL"), "{}: {l}", self.what);
                if let Some(rest) = l.strip_prefix(prefix) {
                    return rest.trim().to_string();
                }
            }
        })
        .await
    }

    async fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    async fn success(mut self) {
        let st = within_for(Duration::from_secs(60), "node to exit", self.child.wait())
            .await
            .unwrap();
        let out = self.seen.lock().unwrap().join("\n");
        assert!(st.success(), "{} failed ({st}):\n{out}", self.what);
        assert!(
            out.contains("all checks passed"),
            "{}: no report:\n{out}",
            self.what
        );
    }

    fn output(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }
}

/// A backend server script; returns it and its address.
async fn server(args: &[&str]) -> (Node, SocketAddr) {
    let mut n = Node::spawn(args, &[]);
    let port: u16 = n.expect("listening").await.parse().unwrap();
    (n, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// `{"a":4,"b":4}` -> clients on a backend.
fn on(counts: &str, backend: &str) -> usize {
    counts
        .split(&format!("\"{backend}\":"))
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_polling_then_upgrade_with_cookie_stickiness_and_a_backend_restart() {
    if let Err(reason) = node_with(&["socket.io", "socket.io-client"]) {
        eprintln!("SKIP: {reason}");
        return;
    }
    let (mut a, a_addr) = server(&["sio_server.js", "0", "a"]).await;
    let (b, b_addr) = server(&["sio_server.js", "0", "b"]).await;
    // fail_timeout 1s: the restarted backend is picked again soon after.
    let p = start_proxy(&http_pool(
        "p",
        "cookie",
        &[a_addr, b_addr],
        r#"fail_timeout = "1s""#,
        "",
    ))
    .await;
    let port = p.addr.port().to_string();
    let ca = format!("{CERTS}/ca.pem");
    let mut c = Node::spawn(&["sio_client.js", &port, &ca, "8"], &[]);

    // Eight clients from 127.0.0.1: cookies spread them over both backends.
    let step1 = c.expect("STEP1").await;
    assert!(on(&step1, "a") > 0 && on(&step1, "b") > 0, "{step1}");
    assert_eq!(on(&step1, "a") + on(&step1, "b"), 8, "{step1}");

    // Kill backend a: its clients reconnect (their cookie names a dead backend:
    // rebalanced to b and told so) and carry on.
    a.child.kill().await.unwrap();
    c.say("KILLED").await;
    let step2 = c.expect("STEP2").await;
    assert_eq!(on(&step2, "b"), 8, "{step2}");

    // Restart a on its port; once it is pickable again, new clients use it too.
    let a_port = a_addr.port().to_string();
    let (a2, _) = server(&["sio_server.js", &a_port, "a"]).await;
    let backend_a = p.running.pool("p").unwrap().backends[0].clone();
    within("a to be pickable again", async {
        while !backend_a.pickable() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    c.say("NEW 4").await;
    let step3 = c.expect("STEP3").await;
    assert_eq!(
        on(&step3, "a"),
        2,
        "round robin for new clients again: {step3}"
    );
    c.say("DONE").await;
    c.success().await;
    for s in [&a, &a2, &b] {
        let out = s.output();
        assert!(
            !out.contains("Session ID unknown") && !out.contains("CONNECTION_ERROR 1 "),
            "a request reached the wrong backend:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockjs_over_websocket_xhr_streaming_and_xhr_polling() {
    if let Err(reason) = node_with(&["sockjs", "sockjs-client"]) {
        eprintln!("SKIP: {reason}");
        return;
    }
    let (_s, addr) = server(&["sockjs_server.js"]).await;
    let p = start_proxy(&http_pool("p", "round_robin", &[addr], "", "")).await;
    let port = p.addr.port().to_string();
    let ca = format!("{CERTS}/ca.pem");
    let c = Node::spawn(
        &["sockjs_client.js", &port],
        &[("NODE_EXTRA_CA_CERTS", &ca)],
    );
    c.success().await;
}
