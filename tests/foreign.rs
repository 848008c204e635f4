//! Interop: WebSocket clients written by others (Python `websockets`, Node `ws`) talk
//! to a real echo backend through the proxy over real TLS. The client scripts live in
//! tests/foreign/ and do their own checks; a test passes when its script exits 0.
//!
//! A missing runtime or library is not a failure here: the test prints `SKIP: reason`
//! and passes. Install them with
//! `pip install -r tests/foreign/requirements.txt` and `npm ci --prefix tests/foreign`.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn foreign_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/foreign")
}

/// Runs `cmd`; `Err` with a reason when it cannot be started or exits non-zero.
fn probe(cmd: &mut Command) -> Result<(), String> {
    match cmd.output() {
        Err(e) => Err(format!("{:?} cannot be run: {e}", cmd.get_program())),
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{:?} {:?} exited with {}: {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            o.status,
            error_line(&String::from_utf8_lossy(&o.stderr))
        )),
    }
}

/// The line of a traceback or stack that names the error (else the last line).
fn error_line(stderr: &str) -> &str {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.contains("Error"))
        .or_else(|| lines().next_back())
        .unwrap_or("")
}

/// Starts an echo backend and a proxy, runs `program script PORT CA` from tests/foreign,
/// and asserts it exits 0.
async fn run_client(program: &str, script: &str) {
    let backend = echo("echo").await;
    let p = start_proxy(&pool_and_route("p", "round_robin", &[(backend.addr, 1)])).await;
    let mut cmd = Command::new(program);
    cmd.current_dir(foreign_dir())
        .arg(script)
        .arg(p.addr.port().to_string())
        .arg(format!("{CERTS}/ca.pem"));
    // The script blocks this thread; the proxy runs on the runtime's other workers.
    // The scripts bound their own waits (15 s each), so this deadline is a backstop.
    let out: Output = within_for(
        Duration::from_secs(90),
        &format!("{program} {script}"),
        tokio::task::spawn_blocking(move || cmd.output()),
    )
    .await
    .expect("client thread")
    .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- {program} {script} stdout:\n{stdout}--- stderr:\n{stderr}---");
    assert!(
        out.status.success(),
        "{program} {script} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("all checks passed"),
        "{script} exited 0 without reporting its checks:\n{stdout}"
    );
    within("sessions to end", p.running.wait_sessions_done()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_through_the_proxy() {
    let ready = probe(Command::new("python3").arg("--version")).and_then(|()| {
        probe(
            Command::new("python3")
                .args(["-c", "import websockets.asyncio.client"])
                .current_dir(foreign_dir()),
        )
        .map_err(|e| {
            format!(
                "python package websockets (>= 13) is missing \
                 (pip install -r tests/foreign/requirements.txt): {e}"
            )
        })
    });
    if let Err(reason) = ready {
        eprintln!("SKIP: {reason}");
        return;
    }
    run_client("python3", "py_client.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_client_through_the_proxy() {
    let ready = probe(Command::new("node").arg("--version")).and_then(|()| {
        probe(
            Command::new("node")
                .args(["-e", "require('ws')"])
                .current_dir(foreign_dir()),
        )
        .map_err(|e| {
            format!(
                "node package ws is missing from tests/foreign/node_modules \
                 (npm ci --prefix tests/foreign): {e}"
            )
        })
    });
    if let Err(reason) = ready {
        eprintln!("SKIP: {reason}");
        return;
    }
    run_client("node", "node_client.js").await;
}
