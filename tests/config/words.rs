//! Config errors in the words of a TOML file, through the real loader: a value of the
//! wrong type says what is expected and what was found (`expected a whole number,
//! found the text "2"`), a misspelt key gets `did you mean`, a route that duplicates
//! another names it and its `file:line`, and `wsgate check` prints them.

use super::*;
use std::process::Command;

#[test]
fn a_whole_number_given_as_text() {
    assert_eq!(
        error(&format!("{LISTENER}{POOL}weight = \"2\"\n{ROUTE}")),
        r#"t.toml:8:10: pool[0].backend[0].weight: expected a whole number, found the text "2""#
    );
}

#[test]
fn a_whole_number_given_as_a_fraction_true_or_a_date() {
    for (value, found) in [
        ("2.5", "the number 2.5"),
        ("true", "true"),
        ("[1]", "a list"),
        ("{ a = 1 }", "a table"),
        ("1979-05-27T07:32:00Z", "a date"),
    ] {
        assert_eq!(
            error(&format!("{LISTENER}{POOL}weight = {value}\n{ROUTE}")),
            format!(
                "t.toml:8:10: pool[0].backend[0].weight: expected a whole number, found {found}"
            ),
        );
    }
}

#[test]
fn a_whole_number_out_of_range_gives_the_range() {
    assert_eq!(
        error(&format!("{LISTENER}{POOL}weight = -1\n{ROUTE}")),
        "t.toml:8:10: pool[0].backend[0].weight: expected a whole number from 0 to 4294967295, found the number -1"
    );
}

#[test]
fn a_whole_number_in_server() {
    assert_eq!(
        error(&format!(
            "[server]\nmax_header_bytes = \"big\"\n{LISTENER}{POOL}{ROUTE}"
        )),
        r#"t.toml:2:20: server.max_header_bytes: expected a whole number, found the text "big""#
    );
}

#[test]
fn a_number() {
    assert_eq!(
        error(&format!(
            "[limits]\nmessage_rate = \"fast\"\n{LISTENER}{POOL}{ROUTE}"
        )),
        r#"t.toml:2:16: limits.message_rate: expected a number, found the text "fast""#
    );
}

#[test]
fn true_or_false() {
    assert_eq!(
        error(&format!("{LISTENER}strict_sni = \"yes\"\n{POOL}{ROUTE}")),
        r#"t.toml:4:14: listener[0].strict_sni: expected true or false, found the text "yes""#
    );
}

#[test]
fn a_list() {
    assert_eq!(
        error(&format!(
            "{LISTENER}{POOL}{ROUTE}allowed_origins = \"https://a.example\"\n"
        )),
        r#"t.toml:10:19: route[0].allowed_origins: expected a list (for example ["a", "b"]), found the text "https://a.example""#
    );
}

#[test]
fn a_table() {
    assert_eq!(
        error(&format!(
            "{LISTENER}[[pool]]\nname = \"p\"\nhealth = 5\n[[pool.backend]]\naddress = \"127.0.0.1:9\"\n{ROUTE}"
        )),
        "t.toml:6:10: pool[0].health: expected a table, found the number 5"
    );
}

#[test]
fn text() {
    assert_eq!(
        error(&format!("{LISTENER}{POOL}[[route]]\npool = 5\n")),
        "t.toml:9:8: route[0].pool: expected text, found the number 5"
    );
    assert_eq!(
        error(&format!("{LISTENER}{POOL}{ROUTE}path_prefix = [\"/a\"]\n")),
        "t.toml:10:15: route[0].path_prefix: expected text, found a list"
    );
}

#[test]
fn the_project_s_own_messages_are_kept() {
    assert_eq!(
        error(&format!(
            "[server]\nclose_timeout = \"10x\"\n{LISTENER}{POOL}{ROUTE}"
        )),
        r#"t.toml:2:17: server.close_timeout: invalid duration "10x": expected a whole number followed by ms, s, m or h (e.g. "10s")"#
    );
}

#[test]
fn a_misspelt_key_gets_did_you_mean() {
    assert_eq!(
        error(&format!(
            "{LISTENER}[[pool]]\nname = \"p\"\n[[pool.backend]]\nadress = \"127.0.0.1:9\"\n{ROUTE}"
        )),
        "t.toml:7:1: pool[0].backend[0].adress: unknown field `adress`, did you mean `address`?"
    );
    assert_eq!(
        error(&format!("{LISTENER}{POOL}wieght = 2\n{ROUTE}")),
        "t.toml:8:1: pool[0].backend[0].wieght: unknown field `wieght`, did you mean `weight`?"
    );
    assert_eq!(
        error(&format!("{LISTENER}strict-sni = true\n{POOL}{ROUTE}")),
        "t.toml:4:1: listener[0].strict-sni: unknown field `strict-sni`, did you mean `strict_sni`?"
    );
}

#[test]
fn a_key_close_to_none_lists_eight_valid_keys() {
    assert_eq!(
        error(&format!("{LISTENER}bogus = 1\n{POOL}{ROUTE}")),
        "t.toml:4:1: listener[0].bogus: unknown field `bogus`, expected one of `name`, `address`, \
         `tls`, `cert`, `key`, `certificate`, `strict_sni`, `session_tickets`, … (16 in all)"
    );
    assert_eq!(
        error(&format!("{LISTENER}{POOL}bogus = 1\n{ROUTE}")),
        "t.toml:8:1: pool[0].backend[0].bogus: unknown field `bogus`, expected one of `address`, \
         `resolve`, `weight`, `drain`, `health`"
    );
}

#[test]
fn a_misspelt_value_gets_did_you_mean() {
    assert_eq!(
        error(&format!(
            "{LISTENER}[[pool]]\nname = \"p\"\nbalance = \"least_con\"\n[[pool.backend]]\naddress = \"127.0.0.1:9\"\n{ROUTE}"
        )),
        "t.toml:6:11: pool[0].balance: unknown variant `least_con`, did you mean `least_conn`?"
    );
}

#[test]
fn a_duplicate_route_names_the_first_by_name() {
    let text = format!(
        "{LISTENER}{POOL}[[route]]\nname = \"chat\"\npool = \"p\"\npath_prefix = \"/chat\"\n\
         [[route]]\npool = \"p\"\npath_prefix = \"/chat\"\n"
    );
    assert_eq!(
        error(&text),
        "t.toml:14:1: route[1].path_prefix: route \"chat\" at t.toml:8 already has this host, \
         path_prefix and match conditions"
    );
}

/// The second route's `path_prefix` is the default one, so the finding is at its
/// `[[route]]` line.
#[test]
fn a_duplicate_route_names_the_first_by_index() {
    let text = format!(
        "{LISTENER}{POOL}{ROUTE}host = \"a.example\"\n{ROUTE}path_prefix = \"/x\"\n\
         {ROUTE}host = \"a.example\"\n"
    );
    assert_eq!(
        error(&text),
        "t.toml:14:1: route[2].path_prefix: route[0] at t.toml:8 already has this host, \
         path_prefix and match conditions"
    );
}

#[test]
fn a_duplicate_route_name_names_the_first() {
    let text = format!(
        "{LISTENER}{POOL}[[route]]\nname = \"r\"\npool = \"p\"\n\
         [[route]]\nname = \"r\"\npool = \"p\"\npath_prefix = \"/x\"\n"
    );
    assert_eq!(
        error(&text),
        "t.toml:12:1: route[1].name: duplicate route name \"r\": route[0] at t.toml:9 has it too"
    );
}

#[test]
fn check_prints_the_words() {
    let dir = std::env::temp_dir().join(format!("wsgate-config-words-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("words.toml");
    std::fs::write(&file, format!("{LISTENER}{POOL}weight = \"2\"\n{ROUTE}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["check", "-c", file.to_str().unwrap()])
        .output()
        .expect("run wsgate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{}:8:10: pool[0].backend[0].weight: expected a whole number, found the text \"2\"",
            file.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
