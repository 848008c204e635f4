//! Configuration errors name file, line, column and key (`file:line:col: key: message`),
//! and the `wsgate` command line: `check` and `--version`.

use std::path::Path;
use std::process::Command;
use wsgate::config::Config;

const LISTENER: &str = r#"[[listener]]
address = "127.0.0.1:0"
tls = false
"#;
const POOL: &str = r#"[[pool]]
name = "p"
[[pool.backend]]
address = "127.0.0.1:9"
"#;
const ROUTE: &str = r#"[[route]]
pool = "p"
"#;
/// A TLS listener whose files are never read (parsing does not load them).
const TLS_LISTENER: &str = r#"[[listener]]
address = "127.0.0.1:0"
cert = "c.pem"
key = "k.pem"
"#;

/// The error `Config::parse` gives for `text` read as `t.toml`.
fn error(text: &str) -> String {
    match Config::parse(text, Path::new("t.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts the single error starts with `prefix` (`t.toml:L:C: key: `) and its
/// message contains `says`.
fn assert_error(text: &str, prefix: &str, says: &str) {
    let e = error(text);
    assert!(!e.contains('\n'), "more than one problem: {e}");
    assert!(e.starts_with(prefix), "expected {prefix:?}..., got: {e}");
    assert!(e.contains(says), "message lacks {says:?}: {e}");
}

#[test]
fn the_base_config_is_valid() {
    Config::parse(&format!("{LISTENER}{POOL}{ROUTE}"), Path::new("t.toml")).unwrap();
    Config::parse(&format!("{TLS_LISTENER}{POOL}{ROUTE}"), Path::new("t.toml")).unwrap();
}

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
        "invalid type: string \"big\"",
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

// ---------------------------------------------------------------------------
// Semantic checks.

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
fn route_to_a_missing_pool() {
    assert_error(
        &format!(
            r#"{LISTENER}{POOL}[[route]]
pool = "nope"
"#
        ),
        "t.toml:9:1: route[0].pool: ",
        "no [[pool]] is named \"nope\"",
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
fn path_prefix_without_slash() {
    assert_error(
        &format!(
            r#"{LISTENER}{POOL}[[route]]
pool = "p"
path_prefix = "chat"
"#
        ),
        "t.toml:10:1: route[0].path_prefix: ",
        "must start with '/'",
    );
}

#[test]
fn bad_origin_pattern() {
    assert_error(
        &format!(
            r#"{LISTENER}{POOL}[[route]]
pool = "p"
allowed_origins = ["https://ok.example", "chat.example.com"]
"#
        ),
        "t.toml:10:42: route[0].allowed_origins[1]: ",
        "\"chat.example.com\" is not an origin",
    );
}

#[test]
fn every_problem_is_reported_on_its_own_line() {
    let e = error(&format!(
        r#"{LISTENER}{POOL}weight = 0
[[route]]
pool = "nope"
"#
    ));
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 2, "{e}");
    assert!(lines.iter().all(|l| l.starts_with("t.toml:")), "{e}");
}

// ---------------------------------------------------------------------------
// The command line.

fn wsgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run wsgate")
}

#[test]
fn check_accepts_the_shipped_example_config() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/wsgate.toml");
    if !conf.exists() {
        println!("skipped: {} does not exist yet", conf.display());
        return;
    }
    let out = wsgate(&["check", "-c", "conf/wsgate.toml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
}

#[test]
fn check_refuses_a_broken_file_on_stderr() {
    let dir = std::env::temp_dir().join(format!("wsgate-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.toml");
    std::fs::write(&file, format!("{LISTENER}{POOL}weight = 0\n{ROUTE}")).unwrap();
    let out = wsgate(&["check", "-c", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let expected = format!("{}:8:1: pool[0].backend[0].weight: ", file.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_refuses_a_missing_file() {
    let out = wsgate(&["check", "-c", "/nonexistent/wsgate.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("/nonexistent/wsgate.toml"), "{stderr}");
}

#[test]
fn version_prints_the_version() {
    let out = wsgate(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("wsgate {}", env!("CARGO_PKG_VERSION"))
    );
}

// ---------------------------------------------------------------------------
// Plain HTTP, sticky cookies, match conditions, weighted pools.

/// Asserts the single error is about `key` and says `says`.
fn assert_key(text: &str, key: &str, says: &str) {
    let e = error(text);
    assert!(!e.contains('\n'), "more than one problem: {e}");
    assert!(e.starts_with("t.toml:"), "{e}");
    assert!(e.contains(&format!(": {key}: ")), "not about {key}: {e}");
    assert!(e.contains(says), "message lacks {says:?}: {e}");
}

const TWO_POOLS: &str = r#"[[pool]]
name = "p"
[[pool.backend]]
address = "127.0.0.1:9"
[[pool]]
name = "q"
[[pool.backend]]
address = "127.0.0.1:10"
"#;

#[test]
fn route_pools_are_checked() {
    let r = |route: &str| format!("{LISTENER}{TWO_POOLS}[[route]]\n{route}");
    assert_key(
        &r(r#"pool = "p"
pools = [{ pool = "q", weight = 1 }]
"#),
        "route[0].pools",
        "either pool or pools",
    );
    assert_key(
        &r(r#"path_prefix = "/"
"#),
        "route[0].pool",
        "needs pool",
    );
    assert_key(
        &r(
            r#"pools = [{ pool = "p", weight = 0 }, { pool = "q", weight = 0 }]
"#,
        ),
        "route[0].pools",
        "weight above 0",
    );
    assert_key(
        &r(
            r#"pools = [{ pool = "p", weight = 1 }, { pool = "x", weight = 1 }]
"#,
        ),
        "route[0].pools[1].pool",
        "no [[pool]] is named \"x\"",
    );
    assert_key(
        &r(
            r#"pools = [{ pool = "p", weight = 1 }, { pool = "p", weight = 2 }]
"#,
        ),
        "route[0].pools[1].pool",
        "listed twice",
    );
    assert_key(
        &r(r#"pools = [{ pool = "p", weight = 10001 }]
"#),
        "route[0].pools[0].weight",
        "between 0 and 10000",
    );
    assert_key(
        &r(r#"pool = "p"
split_cookie = "uid"
"#),
        "route[0].split_cookie",
        "only meaningful together with pools",
    );
    assert_key(
        &r(r#"pool = "p"
http = "maybe"
"#),
        "route[0].http",
        "unknown variant `maybe`",
    );
    Config::parse(
        &r(
            r#"pools = [{ pool = "p", weight = 95 }, { pool = "q", weight = 5 }]
split_cookie = "uid"
http = "proxy"
"#,
        ),
        Path::new("t.toml"),
    )
    .unwrap();
}

#[test]
fn match_conditions_are_checked() {
    let r = |route: &str| {
        format!(
            r#"{LISTENER}{POOL}[[route]]
pool = "p"
{route}"#
        )
    };
    assert_key(
        &r(
            r#"match_header = { name = "X-A", value = "1", prefix = "1" }
"#,
        ),
        "route[0].match_header.value",
        "exactly one of value",
    );
    assert_key(
        &r(r#"match_cookie = { name = "a" }
"#),
        "route[0].match_cookie.value",
        "exactly one of value",
    );
    assert_key(
        &r(r#"match_header = { name = "Host", value = "x" }
"#),
        "route[0].match_header.name",
        "cannot be matched",
    );
    assert_key(
        &r(r#"match_header = { name = "X A", value = "x" }
"#),
        "route[0].match_header.name",
        "not a header name",
    );
    assert_key(
        &r(r#"match_query = { name = "", value = "x" }
"#),
        "route[0].match_query.name",
        "must not be empty",
    );
    // The same host and prefix twice is fine when the conditions differ, not otherwise.
    let base = format!(
        r#"{LISTENER}{POOL}[[route]]
pool = "p"
"#
    );
    let canary = r#"[[route]]
pool = "p"
match_header = { name = "x-canary", value = "1" }
"#;
    Config::parse(&format!("{base}{canary}"), Path::new("t.toml")).unwrap();
    assert_key(
        &format!("{base}{canary}{canary}"),
        "route[2].path_prefix",
        "already has this host, path_prefix and match conditions",
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

// ---------------------------------------------------------------------------
// `source_addresses` (issue 22): IP literals of the backends' families.

/// `[[pool]]` "p" with `source_addresses = <list>` (line 5) and `backends`
/// (`address` lines from line 7 on).
fn sources_pool(list: &str, backends: &[&str]) -> String {
    let mut s = format!("{LISTENER}[[pool]]\nname = \"p\"\nsource_addresses = {list}\n");
    for b in backends {
        s += &format!("[[pool.backend]]\naddress = \"{b}\"\n");
    }
    s + ROUTE
}

#[test]
fn source_addresses_are_checked_where_they_are_written() {
    let ok = sources_pool(r#"["127.0.0.1", "127.0.0.2"]"#, &["127.0.0.1:9"]);
    let cfg = Config::parse(&ok, Path::new("t.toml")).unwrap();
    assert_eq!(cfg.pools[0].source_addresses.len(), 2);
    let mixed = sources_pool(r#"["127.0.0.1", "::1"]"#, &["127.0.0.1:9", "[::1]:9"]);
    Config::parse(&mixed, Path::new("t.toml")).unwrap();
    // Not an IP literal (a host name is not accepted): serde's own error, located.
    assert_error(
        &sources_pool(r#"["127.0.0.1", "localhost"]"#, &["127.0.0.1:9"]),
        "t.toml:6:34: pool[0].source_addresses[1]: ",
        "invalid IP address syntax",
    );
    for (list, col, says) in [
        (r#"["0.0.0.0"]"#, 21, "name a specific local address"),
        (r#"["224.0.0.1"]"#, 21, "not a unicast address"),
        (r#"["127.0.0.1", "127.0.0.1"]"#, 34, "listed twice"),
        (r#"["::1"]"#, 21, "IPv6 but no backend of this pool is"),
    ] {
        let text = sources_pool(list, &["127.0.0.1:9"]);
        let e = error(&text);
        assert!(
            e.contains(&format!("t.toml:6:{col}: pool[0].source_addresses[")) && e.contains(says),
            "{list}: {e}"
        );
    }
    // A backend with no source address of its family.
    let text = sources_pool(r#"["127.0.0.1"]"#, &["127.0.0.1:9", "[::1]:9"]);
    assert_error(
        &text,
        "t.toml:6:1: pool[0].source_addresses: ",
        "backend [::1]:9 is IPv6 but no source address is",
    );
}

/// Pool `p` with the pool keys `keys` (each on a line from line 6 on), one backend and a route.
fn pool_with(keys: &str) -> String {
    format!(
        r#"{LISTENER}[[pool]]
name = "p"
{keys}
[[pool.backend]]
address = "127.0.0.1:9"
{ROUTE}"#
    )
}

#[test]
fn passive_check_keys_are_checked_and_located() {
    for (keys, prefix, says) in [
        (
            "max_ejection_percent = 101",
            "t.toml:6:1: pool[0].max_ejection_percent: ",
            "percentage",
        ),
        (
            "panic_threshold = 150",
            "t.toml:6:1: pool[0].panic_threshold: ",
            "percentage",
        ),
        (
            "consecutive_failures = 3\nbase_ejection_time = \"0s\"",
            "t.toml:7:1: pool[0].base_ejection_time: ",
            "greater than zero",
        ),
        (
            "base_ejection_time = \"60s\"\nmax_ejection_time = \"10s\"",
            "t.toml:7:1: pool[0].max_ejection_time: ",
            "at least base_ejection_time",
        ),
        (
            "max_fails = 2\nconsecutive_failures = 3",
            "t.toml:7:1: pool[0].consecutive_failures: ",
            "cannot be combined with max_fails/fail_timeout",
        ),
        (
            "fail_timeout = \"5s\"\nmax_ejection_time = \"60s\"",
            "t.toml:7:1: pool[0].max_ejection_time: ",
            "cannot be combined",
        ),
        (
            "max_fails = 1\nfail_timeout = \"0s\"",
            "t.toml:7:1: pool[0].fail_timeout: ",
            "greater than zero when max_fails > 0",
        ),
    ] {
        assert_error(&pool_with(keys), prefix, says);
    }
}

#[test]
fn passive_checks_default_to_outlier_detection_and_nginx_keys_select_nginx() {
    use std::time::Duration;
    use wsgate::config::Passive;
    let parse = |keys: &str| Config::parse(&pool_with(keys), Path::new("t.toml")).unwrap();
    let c = parse("");
    assert_eq!(
        c.pools[0].passive,
        Some(Passive::Consecutive {
            failures: 5,
            base: Duration::from_secs(30),
            max: Duration::from_secs(300),
        })
    );
    assert_eq!(c.pools[0].outlier.max_ejection_percent, 10);
    assert_eq!(c.pools[0].outlier.panic_threshold, 50);
    assert_eq!(
        parse("max_fails = 1\nfail_timeout = \"2s\"").pools[0].passive,
        Some(Passive::Window {
            max_fails: 1,
            fail_timeout: Duration::from_secs(2),
        })
    );
    assert_eq!(
        parse("fail_timeout = \"3s\"").pools[0].passive,
        Some(Passive::Window {
            max_fails: 1,
            fail_timeout: Duration::from_secs(3),
        }),
        "either nginx key selects nginx's checks"
    );
    assert_eq!(parse("max_fails = 0").pools[0].passive, None);
    assert_eq!(parse("consecutive_failures = 0").pools[0].passive, None);
    // A base above the default max raises the max with it.
    assert_eq!(
        parse("base_ejection_time = \"600s\"").pools[0].passive,
        Some(Passive::Consecutive {
            failures: 5,
            base: Duration::from_secs(600),
            max: Duration::from_secs(600),
        })
    );
}
