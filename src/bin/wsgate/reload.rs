//! `wsgate reload`: check the file, signal the running process, and wait for the
//! outcome of the reload that signal caused.
//!
//! Owns: finding the process (`--pid` or `pid_file`), signalling it, and asking its
//! admin listener (`GET /reload`, at the file's `[admin] address`) how the reload
//! ended (`run` says how the wait works and when the outcome cannot be confirmed).
//! Does not own: the reload itself or the record of attempts (control/admin/reload.rs).

use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wsgate::config::Config;

/// Each admin request's connect and read limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Between two polls of `/reload`.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// The command; `cfg` is the checked file at `path`. The admin listener's count of
/// reload attempts is read before the signal, then polled until an attempt numbered
/// above it has finished. An attempt is numbered before it reads the file, so it
/// read the file this command checked (or a later one); when several reloads
/// overlap, the newest finished one is reported, since that is what now runs.
/// Without a reachable admin listener that belongs to the signalled process, the
/// outcome cannot be confirmed: the command says so, signals anyway and exits 0.
pub(crate) fn run(path: &Path, cfg: &Config, pid: Option<u32>, timeout: Duration) -> ExitCode {
    let Some(pid) = target_pid(cfg, pid) else {
        return ExitCode::FAILURE;
    };
    let Some(target) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        eprintln!("bad pid {pid}");
        return ExitCode::FAILURE;
    };
    // Read before signalling: the attempt this signal causes is numbered above it.
    let before = admin_addr(cfg).and_then(|addr| {
        let v = get_reload(addr, pid)?;
        let started = v["started"]
            .as_u64()
            .ok_or_else(|| format!("http://{addr}/reload has no attempt count"))?;
        Ok((addr, started))
    });
    if let Err(e) = kill_process(target, Signal::HUP) {
        eprintln!("cannot signal process {pid}: {}", std::io::Error::from(e));
        return ExitCode::FAILURE;
    }
    let (addr, started) = match before {
        Ok(b) => b,
        Err(why) => {
            println!("{}: configuration OK; sent SIGHUP to {pid}", path.display());
            eprintln!(
                "warning: the outcome of the reload cannot be confirmed: {why}; the process's log says how it went"
            );
            return ExitCode::SUCCESS;
        }
    };
    match wait_outcome(addr, pid, started, timeout) {
        Ok(attempt) => report(&attempt, started),
        Err(why) => {
            eprintln!("sent SIGHUP to {pid}, but {why}; the process's log says how it went");
            ExitCode::FAILURE
        }
    }
}

/// `--pid`, else the config's `pid_file`.
fn target_pid(cfg: &Config, pid: Option<u32>) -> Option<u32> {
    match (pid, &cfg.server.pid_file) {
        (Some(p), _) => Some(p),
        (None, Some(file)) => match std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|s| s.trim().parse::<u32>().map_err(|e| e.to_string()))
        {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("{}: cannot read the pid: {e}", file.display());
                None
            }
        },
        (None, None) => {
            eprintln!(
                "no process to signal: pass --pid (under systemd: --pid $MAINPID) or set [server] pid_file"
            );
            None
        }
    }
}

/// Where to ask: the file's admin address (an unspecified address on loopback).
fn admin_addr(cfg: &Config) -> Result<SocketAddr, String> {
    let Some(mut addr) = cfg.admin.address else {
        return Err("no admin listener is configured ([admin] address = \"\")".into());
    };
    if addr.port() == 0 {
        return Err(format!("the admin listener's port is 0 ({addr})"));
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

/// `GET /reload` from the admin listener at `addr`, which must belong to `pid`.
fn get_reload(addr: SocketAddr, pid: u32) -> Result<Value, String> {
    let fail = |e: std::io::Error| format!("the admin listener at {addr} does not answer: {e}");
    let mut s = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(fail)?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(fail)?;
    s.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(fail)?;
    s.write_all(b"GET /reload HTTP/1.1\r\nHost: wsgate\r\nConnection: close\r\n\r\n")
        .map_err(fail)?;
    let mut raw = Vec::new();
    s.take(1 << 20).read_to_end(&mut raw).map_err(fail)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("http://{addr}/reload: no complete answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(format!(
            "http://{addr}/reload answered {status:?} (a wsgate too old to report reloads, or this host not in [admin] allow)"
        ));
    }
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("http://{addr}/reload: not JSON: {e}"))?;
    match v["pid"].as_u64() {
        Some(p) if p == u64::from(pid) => Ok(v),
        Some(p) => Err(format!(
            "the admin listener at {addr} belongs to process {p}, not {pid}"
        )),
        None => Err(format!("http://{addr}/reload names no process")),
    }
}

/// Polls until an attempt numbered above `started` has finished; returns the newest.
fn wait_outcome(
    addr: SocketAddr,
    pid: u32,
    started: u64,
    timeout: Duration,
) -> Result<Value, String> {
    let deadline = Instant::now() + timeout;
    let mut last_error: Option<String>;
    loop {
        match get_reload(addr, pid) {
            Ok(v) => {
                let newest = v["attempts"].as_array().and_then(|a| {
                    a.iter()
                        .filter(|t| t["seq"].as_u64().is_some_and(|s| s > started))
                        .max_by_key(|t| t["seq"].as_u64())
                        .cloned()
                });
                if let Some(a) = newest {
                    return Ok(a);
                }
                last_error = None;
            }
            // The admin listener may be moving (a reload that changes its address).
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_error {
                Some(e) => format!("no outcome within {timeout:?}: {e}"),
                None => format!("the reload did not finish within {timeout:?}"),
            });
        }
        std::thread::sleep(POLL_EVERY);
    }
}

fn report(attempt: &Value, started: u64) -> ExitCode {
    let seq = attempt["seq"].as_u64().unwrap_or_default();
    let generation = attempt["generation"].as_u64().unwrap_or_default();
    let overlapped = seq.saturating_sub(started + 1);
    let note = if overlapped > 0 {
        format!(" (reload attempt {seq}: {overlapped} other reload(s) overlapped this one)")
    } else {
        String::new()
    };
    if attempt["result"] == "loaded" {
        for w in attempt["warnings"].as_array().into_iter().flatten() {
            eprintln!("warning: {}", w.as_str().unwrap_or_default());
        }
        println!("reloaded: generation {generation}{note}");
        ExitCode::SUCCESS
    } else {
        let reason = attempt["reason"].as_str().unwrap_or("(no reason given)");
        eprintln!("reload refused: {reason}");
        eprintln!("still serving generation {generation}{note}");
        ExitCode::FAILURE
    }
}
