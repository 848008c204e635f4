//! Refusals: one row each, all checked by `every_refusal_row`.

use super::*;

/// A request wsgate refuses with a one-line text body of its own: `status`, a
/// body containing `says`, `Connection: close` (plus any `connection` tokens),
/// exactly these `headers`, and never the backend's address.
struct Refusal {
    name: &'static str,
    setup: Setup,
    request: String,
    status: u16,
    says: &'static str,
    headers: &'static [(&'static str, &'static str)],
    connection: &'static [&'static str],
}

fn refused(
    name: &'static str,
    setup: Setup,
    request: String,
    status: u16,
    says: &'static str,
) -> Refusal {
    Refusal {
        name,
        setup,
        request,
        status,
        says,
        headers: &[],
        connection: &[],
    }
}

impl Refusal {
    fn headers(self, headers: &'static [(&'static str, &'static str)]) -> Refusal {
        Refusal { headers, ..self }
    }
    fn connection(self, connection: &'static [&'static str]) -> Refusal {
        Refusal { connection, ..self }
    }
}

#[expect(clippy::too_many_lines, reason = "a table: one row per refusal")]
fn refusals() -> Vec<Refusal> {
    use Setup::*;
    let all = [HOST, UPGRADE, CONN, KEY, VERSION];
    vec![
        refused("POST", Echo, head("POST / HTTP/1.1", &all), 405, "GET")
            .headers(&[("allow", "GET")]),
        refused(
            "HTTP/1.0",
            Echo,
            head("GET / HTTP/1.0", &all),
            505,
            "HTTP/1.1",
        ),
        // RFC 9110 section 7.8: whoever sends Upgrade also lists it in Connection.
        refused("a plain GET", Echo, get(&[HOST]), 426, "WebSocket")
            .headers(&[("upgrade", "websocket")])
            .connection(&["upgrade"]),
        refused(
            "Connection: keep-alive without Upgrade",
            Echo,
            get(&[HOST, UPGRADE, "Connection: keep-alive", KEY, VERSION]),
            400,
            "Connection",
        ),
        refused(
            "no Host",
            Echo,
            get(&[UPGRADE, CONN, KEY, VERSION]),
            400,
            "Host",
        ),
        // base64 of the 5 bytes "short"
        refused(
            "a key that is not 16 bytes",
            Echo,
            get(&[HOST, UPGRADE, CONN, "Sec-WebSocket-Key: c2hvcnQ=", VERSION]),
            400,
            "Sec-WebSocket-Key",
        ),
        refused(
            "version 8",
            Echo,
            get(&[HOST, UPGRADE, CONN, KEY, "Sec-WebSocket-Version: 8"]),
            426,
            "Sec-WebSocket-Version",
        )
        .headers(&[("sec-websocket-version", "13")]),
        refused(
            "a request with a body",
            Echo,
            get(&[HOST, UPGRADE, CONN, KEY, VERSION, "Content-Length: 5"]) + "hello",
            400,
            "body",
        ),
        refused(
            "an unrouted host",
            OnlyHost,
            upgrade_head("/", ""),
            404,
            "route",
        ),
        refused(
            "a head over max_header_bytes",
            SmallHeads,
            upgrade_with(&format!("X-Big: {}", "a".repeat(4096))),
            431,
            "header",
        ),
        refused(
            "an Origin not listed",
            Origins {
                allow_missing: false,
            },
            upgrade_with("Origin: https://evil.com"),
            403,
            "Origin",
        ),
        // The bare parent of the wildcard is not a subdomain of it.
        refused(
            "the wildcard's bare parent as Origin",
            Origins {
                allow_missing: false,
            },
            upgrade_with("Origin: https://example.org"),
            403,
            "Origin",
        ),
        refused(
            "no Origin",
            Origins {
                allow_missing: false,
            },
            upgrade_head("/", ""),
            403,
            "Origin",
        ),
        // allow_missing_origin does not open the door to a wrong Origin.
        refused(
            "an Origin not listed, missing ones allowed",
            Origins {
                allow_missing: true,
            },
            upgrade_with("Origin: https://evil.com"),
            403,
            "Origin",
        ),
        refused(
            "a backend's wrong Accept",
            WrongAccept,
            upgrade_head("/", ""),
            502,
            "Accept",
        ),
        refused(
            "a subprotocol the client did not offer",
            PicksSuperchat,
            upgrade_with("Sec-WebSocket-Protocol: chat"),
            502,
            "subprotocol",
        ),
        refused(
            "a backend that refuses connections",
            DeadBackend,
            upgrade_head("/", ""),
            502,
            "unreachable",
        ),
    ]
}

/// Sends one row's request to a proxy of its own and checks the answer.
async fn check_refusal(row: Refusal) {
    let rig = row.setup.start().await;
    let r = raw_http(rig.proxy.addr, row.request.as_bytes()).await;
    assert_refusal(&r, row.status, row.says);
    for (name, value) in row.headers {
        assert_eq!(r.header(name), Some(*value), "{name}: {r:?}");
    }
    for token in row.connection {
        assert!(connection_has(&r, token), "no {token} in Connection: {r:?}");
    }
    let backend = rig.backend_addr.to_string();
    assert!(
        !r.body.contains(&backend),
        "leaks the backend address: {r:?}"
    );
}

#[tokio::test]
async fn every_refusal_row() {
    run_rows(refusals().into_iter().map(|r| (r.name, check_refusal(r)))).await;
}
