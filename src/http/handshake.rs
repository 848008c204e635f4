//! The client's upgrade request: RFC 6455 section 4.2.1 checks.
//!
//! Owns: `UpgradeRequest` (a request that passed every check; the only way to make
//! one is `UpgradeRequest::parse`) and the header-token helpers the checks use.
//! Does not own: reading the request (serve.rs, head.rs), the answers to refused
//! requests (refusal.rs, `upgrade::refusal`), routing, Origin policy
//! (route/origin.rs), or talking to backends.

use crate::refusal::Refusal;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Version};

/// A request that passed every RFC 6455 check.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    /// The Host header as sent.
    pub host: String,
    pub path_and_query: String,
    /// `Sec-WebSocket-Key`, known to be base64 of 16 bytes.
    pub key: HeaderValue,
    /// Subprotocols the client offered, in its order.
    pub protocols: Vec<String>,
    /// Extension names the client offered (parameters stripped).
    pub extensions: Vec<String>,
}

/// The size of a request head as it was on the wire (to within a few bytes):
/// request line and every header line.
pub fn head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len() + 8); // absolute form: "https://" + authority
    let line = req.method().as_str().len() + target + 12;
    req.headers()
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
        + 2
}

impl UpgradeRequest {
    /// Checks a request in the order a client can best act on.
    pub fn parse<B>(req: &Request<B>) -> Result<UpgradeRequest, Refusal> {
        let h = req.headers();
        if req.method() != Method::GET {
            return Err(Refusal::MethodNotAllowed);
        }
        if req.version() < Version::HTTP_11 {
            return Err(Refusal::OldHttpVersion);
        }
        if !has_token(h, &header::UPGRADE, "websocket") {
            return Err(Refusal::NotWebSocket);
        }
        let host = single(h, &header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty());
        let host = host.ok_or(Refusal::MissingHost)?.to_string();
        if !has_token(h, &header::CONNECTION, "upgrade") {
            return Err(Refusal::ConnectionNotUpgrade);
        }
        let key = single(h, &header::SEC_WEBSOCKET_KEY).filter(|k| valid_key(k.as_bytes()));
        let key = key.ok_or(Refusal::BadKey)?.clone();
        if single(h, &header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
            return Err(Refusal::UnsupportedVersion);
        }
        let has_body = h.contains_key(header::TRANSFER_ENCODING)
            || h.get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        if has_body {
            return Err(Refusal::HasBody);
        }
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        Ok(UpgradeRequest {
            host,
            path_and_query,
            key,
            protocols: tokens(h, &header::SEC_WEBSOCKET_PROTOCOL)
                .map(str::to_string)
                .collect(),
            extensions: tokens(h, &header::SEC_WEBSOCKET_EXTENSIONS)
                .map(|e| {
                    e.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .collect(),
        })
    }

    pub fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or("/")
    }
}

/// The value of a header that must appear exactly once.
fn single<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut it = h.get_all(name).iter();
    let first = it.next()?;
    it.next().is_none().then_some(first)
}

/// Comma-separated tokens over every occurrence of a header, trimmed, non-empty.
pub fn tokens<'a>(h: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> + 'a {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

pub fn has_token(h: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    tokens(h, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// Base64 of exactly 16 bytes, in its one canonical form: 22 alphabet characters
/// then "==", the last character carrying no bits past the 128th (so one of A, Q,
/// g, w; found by the upgrade fuzzer: `...AB==` decodes loosely but is no encoding
/// of 16 bytes).
fn valid_key(k: &[u8]) -> bool {
    k.len() == 24
        && k.ends_with(b"==")
        && k[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        && matches!(k[21], b'A' | b'Q' | b'g' | b'w')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(
        f: impl FnOnce(hyper::http::request::Builder) -> hyper::http::request::Builder,
    ) -> Request<()> {
        let b = Request::get("/chat?x=1")
            .header("host", "example.com")
            .header("upgrade", "websocket")
            .header("connection", "keep-alive, Upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13");
        f(b).body(()).unwrap()
    }

    #[test]
    fn a_good_request_passes() {
        let r = UpgradeRequest::parse(&req(|b| {
            b.header("sec-websocket-protocol", "chat, superchat")
        }))
        .unwrap();
        assert_eq!(r.path(), "/chat");
        assert_eq!(r.path_and_query, "/chat?x=1");
        assert_eq!(r.protocols, ["chat", "superchat"]);
    }

    #[test]
    fn each_failure_has_its_refusal() {
        let mut r = req(|b| b);
        *r.method_mut() = Method::POST;
        assert_eq!(
            UpgradeRequest::parse(&r).unwrap_err(),
            Refusal::MethodNotAllowed
        );
        let mut r = req(|b| b);
        *r.version_mut() = Version::HTTP_10;
        assert_eq!(
            UpgradeRequest::parse(&r).unwrap_err(),
            Refusal::OldHttpVersion
        );
        let mut r = req(|b| b);
        r.headers_mut().remove("upgrade");
        assert_eq!(
            UpgradeRequest::parse(&r).unwrap_err(),
            Refusal::NotWebSocket
        );
        let mut r = req(|b| b);
        r.headers_mut()
            .insert("connection", HeaderValue::from_static("keep-alive"));
        assert_eq!(
            UpgradeRequest::parse(&r).unwrap_err(),
            Refusal::ConnectionNotUpgrade
        );
        let mut r = req(|b| b);
        r.headers_mut()
            .insert("sec-websocket-key", HeaderValue::from_static("c2hvcnQ="));
        assert_eq!(UpgradeRequest::parse(&r).unwrap_err(), Refusal::BadKey);
        for (key, ok) in [
            ("AAAAAAAAAAAAAAAAAAAAAB==", false),
            ("AAAAAAAAAAAAAAAAAAAAAQ==", true),
            ("/////////////////////w==", true),
            ("/////////////////////x==", false),
        ] {
            let mut r = req(|b| b);
            r.headers_mut()
                .insert("sec-websocket-key", HeaderValue::from_static(key));
            assert_eq!(UpgradeRequest::parse(&r).is_ok(), ok, "{key}");
        }
        let mut r = req(|b| b);
        r.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("8"));
        assert_eq!(
            UpgradeRequest::parse(&r).unwrap_err(),
            Refusal::UnsupportedVersion
        );
        let mut r = req(|b| b);
        r.headers_mut().remove("host");
        assert_eq!(UpgradeRequest::parse(&r).unwrap_err(), Refusal::MissingHost);
        assert!(UpgradeRequest::parse(&req(|b| b.header("upgrade", "WebSocket"))).is_ok());
    }
}
