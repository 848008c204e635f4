//! JWT at the handshake (`[route.auth]`), over real TLS to real backends: each
//! algorithm family and a JWKS chosen by kid, each token source, every refusal with
//! its 401 (expired, wrong aud, alg none, HS256 "signed" with the RSA public key, and
//! more) reaching no backend, claims forwarded with spoofed copies removed, the
//! subprotocol entry that carried the token not forwarded, `enforce_expiry` closing
//! with 1008, keys re-read on reload.

mod common;
use common::jwt::{self, AUD, ISS, Signer, token};
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A backend answering every upgrade with 101 (choosing the first subprotocol
/// offered) and reporting the request head.
async fn recording() -> (RawBackend, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let b = raw_backend(move |head, mut s| {
        let tx = tx.clone();
        async move {
            let extra = match head_header(&head, "sec-websocket-protocol") {
                Some(p) => format!(
                    "Sec-WebSocket-Protocol: {}\r\n",
                    p.split(',').next().unwrap().trim()
                ),
                None => String::new(),
            };
            write_all(&mut s, switching(&head, &extra).as_bytes()).await;
            let _ = tx.send(head);
            let _ = bytes_to_eof("client", &mut s).await;
        }
    })
    .await;
    (b, rx)
}

/// `[route.auth]` lines for a route with ISS/AUD and `keys` (e.g. `public_keys = [...]`).
fn auth(keys: &str, extra: &str) -> String {
    format!(
        r#"[route.auth]
kind = "jwt"
{keys}
issuer = "{ISS}"
audience = "{AUD}"
{extra}
"#
    )
}

fn key_line(s: &Signer) -> String {
    match s.alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            format!(r#"secret_file = "{}""#, s.file.display())
        }
        _ => format!(r#"public_keys = ["{}"]"#, s.file.display()),
    }
}

async fn proxy_with(backend: SocketAddr, auth_lines: &str) -> Proxy {
    start_proxy(&format!(
        "{}{auth_lines}",
        pool_and_route("p", "round_robin", &[(backend, 1)])
    ))
    .await
}

/// An upgrade to `path` with `extra` header lines.
async fn ask(addr: SocketAddr, path: &str, extra: &str) -> RawResponse {
    raw_http(addr, upgrade_head(path, extra).as_bytes()).await
}

fn bearer(t: &str) -> String {
    format!("Authorization: Bearer {t}\r\n")
}

#[tokio::test]
async fn every_algorithm_family_is_verified() {
    let d = common::bin::scratch_dir("jwt-algs");
    let signers = [
        jwt::hmac(&d),
        jwt::rsa(&d, Algorithm::RS256),
        jwt::rsa(&d, Algorithm::PS256),
        jwt::fresh(&d, Algorithm::ES256, "p256"),
        jwt::fresh(&d, Algorithm::ES384, "p384"),
        jwt::fresh(&d, Algorithm::EdDSA, "ed"),
    ];
    let (b, mut heads) = recording().await;
    for s in &signers {
        let p = proxy_with(b.addr, &auth(&key_line(s), "")).await;
        let t = token(s, &jwt::claims());
        let r = ask(p.addr, "/", &bearer(&t)).await;
        assert_eq!(r.status, 101, "{:?}: {}", s.alg, r.body);
        let head = within("backend head", heads.recv()).await.unwrap();
        assert_eq!(
            head_header(&head, "authorization"),
            Some(format!("Bearer {t}")),
            "{:?}: the token is forwarded",
            s.alg
        );
        // The same route refuses a token of that family signed by another key.
        let other = match s.alg {
            Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => {
                jwt::fresh(&d, s.alg, "other")
            }
            _ => continue,
        };
        let r = ask(p.addr, "/", &bearer(&token(&other, &jwt::claims()))).await;
        assert_eq!(
            (r.status, r.body.trim()),
            (401, "invalid token signature"),
            "{:?}",
            s.alg
        );
    }
    assert!(
        heads.try_recv().is_err(),
        "no refused token reached the backend"
    );
}

#[tokio::test]
async fn a_jwks_key_is_chosen_by_kid() {
    let d = common::bin::scratch_dir("jwt-jwks");
    let ec = jwt::fresh(&d, Algorithm::ES256, "ec");
    let ed = jwt::fresh(&d, Algorithm::EdDSA, "ed");
    let jwks = jwt::write_jwks(&d, &[jwt::jwk(&ec, "key-ec"), jwt::jwk(&ed, "key-ed")]);
    let (b, mut heads) = recording().await;
    let p = proxy_with(
        b.addr,
        &auth(&format!(r#"jwks_file = "{}""#, jwks.display()), ""),
    )
    .await;
    for (s, kid) in [(&ec, "key-ec"), (&ed, "key-ed")] {
        let t = jwt::token_kid(s, Some(kid), &jwt::claims());
        assert_eq!(ask(p.addr, "/", &bearer(&t)).await.status, 101, "{kid}");
        within("backend head", heads.recv()).await.unwrap();
    }
    // Without a kid, any key of the right type may verify it.
    let t = token(&ec, &jwt::claims());
    assert_eq!(ask(p.addr, "/", &bearer(&t)).await.status, 101);
    within("backend head", heads.recv()).await.unwrap();
    for (t, why) in [
        (
            jwt::token_kid(&ec, Some("nope"), &jwt::claims()),
            "token signed by an unknown key",
        ),
        (
            jwt::token_kid(&ed, Some("key-ec"), &jwt::claims()),
            "token signed by an unknown key",
        ),
    ] {
        let r = ask(p.addr, "/", &bearer(&t)).await;
        assert_eq!((r.status, r.body.trim()), (401, why));
    }
    assert!(heads.try_recv().is_err());
}

#[tokio::test]
async fn the_token_is_taken_from_each_source() {
    let d = common::bin::scratch_dir("jwt-sources");
    let s = jwt::fresh(&d, Algorithm::ES256, "k");
    let (b, mut heads) = recording().await;
    let p = proxy_with(
        b.addr,
        &auth(
            &key_line(&s),
            r#"token_from = ["authorization", "cookie:at", "query", "protocol"]"#,
        ),
    )
    .await;
    let t = token(&s, &jwt::claims());

    let r = ask(p.addr, "/", &bearer(&t)).await;
    assert_eq!(r.status, 101, "Authorization: {}", r.body);
    within("head", heads.recv()).await.unwrap();

    let r = ask(p.addr, "/", &format!("Cookie: theme=dark; at={t}\r\n")).await;
    assert_eq!(r.status, 101, "cookie: {}", r.body);
    within("head", heads.recv()).await.unwrap();

    let r = ask(p.addr, &format!("/ws?room=1&token={t}"), "").await;
    assert_eq!(r.status, 101, "query: {}", r.body);
    within("head", heads.recv()).await.unwrap();

    let r = ask(
        p.addr,
        "/",
        &format!("Sec-WebSocket-Protocol: chat, bearer.{t}\r\n"),
    )
    .await;
    assert_eq!(r.status, 101, "subprotocol: {}", r.body);
    assert_eq!(r.header("sec-websocket-protocol"), Some("chat"));
    let head = within("head", heads.recv()).await.unwrap();
    assert_eq!(
        head_header(&head, "sec-websocket-protocol").as_deref(),
        Some("chat"),
        "the token's entry is not forwarded:\n{head}"
    );

    // Only the token entry offered: the backend sees no subprotocol header at all.
    let r = ask(
        p.addr,
        "/",
        &format!("Sec-WebSocket-Protocol: bearer.{t}\r\n"),
    )
    .await;
    assert_eq!(r.status, 101);
    let head = within("head", heads.recv()).await.unwrap();
    assert_eq!(head_header(&head, "sec-websocket-protocol"), None, "{head}");

    // No token anywhere: 401, and RFC 6750's bare challenge.
    let r = ask(p.addr, "/?room=1", "Cookie: theme=dark\r\n").await;
    assert_eq!((r.status, r.body.trim()), (401, "missing token"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(heads.try_recv().is_err());
}

#[tokio::test]
async fn sources_not_listed_are_not_read() {
    let d = common::bin::scratch_dir("jwt-default-source");
    let s = jwt::hmac(&d);
    let (b, _heads) = recording().await;
    let p = proxy_with(b.addr, &auth(&key_line(&s), "")).await; // default: authorization only
    let t = token(&s, &jwt::claims());
    let r = ask(
        p.addr,
        &format!("/?token={t}"),
        &format!("Cookie: at={t}\r\n"),
    )
    .await;
    assert_eq!((r.status, r.body.trim()), (401, "missing token"));
    let r = ask(p.addr, "/", "Authorization: Basic YWxpY2U6cHc=\r\n").await;
    assert_eq!(
        (r.status, r.body.trim()),
        (401, "Authorization must be \"Bearer <token>\"")
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            "Bearer error=\"invalid_request\", error_description=\"Authorization must be \\\"Bearer <token>\\\"\""
        )
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_with_their_reason() {
    let d = common::bin::scratch_dir("jwt-refusals");
    let rsa = jwt::rsa(&d, Algorithm::RS256);
    let (b, mut heads) = recording().await;
    let p = proxy_with(b.addr, &auth(&key_line(&rsa), r#"leeway = "30s""#)).await;
    let now = jwt::now();
    let cases = [
        (
            token(&rsa, &jwt::with(json!({"exp": now - 60}))),
            "token expired",
        ),
        (
            token(&rsa, &jwt::with(json!({"aud": "billing"}))),
            "token audience not accepted",
        ),
        (
            token(&rsa, &jwt::with(json!({"aud": null}))),
            "token audience not accepted",
        ),
        (
            token(&rsa, &jwt::with(json!({"iss": "https://evil.test"}))),
            "token issuer not accepted",
        ),
        (
            token(&rsa, &jwt::with(json!({"nbf": now + 600}))),
            "token not yet valid",
        ),
        (
            token(&rsa, &jwt::with(json!({"exp": null}))),
            "token has no valid expiry (exp)",
        ),
        (
            // jsonwebtoken before 10.3 let a malformed exp skip validation.
            token(&rsa, &jwt::with(json!({"exp": "tomorrow"}))),
            "token has no valid expiry (exp)",
        ),
        (
            token(&rsa, &jwt::with(json!({"nbf": "soon"}))),
            "token claim of the wrong type",
        ),
        (
            jwt::unsigned(&jwt::claims()),
            "unsigned token (alg none) not accepted",
        ),
        (
            jwt::hs256_with_public_key(&rsa, &jwt::claims()),
            "token algorithm not accepted",
        ),
        ("not.a.token".to_string(), "malformed token"),
        ("garbage".to_string(), "malformed token"),
    ];
    for (t, why) in &cases {
        let r = ask(p.addr, "/", &bearer(t)).await;
        assert_eq!((r.status, r.body.trim()), (401, *why), "{why}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(format!("Bearer error=\"invalid_token\", error_description=\"{why}\"").as_str())
        );
        assert_eq!(r.header("connection"), Some("close"));
    }
    // Inside the leeway an expired token still passes.
    let t = token(&rsa, &jwt::with(json!({"exp": now - 5})));
    assert_eq!(ask(p.addr, "/", &bearer(&t)).await.status, 101);
    within("head", heads.recv()).await.unwrap();
    assert!(
        heads.try_recv().is_err(),
        "a refused token reached the backend"
    );
}

#[tokio::test]
async fn claims_reach_the_backend_and_spoofed_claim_headers_do_not() {
    let d = common::bin::scratch_dir("jwt-claims");
    let s = jwt::hmac(&d);
    let (b, mut heads) = recording().await;
    let text = format!(
        r#"[[pool]]
name = "p"
[[pool.backend]]
address = "{}"
[[route]]
path_prefix = "/open"
pool = "p"
[[route]]
path_prefix = "/"
pool = "p"
{}"#,
        b.addr,
        auth(
            &key_line(&s),
            r#"forward_claims = { sub = "X-User-Id", roles = "X-User-Roles", level = "X-Level", team = "X-Team" }"#
        )
    );
    let p = start_proxy(&text).await;
    let t = token(
        &s,
        &jwt::with(json!({"roles": ["admin", "ops"], "level": 3})),
    );
    let spoof = "X-User-Id: root\r\nX-User-Roles: superuser\r\nX-Team: red\r\n";
    let r = ask(p.addr, "/chat", &format!("{}{spoof}", bearer(&t))).await;
    assert_eq!(r.status, 101, "{}", r.body);
    let head = within("head", heads.recv()).await.unwrap();
    let all = |name: &str| -> Vec<String> {
        head.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    };
    assert_eq!(all("x-user-id"), ["alice"], "{head}");
    assert_eq!(all("x-user-roles"), ["admin,ops"]);
    assert_eq!(all("x-level"), ["3"]);
    assert!(
        all("x-team").is_empty(),
        "a claim the token lacks sets no header, and the client's goes"
    );

    // A route without auth on the same pool: the spoofed headers are removed there too.
    let r = ask(p.addr, "/open", spoof).await;
    assert_eq!(r.status, 101);
    let head = within("head", heads.recv()).await.unwrap();
    for h in ["x-user-id", "x-user-roles", "x-team"] {
        assert_eq!(
            head_header(&head, h),
            None,
            "{h} spoofed through /open:\n{head}"
        );
    }
}

#[tokio::test]
async fn enforce_expiry_closes_the_session_with_1008_when_exp_passes() {
    let d = common::bin::scratch_dir("jwt-expiry");
    let s = jwt::hmac(&d);
    let (b, mut backends) = handoff().await;
    let p = proxy_with(
        b.addr,
        &auth(
            &key_line(&s),
            r#"leeway = "0s"
enforce_expiry = true"#,
        ),
    )
    .await;
    let exp = jwt::now() + 2;
    let t = token(&s, &jwt::with(json!({ "exp": exp })));
    let (mut client, resp) = raw_ws(p.addr, "/", &bearer(&t)).await;
    assert_eq!(resp.status, 101, "{}", resp.body);
    let mut backend = within("backend", backends.recv()).await.unwrap();
    // Traffic flows until then.
    write_all(
        &mut client,
        &encode_frame(true, 0, op::TEXT, b"hi", Some([1, 2, 3, 4])),
    )
    .await;
    let f = within("relayed frame", read_frame(&mut backend))
        .await
        .unwrap();
    assert_eq!(f.payload, b"hi");

    let t0 = Instant::now();
    let close = within("the close at exp", read_frame(&mut client))
        .await
        .unwrap();
    let waited = t0.elapsed();
    assert_close(&close, 1008, false, "client");
    assert_eq!(&close.payload[2..], b"token expired");
    let exp_at = std::time::UNIX_EPOCH + Duration::from_secs(exp);
    assert!(
        std::time::SystemTime::now() >= exp_at,
        "closed {:?} before exp",
        exp_at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
    );
    assert!(
        waited < Duration::from_secs(4),
        "closed {waited:?} after the test looked"
    );
    let f = within("backend close", read_frame(&mut backend))
        .await
        .unwrap();
    assert_close(&f, 1001, true, "backend");
}

#[tokio::test]
async fn a_reload_reads_the_keys_again() {
    let d = common::bin::scratch_dir("jwt-reload");
    let old = jwt::fresh(&d, Algorithm::ES256, "old");
    let new = jwt::fresh(&d, Algorithm::ES256, "new");
    let key_file = d.join("issuer.pem");
    std::fs::copy(&old.file, &key_file).unwrap();
    let (b, _heads) = recording().await;
    let text = format!(
        "{}{}",
        pool_and_route("p", "round_robin", &[(b.addr, 1)]),
        auth(&format!(r#"public_keys = ["{}"]"#, key_file.display()), "")
    );
    let mut p = start_proxy(&text).await;
    let (t_old, t_new) = (token(&old, &jwt::claims()), token(&new, &jwt::claims()));
    assert_eq!(ask(p.addr, "/", &bearer(&t_old)).await.status, 101);
    assert_eq!(ask(p.addr, "/", &bearer(&t_new)).await.status, 401);

    std::fs::copy(&new.file, &key_file).unwrap(); // the issuer rotated its key
    let cfg =
        wsgate::config::Config::parse(&common::config_text(&text), Path::new("test.toml")).unwrap();
    p.running.reload(&cfg).await.expect("reload");
    assert_eq!(ask(p.addr, "/", &bearer(&t_new)).await.status, 101);
    assert_eq!(ask(p.addr, "/", &bearer(&t_old)).await.status, 401);

    // A key file broken by the next reload fails it; the keys in use stay.
    std::fs::write(&key_file, "not a key\n").unwrap();
    let e = p.running.reload(&cfg).await.unwrap_err().to_string();
    assert!(
        e.contains("route[0].auth.public_keys") && e.contains("issuer.pem"),
        "{e}"
    );
    assert_eq!(ask(p.addr, "/", &bearer(&t_new)).await.status, 101);
}
