//! Accepting connections: the first steps of every connection's path.
//!
//! Owns: binding sockets (SO_REUSEPORT when asked), the accept loop (with back-off
//! on errors such as EMFILE, so a full file table never spins), TCP_NODELAY, and the
//! TLS handshake and its timeout. Each accepted connection takes the current
//! generation, then `http::serve` reads its requests.
//! Does not own: HTTP (http/) or what a request means (proxy.rs, http/forward.rs).

use crate::admission::{Admitted, Slot};
use crate::conn::ConnInfo;
use crate::http::serve::serve;
use crate::metrics::TlsL;
use crate::proxy::Client;
use crate::runtime::Runtime;
use futures_util::FutureExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{sleep, timeout};

/// Binds a listening socket with a deep backlog and SO_REUSEADDR (and SO_REUSEPORT
/// with `reuse_port`, so another process may bind the same address).
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// Accepts on listener `name` until `stop` turns true. At `max_connections` it
/// waits for a slot before accepting again (the kernel backlog holds newcomers);
/// each accepted connection passes admission control before any TLS work. When
/// stopped, the connections the kernel has already queued are still taken and
/// served, so closing the socket resets none of them.
pub async fn accept_loop(
    listener: TcpListener,
    name: Arc<str>,
    rt: Arc<Runtime>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let slot = tokio::select! {
            s = rt.slots.acquire() => s,
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = Duration::from_millis(5);
                admit(&rt, &name, tcp, peer, slot);
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS and friends: wait instead of spinning.
                rt.admission
                    .counters
                    .accept_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("accept failed: {e}; pausing accepts for {backoff:?}");
                sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    while let Some(Ok((tcp, peer))) = listener.accept().now_or_never() {
        admit(&rt, &name, tcp, peer, rt.slots.acquire_or_extra());
    }
}

/// Admission control, then the connection's own task under the current generation.
fn admit(rt: &Arc<Runtime>, name: &Arc<str>, tcp: TcpStream, peer: SocketAddr, slot: Slot) {
    let Ok(ticket) = rt.admission.admit(peer.ip()) else {
        return; // closed at once; admission counted and logged it
    };
    let generation = rt.current();
    let Some(tls) = generation.listener(name).map(|l| l.tls.clone()) else {
        return; // a reload removed this listener; its accept loop is stopping
    };
    rt.metrics.count_accepted(name);
    let client = Client {
        info: ConnInfo {
            peer,
            listener: name.clone(),
            tls: tls.is_some(),
            accepted: Instant::now(),
        },
        admitted: Arc::new(Admitted::new(slot, ticket, rt.sessions.open())),
        generation,
        rt: rt.clone(),
    };
    tokio::spawn(connection(tcp, tls, Arc::new(client)));
}

async fn connection(tcp: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>, client: Arc<Client>) {
    let _ = tcp.set_nodelay(true);
    let peer = client.info.peer;
    match tls {
        None => serve(tcp, client).await,
        Some(acceptor) => {
            let limit = client.generation.conn.tls_handshake_timeout;
            let counted = |version: &str, result: &str| {
                client
                    .rt
                    .metrics
                    .tls_handshakes
                    .get_or_create(&TlsL {
                        listener: client.info.listener.to_string(),
                        version: version.into(),
                        result: result.into(),
                    })
                    .inc();
            };
            match timeout(limit, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let version = match stream.get_ref().1.protocol_version() {
                        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
                        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
                        _ => "other",
                    };
                    counted(version, "ok");
                    serve(stream, client).await
                }
                Ok(Err(e)) => {
                    counted("none", "failed");
                    tracing::debug!(client = %peer, "TLS handshake failed: {e}")
                }
                Err(_) => {
                    counted("none", "timeout");
                    tracing::debug!(client = %peer, "TLS handshake timed out")
                }
            }
        }
    }
}
