//! `source_addresses` (issue 22): IP literals of the backends' families.

use super::*;

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
