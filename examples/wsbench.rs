//! wsbench: a WebSocket load generator for comparing wsgate with other proxies
//! (used by `benches/compare.sh`; see `benches/README.md`).
//!
//! Every connection is `wss://` (TLS 1.3, SNI `localhost`, trusting
//! `certs-example/ca.pem` by default, no session resumption, ALPN `http/1.1`).
//!
//! ```text
//! wsbench echo      --addr 127.0.0.1:19443 --conns 50 --messages 4000 --size 64 --window 32
//! wsbench idle      --addr 127.0.0.1:19443 --conns 2000 --hold 3
//! wsbench handshake --addr 127.0.0.1:19443 --count 1000 --concurrency 16
//! wsbench rate      --addr 127.0.0.1:19443 --conns 50 --rate 5000 --duration 10 --size 64
//! ```
//!
//! - `echo`: opens `--conns` connections (at most `--concurrency` handshakes at a
//!   time), waits until all are open, then each sends `--messages` binary messages of
//!   `--size` bytes (`--kind text`: text messages, mixed ASCII and multi-byte UTF-8), keeping at most `--window` unanswered (1 = ping-pong), and
//!   waits for every echo. Round-trip latency is measured per message. Connections
//!   then close with a close handshake.
//! - `idle`: opens `--conns` sessions, each doing one echo round trip (so the
//!   session is live end to end), holds them all for `--hold` seconds, then closes.
//! - `handshake`: `--count` new connections, `--concurrency` at a time: TCP, TLS and
//!   upgrade (timed), then a close handshake. With `--resume` the client keeps the
//!   session tickets the server sends and resumes with them (after one full
//!   handshake per concurrent slot, done before the measured phase); `resumed=` in the
//!   result says how many of the measured handshakes were resumed.
//! - `rate`: open loop. `--conns` connections, `--rate` messages per second in total
//!   for `--duration` seconds, message k scheduled at start + k/rate on connection
//!   k mod conns, whether or not earlier echoes are back. A pacer thread (timer slack
//!   1 ns) hands each message to its connection at its scheduled time; latency is
//!   measured from the *scheduled* time to the echo, so a stall anywhere (proxy,
//!   client or pacer) is counted, not hidden (no coordinated omission). `lag_p99_us`
//!   is how late the pacer itself was: if it is large the client, not the proxy, was
//!   the bottleneck.
//!
//! `--pids 1,2,3` names the proxy's processes: wsbench then reads their CPU time
//! (utime+stime from /proc/PID/stat) around the measured phase and their RSS
//! (VmRSS) before/while/after holding idle sessions, so the figures cover exactly
//! the measured work; `sys_us_per_*` is the kernel's share of it (stime) and
//! `ctxsw_per_*` the proxy's context switches (its live threads). In `rate`,
//! `runq_us_per_msg` is the time the proxy's threads were runnable but waiting for a
//! CPU (the scheduler's delay, /proc/PID/task/*/schedstat) per message, and
//! `runq_us_per_run` the same per time a thread was put on a CPU. `--also-pids` names other processes of the benchmark (the
//! backend): CPU used on the machine by none of these nor wsbench is reported as
//! `foreign_cores` (other load, i.e. noise). The last line of output is machine-readable:
//! `RESULT key=value ...`. Exit status 1 if any connection failed.
//!
//! Everything is bounded: `--timeout` (default 300 s) ends the run with exit 2.

use futures_util::{SinkExt, StreamExt};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Ws = WebSocketStream<TlsStream<TcpStream>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: wsbench (echo|idle|handshake|rate) --addr IP:PORT [--conns N] [--messages M] \
[--size BYTES] [--window W] [--count K] [--concurrency C] [--hold SECS] [--pids P1,P2] [--also-pids P] \
[--ca PEM] [--sni NAME] [--path /] [--kx x25519|default] [--kind binary|text] [--resume] \
[--rate MSGS_PER_S] [--duration SECS] [--timeout SECS] [--clk-tck 100]";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Echo,
    Idle,
    Handshake,
    Rate,
}

#[derive(Clone)]
struct Args {
    mode: Mode,
    addr: SocketAddr,
    conns: usize,
    messages: u64,
    size: usize,
    window: usize,
    count: usize,
    concurrency: usize,
    hold: f64,
    pids: Vec<u32>,
    also_pids: Vec<u32>,
    ca: PathBuf,
    sni: String,
    path: String,
    kx: String,
    /// Echo messages are text (true) or binary.
    text: bool,
    timeout: f64,
    clk_tck: f64,
    resume: bool,
    rate: f64,
    duration: f64,
}

fn parse_args() -> Result<Args, String> {
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

// ---------------------------------------------------------------- /proc readings

/// Busy CPU seconds of the whole machine (all cores), from /proc/stat.
fn machine_busy(clk_tck: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return f64::NAN;
    };
    let Some(line) = stat.lines().next() else {
        return f64::NAN;
    };
    // cpu user nice system idle iowait irq softirq steal ...
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() < 8 {
        return f64::NAN;
    }
    (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / clk_tck
}

/// CPU snapshot: the proxy, wsbench itself, the other known processes (the backend),
/// and the whole machine; the rest is "foreign" load that only adds noise.
#[derive(Clone, Copy)]
struct Snap {
    proxy: f64,
    /// The proxy's stime alone (kernel work done for it), seconds.
    proxy_sys: f64,
    /// The proxy's context switches (voluntary + involuntary, its live threads).
    proxy_cs: f64,
    /// Time the proxy's live threads spent runnable but waiting for a CPU, seconds,
    /// and how many times they were put on one (/proc/PID/task/*/schedstat).
    proxy_wait: f64,
    proxy_runs: f64,
    client: f64,
    also: f64,
    machine: f64,
}

fn snap(a: &Args) -> Snap {
    Snap {
        proxy: pids_cpu(a),
        proxy_sys: sum_pids(a, |p| stat_field(p, 12).map(|t| t / a.clk_tck)),
        proxy_cs: sum_pids(a, context_switches),
        proxy_wait: sum_pids(a, |p| sched_stat(p, 1).map(|ns| ns / 1e9)),
        proxy_runs: sum_pids(a, |p| sched_stat(p, 2)),
        client: self_cpu(a.clk_tck),
        also: a
            .also_pids
            .iter()
            .map(|&p| cpu_seconds(p, a.clk_tck).unwrap_or(0.0))
            .sum(),
        machine: machine_busy(a.clk_tck),
    }
}

impl Snap {
    /// (proxy kernel CPU seconds, proxy context switches) between two snapshots.
    fn kernel(self, later: Snap) -> (f64, f64) {
        (
            later.proxy_sys - self.proxy_sys,
            later.proxy_cs - self.proxy_cs,
        )
    }

    /// (seconds the proxy's threads waited for a CPU, times they were run) between
    /// two snapshots: how much of a latency tail is the machine's scheduler.
    fn run_queue(self, later: Snap) -> (f64, f64) {
        (
            later.proxy_wait - self.proxy_wait,
            later.proxy_runs - self.proxy_runs,
        )
    }

    /// (proxy, client, foreign) CPU seconds between two snapshots.
    fn delta(self, later: Snap) -> (f64, f64, f64) {
        let proxy = later.proxy - self.proxy;
        let client = later.client - self.client;
        let also = later.also - self.also;
        let proxy_known = if proxy.is_nan() { 0.0 } else { proxy };
        let foreign = (later.machine - self.machine) - proxy_known - client - also;
        (proxy, client, foreign.max(0.0))
    }
}

/// Field `i` (0 = state, 11 = utime, 12 = stime) of /proc/PID/stat, counting from
/// after the command name (which may hold spaces). utime and stime cover all the
/// process's threads, live and exited.
fn stat_field(pid: u32, i: usize) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(i)?.parse().ok()
}

/// utime+stime of a process (all its threads, live and exited), in seconds.
fn cpu_seconds(pid: u32, clk_tck: f64) -> Option<f64> {
    Some((stat_field(pid, 11)? + stat_field(pid, 12)?) / clk_tck)
}

/// `figure` of each live thread's /proc/PID/task/TID/`file`, summed over the threads.
fn sum_threads(pid: u32, file: &str, figure: impl Fn(&str) -> Option<f64>) -> Option<f64> {
    let mut n = 0.0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        n += figure(&std::fs::read_to_string(t.ok()?.path().join(file)).ok()?)?;
    }
    Some(n)
}

/// Context switches (voluntary + involuntary) of a process's live threads.
fn context_switches(pid: u32) -> Option<f64> {
    sum_threads(pid, "status", |status| {
        let mut n = 0.0;
        for l in status.lines() {
            if l.starts_with("voluntary_ctxt_switches:")
                || l.starts_with("nonvoluntary_ctxt_switches:")
            {
                n += l.split_whitespace().nth(1)?.parse::<f64>().ok()?;
            }
        }
        Some(n)
    })
}

/// Field `i` of /proc/PID/task/*/schedstat summed over a process's live threads:
/// 0 = ns on a CPU, 1 = ns runnable and waiting for one, 2 = times run.
fn sched_stat(pid: u32, i: usize) -> Option<f64> {
    sum_threads(pid, "schedstat", |stat| {
        stat.split_whitespace().nth(i)?.parse().ok()
    })
}

/// A per-process figure summed over the watched processes (NaN without --pids or if
/// one is gone).
fn sum_pids(a: &Args, f: impl Fn(u32) -> Option<f64>) -> f64 {
    if a.pids.is_empty() {
        return f64::NAN;
    }
    a.pids.iter().map(|&p| f(p).unwrap_or(f64::NAN)).sum()
}

fn self_cpu(clk_tck: f64) -> f64 {
    cpu_seconds(std::process::id(), clk_tck).unwrap_or(f64::NAN)
}

/// Summed CPU seconds of the watched processes (NaN without --pids or if one is gone).
fn pids_cpu(a: &Args) -> f64 {
    sum_pids(a, |p| cpu_seconds(p, a.clk_tck))
}

/// Summed VmRSS of the watched processes, KiB.
fn pids_rss_kib(a: &Args) -> f64 {
    if a.pids.is_empty() {
        return f64::NAN;
    }
    a.pids
        .iter()
        .map(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|v| v.parse::<f64>().ok())
                })
                .unwrap_or(f64::NAN)
        })
        .sum()
}

// ---------------------------------------------------------------- connecting

struct Client {
    addr: SocketAddr,
    connector: TlsConnector,
    sni: ServerName<'static>,
    url: String,
}

fn tls_config(a: &Args) -> Result<ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&a.ca)? {
        roots.add(cert?)?;
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if a.kx == "x25519" {
        // What every proxy here can do (OpenSSL 3.0 has no ML-KEM): same key exchange for all.
        provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    }
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !a.resume {
        // Every connection is a full handshake.
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Ok(cfg)
}

impl Client {
    fn new(a: &Args) -> Result<Client, Error> {
        Ok(Client {
            addr: a.addr,
            connector: TlsConnector::from(Arc::new(tls_config(a)?)),
            sni: ServerName::try_from(a.sni.clone())?,
            url: format!("wss://{}:{}{}", a.sni, a.addr.port(), a.path),
        })
    }

    /// TCP + TLS + WebSocket upgrade.
    async fn connect(&self) -> Result<Ws, Error> {
        Ok(self.connect_kind().await?.0)
    }

    /// As `connect`, also saying whether the TLS handshake was a resumption.
    async fn connect_kind(&self) -> Result<(Ws, bool), Error> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self.connector.connect(self.sni.clone(), tcp).await?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let req = self.url.as_str().into_client_request()?;
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let (ws, _resp) = tokio_tungstenite::client_async_with_config(req, tls, Some(cfg)).await?;
        Ok((ws, resumed))
    }

    /// The negotiated TLS parameters, from one connection.
    async fn describe(&self) -> String {
        match async {
            let tcp = TcpStream::connect(self.addr).await?;
            let tls = self.connector.connect(self.sni.clone(), tcp).await?;
            let (_, c) = tls.get_ref();
            let name = |d: Option<String>| d.unwrap_or_else(|| "?".into());
            Ok::<_, Error>(format!(
                "{}/{}/{}",
                name(c.protocol_version().map(|v| format!("{v:?}"))),
                name(
                    c.negotiated_cipher_suite()
                        .map(|s| format!("{:?}", s.suite()))
                ),
                name(
                    c.negotiated_key_exchange_group()
                        .map(|g| format!("{:?}", g.name()))
                ),
            ))
        }
        .await
        {
            Ok(s) => s.replace(' ', "_"),
            Err(e) => format!("error:{e}").replace(' ', "_"),
        }
    }
}

/// Sends a Close and waits (bounded) for the peer's Close and the end of the stream.
async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        if ws.close(None).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// One echo round trip of `size` bytes.
async fn round_trip(ws: &mut Ws, size: usize) -> Result<(), Error> {
    ws.send(Message::Binary(vec![0x5a; size].into())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.len() == size => return Ok(()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Err(format!("unexpected echo: {m:?}").into()),
            Some(Err(e)) => return Err(e.into()),
            None => return Err("connection ended before the echo".into()),
        }
    }
}

/// `size` bytes of UTF-8 text: mostly ASCII with two-, three- and four-byte characters
/// mixed in (what chat and JSON traffic looks like), padded with ASCII to the byte.
fn text_payload(size: usize) -> String {
    const PIECE: &str = "{\"user\":\"zoë\",\"msg\":\"naïve café ✓ 日本 🦀\"} ";
    let mut s = String::with_capacity(size);
    while s.len() + PIECE.len() <= size {
        s.push_str(PIECE);
    }
    while s.len() < size {
        s.push('.');
    }
    s
}

/// Opens `n` connections, at most `concurrency` handshakes at a time, keeping order.
async fn open_many(
    client: &Arc<Client>,
    n: usize,
    concurrency: usize,
    echo_size: Option<usize>,
) -> (Vec<Ws>, Vec<String>) {
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, sem) = (client.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            let mut ws = client.connect().await?;
            if let Some(size) = echo_size {
                round_trip(&mut ws, size).await?;
            }
            Ok::<_, Error>(ws)
        });
    }
    let (mut ok, mut errs) = (Vec::with_capacity(n), Vec::new());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(ws)) => ok.push(ws),
            Ok(Err(e)) => errs.push(e.to_string()),
            Err(e) => errs.push(e.to_string()),
        }
    }
    (ok, errs)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Proxy CPU milliseconds per MB (1e6 bytes) of payload carried each way.
fn cpu_ms_per_mb(proxy_cpu_s: f64, msgs: u64, size: usize) -> f64 {
    let mb = msgs as f64 * size as f64 / 1e6;
    if mb > 0.0 {
        proxy_cpu_s * 1e3 / mb
    } else {
        f64::NAN
    }
}

fn report_errors(errs: &[String]) {
    if !errs.is_empty() {
        let mut uniq: Vec<&String> = errs.iter().collect();
        uniq.sort();
        uniq.dedup();
        eprintln!(
            "wsbench: {} connection(s) failed; distinct errors:",
            errs.len()
        );
        for e in uniq.iter().take(5) {
            eprintln!("  {e}");
        }
    }
}

// ---------------------------------------------------------------- modes

/// One connection's echo loop: a sender keeping `window` messages in flight and a
/// receiver timing each echo (echoes come back in order).
async fn echo_conn(
    ws: Ws,
    messages: u64,
    size: usize,
    window: usize,
    text: bool,
) -> Result<(Ws, Vec<u64>), Error> {
    let (mut tx, mut rx) = ws.split();
    let sent_at: Arc<Mutex<VecDeque<Instant>>> = Arc::new(Mutex::new(VecDeque::new()));
    let credits = Arc::new(Semaphore::new(window));
    let message = if text {
        Message::Text(text_payload(size).into())
    } else {
        Message::Binary(vec![0xa5u8; size].into())
    };
    let sender = {
        let (sent_at, credits) = (sent_at.clone(), credits.clone());
        async move {
            let mut sent = 0u64;
            while sent < messages {
                credits.acquire().await?.forget();
                let mut batch = 1u64;
                // Take whatever else the window allows right now, then flush once.
                while sent + batch < messages {
                    match credits.try_acquire() {
                        Ok(p) => {
                            p.forget();
                            batch += 1;
                        }
                        Err(_) => break,
                    }
                }
                for _ in 0..batch {
                    sent_at.lock().unwrap().push_back(Instant::now());
                    tx.feed(message.clone()).await?;
                }
                tx.flush().await?;
                sent += batch;
            }
            Ok::<_, Error>(tx)
        }
    };
    let receiver = async {
        let mut lat = Vec::with_capacity(messages as usize);
        while (lat.len() as u64) < messages {
            match rx.next().await {
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    if m.is_text() != text || m.len() != size {
                        return Err::<_, Error>(
                            format!("echo of {} bytes, sent {size}", m.len()).into(),
                        );
                    }
                    let t0 = sent_at
                        .lock()
                        .unwrap()
                        .pop_front()
                        .ok_or("echo of a message never sent")?;
                    lat.push(t0.elapsed().as_micros() as u64);
                    credits.add_permits(1);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(m)) => return Err(format!("unexpected message: {m:?}").into()),
                Some(Err(e)) => return Err(e.into()),
                None => return Err("connection ended early".into()),
            }
        }
        Ok(lat)
    };
    let (tx, lat) = tokio::try_join!(sender, receiver)?;
    let ws = tx.reunite(rx).map_err(|_| "reunite")?;
    Ok((ws, lat))
}

async fn run_echo(a: &Args, client: Arc<Client>) -> Result<bool, Error> {
    let (conns, errs) = open_many(&client, a.conns, a.concurrency, None).await;
    report_errors(&errs);
    let opened = conns.len();
    let (start_tx, start_rx) = watch::channel(false);
    let (close_tx, close_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut set = tokio::task::JoinSet::new();
    for ws in conns {
        let (mut start_rx, mut close_rx, done_tx) =
            (start_rx.clone(), close_rx.clone(), done_tx.clone());
        let (m, s, w, t) = (a.messages, a.size, a.window, a.text);
        set.spawn(async move {
            let _ = start_rx.wait_for(|v| *v).await;
            let r = echo_conn(ws, m, s, w, t).await;
            let _ = done_tx.send(());
            match r {
                Ok((ws, lat)) => {
                    let _ = close_rx.wait_for(|v| *v).await;
                    close(ws).await;
                    Ok(lat)
                }
                Err(e) => Err(e),
            }
        });
    }
    drop(done_tx);
    let s0 = snap(a);
    let t0 = Instant::now();
    start_tx.send_replace(true);
    for _ in 0..opened {
        if done_rx.recv().await.is_none() {
            break;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let s1 = snap(a);
    let (proxy_cpu, client_cpu, foreign) = s0.delta(s1);
    let (sys, cs) = s0.kernel(s1);
    close_tx.send_replace(true);
    let mut lat = Vec::new();
    let mut fails = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(l)) => lat.extend(l),
            Ok(Err(e)) => fails.push(e.to_string()),
            Err(e) => fails.push(e.to_string()),
        }
    }
    report_errors(&fails);
    lat.sort_unstable();
    let msgs = lat.len() as u64;
    println!(
        "echo: {opened}/{} connections, {msgs} round trips of {} B (window {}) in {wall:.3} s: \
         {:.0} msgs/s, {:.1} MB/s each way; latency p50 {} us, p99 {} us, max {} us; \
         proxy CPU {proxy_cpu:.2} s ({:.2} us/msg); client CPU {client_cpu:.2} s; \
         other load {:.2} cores",
        a.conns,
        a.size,
        a.window,
        msgs as f64 / wall,
        msgs as f64 * a.size as f64 / wall / 1e6,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(0),
        proxy_cpu * 1e6 / msgs.max(1) as f64,
        foreign / wall,
    );
    let errors = errs.len() + fails.len();
    println!(
        "RESULT mode=echo conns={opened} errors={errors} msgs={msgs} size={} window={} wall_s={wall:.4} \
         msgs_per_s={:.1} mb_per_s={:.2} p50_us={} p99_us={} max_us={} proxy_cpu_s={proxy_cpu:.3} \
         cpu_us_per_msg={:.3} cpu_ms_per_mb={:.4} p999_us={} client_cpu_s={client_cpu:.3} \
         foreign_cores={:.3} sys_us_per_msg={:.3} ctxsw_per_msg={:.3}",
        a.size,
        a.window,
        msgs as f64 / wall,
        msgs as f64 * a.size as f64 / wall / 1e6,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(0),
        proxy_cpu * 1e6 / msgs.max(1) as f64,
        cpu_ms_per_mb(proxy_cpu, msgs, a.size),
        percentile(&lat, 99.9),
        foreign / wall,
        sys * 1e6 / msgs.max(1) as f64,
        cs / msgs.max(1) as f64,
    );
    Ok(errors == 0)
}

async fn run_idle(a: &Args, client: Arc<Client>) -> Result<bool, Error> {
    let rss0 = pids_rss_kib(a);
    let t0 = Instant::now();
    let (conns, errs) = open_many(&client, a.conns, a.concurrency, Some(16)).await;
    let open_s = t0.elapsed().as_secs_f64();
    report_errors(&errs);
    let n = conns.len();
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let rss1 = pids_rss_kib(a);
    let per = (rss1 - rss0) / n.max(1) as f64;
    // Close them all (bounded concurrency is not needed: closing is cheap).
    let mut set = tokio::task::JoinSet::new();
    for ws in conns {
        set.spawn(close(ws));
    }
    while set.join_next().await.is_some() {}
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss2 = pids_rss_kib(a);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rss5 = pids_rss_kib(a);
    println!(
        "idle: {n}/{} sessions open in {open_s:.2} s; proxy RSS {rss0:.0} KiB before, \
         {rss1:.0} KiB holding them ({per:.2} KiB/session), {rss2:.0} KiB 1 s and {rss5:.0} KiB \
         5 s after closing",
        a.conns
    );
    println!(
        "RESULT mode=idle conns={n} errors={} open_s={open_s:.3} rss_before_kib={rss0:.0} \
         rss_held_kib={rss1:.0} rss_after_close_kib={rss2:.0} rss_after_5s_kib={rss5:.0} \
         kib_per_session={per:.3}",
        errs.len()
    );
    Ok(errs.is_empty())
}

async fn run_handshake(a: &Args, client: Arc<Client>) -> Result<bool, Error> {
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let resumed = Arc::new(AtomicU64::new(0));
    if a.resume {
        // Prime the ticket store: one full handshake per concurrent slot, not measured.
        let (_conns, errs) = open_many(&client, a.concurrency, a.concurrency, None).await;
        report_errors(&errs);
    }
    let s0 = snap(a);
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..a.count {
        let (client, sem, resumed) = (client.clone(), sem.clone(), resumed.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            let t = Instant::now();
            let (ws, was_resumed) = client.connect_kind().await?;
            let us = t.elapsed().as_micros() as u64;
            close(ws).await;
            if was_resumed {
                resumed.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, Error>(us)
        });
    }
    let (mut lat, mut errs) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(us)) => lat.push(us),
            Ok(Err(e)) => errs.push(e.to_string()),
            Err(e) => errs.push(e.to_string()),
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let s1 = snap(a);
    let (cpu, client_cpu, foreign) = s0.delta(s1);
    let (sys, cs) = s0.kernel(s1);
    report_errors(&errs);
    lat.sort_unstable();
    let n = lat.len();
    println!(
        "handshake: {n}/{} connections (TCP+TLS+upgrade, then close), {} at a time, in {wall:.3} s: \
         {:.0} conns/s; setup p50 {} us, p99 {} us; proxy CPU {cpu:.2} s ({:.1} us/conn); \
         client CPU {client_cpu:.2} s; other load {:.2} cores; {} resumed",
        a.count,
        a.concurrency,
        n as f64 / wall,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        cpu * 1e6 / n.max(1) as f64,
        foreign / wall,
        resumed.load(Ordering::Relaxed),
    );
    println!(
        "RESULT mode=handshake conns={n} errors={} wall_s={wall:.4} conns_per_s={:.1} p50_us={} \
         p99_us={} proxy_cpu_s={cpu:.3} cpu_us_per_conn={:.2} client_cpu_s={client_cpu:.3} \
         foreign_cores={:.3} resumed={} sys_us_per_conn={:.2} ctxsw_per_conn={:.3}",
        errs.len(),
        n as f64 / wall,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        cpu * 1e6 / n.max(1) as f64,
        foreign / wall,
        resumed.load(Ordering::Relaxed),
        sys * 1e6 / n.max(1) as f64,
        cs / n.max(1) as f64,
    );
    Ok(errs.is_empty())
}

// ---------------------------------------------------------------- open loop

/// Lowers this thread's timer slack to 1 ns so that its sleeps end within a few
/// microseconds of their deadline (the default slack is 50 us).
fn fine_timer_slack() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes the calling thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// The pacer (its own thread): message k is due at `t0 + k / rate` and is handed, with
/// its due time, to connection `k mod conns`. Returns how late each hand-over was, us.
fn pace(t0: Instant, rate: f64, total: u64, conns: Vec<UnboundedSender<Instant>>) -> Vec<u64> {
    fine_timer_slack();
    let due = |k: u64| t0 + Duration::from_secs_f64(k as f64 / rate);
    let mut lag = Vec::with_capacity(total as usize);
    let mut k = 0u64;
    while k < total {
        let now = Instant::now();
        let next = due(k);
        if next > now {
            std::thread::sleep(next - now);
            continue;
        }
        while k < total && due(k) <= now {
            lag.push(now.saturating_duration_since(due(k)).as_micros() as u64);
            // A connection that failed has dropped its receiver: its messages are lost
            // and its task reports the error.
            let _ = conns[(k % conns.len() as u64) as usize].send(due(k));
            k += 1;
        }
    }
    lag
}

/// One connection of the open-loop run: sends a message whenever the pacer says (all
/// that are due, then one flush), and times each echo from its *scheduled* send time.
async fn rate_conn(
    ws: Ws,
    mut due_rx: UnboundedReceiver<Instant>,
    expected: u64,
    size: usize,
) -> Result<(Ws, Vec<u64>), Error> {
    let (mut tx, mut rx) = ws.split();
    let sent_at: Arc<Mutex<VecDeque<Instant>>> = Arc::new(Mutex::new(VecDeque::new()));
    let payload: tokio_tungstenite::tungstenite::Bytes = vec![0xa5u8; size].into();
    let sender = {
        let sent_at = sent_at.clone();
        async move {
            while let Some(due) = due_rx.recv().await {
                sent_at.lock().unwrap().push_back(due);
                tx.feed(Message::Binary(payload.clone())).await?;
                while let Ok(due) = due_rx.try_recv() {
                    sent_at.lock().unwrap().push_back(due);
                    tx.feed(Message::Binary(payload.clone())).await?;
                }
                tx.flush().await?;
            }
            Ok::<_, Error>(tx)
        }
    };
    let receiver = async {
        let mut lat = Vec::with_capacity(expected as usize);
        while (lat.len() as u64) < expected {
            match rx.next().await {
                Some(Ok(Message::Binary(b))) if b.len() == size => {
                    let due = sent_at
                        .lock()
                        .unwrap()
                        .pop_front()
                        .ok_or("echo of a message never sent")?;
                    lat.push(due.elapsed().as_micros() as u64);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(m)) => return Err::<_, Error>(format!("unexpected message: {m:?}").into()),
                Some(Err(e)) => return Err(e.into()),
                None => return Err("connection ended early".into()),
            }
        }
        Ok(lat)
    };
    let (tx, lat) = tokio::try_join!(sender, receiver)?;
    let ws = tx.reunite(rx).map_err(|_| "reunite")?;
    Ok((ws, lat))
}

async fn run_rate(a: &Args, client: Arc<Client>) -> Result<bool, Error> {
    let (conns, errs) = open_many(&client, a.conns, a.concurrency, None).await;
    report_errors(&errs);
    let opened = conns.len();
    if opened == 0 {
        return Err("no connection opened".into());
    }
    let total = (a.rate * a.duration).round() as u64;
    let mut set = tokio::task::JoinSet::new();
    let mut senders = Vec::with_capacity(opened);
    for (i, ws) in conns.into_iter().enumerate() {
        let (due_tx, due_rx) = unbounded_channel();
        senders.push(due_tx);
        let n = opened as u64;
        let expected = total / n + u64::from((i as u64) < total % n);
        let size = a.size;
        set.spawn(async move {
            let (ws, lat) = rate_conn(ws, due_rx, expected, size).await?;
            close(ws).await;
            Ok::<_, Error>(lat)
        });
    }
    let s0 = snap(a);
    // Start a little ahead so that every connection task is waiting on its channel.
    let t0 = Instant::now() + Duration::from_millis(20);
    let rate = a.rate;
    let pacer = tokio::task::spawn_blocking(move || pace(t0, rate, total, senders));
    let mut lat = Vec::with_capacity(total as usize);
    let mut fails = Vec::new();
    let mut last_echo = t0;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(l)) => {
                last_echo = last_echo.max(Instant::now());
                lat.extend(l)
            }
            Ok(Err(e)) => fails.push(e.to_string()),
            Err(e) => fails.push(e.to_string()),
        }
    }
    let wall = last_echo
        .saturating_duration_since(t0)
        .as_secs_f64()
        .max(1e-9);
    let s1 = snap(a);
    let (proxy_cpu, client_cpu, foreign) = s0.delta(s1);
    let (sys, cs) = s0.kernel(s1);
    let (wait, runs) = s0.run_queue(s1);
    let mut lag = pacer.await.map_err(|e| format!("pacer: {e}"))?;
    report_errors(&fails);
    lat.sort_unstable();
    lag.sort_unstable();
    let msgs = lat.len() as u64;
    let (p50, p99, p999) = (
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&lat, 99.9),
    );
    println!(
        "rate: {opened}/{} connections, {msgs}/{total} round trips of {} B at {:.0} msgs/s scheduled \
         ({:.0} achieved) over {:.1} s; latency from scheduled send p50 {p50} us, p99 {p99} us, \
         p99.9 {p999} us, max {} us; pacer lag p99 {} us; proxy CPU {proxy_cpu:.2} s \
         ({:.2} us/msg); client CPU {client_cpu:.2} s; other load {:.2} cores",
        a.conns,
        a.size,
        a.rate,
        msgs as f64 / wall,
        a.duration,
        lat.last().copied().unwrap_or(0),
        percentile(&lag, 99.0),
        proxy_cpu * 1e6 / msgs.max(1) as f64,
        foreign / wall,
    );
    let errors = errs.len() + fails.len() + usize::from(msgs != total);
    println!(
        "RESULT mode=rate conns={opened} errors={errors} msgs={msgs} scheduled={total} size={} \
         rate={} wall_s={wall:.4} msgs_per_s={:.1} p50_us={p50} p99_us={p99} p999_us={p999} \
         max_us={} lag_p99_us={} proxy_cpu_s={proxy_cpu:.3} cpu_us_per_msg={:.3} \
         cpu_ms_per_mb={:.4} client_cpu_s={client_cpu:.3} foreign_cores={:.3} \
         sys_us_per_msg={:.3} ctxsw_per_msg={:.3} runq_us_per_msg={:.3} runq_us_per_run={:.3}",
        a.size,
        a.rate,
        msgs as f64 / wall,
        lat.last().copied().unwrap_or(0),
        percentile(&lag, 99.0),
        proxy_cpu * 1e6 / msgs.max(1) as f64,
        cpu_ms_per_mb(proxy_cpu, msgs, a.size),
        foreign / wall,
        sys * 1e6 / msgs.max(1) as f64,
        cs / msgs.max(1) as f64,
        wait * 1e6 / msgs.max(1) as f64,
        wait * 1e6 / runs.max(1.0),
    );
    Ok(errors == 0)
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let client = match Client::new(&a) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                eprintln!("wsbench: {e}");
                return ExitCode::from(64);
            }
        };
        println!("tls: {}", client.describe().await);
        let run = async {
            match a.mode {
                Mode::Echo => run_echo(&a, client.clone()).await,
                Mode::Idle => run_idle(&a, client.clone()).await,
                Mode::Handshake => run_handshake(&a, client.clone()).await,
                Mode::Rate => run_rate(&a, client.clone()).await,
            }
        };
        match tokio::time::timeout(Duration::from_secs_f64(a.timeout), run).await {
            Ok(Ok(true)) => ExitCode::SUCCESS,
            Ok(Ok(false)) => ExitCode::from(1),
            Ok(Err(e)) => {
                eprintln!("wsbench: {e}");
                ExitCode::from(1)
            }
            Err(_) => {
                eprintln!("wsbench: timed out after {} s", a.timeout);
                println!("RESULT mode=timeout errors=1");
                ExitCode::from(2)
            }
        }
    })
}
