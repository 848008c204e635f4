//! Client certificates on a listener: `client_auth = "required"` refuses a handshake
//! without a certificate from `client_ca` (or with one from another CA), `"optional"`
//! serves clients without one; the verified subject reaches the backend in its
//! header, and a client's own copy of that header never does (on any listener).

mod common;
use common::pki::{ClientCa, client_config, connect_sni};
use common::*;
use std::net::SocketAddr;
use std::path::Path;
use tokio::sync::mpsc;

/// A backend that answers every upgrade with 101 and reports the request head.
async fn recording() -> (RawBackend, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let b = raw_backend(move |head, mut s| {
        let tx = tx.clone();
        async move {
            write_all(&mut s, switching(&head, "").as_bytes()).await;
            let _ = tx.send(head);
            let _ = bytes_to_eof("client", &mut s).await;
        }
    })
    .await;
    (b, rx)
}

/// Every value of header `name` in a raw head.
fn values(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// An upgrade over TLS with `identity` (cert, key) or none, sending a spoofed
/// subject header; the status, or `None` if TLS (or the request) failed.
async fn upgrade(addr: SocketAddr, identity: Option<(&Path, &Path)>, extra: &str) -> Option<u16> {
    let cfg = client_config(Path::new(&format!("{CERTS}/ca.pem")), identity);
    let mut tls = within("TLS", connect_sni(addr, cfg, "localhost"))
        .await
        .ok()?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(upgrade_head("/", extra).as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match within("response", tls.read(&mut b)).await {
            Ok(1) => buf.push(b[0]),
            _ => return None, // TLS 1.3: a refused client certificate shows here
        }
    }
    String::from_utf8_lossy(&buf)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

fn config(listener_extra: &str, backend: SocketAddr) -> String {
    format!(
        r#"[limits]
exempt = ["127.0.0.0/8"]
[[listener]]
address = "127.0.0.1:0"
cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"
{listener_extra}
[[listener]]
address = "127.0.0.1:0"
tls = false

{}"#,
        pool_and_route("p", "round_robin", &[(backend, 1)])
    )
}

const SPOOF: &str = "X-Client-Subject: CN=admin\r\n";

#[tokio::test]
async fn required_client_certificates() {
    let d = common::bin::scratch_dir("mtls-required");
    let ca = ClientCa::new(&d, "good");
    let other = ClientCa::new(&d, "other");
    let alice = ca.issue(&d, "alice");
    let mallory = other.issue(&d, "mallory");
    let (b, mut heads) = recording().await;
    let p = start_proxy_raw(&config(
        &format!(
            r#"client_ca = "{}"
client_auth = "required""#,
            ca.ca.display()
        ),
        b.addr,
    ))
    .await;

    assert_eq!(
        upgrade(p.addr, None, "").await,
        None,
        "no certificate: refused"
    );
    assert_eq!(
        upgrade(p.addr, Some((&mallory.0, &mallory.1)), "").await,
        None,
        "a certificate from another CA: refused"
    );
    assert_eq!(
        upgrade(p.addr, Some((&alice.0, &alice.1)), SPOOF).await,
        Some(101)
    );
    let head = within("backend head", heads.recv()).await.unwrap();
    assert_eq!(
        values(&head, "x-client-subject"),
        ["OU=tests\\, and more,CN=alice,O=wsgate tests"],
        "the verified subject (RFC 4514, most specific first), and only it:\n{head}"
    );
    assert!(
        heads.try_recv().is_err(),
        "the refused clients reached no backend"
    );

    // A spoofed subject header through another listener (plain TCP, no client
    // certificates) is removed too.
    let plain = p.running.local_addrs()[1];
    let mut s = tokio::net::TcpStream::connect(plain).await.unwrap();
    write_all(&mut s, upgrade_head("/", SPOOF).as_bytes()).await;
    assert_eq!(read_response(&mut s).await.status, 101);
    let head = within("backend head", heads.recv()).await.unwrap();
    assert!(values(&head, "x-client-subject").is_empty(), "{head}");
}

#[tokio::test]
async fn optional_client_certificates() {
    let d = common::bin::scratch_dir("mtls-optional");
    let ca = ClientCa::new(&d, "good");
    let other = ClientCa::new(&d, "other");
    let bob = ca.issue(&d, "bob");
    let mallory = other.issue(&d, "mallory");
    let (b, mut heads) = recording().await;
    let p = start_proxy_raw(&config(
        &format!(
            r#"client_ca = "{}"
client_auth = "optional"
client_subject_header = "X-SSL-Client-DN""#,
            ca.ca.display()
        ),
        b.addr,
    ))
    .await;

    assert_eq!(
        upgrade(p.addr, None, "X-SSL-Client-DN: CN=admin\r\n").await,
        Some(101),
        "no certificate: served"
    );
    let head = within("backend head", heads.recv()).await.unwrap();
    assert!(
        values(&head, "x-ssl-client-dn").is_empty(),
        "spoofed header forwarded:\n{head}"
    );

    assert_eq!(upgrade(p.addr, Some((&bob.0, &bob.1)), "").await, Some(101));
    let head = within("backend head", heads.recv()).await.unwrap();
    assert_eq!(
        values(&head, "x-ssl-client-dn"),
        ["OU=tests\\, and more,CN=bob,O=wsgate tests"]
    );
    assert_eq!(
        upgrade(p.addr, Some((&mallory.0, &mallory.1)), "").await,
        None,
        "a certificate that does not verify is refused even when optional"
    );
}

#[test]
fn client_certificate_config_errors_are_located() {
    let parse = |extra: &str| {
        wsgate::config::Config::parse(
            &config(extra, "127.0.0.1:9".parse().unwrap()),
            Path::new("t.toml"),
        )
    };
    let e = parse(r#"client_auth = "optional""#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("listener[0].client_auth: needs `client_ca`"),
        "{e}"
    );
    let e = parse(
        r#"client_ca = "x.pem"
client_subject_header = "Authorization""#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("listener[0].client_subject_header") && e.contains("owns"),
        "{e}"
    );
    let e = parse(
        r#"client_ca = "x.pem"
client_auth = "sometimes""#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("client_auth"), "{e}");
    // A CA file that is missing, or holds no certificate, fails the load, located.
    let cfg = parse(r#"client_ca = "/nonexistent/ca.pem""#).unwrap();
    let e = wsgate::control::check::check_files(&cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("listener[0].client_ca") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
    let d = common::bin::scratch_dir("mtls-empty");
    let empty = d.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let cfg = parse(&format!(r#"client_ca = "{}""#, empty.display())).unwrap();
    let e = wsgate::control::check::check_files(&cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no PEM certificate"), "{e}");
}
