//! The generators: frames valid or broken in every way known, whole streams,
//! read and write sizes, and the case (who sends, buffer size).

use crate::common::op::{BINARY, CLOSE, CONT, PING, PONG, TEXT};
use proptest::prelude::*;

// ------------------------------------------------------------------ generators

/// One frame, valid or broken: opcode, flags, mask, length and payload drawn so
/// that most cases are close to valid (and so reach deep into the state machine).
fn frame(from_client: bool) -> impl Strategy<Value = Vec<u8>> {
    let opcode = prop_oneof![
        6 => Just(TEXT), 4 => Just(CONT), 4 => Just(BINARY), 2 => Just(CLOSE),
        2 => Just(PING), 2 => Just(PONG), 1 => 0u8..16,
    ];
    let text = prop_oneof![
        4 => "\\PC{0,40}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => ("\\PC{1,40}", any::<prop::sample::Index>(), any::<u8>()).prop_map(|(s, i, b)| {
            let mut v = s.into_bytes();
            let i = i.index(v.len());
            v[i] = b;
            v
        }),
        1 => ("\\PC{1,40}", any::<prop::sample::Index>()).prop_map(|(s, i)| {
            let v = s.into_bytes();
            v[..i.index(v.len())].to_vec()
        }),
        1 => (100usize..40_000, any::<prop::sample::Index>(), any::<bool>()).prop_map(|(n, i, bad)| {
            let mut v = "é✓a".repeat(n / 6 + 1).into_bytes();
            v.truncate(n);
            if bad {
                let i = i.index(v.len());
                v[i] = 0xff;
            }
            v
        }),
    ];
    let close = (
        prop_oneof![
            Just(1000u16),
            Just(1001),
            Just(1005),
            Just(1014),
            Just(999),
            Just(4999),
            Just(5000),
            any::<u16>()
        ],
        text.clone(),
        0u8..4,
    )
        .prop_map(|(code, reason, kind)| match kind {
            0 => Vec::new(),
            1 => vec![code as u8],
            _ => {
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(&reason[..reason.len().min(123)]);
                p
            }
        });
    (
        opcode,
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.95),
        any::<[u8; 4]>(),
        text,
        close,
        prop::bool::weighted(0.02),
    )
        .prop_map(move |(op, fin, rsv, right_mask, key, text, close, huge)| {
            let payload = if op == CLOSE { close } else { text };
            // Control frames (opcodes 8 and up) are drawn with FIN set.
            let mut out = vec![(u8::from(fin || op >= 8) << 7) | (u8::from(rsv) << 6) | op];
            let masked = right_mask == from_client;
            let m = if masked { 0x80 } else { 0 };
            let n = payload.len();
            if huge {
                // A length no one can send: 2^62, or with the top bit set.
                out.push(m | 127);
                out.extend_from_slice(&(1u64 << (62 + u32::from(rsv))).to_be_bytes());
            } else if n < 126 {
                out.push(m | n as u8);
            } else if n <= 0xFFFF {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            } else {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
            if masked {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            } else {
                out.extend_from_slice(&payload);
            }
            out
        })
}

/// A whole stream: frames, then maybe garbage, maybe cut short.
fn stream(from_client: bool) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(frame(from_client), 0..12),
        proptest::collection::vec(any::<u8>(), 0..8),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.2),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(frames, garbage, add_garbage, cut, at)| {
            let mut s = frames.concat();
            if add_garbage {
                s.extend_from_slice(&garbage);
            }
            if cut && !s.is_empty() {
                s.truncate(at.index(s.len()));
            }
            s
        })
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(
        prop_oneof![3 => 1usize..8, 3 => 8usize..600, 1 => 600usize..70_000],
        1..6,
    )
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Mode {
    /// The client sends; the backend is silent.
    Client,
    /// The backend sends; the client is silent.
    Backend,
    /// Both send.
    Both,
}

#[derive(Debug)]
pub(super) struct Case {
    pub(super) mode: Mode,
    pub(super) client: Vec<u8>,
    pub(super) backend: Vec<u8>,
    pub(super) buffer: usize,
    pub(super) sizes: [Vec<usize>; 4],
}

pub(super) fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(Mode::Client), Just(Mode::Backend), Just(Mode::Both)],
        stream(true),
        stream(false),
        prop_oneof![Just(139usize), 139usize..2048, Just(16 * 1024)],
        [sizes(), sizes(), sizes(), sizes()],
    )
        .prop_map(|(mode, client, backend, buffer, sizes)| Case {
            mode,
            client: if matches!(mode, Mode::Backend) {
                Vec::new()
            } else {
                client
            },
            backend: if matches!(mode, Mode::Client) {
                Vec::new()
            } else {
                backend
            },
            buffer,
            sizes,
        })
}
