//! The relay's data path through a real proxy on loopback TLS: echo of every length
//! form, fragmentation passed through as-is, ping/pong, subprotocols, extension bits,
//! bytes read ahead with the HTTP heads, and backpressure.
//! Close codes, vanishing peers and protocol violations live in relay_close.rs.
mod common;
use common::op::{BINARY, CLOSE, CONT, TEXT};
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const DEFLATE: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

/// A raw backend that answers every upgrade with a 101 (plus `extra` header lines)
/// followed, in the same write, by `after`; then hands the socket to the test.
async fn handoff(
    extra: &'static str,
    after: Vec<u8>,
) -> (RawBackend, mpsc::UnboundedReceiver<(String, TcpStream)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let b = raw_backend(move |head, mut s| {
        let tx = tx.clone();
        let mut out = switching(&head, extra).into_bytes();
        out.extend_from_slice(&after);
        async move {
            write_all(&mut s, &out).await;
            let _ = tx.send((head, s));
        }
    })
    .await;
    (b, rx)
}

async fn next_conn(rx: &mut mpsc::UnboundedReceiver<(String, TcpStream)>) -> (String, TcpStream) {
    within("backend connection", rx.recv())
        .await
        .expect("backend accepted a connection")
}

async fn proxy_to(addr: std::net::SocketAddr) -> Proxy {
    start_proxy(&pool_and_route("p", "round_robin", &[(addr, 1)])).await
}

/// Parses a byte string as a sequence of frames (all of it).
async fn frames_of(mut b: &[u8]) -> Vec<RawFrame> {
    let mut out = Vec::new();
    while !b.is_empty() {
        out.push(read_frame(&mut b).await.expect("whole frames"));
    }
    out
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8)
        .collect()
}

#[tokio::test]
async fn text_and_binary_of_every_length_form_echo_exactly() {
    let e = echo("e").await;
    let p = proxy_to(e.addr).await;
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    for (i, n) in [0usize, 125, 126, 65535, 65536, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let text: String = pattern(n, i as u8)
            .into_iter()
            .map(|b| char::from(b'a' + b % 26))
            .collect();
        let bin = pattern(n, 100 + i as u8);
        within("send text", ws.send(Message::text(text.clone())))
            .await
            .unwrap();
        within("send binary", ws.send(Message::binary(bin.clone())))
            .await
            .unwrap();
        let m = within("text echo", ws.next()).await.unwrap().unwrap();
        assert_eq!(m, Message::text(text), "text of {n} bytes");
        let m = within("binary echo", ws.next()).await.unwrap().unwrap();
        assert_eq!(m, Message::binary(bin), "binary of {n} bytes");
    }
    within("close", ws.close(None)).await.unwrap();
}

#[tokio::test]
async fn fragments_pass_through_as_sent_in_both_directions() {
    let parts: [(bool, u8, &[u8]); 3] = [
        (false, TEXT, b"Hel"),
        (false, CONT, b"lo, wor"),
        (true, CONT, b"ld!"),
    ];
    // Backend -> client: three unmasked frames, written right after the 101.
    let down: Vec<u8> = parts
        .iter()
        .flat_map(|(fin, op, p)| encode_frame(*fin, 0, *op, p, None))
        .collect();
    let (b, mut rx) = handoff("", down.clone()).await;
    let p = proxy_to(b.addr).await;
    let (mut c, resp) = raw_ws(p.addr, "/", "").await;
    assert_eq!(resp.status, 101);
    let (_, mut s) = next_conn(&mut rx).await;

    // Client -> backend: three masked frames, each with its own key.
    let up: Vec<u8> = parts
        .iter()
        .enumerate()
        .flat_map(|(i, (fin, op, p))| encode_frame(*fin, 0, *op, p, Some([i as u8 + 1; 4])))
        .collect();
    write_all(&mut c, &up).await;
    let mut got = vec![0u8; up.len()];
    within("fragments at the backend", s.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(
        got, up,
        "the backend must see the client's bytes, keys and all"
    );
    let frames = frames_of(&got).await;
    assert_eq!(frames.len(), 3);
    for (f, (fin, op, payload)) in frames.iter().zip(parts) {
        assert_eq!((f.fin, f.opcode, f.masked), (fin, op, true));
        assert_eq!(f.payload, payload);
    }

    let mut got = vec![0u8; down.len()];
    within("fragments at the client", c.read_exact(&mut got))
        .await
        .unwrap();
    let frames = frames_of(&got).await;
    assert_eq!(frames.len(), 3);
    for (f, (fin, op, payload)) in frames.iter().zip(parts) {
        assert_eq!((f.fin, f.opcode, f.masked), (fin, op, false));
        assert_eq!(f.payload, payload);
    }
}

#[tokio::test]
async fn ping_gets_pong_with_the_same_payload() {
    let e = echo("e").await;
    let p = proxy_to(e.addr).await;
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    let payload = b"are you there? \x00\xff".to_vec();
    within("send ping", ws.send(Message::Ping(payload.clone().into())))
        .await
        .unwrap();
    let m = within("pong", ws.next()).await.unwrap().unwrap();
    assert_eq!(m, Message::Pong(payload.into()));
}

#[tokio::test]
async fn subprotocol_chosen_by_the_backend_reaches_the_client() {
    let e = echo("e").await;
    let p = proxy_to(e.addr).await;
    let mut req = ws_request("/");
    req.headers_mut()
        .insert("sec-websocket-protocol", "chat, superchat".parse().unwrap());
    let (mut ws, resp) = ws_connect_req(p.addr, req, None).await.unwrap();
    let chosen: Vec<_> = resp
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(chosen, ["chat"]);
    within("send", ws.send(Message::text("hi"))).await.unwrap();
    let m = within("echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(m, Message::text("hi"));
}

#[tokio::test]
async fn negotiated_deflate_passes_rsv1_frames_untouched() {
    let down = encode_frame(
        true,
        0b100,
        TEXT,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0],
        None,
    );
    let (b, mut rx) = handoff(DEFLATE, down.clone()).await;
    let p = proxy_to(b.addr).await;
    let (mut c, resp) = raw_ws(p.addr, "/", DEFLATE).await;
    assert_eq!(resp.status, 101);
    assert_eq!(
        resp.header("sec-websocket-extensions"),
        Some("permessage-deflate")
    );
    let (head, mut s) = next_conn(&mut rx).await;
    assert_eq!(
        head_header(&head, "sec-websocket-extensions").as_deref(),
        Some("permessage-deflate"),
        "the client's offer must reach the backend"
    );

    let up = encode_frame(true, 0b100, BINARY, &pattern(300, 9), Some(KEY));
    write_all(&mut c, &up).await;
    let mut got = vec![0u8; up.len()];
    within("RSV1 frame at the backend", s.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, up);

    let mut got = vec![0u8; down.len()];
    within("RSV1 frame at the client", c.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, down);
}

#[tokio::test]
async fn rsv1_from_the_backend_without_negotiation_gets_the_client_1014() {
    let down = encode_frame(true, 0b100, TEXT, b"zz", None);
    let (b, mut rx) = handoff("", down).await;
    let p = proxy_to(b.addr).await;
    let (mut c, resp) = raw_ws(p.addr, "/", "").await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("sec-websocket-extensions"), None);
    let (_, mut s) = next_conn(&mut rx).await;
    let f = within("close at the client", read_frame(&mut c))
        .await
        .unwrap();
    assert_eq!(
        (f.opcode, f.masked, f.close_code()),
        (CLOSE, false, Some(1014))
    );
    let f = within("close at the backend", read_frame(&mut s))
        .await
        .unwrap();
    assert_eq!(
        (f.opcode, f.masked, f.close_code()),
        (CLOSE, true, Some(1002))
    );
}

#[tokio::test]
async fn backend_bytes_in_the_same_write_as_its_101_reach_the_client() {
    let (b, mut rx) = handoff("", encode_frame(true, 0, TEXT, b"early bird", None)).await;
    let p = proxy_to(b.addr).await;
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    let _conn = next_conn(&mut rx).await;
    let m = within("early frame", ws.next()).await.unwrap().unwrap();
    assert_eq!(m, Message::text("early bird"));
}

#[tokio::test]
async fn client_bytes_sent_before_the_101_reach_the_backend() {
    let (b, mut rx) = handoff("", Vec::new()).await;
    let p = proxy_to(b.addr).await;
    let mut c = tls_connect(p.addr).await;
    let frame = encode_frame(true, 0, TEXT, b"eager client", Some(KEY));
    let mut out = upgrade_head("/", "").into_bytes();
    out.extend_from_slice(&frame);
    write_all(&mut c, &out).await;
    let (_, mut s) = next_conn(&mut rx).await;
    let mut got = vec![0u8; frame.len()];
    within("early client frame", s.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, frame);
    assert_eq!(read_response(&mut c).await.status, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_does_not_read_stalls_the_client_writer() {
    const CHUNK: usize = 256 * 1024;
    const TOTAL: usize = 32 << 20;
    let (b, mut rx) = handoff("", Vec::new()).await;
    let p = proxy_to(b.addr).await;
    let (mut c, resp) = raw_ws(p.addr, "/", "").await;
    assert_eq!(resp.status, 101);
    let (_, mut s) = next_conn(&mut rx).await;

    let payload = pattern(CHUNK, 3);
    let frame = encode_frame(true, 0, BINARY, &payload, Some(KEY));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent2 = sent.clone();
    let mut writer = tokio::spawn(async move {
        for _ in 0..TOTAL / CHUNK {
            c.write_all(&frame).await.unwrap();
            sent2.fetch_add(CHUNK, std::sync::atomic::Ordering::Relaxed);
        }
        c.flush().await.unwrap();
        c
    });
    // Bounded check of "not finished": with the backend idle, the writer must stall.
    let r = tokio::time::timeout(Duration::from_millis(1500), &mut writer).await;
    let stalled_at = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        r.is_err(),
        "the writer finished all {TOTAL} bytes while the backend read nothing"
    );
    eprintln!("writer stalled after {stalled_at} bytes");
    assert!(stalled_at < TOTAL);

    let mut received = 0usize;
    while received < TOTAL {
        let f = within("frame at the backend", read_frame(&mut s))
            .await
            .unwrap();
        assert_eq!((f.fin, f.opcode, f.masked), (true, BINARY, true));
        assert!(f.payload == payload, "payload corrupted");
        received += f.payload.len();
    }
    assert_eq!(received, TOTAL);
    let _c = within("writer completes", writer).await.unwrap();
}
