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
