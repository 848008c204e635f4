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

mod args;
mod client;
mod echo;
mod handshake;
mod idle;
mod procstat;
mod rate;
mod report;

use args::{Mode, parse_args};
use client::Client;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

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
                Mode::Echo => echo::run_echo(&a, client.clone()).await,
                Mode::Idle => idle::run_idle(&a, client.clone()).await,
                Mode::Handshake => handshake::run_handshake(&a, client.clone()).await,
                Mode::Rate => rate::run_rate(&a, client.clone()).await,
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
