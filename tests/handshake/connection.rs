//! More than a status: one request per connection, the header deadline.

use super::*;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn plain_get_426_closes_the_connection() {
    let rig = Setup::Echo.start().await;
    let mut s = tls_connect(rig.proxy.addr).await;
    write_all(&mut s, get(&[HOST]).as_bytes()).await;
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 426, "{r:?}");
    assert!(connection_has(&r, "close"), "no Connection: close: {r:?}");
    // One request per connection: a second one must not be served.
    let _ = s.write_all(upgrade_head("/", "").as_bytes()).await;
    let mut rest = Vec::new();
    let end = within_for(Duration::from_secs(3), "close after 426", async {
        s.read_to_end(&mut rest).await
    })
    .await;
    assert!(
        end.is_err() || rest.is_empty(),
        "served a second request: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn half_a_head_gets_408_after_header_read_timeout() {
    let e = echo("e").await;
    let p = proxy_with_server(
        r#"header_read_timeout = "300ms""#,
        &pool_and_route("p", "round_robin", &[(e.addr, 1)]),
    )
    .await;
    let mut s = tls_connect(p.addr).await;
    let started = Instant::now();
    write_all(&mut s, b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgr").await;
    let r = read_response(&mut s).await;
    let waited = started.elapsed();
    assert_refusal(&r, 408, "in time");
    assert!(
        waited >= Duration::from_millis(250),
        "408 came before the deadline, after {waited:?}"
    );
    // The proxy closed the connection after its answer.
    let mut rest = Vec::new();
    let n = within("close after 408", s.read_to_end(&mut rest)).await;
    assert!(n.map_or(true, |n| n == 0), "bytes after the 408: {rest:?}");
}

#[tokio::test]
async fn header_timeout_does_not_end_an_open_session() {
    let e = echo("e").await;
    let p = proxy_with_server(
        r#"header_read_timeout = "300ms""#,
        &pool_and_route("p", "round_robin", &[(e.addr, 1)]),
    )
    .await;
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    // Waiting is the point here: well past the header deadline.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    within("send after the wait", ws.send(Message::text("still here")))
        .await
        .unwrap();
    let m = within("echo after the wait", ws.next())
        .await
        .expect("session still open")
        .unwrap();
    assert_eq!(m, Message::text("still here"));
    assert_eq!(p.running.live_sessions(), 1);
}
