//! Approving what one direction read: the frame-by-frame half of `Pump` (pump.rs
//! keeps the I/O and the output's life).
//!
//! Owns: walking the unscanned bytes `[fwd..end)` one frame at a time; each header's
//! checks (RFC 6455 rules through `frame::Checker`, frame and message size limits,
//! the message rate); inspecting Close frames and keepalive Pongs; UTF-8 checking of
//! text payloads as they pass; the per-frame counters. A frame that is forwarded
//! moves `fwd` (approved, to be written); one that is dropped moves `wpos` with it
//! (skipped). Does not own: reading, writing, or what a stop means for the session:
//! `scan` returns it, and has no side effects when it does.

use super::frame;
use super::{KEEPALIVE_PREFIX, Out, Pump};
use crate::config::OnExceed;
use crate::relay::frame::Violation;
use crate::relay::utf8::Utf8;
use tokio::time::Instant;

pub(super) enum Scan {
    Progress,
    NeedMore,
    /// The next frame is dropped, not forwarded: write what is approved first, so
    /// the approved bytes stay one contiguous run.
    FlushFirst,
    Wait(Instant),
}

pub(super) enum Halt {
    Violation(Violation),
    TooBig,
    Rate,
}

impl From<Violation> for Halt {
    fn from(v: Violation) -> Halt {
        Halt::Violation(v)
    }
}

impl Pump {
    /// Scans from `fwd`: approves payload bytes, checks one header at a time.
    pub(super) fn scan(&mut self) -> Result<Scan, Halt> {
        if self.payload_left > 0 {
            return self.scan_payload();
        }
        let avail = &self.buf[self.fwd..self.end];
        let Some(h) = frame::parse_header(avail)? else {
            return Ok(Scan::NeedMore);
        };
        self.checker.validate(&h)?;
        let mut forward = self.close_seen.is_none(); // nothing may follow a Close
        let mut close = None;
        let mut pong = None;
        let inspect = h.opcode == frame::CLOSE
            || (h.opcode == frame::PONG && self.limits.drop_keepalive_pongs);
        if inspect && forward {
            let total = h.len + h.payload_len as usize; // control frames are <= 125 bytes
            if avail.len() < total {
                return Ok(Scan::NeedMore);
            }
            let mut payload = avail[h.len..total].to_vec();
            if let Some(key) = h.mask {
                frame::apply_mask(&mut payload, key);
            }
            if h.opcode == frame::CLOSE {
                close = Some((frame::parse_close(&payload)?, payload));
            } else if payload.starts_with(KEEPALIVE_PREFIX) {
                forward = false;
                pong = Some(payload);
            }
        }
        if close.is_some() && self.owed.is_some() {
            forward = false; // replaced by the Close owed to `dst`
        }
        if !forward && self.wpos < self.fwd {
            return Ok(Scan::FlushFirst);
        }
        if let Some((code, payload)) = close {
            self.close_seen = Some(code);
            self.stats.close_from(self.side, &payload);
            // `src`'s Close was not forwarded: the one owed to `dst` goes instead.
            if let Some(owed) = self.owed.take()
                && matches!(self.out, Out::Open)
            {
                self.out = Out::Closing(Some((owed, 0)));
            }
        }
        if let Some(p) = pong {
            self.stats.pong(&p[KEEPALIVE_PREFIX.len()..]);
        }
        // The message state after this frame, and how much of its payload is checked
        // (and so approved, or skipped) together with its header: all of it that is
        // in the buffer, so a frame read whole takes one pass, not two.
        let checked = ((avail.len() - h.len) as u64).min(h.payload_len);
        if !h.is_control()
            && let Some(wait) = self.data_frame(&h, self.fwd + h.len, checked, forward)?
        {
            return Ok(wait);
        }
        self.checker.advance(&h);
        self.fwd += h.len + checked as usize;
        if !forward {
            self.wpos = self.fwd;
        }
        self.forwarding = forward;
        self.mask = h.mask;
        self.frame_len = h.payload_len;
        self.frame_fin = h.fin;
        self.frame_text = forward && !h.is_control() && self.text.is_some();
        self.payload_left = h.payload_len - checked;
        Ok(Scan::Progress)
    }

    /// Approves the rest of a frame whose header was checked: its payload as far as
    /// it is in the buffer (text checked for UTF-8 as it passes).
    #[inline]
    fn scan_payload(&mut self) -> Result<Scan, Halt> {
        let n = self.payload_left.min((self.end - self.fwd) as u64) as usize;
        if self.forwarding
            && self.frame_text
            && let Some(text) = self.text.as_mut()
        {
            let offset = self.frame_len - self.payload_left;
            let last = n as u64 == self.payload_left && self.frame_fin;
            check_text(
                text,
                &self.buf[self.fwd..self.fwd + n],
                self.mask,
                offset,
                last,
            )?;
            if last {
                self.text = None;
            }
        }
        self.payload_left -= n as u64;
        self.fwd += n;
        if !self.forwarding {
            self.wpos = self.fwd; // skipped, not written
        }
        Ok(Scan::Progress)
    }

    /// A data frame's size limits, its payload's UTF-8 (the `checked` bytes of it in
    /// the buffer from `at`) and the message rate; updates the message state.
    /// `Some(scan)` when the rate says wait first.
    #[inline]
    fn data_frame(
        &mut self,
        h: &frame::Header,
        at: usize,
        checked: u64,
        forward: bool,
    ) -> Result<Option<Scan>, Halt> {
        let over = |limit: u64, n: u64| limit != 0 && n > limit;
        let message = if h.opcode == frame::CONTINUATION {
            self.message_bytes + h.payload_len
        } else {
            h.payload_len
        };
        if over(self.limits.max_frame, h.payload_len) || over(self.limits.max_message, message) {
            return Err(Halt::TooBig);
        }
        let mut text = self.text;
        if forward {
            text = match h.opcode {
                frame::TEXT if self.limits.validate_utf8 && h.rsv & 0b100 == 0 => Some(Utf8::new()),
                frame::CONTINUATION => self.text,
                _ => None,
            };
            if let Some(t) = text.as_mut() {
                let last = checked == h.payload_len && h.fin;
                check_text(t, &self.buf[at..at + checked as usize], h.mask, 0, last)?;
                if last {
                    text = None;
                }
            }
        }
        if h.opcode != frame::CONTINUATION
            && forward
            && let Some(bucket) = self.limits.rate.as_mut()
            && let Err(at) = bucket.take(Instant::now())
        {
            return match self.limits.on_exceed {
                OnExceed::Throttle => {
                    self.stats.throttle();
                    Ok(Some(Scan::Wait(at)))
                }
                OnExceed::Close => Err(Halt::Rate),
            };
        }
        self.message_bytes = message;
        self.text = text;
        if forward {
            let first = h.opcode != frame::CONTINUATION;
            self.stats.data_frame(self.side, first, h.payload_len);
        }
        Ok(None)
    }
}

/// Checks the next payload bytes of a text message (`last`: they end it).
fn check_text(
    text: &mut Utf8,
    bytes: &[u8],
    mask: Option<[u8; 4]>,
    offset: u64,
    last: bool,
) -> Result<(), Violation> {
    let mut next = *text;
    match mask {
        Some(key) => next.feed_masked(bytes, key, offset),
        None => next.feed(bytes),
    }
    .and_then(|()| if last { next.finish() } else { Ok(()) })
    .map_err(|_| Violation::InvalidUtf8)?;
    *text = next;
    Ok(())
}
