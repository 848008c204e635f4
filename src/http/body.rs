//! Request bodies of proxied HTTP: decoding what the client sends (Content-Length or
//! chunked, strictly), and the body type hyper sends on to the backend.
//!
//! Owns: the chunked decoder (`Chunked`), `Reader` (one body off the connection,
//! under its size, gap and minimum-rate limits: `Pace`), `read_ahead` (a small body
//! read whole before a backend is chosen, a large one's first part), `feed` (the
//! rest from the client in pieces over a small channel, so a large body is never
//! held whole), and `ReqBody`, the body hyper sends: whole, or the receiving end of
//! the feed, which fails rather than end if the feed stops early.
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
use tokio::time::{Instant, timeout_at};

/// Why a request body could not be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over `max_request_body_bytes`.
    TooLarge,
    /// No byte within `request_body_timeout`.
    Timeout,
    /// Slower than `request_body_min_rate`.
    TooSlow,
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
            BodyError::TooSlow => "request body arrived too slowly",
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
    /// A body read whole before it is sent, until it is.
    whole: Option<Bytes>,
    rx: Option<mpsc::Receiver<Piece>>,
    exact: Option<u64>,
}

impl ReqBody {
    pub fn empty() -> ReqBody {
        ReqBody {
            whole: None,
            rx: None,
            exact: Some(0),
        }
    }

    /// A body read whole: sent in one go, with its length.
    pub fn whole(b: Bytes) -> ReqBody {
        ReqBody {
            exact: Some(b.len() as u64),
            whole: (!b.is_empty()).then_some(b),
            rx: None,
        }
    }

    /// A body and the sender `feed` fills it through; `exact` is its Content-Length.
    pub fn channel(exact: Option<u64>) -> (mpsc::Sender<Piece>, ReqBody) {
        let (tx, rx) = mpsc::channel(PIECES_IN_FLIGHT);
        (
            tx,
            ReqBody {
                whole: None,
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
        if let Some(b) = self.whole.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
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
        self.whole.is_none() && self.rx.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.exact
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// The slowest pace a body may arrive at (`request_body_min_rate`): it must have
/// arrived by its start + `grace` + bytes received / `rate`, as Apache's
/// mod_reqtimeout `MinRate` extends its deadline with each byte. Time the backend
/// holds the body up (a full channel) is not the client's and is excused.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Bytes per second (0: off).
    rate: u64,
    grace: Duration,
    start: Instant,
    received: u64,
}

impl Pace {
    /// A body starting now.
    pub fn new(rate: u64, grace: Duration) -> Pace {
        Pace {
            rate,
            grace,
            start: Instant::now(),
            received: 0,
        }
    }

    /// When the body is late if no byte comes before then (`None`: no minimum).
    fn deadline(&self) -> Option<Instant> {
        (self.rate > 0).then(|| {
            let owed = Duration::from_secs_f64(self.received as f64 / self.rate as f64);
            self.start + self.grace + owed
        })
    }
}

/// Reads one body off the client's connection, piece by piece: its framing, what
/// came so far, and the limits it is read under (`max_request_body_bytes`,
/// `request_body_timeout` between reads, the `Pace`).
#[derive(Debug)]
pub struct Reader {
    framing: Framing,
    total: u64,
    dec: Chunked,
    max: u64,
    gap: Duration,
    pace: Pace,
}

impl Reader {
    pub fn new(framing: Framing, max: u64, gap: Duration, pace: Pace) -> Reader {
        Reader {
            framing,
            total: 0,
            dec: Chunked::default(),
            max,
            gap,
            pace,
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Body bytes read so far (decoded).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The next piece of the body (after what `buf` already holds), `None` once it
    /// has ended as framed.
    async fn next<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        buf: &mut BytesMut,
    ) -> Result<Option<Bytes>, BodyError> {
        match self.framing {
            Framing::Empty => Ok(None),
            Framing::Length(n) => {
                if self.total >= n {
                    return Ok(None);
                }
                if buf.is_empty() {
                    fill(rd, buf, self.gap, &mut self.pace).await?;
                }
                let take = (n - self.total).min(buf.len() as u64) as usize;
                self.total += take as u64;
                Ok(Some(buf.split_to(take).freeze()))
            }
            Framing::Chunked => loop {
                match self.dec.step(buf)? {
                    Step::More => fill(rd, buf, self.gap, &mut self.pace).await?,
                    Step::Data(b) => {
                        self.total += b.len() as u64;
                        if self.max > 0 && self.total > self.max {
                            return Err(BodyError::TooLarge);
                        }
                        return Ok(Some(b));
                    }
                    Step::Done => return Ok(None),
                }
            },
        }
    }
}

/// What `read_ahead` got before a backend is involved.
#[derive(Debug, PartialEq, Eq)]
pub enum Ahead {
    /// The whole body: send it in one go.
    Whole(Bytes),
    /// Its first part (the buffer is full, or buffering is off): stream it, then
    /// the rest (`feed`).
    Part(Bytes),
}

/// Reads the body into one buffer until it ends (`Ahead::Whole`) or `limit` bytes
/// are in (`Ahead::Part`; at once if `limit` is 0). The pieces are copied, so the
/// memory held is the body's bytes however the client split it.
pub async fn read_ahead<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    reader: &mut Reader,
    limit: u64,
) -> Result<Ahead, BodyError> {
    let mut ahead = BytesMut::new();
    while limit > 0 && (ahead.len() as u64) < limit {
        match reader.next(rd, buf).await? {
            Some(b) => ahead.extend_from_slice(&b),
            None => return Ok(Ahead::Whole(ahead.freeze())),
        }
    }
    Ok(Ahead::Part(ahead.freeze()))
}

/// Sends `first` (what `read_ahead` got), then the rest of the body read from `rd`
/// (after what `buf` already holds), through `tx`, and ends with `Piece::End`.
/// Returns the body's length. On error `tx` is dropped without the end marker.
/// Reads are in pieces, so memory stays at a few reads whatever the body's size.
pub async fn feed<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    reader: &mut Reader,
    first: Bytes,
    tx: mpsc::Sender<Piece>,
) -> Result<u64, BodyError> {
    let mut next = (!first.is_empty()).then_some(first);
    loop {
        let piece = match next.take() {
            Some(b) => Piece::Data(b),
            None => match reader.next(rd, buf).await? {
                Some(b) => Piece::Data(b),
                None => Piece::End,
            },
        };
        let end = matches!(piece, Piece::End);
        let waited = Instant::now();
        tx.send(piece).await.map_err(|_| BodyError::Abandoned)?;
        // The backend held the body up meanwhile, not the client.
        reader.pace.start += waited.elapsed();
        if end {
            return Ok(reader.total);
        }
    }
}

/// One read of at most `READ_SIZE` bytes into `buf`, within `gap`, and before the
/// body falls behind its `pace`.
async fn fill<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    gap: Duration,
    pace: &mut Pace,
) -> Result<(), BodyError> {
    buf.reserve(READ_SIZE);
    let mut limited = (&mut *rd).take(READ_SIZE as u64);
    let (wait, late) = match pace.deadline() {
        Some(d) if d < Instant::now() + gap => (d, BodyError::TooSlow),
        _ => (Instant::now() + gap, BodyError::Timeout),
    };
    match timeout_at(wait, limited.read_buf(buf)).await {
        Err(_) => Err(late),
        Ok(Ok(0)) | Ok(Err(_)) => Err(BodyError::ClientGone),
        Ok(Ok(n)) => {
            pace.received += n as u64;
            Ok(())
        }
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

    fn reader(framing: Framing, max: u64) -> Reader {
        Reader::new(
            framing,
            max,
            Duration::from_secs(1),
            Pace::new(0, Duration::ZERO),
        )
    }

    #[tokio::test]
    async fn feed_then_body_and_a_truncated_feed_fails() {
        use http_body_util::BodyExt;
        let mut input: &[u8] = b"lo world";
        let mut buf = BytesMut::from(&b"hel"[..]);
        let (tx, body) = ReqBody::channel(Some(11));
        let collect = tokio::spawn(body.collect());
        let mut r = reader(Framing::Length(11), 0);
        let n = feed(&mut input, &mut buf, &mut r, Bytes::new(), tx)
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
        let mut r = reader(Framing::Chunked, 8);
        let got = feed(&mut input, &mut BytesMut::new(), &mut r, Bytes::new(), tx).await;
        assert_eq!(got.unwrap_err(), BodyError::TooLarge);
    }

    #[tokio::test]
    async fn read_ahead_whole_or_first_part_then_the_rest() {
        use http_body_util::BodyExt;
        let chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /next";
        let mut input: &[u8] = chunked;
        let mut buf = BytesMut::new();
        let mut r = reader(Framing::Chunked, 0);
        let got = read_ahead(&mut input, &mut buf, &mut r, 64).await.unwrap();
        assert_eq!(got, Ahead::Whole(Bytes::from_static(b"hello world")));
        let got = ReqBody::whole(Bytes::from_static(b"hello world"));
        assert_eq!(got.size_hint().exact(), Some(11));
        let got = got.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"hello world");

        // Over the limit: the first part, then the rest streamed after it.
        let mut input: &[u8] = chunked;
        let mut buf = BytesMut::new();
        let mut r = reader(Framing::Chunked, 0);
        let Ahead::Part(first) = read_ahead(&mut input, &mut buf, &mut r, 4).await.unwrap() else {
            panic!("a body over the limit is read whole");
        };
        assert_eq!(&first[..], b"hello");
        let (tx, body) = ReqBody::channel(None);
        let collect = tokio::spawn(body.collect());
        let n = feed(&mut input, &mut buf, &mut r, first, tx).await.unwrap();
        assert_eq!(n, 11);
        let got = collect.await.unwrap().unwrap().to_bytes();
        assert_eq!(&got[..], b"hello world");
        assert!(b"GET /next".starts_with(&buf[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_behind_its_minimum_rate_is_too_slow() {
        // 10 bytes per second against a minimum of 100 after a 2 s grace: late at
        // about 2.2 s, long before the 60 s gap.
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for _ in 0..100 {
                if client.write_all(b"0123456789").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let pace = Pace::new(100, Duration::from_secs(2));
        let started = Instant::now();
        let mut r = Reader::new(Framing::Length(1000), 0, Duration::from_secs(60), pace);
        let got = read_ahead(&mut server, &mut BytesMut::new(), &mut r, 4096).await;
        assert_eq!(got.unwrap_err(), BodyError::TooSlow);
        let t = started.elapsed();
        assert!(
            t >= Duration::from_secs(2) && t < Duration::from_secs(4),
            "{t:?}"
        );
    }
}
