//! Incremental UTF-8 validation of text messages as their bytes pass (RFC 6455
//! section 8.1), never holding more than the 3 bytes of a code point cut short by a
//! read or a frame boundary.
//!
//! Owns: `Utf8`, the state carried between the pieces of one text message, and the
//! unmasking of client payloads into a 4 KiB per-thread buffer for checking (the bytes
//! forwarded stay masked and untouched). Does not own: which messages are checked
//! (pump.rs: text messages without RSV1, when on), or the close codes (relay/mod.rs).

use super::frame;
use std::cell::RefCell;
use std::num::NonZeroU32;

/// The state between two pieces of one text message: the start of a code point
/// (0 to 3 bytes) the previous piece ended with. Packed into one non-zero `u32` (bits
/// 0-7: the number of bytes held + 1; bits 8-31: the bytes), so that `Option<Utf8>` is
/// one 4-byte word that `None` overwrites whole: the relay copies it for every frame,
/// and a value written a byte at a time and then read as a word stalls the CPU (a
/// failed store-to-load forward), which the profile showed in every frame's scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8 {
    packed: NonZeroU32,
}

impl Default for Utf8 {
    fn default() -> Utf8 {
        Utf8::new()
    }
}

/// The message is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// Bytes unmasked per step when checking a masked payload: a multiple of 4 (the
/// key's cycle stands at the same place at every step), large enough that a 4 KiB
/// message is one call to the validator.
const CHUNK: usize = 4096;

thread_local! {
    /// Where masked payloads are unmasked for checking: one per worker thread,
    /// zeroed once (a stack array would be zeroed at every call), never per session.
    static SCRATCH: RefCell<[u8; CHUNK]> = const { RefCell::new([0; CHUNK]) };
}

impl Utf8 {
    pub fn new() -> Utf8 {
        Utf8 {
            packed: NonZeroU32::MIN,
        }
    }

    /// The bytes held and their number `n` (only the first `n` of the array count).
    fn held(self) -> ([u8; 3], usize) {
        let v = self.packed.get();
        let b = v.to_le_bytes();
        ([b[1], b[2], b[3]], usize::from(b[0].saturating_sub(1)))
    }

    /// The state holding `bytes` (at most 3: a code point is at most 4 bytes and
    /// these are unfinished).
    fn holding(bytes: &[u8]) -> Utf8 {
        debug_assert!(bytes.len() <= 3);
        let mut b = [0u8; 4];
        let n = bytes.len().min(3);
        b[0] = n as u8 + 1;
        b[1..1 + n].copy_from_slice(&bytes[..n]);
        Utf8 {
            packed: NonZeroU32::new(u32::from_le_bytes(b)).unwrap_or(NonZeroU32::MIN),
        }
    }

    /// Checks the next bytes of the message. On error nothing changes, so a caller
    /// may look at the same bytes again and get the same answer. The bulk goes
    /// through simdutf8's `basic` validator in one call (an unfinished code point at
    /// the end is set aside first, so no error position is needed); only the at most
    /// 4 bytes around a split code point go through `std`.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Invalid> {
        let mut next = *self;
        next.step(bytes)?;
        *self = next;
        Ok(())
    }

    /// As `feed`, for bytes still masked with `key`; `offset` is the position of
    /// `bytes[0]` in its frame's payload (where the key's cycle stands).
    pub fn feed_masked(&mut self, bytes: &[u8], key: [u8; 4], offset: u64) -> Result<(), Invalid> {
        let mut next = *self;
        let rot = (offset & 3) as usize;
        let k = [
            key[rot],
            key[(rot + 1) & 3],
            key[(rot + 2) & 3],
            key[(rot + 3) & 3],
        ];
        SCRATCH.with_borrow_mut(|scratch| {
            for piece in bytes.chunks(CHUNK) {
                let s = &mut scratch[..piece.len()];
                frame::unmask_into(s, piece, k);
                next.step(s)?;
            }
            Ok(())
        })?;
        *self = next;
        Ok(())
    }

    /// The message ended: valid only if no code point was left unfinished.
    pub fn finish(&self) -> Result<(), Invalid> {
        if self.held().1 == 0 {
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    fn step(&mut self, mut bytes: &[u8]) -> Result<(), Invalid> {
        let (carry, have) = self.held();
        if have > 0 {
            // Finish the code point the last piece cut short: at most 4 bytes in all.
            let take = bytes.len().min(4 - have);
            let mut joined = [0u8; 4];
            joined[..have].copy_from_slice(&carry[..have]);
            joined[have..have + take].copy_from_slice(&bytes[..take]);
            match std::str::from_utf8(&joined[..have + take]) {
                Ok(_) => {
                    *self = Utf8::new();
                    bytes = &bytes[take..];
                }
                Err(e) if e.error_len().is_some() => return Err(Invalid),
                Err(e) if e.valid_up_to() >= have => {
                    // The code point is complete; what follows it is checked below.
                    *self = Utf8::new();
                    bytes = &bytes[e.valid_up_to() - have..];
                }
                Err(_) => {
                    // Still unfinished: every byte of this piece joined the carry.
                    debug_assert_eq!(take, bytes.len());
                    *self = Utf8::holding(&joined[..have + take]);
                    return Ok(());
                }
            }
        }
        // Only the end of a piece may hold an unfinished code point: set it aside,
        // so the rest is one pass of the validator that needs no error position.
        let (body, tail) = bytes.split_at(complete_prefix(bytes));
        if simdutf8::basic::from_utf8(body).is_err() {
            return Err(Invalid);
        }
        if !tail.is_empty() {
            // 1 to 3 bytes: the start of a code point, unless already wrong.
            match std::str::from_utf8(tail) {
                Err(e) if e.valid_up_to() == 0 && e.error_len().is_none() => {}
                _ => return Err(Invalid),
            }
            *self = Utf8::holding(tail);
        }
        Ok(())
    }
}

/// The length of `bytes` without the code point its last 1 to 3 bytes start and do
/// not finish (all of it when they finish one, or are not UTF-8 at all: the
/// validator then says so).
fn complete_prefix(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=n.min(3) {
        let b = bytes[n - back];
        if b & 0xc0 == 0x80 {
            continue; // a continuation byte: the code point starts further back
        }
        let need = match b {
            0xf0.. => 4,
            0xe0.. => 3,
            0xc0.. => 2,
            _ => 1,
        };
        return if back < need { n - back } else { n };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_state_is_four_bytes() {
        assert_eq!(std::mem::size_of::<Option<Utf8>>(), 4);
    }

    /// Feeds `bytes` in pieces cut at `cuts`, returning the piece that failed.
    fn pieces(bytes: &[u8], cuts: &[usize]) -> Result<(), usize> {
        let mut u = Utf8::new();
        let mut start = 0;
        for (i, &c) in cuts.iter().chain([bytes.len()].iter()).enumerate() {
            u.feed(&bytes[start..c]).map_err(|_| i)?;
            start = c;
        }
        u.finish().map_err(|_| cuts.len() + 1)
    }

    #[test]
    fn agrees_with_std_at_every_cut() {
        let samples: &[&[u8]] = &[
            "héllo wörld ✓ 🦀 日本".as_bytes(),
            b"\xc3\x28",
            b"\xe0\x80\xaf",         // overlong
            b"\xc0\xaf",             // overlong
            b"\xed\xa0\x80",         // surrogate
            b"\xf4\x90\x80\x80",     // above U+10FFFF
            b"\xf0\x9f\xa6",         // truncated at the end
            b"ab\xf0\x9f\xa6\x80cd", // valid 4-byte
            b"\xff",
            b"\x80",
            b"\xef\xbf\xbf",
        ];
        for s in samples {
            let want = std::str::from_utf8(s).is_ok();
            for a in 0..=s.len() {
                for b in a..=s.len() {
                    let got = pieces(s, &[a, b]).is_ok();
                    assert_eq!(got, want, "{s:x?} cut at {a},{b}");
                }
            }
        }
    }

    #[test]
    fn fails_at_the_piece_holding_the_first_bad_byte() {
        let mut m = "ok ".repeat(100).into_bytes();
        m.push(0xff);
        m.extend_from_slice(&[b'x'; 5000]);
        // The bad byte is in the second piece: that piece fails, not the end.
        assert_eq!(pieces(&m, &[200, 400, 4000]), Err(1));
        // A code point split by a piece boundary fails where it goes wrong.
        assert_eq!(pieces(b"a\xe2\x82\x28zz", &[2, 4]), Err(1));
    }

    #[test]
    fn a_piece_ending_in_a_wrong_start_fails_there() {
        // Each piece ends in bytes no code point can start with: the piece fails,
        // not the next one (or the end of the message).
        for bad in [
            &b"ab\xe0\x80"[..],
            b"ab\xf4\x90",
            b"ab\xc1",
            b"ab\xf8",
            b"ab\xed\xa0",
        ] {
            assert_eq!(
                pieces(&[bad, b"\x80zz"].concat(), &[bad.len()]),
                Err(0),
                "{bad:x?}"
            );
        }
        // And ones that can start a code point carry over.
        for good in [&b"ab\xe2\x82"[..], b"ab\xf0\x9f\xa6", b"ab\xc3", b"\xe2"] {
            let mut u = Utf8::new();
            u.feed(good).unwrap();
            assert_ne!(u.finish(), Ok(()), "{good:x?}");
        }
    }

    #[test]
    fn long_pieces_agree_with_std_at_every_end() {
        // Pieces past the validator's 64-byte blocks, cut at every place near a
        // multi-byte character, with a bad byte at every place in turn.
        let text = "x".repeat(61) + "é✓🦀" + &"y".repeat(70);
        let bytes = text.as_bytes();
        for cut in 55..80 {
            assert_eq!(pieces(bytes, &[cut]), Ok(()), "cut {cut}");
        }
        for at in 55..80 {
            let mut bad = bytes.to_vec();
            bad[at] ^= 0x40;
            let want = std::str::from_utf8(&bad).is_ok();
            for cut in [at - 1, at, at + 1, 100] {
                assert_eq!(pieces(&bad, &[cut]).is_ok(), want, "bad at {at}, cut {cut}");
            }
        }
    }

    #[test]
    fn an_error_changes_nothing() {
        let mut u = Utf8::new();
        u.feed(b"a\xe2").unwrap();
        let before = u;
        assert_eq!(u.feed(b"\x28"), Err(Invalid));
        assert_eq!(u, before);
        u.feed(b"\x82\xac").unwrap();
        u.finish().unwrap();
    }

    #[test]
    fn masked_pieces_match_unmasked() {
        let text = "naïve café ✓ 🦀 ".repeat(600);
        let key = [0x12, 0x9a, 0x07, 0xe3];
        let mut masked = text.as_bytes().to_vec();
        frame::apply_mask(&mut masked, key);
        for cut in [
            0usize, 1, 2, 3, 5, 1023, 1024, 1025, 2047, 3001, 4095, 4096, 4097, 4099,
        ] {
            let mut u = Utf8::new();
            u.feed_masked(&masked[..cut], key, 0).unwrap();
            u.feed_masked(&masked[cut..], key, cut as u64).unwrap();
            u.finish().unwrap();
        }
        let mut bad = text.into_bytes();
        bad[6500] = 0xc0;
        frame::apply_mask(&mut bad, key);
        let mut u = Utf8::new();
        u.feed_masked(&bad[..2001], key, 0).unwrap();
        assert_eq!(u.feed_masked(&bad[2001..], key, 2001), Err(Invalid));
    }
}
