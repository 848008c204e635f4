//! `[route.auth]` configuration: every mistake is refused with file, line and key
//! (alg none, an HMAC algorithm with a public key and the reverse, two key sources,
//! enforce_expiry without exp, a protocol header as a claim header, ...), key files
//! that cannot be used fail the load naming them (a short secret, a private key, a
//! symmetric JWKS key), and no token, cookie or query string reaches a log line.

mod common;
use common::bin::{Bin, bin_config, scratch_dir};
use common::jwt::{self, Signer, token};
use common::*;
use jsonwebtoken::Algorithm;
use std::path::Path;
use wsgate::config::Config;

fn text(auth: &str) -> String {
    format!(
        r#"[[listener]]
address = "127.0.0.1:0"
tls = false
[[pool]]
name = "p"
[[pool.backend]]
address = "127.0.0.1:9"
[[route]]
pool = "p"
[route.auth]
kind = "jwt"
{auth}
"#
    )
}

fn refused(auth: &str) -> String {
    Config::parse(&text(auth), Path::new("wsgate.toml"))
        .map(|_| ())
        .expect_err("should be refused")
        .to_string()
}

fn load_error(auth: &str) -> String {
    let cfg = Config::parse(&text(auth), Path::new("wsgate.toml")).expect("parses");
    wsgate::control::check::check_files(&cfg)
        .map(|_| ())
        .expect_err("should fail to load")
        .to_string()
}

#[test]
fn mistakes_in_route_auth_are_located() {
    let cases = [
        (
            r#"secret_file = "s"
algorithms = ["none"]"#,
            "wsgate.toml:13:15:",
            "route[0].auth.algorithms[0]: \"none\" is never accepted",
        ),
        (
            r#"public_keys = ["k.pem"]
algorithms = ["RS256", "HS256"]"#,
            "",
            "route[0].auth.algorithms: HS256 is an HMAC algorithm: it needs secret_file, and a public key is never used as an HMAC secret",
        ),
        (
            r#"secret_file = "s"
algorithms = ["ES256"]"#,
            "",
            "route[0].auth.algorithms: ES256 needs a public key",
        ),
        (
            r#"secret_file = "s"
jwks_file = "j.json""#,
            "",
            "route[0].auth: set only one of secret_file, public_keys and jwks_file",
        ),
        ("", "", "route[0].auth: needs its keys"),
        (
            r#"secret_file = "s"
require_exp = false
enforce_expiry = true"#,
            "",
            "route[0].auth.enforce_expiry: needs require_exp = true",
        ),
        (
            r#"secret_file = "s"
forward_claims = { sub = "Host" }"#,
            "",
            "route[0].auth.forward_claims.sub",
        ),
        (
            r#"secret_file = "s"
forward_claims = { sub = "X-Id", email = "x-id" }"#,
            "",
            "header x-id already carries another claim",
        ),
        (
            r#"secret_file = "s"
token_from = ["header"]"#,
            "",
            "route[0].auth.token_from[0]: unknown token source \"header\"",
        ),
        (
            r#"secret_file = "s"
token_from = ["cookie"]"#,
            "",
            "name the cookie",
        ),
        (
            r#"secret_file = "s"
leeway = "1h""#,
            "",
            "route[0].auth.leeway: must be at most",
        ),
        (
            r#"public_keys = ["k.pem"]
secret_encoding = "base64""#,
            "",
            "route[0].auth.secret_encoding: only meaningful with secret_file",
        ),
        (
            r#"secret_file = "s"
audience = []"#,
            "",
            "route[0].auth.audience: must be a non-empty string",
        ),
        (
            r#"secret_file = "s"
kind2 = 1"#,
            "",
            "unknown field `kind2`",
        ),
    ];
    for (auth, at, says) in cases {
        let e = refused(auth);
        assert!(e.contains(says), "{auth:?}: {e}");
        assert!(e.contains(at), "{auth:?}: not at {at}: {e}");
    }
    let e = Config::parse(
        &text(r#"secret_file = "s""#).replace(r#"kind = "jwt""#, r#"kind = "basic""#),
        Path::new("wsgate.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("route[0].auth.kind") && e.contains("basic"),
        "{e}"
    );
}

#[test]
fn key_files_that_cannot_be_used_fail_the_load() {
    let d = scratch_dir("jwt-keyfiles");
    let write = |name: &str, body: &str| {
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let short = write("short.secret", "tooshort\n");
    let e = load_error(&format!(r#"secret_file = "{short}""#));
    assert!(
        e.contains("wsgate.toml:12:1: route[0].auth.secret_file:")
            && e.contains("short.secret")
            && e.contains("8 bytes")
            && e.contains("at least 32"),
        "{e}"
    );
    let long = write("hs256.secret", &"x".repeat(40));
    let e = load_error(&format!(
        r#"secret_file = "{long}"
algorithms = ["HS512"]"#
    ));
    assert!(e.contains("at least 64"), "{e}");
    let e = load_error(&format!(
        r#"secret_file = "{}"
secret_encoding = "base64""#,
        write("b64.secret", "!!! not base64 !!!")
    ));
    assert!(e.contains("not standard base64"), "{e}");

    let private = write("private.pem", common::certs::TEST_RSA_PKCS8_PEM);
    let e = load_error(&format!(r#"public_keys = ["{private}"]"#));
    assert!(
        e.contains("route[0].auth.public_keys") && e.contains("holds a private key"),
        "{e}"
    );
    let e = load_error(&format!(
        r#"public_keys = ["{}"]"#,
        write("empty.pem", "nothing here\n")
    ));
    assert!(e.contains("holds no PEM \"PUBLIC KEY\""), "{e}");
    let e = load_error(&format!(
        r#"public_keys = ["{}"]"#,
        d.join("missing.pem").display()
    ));
    assert!(e.contains("missing.pem: cannot read"), "{e}");
    // An ES256 key where only RS256 is allowed: nothing can verify.
    let ec = jwt::fresh(&d, Algorithm::ES256, "ec");
    let e = load_error(&format!(
        r#"public_keys = ["{}"]
algorithms = ["RS256"]"#,
        ec.file.display()
    ));
    assert!(e.contains("no key in it can verify"), "{e}");

    let oct = write(
        "oct.json",
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","kid":"s"}]}"#,
    );
    let e = load_error(&format!(r#"jwks_file = "{oct}""#));
    assert!(
        e.contains("route[0].auth.jwks_file") && e.contains("symmetric"),
        "{e}"
    );
    let e = load_error(&format!(
        r#"jwks_file = "{}""#,
        write("bad.json", "{\"keys\": 3}")
    ));
    assert!(e.contains("\"keys\" array"), "{e}");
    // A certificate's public key is accepted like a PEM public key.
    let files = common::certs::good_chain(&d);
    let cfg = Config::parse(
        &text(&format!(r#"public_keys = ["{}"]"#, files.cert.display())),
        Path::new("wsgate.toml"),
    )
    .unwrap();
    wsgate::control::check::check_files(&cfg).expect("a certificate's key loads");
}

/// `wsgate check` loads the keys too.
#[test]
fn check_refuses_a_bad_key_file() {
    let d = scratch_dir("jwt-check");
    let conf = d.join("wsgate.toml");
    std::fs::write(
        &conf,
        text(&format!(
            r#"secret_file = "{}""#,
            d.join("absent.secret").display()
        )),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["check", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("route[0].auth.secret_file") && err.contains("absent.secret"),
        "{err}"
    );
}

/// The real binary at debug level: tokens in the Authorization header, a cookie and
/// the query string, accepted and refused, leave no trace in the log.
#[tokio::test]
async fn tokens_cookies_and_query_strings_never_reach_the_log() {
    let d = scratch_dir("jwt-logs");
    let s: Signer = jwt::hmac(&d);
    let e = echo("e").await;
    let conf = bin_config(
        0,
        &format!(
            r#"{}[route.auth]
kind = "jwt"
secret_file = "{}"
audience = "{}"
token_from = ["authorization", "cookie:at", "query"]
"#,
            pool_and_route("p", "round_robin", &[(e.addr, 1)]),
            s.file.display(),
            jwt::AUD
        ),
    )
    .replace(
        "[server]\n",
        r#"[server]
log_level = "debug"
"#,
    );
    let bin = Bin::start("jwt-logs", &conf).await;
    let good = token(&s, &jwt::claims());
    let expired = token(
        &s,
        &jwt::with(serde_json::json!({"exp": jwt::now() - 3600})),
    );
    let secret_query = "roomkey=hunter2";
    for (path, extra, want) in [
        (
            format!("/a?{secret_query}&token={good}"),
            String::new(),
            101,
        ),
        (format!("/b?token={expired}"), String::new(), 401),
        (
            "/c".to_string(),
            format!("Cookie: at={good}; other=cookie-secret\r\n"),
            101,
        ),
        ("/d".to_string(), format!("Cookie: at={expired}\r\n"), 401),
        (
            "/e".to_string(),
            format!("Authorization: Bearer {good}\r\n"),
            101,
        ),
        (
            "/f".to_string(),
            format!("Authorization: Bearer {expired}x\r\n"),
            401,
        ),
    ] {
        let r = raw_http(bin.addr(), upgrade_head(&path, &extra).as_bytes()).await;
        assert_eq!(r.status, want, "{path}");
    }
    // Wait for the refusals' log lines, then look for secrets.
    let t0 = std::time::Instant::now();
    while bin.log().matches("handshake refused").count() < 3 {
        assert!(
            t0.elapsed() < DEADLINE,
            "refusals not logged:\n{}",
            bin.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let log = bin.log();
    for secret in [
        good.as_str(),
        expired.as_str(),
        good.split('.').nth(1).unwrap(), // the claims part alone
        "hunter2",
        "cookie-secret",
        jwt::SECRET,
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    assert!(
        log.contains("path=\"/b\""),
        "refusals name the path:\n{log}"
    );
    assert!(log.contains("reason=\"invalid token signature\""), "{log}");
}
