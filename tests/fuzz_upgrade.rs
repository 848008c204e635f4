//! Property-based fuzzing of the upgrade request: arbitrary request-head bytes go
//! through hyper's HTTP/1.1 server (configured as listen.rs configures it) and
//! `handshake::head_size` + `UpgradeRequest::parse` (the real code), which answer
//! 101 or the refusal's status. A reference check written here from RFC 6455
//! section 4.2.1 and RFC 9112 (its own head parser and base64 decoder) decides which
//! heads are acceptable. Invariants: nothing panics, the connection always ends
//! with an answer or a close, and a 101 comes only for a head the reference accepts.
//!
//! `FUZZ_SECS=600 cargo test --release --test fuzz_upgrade -- --nocapture` for a long run.
mod common;
use common::fuzz::fuzz;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::convert::Infallible;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsgate::http::handshake::{UpgradeRequest, head_size};

const MAX_HEADER_BYTES: usize = 8192;

/// The status wsgate's code answers `head` with (0: the connection closed without
/// an answer), through hyper on an in-memory pipe, in virtual time.
fn answer(head: &[u8]) -> Result<u16, TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let svc = service_fn(|req| async move {
            let status = if head_size(&req) > MAX_HEADER_BYTES {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            } else {
                match UpgradeRequest::parse(&req) {
                    Ok(_) => StatusCode::SWITCHING_PROTOCOLS,
                    Err(r) => r.status(),
                }
            };
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = status;
            if status == StatusCode::SWITCHING_PROTOCOLS {
                let h = resp.headers_mut();
                h.insert("upgrade", "websocket".parse().unwrap());
                h.insert("connection", "upgrade".parse().unwrap());
            }
            Ok::<_, Infallible>(resp)
        });
        let conn = http1::Builder::new()
            .max_header_size(MAX_HEADER_BYTES * 2)
            .header_read_timeout(None)
            .serve_connection(TokioIo::new(server), svc)
            .with_upgrades();
        let server = tokio::spawn(conn);
        client.write_all(head).await.ok();
        // Read an answer's head; if hyper waits for more bytes (an incomplete head),
        // end the request side (virtual time makes the wait instant) and read on.
        let mut out = Vec::new();
        let head_done = |o: &[u8]| o.windows(4).any(|w| w == b"\r\n\r\n");
        let mut buf = [0u8; 4096];
        let mut ended = false;
        loop {
            match tokio::time::timeout(Duration::from_secs(60), client.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    out.extend_from_slice(&buf[..n]);
                    if head_done(&out) {
                        break;
                    }
                }
                Err(_) if !ended => {
                    ended = true;
                    client.shutdown().await.ok();
                }
                Err(_) => return Err(TestCaseError::fail("no answer and no close")),
            }
        }
        server.abort();
        let status = std::str::from_utf8(&out[..out.len().min(12)])
            .ok()
            .and_then(|s| s.strip_prefix("HTTP/1.1 "))
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(status)
    })
}

// ------------------------------------------------------------------ the reference

fn b64_16(v: &str) -> bool {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = v.as_bytes();
    if !b.len().is_multiple_of(4) {
        return false;
    }
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = 0usize;
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 || b[..b.len() - pad].contains(&b'=') {
        return false;
    }
    for &c in &b[..b.len() - pad] {
        let Some(i) = A.iter().position(|&a| a == c) else {
            return false;
        };
        bits = (bits << 6) | i as u32;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out += 1;
            bits &= (1 << nbits) - 1;
        }
    }
    bits == 0 && out == 16
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// RFC 6455 4.2.1 on a head parsed from the raw bytes (RFC 9112: CRLF or a bare LF
/// ends a line; no obs-fold; header names are tokens).
fn reference_accepts(raw: &[u8]) -> bool {
    let text = match std::str::from_utf8(raw) {
        Ok(t) => t.to_string(),
        // Header values may be obs-text; none of the checked ones can be.
        Err(_) => String::from_utf8_lossy(raw).into_owned(),
    };
    // The head ends at the first empty line (each line ended by CRLF or a bare LF).
    let all_lines: Vec<&str> = text.split('\n').collect();
    let Some(end) = all_lines
        .iter()
        .take(all_lines.len().saturating_sub(1)) // the last piece has no line end
        .position(|l| l.is_empty() || *l == "\r")
    else {
        return false;
    };
    let mut lines = all_lines[..end]
        .iter()
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    let Some(start) = lines.next() else {
        return false;
    };
    let parts: Vec<&str> = start.split(' ').collect();
    if parts.len() != 3 || parts[0] != "GET" || parts[2] != "HTTP/1.1" {
        return false;
    }
    let target = parts[1];
    if target.is_empty() || target.bytes().any(|c| c <= b' ' || c == 0x7f) {
        return false;
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in lines {
        if l.starts_with(' ') || l.starts_with('\t') {
            return false; // obs-fold
        }
        let Some((name, value)) = l.split_once(':') else {
            return false;
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return false;
        }
        if value.bytes().any(|c| c == 0 || c == b'\r' || c == b'\n') {
            return false;
        }
        let value = value.trim_matches([' ', '\t']);
        headers.push((name.to_ascii_lowercase(), value.to_string()));
    }
    let all = |n: &'static str| {
        headers
            .iter()
            .filter(move |(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let one = |n: &'static str| {
        let v: Vec<&str> = all(n).collect();
        (v.len() == 1).then(|| v[0])
    };
    let has_token = |n: &'static str, t: &str| {
        all(n)
            .flat_map(|v| v.split(','))
            .any(|x| x.trim_matches([' ', '\t']).eq_ignore_ascii_case(t))
    };
    one("host").is_some_and(|h| !h.is_empty())
        && has_token("upgrade", "websocket")
        && has_token("connection", "upgrade")
        && one("sec-websocket-key").is_some_and(b64_16)
        && one("sec-websocket-version") == Some("13")
        && all("transfer-encoding").next().is_none()
        && all("content-length").all(|v| v == "0")
}

// ------------------------------------------------------------------ generators

fn header() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("dGhlIHNhbXBsZSBub25jZQ==".to_string()),
        Just("AAAAAAAAAAAAAAAAAAAAAA==".to_string()),
        Just("dGhlIHNhbXBsZSBub25jZQ".to_string()),
        Just("c2hvcnQ=".to_string()), // valid base64, 5 bytes
        Just("AAAAAAAAAAAAAAAAAAAAAAAA".to_string()), // valid base64, 18 bytes
        Just("AAAAAAAAAAAAAAAAAAAAAB==".to_string()), // non-zero trailing bits
        "[A-Za-z0-9+/=]{0,30}",
    ];
    prop_oneof![
        4 => Just("Host: example.com".to_string()),
        1 => "Host:[ -~]{0,20}",
        4 => Just("Upgrade: websocket".to_string()),
        1 => prop_oneof![Just("Upgrade: WebSocket, h2c"), Just("Upgrade: h2c"), Just("upgrade:websocket")].prop_map(String::from),
        4 => Just("Connection: Upgrade".to_string()),
        1 => prop_oneof![Just("Connection: keep-alive, upgrade"), Just("Connection: close"), Just("Connection: upgrade\u{1}")].prop_map(String::from),
        4 => key.prop_map(|k| format!("Sec-WebSocket-Key: {k}")),
        4 => Just("Sec-WebSocket-Version: 13".to_string()),
        1 => prop_oneof![Just("Sec-WebSocket-Version: 8"), Just("Sec-WebSocket-Version: 13, 8"), Just("Sec-WebSocket-Version:  13 ")].prop_map(String::from),
        1 => prop_oneof![Just("Content-Length: 0"), Just("Content-Length: 5"), Just("Transfer-Encoding: chunked"), Just("Content-Length: 0, 0")].prop_map(String::from),
        1 => Just("Sec-WebSocket-Protocol: chat, superchat".to_string()),
        1 => Just("Origin: https://example.com".to_string()),
        1 => Just(" folded continuation".to_string()),
        1 => Just("X-Obs: caf\u{e9}".to_string()),
        1 => "[!-~&&[^:]]{1,12}: [ -~]{0,30}",
        1 => "\\PC{0,30}",
    ]
}

fn head() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        8 => Just("GET /chat HTTP/1.1".to_string()),
        1 => Just("GET http://example.com/chat HTTP/1.1".to_string()),
        1 => Just("POST /chat HTTP/1.1".to_string()),
        1 => Just("GET /chat HTTP/1.0".to_string()),
        1 => Just("GET  /chat HTTP/1.1".to_string()),
        1 => Just("get /chat HTTP/1.1".to_string()),
        1 => Just("PRI * HTTP/2.0".to_string()),
        1 => "[ -~]{0,40}",
    ];
    let eol = prop_oneof![6 => Just("\r\n"), 1 => Just("\n"), 1 => Just("\r")];
    let mutation = prop_oneof![
        6 => Just(None),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(Some),
    ];
    let base = [
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];
    (
        line,
        proptest::collection::vec(prop::bool::weighted(0.9), 5),
        proptest::collection::vec((header(), any::<prop::sample::Index>()), 0..5),
        eol,
        mutation,
        prop::bool::weighted(0.05),
        proptest::collection::vec(any::<u8>(), 0..200),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            move |(line, keep, extra, eol, mutation, random, bytes, cut)| {
                if random {
                    return bytes;
                }
                // A valid head, less some of its headers, plus others anywhere.
                let mut headers: Vec<String> = base
                    .iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(h, _)| h.to_string())
                    .collect();
                for (h, at) in extra {
                    let i = at.index(headers.len() + 1);
                    headers.insert(i, h);
                }
                let mut s = line;
                for h in headers {
                    s.push_str(eol);
                    s.push_str(&h);
                }
                s.push_str(eol);
                s.push_str(eol);
                let mut b = s.into_bytes();
                if let Some((i, x)) = mutation {
                    let i = i.index(b.len());
                    b[i] = x;
                }
                if cut {
                    b.truncate(b.len() / 2);
                }
                b
            },
        )
}

#[test]
fn a_101_only_for_a_head_the_reference_accepts() {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    static SWITCHED: AtomicUsize = AtomicUsize::new(0);
    static CASES: AtomicUsize = AtomicUsize::new(0);
    fuzz("upgrade", 300, head(), |head| {
        let status = answer(&head)?;
        CASES.fetch_add(1, Relaxed);
        if status == 101 {
            SWITCHED.fetch_add(1, Relaxed);
            prop_assert!(
                reference_accepts(&head),
                "101 for a head the reference refuses: {:?}",
                String::from_utf8_lossy(&head)
            );
        }
        Ok(())
    });
    eprintln!(
        "upgrade: {} of {} heads (with shrinking) got a 101",
        SWITCHED.load(Relaxed),
        CASES.load(Relaxed)
    );
}

/// The harness and the reference agree on heads whose answer is known.
#[test]
fn harness_sanity() {
    let good = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert!(reference_accepts(good));
    assert_eq!(answer(good).unwrap(), 101);
    let bad = String::from_utf8_lossy(good).replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
    assert!(!reference_accepts(bad.as_bytes()));
    assert_eq!(answer(bad.as_bytes()).unwrap(), 400);
    assert!(b64_16("AAAAAAAAAAAAAAAAAAAAAA=="));
    assert!(!b64_16("AAAAAAAAAAAAAAAAAAAAAB=="));
}
