//! A small WebSocket echo backend (tokio-tungstenite): the demo's backends and a
//! real peer for tests. Not part of a proxy's connection path.
//!
//! It echoes text and binary messages, answers pings, echoes a Close's code and
//! reason, picks the first offered subprotocol it knows, and names itself in an
//! `x-backend` response header so callers can see where they landed.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Subprotocols the echo backend accepts, in its order of preference.
pub const PROTOCOLS: [&str; 2] = ["echo", "chat"];

/// A running echo backend; stops (and drops its sessions) when dropped.
pub struct EchoServer {
    pub addr: SocketAddr,
    pub name: String,
    task: JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoServer {
    /// Binds `addr` (port 0 picks one) and serves until dropped.
    pub async fn spawn(addr: SocketAddr, name: &str) -> std::io::Result<EchoServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let owned = name.to_string();
        let task = tokio::spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    r = listener.accept() => match r {
                        Ok((s, _)) => { sessions.spawn(session(s, owned.clone())); }
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                    },
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        Ok(EchoServer {
            addr,
            name: name.to_string(),
            task,
        })
    }
}

#[allow(clippy::result_large_err)] // the callback signature is tungstenite's
async fn session(stream: TcpStream, name: String) {
    let _ = stream.set_nodelay(true);
    let callback = |req: &Request, mut resp: Response| {
        let offered =
            crate::http::handshake::tokens(req.headers(), &hyper::header::SEC_WEBSOCKET_PROTOCOL)
                .find(|p| PROTOCOLS.contains(p));
        if let Some(p) = offered.and_then(|p| HeaderValue::from_str(p).ok()) {
            resp.headers_mut().insert("sec-websocket-protocol", p);
        }
        if let Ok(v) = HeaderValue::from_str(&name) {
            resp.headers_mut().insert("x-backend", v);
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match msg {
            Message::Text(_) | Message::Binary(_) => msg,
            // tungstenite answers pings and echoes the Close by itself.
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}
