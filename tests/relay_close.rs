//! How sessions end: close codes and reasons both ways, peers that vanish (EOF or
//! reset) without a Close, and protocol violations from either side, each answered
//! with the right Close code to the right side.
mod common;
use common::op::{CLOSE, CONT, PING, TEXT};
use common::*;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const KEY: [u8; 4] = [0x5a, 0x01, 0xc3, 0x96];

/// A proxy to `backend` whose close timeout is far beyond every deadline here, so a
/// session that ends within a deadline ended on its own, not by timing out.
async fn proxy_to(backend: std::net::SocketAddr) -> Proxy {
    start_proxy(&proxy_config(backend)).await
}

fn proxy_config(backend: std::net::SocketAddr) -> String {
    let pool = pool_and_route("p", "round_robin", &[(backend, 1)]);
    format!(
        r#"[server]
close_timeout = "60s"

{pool}"#
    )
}

async fn raw_session() -> RawSession {
    RawSession::start(|b| config_text(&proxy_config(b))).await
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

#[tokio::test]
async fn client_close_code_and_reason_reach_the_backend_and_its_reply_comes_back() {
    let (b, mut rx) = handoff().await;
    let p = proxy_to(b.addr).await;
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    let mut s = within("backend connection", rx.recv()).await.unwrap();
    let bye = CloseFrame {
        code: 4000.into(),
        reason: "bye".into(),
    };
    within("client close", ws.close(Some(bye))).await.unwrap();
    let f = within("close at the backend", read_frame(&mut s))
        .await
        .unwrap();
    assert!(f.masked);
    assert_eq!((f.opcode, f.payload), (CLOSE, close_payload(4000, "bye")));
    let reply = close_payload(4000, "bye back");
    write_all(&mut s, &encode_frame(true, 0, CLOSE, &reply, None)).await;
    drop(s);
    match within("close reply", ws.next()).await {
        Some(Ok(Message::Close(Some(cf)))) => {
            assert_eq!((u16::from(cf.code), cf.reason.as_str()), (4000, "bye back"));
        }
        other => panic!("expected the backend's Close, got {other:?}"),
    }
    assert!(within("end of stream", ws.next()).await.is_none());
    drop(ws);
    within("session ends", p.running.wait_sessions_done()).await;
}

#[tokio::test]
async fn backend_close_code_and_reason_reach_the_client_and_the_session_ends() {
    let (b, mut rx) = handoff().await;
    let p = proxy_to(b.addr).await;
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    let mut s = within("backend connection", rx.recv()).await.unwrap();
    let srv = close_payload(4001, "srv");
    write_all(&mut s, &encode_frame(true, 0, CLOSE, &srv, None)).await;
    match within("backend close at the client", ws.next()).await {
        Some(Ok(Message::Close(Some(cf)))) => {
            assert_eq!((u16::from(cf.code), cf.reason.as_str()), (4001, "srv"));
        }
        other => panic!("expected the backend's Close, got {other:?}"),
    }
    // tungstenite sends its answer to the Close while it is polled for more; the
    // backend leaves once it has seen that answer, which ends the client's stream.
    let backend = async move {
        let f = read_frame(&mut s).await;
        drop(s);
        f
    };
    let (end, reply) = within("close handshake", async {
        tokio::join!(ws.next(), backend)
    })
    .await;
    assert_close(
        &reply.unwrap(),
        4001,
        true,
        "the client's reply at the backend",
    );
    assert!(end.is_none(), "the client's stream must end: {end:?}");
    drop(ws);
    within("session ends", p.running.wait_sessions_done()).await;
}

#[tokio::test]
async fn backend_leaving_without_close_gets_the_client_1014_promptly() {
    let mut t = raw_session().await;
    drop(t.backend);
    let f = within_for(Duration::from_secs(1), "1014", read_frame(&mut t.client))
        .await
        .unwrap();
    assert_close(&f, 1014, false, "at the client");
    let rest = bytes_to_eof("client EOF", &mut t.client).await;
    assert!(rest.is_empty(), "nothing after the Close: {rest:?}");
    drop(t.client);
    within("session ends", t.proxy.running.wait_sessions_done()).await;
}

#[tokio::test]
async fn backend_reset_gets_the_client_1014_promptly() {
    let mut t = raw_session().await;
    t.backend.set_zero_linger().unwrap();
    drop(t.backend);
    let f = within_for(Duration::from_secs(1), "1014", read_frame(&mut t.client))
        .await
        .unwrap();
    assert_close(&f, 1014, false, "at the client");
    let rest = bytes_to_eof("client EOF", &mut t.client).await;
    assert!(rest.is_empty(), "nothing after the Close: {rest:?}");
}

#[tokio::test]
async fn client_leaving_without_close_gets_the_backend_a_masked_1001() {
    let (b, mut rx) = handoff().await;
    let p = proxy_to(b.addr).await;
    let (ws, _) = ws_connect(p.addr, "/").await;
    let mut s = within("backend connection", rx.recv()).await.unwrap();
    drop(ws);
    let frames = frames_of(&bytes_to_eof("backend EOF", &mut s).await).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_close(&frames[0], 1001, true, "at the backend");
    drop(s);
    within("session ends", p.running.wait_sessions_done()).await;
}

/// The client sends `ok` (valid frames) then `bad`: the backend must get exactly
/// `ok` followed by a masked 1001 and EOF; once it answers with its Close, the
/// client gets `code` (in place of that answer), then EOF.
async fn client_violation_code(what: &str, ok: Vec<u8>, bad: Vec<u8>, code: u16) {
    let mut t = raw_session().await;
    let mut out = ok.clone();
    out.extend_from_slice(&bad);
    write_all(&mut t.client, &out).await;

    let at_backend = bytes_to_eof("backend EOF", &mut t.backend).await;
    assert!(
        at_backend.starts_with(&ok),
        "{what}: valid frames before the violation must be forwarded"
    );
    let rest = frames_of(&at_backend[ok.len()..]).await;
    assert_eq!(
        rest.len(),
        1,
        "{what}: backend got {rest:?} after the valid frames"
    );
    assert_close(&rest[0], 1001, true, what);
    let answer = encode_frame(true, 0, CLOSE, &close_payload(1001, ""), None);
    write_all(&mut t.backend, &answer).await;

    let at_client = frames_of(&bytes_to_eof("client EOF", &mut t.client).await).await;
    assert_eq!(at_client.len(), 1, "{what}: client got {at_client:?}");
    assert_close(&at_client[0], code, false, what);
}

async fn client_violation(what: &str, ok: Vec<u8>, bad: Vec<u8>) {
    client_violation_code(what, ok, bad, 1002).await
}

#[tokio::test]
async fn client_protocol_violations_get_1002_and_the_backend_1001() {
    let m = Some(KEY);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "unmasked frame",
            vec![],
            encode_frame(true, 0, TEXT, b"hi", None),
        ),
        (
            "reserved opcode 3",
            vec![],
            encode_frame(true, 0, 3, b"hi", m),
        ),
        (
            "RSV1 unnegotiated",
            vec![],
            encode_frame(true, 0b100, TEXT, b"hi", m),
        ),
        (
            "126-byte ping",
            vec![],
            encode_frame(true, 0, PING, &[7; 126], m),
        ),
        (
            "fragmented ping",
            vec![],
            encode_frame(false, 0, PING, b"p", m),
        ),
        (
            "lone continuation",
            vec![],
            encode_frame(true, 0, CONT, b"c", m),
        ),
        (
            "text inside an unfinished message",
            encode_frame(false, 0, TEXT, b"first", m),
            encode_frame(true, 0, TEXT, b"second", m),
        ),
        (
            "1-byte close",
            vec![],
            encode_frame(true, 0, CLOSE, &[3], m),
        ),
        (
            "close 1005",
            vec![],
            encode_frame(true, 0, CLOSE, &close_payload(1005, ""), m),
        ),
    ];
    for (what, ok, bad) in cases {
        client_violation(what, ok, bad).await;
    }
}

#[tokio::test]
async fn masked_backend_frame_gets_the_client_1014_and_the_backend_1002() {
    let mut t = raw_session().await;
    write_all(
        &mut t.backend,
        &encode_frame(true, 0, TEXT, b"hi", Some(KEY)),
    )
    .await;
    let at_client = frames_of(&bytes_to_eof("client EOF", &mut t.client).await).await;
    assert_eq!(at_client.len(), 1, "client got {at_client:?}");
    assert_close(&at_client[0], 1014, false, "at the client");
    // The client answers the 1014; its Close is replaced by the backend's 1002.
    let answer = encode_frame(true, 0, CLOSE, &close_payload(1014, ""), Some(KEY));
    write_all(&mut t.client, &answer).await;
    let at_backend = frames_of(&bytes_to_eof("backend EOF", &mut t.backend).await).await;
    assert_eq!(at_backend.len(), 1, "backend got {at_backend:?}");
    assert_close(&at_backend[0], 1002, true, "at the backend");
}

/// Shutdown closes every live session with 1001 on both sides (the client can
/// reconnect elsewhere at once), and the session ends.
#[tokio::test]
async fn shutdown_sends_1001_to_both_sides() {
    let mut s = raw_session().await;
    s.proxy.running.stop_accepting().await;
    s.proxy.running.close_sessions(Duration::ZERO);
    let to_client = bytes_to_eof("client side after shutdown", &mut s.client).await;
    let frames = frames_of(&to_client).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_close(&frames[0], 1001, false, "client");
    assert_eq!(&frames[0].payload[2..], b"server shutting down");
    let mut buf = [0u8; 64];
    let n = within("backend Close", s.backend.read(&mut buf))
        .await
        .unwrap();
    let f = frames_of(&buf[..n]).await;
    assert_close(&f[0], 1001, true, "backend");
    // Both peers close their ends, as peers do after a Close; the session is over.
    drop(s.backend);
    drop(s.client);
    within("sessions to end", s.proxy.running.wait_sessions_done()).await;
}

/// The real binary on SIGTERM: sessions get 1001 and the process exits promptly.
#[tokio::test]
async fn sigterm_closes_sessions_and_exits() {
    let backend = echo("e").await;
    let dir = std::env::temp_dir().join(format!("wsgate-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = dir.join("w.toml");
    std::fs::write(
        &conf,
        format!(
            r#"[server]
drain_spread = "0s"
[[listener]]
address = "127.0.0.1:{port}"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"

{}"#,
            pool_and_route("p", "round_robin", &[(backend.addr, 1)])
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["run", "-c"])
        .arg(&conf)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t0 = std::time::Instant::now();
    let mut ws = loop {
        match ws_connect_req(addr, ws_request("/"), None).await {
            Ok((ws, _)) => break ws,
            Err(_) if t0.elapsed() < DEADLINE => tokio::task::yield_now().await,
            Err(e) => panic!("wsgate did not come up: {e}"),
        }
    };
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    match within("a Close from wsgate", ws.next()).await {
        Some(Ok(Message::Close(Some(c)))) => assert_eq!(u16::from(c.code), 1001),
        other => panic!("expected Close 1001, got {other:?}"),
    }
    // Polling on lets tungstenite answer the Close, completing the handshake.
    while let Some(Ok(_)) = within("the session to end", ws.next()).await {}
    drop(ws);
    let t1 = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        // Well before close_timeout (5 s): the handshakes completed, nothing to wait for.
        assert!(
            t1.elapsed() < Duration::from_secs(3),
            "wsgate did not exit promptly after SIGTERM"
        );
        tokio::task::yield_now().await;
    };
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
