//! TLS termination over real sockets: protocol versions, the served chain, ALPN,
//! cipher-suite policy, and the handshake deadline.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::{CipherSuite, ProtocolVersion, SupportedProtocolVersion};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// A proxy whose listener has `listener_extra` lines, `server` settings, and a
/// catch-all route to an echo backend.
async fn proxy(server: &str, listener_extra: &str) -> (Proxy, EchoServer) {
    let e = echo("e").await;
    let text = format!(
        r#"[server]
{server}

[[listener]]
address = "127.0.0.1:0"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"
{listener_extra}

{}"#,
        pool_and_route("p", "round_robin", &[(e.addr, 1)])
    );
    (start_proxy_raw(&text).await, e)
}

/// A client config that trusts only certs-example/ca.pem (not the intermediate),
/// limited to `versions`, offering ALPN http/1.1.
fn client_for(versions: &[&'static SupportedProtocolVersion]) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(format!("{CERTS}/ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    assert_eq!(roots.len(), 1, "ca.pem holds only the root");
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg
}

/// Connects with `versions`, checks what was negotiated, then echoes one message
/// over a WebSocket on the same connection.
async fn handshake_and_echo(addr: SocketAddr, versions: &[&'static SupportedProtocolVersion]) {
    let want = versions[0].version;
    let tls = within(
        "TLS connect",
        tls_connect_with(addr, client_for(versions), None),
    )
    .await
    .unwrap_or_else(|e| panic!("{want:?} handshake failed: {e}"));
    let conn = tls.get_ref().1;
    assert_eq!(conn.protocol_version(), Some(want));
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        conn.peer_certificates().map(<[_]>::len),
        Some(2),
        "the proxy serves leaf + intermediate"
    );
    let (mut ws, _) = within(
        "WebSocket handshake",
        tokio_tungstenite::client_async(ws_request("/"), tls),
    )
    .await
    .unwrap();
    ws.send(Message::text("over tls")).await.unwrap();
    let m = within("echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(m, Message::text("over tls"));
}

#[tokio::test]
async fn tls12_client_is_accepted() {
    let (p, _e) = proxy("", "").await;
    handshake_and_echo(p.addr, &[&rustls::version::TLS12]).await;
}

#[tokio::test]
async fn tls13_client_is_accepted() {
    let (p, _e) = proxy("", "").await;
    handshake_and_echo(p.addr, &[&rustls::version::TLS13]).await;
}

#[tokio::test]
async fn alpn_is_http11_by_default_client() {
    let (p, _e) = proxy("", "").await;
    let tls = tls_connect(p.addr).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn min_version_13_refuses_a_tls12_only_client() {
    let (p, _e) = proxy("", r#"min_version = "1.3""#).await;
    let r = within(
        "TLS 1.2 connect",
        tls_connect_with(p.addr, client_for(&[&rustls::version::TLS12]), None),
    )
    .await;
    assert!(
        r.is_err(),
        "a TLS 1.2 client got through a 1.3-only listener"
    );
    // The same listener takes a TLS 1.3 client.
    handshake_and_echo(p.addr, &[&rustls::version::TLS13]).await;
}

#[tokio::test]
async fn cipher_suites_setting_is_what_gets_negotiated() {
    let (p, _e) = proxy(
        "",
        r#"min_version = "1.3"
cipher_suites = ["TLS13_AES_128_GCM_SHA256"]"#,
    )
    .await;
    // The client's default order prefers AES-256; the server allows only AES-128.
    let tls = within(
        "TLS connect",
        tls_connect_with(p.addr, client_for(&[&rustls::version::TLS13]), None),
    )
    .await
    .unwrap();
    let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(suite, CipherSuite::TLS13_AES_128_GCM_SHA256);
}

// ---------------------------------------------------------------------------
// A hand-made ClientHello, for versions no modern client library will send.

/// One TLS record holding a ClientHello with `version` (record and client_version)
/// and `suites`, with the extensions a TLS 1.2 ECDHE handshake needs but no
/// supported_versions extension.
fn client_hello(version: u16, suites: &[u16]) -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    let mut exts = Vec::new();
    // server_name: localhost
    let name = b"localhost";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    ext(&mut exts, 0x0000, &sni);
    // supported_groups: x25519, secp256r1
    ext(&mut exts, 0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed
    ext(&mut exts, 0x000b, &[1, 0]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    ext(
        &mut exts,
        0x000d,
        &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    );
    // renegotiation_info (empty)
    ext(&mut exts, 0xff01, &[0]);

    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend((0..32u8).map(|i| i.wrapping_mul(7)));
    body.push(0); // session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);

    let mut hs = vec![1u8]; // ClientHello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);

    let mut rec = vec![22u8]; // handshake
    rec.extend_from_slice(&version.to_be_bytes());
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// Sends `hello` on a fresh TCP connection and returns the content type of the
/// first record the server answers with (`None` if it just closes).
async fn first_record_type(addr: SocketAddr, hello: &[u8]) -> Option<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(hello).await.unwrap();
    let mut b = [0u8; 1];
    // Well under the default 10 s handshake timeout: the answer must be prompt.
    match within_for(
        Duration::from_secs(5),
        "answer to a ClientHello",
        s.read(&mut b),
    )
    .await
    {
        Ok(1) => Some(b[0]),
        _ => None,
    }
}

#[tokio::test]
async fn tls11_client_hello_is_refused() {
    let (p, _e) = proxy("", "").await;
    // Control: the same hand-made hello as TLS 1.2, with an ECDHE-ECDSA GCM suite,
    // gets a ServerHello, so the refusal below is about the version.
    let control = client_hello(0x0303, &[0xc02b, 0x002f, 0x0035, 0xc013]);
    assert_eq!(first_record_type(p.addr, &control).await, Some(22));

    let hello = client_hello(0x0302, &[0x002f, 0x0035, 0xc013]);
    match first_record_type(p.addr, &hello).await {
        None | Some(21) => {}
        Some(t) => panic!("a TLS 1.1 ClientHello got a record of type {t}, not an alert"),
    }
}

#[tokio::test]
async fn silent_client_is_dropped_after_tls_handshake_timeout() {
    let (p, _e) = proxy(r#"tls_handshake_timeout = "300ms""#, "").await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let started = Instant::now();
    let mut b = [0u8; 16];
    let r = within_for(
        Duration::from_secs(5),
        "the proxy to drop a silent client",
        s.read(&mut b),
    )
    .await;
    let waited = started.elapsed();
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "the proxy sent bytes to a client that said nothing: {r:?}"
    );
    assert!(
        waited >= Duration::from_millis(250),
        "dropped before the deadline, after {waited:?}"
    );
}
