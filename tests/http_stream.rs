//! 100 MiB request and response bodies through the real binary, each way over real
//! TLS, in bounded memory: the proxy's peak resident set (VmHWM) grows by a few MiB,
//! not by the body. Bodies are generated and hashed on the fly on both ends, so
//! neither the test client nor the backend holds them either.
mod common;
use common::bin::{Bin, bin_config};
use common::http::*;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

const SIZE: u64 = 100 << 20;

/// A `/proc/PID/status` field, in bytes.
fn status_kb(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Reads a chunked body, hashing it.
async fn hash_chunked<S: AsyncRead + Unpin>(s: &mut S) -> Digest {
    let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, s);
    let mut digest = Digest::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut line = String::new();
        use tokio::io::AsyncBufReadExt;
        within("chunk size", reader.read_line(&mut line))
            .await
            .unwrap();
        let n = u64::from_str_radix(line.trim_end().split(';').next().unwrap(), 16).unwrap();
        if n == 0 {
            let mut end = String::new();
            within("last CRLF", reader.read_line(&mut end))
                .await
                .unwrap();
            return digest;
        }
        let mut left = n;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            within("chunk", reader.read_exact(&mut buf[..k]))
                .await
                .unwrap();
            digest.update(&buf[..k]);
            left -= k as u64;
        }
        let mut crlf = [0u8; 2];
        within("chunk CRLF", reader.read_exact(&mut crlf))
            .await
            .unwrap();
        assert_eq!(&crlf, b"\r\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: both directions and the memory samples taken meanwhile"
)]
async fn hundred_mib_each_way_in_bounded_memory() {
    let backend = HttpBackend::spawn("b").await;
    let mut bin = Bin::start(
        "http-stream",
        &bin_config(
            0,
            &http_pool(
                "p",
                "round_robin",
                &[backend.addr],
                "",
                "max_request_body_bytes = 0",
            ),
        ),
    )
    .await;
    let addr = bin.addr();
    let pid = bin.child.id();
    // Warm up both directions (TLS, buffers, allocator), then take the baseline.
    let mut s = tls_connect(addr).await;
    write_all(
        &mut s,
        b"POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\nwarm",
    )
    .await;
    assert_eq!(read_http(&mut s, false).await.status, 200);
    write_all(
        &mut s,
        b"GET /big?n=100000 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(read_http(&mut s, false).await.status, 200);
    let base = status_kb(pid, "VmRSS:");

    // Up: 100 MiB chunked, in 64 KiB chunks, hashed as written.
    let t0 = Instant::now();
    write_all(
        &mut s,
        b"POST /len HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    let mut digest = Digest::default();
    let mut sent = 0u64;
    let mut chunk = Vec::with_capacity(70 * 1024);
    let mut data = vec![7u8; 64 * 1024];
    while sent < SIZE {
        let n = (SIZE - sent).min(64 * 1024);
        chunk.clear();
        chunk.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        // Each chunk starts with its offset: a lost, doubled or reordered chunk shows.
        data[..8].copy_from_slice(&sent.to_le_bytes());
        let data = &data[..n as usize];
        digest.update(data);
        chunk.extend_from_slice(data);
        chunk.extend_from_slice(b"\r\n");
        within_for(Duration::from_secs(60), "upload", s.write_all(&chunk))
            .await
            .unwrap();
        sent += n;
    }
    write_all(&mut s, b"0\r\n\r\n").await;
    let r = within_for(
        Duration::from_secs(60),
        "upload answer",
        read_http(&mut s, false),
    )
    .await;
    assert_eq!(r.body, digest.answer());
    assert_eq!(digest.len(), SIZE);
    let up = t0.elapsed();

    // Down: 100 MiB from the backend (no Content-Length: chunked to the client).
    let t0 = Instant::now();
    write_all(
        &mut s,
        format!("GET /big?n={SIZE} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
    .await;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        within("head", s.read_exact(&mut b)).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200") && head.contains("transfer-encoding: chunked"),
        "{head}"
    );
    let got = within_for(Duration::from_secs(60), "download", hash_chunked(&mut s)).await;
    let down = t0.elapsed();
    let mut want = Digest::default();
    let block = block();
    while want.len() < SIZE {
        want.update(&block[..(SIZE - want.len()).min(BLOCK as u64) as usize]);
    }
    assert_eq!((got.len(), got.finish()), (SIZE, want.finish()));

    let peak = status_kb(pid, "VmHWM:");
    let grew = peak.saturating_sub(base);
    eprintln!(
        "100 MiB up in {up:?}, down in {down:?}; proxy RSS {} MiB before, peak {} MiB (+{} KiB)",
        base >> 20,
        peak >> 20,
        grew >> 10
    );
    assert!(
        grew < 16 << 20,
        "the proxy's peak RSS grew by {} KiB",
        grew >> 10
    );
    // The connection is still usable for another request.
    write_all(&mut s, b"GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(read_http(&mut s, false).await.body, "b /after");
    bin.signal(libc::SIGTERM);
    bin.exit_within(DEADLINE).await;
}
