//! `ProbeError`: why one active health probe failed.
//!
//! Owns: the kinds of failure, their wording, their causes (`source()`), and the
//! short fixed `label()` each gives the `result` label of
//! `wsgate_backend_checks_total`. Does not own: probing (health.rs) or what a
//! failure does to a backend (backend.rs).

use std::fmt;
use std::time::Duration;

/// Why a probe failed. `Display` says what failed; `source()` gives the io, TLS or
/// WebSocket error beneath.
#[derive(Debug)]
pub enum ProbeError {
    /// The TCP connect failed.
    Connect(std::io::Error),
    /// The PROXY header could not be sent.
    ProxyHeader(std::io::Error),
    /// The TLS handshake failed (certificate not verified...).
    Tls(std::io::Error),
    /// No verdict within the check's `timeout`.
    Timeout(Duration),
    /// Sending the http check's request or reading its answer failed.
    Io(std::io::Error),
    /// The http check's answer does not start with an HTTP/1.x status line.
    BadStatusLine(String),
    /// The http check's answer has another status than `expect_status`.
    BadStatus {
        path: String,
        status: u16,
        expected: u16,
    },
    /// The websocket check's upgrade was answered with another status than 101.
    Not101 { path: String, status: u16 },
    /// The websocket check's upgrade failed otherwise (bad Accept, connection lost...).
    Upgrade {
        path: String,
        source: tungstenite::Error,
    },
    /// The close after a successful upgrade failed.
    Close(tungstenite::Error),
}

impl ProbeError {
    /// The `result` label of `wsgate_backend_checks_total` for this failure.
    pub fn label(&self) -> &'static str {
        match self {
            ProbeError::Connect(_) => "connect_failed",
            ProbeError::ProxyHeader(_) => "proxy_header_failed",
            ProbeError::Tls(_) => "tls_failed",
            ProbeError::Timeout(_) => "timeout",
            ProbeError::Io(_) => "io_failed",
            ProbeError::BadStatusLine(_) => "bad_http",
            ProbeError::BadStatus { .. } => "bad_status",
            ProbeError::Not101 { .. } => "not_101",
            ProbeError::Upgrade { .. } => "upgrade_failed",
            ProbeError::Close(_) => "close_failed",
        }
    }

    /// Every value `label` can take, for the metric's documentation and tests.
    pub const LABELS: [&'static str; 10] = [
        "connect_failed",
        "proxy_header_failed",
        "tls_failed",
        "timeout",
        "io_failed",
        "bad_http",
        "bad_status",
        "not_101",
        "upgrade_failed",
        "close_failed",
    ];
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Connect(_) => f.write_str("connect failed"),
            ProbeError::ProxyHeader(_) => f.write_str("cannot write the PROXY header"),
            ProbeError::Tls(_) => f.write_str("TLS handshake failed"),
            ProbeError::Timeout(t) => write!(f, "no answer within {t:?}"),
            ProbeError::Io(_) => f.write_str("HTTP exchange failed"),
            ProbeError::BadStatusLine(line) => write!(f, "bad status line {line:?}"),
            ProbeError::BadStatus {
                path,
                status,
                expected,
            } => write!(f, "GET {path} answered {status}, expected {expected}"),
            ProbeError::Not101 { path, status } => {
                write!(f, "upgrade to {path} answered {status}, not 101")
            }
            ProbeError::Upgrade { path, .. } => write!(f, "upgrade to {path} failed"),
            ProbeError::Close(_) => f.write_str("close after the upgrade failed"),
        }
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProbeError::Connect(e)
            | ProbeError::ProxyHeader(e)
            | ProbeError::Tls(e)
            | ProbeError::Io(e) => Some(e),
            ProbeError::Upgrade { source: e, .. } | ProbeError::Close(e) => Some(e),
            ProbeError::Timeout(_)
            | ProbeError::BadStatusLine(_)
            | ProbeError::BadStatus { .. }
            | ProbeError::Not101 { .. } => None,
        }
    }
}
