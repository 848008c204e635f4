//! Micro-benchmarks of the relay's hot paths, so that a regression shows without the
//! whole rig of benches/compare.sh:
//!
//! - `frames/scan`: frame header parsing and the RFC 6455 checks (`frame::parse_header`
//!   and `Checker`) over a 16 KiB buffer of mixed client frames (small and medium
//!   binary, text, fragmented messages, pings), as the relay walks its read buffer;
//! - `relay/round_trip`: one message through a real `relay::run` session over
//!   in-memory duplex pipes (tokio::io::duplex): client -> relay -> backend, then the
//!   backend's echo -> relay -> client, with the default `[limits]` on (frame and
//!   message size checks, the message rate off as in the benchmark config) and the
//!   session's metrics counted. No TLS, no sockets: the relay's own cost per round trip.
//! - `relay/pipelined`: the same session with 32 messages of 64 B each way at once,
//!   so that each read holds many complete frames: the relay's cost per frame.
//!
//! UTF-8 validation has its own bench (benches/utf8.rs).
//!
//! cargo bench --bench relay              (criterion; results in target/criterion)
//! cargo bench --bench relay -- --test    (CI: runs each benchmark once, checks it works)

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use wsgate::config::{Limits, SessionLimits};
use wsgate::relay::frame::{self, Checker, Extensions, Sender};
use wsgate::relay::stats::SessionStats;
use wsgate::relay::{End, RelayConfig, StopSignal};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame as a client sends it (masked).
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(&KEY);
    let mut p = payload.to_vec();
    frame::apply_mask(&mut p, KEY);
    f.extend_from_slice(&p);
    f
}

/// One frame as a backend sends it (unmasked).
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(n as u8);
    } else {
        f.push(126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

/// About 16 KiB (the relay's buffer) of mixed client frames.
fn mixed_frames() -> (Vec<u8>, usize) {
    let mut buf = Vec::new();
    let mut n = 0;
    while buf.len() < 16 * 1024 - 1200 {
        for f in [
            client_frame(true, frame::BINARY, &[0x5a; 64]),
            client_frame(true, frame::TEXT, "{\"op\":\"tick\",\"v\":42}".as_bytes()),
            client_frame(true, frame::BINARY, &[1; 300]),
            client_frame(false, frame::TEXT, b"first half, "),
            client_frame(true, frame::PING, b"p"),
            client_frame(true, frame::CONTINUATION, b"second half"),
            client_frame(true, frame::BINARY, &[2; 1000]),
        ] {
            buf.extend_from_slice(&f);
            n += 1;
        }
    }
    (buf, n)
}

/// Walks `buf` frame by frame as the relay does: header, checks, skip the payload.
fn scan(buf: &[u8]) -> usize {
    let mut checker = Checker::new(Sender::Client, Extensions::default());
    let (mut at, mut frames) = (0, 0);
    while at < buf.len() {
        let h = match frame::parse_header(&buf[at..]) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(v) => panic!("bench frames are valid: {}", v.reason()),
        };
        if let Err(v) = checker.check(&h) {
            panic!("bench frames pass the checks: {}", v.reason());
        }
        checker.advance(&h);
        at += h.len + h.payload_len as usize;
        frames += 1;
    }
    frames
}

fn frames(c: &mut Criterion) {
    let (buf, n) = mixed_frames();
    assert_eq!(scan(&buf), n, "the scan must see every frame");
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(
        BenchmarkId::new("scan", format!("{n}_frames_{}B", buf.len())),
        |b| b.iter(|| scan(black_box(&buf))),
    );
    g.finish();
}

/// A relay session between two in-memory pipes; returns the bench's ends
/// (client side, backend side).
fn session(rt: &tokio::runtime::Runtime) -> (DuplexStream, DuplexStream) {
    let (client_end, client_relay) = tokio::io::duplex(64 * 1024);
    let (backend_relay, backend_end) = tokio::io::duplex(64 * 1024);
    // The limits an operator gets by default (frame and message sizes checked),
    // without the message rate, as benches/compare.sh configures wsgate.
    let defaults = Limits {
        message_rate: 0.0,
        ..Limits::default()
    };
    let cfg = RelayConfig {
        buffer: 16 * 1024,
        close_timeout: Duration::from_secs(5),
        limits: SessionLimits::resolve(&defaults, None),
    };
    let stop: StopSignal = Box::pin(std::future::pending());
    let stats = Arc::new(SessionStats::default());
    rt.spawn(async move {
        wsgate::relay::run(
            End::fresh(client_relay),
            End::fresh(backend_relay),
            &cfg,
            Extensions::default(),
            stop,
            stats,
        )
        .await
    });
    (client_end, backend_end)
}

/// Benchmarks `up` (client frames) through a fresh session to the backend and `down`
/// (the backend's answer) back to the client, as one iteration.
fn echo_through(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    id: BenchmarkId,
    up: &[u8],
    down: &[u8],
) {
    let (mut client, mut backend) = session(rt);
    let (mut at_backend, mut at_client) = (vec![0; up.len()], vec![0; down.len()]);
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t0 = Instant::now();
                for _ in 0..iters {
                    client.write_all(up).await.expect("client write");
                    // The relay forwards client frames as they came (still masked).
                    backend
                        .read_exact(&mut at_backend)
                        .await
                        .expect("backend read");
                    backend.write_all(down).await.expect("backend write");
                    client
                        .read_exact(&mut at_client)
                        .await
                        .expect("client read");
                }
                let t = t0.elapsed();
                assert_eq!(at_backend, up, "the backend gets the client's frames");
                assert_eq!(at_client, down, "the client gets the backend's frames");
                t
            })
        })
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn round_trip(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("relay");
    for size in [64usize, 16 * 1024] {
        let up = client_frame(true, frame::BINARY, &vec![0xa5; size]);
        let down = server_frame(frame::BINARY, &vec![0x5a; size]);
        g.throughput(Throughput::Bytes(size as u64));
        let id = BenchmarkId::new("round_trip", format!("{size}B"));
        echo_through(&mut g, &rt, id, &up, &down);
    }
    g.finish();
}

/// `PIPELINED` messages of 64 B written by the client at once, echoed by the backend
/// at once: the relay sees many complete frames per read (as with 32 in flight in
/// benches/compare.sh (a)), so its per-frame cost (`scan`) dominates.
fn pipelined(c: &mut Criterion) {
    const PIPELINED: usize = 32;
    let rt = runtime();
    let up: Vec<u8> = (0..PIPELINED)
        .flat_map(|_| client_frame(true, frame::BINARY, &[0xa5; 64]))
        .collect();
    let down: Vec<u8> = (0..PIPELINED)
        .flat_map(|_| server_frame(frame::BINARY, &[0x5a; 64]))
        .collect();
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Elements(PIPELINED as u64));
    let id = BenchmarkId::new("pipelined", format!("{PIPELINED}x64B"));
    echo_through(&mut g, &rt, id, &up, &down);
    g.finish();
}

criterion_group!(benches, frames, round_trip, pipelined);
criterion_main!(benches);
