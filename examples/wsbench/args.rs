//! The command line: the mode, the flags with their defaults, and the checks on them.
//! Owns: `Mode`, `Args`, `USAGE`, `parse_args`, `parse_pids`.
//! Does not own: what the flags do (the mode modules, client.rs, procstat.rs).

use std::net::SocketAddr;
use std::path::PathBuf;

const USAGE: &str = "usage: wsbench (echo|idle|handshake|rate) --addr IP:PORT [--conns N] [--messages M] \
[--size BYTES] [--window W] [--count K] [--concurrency C] [--hold SECS] [--pids P1,P2] [--also-pids P] \
[--ca PEM] [--sni NAME] [--path /] [--kx x25519|default] [--kind binary|text] [--resume] \
[--rate MSGS_PER_S] [--duration SECS] [--timeout SECS] [--clk-tck 100]";

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    Echo,
    Idle,
    Handshake,
    Rate,
}

#[derive(Clone)]
pub(crate) struct Args {
    pub(crate) mode: Mode,
    pub(crate) addr: SocketAddr,
    pub(crate) conns: usize,
    pub(crate) messages: u64,
    pub(crate) size: usize,
    pub(crate) window: usize,
    pub(crate) count: usize,
    pub(crate) concurrency: usize,
    pub(crate) hold: f64,
    pub(crate) pids: Vec<u32>,
    pub(crate) also_pids: Vec<u32>,
    pub(crate) ca: PathBuf,
    pub(crate) sni: String,
    pub(crate) path: String,
    pub(crate) kx: String,
    /// Echo messages are text (true) or binary.
    pub(crate) text: bool,
    pub(crate) timeout: f64,
    pub(crate) clk_tck: f64,
    pub(crate) resume: bool,
    pub(crate) rate: f64,
    pub(crate) duration: f64,
}

pub(crate) fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = match it.next().as_deref() {
        Some("echo") => Mode::Echo,
        Some("idle") => Mode::Idle,
        Some("handshake") => Mode::Handshake,
        Some("rate") => Mode::Rate,
        _ => return Err(USAGE.into()),
    };
    let mut a = Args {
        mode,
        addr: "127.0.0.1:8443".parse().unwrap(),
        conns: 10,
        messages: 1000,
        size: 64,
        window: 1,
        count: 1000,
        concurrency: 64,
        hold: 2.0,
        pids: Vec::new(),
        also_pids: Vec::new(),
        ca: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/certs-example/ca.pem")),
        sni: "localhost".into(),
        path: "/".into(),
        kx: "x25519".into(),
        text: false,
        timeout: 300.0,
        clk_tck: 100.0,
        resume: false,
        rate: 5000.0,
        duration: 10.0,
    };
    while let Some(flag) = it.next() {
        if flag == "--resume" {
            a.resume = true;
            continue;
        }
        let val = it
            .next()
            .ok_or_else(|| format!("{flag}: missing value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {val}: {e}");
        match flag.as_str() {
            "--addr" => a.addr = val.parse().map_err(|e| bad(&e))?,
            "--conns" => a.conns = val.parse().map_err(|e| bad(&e))?,
            "--messages" => a.messages = val.parse().map_err(|e| bad(&e))?,
            "--size" => a.size = val.parse().map_err(|e| bad(&e))?,
            "--window" => a.window = val.parse().map_err(|e| bad(&e))?,
            "--count" => a.count = val.parse().map_err(|e| bad(&e))?,
            "--concurrency" => a.concurrency = val.parse().map_err(|e| bad(&e))?,
            "--hold" => a.hold = val.parse().map_err(|e| bad(&e))?,
            "--pids" => a.pids = parse_pids(&val).map_err(|e| bad(&e))?,
            "--also-pids" => a.also_pids = parse_pids(&val).map_err(|e| bad(&e))?,
            "--ca" => a.ca = PathBuf::from(val),
            "--sni" => a.sni = val,
            "--path" => a.path = val,
            "--kx" => a.kx = val,
            "--kind" => {
                a.text = match val.as_str() {
                    "text" => true,
                    "binary" => false,
                    _ => return Err(format!("--kind {val}: must be binary or text")),
                }
            }
            "--timeout" => a.timeout = val.parse().map_err(|e| bad(&e))?,
            "--clk-tck" => a.clk_tck = val.parse().map_err(|e| bad(&e))?,
            "--rate" => a.rate = val.parse().map_err(|e| bad(&e))?,
            "--duration" => a.duration = val.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if a.window == 0 || a.concurrency == 0 || a.conns == 0 {
        return Err("--window, --concurrency and --conns must be at least 1".into());
    }
    if !matches!(a.kx.as_str(), "x25519" | "default") {
        return Err("--kx must be x25519 or default".into());
    }
    if !(a.rate > 0.0 && a.rate <= 1e6 && a.duration > 0.0 && a.duration <= 3600.0) {
        return Err("--rate must be in (0, 1e6] and --duration in (0, 3600]".into());
    }
    Ok(a)
}

fn parse_pids(v: &str) -> Result<Vec<u32>, std::num::ParseIntError> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|p| p.trim().parse::<u32>())
        .collect()
}
