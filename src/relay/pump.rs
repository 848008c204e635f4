//! One direction of a session: read frames from `src`, check their headers, write
//! the same bytes to `dst`, never holding more than one fixed buffer.
//!
//! Owns: the buffer and its cursors, header scanning, and the output's life
//! (open, closing with an optional frame of wsgate's own injected at the next frame
//! boundary, shut down). Does not own: what to do when a side ends or misbehaves;
//! `Pump::poll` reports that as a `PumpEvent` and the session (relay/mod.rs) decides.
//!
//! Buffer layout: `[wpos..fwd)` approved and not yet written; `[fwd..end)` read and
//! not yet scanned. Scanning only happens once everything approved is written, so a
//! slow `dst` stops reads from `src` (backpressure) instead of growing memory.

use super::frame::{self, Checker, Extensions, Sender, Violation};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEvent {
    /// `src` reached EOF or failed.
    SrcEnded,
    /// Writing to `dst` failed.
    DstFailed,
    /// `src` broke the protocol; nothing more is read from it.
    Violation(Violation),
}

#[derive(Debug)]
enum Out {
    Open,
    /// Write `frame` (if any) at the next frame boundary, then shut down.
    Closing(Option<(Vec<u8>, usize)>),
    ShuttingDown,
    Closed,
    Failed,
}

#[derive(Debug)]
pub struct Pump {
    buf: Box<[u8]>,
    wpos: usize,
    fwd: usize,
    end: usize,
    /// Payload bytes of the current frame still to come, and whether they are forwarded.
    payload_left: u64,
    forwarding: bool,
    checker: Checker,
    /// `Some(code)` once a Close frame from `src` has been forwarded.
    close_seen: Option<Option<u16>>,
    src_ended: bool,
    broken: bool,
    out: Out,
    unflushed: bool,
}

impl Pump {
    /// `prefill` holds bytes already read from `src` (read ahead by the HTTP layer).
    pub fn new(sender: Sender, ext: Extensions, capacity: usize, prefill: &[u8]) -> Pump {
        let mut buf =
            vec![0u8; capacity.max(prefill.len()).max(frame::MAX_HEADER + 125)].into_boxed_slice();
        buf[..prefill.len()].copy_from_slice(prefill);
        Pump {
            buf,
            wpos: 0,
            fwd: 0,
            end: prefill.len(),
            payload_left: 0,
            forwarding: true,
            checker: Checker::new(sender, ext),
            close_seen: None,
            src_ended: false,
            broken: false,
            out: Out::Open,
            unflushed: false,
        }
    }

    /// Whether a Close frame from `src` has passed (and with which code).
    pub fn close_seen(&self) -> Option<Option<u16>> {
        self.close_seen
    }

    /// `src` is finished and the output is shut down (or failed).
    pub fn is_done(&self) -> bool {
        (self.src_ended || self.broken) && matches!(self.out, Out::Closed | Out::Failed)
    }

    /// Whether the output sits between frames, so a frame of our own may go in.
    fn at_boundary(&self) -> bool {
        self.wpos == self.fwd && (self.payload_left == 0 || !self.forwarding)
    }

    fn output_gone(&self) -> bool {
        matches!(self.out, Out::ShuttingDown | Out::Closed | Out::Failed)
    }

    /// Ends the output: `frame` (a Close of our own) goes out at the next frame
    /// boundary, then `dst` is shut down. A no-op if the output is already ending.
    pub fn close_output(&mut self, frame: Option<Vec<u8>>) {
        if matches!(self.out, Out::Open) {
            self.out = Out::Closing(frame.map(|f| (f, 0)));
        }
    }

    /// Stops reading `src` for good (after it broke the protocol).
    fn stop_reading(&mut self) {
        self.broken = true;
        self.wpos = 0;
        self.fwd = 0;
        self.end = 0;
    }

    pub fn poll<R, W>(&mut self, cx: &mut Context<'_>, src: &mut R, dst: &mut W) -> Poll<PumpEvent>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            match self.poll_output(cx, dst) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => {
                    self.out = Out::Failed;
                    return Poll::Ready(PumpEvent::DstFailed);
                }
                Poll::Pending => return Poll::Pending,
            }
            if self.src_ended || self.broken {
                return Poll::Pending;
            }
            if self.output_gone() {
                // Nothing can be forwarded any more: drop what was read.
                self.wpos = 0;
                self.fwd = 0;
                self.end = 0;
            } else if self.fwd < self.end {
                match self.scan() {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(v) => {
                        self.stop_reading();
                        return Poll::Ready(PumpEvent::Violation(v));
                    }
                }
            }
            if self.unflushed {
                match Pin::new(&mut *dst).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.unflushed = false,
                    Poll::Ready(Err(_)) => {
                        self.out = Out::Failed;
                        return Poll::Ready(PumpEvent::DstFailed);
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            // Everything approved is written: keep only the unscanned tail.
            if self.fwd > 0 {
                self.buf.copy_within(self.fwd..self.end, 0);
                self.end -= self.fwd;
                self.wpos = 0;
                self.fwd = 0;
            }
            let mut rb = ReadBuf::new(&mut self.buf[self.end..]);
            match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => self.end += rb.filled().len(),
                Poll::Ready(_) => {
                    self.src_ended = true;
                    return Poll::Ready(PumpEvent::SrcEnded);
                }
            }
        }
    }

    /// Writes approved bytes, then carries the output's closing forward.
    /// `Ready(Ok)` means there is nothing to write until more is scanned.
    fn poll_output<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.wpos < self.fwd && !self.output_gone() {
                let n = ready!(Pin::new(&mut *dst).poll_write(cx, &self.buf[self.wpos..self.fwd]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.wpos += n;
                self.unflushed = true;
                continue;
            }
            let mid_frame = !self.at_boundary();
            let src_done = self.src_ended || self.broken;
            match &mut self.out {
                Out::Open | Out::Closed | Out::Failed => return Poll::Ready(Ok(())),
                Out::Closing(frame) => {
                    if mid_frame {
                        if !src_done {
                            return Poll::Ready(Ok(())); // finish the frame in flight first
                        }
                        *frame = None; // the frame can never be completed: no Close fits in
                    }
                    if let Some((bytes, pos)) = frame {
                        while *pos < bytes.len() {
                            let n = ready!(Pin::new(&mut *dst).poll_write(cx, &bytes[*pos..]))?;
                            if n == 0 {
                                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                            }
                            *pos += n;
                        }
                    }
                    self.out = Out::ShuttingDown;
                }
                Out::ShuttingDown => {
                    // A peer that already left makes shutdown fail; it is closed either way.
                    let _ = ready!(Pin::new(&mut *dst).poll_shutdown(cx));
                    self.out = Out::Closed;
                    self.unflushed = false;
                }
            }
        }
    }

    /// Scans from `fwd`: approves payload bytes, checks one header at a time.
    /// `Ok(false)` when more bytes must be read first.
    fn scan(&mut self) -> Result<bool, Violation> {
        if self.payload_left > 0 {
            let n = self.payload_left.min((self.end - self.fwd) as u64) as usize;
            self.payload_left -= n as u64;
            self.fwd += n;
            if !self.forwarding {
                self.wpos = self.fwd; // skipped, not written
            }
            return Ok(true);
        }
        let avail = &self.buf[self.fwd..self.end];
        let Some(h) = frame::parse_header(avail)? else {
            return Ok(false);
        };
        self.checker.check(&h)?;
        let forward = self.close_seen.is_none(); // nothing may follow a Close
        if h.opcode == frame::CLOSE && forward {
            let total = h.len + h.payload_len as usize; // control frames are <= 125 bytes
            if avail.len() < total {
                return Ok(false);
            }
            let mut payload = avail[h.len..total].to_vec();
            if let Some(key) = h.mask {
                frame::apply_mask(&mut payload, key);
            }
            self.close_seen = Some(frame::parse_close(&payload)?);
        }
        self.fwd += h.len;
        if !forward {
            self.wpos = self.fwd;
        }
        self.forwarding = forward;
        self.payload_left = h.payload_len;
        Ok(true)
    }
}
