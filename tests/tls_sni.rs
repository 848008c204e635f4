//! Several certificates on one listener, chosen by SNI: two names (and a wildcard),
//! the default for other names, `strict_sni`, an ECDSA and an RSA certificate for one
//! name chosen by what the client can verify, the old `cert`/`key` next to
//! `[[listener.certificate]]`, each certificate checked at load (located error), and
//! each one's names and expiry in the generation and in `/metrics`.

mod common;
use common::certs::{self, CertFiles};
use common::pki::{chain_for, connect_sni};
use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio_tungstenite::tungstenite::Message;

/// Accepts any server certificate, records the leaf, and offers only `schemes`.
#[derive(Debug)]
struct Record {
    leaf: Mutex<Option<Vec<u8>>>,
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for Record {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.leaf.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

const ECDSA: &[SignatureScheme] = &[SignatureScheme::ECDSA_NISTP256_SHA256];
const RSA: &[SignatureScheme] = &[
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// The leaf the listener serves for `sni` (`None`: no SNI, as when connecting by IP),
/// or `None` if the handshake fails.
async fn served(
    addr: std::net::SocketAddr,
    sni: Option<&str>,
    schemes: &[SignatureScheme],
) -> Option<Vec<u8>> {
    let rec = Arc::new(Record {
        leaf: Mutex::new(None),
        schemes: schemes.to_vec(),
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(rec.clone())
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let r = within(
        "TLS handshake",
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await;
    let mut tls = r.ok()?;
    // TLS 1.3: a refusal can arrive after the client thinks it is done; a request
    // that gets an answer proves the handshake held.
    use tokio::io::AsyncWriteExt;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let resp = read_response_opt(&mut tls).await?;
    assert_eq!(resp, 426, "a plain GET gets 426 from wsgate");
    rec.leaf.lock().unwrap().clone()
}

async fn read_response_opt<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match within("response head", s.read(&mut b)).await {
            Ok(1) => buf.push(b[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    head.split(' ').nth(1)?.parse().ok()
}

fn leaf_of(files: &CertFiles) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

fn cert_entry(f: &CertFiles) -> String {
    format!(
        r#"[[listener.certificate]]
cert = "{}"
key = "{}"
"#,
        f.cert.display(),
        f.key.display()
    )
}

/// A proxy whose one listener has `listener` lines (certificates included) and a
/// catch-all route to an echo backend.
async fn proxy(listener: &str) -> (Proxy, EchoServer) {
    let e = echo("e").await;
    let text = format!(
        r#"[limits]
exempt = ["127.0.0.0/8"]
[[listener]]
address = "127.0.0.1:0"
{listener}
{}"#,
        pool_and_route("p", "round_robin", &[(e.addr, 1)])
    );
    (start_proxy_raw(&text).await, e)
}

fn dir(name: &str) -> std::path::PathBuf {
    common::bin::scratch_dir(name)
}

#[tokio::test]
async fn two_names_each_get_their_certificate_and_others_the_default() {
    let d = dir("sni-two");
    let a = chain_for(&d, "a", &["a.test"]);
    let b = chain_for(&d, "b", &["b.test", "*.b.test"]);
    let (p, _e) = proxy(&format!("{}{}", cert_entry(&a), cert_entry(&b))).await;
    let (la, lb) = (leaf_of(&a), leaf_of(&b));
    assert_eq!(
        served(p.addr, Some("a.test"), ECDSA).await,
        Some(la.clone())
    );
    assert_eq!(
        served(p.addr, Some("b.test"), ECDSA).await,
        Some(lb.clone())
    );
    assert_eq!(
        served(p.addr, Some("B.Test"), ECDSA).await,
        Some(lb.clone()),
        "names are case-insensitive"
    );
    assert_eq!(
        served(p.addr, Some("x.b.test"), ECDSA).await,
        Some(lb.clone()),
        "the wildcard covers one label"
    );
    assert_eq!(
        served(p.addr, Some("y.x.b.test"), ECDSA).await,
        Some(la.clone()),
        "but not two: the default"
    );
    assert_eq!(
        served(p.addr, Some("other.test"), ECDSA).await,
        Some(la.clone()),
        "unknown name: the default"
    );
    assert_eq!(
        served(p.addr, None, ECDSA).await,
        Some(la),
        "no SNI: the default"
    );

    // A real WebSocket through each name, verified against that name's own root.
    for (files, name) in [(&a, "a.test"), (&b, "b.test")] {
        let tls = within(
            "TLS",
            connect_sni(p.addr, common::pki::client_config(&files.ca, None), name),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (mut ws, _) = within(
            "upgrade",
            tokio_tungstenite::client_async(format!("wss://{name}/"), tls),
        )
        .await
        .unwrap();
        ws.send(Message::text(name)).await.unwrap();
        assert_eq!(
            within("echo", ws.next()).await.unwrap().unwrap(),
            Message::text(name)
        );
    }
    // What the generation knows about each certificate (for the expiry metrics).
    let g = p.running.generation();
    let certs = &g.listeners[0].certs;
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0].names, ["a.test"]);
    assert_eq!(certs[1].names, ["b.test", "*.b.test"]);
    let in_9_years = std::time::SystemTime::now() + std::time::Duration::from_secs(9 * 365 * 86400);
    assert!(g.listeners[0].cert_expiry().all(|t| t > in_9_years));
}

#[tokio::test]
async fn every_certificate_has_its_own_expiry_series_in_metrics() {
    let d = dir("sni-metrics");
    let a = chain_for(&d, "a", &["a.test"]);
    let b = chain_for(&d, "b", &["b.test", "*.b.test"]);
    let e = echo("e").await;
    let text = format!(
        r#"[admin]
address = "127.0.0.1:0"
[[listener]]
name = "public"
address = "127.0.0.1:0"
{}{}
{}"#,
        cert_entry(&a),
        cert_entry(&b),
        pool_and_route("p", "round_robin", &[(e.addr, 1)])
    );
    let p = start_proxy_raw(&text).await;
    let adm = p.running.admin_addr().expect("admin listener runs");
    let s = common::admin::scrape(adm).await;
    let g = p.running.generation();
    let certs = &g.listeners[0].certs;
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as f64
    };
    let name = "wsgate_tls_certificate_expiry_timestamp_seconds";
    for (i, dns) in [(0, "a.test"), (1, "b.test")] {
        let place = (i + 1).to_string();
        let labels = [
            ("listener", "public"),
            ("certificate", &place),
            ("name", dns),
        ];
        assert_eq!(
            s.value(name, &labels),
            Some(unix(certs[i].not_after)),
            "{labels:?}"
        );
    }
    let series = s.samples.iter().filter(|x| x.metric == name).count();
    assert_eq!(series, 2, "one series per certificate");
}

#[tokio::test]
async fn strict_sni_refuses_unknown_names_and_no_name() {
    let d = dir("sni-strict");
    let a = chain_for(&d, "a", &["a.test"]);
    let b = chain_for(&d, "b", &["b.test"]);
    let (p, _e) = proxy(&format!(
        "strict_sni = true\n{}{}",
        cert_entry(&a),
        cert_entry(&b)
    ))
    .await;
    assert_eq!(
        served(p.addr, Some("a.test"), ECDSA).await,
        Some(leaf_of(&a))
    );
    assert_eq!(
        served(p.addr, Some("b.test"), ECDSA).await,
        Some(leaf_of(&b))
    );
    assert_eq!(
        served(p.addr, Some("other.test"), ECDSA).await,
        None,
        "unknown name refused"
    );
    assert_eq!(served(p.addr, None, ECDSA).await, None, "no SNI refused");
    // The listener still serves after refusing.
    assert_eq!(
        served(p.addr, Some("a.test"), ECDSA).await,
        Some(leaf_of(&a))
    );
}

#[tokio::test]
async fn an_ecdsa_and_an_rsa_certificate_for_one_name_follow_what_the_client_verifies() {
    let d = dir("sni-dual");
    let ec = certs::good_chain(&d); // ECDSA P-256, localhost
    let (_, _, _, rsa_cert, rsa_key) = certs::key_formats(&d); // RSA, localhost
    let rsa = CertFiles {
        cert: rsa_cert.clone(),
        key: rsa_key,
        ca: rsa_cert,
    };
    for (first, second) in [(&ec, &rsa), (&rsa, &ec)] {
        let (p, _e) = proxy(&format!("{}{}", cert_entry(first), cert_entry(second))).await;
        assert_eq!(
            served(p.addr, Some("localhost"), ECDSA).await,
            Some(leaf_of(&ec))
        );
        assert_eq!(
            served(p.addr, Some("localhost"), RSA).await,
            Some(leaf_of(&rsa))
        );
    }
}

#[tokio::test]
async fn cert_and_key_stay_the_default_next_to_listener_certificates() {
    let d = dir("sni-compat");
    let b = chain_for(&d, "b", &["b.test"]);
    let (p, _e) = proxy(&format!(
        r#"cert = "{CERTS}/fullchain.pem"
key = "{CERTS}/key.pem"
{}"#,
        cert_entry(&b)
    ))
    .await;
    // The old client path (trusts certs-example/ca.pem, SNI localhost) still works.
    let (mut ws, _) = ws_connect(p.addr, "/").await;
    ws.send(Message::text("old")).await.unwrap();
    assert_eq!(
        within("echo", ws.next()).await.unwrap().unwrap(),
        Message::text("old")
    );
    assert_eq!(
        served(p.addr, Some("b.test"), ECDSA).await,
        Some(leaf_of(&b))
    );
    let names = &p.running.generation().listeners[0].certs[0].names;
    assert!(names.iter().any(|n| n == "localhost"), "{names:?}");
}

#[test]
fn every_certificate_is_checked_and_a_bad_one_is_located() {
    let d = dir("sni-bad");
    let a = chain_for(&d, "a", &["a.test"]);
    let bad = certs::expired_leaf(&d);
    let mismatched = certs::mismatched_key(&d);
    let check = |entries: String| {
        let text = format!(
            r#"[[listener]]
address = "127.0.0.1:0"
{entries}
[[pool]]
name = "p"
[[pool.backend]]
address = "127.0.0.1:9"
[[route]]
pool = "p"
"#
        );
        let cfg = wsgate::config::Config::parse(&text, Path::new("t.toml")).expect("parses");
        wsgate::control::check::check_files(&cfg)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let e = check(format!("{}{}", cert_entry(&a), cert_entry(&bad))).unwrap_err();
    assert!(e.contains("listener[0].certificate[1].cert"), "{e}");
    assert!(
        e.contains("expired") && e.contains(&*bad.cert.to_string_lossy()),
        "{e}"
    );
    let e = check(format!("{}{}", cert_entry(&mismatched), cert_entry(&a))).unwrap_err();
    assert!(e.contains("listener[0].certificate[0].key"), "{e}");
    assert!(e.contains("does not match"), "{e}");
    assert!(check(cert_entry(&a)).is_ok());
    // A TLS listener needs at least one certificate; a plain one takes none.
    let e = wsgate::config::Config::parse(
        r#"[[listener]]
address = "127.0.0.1:0"
[[pool]]
name = "p"
[[pool.backend]]
address = "127.0.0.1:9"
[[route]]
pool = "p"
"#,
        Path::new("t.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("listener[0].cert") && e.contains("[[listener.certificate]]"),
        "{e}"
    );
    let e = wsgate::config::Config::parse(
        &format!(
            r#"[[listener]]
address = "127.0.0.1:0"
tls = false
strict_sni = true
{}[[pool]]
name = "p"
[[pool.backend]]
address = "127.0.0.1:9"
[[route]]
pool = "p"
"#,
            cert_entry(&a)
        ),
        Path::new("t.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("listener[0].strict_sni: only allowed when tls = true"),
        "{e}"
    );
    assert!(
        e.contains("listener[0].certificate: only allowed when tls = true"),
        "{e}"
    );
}

#[tokio::test]
async fn a_reload_serves_a_new_certificate_list() {
    let d = dir("sni-reload");
    let a = chain_for(&d, "a", &["a.test"]);
    let b = chain_for(&d, "b", &["b.test"]);
    let e = echo("e").await;
    let text = |entries: String| {
        format!(
            r#"[limits]
exempt = ["127.0.0.0/8"]
[[listener]]
address = "127.0.0.1:0"
name = "l"
{entries}
{}"#,
            pool_and_route("p", "round_robin", &[(e.addr, 1)])
        )
    };
    let mut p = start_proxy_raw(&text(cert_entry(&a))).await;
    assert_eq!(
        served(p.addr, Some("b.test"), ECDSA).await,
        Some(leaf_of(&a))
    );
    let cfg = wsgate::config::Config::parse(
        &text(format!("{}{}", cert_entry(&a), cert_entry(&b))),
        Path::new("test.toml"),
    )
    .unwrap();
    p.running.reload(&cfg).await.expect("reload");
    assert_eq!(
        served(p.addr, Some("b.test"), ECDSA).await,
        Some(leaf_of(&b))
    );
}
