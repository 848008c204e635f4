//! Property-based fuzzing of the relay state machine (`relay::run`, the real code)
//! with a differential oracle: tungstenite's frame-header parser plus the RFC 6455
//! rules written out here independently (std's UTF-8 check, not simdutf8) decide
//! which frames are valid.
//!
//! Each case: arbitrary byte streams (mostly frames, valid or broken in every way
//! the generator knows, sometimes garbage, sometimes cut short) from the client
//! and/or the backend, delivered in arbitrary read sizes, and written out in
//! arbitrary write sizes, through a buffer of arbitrary size. Virtual time (tokio's
//! paused clock) makes timeouts instant. Invariants:
//! - the session always ends (no hang), and nothing panics;
//! - each side receives a run of whole frames that the oracle accepts, exactly as
//!   sent, in order, each once; then at most one Close of wsgate's own (masked
//!   toward the backend, a sendable code, a UTF-8 reason) or a strict prefix of
//!   the next frame that stops before any byte the oracle rejects (a frame cut
//!   short by its sender, or a text frame whose invalid byte came after wsgate had
//!   started forwarding it); nothing else;
//! - with the other side silent, that run is every frame the oracle accepts;
//! - a read never offers more room than the relay's buffer bound.
//!
//! `FUZZ_SECS=600 cargo test --release --test fuzz_relay -- --nocapture` for a long run.
#[path = "../common/mod.rs"]
mod common;
mod generators;
mod oracle;
mod streams;

use common::fuzz::fuzz;
use common::op::{CONT, TEXT};
use generators::{Case, Mode, case};
use oracle::{check_output, oracle, utf8_good_prefix};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::time::Duration;
use streams::Side;
use wsgate::config::SessionLimits;
use wsgate::relay::frame::Extensions;
use wsgate::relay::{self, End, RelayConfig};

// ------------------------------------------------------------------ the property

fn run_case(c: Case) -> Result<(), TestCaseError> {
    let [cr, cw, br, bw] = c.sizes.clone();
    let (client_eof, backend_eof) = match c.mode {
        Mode::Client => (true, false),
        Mode::Backend => (false, true),
        Mode::Both => (true, true),
    };
    let client = Side::new(c.client.clone(), client_eof, cr, cw);
    let backend = Side::new(c.backend.clone(), backend_eof, br, bw);
    let (at_client, at_backend) = (client.seen.clone(), backend.seen.clone());
    let cfg = RelayConfig {
        buffer: c.buffer,
        close_timeout: Duration::from_secs(5),
        limits: SessionLimits::unlimited(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let ended = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(3600),
            relay::run(
                End::fresh(client),
                End::fresh(backend),
                &cfg,
                Extensions::default(),
                Box::pin(std::future::pending()),
                Default::default(),
            ),
        )
        .await
    });
    prop_assert!(ended.is_ok(), "the session never ended");
    let bound = c.buffer.max(14 + 125);
    let (ac, ab) = (at_client.lock().unwrap(), at_backend.lock().unwrap());
    prop_assert!(
        ac.max_read_room <= bound && ab.max_read_room <= bound,
        "a read offered more than the {} byte bound",
        bound
    );
    let vc = oracle(&c.client, true);
    let vb = oracle(&c.backend, false);
    let (all_c, all_b) = match c.mode {
        Mode::Client => (true, false),
        Mode::Backend => (false, true),
        Mode::Both => (false, false),
    };
    check_output("to the backend", &c.client, &ab.out, &vc, true, all_c)?;
    check_output("to the client", &c.backend, &ac.out, &vb, false, all_b)?;
    prop_assert!(ac.shut && ab.shut, "both outputs are shut down at the end");
    Ok(())
}

#[test]
fn relay_forwards_exactly_the_valid_frames() {
    fuzz("relay", 300, case(), run_case);
}

/// The oracle itself, on inputs whose answer is known.
#[test]
fn oracle_sanity() {
    let text = |fin: bool, op: u8, p: &[u8]| {
        let mut f = vec![(u8::from(fin) << 7) | op, 0x80 | p.len() as u8, 0, 0, 0, 0];
        f.extend_from_slice(p);
        f
    };
    let s = [text(false, TEXT, b"a\xe2\x82"), text(true, CONT, b"\xacb")].concat();
    assert_eq!(oracle(&s, true).frames.len(), 2);
    let s = [text(false, TEXT, b"a\xe2\x82"), text(true, CONT, b"\x28")].concat();
    let v = oracle(&s, true);
    assert_eq!((v.frames.len(), v.next), (1, Some((9, 6, 6))));
    let v = oracle(&text(true, TEXT, b"ab\xc3"), true);
    assert_eq!((v.frames.len(), v.next), (0, Some((0, 6, 8))));
    assert_eq!(utf8_good_prefix(b"ab\xe2\x82\x28"), 4);
    assert_eq!(utf8_good_prefix(b"ab\xc0"), 2);
}
