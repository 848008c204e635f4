//! Accepting connections: the first steps of every connection's path.
//!
//! Owns: binding sockets (SO_REUSEPORT when asked), the accept loop (with back-off
//! on errors such as EMFILE, so a full file table never spins), TCP_NODELAY, and the
//! TLS handshake and its timeout (and taking the verified client certificate's
//! subject). Each accepted connection takes the current generation, then
//! `http::serve` reads its requests.
//! Does not own: HTTP (http/) or what a request means (http/upgrade.rs, http/forward.rs).

use crate::accept::admission::{Admitted, Refused, Slot};
use crate::accept::proxy_proto;
use crate::conn::ConnInfo;
use crate::http::conn::ConnCtx;
use crate::http::serve::serve;
use crate::metrics::{ListenerLabels, TlsLabels};
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

/// Accepts on listener `name` until `stop` turns true. At `max_connections`, above
/// `max_connect_rate` or above `max_memory` it waits before accepting again (the
/// kernel backlog holds newcomers);
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
        // Overload protection: a connect-rate token, and memory under the watermark.
        tokio::select! {
            _ = rt.overload.wait_turn() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = Duration::from_millis(5);
                // Memory may have crossed the watermark while we waited in accept:
                // this one waits too (its TLS clock has not started).
                // At stop it is served like the rest of the queue.
                tokio::select! {
                    _ = rt.overload.wait_memory() => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
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
/// On a `proxy_protocol` listener the task first reads the PROXY header, and
/// admission runs on the address it carries.
fn admit(rt: &Arc<Runtime>, name: &Arc<str>, tcp: TcpStream, peer: SocketAddr, slot: Slot) {
    let generation = rt.current();
    let Some(listener) = generation.listener(name) else {
        return; // a reload removed this listener; its accept loop is stopping
    };
    let tls = listener.tls.clone();
    let local = tcp.local_addr().unwrap_or(peer);
    let accepted = Instant::now();
    let Some(trusted) = listener.proxy_protocol.clone() else {
        if let Some(client) = client(rt, name, &generation, peer, local, accepted, slot, &tls) {
            tokio::spawn(connection(tcp, tls, client));
        }
        return;
    };
    if !trusted.iter().any(|c| c.contains(peer.ip())) {
        rt.admission.refuse(peer.ip(), Refused::UntrustedProxy);
        return;
    }
    let rt = rt.clone();
    let name = name.clone();
    tokio::spawn(async move {
        let mut tcp = tcp;
        let limit = generation
            .conn
            .tls_handshake_timeout
            .min(PROXY_HEADER_TIMEOUT);
        let (peer, local) = match timeout(limit, proxy_proto::read_header(&mut tcp)).await {
            Ok(Ok(proxy_proto::Header::Proxied {
                source,
                destination,
            })) => (source, destination),
            Ok(Ok(proxy_proto::Header::Local)) => (peer, local),
            Ok(Err(e)) => {
                tracing::debug!(proxy = %peer, "refused: {}", e.reason());
                rt.admission.refuse(peer.ip(), Refused::ProxyHeader);
                return;
            }
            Err(_) => {
                tracing::debug!(proxy = %peer, "refused: no PROXY header within {limit:?}");
                rt.admission.refuse(peer.ip(), Refused::ProxyHeader);
                return;
            }
        };
        if let Some(client) = client(&rt, &name, &generation, peer, local, accepted, slot, &tls) {
            connection(tcp, tls, client).await;
        }
    });
}

/// The PROXY header must arrive within this (or `tls_handshake_timeout`, if shorter).
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-IP admission for `peer`; the admitted client, or `None` (refused: counted
/// and logged by admission).
#[allow(clippy::too_many_arguments)]
fn client(
    rt: &Arc<Runtime>,
    name: &Arc<str>,
    generation: &Arc<crate::runtime::Generation>,
    peer: SocketAddr,
    local: SocketAddr,
    accepted: Instant,
    slot: Slot,
    tls: &Option<tokio_rustls::TlsAcceptor>,
) -> Option<ConnCtx> {
    let ticket = rt.admission.admit(peer.ip()).ok()?;
    rt.metrics.count_accepted(name);
    Some(ConnCtx {
        info: ConnInfo {
            peer,
            local,
            listener: name.clone(),
            tls: tls.is_some(),
            client_subject: None,
            accepted,
        },
        admitted: Arc::new(Admitted::new(slot, ticket, rt.census.open())),
        generation: generation.clone(),
        rt: rt.clone(),
    })
}

async fn connection(tcp: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>, mut client: ConnCtx) {
    let _ = tcp.set_nodelay(true);
    let peer = client.info.peer;
    match tls {
        None => serve(tcp, Arc::new(client)).await,
        Some(acceptor) => {
            let limit = client.generation.conn.tls_handshake_timeout;
            let counted = |version: &str, result: &str| {
                client
                    .rt
                    .metrics
                    .tls_handshakes
                    .get_or_create(&TlsLabels {
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
                    if stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                        let l = ListenerLabels {
                            listener: client.info.listener.to_string(),
                        };
                        client.rt.metrics.tls_resumed.get_or_create(&l).inc();
                    }
                    client.info.client_subject =
                        crate::tls::peer_subject(stream.get_ref().1).map(Arc::from);
                    serve(stream, Arc::new(client)).await
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
