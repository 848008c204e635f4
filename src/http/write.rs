//! Writing responses to the client: the head, and the body with the framing the
//! client can read.
//!
//! Owns: serializing a response head, choosing its framing (Content-Length when the
//! length is known, chunked for an HTTP/1.1 client otherwise, the connection's end
//! for HTTP/1.0; none for HEAD, 1xx, 204 and 304), streaming the body as it comes
//! (never whole: one frame at a time, flushed when the next is not ready yet, each
//! within `gap`), and `Connection: close` when the connection will not be reused.
//! Does not own: what the response is (serve.rs, forward.rs, upgrade.rs).

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use std::fmt::Display;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::time::timeout;

/// What decides a response's framing besides the response itself.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    /// The request was HEAD: no body, whatever the headers say.
    pub head_request: bool,
    /// The client speaks HTTP/1.1 (can read chunked, keeps alive by default).
    pub http11: bool,
    /// The connection closes after this response.
    pub close: bool,
}

/// Writes a response head (status line, `headers`, blank line) and flushes.
pub async fn write_head<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: StatusCode,
    headers: &HeaderMap,
) -> io::Result<()> {
    let head = serialize_head(status, headers);
    w.write_all(&head).await?;
    w.flush().await
}

fn serialize_head(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes `resp` framed for the client. `Ok(close)`: all of it was written, and
/// whether the connection must close now. `Err`: it could not be finished (the
/// client or the body failed, or the body paused longer than `gap`); close.
pub async fn write_response<W, B>(
    w: &mut W,
    resp: Response<B>,
    reply: Reply,
    gap: Option<Duration>,
) -> io::Result<bool>
where
    W: AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let (mut parts, mut body) = resp.into_parts();
    let status = parts.status;
    let h = &mut parts.headers;
    let said_close = crate::http::handshake::has_token(h, &header::CONNECTION, "close");
    let mut close = reply.close || !reply.http11 || said_close;
    h.remove(header::TRANSFER_ENCODING);
    if !said_close {
        h.remove(header::CONNECTION);
    }
    let no_body = reply.head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let chunked = if no_body {
        if status == StatusCode::NO_CONTENT {
            h.remove(header::CONTENT_LENGTH);
        }
        false
    } else if let Some(n) = body.size_hint().exact() {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        false
    } else {
        h.remove(header::CONTENT_LENGTH);
        if reply.http11 {
            h.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            true
        } else {
            close = true; // delimited by the end of the connection
            false
        }
    };
    if close && !said_close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let mut out = BufWriter::with_capacity(16 * 1024, w);
    out.write_all(&serialize_head(status, h)).await?;
    if no_body {
        out.flush().await?;
        return Ok(close);
    }
    loop {
        // Flush only when the next frame is not there yet: head and a small body
        // go out in one write (one TLS record).
        let next = match body.frame().now_or_never() {
            Some(f) => f,
            None => {
                out.flush().await?;
                match gap {
                    Some(g) => timeout(g, body.frame()).await.map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "response body stalled")
                    })?,
                    None => body.frame().await,
                }
            }
        };
        let frame = match next {
            None => break,
            Some(Err(e)) => return Err(io::Error::other(e.to_string())),
            Some(Ok(f)) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers are dropped
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            out.write_all(format!("{:x}\r\n", data.len()).as_bytes())
                .await?;
            out.write_all(&data).await?;
            out.write_all(b"\r\n").await?;
        } else {
            out.write_all(&data).await?;
        }
    }
    if chunked {
        out.write_all(b"0\r\n\r\n").await?;
    }
    out.flush().await?;
    Ok(close)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    async fn written<B>(resp: Response<B>, reply: Reply) -> (String, bool)
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Display,
    {
        let mut out = Vec::new();
        let close = write_response(&mut out, resp, reply, None).await.unwrap();
        (String::from_utf8(out).unwrap(), close)
    }

    const KEEP: Reply = Reply {
        head_request: false,
        http11: true,
        close: false,
    };

    #[tokio::test]
    async fn framing_follows_what_is_known() {
        let (t, close) = written(Response::new(Full::new(Bytes::from("hi"))), KEEP).await;
        assert_eq!(t, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi");
        assert!(!close);
        let frames = || {
            futures_util::stream::iter([
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from("ab"))),
                Ok(hyper::body::Frame::data(Bytes::from("cde"))),
            ])
        };
        let (t, _) = written(Response::new(StreamBody::new(frames())), KEEP).await;
        assert_eq!(
            t,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
        );
        let old = Reply {
            http11: false,
            ..KEEP
        };
        let (t, close) = written(Response::new(StreamBody::new(frames())), old).await;
        assert_eq!(t, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nabcde");
        assert!(close);
        let head = Reply {
            head_request: true,
            ..KEEP
        };
        let mut r = Response::new(Full::new(Bytes::new()));
        r.headers_mut()
            .insert("content-length", HeaderValue::from_static("99"));
        let (t, _) = written(r, head).await;
        assert_eq!(t, "HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n");
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        let (t, _) = written(r, KEEP).await;
        assert_eq!(t, "HTTP/1.1 204 No Content\r\n\r\n");
    }
}
