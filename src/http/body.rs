//! Request bodies of proxied HTTP: decoding what the client sends (Content-Length or
//! chunked, strictly), and the body type hyper sends on to the backend.
//!
//! Owns: the chunked decoder (`Chunked`), `feed` (reads the body from the client in
//! pieces over a small channel, so a body is never held whole), and `ReqBody`, the
//! receiving end, which fails rather than end if the feed stops early.
//! Does not own: the framing rules of the head (head.rs) or the exchange with the
//! backend (forward.rs).

use super::head::Framing;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Why a request body could not be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over `max_request_body_bytes`.
    TooLarge,
    /// No byte within `request_body_timeout`.
    Timeout,
    BadChunk,
    /// The client closed (or reset) before the end of the body.
    ClientGone,
    /// The receiving side went away (the backend exchange ended).
    Abandoned,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyError::TooLarge => "request body too large",
            BodyError::Timeout => "request body not received in time",
            BodyError::BadChunk => "malformed chunked request body",
            BodyError::ClientGone => "client closed before the end of the request body",
            BodyError::Abandoned => "request body no longer wanted",
        })
    }
}

impl std::error::Error for BodyError {}

/// One message from the feed to `ReqBody`.
#[derive(Debug)]
pub enum Piece {
    Data(Bytes),
    /// The body ended as framed.
    End,
}

/// Pieces in flight between the client's reads and the backend's writes.
const PIECES_IN_FLIGHT: usize = 2;
/// Bytes asked of the client per read.
const READ_SIZE: usize = 32 * 1024;

/// A request body on its way to the backend: empty, or fed through a channel. It
/// ends only on an explicit end marker (`Piece::End`): a feed that stops early makes
/// it fail, so a truncated body is never passed on as complete.
#[derive(Debug)]
pub struct ReqBody {
    rx: Option<mpsc::Receiver<Piece>>,
    exact: Option<u64>,
}

impl ReqBody {
    pub fn empty() -> ReqBody {
        ReqBody {
            rx: None,
            exact: Some(0),
        }
    }

    /// A body and the sender `feed` fills it through; `exact` is its Content-Length.
    pub fn channel(exact: Option<u64>) -> (mpsc::Sender<Piece>, ReqBody) {
        let (tx, rx) = mpsc::channel(PIECES_IN_FLIGHT);
        (
            tx,
            ReqBody {
                rx: Some(rx),
                exact,
            },
        )
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(None);
        };
        match rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Piece::Data(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Piece::End)) => {
                self.rx = None;
                Poll::Ready(None)
            }
            // The feed stopped without the end marker: never pass this on as whole.
            Poll::Ready(None) => {
                self.rx = None;
                Poll::Ready(Some(Err(BodyError::ClientGone)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rx.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.exact
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// Reads the body framed by `framing` from `rd` (after what `buf` already holds),
/// sends it through `tx` and ends with `Piece::End`. Returns the body's length.
/// On error `tx` is dropped without the end marker. Reads are in pieces, within
/// `request_body_timeout` of each other and `max_request_body_bytes` in all, so
/// memory stays at a few reads whatever the body's size.
pub async fn feed<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    framing: Framing,
    tx: mpsc::Sender<Piece>,
    max: u64,
    gap: Duration,
) -> Result<u64, BodyError> {
    let send = |b: Bytes| {
        let tx = &tx;
        async move {
            tx.send(Piece::Data(b))
                .await
                .map_err(|_| BodyError::Abandoned)
        }
    };
    let mut total = 0u64;
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            while total < n {
                if buf.is_empty() {
                    fill(rd, buf, gap).await?;
                }
                let take = (n - total).min(buf.len() as u64) as usize;
                total += take as u64;
                send(buf.split_to(take).freeze()).await?;
            }
        }
        Framing::Chunked => {
            let mut dec = Chunked::default();
            loop {
                match dec.step(buf)? {
                    Step::More => fill(rd, buf, gap).await?,
                    Step::Data(b) => {
                        total += b.len() as u64;
                        if max > 0 && total > max {
                            return Err(BodyError::TooLarge);
                        }
                        send(b).await?;
                    }
                    Step::Done => break,
                }
            }
        }
    }
    tx.send(Piece::End)
        .await
        .map_err(|_| BodyError::Abandoned)?;
    Ok(total)
}

/// One read of at most `READ_SIZE` bytes into `buf`, within `gap`.
async fn fill<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    gap: Duration,
) -> Result<(), BodyError> {
    buf.reserve(READ_SIZE);
    let mut limited = (&mut *rd).take(READ_SIZE as u64);
    match timeout(gap, limited.read_buf(buf)).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(0)) | Ok(Err(_)) => Err(BodyError::ClientGone),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Longest chunk-size line (size, extensions, CRLF) and total trailer section.
const MAX_SIZE_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// A strict chunked decoder (RFC 9112 section 7.1): hex sizes, extensions ignored
/// but bounded, CRLF only, trailers read and dropped.
#[derive(Debug, Default)]
pub struct Chunked {
    state: State,
    trailers: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// What the decoder made of the bytes it has.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// It needs more bytes.
    More,
    Data(Bytes),
    /// The body and its trailers are over; `buf` starts at the next request.
    Done,
}

impl Chunked {
    /// Consumes what it can of `buf`.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, BodyError> {
        loop {
            match self.state {
                State::Done => return Ok(Step::Done),
                State::Size => {
                    let Some(line) = crlf_line(buf, MAX_SIZE_LINE)? else {
                        return Ok(Step::More);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = left.min(buf.len() as u64);
                    self.state = if take == left {
                        State::DataEnd
                    } else {
                        State::Data(left - take)
                    };
                    return Ok(Step::Data(buf.split_to(take as usize).freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BodyError::BadChunk);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    let limit = MAX_TRAILERS.saturating_sub(self.trailers).max(2);
                    let Some(line) = crlf_line(buf, limit)? else {
                        return Ok(Step::More);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                    } else {
                        self.trailers += line.len() + 2;
                    }
                }
            }
        }
    }
}

/// Takes one CRLF-terminated line off `buf` (without the CRLF). `None` if it is not
/// all there yet; an error if it is longer than `limit` or ends in a bare LF.
fn crlf_line(buf: &mut BytesMut, limit: usize) -> Result<Option<Bytes>, BodyError> {
    match buf.iter().take(limit).position(|b| *b == b'\n') {
        None if buf.len() >= limit => Err(BodyError::BadChunk),
        None => Ok(None),
        Some(0) => Err(BodyError::BadChunk),
        Some(i) if buf[i - 1] != b'\r' => Err(BodyError::BadChunk),
        Some(i) => {
            let line = buf.split_to(i + 1).freeze();
            Ok(Some(line.slice(..i - 1)))
        }
    }
}

/// `1*HEXDIG [ BWS ; extensions ]`: the size, extensions ignored.
fn chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(BodyError::BadChunk);
    }
    let rest = &line[digits..];
    let ext_ok = rest.is_empty()
        || (rest.iter().find(|b| !matches!(b, b' ' | b'\t')) == Some(&b';')
            && rest.iter().all(|b| *b == b'\t' || (b' '..0x7f).contains(b)));
    if !ext_ok {
        return Err(BodyError::BadChunk);
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| BodyError::BadChunk)?;
    u64::from_str_radix(text, 16).map_err(|_| BodyError::BadChunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
        let mut dec = Chunked::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = input;
        loop {
            match dec.step(&mut buf)? {
                Step::Data(b) => out.extend_from_slice(&b),
                Step::Done => return Ok((out, buf.to_vec())),
                Step::More if rest.is_empty() => return Err(BodyError::ClientGone),
                Step::More => {
                    let n = piece.min(rest.len());
                    buf.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                }
            }
        }
    }

    #[test]
    fn chunked_in_any_split() {
        let body = b"5\r\nhello\r\n6;name=v\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next";
        for piece in [1, 2, 3, 7, 100] {
            let (out, rest) = decode(body, piece).unwrap();
            assert_eq!(out, b"hello world", "piece {piece}");
            assert!(b"GET /next".starts_with(&rest), "piece {piece}: {rest:?}");
        }
        let (out, _) = decode(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!(out, b"0123456789");
    }

    #[test]
    fn bad_chunked_is_refused() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],    // bare LF
            b"5\r\nhelloX\r\n0\r\n\r\n",      // data longer than its size
            b"g\r\nhello\r\n0\r\n\r\n",       // not hex
            b"\r\n",                          // no size
            b"5 x\r\nhello\r\n0\r\n\r\n",     // junk after the size
            b"5;a\x01\r\nhello\r\n0\r\n\r\n", // control byte in an extension
            b"10000000000000000\r\n",         // more than 16 hex digits
            b"0\r\nX: 1\n\r\n",               // bare LF in a trailer
        ] {
            assert_eq!(
                decode(bad, 3).unwrap_err(),
                BodyError::BadChunk,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(5000));
        assert_eq!(
            decode(long_ext.as_bytes(), 64).unwrap_err(),
            BodyError::BadChunk
        );
        let many = format!("0\r\n{}\r\n", "X-T: 1\r\n".repeat(3000));
        assert_eq!(
            decode(many.as_bytes(), 64).unwrap_err(),
            BodyError::BadChunk
        );
    }

    #[tokio::test]
    async fn feed_then_body_and_a_truncated_feed_fails() {
        use http_body_util::BodyExt;
        let mut input: &[u8] = b"lo world";
        let mut buf = BytesMut::from(&b"hel"[..]);
        let (tx, body) = ReqBody::channel(Some(11));
        let collect = tokio::spawn(body.collect());
        let n = feed(
            &mut input,
            &mut buf,
            Framing::Length(11),
            tx,
            0,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(n, 11);
        let got = collect.await.unwrap().unwrap().to_bytes();
        assert_eq!(&got[..], b"hello world");

        let (tx, body) = ReqBody::channel(None);
        let collect = tokio::spawn(body.collect());
        tx.send(Piece::Data(Bytes::from_static(b"part")))
            .await
            .unwrap();
        drop(tx);
        assert_eq!(collect.await.unwrap().unwrap_err(), BodyError::ClientGone);

        let mut input: &[u8] = b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
        let (tx, body) = ReqBody::channel(None);
        let _keep = body;
        let r = feed(
            &mut input,
            &mut BytesMut::new(),
            Framing::Chunked,
            tx,
            8,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(r.unwrap_err(), BodyError::TooLarge);
    }
}
