//! `[[route]]`: its pool or weighted pools, `path_prefix`, Origin patterns,
//! match conditions.

use super::*;

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
