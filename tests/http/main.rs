//! Plain HTTP/1.1 pass-through (`http = "proxy"`), over real TLS to real hyper
//! backends: keep-alive on both sides, headers, chunked bodies both ways, an upgrade
//! after plain requests on one connection, body limits, each timeout, retries, and
//! shutdown with idle kept-alive connections.
#[path = "../common/mod.rs"]
mod common;
mod connections;
mod messages;

use common::http::*;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GET: &str = "GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n";

async fn proxy_to(b: &HttpBackend, server: &str, pool_extra: &str, route_extra: &str) -> Proxy {
    let pool = http_pool("p", "round_robin", &[b.addr], pool_extra, route_extra);
    start_proxy(&format!("{server}\n{pool}")).await
}

/// True once the peer has closed: a read gives EOF (or a reset) with nothing before.
async fn closed<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within_: Duration) -> bool {
    let mut b = [0u8; 64];
    match tokio::time::timeout(within_, s.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!(
            "expected a close, got {:?}",
            String::from_utf8_lossy(&b[..n])
        ),
        Err(_) => false,
    }
}
