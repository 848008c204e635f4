//! Where a token is found in an upgrade request: `Authorization: Bearer`, a cookie, a
//! query parameter, or a `Sec-WebSocket-Protocol` entry with a prefix (browsers
//! cannot set headers on a WebSocket, but can offer subprotocols). Sources are tried
//! in `token_from` order; the first that holds a token is used.

use crate::config::TokenSource;
use hyper::header::{self, HeaderMap};
use std::borrow::Cow;

/// A token and, when it came from `Sec-WebSocket-Protocol`, the entry that held it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Found<'a> {
    pub token: Cow<'a, str>,
    pub protocol_entry: Option<&'a str>,
}

/// Why no token could be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Missing {
    /// No source holds one.
    None,
    /// `Authorization` is there but not `Bearer <token>`, or is repeated.
    NotBearer,
}

/// The first token in `sources`.
pub(super) fn find<'a>(
    sources: &[TokenSource],
    h: &'a HeaderMap,
    path_and_query: &'a str,
) -> Result<Found<'a>, Missing> {
    let mut not_bearer = false;
    for s in sources {
        let found = match s {
            TokenSource::Authorization => match bearer(h) {
                Ok(t) => t.map(Cow::Borrowed),
                Err(()) => {
                    not_bearer = true;
                    None
                }
            },
            TokenSource::Cookie(name) => cookie(h, name).map(Cow::Borrowed),
            TokenSource::Query(name) => query(path_and_query, name),
            TokenSource::Protocol(prefix) => {
                if let Some(entry) = protocol_entry(h, prefix) {
                    return Ok(Found {
                        token: Cow::Borrowed(&entry[prefix.len()..]),
                        protocol_entry: Some(entry),
                    });
                }
                None
            }
        };
        if let Some(token) = found.filter(|t| !t.is_empty()) {
            return Ok(Found {
                token,
                protocol_entry: None,
            });
        }
    }
    Err(if not_bearer {
        Missing::NotBearer
    } else {
        Missing::None
    })
}

/// `Authorization: Bearer <token>` (scheme case-insensitive); `Err` for another
/// scheme or a repeated header.
fn bearer(h: &HeaderMap) -> Result<Option<&str>, ()> {
    let mut all = h.get_all(header::AUTHORIZATION).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(());
    }
    let v = v.to_str().map_err(|_| ())?.trim();
    match v.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(rest.trim())),
        _ => Err(()),
    }
}

/// The value of cookie `name` (the first, if repeated).
fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// The value of query parameter `name`, percent-decoded.
fn query<'a>(path_and_query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    let (_, q) = path_and_query.split_once('?')?;
    q.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(v: &str) -> Cow<'_, str> {
    if !v.contains(['%', '+']) {
        return Cow::Borrowed(v);
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' => match (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The `Sec-WebSocket-Protocol` entry starting with `prefix` (and longer than it).
pub(super) fn protocol_entry<'a>(h: &'a HeaderMap, prefix: &str) -> Option<&'a str> {
    crate::http::handshake::tokens(h, &header::SEC_WEBSOCKET_PROTOCOL)
        .find(|p| p.len() > prefix.len() && p.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn each_source() {
        let all = [
            TokenSource::Authorization,
            TokenSource::Cookie("at".into()),
            TokenSource::Query("token".into()),
            TokenSource::Protocol("bearer.".into()),
        ];
        let h = headers(&[("authorization", "Bearer a.b.c")]);
        assert_eq!(find(&all, &h, "/").unwrap().token, "a.b.c");
        let h = headers(&[("cookie", "x=1; at=c.o.k; y=2")]);
        assert_eq!(find(&all, &h, "/").unwrap().token, "c.o.k");
        let h = HeaderMap::new();
        assert_eq!(
            find(&all, &h, "/ws?a=1&token=q%2Eq.r&b").unwrap().token,
            "q.q.r"
        );
        let h = headers(&[("sec-websocket-protocol", "chat, bearer.p.p.p")]);
        let f = find(&all, &h, "/").unwrap();
        assert_eq!(
            (&*f.token, f.protocol_entry),
            ("p.p.p", Some("bearer.p.p.p"))
        );
        assert_eq!(find(&all, &HeaderMap::new(), "/?x=1"), Err(Missing::None));
        let h = headers(&[("authorization", "Basic dXNlcg==")]);
        assert_eq!(find(&all[..1], &h, "/"), Err(Missing::NotBearer));
    }

    #[test]
    fn order_decides() {
        let h = headers(&[
            ("authorization", "Bearer from.header.x"),
            ("cookie", "at=from.cookie.x"),
        ]);
        let sources = [TokenSource::Cookie("at".into()), TokenSource::Authorization];
        assert_eq!(find(&sources, &h, "/").unwrap().token, "from.cookie.x");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb"), "a.b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("a+b"), "a b");
    }
}
