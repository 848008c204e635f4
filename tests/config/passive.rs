//! Passive health keys: outlier detection (consecutive failures, ejection
//! times, percentages) by default, nginx's `max_fails`/`fail_timeout` when either
//! of those is set; each wrong value located.

use super::*;

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
