//! The admin listener itself: its other answers and its `allow` list, an address
//! that cannot be bound, a reload that changes it.

use super::*;
use crate::common::admin::Scrape;

#[tokio::test]
async fn admin_answers_and_refuses_clients_outside_allow() {
    let backend = echo("e").await;
    let p = start_proxy_raw(&config(backend.addr, r#"allow = ["127.0.0.2/32"]"#)).await;
    let adm = p.running.admin_addr().unwrap();
    let inside = Some(ip("127.0.0.2"));
    for path in ["/metrics", "/healthz", "/readyz", "/backends", "/"] {
        let r = admin::get_from(adm, path, None).await;
        assert_eq!(r.status, 403, "{path} from 127.0.0.1: {}", r.body);
        let r = admin::get_from(adm, path, inside).await;
        assert_eq!(r.status, 200, "{path} from 127.0.0.2: {}", r.body);
    }
    let page = admin::get_from(adm, "/", inside).await;
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        !page.body.contains("http://")
            && !page.body.contains("https://")
            && !page.body.contains("src="),
        "the status page loads nothing from elsewhere"
    );
    let r = admin::get_from(adm, "/nope", inside).await;
    assert_eq!(r.status, 404);
    let r = admin::request_from(adm, "POST", "/metrics", inside).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = admin::get_from(adm, "/metrics", inside).await;
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    Scrape::parse(&r.body);
    // The per-IP limits of the proxy do not apply: many admin requests from one IP.
    for _ in 0..10 {
        assert_eq!(admin::get_from(adm, "/healthz", inside).await.status, 200);
    }
}

#[tokio::test]
async fn an_admin_address_that_cannot_be_bound_is_a_located_error_unless_it_is_the_default() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let backend = echo("e").await;
    let text = config(backend.addr, "").replace(
        r#"[admin]
address = "127.0.0.1:0""#,
        &format!(
            r#"[admin]
address = "{addr}""#
        ),
    );
    let cfg = wsgate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let e = match wsgate::control::server::start(&cfg).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started on a taken admin address"),
    };
    assert!(e.contains("admin.address") && e.contains("t.toml:"), "{e}");
    let bad = config(backend.addr, "").replace(
        r#"[admin]
address = "127.0.0.1:0""#,
        r#"[admin]
address = "nonsense""#,
    );
    let e = wsgate::config::Config::parse(&bad, std::path::Path::new("t.toml")).unwrap_err();
    assert!(e.to_string().contains("admin.address"), "{e}");
}

#[tokio::test]
async fn a_reload_applies_the_allow_list_and_moves_the_admin_listener() {
    let backend = echo("e").await;
    let mut p = start_proxy_raw(&config(backend.addr, r#"allow = ["127.0.0.2/32"]"#)).await;
    let first = p.running.admin_addr().unwrap();
    assert_eq!(admin::get(first, "/healthz").await.status, 403);
    let cfg =
        |text: &str| wsgate::config::Config::parse(text, std::path::Path::new("t.toml")).unwrap();
    p.running
        .reload(&cfg(&config(backend.addr, "")))
        .await
        .unwrap();
    assert_eq!(
        p.running.admin_addr(),
        Some(first),
        "same address: not rebound"
    );
    assert_eq!(admin::get(first, "/healthz").await.status, 200);
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let moved = config(backend.addr, "").replace(
        r#"[admin]
address = "127.0.0.1:0""#,
        &format!(
            r#"[admin]
address = "{free}""#
        ),
    );
    p.running.reload(&cfg(&moved)).await.unwrap();
    assert_eq!(p.running.admin_addr(), Some(free));
    assert_eq!(admin::get(free, "/readyz").await.status, 200);
    assert!(
        tokio::net::TcpStream::connect(first).await.is_err(),
        "the old admin address still accepts"
    );
    let s = admin::scrape(free).await;
    assert_eq!(s.value("wsgate_config_generation", &[]), Some(3.0));
    assert_eq!(
        s.value("wsgate_config_reloads_total", &[("result", "success")]),
        Some(0.0),
        "Running::reload is not reload_file: only the file reloads are counted"
    );
    let off = config(backend.addr, "").replace(
        r#"[admin]
address = "127.0.0.1:0""#,
        r#"[admin]
address = """#,
    );
    p.running.reload(&cfg(&off)).await.unwrap();
    assert_eq!(p.running.admin_addr(), None);
    assert!(tokio::net::TcpStream::connect(free).await.is_err());
}
