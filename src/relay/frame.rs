//! RFC 6455 frame headers: parsing, per-direction protocol checks, and the few
//! frames wsgate originates itself (Close; masked toward backends).
//!
//! Owns: the wire format of a frame header and the message-level rules a relay can
//! check from headers alone (masking direction, reserved opcodes and bits, control
//! frame size and fragmentation, continuation order). Payloads are never touched here
//! except a Close frame's (at most 125 bytes), whose code and UTF-8 reason are
//! checked. Text payloads are checked as they pass by utf8.rs, driven by pump.rs.

/// Opcodes (RFC 6455 section 5.2).
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// The longest possible header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// RSV1..3 as the top three bits of a nibble: RSV1 = 0b100.
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Bytes the header occupies on the wire.
    pub len: usize,
}

impl Header {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Parses a header from the start of `b`; `Ok(None)` when more bytes are needed.
pub fn parse_header(b: &[u8]) -> Result<Option<Header>, Violation> {
    if b.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (b[0], b[1]);
    let masked = b1 & 0x80 != 0;
    let (payload_len, mut len) = match b1 & 0x7F {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([b[2], b[3]])), 4)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            let n = u64::from_be_bytes(n);
            if n >> 63 != 0 {
                return Err(Violation::BadLength);
            }
            (n, 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        if b.len() < len + 4 {
            return Ok(None);
        }
        let m = [b[len], b[len + 1], b[len + 2], b[len + 3]];
        len += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x7,
        opcode: b0 & 0x0F,
        mask,
        payload_len,
        len,
    }))
}

/// A broken rule, answered with Close 1002 (1007 for invalid UTF-8) to whoever broke it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    UnmaskedClientFrame,
    MaskedServerFrame,
    ReservedOpcode(u8),
    ReservedBits,
    ControlTooLong,
    ControlFragmented,
    UnexpectedContinuation,
    UnfinishedMessage,
    BadLength,
    BadClosePayload,
    /// A text message that is not UTF-8 (RFC 6455 section 8.1).
    InvalidUtf8,
    /// A Close frame whose reason is not UTF-8 (section 5.5.1).
    InvalidCloseReason,
}

impl Violation {
    /// The short reason put into the Close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Violation::UnmaskedClientFrame => "client frame not masked",
            Violation::MaskedServerFrame => "server frame masked",
            Violation::ReservedOpcode(_) => "reserved opcode",
            Violation::ReservedBits => "reserved bits set",
            Violation::ControlTooLong => "control frame over 125 bytes",
            Violation::ControlFragmented => "fragmented control frame",
            Violation::UnexpectedContinuation => "continuation without a message",
            Violation::UnfinishedMessage => "new message inside an unfinished one",
            Violation::BadLength => "invalid payload length",
            Violation::BadClosePayload => "invalid close frame",
            Violation::InvalidUtf8 => "invalid UTF-8 in a text message",
            Violation::InvalidCloseReason => "invalid UTF-8 in a close reason",
        }
    }

    /// The Close code the side that broke the rule gets: 1007 (invalid frame payload
    /// data) for invalid UTF-8, 1002 (protocol error) for the rest.
    pub fn close_code(self) -> u16 {
        match self {
            Violation::InvalidUtf8 | Violation::InvalidCloseReason => 1007,
            _ => 1002,
        }
    }
}

/// Who sends the frames a `Checker` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// What negotiated extensions let the RSV bits mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extensions {
    /// permessage-deflate: RSV1 on the first frame of a data message.
    pub deflate: bool,
    /// Some extension wsgate does not know: RSV bits are passed through unchecked.
    pub unknown: bool,
}

/// Message-level state of one direction.
#[derive(Debug)]
pub struct Checker {
    sender: Sender,
    ext: Extensions,
    in_message: bool,
}

impl Checker {
    pub fn new(sender: Sender, ext: Extensions) -> Checker {
        Checker {
            sender,
            ext,
            in_message: false,
        }
    }

    /// True between the first and the last frame of a fragmented data message.
    pub fn in_message(&self) -> bool {
        self.in_message
    }

    /// Checks one header and advances the message state.
    pub fn check(&mut self, h: &Header) -> Result<(), Violation> {
        self.validate(h)?;
        self.advance(h);
        Ok(())
    }

    /// Advances the message state past a validated header.
    pub fn advance(&mut self, h: &Header) {
        if !h.is_control() {
            self.in_message = !h.fin;
        }
    }

    /// Checks one header without changing any state.
    pub fn validate(&self, h: &Header) -> Result<(), Violation> {
        match (self.sender, h.mask.is_some()) {
            (Sender::Client, false) => return Err(Violation::UnmaskedClientFrame),
            (Sender::Server, true) => return Err(Violation::MaskedServerFrame),
            _ => {}
        }
        if !matches!(h.opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
            return Err(Violation::ReservedOpcode(h.opcode));
        }
        if !self.ext.unknown {
            let allowed = if self.ext.deflate && matches!(h.opcode, TEXT | BINARY) {
                0b100
            } else {
                0
            };
            if h.rsv & !allowed != 0 {
                return Err(Violation::ReservedBits);
            }
        }
        if h.is_control() {
            if h.payload_len > 125 {
                return Err(Violation::ControlTooLong);
            }
            if !h.fin {
                return Err(Violation::ControlFragmented);
            }
            return Ok(());
        }
        match (h.opcode, self.in_message) {
            (CONTINUATION, false) => return Err(Violation::UnexpectedContinuation),
            (TEXT | BINARY, true) => return Err(Violation::UnfinishedMessage),
            _ => {}
        }
        Ok(())
    }
}

/// Reads a Close payload (already unmasked): `None` code for an empty payload.
/// Codes that must never be sent (1005, 1006, 1015, unassigned ranges) are violations,
/// and so is a reason that is not UTF-8 (checked with the validator text messages get).
pub fn parse_close(payload: &[u8]) -> Result<Option<u16>, Violation> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(Violation::BadClosePayload),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code_sendable(code) {
                return Err(Violation::BadClosePayload);
            }
            if simdutf8::basic::from_utf8(&payload[2..]).is_err() {
                return Err(Violation::InvalidCloseReason);
            }
            Ok(Some(code))
        }
    }
}

/// Whether `code` may appear in a Close frame on the wire (RFC 6455 section 7.4).
pub fn close_code_sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Writes `src` unmasked (or masked) with `key` into `dst`, of the same length, the
/// key's cycle starting at `src[0]`: one pass, 32 bytes at a time in a loop the
/// compiler turns into vector instructions (the UTF-8 check unmasks every client
/// text payload into a scratch buffer this way).
pub fn unmask_into(dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    debug_assert_eq!(dst.len(), src.len());
    let mut wide = [0u8; 32];
    for (i, w) in wide.iter_mut().enumerate() {
        *w = key[i & 3];
    }
    let (outs, out_tail) = dst.as_chunks_mut::<32>();
    let (ins, in_tail) = src.as_chunks::<32>();
    for (o, i) in outs.iter_mut().zip(ins) {
        for j in 0..32 {
            o[j] = i[j] ^ wide[j];
        }
    }
    // The tails start at a multiple of 32, so the key's cycle is at their start.
    for ((o, x), k) in out_tail.iter_mut().zip(in_tail).zip(wide) {
        *o = x ^ k;
    }
}

/// Unmasks (or masks) `data` in place with `key`, starting at payload offset 0.
/// Eight bytes at a time.
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let [a, b, c, d] = key;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut words = data.chunks_exact_mut(8);
    for w in &mut words {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        w.copy_from_slice(&(u64::from_ne_bytes(x) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the key's cycle is at its start.
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// A Close frame wsgate originates. `masked` is true toward backends (wsgate is
/// their client), with a fresh random key per frame.
pub fn close_frame(code: u16, reason: &str, masked: bool) -> Vec<u8> {
    debug_assert!(close_code_sendable(code));
    let mut reason = reason.as_bytes();
    if reason.len() > 123 {
        reason = &reason[..123];
    }
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason);
    control_frame(CLOSE, &payload, masked)
}

/// A single-frame control message (Close, Ping, Pong), payload at most 125 bytes.
pub fn control_frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let payload = &payload[..payload.len().min(125)];
    let mut out = Vec::with_capacity(6 + payload.len());
    out.push(0x80 | opcode);
    let len = payload.len() as u8;
    if masked {
        let key: [u8; 4] = rand::random();
        out.push(0x80 | len);
        out.extend_from_slice(&key);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], key);
    } else {
        out.push(len);
        out.extend_from_slice(payload);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_length_forms_and_waits_for_more() {
        assert_eq!(parse_header(&[0x81]), Ok(None));
        let h = parse_header(&[0x81, 0x05]).unwrap().unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.len, h.mask),
            (true, TEXT, 5, 2, None)
        );
        assert_eq!(parse_header(&[0x82, 126, 0x01]), Ok(None));
        let h = parse_header(&[0x82, 126, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.payload_len, h.len), (256, 4));
        let mut b = vec![0x02, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(parse_header(&b), Ok(None));
        b.extend_from_slice(&[1, 2, 3, 4]);
        let h = parse_header(&b).unwrap().unwrap();
        assert_eq!(
            (h.fin, h.payload_len, h.len, h.mask),
            (false, 65536, 14, Some([1, 2, 3, 4]))
        );
        assert_eq!(
            parse_header(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(Violation::BadLength)
        );
    }

    fn hdr(fin: bool, rsv: u8, opcode: u8, masked: bool, len: u64) -> Header {
        Header {
            fin,
            rsv,
            opcode,
            mask: masked.then_some([0; 4]),
            payload_len: len,
            len: 2,
        }
    }

    #[test]
    fn checker_enforces_rules() {
        let mut c = Checker::new(Sender::Client, Extensions::default());
        assert_eq!(
            c.check(&hdr(true, 0, TEXT, false, 1)),
            Err(Violation::UnmaskedClientFrame)
        );
        assert_eq!(
            c.check(&hdr(true, 0, 0x3, true, 1)),
            Err(Violation::ReservedOpcode(3))
        );
        assert_eq!(
            c.check(&hdr(true, 0b100, TEXT, true, 1)),
            Err(Violation::ReservedBits)
        );
        assert_eq!(
            c.check(&hdr(true, 0, PING, true, 126)),
            Err(Violation::ControlTooLong)
        );
        assert_eq!(
            c.check(&hdr(false, 0, PING, true, 1)),
            Err(Violation::ControlFragmented)
        );
        assert_eq!(
            c.check(&hdr(true, 0, CONTINUATION, true, 1)),
            Err(Violation::UnexpectedContinuation)
        );
        assert_eq!(c.check(&hdr(false, 0, TEXT, true, 1)), Ok(()));
        assert_eq!(c.check(&hdr(true, 0, PING, true, 1)), Ok(()));
        assert_eq!(
            c.check(&hdr(true, 0, BINARY, true, 1)),
            Err(Violation::UnfinishedMessage)
        );
        assert_eq!(c.check(&hdr(true, 0, CONTINUATION, true, 1)), Ok(()));
        assert!(!c.in_message());
        let mut s = Checker::new(Sender::Server, Extensions::default());
        assert_eq!(
            s.check(&hdr(true, 0, TEXT, true, 1)),
            Err(Violation::MaskedServerFrame)
        );
    }

    #[test]
    fn deflate_allows_rsv1_on_first_data_frame_only() {
        let mut c = Checker::new(
            Sender::Server,
            Extensions {
                deflate: true,
                unknown: false,
            },
        );
        assert_eq!(c.check(&hdr(false, 0b100, TEXT, false, 1)), Ok(()));
        assert_eq!(
            c.check(&hdr(true, 0b100, CONTINUATION, false, 1)),
            Err(Violation::ReservedBits)
        );
        assert_eq!(
            c.check(&hdr(true, 0b100, PING, false, 1)),
            Err(Violation::ReservedBits)
        );
        assert_eq!(
            c.check(&hdr(true, 0b010, BINARY, false, 1)),
            Err(Violation::ReservedBits)
        );
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(&[]), Ok(None));
        assert_eq!(parse_close(&[3]), Err(Violation::BadClosePayload));
        assert_eq!(parse_close(&[0x03, 0xE8, b'o', b'k']), Ok(Some(1000)));
        for bad in [1005u16, 1006, 1015, 999, 1004, 2000, 5000] {
            assert_eq!(
                parse_close(&bad.to_be_bytes()),
                Err(Violation::BadClosePayload),
                "{bad}"
            );
        }
        assert_eq!(
            parse_close(&[0x03, 0xE8, 0xFF]),
            Err(Violation::InvalidCloseReason)
        );
        assert_eq!(Violation::InvalidCloseReason.close_code(), 1007);
        assert_eq!(Violation::BadClosePayload.close_code(), 1002);
    }

    #[test]
    fn mask_matches_the_bytewise_definition() {
        let key = [0x9f, 0x01, 0x7a, 0xc4];
        for len in [
            0usize, 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 65, 1000, 1027,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, key);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow, "{len}");
            let mut copy = vec![0u8; len];
            unmask_into(&mut copy, &data, key);
            assert_eq!(copy, slow, "{len}, into");
        }
    }

    #[test]
    fn originated_close_is_masked_toward_backends() {
        let f = close_frame(1001, "bye", true);
        let h = parse_header(&f).unwrap().unwrap();
        assert_eq!((h.opcode, h.payload_len), (CLOSE, 5));
        let key = h.mask.unwrap();
        let mut p = f[h.len..].to_vec();
        apply_mask(&mut p, key);
        assert_eq!(parse_close(&p), Ok(Some(1001)));
        assert_eq!(&p[2..], b"bye");
        let g = close_frame(1001, "bye", true);
        assert_ne!(
            parse_header(&g).unwrap().unwrap().mask,
            Some(key),
            "keys must be fresh"
        );
        let u = close_frame(1014, "x", false);
        assert_eq!(parse_header(&u).unwrap().unwrap().mask, None);
    }
}
