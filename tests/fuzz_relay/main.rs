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
use common::fuzz::fuzz;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::io::Cursor;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use wsgate::config::SessionLimits;
use wsgate::relay::frame::Extensions;
use wsgate::relay::{self, RelayConfig};

// ------------------------------------------------------------------ the streams

#[derive(Default)]
struct Seen {
    out: Vec<u8>,
    shut: bool,
    max_read_room: usize,
}

/// One side of the session as the relay sees it: reads come from `input` in the
/// sizes `reads` cycles through; writes are taken in the sizes `writes` cycles
/// through. Every other poll is Pending (woken at once), to interleave the two
/// directions. `eof`: the input ends with EOF; otherwise it stays silent.
struct Side {
    input: Vec<u8>,
    pos: usize,
    eof: bool,
    reads: Vec<usize>,
    ri: usize,
    writes: Vec<usize>,
    wi: usize,
    tick: u32,
    seen: Arc<Mutex<Seen>>,
}

impl Side {
    fn new(input: Vec<u8>, eof: bool, reads: Vec<usize>, writes: Vec<usize>) -> Side {
        Side {
            input,
            pos: 0,
            eof,
            reads,
            ri: 0,
            writes,
            wi: 0,
            tick: 0,
            seen: Arc::default(),
        }
    }

    fn hiccup(&mut self, cx: &mut Context<'_>) -> bool {
        self.tick += 1;
        if self.tick.is_multiple_of(2) {
            cx.waker().wake_by_ref();
            return true;
        }
        false
    }
}

impl AsyncRead for Side {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        {
            let mut seen = self.seen.lock().unwrap();
            seen.max_read_room = seen.max_read_room.max(buf.remaining());
        }
        // (Only while there is input: a silent side must let the runtime go idle,
        // so that the paused clock moves on to the session's timers.)
        if self.pos < self.input.len() && self.hiccup(cx) {
            return Poll::Pending;
        }
        if self.pos < self.input.len() {
            let want = self.reads[self.ri % self.reads.len()];
            self.ri += 1;
            let n = want.min(buf.remaining()).min(self.input.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.input[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        if self.eof {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending // silent for ever (the session's timers end it)
        }
    }
}

impl AsyncWrite for Side {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.hiccup(cx) {
            return Poll::Pending;
        }
        let mut seen = self.seen.lock().unwrap();
        assert!(!seen.shut, "a write after shutdown");
        let n = self.writes[self.wi % self.writes.len()].min(buf.len());
        seen.out.extend_from_slice(&buf[..n]);
        drop(seen);
        self.wi += 1;
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.seen.lock().unwrap().shut = true;
        Poll::Ready(Ok(()))
    }
}

// ------------------------------------------------------------------ the oracle

/// What the oracle makes of one direction's input.
#[derive(Debug)]
struct Verdict {
    /// Byte ranges of the frames that must be forwarded, in order.
    frames: Vec<std::ops::Range<usize>>,
    /// The frame after them, if any: where it starts, its header length, and how
    /// many of its bytes may be forwarded at most (a strict prefix).
    next: Option<(usize, usize, usize)>,
}

fn close_code_ok(code: u16) -> bool {
    // RFC 6455 7.4 (tungstenite 0.30 wrongly refuses 1014, so it is not asked).
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// How many leading bytes of `b` can start a valid UTF-8 text.
fn utf8_good_prefix(b: &[u8]) -> usize {
    match std::str::from_utf8(b) {
        Ok(_) => b.len(),
        Err(e) => {
            let v = e.valid_up_to();
            let k = (1..=3.min(b.len() - v))
                .take_while(|&k| {
                    std::str::from_utf8(&b[v..v + k]).is_err_and(|e| e.error_len().is_none())
                })
                .last()
                .unwrap_or(0);
            v + k
        }
    }
}

fn oracle(input: &[u8], from_client: bool) -> Verdict {
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut in_msg = false;
    let mut text: Option<Vec<u8>> = None;
    let stop = |frames, next| Verdict { frames, next };
    while pos < input.len() {
        let mut cur = Cursor::new(&input[pos..]);
        let (h, len) = match FrameHeader::parse(&mut cur) {
            Ok(Some(v)) => v,
            Ok(None) | Err(_) => return stop(frames, Some((pos, 0, 0))),
        };
        let hlen = cur.position() as usize;
        let bad = |frames| stop(frames, Some((pos, hlen, 0)));
        if len >> 63 != 0 || h.mask.is_some() != from_client || h.rsv1 || h.rsv2 || h.rsv3 {
            return bad(frames);
        }
        let control = matches!(h.opcode, OpCode::Control(_));
        if control && (len > 125 || !h.is_final) {
            return bad(frames);
        }
        match h.opcode {
            OpCode::Data(Data::Continue) if !in_msg => return bad(frames),
            OpCode::Data(Data::Text | Data::Binary) if in_msg => return bad(frames),
            _ => {}
        }
        let avail = (input.len() - pos - hlen) as u64;
        let complete = avail >= len;
        let have = avail.min(len) as usize;
        let mut payload = input[pos + hlen..pos + hlen + have].to_vec();
        if let Some(k) = h.mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        let end = pos + hlen + len as usize;
        match h.opcode {
            OpCode::Control(Control::Close) => {
                if !complete {
                    return bad(frames); // inspected whole before it is forwarded
                }
                let ok = match payload.len() {
                    0 => true,
                    1 => false,
                    _ => {
                        close_code_ok(u16::from_be_bytes([payload[0], payload[1]]))
                            && std::str::from_utf8(&payload[2..]).is_ok()
                    }
                };
                if !ok {
                    return bad(frames);
                }
                frames.push(pos..end);
                return stop(frames, None); // nothing is forwarded after a Close
            }
            OpCode::Data(d) if d == Data::Text || (d == Data::Continue && text.is_some()) => {
                let mut msg = text.take().unwrap_or_default();
                let before = msg.len();
                msg.extend_from_slice(&payload);
                let good = utf8_good_prefix(&msg);
                if good < msg.len() {
                    // Invalid inside this frame: forwarded at most up to the bad byte.
                    return stop(frames, Some((pos, hlen, hlen + good - before)));
                }
                if !complete {
                    return stop(frames, Some((pos, hlen, hlen + have)));
                }
                if h.is_final && std::str::from_utf8(&msg).is_err() {
                    // Ends inside a code point: the frame's end is never forwarded.
                    return stop(frames, Some((pos, hlen, hlen + have - 1)));
                }
                text = (!h.is_final).then_some(msg);
            }
            _ => {
                if !complete {
                    return stop(frames, Some((pos, hlen, hlen + have)));
                }
                if h.opcode == OpCode::Data(Data::Binary) {
                    text = None;
                }
            }
        }
        if !control {
            in_msg = !h.is_final;
        }
        frames.push(pos..end);
        pos = end;
    }
    stop(frames, None)
}

/// Whether `b` is exactly one Close frame wsgate may send in this direction.
fn is_own_close(b: &[u8], toward_backend: bool) -> bool {
    let mut cur = Cursor::new(b);
    let Ok(Some((h, len))) = FrameHeader::parse(&mut cur) else {
        return false;
    };
    let hlen = cur.position() as usize;
    let mut p = b[hlen.min(b.len())..].to_vec();
    if let Some(k) = h.mask {
        for (i, x) in p.iter_mut().enumerate() {
            *x ^= k[i % 4];
        }
    }
    h.opcode == OpCode::Control(Control::Close)
        && h.is_final
        && h.mask.is_some() == toward_backend
        && p.len() as u64 == len
        && p.len() >= 2
        && close_code_ok(u16::from_be_bytes([p[0], p[1]]))
        && std::str::from_utf8(&p[2..]).is_ok()
}

/// Checks what one side received against the oracle's verdict on what the other
/// side sent. `all`: every accepted frame must have been forwarded.
fn check_output(
    what: &str,
    input: &[u8],
    out: &[u8],
    v: &Verdict,
    toward_backend: bool,
    all: bool,
) -> Result<(), TestCaseError> {
    let mut at = 0;
    let mut k = 0;
    for r in &v.frames {
        let f = &input[r.clone()];
        if out.len() >= at + f.len() && &out[at..at + f.len()] == f {
            at += f.len();
            k += 1;
        } else {
            break;
        }
    }
    let rest = &out[at..];
    if all {
        prop_assert_eq!(
            k,
            v.frames.len(),
            "{}: {} of {} accepted frames forwarded whole and in order",
            what,
            k,
            v.frames.len()
        );
    }
    if rest.is_empty() || is_own_close(rest, toward_backend) {
        if !rest.is_empty() && k > 0 {
            let last = &input[v.frames[k - 1].clone()];
            prop_assert!(
                last[0] & 0x0F != 8,
                "{}: a Close of wsgate's own after the sender's Close",
                what
            );
        }
        return Ok(());
    }
    // A strict prefix of the next frame, within what may be forwarded of it.
    let (start, limit) = if k < v.frames.len() {
        let r = &v.frames[k];
        (r.start, r.len() - 1)
    } else if let Some((start, _hlen, limit)) = v.next {
        (start, limit)
    } else {
        return Err(TestCaseError::fail(format!(
            "{what}: {} bytes after the accepted frames that are neither a Close of wsgate's own nor part of a frame: {:x?}",
            rest.len(),
            &rest[..rest.len().min(32)]
        )));
    };
    prop_assert!(
        rest.len() <= limit && input[start..].starts_with(rest),
        "{}: {} trailing bytes are not a forwardable prefix (at most {}) of the frame at {}",
        what,
        rest.len(),
        limit,
        start
    );
    Ok(())
}

// ------------------------------------------------------------------ generators

/// One frame, valid or broken: opcode, flags, mask, length and payload drawn so
/// that most cases are close to valid (and so reach deep into the state machine).
fn frame(from_client: bool) -> impl Strategy<Value = Vec<u8>> {
    let opcode = prop_oneof![
        6 => Just(1u8), 4 => Just(0u8), 4 => Just(2u8), 2 => Just(8u8),
        2 => Just(9u8), 2 => Just(10u8), 1 => 0u8..16,
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
            let payload = if op == 8 { close } else { text };
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
enum Mode {
    /// The client sends; the backend is silent.
    Client,
    /// The backend sends; the client is silent.
    Backend,
    /// Both send.
    Both,
}

#[derive(Debug)]
struct Case {
    mode: Mode,
    client: Vec<u8>,
    backend: Vec<u8>,
    buffer: usize,
    sizes: [Vec<usize>; 4],
}

fn case() -> impl Strategy<Value = Case> {
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
        extensions: Extensions::default(),
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
                client,
                Default::default(),
                backend,
                Default::default(),
                &cfg,
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
    let s = [text(false, 1, b"a\xe2\x82"), text(true, 0, b"\xacb")].concat();
    assert_eq!(oracle(&s, true).frames.len(), 2);
    let s = [text(false, 1, b"a\xe2\x82"), text(true, 0, b"\x28")].concat();
    let v = oracle(&s, true);
    assert_eq!((v.frames.len(), v.next), (1, Some((9, 6, 6))));
    let v = oracle(&text(true, 1, b"ab\xc3"), true);
    assert_eq!((v.frames.len(), v.next), (0, Some((0, 6, 8))));
    assert_eq!(utf8_good_prefix(b"ab\xe2\x82\x28"), 4);
    assert_eq!(utf8_good_prefix(b"ab\xc0"), 2);
}
