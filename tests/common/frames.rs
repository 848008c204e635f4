//! Raw WebSocket frames as they cross the wire, for the cases a polite peer never
//! sends: the opcodes, one frame encoded (masked or not), one frame or all of them
//! read back, and the Close check.

use super::DEADLINE;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Frame opcodes (RFC 6455 section 5.2): the one definition for every test that
/// writes or reads raw frames. Reserved opcodes (3-7, 11-15) stay literals where a
/// test sends one on purpose.
pub mod op {
    /// The continuation of a fragmented message.
    pub const CONT: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// One frame as seen on the wire, payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The code of a Close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == op::CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Encodes a frame; `mask` masks the payload with that key.
pub fn encode_frame(
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Reads one frame; `Err` on EOF.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<RawFrame> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).await?;
    let masked = h[1] & 0x80 != 0;
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).await?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).await?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut key = [0u8; 4];
    if masked {
        r.read_exact(&mut key).await?;
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok(RawFrame {
        fin: h[0] & 0x80 != 0,
        rsv: (h[0] >> 4) & 7,
        opcode: h[0] & 0x0F,
        masked,
        payload,
    })
}

/// Reads frames until EOF (or the deadline), returning them all.
pub async fn read_frames_to_eof<R: AsyncRead + Unpin>(r: &mut R) -> Vec<RawFrame> {
    let mut out = Vec::new();
    while let Ok(Ok(f)) = tokio::time::timeout(DEADLINE, read_frame(r)).await {
        out.push(f);
    }
    out
}

/// The frames in `b`, which must hold whole frames only.
pub async fn frames_of(mut b: &[u8]) -> Vec<RawFrame> {
    let mut out = Vec::new();
    while !b.is_empty() {
        out.push(read_frame(&mut b).await.expect("whole frames"));
    }
    out
}

/// `f` is a Close with `code`, masked or not.
pub fn assert_close(f: &RawFrame, code: u16, masked: bool, what: &str) {
    assert_eq!(
        (f.opcode, f.fin, f.masked, f.close_code()),
        (op::CLOSE, true, masked, Some(code)),
        "{what}: {f:?}"
    );
}
