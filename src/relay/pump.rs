//! One direction of a session: read frames from `src`, check their headers, write
//! the same bytes to `dst`, never holding more than one fixed buffer.
//!
//! Owns: the buffer and its cursors (`Pump`), reading `src` and writing what is
//! approved to `dst` in as few writes as the buffer allows, the per-direction limits it
//! is given (`PumpLimits`, applied frame by frame in pump/scan.rs with the header and
//! UTF-8 checks), and the output's life (`Out`). Does not own: what to do when a side
//! ends or misbehaves; `Pump::poll` reports a `PumpEvent` and relay/mod.rs decides.

mod scan;

use super::bucket::Bucket;
use super::frame::{self, Checker, Extensions, Sender, Violation};
use super::pool;
use super::stats::{SessionStats, Side};
use super::utf8::Utf8;
use crate::config::OnExceed;
use scan::{Halt, Scan};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep, sleep_until};

/// Payload prefix of the pings wsgate sends; Pongs carrying it are not forwarded.
pub(super) const KEEPALIVE_PREFIX: &[u8] = b"wsgate-keepalive:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PumpEvent {
    /// `src` reached EOF or failed.
    SrcEnded,
    /// Writing to `dst` failed.
    DstFailed,
    /// `src` broke the protocol; nothing more is read from it.
    Violation(Violation),
    /// A frame or message from `src` is over its size limit (seen from its header).
    TooBig,
    /// `src` sent messages faster than its rate, and the policy is to close.
    RateExceeded,
}

/// What one direction enforces on the frames it reads. 0 means no limit.
#[derive(Debug, Clone, Default)]
pub(super) struct PumpLimits {
    pub max_frame: u64,
    pub max_message: u64,
    pub rate: Option<Bucket>,
    pub on_exceed: OnExceed,
    /// Drop Pongs that answer wsgate's keepalive pings.
    pub drop_keepalive_pongs: bool,
    /// Note when bytes last arrived (keepalive needs it; reading the clock per read
    /// is otherwise wasted).
    pub track_activity: bool,
    /// Check that text messages are UTF-8.
    pub validate_utf8: bool,
}

/// The output's life: open; closing (a Close of wsgate's own, or one owed to `dst`
/// and sent in place of the Close `src` answers with, at the next frame boundary);
/// shutting down; closed. A control frame of wsgate's own (a keepalive Ping) is
/// injected at the next frame boundary while open.
#[derive(Debug)]
enum Out {
    Open,
    /// Write the frame (if any) at the next frame boundary, then shut down.
    Closing(Option<(Vec<u8>, usize)>),
    ShuttingDown,
    Closed,
    Failed,
}

/// One direction. Buffer layout: `[wpos..fwd)` approved and not yet written;
/// `[fwd..end)` read and not yet scanned. Scanning only happens once everything
/// approved is written, so a slow `dst` stops reads from `src` (backpressure)
/// instead of growing memory.
#[derive(Debug)]
pub(super) struct Pump {
    /// Empty (no allocation) while idle; taken from the pool when bytes arrive.
    buf: Box<[u8]>,
    capacity: usize,
    wpos: usize,
    fwd: usize,
    end: usize,
    /// Payload bytes of the current frame still to come, and whether they are forwarded.
    payload_left: u64,
    forwarding: bool,
    /// Bytes of the current data message so far (all its frames).
    message_bytes: u64,
    /// The current frame's mask key, payload length and FIN bit, and whether its
    /// payload is text being checked.
    mask: Option<[u8; 4]>,
    frame_len: u64,
    frame_fin: bool,
    frame_text: bool,
    /// Some while inside a text message being checked.
    text: Option<Utf8>,
    /// A Close owed to `dst` (which broke a rule): it goes out instead of the Close
    /// `src` answers with, or when the session gives up waiting for that.
    owed: Option<Vec<u8>>,
    checker: Checker,
    limits: PumpLimits,
    throttle: Option<Pin<Box<Sleep>>>,
    /// `Some(code)` once a Close frame from `src` has been forwarded.
    close_seen: Option<Option<u16>>,
    src_ended: bool,
    broken: bool,
    last_read: Instant,
    out: Out,
    /// A control frame of our own (a keepalive Ping) waiting for a frame boundary.
    inject: Option<(Vec<u8>, usize)>,
    unflushed: bool,
    /// The session's counters; `side` is who `src` is.
    stats: Arc<SessionStats>,
    side: Side,
}

impl Pump {
    /// `prefill` holds bytes already read from `src` (read ahead by the HTTP layer).
    pub(super) fn new(
        sender: Sender,
        ext: Extensions,
        capacity: usize,
        prefill: &[u8],
        mut limits: PumpLimits,
        stats: Arc<SessionStats>,
    ) -> Pump {
        // An extension wsgate does not know may transform payloads: leave them alone.
        limits.validate_utf8 &= !ext.unknown;
        let capacity = capacity.max(frame::MAX_HEADER + 125);
        let buf = if prefill.is_empty() {
            Box::default()
        } else {
            let mut b = vec![0u8; capacity.max(prefill.len())].into_boxed_slice();
            b[..prefill.len()].copy_from_slice(prefill);
            b
        };
        Pump {
            buf,
            capacity,
            wpos: 0,
            fwd: 0,
            end: prefill.len(),
            payload_left: 0,
            forwarding: true,
            message_bytes: 0,
            mask: None,
            frame_len: 0,
            frame_fin: true,
            frame_text: false,
            text: None,
            owed: None,
            checker: Checker::new(sender, ext),
            limits,
            throttle: None,
            close_seen: None,
            src_ended: false,
            broken: false,
            last_read: Instant::now(),
            out: Out::Open,
            inject: None,
            unflushed: false,
            stats,
            side: match sender {
                Sender::Client => Side::Client,
                Sender::Server => Side::Backend,
            },
        }
    }

    /// Whether a Close frame from `src` has passed (and with which code).
    pub(super) fn close_seen(&self) -> Option<Option<u16>> {
        self.close_seen
    }

    /// When bytes last arrived from `src` (kept only with `track_activity`).
    pub(super) fn last_read(&self) -> Instant {
        self.last_read
    }

    /// `src` is finished and the output is shut down (or failed).
    pub(super) fn is_done(&self) -> bool {
        (self.src_ended || self.broken) && matches!(self.out, Out::Closed | Out::Failed)
    }

    /// Whether the output sits between frames, so a frame of our own may go in.
    fn at_boundary(&self) -> bool {
        self.wpos == self.fwd && (self.payload_left == 0 || !self.forwarding)
    }

    fn output_gone(&self) -> bool {
        matches!(self.out, Out::ShuttingDown | Out::Closed | Out::Failed)
    }

    /// Queues a control frame of our own (replacing one not yet sent).
    pub(super) fn send_control(&mut self, frame: Vec<u8>) {
        if matches!(self.out, Out::Open) {
            self.inject = Some((frame, 0));
        }
    }

    /// Ends the output: `frame` (a Close of our own) goes out at the next frame
    /// boundary, then `dst` is shut down. A Close owed to `dst` goes instead of
    /// `frame`. A no-op if the output is already ending. No Close goes out after
    /// `src`'s own Close has (nothing may follow a Close).
    pub(super) fn close_output(&mut self, frame: Option<Vec<u8>>) {
        if matches!(self.out, Out::Open) {
            let frame = self
                .owed
                .take()
                .or(frame)
                .filter(|_| self.close_seen.is_none());
            self.out = Out::Closing(frame.map(|f| (f, 0)));
        }
    }

    /// `dst` broke a rule and is owed `frame` (a Close), but what `src` already sent
    /// still goes to it first: keep forwarding until `src`'s Close (which is then
    /// replaced by `frame`), or until `close_output` is called.
    pub(super) fn owe_close(&mut self, frame: Vec<u8>) {
        if !matches!(self.out, Out::Open) {
            return;
        }
        if self.close_seen.is_some() {
            // `src`'s Close already went to `dst`: no second Close may follow it.
            self.close_output(None);
        } else {
            self.owed = Some(frame);
        }
    }

    /// Whether a Close is still owed to `dst`.
    pub(super) fn owes_close(&self) -> bool {
        self.owed.is_some()
    }

    /// Stops reading `src` for good (after it broke a rule).
    fn stop_reading(&mut self) {
        self.broken = true;
        self.throttle = None;
        self.wpos = 0;
        self.fwd = 0;
        self.end = 0;
    }

    pub(super) fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
    ) -> Poll<PumpEvent>
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
                self.throttle = None;
            }
            let mut waiting = false;
            if let Some(t) = self.throttle.as_mut() {
                if t.as_mut().poll(cx).is_pending() {
                    waiting = true;
                } else {
                    self.throttle = None;
                }
            }
            if !waiting && self.fwd < self.end {
                // Approve every complete frame in the buffer, then write them in one
                // go: a header and its payload, or many small frames, share a write
                // (and a TLS record) instead of one each.
                let before = self.fwd;
                loop {
                    match self.scan() {
                        Ok(Scan::Progress) if self.fwd < self.end => {}
                        Ok(Scan::Progress | Scan::FlushFirst | Scan::NeedMore) => break,
                        Ok(Scan::Wait(at)) => {
                            self.throttle = Some(Box::pin(sleep_until(at)));
                            break;
                        }
                        // Frames approved before the offending one still go out first;
                        // scanning has no side effects on error, so it stops again here.
                        Err(_) if self.wpos < self.fwd => break,
                        Err(stop) => {
                            self.stop_reading();
                            return Poll::Ready(match stop {
                                Halt::Violation(v) => PumpEvent::Violation(v),
                                Halt::TooBig => PumpEvent::TooBig,
                                Halt::Rate => PumpEvent::RateExceeded,
                            });
                        }
                    }
                }
                if self.fwd != before || self.throttle.is_some() {
                    continue; // write what was approved (or start waiting for a token)
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
            if waiting {
                // Throttled: read nothing more, so TCP backpressure slows the sender.
                return Poll::Pending;
            }
            // Everything approved is written: keep only the unscanned tail.
            if self.fwd > 0 {
                self.buf.copy_within(self.fwd..self.end, 0);
                self.end -= self.fwd;
                self.wpos = 0;
                self.fwd = 0;
            }
            if self.buf.is_empty() {
                self.buf = pool::take(self.capacity);
            }
            let mut rb = ReadBuf::new(&mut self.buf[self.end..]);
            match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    if self.end == 0 {
                        // Idle: hold no buffer while waiting.
                        pool::give(std::mem::take(&mut self.buf));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    self.end += rb.filled().len();
                    if self.limits.track_activity {
                        self.last_read = Instant::now();
                    }
                }
                Poll::Ready(_) => {
                    self.src_ended = true;
                    return Poll::Ready(PumpEvent::SrcEnded);
                }
            }
        }
    }

    /// Writes approved bytes, injected frames at boundaries, and carries the output's
    /// closing forward. `Ready(Ok)` means nothing can be written until more is scanned.
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
                Out::Closed | Out::Failed => return Poll::Ready(Ok(())),
                Out::Open => {
                    if mid_frame {
                        return Poll::Ready(Ok(()));
                    }
                    if let Some((bytes, pos)) = &mut self.inject {
                        ready!(write_frame(cx, dst, bytes, pos))?;
                        self.inject = None;
                        self.unflushed = true;
                    }
                    return Poll::Ready(Ok(()));
                }
                Out::Closing(frame) => {
                    if mid_frame {
                        if !src_done {
                            return Poll::Ready(Ok(())); // finish the frame in flight first
                        }
                        *frame = None; // it can never be completed: no Close fits in
                    }
                    if let Some((bytes, pos)) = frame {
                        ready!(write_frame(cx, dst, bytes, pos))?;
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
}

impl Drop for Pump {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.buf));
    }
}

/// Writes the rest of a small frame of our own.
fn write_frame<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    dst: &mut W,
    bytes: &[u8],
    pos: &mut usize,
) -> Poll<io::Result<()>> {
    while *pos < bytes.len() {
        let n = ready!(Pin::new(&mut *dst).poll_write(cx, &bytes[*pos..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *pos += n;
    }
    Poll::Ready(Ok(()))
}
