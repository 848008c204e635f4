//! Configuration errors name file, line, column and key (`file:line:col: key: message`),
//! and the `wsgate` command line: `check` and `--version`.

mod cli;
mod listeners;
mod passive;
mod pools;
mod routes;
mod source_addresses;
mod values;
mod words;

use std::path::Path;
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

/// Asserts the single error is about `key` and says `says`.
fn assert_key(text: &str, key: &str, says: &str) {
    let e = error(text);
    assert!(!e.contains('\n'), "more than one problem: {e}");
    assert!(e.starts_with("t.toml:"), "{e}");
    assert!(e.contains(&format!(": {key}: ")), "not about {key}: {e}");
    assert!(e.contains(says), "message lacks {says:?}: {e}");
}

#[test]
fn the_base_config_is_valid() {
    Config::parse(&format!("{LISTENER}{POOL}{ROUTE}"), Path::new("t.toml")).unwrap();
    Config::parse(&format!("{TLS_LISTENER}{POOL}{ROUTE}"), Path::new("t.toml")).unwrap();
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
