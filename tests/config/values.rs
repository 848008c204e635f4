//! Keys and values anywhere in the file: unknown keys, values serde refuses
//! (types, durations), checked values (CIDRs, host patterns) located at the
//! value, `[server]` timing.

use super::*;

// ---------------------------------------------------------------------------
// Unknown keys.

/// (config text, where the unknown key `bogus` is, its key path)
fn unknown_key_cases() -> [(String, &'static str, &'static str); 4] {
    [
        (
            format!("bogus = 1\n{LISTENER}{POOL}{ROUTE}"),
            "t.toml:1:1: ",
            "bogus",
        ),
        (
            format!("[server]\nbogus = 1\n{LISTENER}{POOL}{ROUTE}"),
            "t.toml:2:1: ",
            "server.bogus",
        ),
        (
            format!("{LISTENER}bogus = 1\n{POOL}{ROUTE}"),
            "t.toml:4:1: ",
            "listener[0].bogus",
        ),
        (
            format!("{LISTENER}{POOL}bogus = 1\n{ROUTE}"),
            "t.toml:8:1: ",
            "pool[0].backend[0].bogus",
        ),
    ]
}

#[test]
fn unknown_keys_are_located_and_named() {
    for (text, at, key) in unknown_key_cases() {
        let e = error(&text);
        assert!(e.starts_with(at), "expected {at:?}..., got: {e}");
        assert!(e.contains(key), "{key} not named: {e}");
        assert!(e.contains("unknown field `bogus`"), "{e}");
    }
}

#[test]
fn unknown_keys_have_the_exact_shape() {
    for (text, at, key) in unknown_key_cases() {
        assert_error(&text, &format!("{at}{key}: "), "unknown field `bogus`");
    }
}

// ---------------------------------------------------------------------------
// Values serde refuses.

#[test]
fn wrong_type() {
    assert_error(
        &format!(
            r#"[server]
max_header_bytes = "big"
{LISTENER}{POOL}{ROUTE}"#
        ),
        "t.toml:2:20: server.max_header_bytes: ",
        "expected a whole number, found the text \"big\"",
    );
}

#[test]
fn invalid_duration() {
    assert_error(
        &format!(
            r#"[server]
close_timeout = "10x"
{LISTENER}{POOL}{ROUTE}"#
        ),
        "t.toml:2:17: server.close_timeout: ",
        "invalid duration \"10x\"",
    );
}

/// Checked values (CIDRs, host patterns) are refused where they are written, by
/// serde, instead of being re-parsed (and silently dropped) at run time.
#[test]
fn bad_cidr_and_host_are_located_at_the_value() {
    assert_error(
        &format!(
            r#"[limits]
exempt = ["10.0.0.0/8", "10.0.0.0/33"]
{LISTENER}{POOL}{ROUTE}"#
        ),
        "t.toml:2:25: limits.exempt[1]: ",
        "\"10.0.0.0/33\" is not a CIDR",
    );
    assert_error(
        &format!(
            r#"{LISTENER}{POOL}[[route]]
pool = "p"
host = "a b"
"#
        ),
        "t.toml:10:8: route[0].host: ",
        "\"a b\" is not a host name",
    );
}

#[test]
fn shutdown_timeout_must_exceed_drain_spread() {
    assert_error(
        &format!(
            r#"[server]
drain_spread = "30s"
shutdown_timeout = "30s"
{LISTENER}{POOL}{ROUTE}"#
        ),
        "t.toml:3:1: server.shutdown_timeout: ",
        "longer than drain_spread",
    );
}
