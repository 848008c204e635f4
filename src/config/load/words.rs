//! serde's error text in the words of a TOML file: `expected a whole number, found
//! the text "2"` rather than `invalid type: string "2", expected u32`, and `did you
//! mean `address`?` for a misspelt key.
//!
//! serde's messages are stable (`invalid type: X, expected Y`, `invalid value: ...`,
//! `invalid length N, expected Y`, `unknown field `x`, expected one of ...`, `unknown
//! variant ...`); anything else, such as the messages of the project's own types
//! (durations, CIDRs, addresses), is kept as it is.

/// How many valid keys an unknown key's message lists before `…`.
const LISTED: usize = 8;

/// `msg`, a serde error's text, in the words of a TOML file; `msg` itself when its
/// shape is not one serde writes. `value` is the text of the value it is about, when
/// known (serde calls a date a map).
pub(super) fn translate(msg: &str, value: Option<&str>) -> String {
    if let Some(rest) = msg.strip_prefix("invalid type: ")
        && let Some((found, expected)) = split_expected(rest)
    {
        let found = found_words(found, value);
        return format!("expected {}, found {found}", expected_words(expected));
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ")
        && let Some((found, expected)) = split_expected(rest)
    {
        let expected = match integer_range(expected) {
            Some((lo, hi)) => format!("a whole number from {lo} to {hi}"),
            None => expected_words(expected),
        };
        return format!("expected {expected}, found {}", found_words(found, value));
    }
    if let Some(rest) = msg.strip_prefix("invalid length ")
        && let Some((len, expected)) = rest.split_once(", expected ")
        && let Ok(len) = len.parse::<usize>()
    {
        let items = if len == 1 { "item" } else { "items" };
        return format!("expected {}, found {len} {items}", expected_words(expected));
    }
    for what in ["field", "variant"] {
        if let Some(m) = unknown(msg, what) {
            return m;
        }
    }
    msg.to_string()
}

/// `X, expected Y` split into `X` and `Y`. A found string is written with Rust's
/// escapes and may itself hold `, expected `, so it is skipped whole.
fn split_expected(rest: &str) -> Option<(&str, &str)> {
    let found_len = match rest.strip_prefix("string \"") {
        Some(s) => "string \"".len() + quoted_len(s)?,
        None => rest.find(", expected ")?,
    };
    let (found, after) = rest.split_at(found_len);
    Some((found, after.strip_prefix(", expected ")?))
}

/// The length of `s` up to and including the first quote no backslash escapes.
fn quoted_len(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// serde's name of a found value (`string "2"`, `integer `5``, `sequence`) in TOML's.
fn found_words(found: &str, value: Option<&str>) -> String {
    if let Some(s) = found.strip_prefix("string ") {
        return format!("the text {s}");
    }
    if let Some(c) = found.strip_prefix("character ") {
        return format!("the text \"{}\"", c.trim_matches('`'));
    }
    for prefix in ["integer ", "floating point "] {
        if let Some(n) = found.strip_prefix(prefix) {
            return format!("the number {}", n.trim_matches('`'));
        }
    }
    if let Some(b) = found.strip_prefix("boolean ") {
        return b.trim_matches('`').to_string();
    }
    match found {
        "sequence" => "a list".into(),
        "map" if value.is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit())) => {
            "a date".into()
        }
        "map" => "a table".into(),
        other => other.into(),
    }
}

/// serde's name of an expected type (`u32`, `a sequence`, `struct HealthConf`) in
/// TOML's; a description of the project's own (`a duration such as "10s"`) as it is.
fn expected_words(expected: &str) -> String {
    if integer_range(expected).is_some() {
        return "a whole number".into();
    }
    let words = match expected {
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a sequence" => "a list (for example [\"a\", \"b\"])",
        "a map" => "a table",
        "a string" | "a borrowed string" | "a character" | "path string" => "text",
        "socket address" => "an address (for example \"127.0.0.1:8443\")",
        "IP address" => "an IP address (for example \"10.0.0.1\")",
        s if s.starts_with("struct ") => "a table",
        other => other,
    };
    words.into()
}

/// The range of serde's integer type named `ty`.
fn integer_range(ty: &str) -> Option<(i128, u128)> {
    let range = match ty {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" => (0, u64::MAX.into()),
        "usize" => (0, usize::MAX as u128),
        "i8" => (i8::MIN.into(), i8::MAX as u128),
        "i16" => (i16::MIN.into(), i16::MAX as u128),
        "i32" => (i32::MIN.into(), i32::MAX as u128),
        "i64" => (i64::MIN.into(), i64::MAX as u128),
        "isize" => (isize::MIN as i128, isize::MAX as u128),
        _ => return None,
    };
    Some(range)
}

/// `unknown field `adress`, expected one of ...` (or `variant`): the valid name it is
/// close to, else the valid names (at most `LISTED` of them).
fn unknown(msg: &str, what: &str) -> Option<String> {
    let rest = msg.strip_prefix(&format!("unknown {what} `"))?;
    let (name, rest) = rest.split_once('`')?;
    let head = format!("unknown {what} `{name}`");
    let valid: Vec<&str> = if let Some(list) = rest.strip_prefix(", expected one of ") {
        backticked(list)?
    } else if let Some(one) = rest.strip_prefix(", expected ") {
        backticked(one)?
    } else {
        return Some(msg.to_string());
    };
    if let Some(close) = closest(name, &valid) {
        return Some(format!("{head}, did you mean `{close}`?"));
    }
    let shown: Vec<String> = valid
        .iter()
        .take(LISTED)
        .map(|v| format!("`{v}`"))
        .collect();
    let mut out = match valid.len() {
        1 => format!("{head}, expected {}", shown[0]),
        _ => format!("{head}, expected one of {}", shown.join(", ")),
    };
    if valid.len() > LISTED {
        out.push_str(&format!(", … ({} in all)", valid.len()));
    }
    Some(out)
}

/// `` `a`, `b` `` as `a` and `b`; `None` unless that is the whole of `list`.
fn backticked(list: &str) -> Option<Vec<&str>> {
    list.split(", ")
        .map(|item| item.strip_prefix('`')?.strip_suffix('`'))
        .collect()
}

/// The valid name `name` is most likely a misspelling of: within two edits (one for
/// a name of three letters or fewer), or the only one it begins or is begun by.
fn closest<'a>(name: &str, valid: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let limit = if lower.chars().count() <= 3 { 1 } else { 2 };
    let best = valid
        .iter()
        .map(|v| (edit_distance(&lower, &v.to_lowercase()), *v))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d);
    if let Some((_, v)) = best {
        return Some(v);
    }
    let prefixed: Vec<&str> = valid
        .iter()
        .copied()
        .filter(|v| {
            let v = v.to_lowercase();
            let (short, long) = if v.len() < lower.len() {
                (&v, &lower)
            } else {
                (&lower, &v)
            };
            short.chars().count() >= 3 && long.starts_with(short.as_str())
        })
        .collect();
    match prefixed[..] {
        [only] => Some(only),
        _ => None,
    }
}

/// Edits (insert, delete, replace, swap two neighbours) from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: the distance between a[..i] and b[..j].
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    d[0] = (0..=b.len()).collect();
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_types_in_toml_words() {
        for (serde, words) in [
            (
                r#"invalid type: string "2", expected u32"#,
                r#"expected a whole number, found the text "2""#,
            ),
            (
                "invalid type: floating point `2.5`, expected usize",
                "expected a whole number, found the number 2.5",
            ),
            (
                r#"invalid type: string "fast", expected f64"#,
                r#"expected a number, found the text "fast""#,
            ),
            (
                r#"invalid type: string "yes", expected a boolean"#,
                r#"expected true or false, found the text "yes""#,
            ),
            (
                r#"invalid type: string "https://a", expected a sequence"#,
                r#"expected a list (for example ["a", "b"]), found the text "https://a""#,
            ),
            (
                "invalid type: integer `5`, expected struct HealthConf",
                "expected a table, found the number 5",
            ),
            (
                "invalid type: integer `5`, expected a string",
                "expected text, found the number 5",
            ),
            (
                "invalid type: boolean `true`, expected i64",
                "expected a whole number, found true",
            ),
            (
                "invalid type: sequence, expected a map",
                "expected a table, found a list",
            ),
            (
                "invalid type: map, expected path string",
                "expected text, found a table",
            ),
            (
                r#"invalid type: integer `10`, expected a duration such as "10s""#,
                r#"expected a duration such as "10s", found the number 10"#,
            ),
        ] {
            assert_eq!(translate(serde, None), words, "{serde}");
        }
    }

    #[test]
    fn a_found_string_may_hold_the_separator() {
        assert_eq!(
            translate(
                r#"invalid type: string "a\", expected b", expected u8"#,
                None
            ),
            r#"expected a whole number, found the text "a\", expected b""#
        );
    }

    #[test]
    fn invalid_values_give_the_range() {
        assert_eq!(
            translate("invalid value: integer `-1`, expected u32", None),
            "expected a whole number from 0 to 4294967295, found the number -1"
        );
        assert_eq!(
            translate("invalid value: integer `300`, expected i8", None),
            "expected a whole number from -128 to 127, found the number 300"
        );
        assert_eq!(
            translate(r#"invalid value: string "x", expected a port"#, None),
            r#"expected a port, found the text "x""#
        );
    }

    #[test]
    fn invalid_length() {
        assert_eq!(
            translate("invalid length 3, expected a tuple of size 2", None),
            "expected a tuple of size 2, found 3 items"
        );
    }

    #[test]
    fn an_unknown_key_close_to_a_valid_one_is_suggested() {
        assert_eq!(
            translate(
                "unknown field `adress`, expected one of `address`, `resolve`, `weight`, `drain`, `health`",
                None
            ),
            "unknown field `adress`, did you mean `address`?"
        );
        // A swap of two neighbours is one edit; case does not count.
        assert_eq!(
            translate(
                "unknown field `wieght`, expected one of `address`, `weight`",
                None
            ),
            "unknown field `wieght`, did you mean `weight`?"
        );
        assert_eq!(
            translate("unknown field `Weight`, expected `weight`", None),
            "unknown field `Weight`, did you mean `weight`?"
        );
        // A clear prefix.
        assert_eq!(
            translate(
                "unknown field `max_ejection`, expected one of `max_fails`, `max_ejection_percent`",
                None
            ),
            "unknown field `max_ejection`, did you mean `max_ejection_percent`?"
        );
        assert_eq!(
            translate(
                "unknown variant `least_con`, expected one of `round_robin`, `least_conn`",
                None
            ),
            "unknown variant `least_con`, did you mean `least_conn`?"
        );
    }

    #[test]
    fn an_unknown_key_far_from_all_lists_at_most_eight() {
        assert_eq!(
            translate(
                "unknown field `bogus`, expected one of `address`, `weight`",
                None
            ),
            "unknown field `bogus`, expected one of `address`, `weight`"
        );
        assert_eq!(
            translate(
                "unknown field `bogus`, expected one of `a1`, `a2`, `a3`, `a4`, `a5`, `a6`, `a7`, `a8`, `a9`, `a10`",
                None
            ),
            "unknown field `bogus`, expected one of `a1`, `a2`, `a3`, `a4`, `a5`, `a6`, `a7`, `a8`, … (10 in all)"
        );
        // Short names need a closer match; two prefixes are no clear one.
        assert_eq!(
            translate("unknown field `ab`, expected one of `tls`, `key`", None),
            "unknown field `ab`, expected one of `tls`, `key`"
        );
        assert_eq!(
            translate(
                "unknown field `max_`, expected one of `max_fails`, `max_ejection_percent`",
                None
            ),
            "unknown field `max_`, expected one of `max_fails`, `max_ejection_percent`"
        );
        assert_eq!(
            translate("unknown field `x`, there are no fields", None),
            "unknown field `x`, there are no fields"
        );
    }

    #[test]
    fn other_messages_are_kept() {
        for m in [
            "missing field `name`",
            "duplicate field `name`",
            r#"invalid duration "10x": expected a whole number followed by ms, s, m or h (e.g. "10s")"#,
            "wanted string or table",
            "invalid type: map",
            "invalid length x, expected 2",
            "",
        ] {
            assert_eq!(translate(m, None), m);
        }
    }

    #[test]
    fn a_date_is_no_table() {
        let m = "invalid type: map, expected u32";
        assert_eq!(
            translate(m, Some("1979-05-27T07:32:00Z")),
            "expected a whole number, found a date"
        );
        assert_eq!(
            translate(m, Some("{ a = 1 }")),
            "expected a whole number, found a table"
        );
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("adress", "address"), 1);
        assert_eq!(edit_distance("wieght", "weight"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
