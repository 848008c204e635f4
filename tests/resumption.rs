//! TLS session resumption on the real binary, across reloads (SIGHUP): with session
//! tickets (the default) a client that comes back after a reload resumes; with
//! `session_tickets = false` it resumes only within a generation (rustls' in-memory
//! cache); a listener that verifies client certificates gets new ticket keys at every
//! reload, so no session verified under the old CA bundle resumes. Resumptions are
//! counted in `wsgate_tls_resumed_total`.

mod common;
use common::bin::{Bin, bin_config};
use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::HandshakeKind;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

/// One session through `addr` with the client config `cfg` (whose session store
/// keeps the tickets between calls): TLS, upgrade, one echo. Returns how the TLS
/// handshake went. The echo makes sure the client has read the server's tickets.
async fn session(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> HandshakeKind {
    let tcp = within("connect", tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = within(
        "TLS",
        tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
    )
    .await
    .expect("TLS handshake");
    let kind = tls.get_ref().1.handshake_kind().expect("handshake done");
    let (mut ws, _) = within(
        "upgrade",
        tokio_tungstenite::client_async(ws_request("/"), tls),
    )
    .await
    .expect("upgrade");
    ws.send(Message::text("hello")).await.expect("send");
    match within("echo", ws.next()).await {
        Some(Ok(m)) => assert_eq!(m, Message::text("hello")),
        other => panic!("expected the echo, got {other:?}"),
    }
    let _ = ws.close(None).await;
    kind
}

/// The binary's config: `listener_extra` on its TLS listener, an admin listener, and
/// `routes` extra routes (so that a reload builds a different generation).
fn config(listener_extra: &str, backend: SocketAddr, routes: usize) -> String {
    let mut rest = format!(
        r#"[admin]
address = "127.0.0.1:0"

{}"#,
        pool_and_route("p", "round_robin", &[(backend, 1)])
    );
    for i in 0..routes {
        rest += &format!(
            r#"[[route]]
path_prefix = "/extra{i}"
pool = "p"
"#
        );
    }
    // The listener's own keys go right after its cert and key.
    bin_config(0, &rest).replacen("\n\n", &format!("\n{listener_extra}\n\n"), 1)
}

/// Reloads `b` onto `config` (SIGHUP) and waits for generation 2 to be current.
async fn reload_to(b: &mut Bin, config: &str) {
    b.write_config(config);
    let note = b.reload().await;
    assert!(
        note.contains("generation 2"),
        "reload failed: {note}\n{}",
        b.log()
    );
}

async fn resumed_count(b: &Bin) -> f64 {
    let admin = b.admin_addr().expect("admin listener");
    common::admin::scrape(admin)
        .await
        .count("wsgate_tls_resumed_total", &[])
}

#[tokio::test]
async fn a_client_resumes_after_a_reload() {
    let e = echo("e").await;
    let mut b = Bin::start("resume-reload", &config("", e.addr, 0)).await;
    let cfg = Arc::new(client_tls_config());
    assert_eq!(session(b.addr(), &cfg).await, HandshakeKind::Full);
    assert_eq!(session(b.addr(), &cfg).await, HandshakeKind::Resumed);
    reload_to(&mut b, &config("", e.addr, 1)).await;
    assert_eq!(
        session(b.addr(), &cfg).await,
        HandshakeKind::Resumed,
        "the ticket keys must outlive the generation"
    );
    assert_eq!(resumed_count(&b).await, 2.0);
    // A client that never came before still gets a full handshake.
    let fresh = Arc::new(client_tls_config());
    assert_eq!(session(b.addr(), &fresh).await, HandshakeKind::Full);
}

#[tokio::test]
async fn without_tickets_a_reload_costs_a_full_handshake() {
    let e = echo("e").await;
    let extra = "session_tickets = false";
    let mut b = Bin::start("resume-cache", &config(extra, e.addr, 0)).await;
    let cfg = Arc::new(client_tls_config());
    assert_eq!(session(b.addr(), &cfg).await, HandshakeKind::Full);
    assert_eq!(
        session(b.addr(), &cfg).await,
        HandshakeKind::Resumed,
        "the session cache resumes within a generation"
    );
    reload_to(&mut b, &config(extra, e.addr, 1)).await;
    assert_eq!(session(b.addr(), &cfg).await, HandshakeKind::Full);
}

#[tokio::test]
async fn a_client_certificate_listener_takes_new_ticket_keys_at_a_reload() {
    let d = common::bin::scratch_dir("resume-mtls-ca");
    let ca = common::pki::ClientCa::new(&d, "good");
    let e = echo("e").await;
    // Optional client certificates: the test's client presents none, and its
    // session would carry that (verified) state into a resumption.
    let extra = format!(
        r#"client_ca = "{}"
client_auth = "optional""#,
        ca.ca.display()
    );
    let mut b = Bin::start("resume-mtls", &config(&extra, e.addr, 0)).await;
    let cfg = Arc::new(client_tls_config());
    assert_eq!(session(b.addr(), &cfg).await, HandshakeKind::Full);
    assert_eq!(session(b.addr(), &cfg).await, HandshakeKind::Resumed);
    reload_to(&mut b, &config(&extra, e.addr, 1)).await;
    assert_eq!(
        session(b.addr(), &cfg).await,
        HandshakeKind::Full,
        "a ticket from before the reload must not resume"
    );
    assert_eq!(session(b.addr(), &cfg).await, HandshakeKind::Resumed);
}

#[test]
fn session_tickets_on_a_plain_listener_is_a_located_error() {
    let text = r#"[[listener]]
address = "127.0.0.1:0"
tls = false
session_tickets = true
[[pool]]
name = "p"
[[pool.backend]]
address = "127.0.0.1:1"
[[route]]
pool = "p"
"#;
    let e = wsgate::config::Config::parse(text, std::path::Path::new("/etc/wsgate/wsgate.toml"))
        .expect_err("a plain listener has no TLS sessions");
    let e = e.to_string();
    assert!(
        e.contains("wsgate.toml:4") && e.contains("listener[0].session_tickets"),
        "{e}"
    );
    assert!(e.contains("only allowed when tls = true"), "{e}");
}
