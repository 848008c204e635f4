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
use wsgate::errors::ErrorChain;

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
        let started = v["started"].as_u64().ok_or(Unconfirmed::NoCount(addr))?;
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
                "warning: the outcome of the reload cannot be confirmed: {}; the process's log says how it went",
                ErrorChain(&why)
            );
            return ExitCode::SUCCESS;
        }
    };
    match wait_outcome(addr, pid, started, timeout) {
        Ok(attempt) => report(&attempt, started),
        Err(why) => {
            eprintln!(
                "sent SIGHUP to {pid}, but {}; the process's log says how it went",
                ErrorChain(&why)
            );
            ExitCode::FAILURE
        }
    }
}

/// `--pid`, else the config's `pid_file`.
fn target_pid(cfg: &Config, pid: Option<u32>) -> Option<u32> {
    match (pid, &cfg.server.pid_file) {
        (Some(p), _) => Some(p),
        (None, Some(file)) => {
            let read = std::fs::read_to_string(file);
            match read.as_deref().map(|s| s.trim().parse::<u32>()) {
                Ok(Ok(p)) => Some(p),
                Ok(Err(e)) => {
                    eprintln!("{}: cannot read the pid: {e}", file.display());
                    None
                }
                Err(e) => {
                    eprintln!("{}: cannot read the pid: {e}", file.display());
                    None
                }
            }
        }
        (None, None) => {
            eprintln!(
                "no process to signal: pass --pid (under systemd: --pid $MAINPID) or set [server] pid_file"
            );
            None
        }
    }
}

/// Why `wsgate reload` cannot confirm what the running process did. `Display` says
/// what went wrong; `source()` gives the io or JSON error beneath.
#[derive(Debug)]
enum Unconfirmed {
    NoAdmin,
    PortZero(SocketAddr),
    NoAnswer {
        addr: SocketAddr,
        source: std::io::Error,
    },
    Incomplete(SocketAddr),
    Status {
        addr: SocketAddr,
        status: String,
    },
    NotJson {
        addr: SocketAddr,
        source: serde_json::Error,
    },
    OtherProcess {
        addr: SocketAddr,
        theirs: u64,
        ours: u32,
    },
    NoPid(SocketAddr),
    NoCount(SocketAddr),
    TimedOut {
        after: Duration,
        last: Option<Box<Unconfirmed>>,
    },
}

impl std::fmt::Display for Unconfirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unconfirmed::NoAdmin => {
                f.write_str("no admin listener is configured ([admin] address = \"\")")
            }
            Unconfirmed::PortZero(a) => write!(f, "the admin listener's port is 0 ({a})"),
            Unconfirmed::NoAnswer { addr, .. } => {
                write!(f, "the admin listener at {addr} does not answer")
            }
            Unconfirmed::Incomplete(a) => write!(f, "http://{a}/reload: no complete answer"),
            Unconfirmed::Status { addr, status } => write!(
                f,
                "http://{addr}/reload answered {status:?} (a wsgate too old to report reloads, or this host not in [admin] allow)"
            ),
            Unconfirmed::NotJson { addr, .. } => write!(f, "http://{addr}/reload: not JSON"),
            Unconfirmed::OtherProcess { addr, theirs, ours } => write!(
                f,
                "the admin listener at {addr} belongs to process {theirs}, not {ours}"
            ),
            Unconfirmed::NoPid(a) => write!(f, "http://{a}/reload names no process"),
            Unconfirmed::NoCount(a) => write!(f, "http://{a}/reload has no attempt count"),
            Unconfirmed::TimedOut {
                after,
                last: Some(_),
            } => {
                write!(f, "no outcome within {after:?}")
            }
            Unconfirmed::TimedOut { after, last: None } => {
                write!(f, "the reload did not finish within {after:?}")
            }
        }
    }
}

impl std::error::Error for Unconfirmed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Unconfirmed::NoAnswer { source, .. } => Some(source),
            Unconfirmed::NotJson { source, .. } => Some(source),
            Unconfirmed::TimedOut { last: Some(e), .. } => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// Where to ask: the file's admin address (an unspecified address on loopback).
fn admin_addr(cfg: &Config) -> Result<SocketAddr, Unconfirmed> {
    let Some(mut addr) = cfg.admin.address else {
        return Err(Unconfirmed::NoAdmin);
    };
    if addr.port() == 0 {
        return Err(Unconfirmed::PortZero(addr));
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
fn get_reload(addr: SocketAddr, pid: u32) -> Result<Value, Unconfirmed> {
    let fail = |source: std::io::Error| Unconfirmed::NoAnswer { addr, source };
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
        .ok_or(Unconfirmed::Incomplete(addr))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(Unconfirmed::Status {
            addr,
            status: status.to_string(),
        });
    }
    let v: Value =
        serde_json::from_str(body).map_err(|source| Unconfirmed::NotJson { addr, source })?;
    match v["pid"].as_u64() {
        Some(p) if p == u64::from(pid) => Ok(v),
        Some(theirs) => Err(Unconfirmed::OtherProcess {
            addr,
            theirs,
            ours: pid,
        }),
        None => Err(Unconfirmed::NoPid(addr)),
    }
}

/// Polls until an attempt numbered above `started` has finished; returns the newest.
fn wait_outcome(
    addr: SocketAddr,
    pid: u32,
    started: u64,
    timeout: Duration,
) -> Result<Value, Unconfirmed> {
    let deadline = Instant::now() + timeout;
    let mut last_error: Option<Unconfirmed>;
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
            return Err(Unconfirmed::TimedOut {
                after: timeout,
                last: last_error.map(Box::new),
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
