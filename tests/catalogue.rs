//! The bad-input catalogue (docs/bad-input.md): every row sent to one in-process
//! proxy in front of a real (tokio-tungstenite) echo backend, each checked for its
//! defined answer, each followed by a normal client that must still be served; after
//! the whole catalogue the process's file descriptors (/proc/self/fd) and memory are
//! back to their baseline.
mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const KEY: [u8; 4] = [0x0b, 0xad, 0xf0, 0x0d];

const GOOD_HEADERS: &str = "Host: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

fn head_with(line: &str, headers: &str) -> Vec<u8> {
    format!("{line}\r\n{headers}\r\n").into_bytes()
}

fn good_with(extra: &str) -> Vec<u8> {
    head_with("GET / HTTP/1.1", &format!("{GOOD_HEADERS}{extra}"))
}

fn replace(from: &str, to: &str) -> Vec<u8> {
    head_with("GET / HTTP/1.1", &GOOD_HEADERS.replace(from, to))
}

/// Sends `bytes` over TLS; the status of the answer, or None if the connection
/// closed without one.
async fn status_of(addr: SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut s = tls_connect(addr).await;
    // A peer that closes early may make the write fail: the answer still counts.
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match within("an answer or a close", s.read(&mut b)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|t| t.parse().ok())
}

/// A raw WebSocket session: the upgrade, then `frames` in one write; returns the
/// frames the client receives until EOF.
async fn ws_rows(addr: SocketAddr, frames: &[u8], one_byte_writes: bool) -> Vec<RawFrame> {
    let (mut s, resp) = raw_ws(addr, "/", "").await;
    assert_eq!(resp.status, 101);
    if one_byte_writes {
        for b in frames {
            s.write_all(&[*b]).await.unwrap();
            s.flush().await.unwrap();
        }
    } else {
        write_all(&mut s, frames).await;
    }
    // The client ends every row with a Close (where the row's frames did not
    // already end the session), so that the session ends by itself.
    let _ = s
        .write_all(&encode_frame(
            true,
            0,
            op::CLOSE,
            &1000u16.to_be_bytes(),
            Some(KEY),
        ))
        .await;
    let _ = s.flush().await;
    let mut out = Vec::new();
    while let Ok(Ok(f)) = tokio::time::timeout(DEADLINE, read_frame(&mut s)).await {
        out.push(f);
    }
    out
}

fn m(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(fin, 0, opcode, payload, Some(KEY))
}

fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    m(true, op::CLOSE, &p)
}

/// The frames end with a Close carrying `code`.
fn ends_with_close(frames: &[RawFrame], code: u16) -> bool {
    frames.last().and_then(RawFrame::close_code) == Some(code)
}

/// The texts echoed back, in order.
fn texts(frames: &[RawFrame]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f.opcode == op::TEXT)
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A normal client is served: upgrade, echo, close.
async fn still_serving(addr: SocketAddr, after: &str) {
    let (mut ws, _) = ws_connect(addr, "/").await;
    ws.send(Message::text("ok?")).await.unwrap();
    match within(after, ws.next()).await {
        Some(Ok(Message::Text(t))) if t.as_str() == "ok?" => {}
        other => panic!("after {after}: a normal client got {other:?}"),
    }
    ws.close(None).await.unwrap();
    while within("normal close", ws.next()).await.is_some() {}
}

#[expect(
    clippy::too_many_lines,
    reason = "a table: one row per bad input of docs/bad-input.md"
)]
async fn catalogue(addr: SocketAddr) {
    // --- Request line and framing, duplicate headers, smuggling shapes, values.
    let mut many = String::from(GOOD_HEADERS);
    for i in 0..10_000 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    let long_line = format!("GET /{} HTTP/1.1", "a".repeat(100 * 1024));
    let http_rows: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        (
            "malformed request line",
            b"GARBAGE\r\n\r\n".to_vec(),
            Some(400),
        ),
        (
            "request line without a version",
            head_with("GET /", GOOD_HEADERS),
            Some(400),
        ),
        (
            "lower-case method (another method)",
            head_with("get / HTTP/1.1", GOOD_HEADERS),
            Some(405),
        ),
        (
            "absolute-form target",
            head_with("GET https://localhost/ HTTP/1.1", GOOD_HEADERS),
            Some(101),
        ),
        (
            "bare-LF line endings",
            format!("GET / HTTP/1.1\n{}\n", GOOD_HEADERS.replace("\r\n", "\n")).into_bytes(),
            Some(101),
        ),
        (
            "NUL byte in a header value",
            good_with("X-Nul: a\0b\r\n"),
            Some(400),
        ),
        (
            "NUL byte in the target",
            head_with("GET /a\0b HTTP/1.1", GOOD_HEADERS),
            Some(400),
        ),
        (
            "100 KB request line",
            head_with(&long_line, GOOD_HEADERS),
            Some(431),
        ),
        (
            "10,000 headers",
            head_with("GET / HTTP/1.1", &many),
            Some(431),
        ),
        (
            "two Upgrade headers, one websocket",
            good_with("Upgrade: h2c\r\n"),
            Some(101),
        ),
        (
            "Upgrade without websocket",
            replace("Upgrade: websocket", "Upgrade: h2c"),
            Some(426),
        ),
        (
            "two Connection headers",
            good_with("Connection: keep-alive\r\n"),
            Some(101),
        ),
        (
            "two Sec-WebSocket-Key headers",
            good_with("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"),
            Some(400),
        ),
        (
            "two Sec-WebSocket-Version headers",
            good_with("Sec-WebSocket-Version: 13\r\n"),
            Some(426),
        ),
        (
            "Sec-WebSocket-Version: 13, 8",
            replace("Version: 13", "Version: 13, 8"),
            Some(426),
        ),
        (
            "two Host headers",
            good_with("Host: other.example\r\n"),
            Some(400),
        ),
        (
            "Content-Length on an upgrade",
            [good_with("Content-Length: 5\r\n"), b"hello".to_vec()].concat(),
            Some(400),
        ),
        (
            "Transfer-Encoding on an upgrade",
            [
                good_with("Transfer-Encoding: chunked\r\n"),
                b"0\r\n\r\n".to_vec(),
            ]
            .concat(),
            Some(400),
        ),
        (
            "Content-Length and Transfer-Encoding",
            good_with("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"),
            Some(400),
        ),
        ("obs-fold", good_with("X-Folded: a\r\n  b\r\n"), Some(400)),
        (
            "obs-text in a header value",
            good_with("X-Note: caf\u{e9}\r\n")
                .into_iter()
                .map(|b| if b == 0xc3 { 0xe9 } else { b })
                .filter(|b| *b != 0xa9)
                .collect(),
            Some(101),
        ),
        (
            "invalid UTF-8 in Host",
            replace("Host: localhost", "Host: local\u{ff}host")
                .into_iter()
                .filter(|b| *b != 0xc3)
                .collect(),
            Some(400),
        ),
        (
            "key valid base64 of 5 bytes",
            replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
            Some(400),
        ),
        (
            "key valid base64 of 18 bytes",
            replace("dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAAAA"),
            Some(400),
        ),
        (
            "key base64 of 16 bytes, not canonical",
            replace("dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAB=="),
            Some(400),
        ),
        (
            "key not base64",
            replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!!!!!!!!!!!!!!!!!!!!=="),
            Some(400),
        ),
        (
            "HTTP/2 preface on the HTTP/1.1 listener",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            Some(505),
        ),
    ];
    let mut wrong = Vec::new();
    for (what, bytes, want) in http_rows {
        let got = status_of(addr, &bytes).await;
        if got != want {
            wrong.push(format!("{what}: got {got:?}, want {want:?}"));
        }
        still_serving(addr, what).await;
    }
    assert!(
        wrong.is_empty(),
        "rows with another answer:\n{}",
        wrong.join("\n")
    );

    // --- Bytes pipelined after the upgrade head are WebSocket bytes.
    let mut s = tls_connect(addr).await;
    let mut out = good_with("");
    out.extend_from_slice(&m(true, op::TEXT, b"pipelined"));
    write_all(&mut s, &out).await;
    assert_eq!(read_response(&mut s).await.status, 101);
    let f = within("pipelined echo", read_frame(&mut s)).await.unwrap();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (op::TEXT, &b"pipelined"[..])
    );
    drop(s);
    let mut s = tls_connect(addr).await;
    let mut out = good_with("");
    out.extend_from_slice(&good_with("")); // a second request: not a frame at all
    write_all(&mut s, &out).await;
    assert_eq!(read_response(&mut s).await.status, 101);
    let frames = read_frames_to_eof(&mut s).await;
    assert!(
        ends_with_close(&frames, 1002),
        "a pipelined request: {frames:?}"
    );
    drop(s);
    still_serving(addr, "pipelined bytes").await;

    // --- Frame lengths and frame rules.
    let mut top_bit = vec![0x82, 0xff];
    top_bit.extend_from_slice(&(1u64 << 63).to_be_bytes());
    top_bit.extend_from_slice(&KEY);
    let mut huge = vec![0x82, 0xff];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&KEY);
    let ws_rows_table: Vec<(&str, Vec<u8>, bool, u16)> = vec![
        ("64-bit length with the top bit set", top_bit, false, 1002),
        (
            "2^62-byte frame (refused from its header)",
            huge,
            false,
            1009,
        ),
        (
            "Close with a 1-byte payload",
            m(true, op::CLOSE, &[3]),
            false,
            1002,
        ),
        ("Close code 999", close(999, b""), false, 1002),
        ("Close code 1005", close(1005, b""), false, 1002),
        ("Close code 1006", close(1006, b""), false, 1002),
        ("Close code 1015", close(1015, b""), false, 1002),
        ("Close code 5000", close(5000, b""), false, 1002),
        (
            "Close reason not UTF-8",
            close(1000, b"bye \xff"),
            false,
            1007,
        ),
        (
            "text not UTF-8",
            m(true, op::TEXT, b"\xc0\xaf"),
            false,
            1007,
        ),
    ];
    for (what, bytes, one_byte, code) in ws_rows_table {
        let frames = ws_rows(addr, &bytes, one_byte).await;
        assert!(ends_with_close(&frames, code), "row: {what}: {frames:?}");
        still_serving(addr, what).await;
    }
    // Control frames between fragments are legal and pass (the echo backend answers
    // the ping and echoes the whole message).
    let fragmented = [
        m(false, op::TEXT, b"frag"),
        m(true, op::PING, b"ping"),
        m(true, op::CONT, b"mented"),
    ]
    .concat();
    let frames = ws_rows(addr, &fragmented, false).await;
    assert_eq!(texts(&frames), ["fragmented"], "{frames:?}");
    assert!(
        frames
            .iter()
            .any(|f| f.opcode == op::PONG && f.payload == b"ping")
    );
    assert!(ends_with_close(&frames, 1000), "{frames:?}");
    // Frames split into 1-byte writes pass.
    let frames = ws_rows(
        addr,
        &[
            m(true, op::TEXT, "één".as_bytes()),
            m(false, op::TEXT, b"a"),
            m(true, op::CONT, b"b"),
        ]
        .concat(),
        true,
    )
    .await;
    assert_eq!(texts(&frames), ["één", "ab"], "{frames:?}");
    still_serving(addr, "frame rules").await;

    // --- Other protocols on the listener: TLS garbage, plain HTTP on the TLS port.
    for (what, bytes) in [
        (
            "TLS garbage",
            vec![0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0xff, 0xfe],
        ),
        ("plain HTTP on the TLS listener", good_with("")),
        (
            "random bytes",
            (0..600u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
    ] {
        let mut t = TcpStream::connect(addr).await.unwrap();
        let _ = t.write_all(&bytes).await;
        let mut sink = Vec::new();
        let r = within(what, t.read_to_end(&mut sink)).await;
        // The TLS layer answers with an alert (or nothing) and closes (a reset
        // counts as closed too).
        drop(r);
        assert!(
            sink.len() <= 7 * 2,
            "{what}: at most a TLS alert came back: {sink:x?}"
        );
        still_serving(addr, what).await;
    }
}

#[tokio::test]
async fn every_row_gets_its_answer_and_nothing_leaks() {
    let e = echo("e").await;
    let p = start_proxy(&format!(
        r#"[server]
header_read_timeout = "2s"

{}"#,
        pool_and_route("p", "round_robin", &[(e.addr, 1)])
    ))
    .await;
    // Warm up (TLS, allocator, tokio's worker state), then take the baseline.
    for _ in 0..2 {
        catalogue(p.addr).await;
    }
    eventually(DEADLINE, "warm-up connections closed", || {
        p.running.open_connections() == 0
    })
    .await;
    let (fds0, rss0) = (open_fds(), rss_kib());
    for _ in 0..3 {
        catalogue(p.addr).await;
    }
    eventually(DEADLINE, "every connection closed", || {
        p.running.open_connections() == 0
    })
    .await;
    eventually(DEADLINE, "file descriptors back to the baseline", || {
        open_fds() <= fds0
    })
    .await;
    let rss = rss_kib();
    eprintln!(
        "catalogue: fds {fds0} -> {}, RSS {rss0} -> {rss} KiB",
        open_fds()
    );
    assert!(
        rss <= rss0 + 8 * 1024,
        "memory grew over 3 runs of the catalogue: {rss0} -> {rss} KiB"
    );
}
