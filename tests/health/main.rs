//! Active health checks through the whole proxy: real echo backends killed and
//! restarted (on the same port) inside each test, real TLS clients, and raw TCP
//! backends that answer checks badly on purpose. Every wait polls the state it
//! waits for against a deadline; no sleep decides an outcome.

mod checks;
#[path = "../common/mod.rs"]
mod common;
mod failover;

use common::*;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use wsgate::backends::backend::Backend;

/// How often state is polled.
const POLL: Duration = Duration::from_millis(10);

/// A catch-all route to pool `p` after `pools` (full `[[pool]]` text).
fn with_route(pools: &str) -> String {
    format!(
        r#"{pools}
[[route]]
pool = "p"
"#
    )
}

/// `[[pool.backend]]` entries for these addresses.
fn backends(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| {
            format!(
                r#"[[pool.backend]]
address = "{a}"
"#
            )
        })
        .collect()
}

fn backend(p: &Proxy, pool: &str, i: usize) -> Arc<Backend> {
    p.running.pool(pool).expect("pool exists").backends[i].clone()
}

/// Polls `b.is_up()` until it equals `up`; returns how long that took.
async fn wait_up(b: &Backend, up: bool, limit: Duration, what: &str) -> Duration {
    let t0 = Instant::now();
    within_for(limit, what, async {
        while b.is_up() != up {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    t0.elapsed()
}

/// A killed backend's port, held bound but not listening: it refuses connections,
/// and no other socket on this host (another test's listener, or a connect that
/// picks it as its own source port) can take it until the backend is restarted.
struct DeadPort {
    addr: SocketAddr,
    _hold: tokio::net::TcpSocket,
}

/// Stops an echo backend and holds its port once the listener is gone.
async fn kill(server: EchoServer) -> DeadPort {
    let addr = server.addr;
    drop(server);
    let hold = within("the killed backend's listener to close", async {
        loop {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.set_reuseaddr(true).unwrap();
            // Fails while the old listener still listens.
            if s.bind(addr).is_ok() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a killed backend's port accepts connections"
    );
    DeadPort { addr, _hold: hold }
}

/// Binds a new echo backend on the port of a killed one.
async fn restart(dead: DeadPort, name: &str) -> EchoServer {
    let addr = dead.addr;
    drop(dead);
    within("rebinding a killed backend's port", async {
        loop {
            match EchoServer::spawn(addr, name).await {
                Ok(s) => return s,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
}

/// Opens (from `from`), notes where it landed, closes.
async fn land(p: &Proxy, from: Option<IpAddr>) -> String {
    let (ws, resp) = ws_connect_req(p.addr, ws_request("/"), from)
        .await
        .unwrap_or_else(|e| panic!("WebSocket through the proxy (from {from:?}): {e}"));
    close_session(ws).await;
    landed(&resp)
}

/// A raw HTTP backend that answers every request with `answer` and records each head.
async fn http_backend(answer: &'static str) -> (RawBackend, Arc<Mutex<Vec<String>>>) {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let b = raw_backend(move |head, mut s| {
        seen.lock().unwrap().push(head);
        async move {
            let _ = s.write_all(answer.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    })
    .await;
    (b, heads)
}

fn count(heads: &Mutex<Vec<String>>) -> usize {
    heads.lock().unwrap().len()
}

/// Waits for `n` more requests at a raw backend, asserting `b` is up at every poll.
async fn stays_up(b: &Backend, heads: &Mutex<Vec<String>>, n: usize, what: &str) {
    let target = count(heads) + n;
    within(what, async {
        while count(heads) < target {
            assert!(b.is_up(), "{what}: went down");
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    assert!(b.is_up(), "{what}: went down");
}
