//! `[route.auth]` and identity headers on plain proxied HTTP requests (`http =
//! "proxy"`), over real TLS to a real HTTP backend: a request without a valid token
//! gets the same 401 as an upgrade and reaches no backend; a valid one is forwarded
//! with its claim header; a client's own copy of a claim header is removed, on the
//! route with auth and on a route without it.

mod common;
use common::http::{HttpBackend, http_pool, read_http};
use common::jwt::{self, AUD, ISS, token};
use common::*;
use jsonwebtoken::Algorithm;

#[tokio::test]
async fn plain_requests_on_a_route_with_auth_need_the_token_and_get_claim_headers() {
    let d = common::bin::scratch_dir("jwt-plain");
    let s = jwt::fresh(&d, Algorithm::ES256, "k");
    let b = HttpBackend::spawn("b").await;
    let auth = format!(
        r#"[route.auth]
kind = "jwt"
public_keys = ["{}"]
issuer = "{ISS}"
audience = "{AUD}"
forward_claims = {{ sub = "X-User-Id" }}
"#,
        s.file.display()
    );
    // A second route to the same pool, without auth.
    let open = r#"
[[route]]
name = "open"
pool = "p"
path_prefix = "/open"
http = "proxy"
"#;
    let p = start_proxy(&format!(
        "{}{open}",
        http_pool("p", "round_robin", &[b.addr], "", &auth)
    ))
    .await;

    // No token, and a bad one: 401 with WWW-Authenticate, nothing forwarded.
    let r = raw_http(p.addr, b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.header("www-authenticate").is_some());
    let other = jwt::fresh(&d, Algorithm::ES256, "other");
    let bad = format!(
        "GET /a HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        token(&other, &jwt::claims())
    );
    let r = raw_http(p.addr, bad.as_bytes()).await;
    assert_eq!((r.status, r.body.trim()), (401, "invalid token signature"));
    assert!(
        b.seen().is_empty(),
        "no refused request reached the backend"
    );

    // A valid token: forwarded, the claim header set from the token, the client's
    // own copy gone; then a second request on the same kept-alive connection.
    let t = token(&s, &jwt::claims());
    let mut c = tls_connect(p.addr).await;
    for _ in 0..2 {
        let req = format!(
            "GET /a HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\n\
             X-User-Id: mallory\r\n\r\n"
        );
        write_all(&mut c, req.as_bytes()).await;
        let r = read_http(&mut c, false).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let seen = b.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        let ids: Vec<_> = s
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("x-user-id"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(ids, ["alice"], "the claim, never the client's copy");
    }

    // The route without auth: no token needed, and a spoofed claim header removed.
    let r = raw_http(
        p.addr,
        b"GET /open/x HTTP/1.1\r\nHost: localhost\r\nX-User-Id: mallory\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let last = b.seen().pop().unwrap();
    assert_eq!(last.target, "/open/x");
    assert_eq!(last.header("x-user-id"), None);
}
