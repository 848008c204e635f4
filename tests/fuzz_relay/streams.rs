//! The two sides of a session as the relay sees them: scripted reads, writes
//! taken in scripted sizes, and a record of what each side received.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

// ------------------------------------------------------------------ the streams

#[derive(Default)]
pub(super) struct Seen {
    pub(super) out: Vec<u8>,
    pub(super) shut: bool,
    pub(super) max_read_room: usize,
}

/// One side of the session as the relay sees it: reads come from `input` in the
/// sizes `reads` cycles through; writes are taken in the sizes `writes` cycles
/// through. Every other poll is Pending (woken at once), to interleave the two
/// directions. `eof`: the input ends with EOF; otherwise it stays silent.
pub(super) struct Side {
    input: Vec<u8>,
    pos: usize,
    eof: bool,
    reads: Vec<usize>,
    ri: usize,
    writes: Vec<usize>,
    wi: usize,
    tick: u32,
    pub(super) seen: Arc<Mutex<Seen>>,
}

impl Side {
    pub(super) fn new(input: Vec<u8>, eof: bool, reads: Vec<usize>, writes: Vec<usize>) -> Side {
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
