//! soak: the client side of `tools/chaos-soak.sh`. `--clients` clients, each in a
//! loop of sessions through wsgate (wss, certs-example CA, SNI localhost): upgrade,
//! then sequence-numbered text messages every `--interval-ms` (jittered), each echo
//! checked to arrive exactly once and in order. A session ends by the client's own
//! choice (a clean Close after a random lifetime, or, for `--abrupt` of them, a
//! dropped connection with no Close) or by the server. Frames are read raw, so the
//! Close code is the one on the wire (tungstenite 0.30 reports 1014 as 1002).
//!
//! soak --addr 127.0.0.1:19843 --clients 1000 --secs 600 [--interval-ms 500] [--abrupt 0.1]
//!
//! Last line: `RESULT key=value ...`. Counted: messages sent and echoed, sessions,
//! how each ended, connect failures, and losses (a message sent on a session the
//! client ended itself whose echo never came), out-of-order or duplicated echoes,
//! and per backend (its `x-backend` header) the Close codes of server-ended sessions.
//! Loopback only; every loop is bounded by `--secs`.

use rand::RngExt;
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Default, Debug)]
struct Stats {
    sent: u64,
    echoed: u64,
    sessions: u64,
    clean: u64,
    abrupt: u64,
    server_ended: u64,
    connect_failures: u64,
    losses: u64,
    order_errors: u64,
    /// backend -> close code (0: no Close) -> sessions the server ended.
    ended_by: BTreeMap<String, BTreeMap<u16, u64>>,
    failures: Vec<String>,
}

struct Frame {
    opcode: u8,
    payload: Vec<u8>,
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Frame> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).await?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).await?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).await?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    if len > 1 << 20 {
        return Err(std::io::Error::other("frame too long for the soak"));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    Ok(Frame {
        opcode: h[0] & 0x0f,
        payload,
    })
}

fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key: [u8; 4] = rand::random();
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

struct Ctx {
    addr: SocketAddr,
    connector: TlsConnector,
    until: Instant,
    interval: Duration,
    abrupt: f64,
    stats: Mutex<Stats>,
}

/// One session; returns false when the client should stop.
#[expect(
    clippy::too_many_lines,
    reason = "a load tool: one session's script, step by step"
)]
async fn session(ctx: &Ctx, id: usize, n: u64) -> bool {
    let fail = |what: String| {
        let mut s = ctx.stats.lock().unwrap();
        s.connect_failures += 1;
        if s.failures.len() < 20 {
            s.failures.push(what);
        }
    };
    let tcp = match TcpStream::connect(ctx.addr).await {
        Ok(t) => t,
        Err(e) => {
            fail(format!("tcp: {e}"));
            return true;
        }
    };
    let _ = tcp.set_nodelay(true);
    let sni = ServerName::try_from("localhost").unwrap();
    let mut s = match ctx.connector.connect(sni, tcp).await {
        Ok(s) => s,
        Err(e) => {
            fail(format!("tls: {e}"));
            return true;
        }
    };
    let head = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if s.write_all(head.as_bytes()).await.is_err() {
        fail("write of the upgrade".into());
        return true;
    }
    let mut resp = Vec::new();
    let mut b = [0u8; 1];
    while !resp.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
            Ok(Ok(1)) => resp.push(b[0]),
            _ => {
                fail(format!(
                    "no 101: {:?}",
                    String::from_utf8_lossy(&resp).lines().next()
                ));
                return true;
            }
        }
    }
    let resp = String::from_utf8_lossy(&resp).into_owned();
    if !resp.starts_with("HTTP/1.1 101") {
        fail(format!("answer: {:?}", resp.lines().next()));
        return true;
    }
    let backend = resp
        .lines()
        .find_map(|l| l.strip_prefix("x-backend: "))
        .unwrap_or("?")
        .to_string();
    ctx.stats.lock().unwrap().sessions += 1;
    let (mut rd, mut wr) = tokio::io::split(s);
    let (lifetime, abrupt) = {
        let mut rng = rand::rng();
        (
            Duration::from_millis(rng.random_range(5_000..60_000)),
            rng.random_bool(ctx.abrupt),
        )
    };
    let end = (Instant::now() + lifetime).min(ctx.until);
    let (mut next_seq, mut expect) = (0u64, 0u64);
    // How the session ended: Some(code) by the server (0 = no Close), None by us.
    let mut server_end: Option<u16> = None;
    let mut tick = tokio::time::interval(ctx.interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() >= end {
                    break;
                }
                let msg = format!("c{id} s{n} m{next_seq} {}", "x".repeat(32));
                if wr.write_all(&frame(1, msg.as_bytes())).await.is_err() {
                    server_end = Some(0);
                    break;
                }
                next_seq += 1;
                ctx.stats.lock().unwrap().sent += 1;
            }
            f = read_frame(&mut rd) => match f {
                Ok(f) if f.opcode == 1 => {
                    let text = String::from_utf8_lossy(&f.payload).into_owned();
                    let want = format!("c{id} s{n} m{expect} ");
                    let mut st = ctx.stats.lock().unwrap();
                    if text.starts_with(&want) {
                        st.echoed += 1;
                        expect += 1;
                    } else {
                        st.order_errors += 1;
                        if st.failures.len() < 20 {
                            st.failures.push(format!("expected {want:?}, got {text:?}"));
                        }
                    }
                }
                Ok(f) if f.opcode == 8 => {
                    let code = if f.payload.len() >= 2 { u16::from_be_bytes([f.payload[0], f.payload[1]]) } else { 0 };
                    server_end = Some(code);
                    let _ = wr.write_all(&frame(8, &f.payload[..f.payload.len().min(2)])).await;
                    break;
                }
                Ok(_) => {} // pings (answered by nothing: keepalive is off here)
                Err(_) => { server_end = Some(0); break; }
            },
        }
    }
    match server_end {
        Some(code) => {
            let mut st = ctx.stats.lock().unwrap();
            st.server_ended += 1;
            *st.ended_by
                .entry(backend)
                .or_default()
                .entry(code)
                .or_insert(0) += 1;
        }
        None if abrupt => {
            // Drop the connection with no Close; what was in flight is not counted.
            ctx.stats.lock().unwrap().abrupt += 1;
        }
        None => {
            // A clean end: every echo must arrive before the server's Close.
            let _ = wr.write_all(&frame(8, &1000u16.to_be_bytes())).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            // Some(code): the server ended the session while its echoes drained
            // (its backend was killed: 1014); a loss only counts on a normal end.
            let mut cut: Option<u16> = None;
            while expect < next_seq {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, read_frame(&mut rd)).await {
                    Ok(Ok(f)) if f.opcode == 1 => {
                        let text = String::from_utf8_lossy(&f.payload).into_owned();
                        let want = format!("c{id} s{n} m{expect} ");
                        let mut st = ctx.stats.lock().unwrap();
                        if text.starts_with(&want) {
                            st.echoed += 1;
                            expect += 1;
                        } else {
                            st.order_errors += 1;
                        }
                    }
                    Ok(Ok(f)) if f.opcode == 8 => {
                        let code = if f.payload.len() >= 2 {
                            u16::from_be_bytes([f.payload[0], f.payload[1]])
                        } else {
                            0
                        };
                        if code == 1014 {
                            cut = Some(code);
                        }
                        break;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => {
                        cut = Some(0);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let mut st = ctx.stats.lock().unwrap();
            if let Some(code) = cut {
                st.server_ended += 1;
                *st.ended_by
                    .entry(backend)
                    .or_default()
                    .entry(code)
                    .or_insert(0) += 1;
                return Instant::now() < ctx.until;
            }
            st.clean += 1;
            st.losses += next_seq - expect;
            if next_seq > expect && st.failures.len() < 20 {
                st.failures.push(format!(
                    "c{id} s{n}: {} of {next_seq} echoes missing",
                    next_seq - expect
                ));
            }
        }
    }
    Instant::now() < ctx.until
}

#[tokio::main]
async fn main() {
    let mut addr: SocketAddr = "127.0.0.1:19843".parse().unwrap();
    let (mut clients, mut secs, mut interval_ms, mut abrupt) = (100usize, 30u64, 500u64, 0.1f64);
    let mut ca = concat!(env!("CARGO_MANIFEST_DIR"), "/certs-example/ca.pem").to_string();
    let mut it = std::env::args().skip(1);
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        match k.as_str() {
            "--addr" => addr = v.parse().expect("--addr"),
            "--clients" => clients = v.parse().expect("--clients"),
            "--secs" => secs = v.parse().expect("--secs"),
            "--interval-ms" => interval_ms = v.parse().expect("--interval-ms"),
            "--abrupt" => abrupt = v.parse().expect("--abrupt"),
            "--ca" => ca = v,
            _ => panic!("unknown option {k}"),
        }
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca).expect("CA file") {
        roots.add(c.expect("CA cert")).expect("CA cert");
    }
    let mut cfg = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let ctx = Arc::new(Ctx {
        addr,
        connector: TlsConnector::from(Arc::new(cfg)),
        until: Instant::now() + Duration::from_secs(secs),
        interval: Duration::from_millis(interval_ms),
        abrupt,
        stats: Mutex::default(),
    });
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for id in 0..clients {
        let ctx = ctx.clone();
        set.spawn(async move {
            // Spread the first connections over a second.
            tokio::time::sleep(Duration::from_millis((id as u64 * 1000) / clients as u64)).await;
            let mut n = 0;
            while session(&ctx, id, n).await {
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    let bound = Duration::from_secs(secs + 60);
    let _ = tokio::time::timeout(bound, async { while set.join_next().await.is_some() {} }).await;
    let st = ctx.stats.lock().unwrap();
    for f in &st.failures {
        eprintln!("soak: {f}");
    }
    let ended: Vec<String> = st
        .ended_by
        .iter()
        .map(|(b, codes)| {
            let c: Vec<String> = codes.iter().map(|(k, v)| format!("{k}x{v}")).collect();
            format!("{b}:{}", c.join("+"))
        })
        .collect();
    println!(
        "RESULT secs={:.0} clients={clients} sent={} echoed={} sessions={} clean={} abrupt={} server_ended={} connect_failures={} losses={} order_errors={} ended_by={}",
        started.elapsed().as_secs_f64(),
        st.sent,
        st.echoed,
        st.sessions,
        st.clean,
        st.abrupt,
        st.server_ended,
        st.connect_failures,
        st.losses,
        st.order_errors,
        if ended.is_empty() {
            "none".into()
        } else {
            ended.join(",")
        }
    );
}
