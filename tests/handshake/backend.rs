//! The backend's side: its answer passed through, the request it receives.

use super::*;
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------
// The backend's answer.

#[tokio::test]
async fn backend_refusal_is_passed_through() {
    let b = raw_backend(|_head, mut s| async move {
        let _ = s
            .write_all(
                b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nnope",
            )
            .await;
        hold_until_closed(&mut s).await;
    })
    .await;
    let p = proxy_to(b.addr).await;
    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body, "nope");
}

// ---------------------------------------------------------------------------
// The request a backend receives.

/// A backend that reports each request head and accepts the upgrade.
async fn recording_backend() -> (RawBackend, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let b = raw_backend(move |head, mut s| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(head.clone());
            let _ = s.write_all(switching(&head, "").as_bytes()).await;
            hold_until_closed(&mut s).await;
        }
    })
    .await;
    (b, rx)
}

#[tokio::test]
async fn forwarded_request_headers() {
    let (b, mut heads) = recording_backend().await;
    let p = proxy_to(b.addr).await;
    let req = head(
        "GET /chat?room=1 HTTP/1.1",
        &[
            HOST,
            UPGRADE,
            "Connection: Upgrade, X-Hop",
            KEY,
            VERSION,
            "X-Hop: 1",
            "Keep-Alive: 5",
            "Proxy-Authorization: x",
            "Cookie: session=abc",
        ],
    );
    let r = raw_http(p.addr, req.as_bytes()).await;
    assert_eq!(r.status, 101, "{r:?}");
    let seen = within("forwarded head", heads.recv()).await.unwrap();
    assert!(
        seen.starts_with("GET /chat?room=1 HTTP/1.1\r\n"),
        "{seen:?}"
    );
    let h = |n: &str| head_header(&seen, n);
    assert_eq!(h("host").as_deref(), Some("localhost"), "{seen}");
    assert_eq!(h("x-forwarded-for").as_deref(), Some("127.0.0.1"), "{seen}");
    assert_eq!(h("x-real-ip").as_deref(), Some("127.0.0.1"), "{seen}");
    assert_eq!(h("x-forwarded-proto").as_deref(), Some("https"), "{seen}");
    assert_eq!(
        h("x-forwarded-host").as_deref(),
        Some("localhost"),
        "{seen}"
    );
    assert_eq!(h("cookie").as_deref(), Some("session=abc"), "{seen}");
    assert_eq!(h("upgrade").as_deref(), Some("websocket"), "{seen}");
    assert_eq!(h("connection").as_deref(), Some("Upgrade"), "{seen}");
    for gone in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert_eq!(h(gone), None, "{gone} was forwarded:\n{seen}");
    }
}

#[tokio::test]
async fn pool_host_header_replaces_host() {
    let (b, mut heads) = recording_backend().await;
    let p = start_proxy(&format!(
        r#"[[pool]]
name = "p"
host_header = "backend.internal"
[[pool.backend]]
address = "{}"

[[route]]
pool = "p"
"#,
        b.addr
    ))
    .await;
    let r = raw_http(p.addr, upgrade_head("/", "").as_bytes()).await;
    assert_eq!(r.status, 101, "{r:?}");
    let seen = within("forwarded head", heads.recv()).await.unwrap();
    assert_eq!(
        head_header(&seen, "host").as_deref(),
        Some("backend.internal")
    );
    assert_eq!(
        head_header(&seen, "x-forwarded-host").as_deref(),
        Some("localhost")
    );
}
