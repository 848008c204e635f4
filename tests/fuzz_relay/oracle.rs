//! The differential oracle: which frames of a stream are valid (tungstenite's
//! header parser plus the RFC 6455 rules), and the check of a side's output.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::io::Cursor;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

// ------------------------------------------------------------------ the oracle

/// What the oracle makes of one direction's input.
#[derive(Debug)]
pub(super) struct Verdict {
    /// Byte ranges of the frames that must be forwarded, in order.
    pub(super) frames: Vec<std::ops::Range<usize>>,
    /// The frame after them, if any: where it starts, its header length, and how
    /// many of its bytes may be forwarded at most (a strict prefix).
    pub(super) next: Option<(usize, usize, usize)>,
}

fn close_code_ok(code: u16) -> bool {
    // RFC 6455 7.4 (tungstenite 0.30 wrongly refuses 1014, so it is not asked).
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// How many leading bytes of `b` can start a valid UTF-8 text.
pub(super) fn utf8_good_prefix(b: &[u8]) -> usize {
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

pub(super) fn oracle(input: &[u8], from_client: bool) -> Verdict {
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
pub(super) fn check_output(
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
