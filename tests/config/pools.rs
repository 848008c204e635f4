//! `[[pool]]` and its backends: balance, weights, a pool without backends,
//! sticky cookies and the plain-HTTP pool keys, `send_proxy_protocol`.

use super::*;

#[test]
fn balance_random() {
    assert_error(
        &format!(
            r#"{LISTENER}[[pool]]
name = "p"
balance = "random"
[[pool.backend]]
address = "127.0.0.1:9"
{ROUTE}"#
        ),
        "t.toml:6:11: pool[0].balance: ",
        "unknown variant `random`",
    );
}

#[test]
fn weight_zero() {
    assert_error(
        &format!("{LISTENER}{POOL}weight = 0\n{ROUTE}"),
        "t.toml:8:1: pool[0].backend[0].weight: ",
        "between 1 and 10000",
    );
}

#[test]
fn empty_pool() {
    // `backend` is absent, so the problem is reported at the pool's table.
    assert_error(
        &format!(
            r#"{LISTENER}[[pool]]
name = "p"
{ROUTE}"#
        ),
        "t.toml:4:1: pool[0].backend: ",
        "has no backends",
    );
}

#[test]
fn sticky_and_http_pool_keys_are_checked() {
    let pool = |extra: &str| {
        format!(
            r#"{LISTENER}[[pool]]
name = "p"
{extra}
[[pool.backend]]
address = "127.0.0.1:9"
{ROUTE}"#
        )
    };
    assert_key(
        &pool(r#"sticky_cookie = "srv""#),
        "pool[0].sticky_cookie",
        r#"only meaningful with balance = "cookie""#,
    );
    assert_key(
        &pool(
            r#"balance = "cookie"
sticky_cookie = "a b""#,
        ),
        "pool[0].sticky_cookie",
        "not a cookie name",
    );
    assert_key(
        &pool(r#"response_timeout = "0s""#),
        "pool[0].response_timeout",
        "greater than zero",
    );
    assert_key(
        &pool(r#"keepalive_timeout = "0s""#),
        "pool[0].keepalive_timeout",
        "greater than zero when keepalive > 0",
    );
    Config::parse(
        &pool(
            r#"keepalive = 0
keepalive_timeout = "0s""#,
        ),
        Path::new("t.toml"),
    )
    .unwrap();
    Config::parse(&pool(r#"balance = "cookie""#), Path::new("t.toml")).unwrap();
    assert_key(
        &format!(
            r#"[server]
keepalive_timeout = "0s"
{LISTENER}{POOL}{ROUTE}"#
        ),
        "server.keepalive_timeout",
        "greater than zero",
    );
    assert_key(
        &format!(
            r#"[server]
cookie_secret_file = "/nonexistent/key"
{LISTENER}{POOL}{ROUTE}"#
        ),
        "server.cookie_secret_file",
        "cannot read /nonexistent/key",
    );
}

#[test]
fn send_proxy_protocol_is_v1_or_v2() {
    assert_error(
        &format!(
            r#"{LISTENER}[[pool]]
name = "p"
send_proxy_protocol = "v3"
[[pool.backend]]
address = "127.0.0.1:9"
{ROUTE}"#
        ),
        "t.toml:6:23: pool[0].send_proxy_protocol: ",
        "unknown variant `v3`",
    );
    for v in ["v1", "v2"] {
        Config::parse(
            &format!(
                r#"{LISTENER}[[pool]]
name = "p"
send_proxy_protocol = "{v}"
[[pool.backend]]
address = "127.0.0.1:9"
{ROUTE}"#
            ),
            Path::new("t.toml"),
        )
        .unwrap();
    }
}
