//! TLS to backends (`tls = true` on a pool): sessions through a TLS WebSocket
//! backend verified against `tls_ca`, SNI from `tls_server_name` (none for an IP
//! address), refusals when the CA or the name does not fit, health checks that talk
//! TLS (and go down when verification fails), and the system root store (the real
//! binary with SSL_CERT_FILE, which rustls-native-certs honours).

mod common;
use common::bin::{Bin, bin_config, scratch_dir};
use common::certs::{self, CertFiles};
use common::pki::{TlsEcho, tls_echo};
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn pool(backend: &TlsEcho, tls: &str) -> String {
    format!(
        r#"[[pool]]
name = "p"
tls = true
{tls}
[[pool.backend]]
address = "{}"

[[route]]
pool = "p"
"#,
        backend.addr
    )
}

async fn echoes(addr: std::net::SocketAddr) {
    let (mut ws, _) = ws_connect(addr, "/").await;
    ws.send(Message::text("through tls")).await.unwrap();
    let m = within("echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(m, Message::text("through tls"));
    ws.close(None).await.unwrap();
}

fn backend_pki(name: &str) -> CertFiles {
    certs::good_chain(&scratch_dir(name)) // leaf for localhost, 127.0.0.1, ::1
}

#[tokio::test]
async fn a_verified_tls_backend_carries_sessions() {
    let files = backend_pki("btls-ok");
    let b = tls_echo(&files).await;
    let p = start_proxy(&pool(&b, &format!(r#"tls_ca = "{}""#, files.ca.display()))).await;
    echoes(p.addr).await;
    assert_eq!(
        *b.sni.lock().unwrap(),
        [None],
        "an IP address backend is verified by IP and sends no SNI"
    );
    let heads = b.upgrades.lock().unwrap().clone();
    assert!(
        heads[0]
            .iter()
            .any(|(k, v)| k == "x-forwarded-proto" && v == "https"),
        "the forwarded upgrade went through: {heads:?}"
    );
}

#[tokio::test]
async fn tls_server_name_is_sent_and_verified() {
    let files = backend_pki("btls-sni");
    let b = tls_echo(&files).await;
    let p = start_proxy(&pool(
        &b,
        &format!(
            r#"tls_ca = "{}"
tls_server_name = "localhost""#,
            files.ca.display()
        ),
    ))
    .await;
    echoes(p.addr).await;
    assert_eq!(*b.sni.lock().unwrap(), [Some("localhost".to_string())]);

    // A name the backend's certificate does not have: refused, the client gets 502.
    let p = start_proxy(&pool(
        &b,
        &format!(
            r#"tls_ca = "{}"
tls_server_name = "other.test"
retries = 0"#,
            files.ca.display()
        ),
    ))
    .await;
    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    assert_eq!(
        (r.status, r.body.trim()),
        (502, "bad gateway: backend TLS handshake failed")
    );
}

#[tokio::test]
async fn a_backend_certificate_from_another_ca_is_refused() {
    let files = backend_pki("btls-bad");
    let other = backend_pki("btls-other");
    let b = tls_echo(&files).await;
    let p = start_proxy(&pool(
        &b,
        &format!(
            r#"tls_ca = "{}"
retries = 0"#,
            other.ca.display()
        ),
    ))
    .await;
    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    assert_eq!(
        (r.status, r.body.trim()),
        (502, "bad gateway: backend TLS handshake failed")
    );
    assert!(
        b.upgrades.lock().unwrap().is_empty(),
        "no request reached it"
    );
}

/// Waits until the pool's only backend is `up` (or not), by its active checks.
async fn backend_becomes(p: &Proxy, up: bool) -> Option<String> {
    let b = p.running.pool("p").unwrap().backends[0].clone();
    within("the health check verdict", async {
        loop {
            let s = b.snapshot();
            if s.up == up && s.last_check.is_some() {
                return s
                    .last_check
                    .and_then(|(_, r)| r.err())
                    .map(|e| wsgate::errors::ErrorChain(&*e).to_string());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn health_checks_talk_tls_too() {
    let files = backend_pki("btls-health");
    let other = backend_pki("btls-health-other");
    let b = tls_echo(&files).await;
    let health = r#"[pool.health]
kind = "websocket"
interval = "1s"
timeout = "1s"
rise = 1
fall = 1
"#;
    let p = start_proxy(&pool(
        &b,
        &format!(
            r#"tls_ca = "{}"
{health}"#,
            files.ca.display()
        ),
    ))
    .await;
    assert_eq!(backend_becomes(&p, true).await, None);
    within("a websocket probe over TLS", async {
        while b.upgrades.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    echoes(p.addr).await;

    // Verification fails: even a tcp check (which completes the handshake) is down.
    for kind in ["websocket", "tcp"] {
        let health = health.replace("websocket", kind);
        let p = start_proxy(&pool(
            &b,
            &format!(
                r#"tls_ca = "{}"
{health}"#,
                other.ca.display()
            ),
        ))
        .await;
        let why = backend_becomes(&p, false).await.unwrap_or_default();
        assert!(why.contains("TLS handshake"), "{kind}: {why}");
        let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
        assert_eq!(r.status, 503, "{kind}");
    }
}

#[tokio::test]
async fn the_system_root_store_is_used_without_tls_ca() {
    let files = backend_pki("btls-system");
    let other = backend_pki("btls-system-other");
    let b = tls_echo(&files).await;
    let conf = bin_config(0, &pool(&b, "retries = 0"));
    // SSL_CERT_FILE names the system store for rustls-native-certs (as for OpenSSL).
    let bin = Bin::start_with("btls-system", &conf, |c| {
        c.env("SSL_CERT_FILE", &files.ca).env_remove("SSL_CERT_DIR");
    })
    .await;
    echoes(bin.addr()).await;
    let bin = Bin::start_with("btls-system-other", &conf, |c| {
        c.env("SSL_CERT_FILE", &other.ca).env_remove("SSL_CERT_DIR");
    })
    .await;
    let r = raw_http(bin.addr(), upgrade_head("/", "").as_bytes()).await;
    assert_eq!(r.status, 502, "a root store without the backend's CA");
    // An empty store is a load error naming the pool's key.
    let empty = scratch_dir("btls-empty").join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["check", "-c"])
        .arg(bin.dir.join("wsgate.toml"))
        .env("SSL_CERT_FILE", &empty)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("pool[0].tls") && err.contains("no system root certificates"),
        "{err}"
    );
}

#[test]
fn backend_tls_config_errors_are_located() {
    let parse = |pool: &str| {
        wsgate::config::Config::parse(
            &format!(
                r#"[[listener]]
address = "127.0.0.1:0"
tls = false
[[pool]]
name = "p"
{pool}
[[route]]
pool = "p"
"#
            ),
            std::path::Path::new("t.toml"),
        )
    };
    let e = parse(
        r#"tls_ca = "ca.pem"
[[pool.backend]]
address = "127.0.0.1:1""#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("pool[0].tls_ca: only allowed when tls = true"),
        "{e}"
    );
    let e = parse(
        r#"tls = true
tls_server_name = "bad name"
[[pool.backend]]
address = "127.0.0.1:1""#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("pool[0].tls_server_name"), "{e}");
    let cfg = parse(
        r#"tls = true
tls_ca = "/nonexistent.pem"
[[pool.backend]]
address = "127.0.0.1:1""#,
    )
    .unwrap();
    let e = wsgate::control::check::check_files(&cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("pool[0].tls_ca") && e.contains("/nonexistent.pem"),
        "{e}"
    );
}

/// A plain HTTP backend behind TLS (the test PKI): answers every request with the
/// number of the TLS connection it came on; counts connections.
async fn tls_http_backend(
    files: &CertFiles,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let acceptor = common::pki::backend_acceptor(files);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let count = conns.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(format!("conn {n}"))),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, conns)
}

/// Plain HTTP requests (`http = "proxy"`) to a TLS pool: verified, kept alive and
/// reused; a reload (which loads the pool's TLS settings again) closes the idle
/// connections, so the next request opens one under the new settings.
#[tokio::test]
async fn plain_http_to_a_tls_pool_reuses_connections_until_a_reload() {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncWriteExt;
    let files = backend_pki("btls-http");
    let (backend, conns) = tls_http_backend(&files).await;
    let rest = format!(
        r#"[[pool]]
name = "p"
tls = true
tls_ca = "{}"
[[pool.backend]]
address = "{backend}"

[[route]]
pool = "p"
http = "proxy"
"#,
        files.ca.display()
    );
    let p = start_proxy(&rest).await;
    let mut c = tls_connect(p.addr).await;
    let get = b"GET /x HTTP/1.1\r\nhost: localhost\r\n\r\n";
    for _ in 0..2 {
        c.write_all(get).await.unwrap();
        let r = common::http::read_http(&mut c, false).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "conn 1");
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "the idle connection is reused"
    );
    let cfg = wsgate::config::Config::parse(&config_text(&rest), std::path::Path::new("test.toml"))
        .unwrap();
    let mut running = p.running;
    running.reload(&cfg).await.expect("reload");
    c.write_all(get).await.unwrap();
    let r = common::http::read_http(&mut c, false).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body, "conn 2",
        "after a reload, a new connection under the reloaded TLS settings"
    );
}
