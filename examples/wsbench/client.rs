//! Connecting: the TLS client configuration (TLS 1.3, the key exchange, resumption
//! on or off), TCP + TLS + WebSocket upgrade, the close handshake, one echo round
//! trip, the text payload, and opening many connections at a bounded concurrency.
//! Owns: `Ws`, `Client`, `close`, `text_payload`, `open_many`.
//! Does not own: what is sent over the connections once open, or timing (the mode
//! modules).

use crate::Error;
use crate::args::Args;
use futures_util::{SinkExt, StreamExt};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub(crate) type Ws = WebSocketStream<TlsStream<TcpStream>>;

pub(crate) struct Client {
    addr: SocketAddr,
    connector: TlsConnector,
    sni: ServerName<'static>,
    url: String,
}

fn tls_config(a: &Args) -> Result<ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&a.ca)? {
        roots.add(cert?)?;
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if a.kx == "x25519" {
        // What every proxy here can do (OpenSSL 3.0 has no ML-KEM): same key exchange for all.
        provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    }
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !a.resume {
        // Every connection is a full handshake.
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Ok(cfg)
}

impl Client {
    pub(crate) fn new(a: &Args) -> Result<Client, Error> {
        Ok(Client {
            addr: a.addr,
            connector: TlsConnector::from(Arc::new(tls_config(a)?)),
            sni: ServerName::try_from(a.sni.clone())?,
            url: format!("wss://{}:{}{}", a.sni, a.addr.port(), a.path),
        })
    }

    /// TCP + TLS + WebSocket upgrade.
    pub(crate) async fn connect(&self) -> Result<Ws, Error> {
        Ok(self.connect_kind().await?.0)
    }

    /// As `connect`, also saying whether the TLS handshake was a resumption.
    pub(crate) async fn connect_kind(&self) -> Result<(Ws, bool), Error> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self.connector.connect(self.sni.clone(), tcp).await?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let req = self.url.as_str().into_client_request()?;
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let (ws, _resp) = tokio_tungstenite::client_async_with_config(req, tls, Some(cfg)).await?;
        Ok((ws, resumed))
    }

    /// The negotiated TLS parameters, from one connection.
    pub(crate) async fn describe(&self) -> String {
        match async {
            let tcp = TcpStream::connect(self.addr).await?;
            let tls = self.connector.connect(self.sni.clone(), tcp).await?;
            let (_, c) = tls.get_ref();
            let name = |d: Option<String>| d.unwrap_or_else(|| "?".into());
            Ok::<_, Error>(format!(
                "{}/{}/{}",
                name(c.protocol_version().map(|v| format!("{v:?}"))),
                name(
                    c.negotiated_cipher_suite()
                        .map(|s| format!("{:?}", s.suite()))
                ),
                name(
                    c.negotiated_key_exchange_group()
                        .map(|g| format!("{:?}", g.name()))
                ),
            ))
        }
        .await
        {
            Ok(s) => s.replace(' ', "_"),
            Err(e) => format!("error:{e}").replace(' ', "_"),
        }
    }
}

/// Sends a Close and waits (bounded) for the peer's Close and the end of the stream.
pub(crate) async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        if ws.close(None).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// One echo round trip of `size` bytes.
async fn round_trip(ws: &mut Ws, size: usize) -> Result<(), Error> {
    ws.send(Message::Binary(vec![0x5a; size].into())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.len() == size => return Ok(()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Err(format!("unexpected echo: {m:?}").into()),
            Some(Err(e)) => return Err(e.into()),
            None => return Err("connection ended before the echo".into()),
        }
    }
}

/// `size` bytes of UTF-8 text: mostly ASCII with two-, three- and four-byte characters
/// mixed in (what chat and JSON traffic looks like), padded with ASCII to the byte.
pub(crate) fn text_payload(size: usize) -> String {
    const PIECE: &str = "{\"user\":\"zoë\",\"msg\":\"naïve café ✓ 日本 🦀\"} ";
    let mut s = String::with_capacity(size);
    while s.len() + PIECE.len() <= size {
        s.push_str(PIECE);
    }
    while s.len() < size {
        s.push('.');
    }
    s
}

/// Opens `n` connections, at most `concurrency` handshakes at a time, keeping order.
pub(crate) async fn open_many(
    client: &Arc<Client>,
    n: usize,
    concurrency: usize,
    echo_size: Option<usize>,
) -> (Vec<Ws>, Vec<String>) {
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, sem) = (client.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            let mut ws = client.connect().await?;
            if let Some(size) = echo_size {
                round_trip(&mut ws, size).await?;
            }
            Ok::<_, Error>(ws)
        });
    }
    let (mut ok, mut errs) = (Vec::with_capacity(n), Vec::new());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(ws)) => ok.push(ws),
            Ok(Err(e)) => errs.push(e.to_string()),
            Err(e) => errs.push(e.to_string()),
        }
    }
    (ok, errs)
}
