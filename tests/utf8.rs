//! UTF-8 at the gateway: text messages are checked as they pass, in both
//! directions, across frames, reads and code points split between frames; a
//! violation gets the offender 1007 and the other side 1001 (or 1014 toward the
//! client); compressed (RSV1) messages and directions turned off pass untouched;
//! and what either side sent before a violation arrives before the Close.
mod common;
use common::op::{BINARY, CLOSE, CONT, PING, TEXT};
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn config(backend: std::net::SocketAddr, limits: &str) -> String {
    let pool = pool_and_route("p", "round_robin", &[(backend, 1)]);
    config_text(&format!(
        r#"[server]
close_timeout = "60s"

[limits]
exempt = ["127.0.0.0/8"]
{limits}

{pool}"#
    ))
}

async fn session(limits: &'static str) -> RawSession {
    RawSession::start(move |b| config(b, limits)).await
}

fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(fin, 0, opcode, payload, Some(KEY))
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// The client sends `ok` then `bad`: the backend gets exactly `ok`, a masked 1001
/// and EOF; it answers with its Close; the client gets 1007 and EOF.
async fn client_sends_invalid(what: &str, ok: Vec<u8>, bad: Vec<u8>) {
    let mut t = session("").await;
    write_all(&mut t.client, &[ok.clone(), bad].concat()).await;
    let at_backend = bytes_to_eof("backend EOF", &mut t.backend).await;
    assert!(
        at_backend.starts_with(&ok),
        "{what}: the valid frames before it pass"
    );
    let rest = frames_of(&at_backend[ok.len()..]).await;
    assert_eq!(rest.len(), 1, "{what}: backend got {rest:?} after them");
    assert_close(&rest[0], 1001, true, what);
    let answer = encode_frame(true, 0, CLOSE, &close_payload(1001, b""), None);
    write_all(&mut t.backend, &answer).await;
    let at_client = frames_of(&bytes_to_eof("client EOF", &mut t.client).await).await;
    assert_eq!(at_client.len(), 1, "{what}: client got {at_client:?}");
    assert_close(&at_client[0], 1007, false, what);
    drop(t.backend);
    within("session ends", t.proxy.running.wait_sessions_done()).await;
}

#[tokio::test]
async fn invalid_utf8_from_the_client_gets_1007_and_the_backend_1001() {
    let hello = masked(true, TEXT, "héllo".as_bytes());
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("a bad byte", vec![], masked(true, TEXT, b"ab\xffcd")),
        (
            "a lone continuation byte",
            vec![],
            masked(true, TEXT, b"\x80"),
        ),
        ("overlong '/'", vec![], masked(true, TEXT, b"\xc0\xaf")),
        (
            "overlong 3-byte",
            vec![],
            masked(true, TEXT, b"\xe0\x80\xaf"),
        ),
        ("a surrogate", vec![], masked(true, TEXT, b"\xed\xa0\x80")),
        (
            "above U+10FFFF",
            vec![],
            masked(true, TEXT, b"\xf4\x90\x80\x80"),
        ),
        (
            "after a valid message",
            hello.clone(),
            masked(true, TEXT, b"\xfe"),
        ),
        (
            "split across fragments, bad in the second",
            masked(false, TEXT, b"ok \xe2\x82"),
            masked(true, CONT, b"\x28"),
        ),
        (
            "a message ending inside a code point",
            masked(false, TEXT, b"euro \xe2"),
            masked(true, CONT, b"\x82"),
        ),
        (
            "bad in the third fragment, after a ping",
            [
                masked(false, TEXT, b"one "),
                masked(true, PING, b"p"),
                masked(false, CONT, b"two "),
            ]
            .concat(),
            masked(true, CONT, b"thr\xc3ee"),
        ),
        (
            "a close reason",
            hello,
            masked(true, CLOSE, &close_payload(1000, b"bye \xff")),
        ),
    ];
    for (what, ok, bad) in cases {
        client_sends_invalid(what, ok, bad).await;
    }
}

#[tokio::test]
async fn valid_text_split_anywhere_passes_unchanged() {
    let mut t = session("").await;
    let text = "zoë ✓ 日本 🦀 ".repeat(50).into_bytes();
    // Fragments cut inside code points, each frame written in two pieces.
    let mut sent = Vec::new();
    let cuts = [0, 3, 7, 8, 13, 200, 201, 202, text.len()];
    for w in cuts.windows(2) {
        let op = if w[0] == 0 { TEXT } else { CONT };
        let f = masked(w[1] == text.len(), op, &text[w[0]..w[1]]);
        let half = f.len() / 2;
        t.client.write_all(&f[..half]).await.unwrap();
        t.client.flush().await.unwrap();
        t.client.write_all(&f[half..]).await.unwrap();
        t.client.flush().await.unwrap();
        sent.extend_from_slice(&f);
    }
    let mut got = vec![0u8; sent.len()];
    within("fragments at the backend", t.backend.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, sent, "forwarded byte for byte");
    // The same text one byte per write, backend to client.
    let down = encode_frame(true, 0, TEXT, &text, None);
    for b in &down {
        t.backend.write_all(&[*b]).await.unwrap();
    }
    let mut got = vec![0u8; down.len()];
    within("text at the client", t.client.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, down);
}

#[tokio::test]
async fn invalid_utf8_from_the_backend_gets_1007_and_the_client_1014() {
    for (what, bad) in [
        (
            "a text frame",
            encode_frame(true, 0, TEXT, b"ok\xed\xbf\xbf", None),
        ),
        (
            "a close reason",
            encode_frame(true, 0, CLOSE, &close_payload(1000, b"\xc3"), None),
        ),
    ] {
        let mut t = session("").await;
        let fine = encode_frame(true, 0, TEXT, b"first", None);
        write_all(&mut t.backend, &[fine.clone(), bad].concat()).await;
        let at_client = bytes_to_eof("client EOF", &mut t.client).await;
        assert!(
            at_client.starts_with(&fine),
            "{what}: the valid frame first"
        );
        let rest = frames_of(&at_client[fine.len()..]).await;
        assert_eq!(rest.len(), 1, "{what}: client got {rest:?}");
        assert_close(&rest[0], 1014, false, what);
        // The client answers; the backend gets its 1007 in place of that answer.
        let answer = masked(true, CLOSE, &close_payload(1014, b""));
        write_all(&mut t.client, &answer).await;
        let at_backend = frames_of(&bytes_to_eof("backend EOF", &mut t.backend).await).await;
        assert_eq!(at_backend.len(), 1, "{what}: backend got {at_backend:?}");
        assert_close(&at_backend[0], 1007, true, what);
    }
}

/// A huge text message is stopped at its first invalid byte: the client has not
/// finished sending it when its 1007 comes (after the backend's connection, which
/// had the first part of the frame, is closed without a Close inside the frame).
#[tokio::test]
async fn a_huge_invalid_message_is_stopped_at_the_first_bad_byte() {
    let mut t = session("").await;
    let mut payload = vec![b'a'; 8 << 20];
    payload[100_000] = 0xff;
    let whole = masked(true, TEXT, &payload);
    let (mut rd, mut wr) = tokio::io::split(t.client);
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        for chunk in whole.chunks(16 * 1024) {
            if wr.write_all(chunk).await.is_err() || wr.flush().await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let at_backend = bytes_to_eof("backend EOF", &mut t.backend).await;
    assert!(
        at_backend.len() < 100_000 + 14,
        "only the valid start of the frame (never the bad byte) reaches the backend: {} bytes",
        at_backend.len()
    );
    drop(t.backend);
    let f = within("1007", read_frame(&mut rd)).await.unwrap();
    assert_close(&f, 1007, false, "at the client");
    let sent = within("the writer stops", writer).await.unwrap();
    assert!(
        sent < 8 << 20,
        "the client was stopped before sending the whole message ({sent} bytes sent)"
    );
}

#[tokio::test]
async fn turned_off_per_direction_invalid_text_passes() {
    let mut t = session("validate_utf8 = false").await;
    let up = masked(true, TEXT, b"\xff\xfe raw");
    write_all(&mut t.client, &up).await;
    let mut got = vec![0u8; up.len()];
    within("client text at the backend", t.backend.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, up);
    // The backend direction is still checked.
    write_all(&mut t.backend, &encode_frame(true, 0, TEXT, b"\xff", None)).await;
    let f = within("1014", read_frame(&mut t.client)).await.unwrap();
    assert_close(&f, 1014, false, "backend direction still on");

    let mut t = session("backend_validate_utf8 = false").await;
    let down = encode_frame(true, 0, TEXT, b"\xc0\xaf", None);
    write_all(&mut t.backend, &down).await;
    let mut got = vec![0u8; down.len()];
    within("backend text at the client", t.client.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, down);
    // Binary messages are never checked, whatever the setting.
    let bin = masked(true, BINARY, b"\xff");
    write_all(&mut t.client, &bin).await;
    let mut got = vec![0u8; bin.len()];
    within("binary at the backend", t.backend.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, bin);
}

#[tokio::test]
async fn compressed_text_is_not_checked() {
    const DEFLATE: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let b = raw_backend(move |head, mut s| {
        let tx = tx.clone();
        async move {
            write_all(&mut s, switching(&head, DEFLATE).as_bytes()).await;
            let _ = tx.send(s);
        }
    })
    .await;
    let p = start_proxy_raw(&config(b.addr, "")).await;
    let (mut c, resp) = raw_ws(p.addr, "/", DEFLATE).await;
    assert_eq!(resp.status, 101);
    let mut s = within("backend", rx.recv()).await.unwrap();
    // Deflated bytes are not UTF-8; the message is two frames, RSV1 on the first.
    let up = [
        encode_frame(false, 0b100, TEXT, b"\xf2\x48\xcd", Some(KEY)),
        encode_frame(true, 0, CONT, b"\xc9\xc9\x07\x00", Some(KEY)),
    ]
    .concat();
    write_all(&mut c, &up).await;
    let mut got = vec![0u8; up.len()];
    within("compressed text at the backend", s.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, up);
    // An uncompressed text message on the same session is still checked.
    write_all(&mut c, &masked(true, TEXT, b"\xff")).await;
    let f = within("1001 at the backend", read_frame(&mut s))
        .await
        .unwrap();
    assert_close(&f, 1001, true, "backend");
}

/// The issue's test: a valid message and a bad frame in the same write, through a
/// real (tokio-tungstenite) echo backend. The echo arrives first, then the Close.
#[tokio::test]
async fn the_echo_of_a_valid_message_arrives_before_the_close() {
    let e = echo("e1").await;
    let p = start_proxy_raw(&config(e.addr, "")).await;
    for (bad, code) in [
        (masked(true, TEXT, b"caf\xc3"), 1007),
        (masked(true, 3, b"reserved opcode"), 1002),
        (masked(true, PING, &[0; 126]), 1002),
    ] {
        let (mut c, resp) = raw_ws(p.addr, "/", "").await;
        assert_eq!(resp.status, 101);
        let hello = masked(true, TEXT, "hello, wörld".as_bytes());
        write_all(&mut c, &[hello, bad].concat()).await;
        let frames = frames_of(&bytes_to_eof("client EOF", &mut c).await).await;
        assert_eq!(frames.len(), 2, "{code}: {frames:?}");
        assert_eq!(
            (frames[0].opcode, frames[0].payload.as_slice()),
            (TEXT, "hello, wörld".as_bytes()),
            "the echo first"
        );
        assert_close(&frames[1], code, false, "then the Close");
    }
    // And the proxy still serves others.
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    ws.send(Message::text("still here")).await.unwrap();
    let m = within("echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(m, Message::text("still here"));
}

/// A backend that never answers the 1001 does not hold the offender's Close for
/// ever: it goes out at close_timeout.
#[tokio::test]
async fn the_offenders_close_goes_out_at_close_timeout_without_an_answer() {
    let mut t = RawSession::start(|b| {
        let pool = pool_and_route("p", "round_robin", &[(b, 1)]);
        config_text(&format!(
            r#"[server]
close_timeout = "300ms"

{pool}"#
        ))
    })
    .await;
    write_all(&mut t.client, &masked(true, TEXT, b"\xff")).await;
    let f = within_for(Duration::from_secs(3), "1007", read_frame(&mut t.client))
        .await
        .unwrap();
    assert_close(&f, 1007, false, "at the client, after close_timeout");
    let at_backend = frames_of(&bytes_to_eof("backend EOF", &mut t.backend).await).await;
    assert_close(&at_backend[0], 1001, true, "backend");
}
