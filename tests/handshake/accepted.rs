//! The same setups let these through: 101 with the right Accept.

use super::*;

fn accepted() -> Vec<(&'static str, Setup, String)> {
    use Setup::*;
    vec![
        (
            "Connection: keep-alive, Upgrade",
            Echo,
            get(&[
                HOST,
                UPGRADE,
                "Connection: keep-alive, Upgrade",
                KEY,
                VERSION,
            ]),
        ),
        (
            "the routed host",
            OnlyHost,
            upgrade_head("/", "").replace(HOST, "Host: only.example"),
        ),
        (
            "a head under max_header_bytes",
            SmallHeads,
            upgrade_with(&format!("X-Small: {}", "a".repeat(512))),
        ),
        (
            "an exact Origin",
            Origins {
                allow_missing: false,
            },
            upgrade_with("Origin: https://app.example.com"),
        ),
        (
            "an Origin under the wildcard",
            Origins {
                allow_missing: false,
            },
            upgrade_with("Origin: https://chat.example.org"),
        ),
        (
            "no Origin, missing ones allowed",
            Origins {
                allow_missing: true,
            },
            upgrade_head("/", ""),
        ),
    ]
}

#[tokio::test]
async fn every_accepted_row() {
    run_rows(accepted().into_iter().map(|(name, setup, request)| {
        (name, async move {
            let rig = setup.start().await;
            let r = raw_http(rig.proxy.addr, request.as_bytes()).await;
            assert_eq!(r.status, 101, "{r:?}");
            assert_eq!(r.header("sec-websocket-accept"), Some(ACCEPT), "{r:?}");
        })
    }))
    .await;
}
