//! `wsgate demo`: two built-in echo backends behind the proxy on
//! https://127.0.0.1:8443 with certs-example/, and a page on http://127.0.0.1:8080.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::ExitCode;
use wsgate::config::Config;
use wsgate::echo::EchoServer;

const PAGE: &str = include_str!("demo.html");

fn certs_dir() -> PathBuf {
    let here = PathBuf::from("certs-example");
    if here.join("fullchain.pem").exists() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs-example")
}

pub(crate) async fn run() -> ExitCode {
    let _ = crate::init_logging("info", wsgate::config::LogFormat::Text);
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (a, b) = match (
        EchoServer::spawn(local, "echo-a").await,
        EchoServer::spawn(local, "echo-b").await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("demo: cannot start echo backends: {e}");
            return ExitCode::FAILURE;
        }
    };
    let certs = certs_dir();
    let text = format!(
        r#"
[[listener]]
address = "127.0.0.1:8443"
cert = "{cert}"
key = "{key}"

[[pool]]
name = "echo"
balance = "round_robin"
[pool.health]
kind = "websocket"
interval = "1s"
[[pool.backend]]
address = "{a}"
[[pool.backend]]
address = "{b}"

[[route]]
path_prefix = "/"
pool = "echo"
"#,
        cert = certs.join("fullchain.pem").display(),
        key = certs.join("key.pem").display(),
        a = a.addr,
        b = b.addr,
    );
    let cfg = match Config::parse(&text, std::path::Path::new("demo.toml")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut running = match wsgate::control::server::start(&cfg).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo: {}", wsgate::errors::ErrorChain(&e));
            return ExitCode::FAILURE;
        }
    };
    let page = tokio::spawn(serve_page());
    let ca = certs.join("ca.pem");
    let admin = running
        .admin_addr()
        .map_or("(off: 127.0.0.1:9090 is taken)".to_string(), |a| {
            format!("http://{a}/")
        });
    println!(
        "\nwsgate demo: wss://127.0.0.1:8443/ -> echo backends {} and {} (round robin)\n\n\
         Try it:\n\
         \x20 browser:  trust {ca} (or open https://127.0.0.1:8443/ once and accept the certificate),\n\
         \x20           then open http://127.0.0.1:8080/\n\
         \x20 python:   pip install websockets && SSL_CERT_FILE={ca} python3 -m websockets wss://127.0.0.1:8443/\n\
         \x20 node:     NODE_EXTRA_CA_CERTS={ca} npx wscat -c wss://127.0.0.1:8443/\n\n\
         Status page: {admin} (metrics: {admin}metrics, backends: {admin}backends)\n\n\
         Ctrl-C stops it.",
        a.addr,
        b.addr,
        ca = ca.display()
    );
    crate::wait_for_signal().await;
    page.abort();
    running.stop_accepting().await;
    ExitCode::SUCCESS
}

async fn serve_page() {
    let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:8080").await else {
        eprintln!("demo: 127.0.0.1:8080 is taken; the browser page is not served");
        return;
    };
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(async move {
            let svc = service_fn(|_req| async {
                let mut resp = hyper::Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
                resp.headers_mut().insert(
                    "content-type",
                    hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
                );
                Ok::<_, Infallible>(resp)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
