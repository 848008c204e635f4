mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn echo_through_the_proxy() {
    let a = echo("a").await;
    let p = start_proxy(&pool_and_route("p", "round_robin", &[(a.addr, 1)])).await;
    let (mut ws, resp) = ws_connect(p.addr, "/").await;
    assert_eq!(landed(&resp), "a");
    ws.send(Message::text("hello")).await.unwrap();
    let m = within("echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(m, Message::text("hello"));
    ws.close(None).await.unwrap();
}

/// Several listeners in one config: a TLS one and a plain-TCP one (for use behind
/// another terminator), both serving the same routes.
#[tokio::test]
async fn tls_and_plain_listeners_side_by_side() {
    let a = echo("a").await;
    let text = format!(
        r#"[limits]
exempt = ["127.0.0.0/8"]
[[listener]]
address = "127.0.0.1:0"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"
[[listener]]
address = "127.0.0.1:0"
tls = false

{}"#,
        pool_and_route("p", "round_robin", &[(a.addr, 1)])
    );
    let p = start_proxy_raw(&text).await;
    let addrs = p.running.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);

    let (mut tls_ws, _) = ws_connect(addrs[0], "/").await;
    tls_ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(
        within("tls echo", tls_ws.next()).await.unwrap().unwrap(),
        Message::text("over tls")
    );

    let tcp = tokio::net::TcpStream::connect(addrs[1]).await.unwrap();
    let (mut plain_ws, resp) = within(
        "plain handshake",
        tokio_tungstenite::client_async("ws://localhost/", tcp),
    )
    .await
    .expect("plain-TCP listener upgrades");
    assert_eq!(landed(&resp), "a");
    plain_ws
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(
        within("plain echo", plain_ws.next())
            .await
            .unwrap()
            .unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );

    // A TLS ClientHello on the plain listener is not mistaken for HTTP.
    let mut raw = tokio::net::TcpStream::connect(addrs[1]).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0])
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = within("plain listener answers junk", raw.read_to_end(&mut buf)).await;
    assert!(
        buf.starts_with(b"HTTP/1.1 400"),
        "got {:?}",
        String::from_utf8_lossy(&buf)
    );
}
