//! Reading and checking one request head (RFC 9112), before anything else sees it.
//!
//! Owns: parsing the head (httparse) within `max_header_bytes`, the request target
//! forms accepted (origin-form, and absolute-form whose authority then is the Host),
//! and the framing rules that keep a request from being read two ways (smuggling):
//! Content-Length together with Transfer-Encoding, a repeated or malformed
//! Content-Length, a line folded with obs-fold, a Transfer-Encoding other than one
//! final `chunked`, and Transfer-Encoding in HTTP/1.0 are each refused with their own
//! status and reason before the request is routed. Does not own: reading bodies
//! (body.rs) or what a request means (serve.rs, upgrade.rs).

use crate::http::handshake::tokens;
use crate::refusal::Refusal;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri, Version};

/// How a request body is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes (more than 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head that passed every framing rule.
#[derive(Debug)]
pub struct Head {
    pub req: Request<()>,
    pub framing: Framing,
}

/// More header fields than this are refused (431), as hyper's default did.
const MAX_FIELDS: usize = 128;

/// Parses the head at the start of `buf`. `Ok(None)`: not complete yet (read more).
/// `Ok(Some((head, n)))`: the head took the first `n` bytes. A head (complete or
/// not) longer than `max` is refused with 431.
pub fn parse(buf: &[u8], max: usize) -> Result<Option<(Head, usize)>, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut r = httparse::Request::new(&mut fields);
    let n = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max => return Err(Refusal::HeaderTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(parse_error(buf, e)),
    };
    if n > max {
        return Err(Refusal::HeaderTooLarge);
    }
    let method = r
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or(Refusal::MalformedHead("invalid method"))?;
    let version = match r.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(r.headers.len());
    for f in r.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| Refusal::MalformedHead("invalid header field name"))?;
        let value = HeaderValue::from_bytes(f.value)
            .map_err(|_| Refusal::MalformedHead("invalid header field value"))?;
        headers.append(name, value);
    }
    let uri = target(r.path.unwrap_or(""), &mut headers)?;
    let framing = framing(version, &headers)?;
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    Ok(Some((Head { req, framing }, n)))
}

fn parse_error(buf: &[u8], e: httparse::Error) -> Refusal {
    if has_obs_fold(buf) {
        return Refusal::ObsFold;
    }
    match e {
        httparse::Error::Version => Refusal::UnsupportedHttpVersion,
        httparse::Error::TooManyHeaders => Refusal::HeaderTooLarge,
        httparse::Error::HeaderName => Refusal::MalformedHead("invalid header field name"),
        httparse::Error::HeaderValue => Refusal::MalformedHead("invalid header field value"),
        httparse::Error::NewLine => Refusal::MalformedHead("bad line ending"),
        httparse::Error::Token => Refusal::MalformedHead("invalid method or request target"),
        _ => Refusal::MalformedHead("malformed request line"),
    }
}

/// A header line that starts with a space or tab: obs-fold (RFC 9112 section 5.2),
/// or whitespace between the request line and the first field (section 2.2).
fn has_obs_fold(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(0);
    for line in buf[start..].split(|b| *b == b'\n').skip(1) {
        match line {
            [] | [b'\r'] => return false, // the end of the head
            [b' ' | b'\t', ..] => return true,
            _ => {}
        }
    }
    false
}

/// The request target: origin-form as is; absolute-form (`http://host/path`) becomes
/// its path, and its authority replaces Host (RFC 9112 section 3.2.2). The
/// asterisk and authority forms (OPTIONS *, CONNECT) are refused.
fn target(t: &str, headers: &mut HeaderMap) -> Result<Uri, Refusal> {
    if t.starts_with('/') {
        return t
            .parse::<Uri>()
            .map_err(|_| Refusal::MalformedHead("invalid request target"));
    }
    let lower = t.get(..8).unwrap_or(t).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(Refusal::BadTarget);
    }
    let uri: Uri = t
        .parse()
        .map_err(|_| Refusal::MalformedHead("invalid request target"))?;
    let authority = uri.authority().ok_or(Refusal::BadTarget)?;
    let host = HeaderValue::from_str(authority.as_str())
        .map_err(|_| Refusal::MalformedHead("invalid request target"))?;
    headers.remove(header::HOST);
    headers.insert(header::HOST, host);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    path.parse()
        .map_err(|_| Refusal::MalformedHead("invalid request target"))
}

/// The body framing, by the strict reading of RFC 9112 section 6: anything that two
/// implementations could delimit differently is refused.
fn framing(version: Version, h: &HeaderMap) -> Result<Framing, Refusal> {
    let te = h.contains_key(header::TRANSFER_ENCODING);
    let cl: Vec<&HeaderValue> = h.get_all(header::CONTENT_LENGTH).iter().collect();
    if te && !cl.is_empty() {
        return Err(Refusal::LengthWithTransferEncoding);
    }
    if te {
        if version == Version::HTTP_10 {
            return Err(Refusal::TransferEncodingHttp10);
        }
        let codings: Vec<String> = tokens(h, &header::TRANSFER_ENCODING)
            .map(str::to_ascii_lowercase)
            .collect();
        let chunked = codings.iter().filter(|c| *c == "chunked").count();
        if codings.last().map(String::as_str) != Some("chunked") || chunked != 1 {
            return Err(Refusal::BadTransferEncoding);
        }
        if codings.len() > 1 {
            return Err(Refusal::UnsupportedTransferEncoding);
        }
        return Ok(Framing::Chunked);
    }
    match cl.as_slice() {
        [] => Ok(Framing::Empty),
        [v] if v.as_bytes().contains(&b',') => Err(Refusal::RepeatedContentLength),
        [v] => {
            let b = v.as_bytes();
            if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
                return Err(Refusal::BadContentLength);
            }
            let n: u64 = v
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Refusal::BadContentLength)?;
            Ok(if n == 0 {
                Framing::Empty
            } else {
                Framing::Length(n)
            })
        }
        _ => Err(Refusal::RepeatedContentLength),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(head: &str) -> Result<Head, Refusal> {
        parse(head.as_bytes(), 16384).map(|r| r.expect("complete").0)
    }

    #[test]
    fn good_heads_and_their_framing() {
        let h = p("GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(h.req.uri(), "/a?b=1");
        assert_eq!(h.framing, Framing::Empty);
        let h = p("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Length(12));
        let h = p("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = p("POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Empty);
        assert_eq!(h.req.version(), Version::HTTP_10);
        // absolute-form: its authority is the Host
        let h = p("GET http://other:8080/x?y HTTP/1.1\r\nHost: ignored\r\n\r\n").unwrap();
        assert_eq!(h.req.uri(), "/x?y");
        assert_eq!(h.req.headers()["host"], "other:8080");
        assert_eq!(h.req.headers().get_all("host").iter().count(), 1);
    }

    #[test]
    fn incomplete_and_too_large() {
        assert!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n", 1024)
                .unwrap()
                .is_none()
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(2000));
        assert_eq!(
            parse(big.as_bytes(), 1024).unwrap_err(),
            Refusal::HeaderTooLarge
        );
        let done = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(2000));
        assert_eq!(
            parse(done.as_bytes(), 1024).unwrap_err(),
            Refusal::HeaderTooLarge
        );
        let (_, n) = parse(b"GET / HTTP/1.1\r\n\r\nrest", 1024).unwrap().unwrap();
        assert_eq!(n, 18);
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        use Refusal::*;
        for (head, want) in [
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked",
                LengthWithTransferEncoding,
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5",
                LengthWithTransferEncoding,
            ),
            (
                "Content-Length: 5\r\nContent-Length: 5",
                RepeatedContentLength,
            ),
            ("Content-Length: 5, 5", RepeatedContentLength),
            ("Content-Length: +5", BadContentLength),
            ("Content-Length: 5 5", BadContentLength),
            ("Content-Length: 0x5", BadContentLength),
            ("Content-Length: 99999999999999999999", BadContentLength),
            ("Transfer-Encoding: chunked, chunked", BadTransferEncoding),
            ("Transfer-Encoding: chunked, gzip", BadTransferEncoding),
            ("Transfer-Encoding: identity", BadTransferEncoding),
            ("Transfer-Encoding: ", BadTransferEncoding),
            (
                "Transfer-Encoding: gzip, chunked",
                UnsupportedTransferEncoding,
            ),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                BadTransferEncoding,
            ),
            ("X-A: 1\r\n folded", ObsFold),
            ("X-A: 1\r\n\tfolded", ObsFold),
            (
                "Content-Length : 5",
                MalformedHead("invalid header field name"),
            ),
        ] {
            let text = format!("POST / HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n");
            assert_eq!(p(&text).unwrap_err(), want, "{head:?}");
        }
        assert_eq!(
            p("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err(),
            TransferEncodingHttp10
        );
        assert_eq!(
            p("GET / HTTP/1.1\r\n Host: x\r\n\r\n").unwrap_err(),
            ObsFold,
            "whitespace before the first field"
        );
        // obs-fold is seen even before the head is complete.
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nX: 1\r\n y", 1024).unwrap_err(),
            ObsFold
        );
    }

    #[test]
    fn other_bad_heads() {
        use Refusal::*;
        assert_eq!(
            p("GET / HTTP/2.0\r\n\r\n").unwrap_err(),
            UnsupportedHttpVersion
        );
        assert_eq!(
            p("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err(),
            BadTarget
        );
        assert_eq!(
            p("CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err(),
            BadTarget
        );
        assert!(matches!(
            p("GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n").unwrap_err(),
            MalformedHead(_)
        ));
        assert!(matches!(
            p("GET  / HTTP/1.1\r\n\r\n").unwrap_err(),
            MalformedHead(_)
        ));
    }
}
