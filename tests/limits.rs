//! Session limits through a real proxy on loopback TLS: the client message rate
//! (throttle and close), frame and message sizes judged from headers, keepalive
//! pings and the idle timeout, the session time limit, and per-route overrides.
mod common;
use common::op::{BINARY, CLOSE, CONT, PING, PONG, TEXT};
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const KEY: [u8; 4] = [0x1f, 0x8b, 0x42, 0xe7];

/// A whole config: loopback exempt from admission limits, `[limits]` extended by
/// `limits`, one TLS listener, then `rest`.
fn config(limits: &str, rest: &str) -> String {
    format!(
        r#"[limits]
exempt = ["127.0.0.0/8"]
{limits}

[[listener]]
address = "127.0.0.1:0"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"

{rest}"#
    )
}

async fn proxy(limits: &str, backend: SocketAddr) -> Proxy {
    start_proxy_raw(&config(
        limits,
        &pool_and_route("p", "round_robin", &[(backend, 1)]),
    ))
    .await
}

async fn raw_session(limits: &str) -> RawSession {
    RawSession::start(|b| config(limits, &pool_and_route("p", "round_robin", &[(b, 1)]))).await
}

/// The next data message, answering (and skipping) pings on the way.
async fn next_data(ws: &mut Ws) -> Message {
    loop {
        match within("a message", ws.next()).await {
            Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => {}
            Some(Ok(m)) => return m,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_holds_messages_to_the_rate_and_loses_none() {
    let a = echo("a").await;
    let p = proxy("message_rate = 20.0\nmessage_burst = 1", a.addr).await;
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    let t0 = Instant::now();
    for i in 0..30 {
        within("send", ws.send(Message::text(format!("m{i}"))))
            .await
            .unwrap();
    }
    for i in 0..30 {
        assert_eq!(next_data(&mut ws).await, Message::text(format!("m{i}")));
    }
    // One token at the start, then one per 50 ms: the 30th passes >= 1.45 s in.
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1450 - 50),
        "30 messages at 20/s echoed in {elapsed:?}: not throttled"
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn close_mode_answers_a_flood_with_1008_and_the_backend_gets_1001() {
    let mut t = raw_session(
        r#"on_exceed = "close"
message_rate = 5.0
message_burst = 2"#,
    )
    .await;
    // Ten messages in one write: all arrive at once, the burst lets two through.
    let mut flood = Vec::new();
    for i in 0..10u8 {
        flood.extend(encode_frame(true, 0, TEXT, &[b'a' + i], Some(KEY)));
    }
    write_all(&mut t.client, &flood).await;

    let at_client = frames_of(&bytes_to_eof("client EOF", &mut t.client).await).await;
    assert_eq!(at_client.len(), 1, "client got {at_client:?}");
    assert_close(&at_client[0], 1008, false, "at the client");

    let at_backend = frames_of(&bytes_to_eof("backend EOF", &mut t.backend).await).await;
    assert_eq!(at_backend.len(), 3, "backend got {at_backend:?}");
    for (f, want) in at_backend[..2].iter().zip([b"a", b"b"]) {
        assert_eq!(
            (f.opcode, f.masked, &f.payload[..]),
            (TEXT, true, &want[..])
        );
    }
    assert_close(&at_backend[2], 1001, true, "at the backend");
}

#[tokio::test]
async fn an_oversized_frame_is_refused_from_its_header_alone() {
    let mut t = raw_session("max_frame_bytes = 1000").await;
    let whole = encode_frame(true, 0, BINARY, &vec![7u8; 100_000], Some(KEY));
    let header = &whole[..2 + 8 + 4]; // 127-form length and the mask key; no payload
    write_all(&mut t.client, header).await;
    let at_backend = frames_of(&bytes_to_eof("backend EOF", &mut t.backend).await).await;
    assert_eq!(at_backend.len(), 1, "backend got {at_backend:?}");
    assert_close(&at_backend[0], 1001, true, "at the backend");
    // The client's 1009 goes out once the backend has answered the 1001.
    drop(t.backend);
    let f = within_for(Duration::from_secs(2), "1009", read_frame(&mut t.client))
        .await
        .unwrap();
    assert_close(&f, 1009, false, "at the client");
    let rest = bytes_to_eof("client EOF", &mut t.client).await;
    assert!(rest.is_empty(), "nothing after the Close: {rest:?}");
}

#[tokio::test]
async fn a_message_over_max_message_bytes_is_refused_at_the_fragment_that_crosses_it() {
    let mut t = raw_session("max_message_bytes = 1000\nmax_frame_bytes = 0").await;
    let f1 = encode_frame(false, 0, BINARY, &[1u8; 400], Some(KEY));
    let f2 = encode_frame(false, 0, CONT, &[2u8; 400], Some(KEY));
    let f3 = encode_frame(true, 0, CONT, &[3u8; 400], Some(KEY));
    let mut out = [f1.clone(), f2.clone()].concat();
    out.extend_from_slice(&f3[..2 + 2 + 4]); // the third header only: 1200 > 1000
    write_all(&mut t.client, &out).await;

    let at_backend = bytes_to_eof("backend EOF", &mut t.backend).await;
    let first_two = [f1, f2].concat();
    assert!(
        at_backend.starts_with(&first_two),
        "the first two fragments must pass unchanged"
    );
    let rest = frames_of(&at_backend[first_two.len()..]).await;
    assert_eq!(rest.len(), 1, "backend got {rest:?} after the fragments");
    assert_close(&rest[0], 1001, true, "at the backend");
    // The backend answers the 1001 with its Close: the client gets its 1009 instead.
    write_all(
        &mut t.backend,
        &encode_frame(true, 0, CLOSE, &[0x03, 0xe9], None),
    )
    .await;
    let f = within_for(Duration::from_secs(2), "1009", read_frame(&mut t.client))
        .await
        .unwrap();
    assert_close(&f, 1009, false, "at the client");
    let rest = bytes_to_eof("client EOF", &mut t.client).await;
    assert!(rest.is_empty(), "nothing after the Close: {rest:?}");
}

#[tokio::test]
async fn a_backend_message_over_its_limit_gets_the_client_1014_and_the_backend_1009() {
    let mut t = raw_session("backend_max_message_bytes = 1000").await;
    write_all(
        &mut t.backend,
        &encode_frame(true, 0, BINARY, &[9u8; 2000], None),
    )
    .await;
    let at_client = frames_of(&bytes_to_eof("client EOF", &mut t.client).await).await;
    assert_eq!(at_client.len(), 1, "client got {at_client:?}");
    assert_close(&at_client[0], 1014, false, "at the client");
    // The proxy may drop the rest of the oversized frame unread (and so reset):
    // read the Close, not necessarily a clean EOF.
    let f = within("1009 at the backend", read_frame(&mut t.backend))
        .await
        .unwrap();
    assert_close(&f, 1009, true, "at the backend");
}

#[tokio::test]
async fn a_silent_client_gets_keepalive_pings_then_is_dropped_as_idle() {
    let mut t = raw_session(
        r#"ping_interval = "200ms"
idle_timeout = "600ms""#,
    )
    .await;
    let t0 = Instant::now();
    // The client reads nothing until the backend has been told.
    let f = within("1001 at the backend", read_frame(&mut t.backend))
        .await
        .unwrap();
    assert_close(&f, 1001, true, "at the backend");
    let after = t0.elapsed();
    assert!(
        after >= Duration::from_millis(550),
        "idle after only {after:?}"
    );
    let at_client = frames_of(&bytes_to_eof("client EOF", &mut t.client).await).await;
    assert!(!at_client.is_empty(), "no keepalive pings at all");
    for f in &at_client {
        assert_eq!((f.opcode, f.masked), (PING, false), "{f:?}");
        assert!(
            f.payload.starts_with(b"wsgate-keepalive:"),
            "ping payload {:?}",
            String::from_utf8_lossy(&f.payload)
        );
    }
    let rest = bytes_to_eof("backend EOF", &mut t.backend).await;
    assert!(rest.is_empty(), "nothing after the Close: {rest:?}");
}

/// The client sends `text`; the backend, echoing by hand, must get exactly that as
/// its next frame (never a Pong in between).
async fn echo_by_hand(ws: &mut Ws, s: &mut TcpStream, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    let f = within("frame at the backend", read_frame(s)).await.unwrap();
    assert_eq!(
        (f.opcode, f.masked, &f.payload[..]),
        (TEXT, true, text.as_bytes()),
        "the backend must see only the client's messages: {f:?}"
    );
    write_all(s, &encode_frame(true, 0, TEXT, text.as_bytes(), None)).await;
    assert_eq!(next_data(ws).await, Message::text(text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_answering_pings_stays_and_its_pongs_never_reach_the_backend() {
    let (b, mut rx) = handoff().await;
    let p = proxy(
        r#"ping_interval = "200ms"
idle_timeout = "600ms""#,
        b.addr,
    )
    .await;
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    let mut s = within("backend connection", rx.recv()).await.unwrap();
    let t0 = Instant::now();

    echo_by_hand(&mut ws, &mut s, "one").await;

    // Keep reading (tungstenite answers each ping) for over twice the idle timeout.
    let mut pings = 0;
    let survive = Duration::from_millis(1300);
    while let Some(left) = survive.checked_sub(t0.elapsed()) {
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(p)))) => {
                assert!(p.starts_with(b"wsgate-keepalive:"), "{p:?}");
                pings += 1;
            }
            Ok(other) => panic!("session must stay open and quiet, got {other:?}"),
        }
    }
    assert!(pings >= 3, "only {pings} keepalive pings in {survive:?}");
    echo_by_hand(&mut ws, &mut s, "two").await;

    ws.close(None).await.unwrap();
    let f = within("client Close at the backend", read_frame(&mut s))
        .await
        .unwrap();
    assert_eq!((f.opcode, f.masked), (CLOSE, true), "{f:?}");
    assert_ne!(f.opcode, PONG);
}

#[tokio::test]
async fn max_session_duration_ends_the_session_with_1001_both_ways() {
    let mut t = raw_session(r#"max_session_duration = "500ms""#).await;
    let t0 = Instant::now();
    let at_client = frames_of(&bytes_to_eof("client EOF", &mut t.client).await).await;
    let after = t0.elapsed();
    assert_eq!(at_client.len(), 1, "client got {at_client:?}");
    assert_close(&at_client[0], 1001, false, "at the client");
    assert!(
        after >= Duration::from_millis(450),
        "ended after only {after:?}"
    );
    let f = within("1001 at the backend", read_frame(&mut t.backend))
        .await
        .unwrap();
    assert_close(&f, 1001, true, "at the backend");
    drop(t.client);
    drop(t.backend);
    within("session ends", t.proxy.running.wait_sessions_done()).await;
}

#[tokio::test]
async fn a_route_can_lower_max_message_bytes() {
    let a = echo("a").await;
    let rest = format!(
        r#"{}
[[route]]
path_prefix = "/small"
pool = "p"

[route.limits]
max_message_bytes = 100
"#,
        pool_and_route("p", "round_robin", &[(a.addr, 1)])
    );
    let p = start_proxy_raw(&config("max_message_bytes = 1000", &rest)).await;
    let big = "x".repeat(500);

    let (mut ws, _) = ws_connect(p.addr, "/").await;
    ws.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text(big.clone()));
    ws.send(Message::text("y".repeat(2000))).await.unwrap();
    match next_data(&mut ws).await {
        Message::Close(Some(cf)) => assert_eq!(u16::from(cf.code), 1009),
        m => panic!("the default limit (1000) must still apply on /: {m:?}"),
    }

    let (mut small, _) = ws_connect(p.addr, "/small/room").await;
    small.send(Message::text("z".repeat(100))).await.unwrap();
    assert_eq!(next_data(&mut small).await, Message::text("z".repeat(100)));
    small.send(Message::text(big)).await.unwrap();
    match next_data(&mut small).await {
        Message::Close(Some(cf)) => assert_eq!(u16::from(cf.code), 1009),
        m => panic!("the route's limit (100) must apply on /small: {m:?}"),
    }
}
