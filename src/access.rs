//! The access log: one line per session when it ends, one per proxied plain HTTP
//! request, one per refused handshake
//! (at most `REFUSALS_PER_SECOND` a second; the lines left out are counted into the
//! next one's `suppressed`). Lines go through `tracing` with the target `access`, so
//! `log_format` decides text or JSON and `log_level = "info,access=off"` turns them
//! off. The field names are stable (README "Access log").
//!
//! Owns: which facts a line carries and their names. Never: payloads, query strings,
//! cookies, `Authorization` or any other header value, `Sec-WebSocket-Key`.
//! Does not own: counting (metrics/) or the format (main.rs sets up the subscriber).

use crate::conn::ConnInfo;
use crate::metrics::outcome_label;
use crate::relay::Outcome;
use crate::relay::stats::{CloseFrame, SessionStats, Side};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refused-handshake lines per second, at most.
pub(crate) const REFUSALS_PER_SECOND: u32 = 10;

/// At most `per_second` lines in each one-second window; the rest are counted.
#[derive(Debug)]
pub(crate) struct RateGate {
    per_second: u32,
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    window: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl RateGate {
    pub(crate) const fn new(per_second: u32) -> RateGate {
        RateGate {
            per_second,
            state: Mutex::new(GateState {
                window: None,
                used: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(lines suppressed since the last one let through)` if a line may go out now.
    pub(crate) fn pass(&self) -> Option<u64> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if g.window
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1))
        {
            g.window = Some(now);
            g.used = 0;
        }
        if g.used >= self.per_second {
            g.suppressed += 1;
            return None;
        }
        g.used += 1;
        Some(std::mem::take(&mut g.suppressed))
    }
}

static REFUSALS: RateGate = RateGate::new(REFUSALS_PER_SECOND);

/// A handshake that did not become a session.
#[derive(Debug)]
pub(crate) struct Refused<'a> {
    pub conn: &'a ConnInfo,
    /// The route, when one was chosen.
    pub route: Option<&'a str>,
    /// The path, without the query string.
    pub path: &'a str,
    pub status: u16,
    /// wsgate's one-line reason, or `None` when the backend answered.
    pub reason: Option<&'a str>,
    pub backend: Option<String>,
}

/// Longest Origin written to the access log; longer ones are cut and marked.
const ORIGIN_LOG_MAX: usize = 200;

/// An `Origin` header value as the access log shows it: `scheme://host[:port]` only,
/// so whatever a client appended (a path, a query string, userinfo) is never logged;
/// at most `ORIGIN_LOG_MAX` bytes; bytes that are not visible ASCII become `?`.
pub(crate) fn origin_for_log(raw: &[u8]) -> String {
    let (scheme, rest) = match raw.windows(3).position(|w| w == b"://") {
        Some(i) => raw.split_at(i + 3),
        None => (&[][..], raw),
    };
    let authority = rest
        .split(|b| matches!(b, b'/' | b'?' | b'#'))
        .next()
        .unwrap_or_default();
    let host = authority.rsplit(|&b| b == b'@').next().unwrap_or_default();
    let mut out: String = scheme
        .iter()
        .chain(host)
        .take(ORIGIN_LOG_MAX + 1)
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    if out.len() > ORIGIN_LOG_MAX {
        out.truncate(ORIGIN_LOG_MAX);
        out.push_str("...");
    }
    out
}

pub(crate) fn refused(r: &Refused<'_>) {
    refused_origin(r, None);
}

/// `refused`, for a 403 by the route's Origin policy: the line names the `origin`
/// refused (as `origin_for_log` shows it).
pub(crate) fn refused_origin(r: &Refused<'_>, origin: Option<&str>) {
    let Some(suppressed) = REFUSALS.pass() else {
        return;
    };
    tracing::info!(
        target: "access",
        client = %r.conn.peer,
        listener = %r.conn.listener,
        route = r.route,
        path = r.path,
        status = r.status,
        refused_by = if r.reason.is_some() { "wsgate" } else { "backend" },
        reason = r.reason,
        backend = r.backend.as_deref(),
        origin,
        duration_s = r.conn.accepted.elapsed().as_secs_f64(),
        suppressed,
        "handshake refused"
    );
}

/// A plain HTTP request proxied on an `http = "proxy"` route, answered.
#[derive(Debug)]
pub(crate) struct HttpRequest<'a> {
    pub conn: &'a ConnInfo,
    pub route: &'a str,
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    pub status: u16,
    /// wsgate's one-line reason when wsgate answered, `None` when the backend did.
    pub reason: Option<&'a str>,
    pub backend: Option<&'a str>,
    /// Request body bytes passed on (decoded, for chunked bodies).
    pub request_body_bytes: Option<u64>,
    /// From the request head to the end of the answer.
    pub duration: Duration,
}

/// One line per plain HTTP request (not rate-limited: one per request, as nginx).
pub(crate) fn http_request(r: &HttpRequest<'_>) {
    tracing::info!(
        target: "access",
        client = %r.conn.peer,
        listener = %r.conn.listener,
        route = r.route,
        method = r.method,
        path = r.path,
        status = r.status,
        answered_by = if r.reason.is_some() { "wsgate" } else { "backend" },
        reason = r.reason,
        backend = r.backend,
        request_body_bytes = r.request_body_bytes,
        duration_s = r.duration.as_secs_f64(),
        "http request"
    );
}

/// A session that ended.
#[derive(Debug)]
pub(crate) struct Session<'a> {
    pub conn: &'a ConnInfo,
    pub route: &'a str,
    pub pool: &'a str,
    pub backend: &'a str,
    pub path: &'a str,
    pub subprotocol: Option<&'a str>,
    pub duration: Duration,
    pub stats: &'a SessionStats,
    pub outcome: Outcome,
}

/// Who ended the session first: the first Close, or the side that left without one.
pub(crate) fn closed_by(outcome: &Outcome, first: Option<Side>) -> Side {
    match (outcome, first) {
        (Outcome::BackendGone, None) => Side::Backend,
        (Outcome::ClientGone, None) => Side::Client,
        (Outcome::BackendGone, Some(Side::Wsgate)) => Side::Backend,
        (Outcome::ClientGone, Some(Side::Wsgate)) => Side::Client,
        (_, Some(s)) => s,
        (_, None) => Side::Wsgate,
    }
}

fn code(f: &Option<CloseFrame>) -> Option<u64> {
    f.as_ref().and_then(|f| f.code).map(u64::from)
}

fn reason(f: &Option<CloseFrame>) -> Option<&str> {
    f.as_ref()
        .map(|f| f.reason.as_str())
        .filter(|r| !r.is_empty())
}

pub(crate) fn session(s: &Session<'_>) {
    let c = s.stats.closing();
    tracing::info!(
        target: "access",
        client = %s.conn.peer,
        listener = %s.conn.listener,
        route = s.route,
        pool = s.pool,
        backend = s.backend,
        path = s.path,
        subprotocol = s.subprotocol,
        duration_s = s.duration.as_secs_f64(),
        client_messages = s.stats.client.messages(),
        client_bytes = s.stats.client.bytes(),
        backend_messages = s.stats.backend.messages(),
        backend_bytes = s.stats.backend.bytes(),
        closed_by = closed_by(&s.outcome, c.first).as_str(),
        client_close_code = code(&c.client),
        client_close_reason = reason(&c.client),
        backend_close_code = code(&c.backend),
        backend_close_reason = reason(&c.backend),
        wsgate_close_to_client = code(&c.to_client),
        wsgate_close_to_backend = code(&c.to_backend),
        outcome = outcome_label(&s.outcome),
        "session ended"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_logged_as_scheme_host_and_port_only() {
        let log = |s: &str| origin_for_log(s.as_bytes());
        assert_eq!(log("https://app.example.com"), "https://app.example.com");
        assert_eq!(log("http://a.example:8080"), "http://a.example:8080");
        assert_eq!(log("https://a.example/p?token=x#f"), "https://a.example");
        assert_eq!(log("https://user:pw@a.example"), "https://a.example");
        assert_eq!(log("null"), "null");
        assert_eq!(origin_for_log(b"https://a\x01b\xff"), "https://a?b?");
        let long = format!("https://{}", "a".repeat(500));
        assert_eq!(log(&long).len(), ORIGIN_LOG_MAX + 3);
    }

    #[test]
    fn the_gate_lets_through_per_second_and_counts_the_rest() {
        let g = RateGate::new(2);
        assert_eq!(g.pass(), Some(0));
        assert_eq!(g.pass(), Some(0));
        assert_eq!(g.pass(), None);
        assert_eq!(g.pass(), None);
        g.state.lock().unwrap().window = Some(Instant::now() - Duration::from_secs(2));
        assert_eq!(g.pass(), Some(2));
    }

    #[test]
    fn leaving_without_close_is_who_closed() {
        assert_eq!(
            closed_by(&Outcome::BackendGone, Some(Side::Wsgate)),
            Side::Backend
        );
        assert_eq!(
            closed_by(&Outcome::Shutdown, Some(Side::Wsgate)),
            Side::Wsgate
        );
        let closed = Outcome::Closed {
            client_code: Some(1000),
            backend_code: Some(1000),
        };
        assert_eq!(closed_by(&closed, Some(Side::Client)), Side::Client);
    }
}
