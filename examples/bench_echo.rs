//! A lean WebSocket echo backend for `benches/compare.sh` (plain ws://, loopback).
//!
//! ```text
//! bench_echo [IP:PORT]        # default 127.0.0.1:19001
//! ```
//!
//! Echoes every text/binary message; when several are already read, they are
//! queued and flushed once (pipelined load costs one write, not one per message).
//! tungstenite answers pings and echoes Close frames by itself.
//! Runs until killed; prints `listening on ADDR` once bound.

use futures_util::{FutureExt, SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

async fn session(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(cfg)).await else {
        return;
    };
    'outer: while let Some(Ok(mut msg)) = ws.next().await {
        loop {
            if matches!(msg, Message::Text(_) | Message::Binary(_)) && ws.feed(msg).await.is_err() {
                break 'outer;
            }
            // Queue whatever else has already arrived, then flush once.
            match ws.next().now_or_never() {
                Some(Some(Ok(m))) => msg = m,
                Some(_) => break 'outer,
                None => break,
            }
        }
        if ws.flush().await.is_err() {
            break;
        }
    }
}

fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:19001".into())
        .parse()
        .expect("usage: bench_echo [IP:PORT]");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let listener = TcpListener::bind(addr).await.expect("bind");
        println!(
            "listening on {}",
            listener.local_addr().expect("local addr")
        );
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(session(s));
                }
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
}
