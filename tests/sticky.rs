//! `balance = "cookie"`: the first answer sets an opaque cookie naming the backend;
//! requests and upgrades carrying it stay there while it is pickable, else they are
//! rebalanced and the cookie reset. Over real TLS, plain HTTP and upgrades alike.
mod common;
use common::http::*;
use common::*;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn sticky_pool(backends: &[&HttpBackend], extra: &str) -> String {
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    http_pool("p", "cookie", &addrs, extra, "")
}

/// Sends a GET with `cookie` (if any) from `from`; returns (backend, Set-Cookie).
async fn get(p: &Proxy, cookie: Option<&str>, from: Option<IpAddr>) -> (String, Option<String>) {
    let mut s = within("TLS", tls_connect_with(p.addr, client_tls_config(), from))
        .await
        .unwrap();
    let c = cookie.map_or(String::new(), |c| format!("Cookie: other=1; {c}\r\n"));
    write_all(
        &mut s,
        format!("GET /x HTTP/1.1\r\nHost: localhost\r\n{c}\r\n").as_bytes(),
    )
    .await;
    let r = read_http(&mut s, false).await;
    assert_eq!(r.status, 200, "{r:?}");
    (
        r.header("x-backend").unwrap().to_string(),
        r.header("set-cookie").map(str::to_string),
    )
}

/// `name=value` of a Set-Cookie.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn the_cookie_names_a_backend_and_requests_stay_there() {
    let bs = [
        HttpBackend::spawn("a").await,
        HttpBackend::spawn("b").await,
        HttpBackend::spawn("c").await,
    ];
    let p = start_proxy(&sticky_pool(&[&bs[0], &bs[1], &bs[2]], "")).await;
    // New clients: round robin, each told its backend.
    let mut cookies = std::collections::HashMap::new();
    for _ in 0..3 {
        let (backend, set) = get(&p, None, None).await;
        let set = set.expect("a Set-Cookie for a client without one");
        assert!(set.starts_with("wsgate_srv="), "{set}");
        for attr in ["Path=/", "HttpOnly", "Secure", "SameSite=None"] {
            assert!(set.contains(attr), "{attr} missing: {set}");
        }
        let value = pair(&set)["wsgate_srv=".len()..].to_string();
        // An opaque token (64 bits of an HMAC, in hex), never the address: a hex
        // digest may contain "127" or a port's digits by chance, so the test is its
        // shape, not the absence of digits.
        assert!(
            value.len() == 16 && value.bytes().all(|c| c.is_ascii_hexdigit()),
            "value is not an opaque token: {value}"
        );
        for b in &bs {
            assert!(
                !value.contains(&b.addr.to_string()) && !value.contains('.'),
                "value names the address: {value}"
            );
        }
        cookies.insert(backend, pair(&set));
    }
    assert_eq!(cookies.len(), 3, "round robin for new clients: {cookies:?}");
    // Carrying it: always that backend, no new cookie, from any source address.
    for (backend, cookie) in &cookies {
        for i in 0..5u8 {
            let from = IpAddr::from([127, 0, 3, i + 1]);
            let (got, set) = get(&p, Some(cookie), Some(from)).await;
            assert_eq!(&got, backend);
            assert_eq!(set, None, "the cookie already names its backend");
        }
    }
    // The backend never sees wsgate's cookie, only the others.
    for b in &bs {
        for seen in b.seen() {
            if let Some(c) = seen.header("cookie") {
                assert_eq!(c, "other=1", "{seen:?}");
            }
        }
    }
    // The upgrade with the cookie lands on the same backend too.
    let cookie = &cookies["b"];
    let mut req = ws_request("/ws");
    req.headers_mut()
        .insert("cookie", HeaderValue::from_str(cookie).unwrap());
    let (_ws, resp) = ws_connect_req(p.addr, req, None).await.unwrap();
    assert_eq!(landed(&resp), "b");
    assert!(resp.headers().get("set-cookie").is_none());
    // A forged or stale value is rebalanced and reset.
    let (_, set) = get(&p, Some("wsgate_srv=0123456789abcdef"), None).await;
    assert!(set.is_some());
}

#[tokio::test]
async fn an_unpickable_backend_rebalances_its_clients_and_resets_the_cookie() {
    let a = HttpBackend::spawn("a").await;
    let b = HttpBackend::spawn("b").await;
    let mut p = start_proxy(&sticky_pool(&[&a, &b], "")).await;
    let (first, set) = get(&p, None, None).await;
    let cookie = pair(&set.unwrap());
    // Drain that backend with a reload: its clients go elsewhere and are told so.
    let drained = if first == "a" { 0 } else { 1 };
    let mut text = config_text(&sticky_pool(&[&a, &b], ""));
    let addr = if drained == 0 { a.addr } else { b.addr };
    text = text.replace(
        &format!(
            r#"address = "{addr}"
"#
        ),
        &format!(
            r#"address = "{addr}"
drain = true
"#
        ),
    );
    let cfg = wsgate::config::Config::parse(&text, Path::new("t.toml")).unwrap();
    p.running.reload(&cfg).await.unwrap();
    let (other, set) = get(&p, Some(&cookie), None).await;
    assert_ne!(other, first);
    let new_cookie = pair(&set.expect("the cookie is reset"));
    assert_ne!(new_cookie, cookie);
    // The upgrade, too.
    let mut req = ws_request("/ws");
    req.headers_mut()
        .insert("cookie", HeaderValue::from_str(&cookie).unwrap());
    let (_ws, resp) = ws_connect_req(p.addr, req, None).await.unwrap();
    assert_eq!(landed(&resp), other);
    let set = resp.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert_eq!(pair(set), new_cookie);
}

#[tokio::test]
async fn values_agree_across_instances_and_follow_the_secret() {
    let a = HttpBackend::spawn("a").await;
    let text = sticky_pool(&[&a], r#"sticky_cookie = "srv""#);
    let p1 = start_proxy(&text).await;
    let p2 = start_proxy(&text).await;
    let v1 = get(&p1, None, None).await.1.unwrap();
    let v2 = get(&p2, None, None).await.1.unwrap();
    assert!(v1.starts_with("srv="), "{v1}");
    assert_eq!(pair(&v1), pair(&v2), "two instances of one config agree");
    // A cookie of one instance is honoured by the other.
    assert_eq!(get(&p2, Some(&pair(&v1)), None).await.1, None);
    let dir = bin::scratch_dir("sticky-secret");
    let secret = dir.join("cookie.key");
    std::fs::write(&secret, "a secret of more than sixteen bytes\n").unwrap();
    let with_secret = format!(
        r#"[server]
cookie_secret_file = "{}"
{text}"#,
        secret.display()
    );
    let p3 = start_proxy(&with_secret).await;
    let v3 = get(&p3, None, None).await.1.unwrap();
    assert_ne!(pair(&v1), pair(&v3), "the secret changes the values");
    let p4 = start_proxy(&with_secret).await;
    assert_eq!(pair(&v3), pair(&get(&p4, None, None).await.1.unwrap()));
    // A short or missing secret file is a located config error.
    std::fs::write(&secret, "short").unwrap();
    let e =
        wsgate::config::Config::parse(&config_text(&with_secret), Path::new("t.toml")).unwrap_err();
    assert!(e.to_string().contains("server.cookie_secret_file"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn many_clients_behind_one_ip_spread_and_each_stays() {
    let bs = [HttpBackend::spawn("a").await, HttpBackend::spawn("b").await];
    let p = start_proxy(&sticky_pool(&[&bs[0], &bs[1]], "")).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        let (backend, set) = get(&p, None, None).await;
        clients.push((backend, pair(&set.unwrap())));
    }
    let on_a = clients.iter().filter(|(b, _)| b == "a").count();
    assert_eq!(
        on_a, 5,
        "ten clients from 127.0.0.1 split evenly: {clients:?}"
    );
    for (backend, cookie) in &clients {
        for _ in 0..3 {
            assert_eq!(&get(&p, Some(cookie), None).await.0, backend);
        }
    }
}
