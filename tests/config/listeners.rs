//! `[[listener]]`: TLS versions and cipher suites, a TLS listener's `cert`,
//! unique names and addresses, the PROXY protocol and its `trusted_proxies`.

use super::*;

#[test]
fn min_version_1_1() {
    assert_error(
        &format!(
            r#"{TLS_LISTENER}min_version = "1.1"
{POOL}{ROUTE}"#
        ),
        "t.toml:5:15: listener[0].min_version: ",
        "`1.1`",
    );
}

#[test]
fn unknown_cipher_suite() {
    assert_error(
        &format!(
            r#"{TLS_LISTENER}cipher_suites = ["TLS_BOGUS"]
{POOL}{ROUTE}"#
        ),
        "t.toml:5:18: listener[0].cipher_suites[0]: ",
        "unknown cipher suite \"TLS_BOGUS\"",
    );
}

#[test]
fn known_but_disallowed_cipher_suite() {
    assert_error(
        &format!(
            r#"{TLS_LISTENER}cipher_suites = ["TLS_RSA_WITH_AES_128_CBC_SHA"]
{POOL}{ROUTE}"#
        ),
        "t.toml:5:18: listener[0].cipher_suites[0]: ",
        "\"TLS_RSA_WITH_AES_128_CBC_SHA\" is not allowed",
    );
}

#[test]
fn min_version_1_3_needs_a_tls13_suite() {
    assert_error(
        &format!(
            r#"{TLS_LISTENER}min_version = "1.3"
cipher_suites = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
{POOL}{ROUTE}"#
        ),
        "t.toml:6:1: listener[0].cipher_suites: ",
        "no TLS13_* suite",
    );
}

#[test]
fn listener_names_are_unique() {
    let l = |port: u16| {
        format!(
            r#"[[listener]]
name = "public"
address = "127.0.0.1:{port}"
tls = false
"#
        )
    };
    assert_error(
        &format!("{}{}{POOL}{ROUTE}", l(8000), l(8001)),
        "t.toml:6:1: listener[1].name: ",
        "duplicate listener name \"public\"",
    );
}

#[test]
fn duplicate_listener_addresses() {
    let l = r#"[[listener]]
address = "127.0.0.1:8000"
tls = false
"#;
    assert_error(
        &format!("{l}{l}{POOL}{ROUTE}"),
        "t.toml:5:1: listener[1].address: ",
        "duplicate listener address 127.0.0.1:8000",
    );
}

#[test]
fn tls_listener_without_cert() {
    assert_error(
        &format!(
            r#"{LISTENER}{POOL}{ROUTE}[[listener]]
address = "127.0.0.1:0"
key = "k.pem"
"#
        ),
        "t.toml:10:1: listener[1].cert: ",
        "needs `cert`",
    );
}

#[test]
fn proxy_protocol_needs_trusted_proxies() {
    assert_error(
        &format!("{LISTENER}proxy_protocol = true\n{POOL}{ROUTE}"),
        "t.toml:4:1: listener[0].proxy_protocol: ",
        "needs `trusted_proxies`",
    );
    assert_error(
        &format!("{LISTENER}proxy_protocol = true\ntrusted_proxies = []\n{POOL}{ROUTE}"),
        "t.toml:5:1: listener[0].trusted_proxies: ",
        "must not be empty",
    );
    assert_error(
        &format!(
            r#"{LISTENER}trusted_proxies = ["10.0.0.0/8"]
{POOL}{ROUTE}"#
        ),
        "t.toml:4:1: listener[0].trusted_proxies: ",
        "only allowed when proxy_protocol = true",
    );
    assert_error(
        &format!(
            r#"{LISTENER}proxy_protocol = true
trusted_proxies = ["10.0.0.0/99"]
{POOL}{ROUTE}"#
        ),
        "t.toml:5:",
        "is not a CIDR",
    );
    Config::parse(
        &format!(
            r#"{LISTENER}proxy_protocol = true
trusted_proxies = ["10.0.0.0/8", "::1"]
{POOL}{ROUTE}"#
        ),
        Path::new("t.toml"),
    )
    .unwrap();
}
