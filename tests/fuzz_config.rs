//! Property-based fuzzing of the config loader (`Config::parse`, the real code):
//! arbitrary TOML, mostly a valid file with values swapped for other types and
//! ranges, keys added, removed or misspelt, sections repeated, lines garbled, and
//! sometimes plain bytes. Invariants: never a panic, and every error names the file
//! and a line and column inside the text (and is printed as `file:line:column:`).
//!
//! Backend addresses stay IP literals, so no case makes the loader ask a resolver.
//! `FUZZ_SECS=600 cargo test --release --test fuzz_config -- --nocapture` for a long run.
mod common;
use common::fuzz::fuzz;
use proptest::prelude::*;
use std::path::Path;
use wsgate::config::Config;

/// Keys of a valid file, section by section: (section header, key, a valid value).
const BASE: &[(&str, &str, &str)] = &[
    ("[server]", "close_timeout", "\"5s\""),
    ("[server]", "drain_spread", "\"10s\""),
    ("[limits]", "max_connections", "100"),
    ("[limits]", "message_rate", "10.5"),
    ("[limits]", "on_exceed", "\"close\""),
    ("[limits]", "exempt", r#"["127.0.0.0/8", "::1/128"]"#),
    ("[limits]", "validate_utf8", "true"),
    ("[limits]", "idle_timeout", "\"90s\""),
    ("[[listener]]", "address", "\"127.0.0.1:8443\""),
    ("[[listener]]", "cert", "\"fullchain.pem\""),
    ("[[listener]]", "key", "\"key.pem\""),
    ("[[listener]]", "min_version", "\"1.2\""),
    ("[[pool]]", "name", "\"p\""),
    ("[[pool]]", "balance", "\"least_conn\""),
    ("[[pool]]", "max_fails", "3"),
    ("[[route]]", "pool", "\"p\""),
    ("[[route]]", "host", "\"*.example.com\""),
    ("[[route]]", "path_prefix", "\"/chat\""),
    (
        "[[route]]",
        "allowed_origins",
        r#"["https://a.example.com"]"#,
    ),
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e400".to_string()),
        Just("nan".to_string()),
        Just("\"\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("\"-5s\"".to_string()),
        Just("\"99999999999999h\"".to_string()),
        Just("\"300.0.0.1/40\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just(r#"[1, "a"]"#.to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "\\PC{0,20}".prop_map(|s| format!("{s:?}")),
        "[ -~]{0,20}",
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Keep,
    Drop,
    Value(String),
    Rename(String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        12 => Just(Edit::Keep),
        1 => Just(Edit::Drop),
        2 => value().prop_map(Edit::Value),
        1 => "[a-z_]{1,14}".prop_map(Edit::Rename),
    ]
}

fn file() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(edit(), BASE.len()),
        proptest::collection::vec("[ -~]{0,30}", 0..3),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
        prop_oneof![8 => Just(None), 1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(Some)],
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.05),
        "\\PC{0,200}",
        prop_oneof![
            Just("127.0.0.1:9000"),
            Just("[::1]:9000"),
            Just("127.0.0.1:0"),
            Just("127.0.0.1"),
            Just("127.0.0.1:99999"),
            Just(""),
        ],
    )
        .prop_map(
            |(edits, junk, junk_at, mutation, cut, random, random_text, backend)| {
                if random {
                    return random_text;
                }
                let mut lines = Vec::new();
                let mut section = "";
                for ((sec, key, val), e) in BASE.iter().zip(edits) {
                    if *sec != section {
                        lines.push(String::new());
                        lines.push(sec.to_string());
                        section = sec;
                    }
                    match e {
                        Edit::Keep => lines.push(format!("{key} = {val}")),
                        Edit::Drop => {}
                        Edit::Value(v) => lines.push(format!("{key} = {v}")),
                        Edit::Rename(k) => lines.push(format!("{k} = {val}")),
                    }
                }
                for (j, at) in junk.into_iter().zip(junk_at) {
                    let i = at.index(lines.len() + 1);
                    lines.insert(i, j);
                }
                let mut text = lines.join("\n").into_bytes();
                if let Some((i, b)) = mutation {
                    let i = i.index(text.len());
                    text[i] = b;
                }
                if cut {
                    text.truncate(text.len() / 2);
                }
                let mut text = String::from_utf8_lossy(&text).into_owned();
                // The backend last, never garbled: an IP literal (or no address).
                text.push_str(&format!(
                    r#"

[[pool.backend]]
address = "{backend}"
"#
                ));
                text
            },
        )
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let lines = text.lines().count().max(1);
    match Config::parse(text, Path::new("fuzz.toml")) {
        Ok(_) => Ok(()),
        Err(e) => {
            let problems = e.problems();
            prop_assert!(!problems.is_empty(), "an error without a location: {}", e);
            for p in problems {
                prop_assert!(
                    p.line >= 1 && p.line <= lines + 1 && p.column >= 1,
                    "problem outside the text ({} lines): {}",
                    lines,
                    p
                );
                prop_assert!(!p.message.is_empty(), "a problem without a message: {}", p);
            }
            let shown = e.to_string();
            prop_assert!(shown.starts_with("fuzz.toml:"), "not located: {}", shown);
            Ok(())
        }
    }
}

#[test]
fn every_config_error_is_located() {
    fuzz("config", 300, file(), |text| check(&text));
}

#[test]
fn base_file_is_valid() {
    let text = BASE
        .iter()
        .fold((String::new(), ""), |(mut s, sec), (section, k, v)| {
            if *section != sec {
                s.push_str(&format!("\n{section}\n"));
            }
            s.push_str(&format!("{k} = {v}\n"));
            (s, section)
        })
        .0
        + r#"
[[pool.backend]]
address = "127.0.0.1:9000"
"#;
    if let Err(e) = Config::parse(&text, Path::new("fuzz.toml")) {
        panic!("{e}\n{text}");
    }
}
