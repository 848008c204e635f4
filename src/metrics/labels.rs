//! The label sets of the event metrics (bounded: names from the config, statuses,
//! outcomes, close codes folded into a fixed set), and those foldings.

use crate::relay::Outcome;
use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsLabels {
    pub listener: String,
    pub version: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpgradeLabels {
    /// Empty for requests refused before a route was chosen.
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    pub route: String,
    pub backend: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    pub route: String,
    pub side: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub route: String,
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub pool: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub pool: String,
    pub backend: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub pool: String,
    pub backend: String,
    pub reason: String,
}

/// The close codes that get their own label value; the rest are "other".
pub(crate) const CLOSE_CODES: [u16; 10] =
    [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1014];

/// A close code as a label value: one of `CLOSE_CODES`, "none" (a Close without a
/// code), or "other".
pub(crate) fn code_label(code: Option<u16>) -> &'static str {
    const NAMES: [&str; 10] = [
        "1000", "1001", "1002", "1003", "1007", "1008", "1009", "1011", "1012", "1014",
    ];
    match code {
        None => "none",
        Some(c) => CLOSE_CODES
            .iter()
            .position(|k| *k == c)
            .map_or("other", |i| NAMES[i]),
    }
}

/// An outcome as a label value (also the access log's `outcome`).
pub(crate) fn outcome_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Closed { .. } => "closed",
        Outcome::BackendGone => "backend_gone",
        Outcome::ClientGone => "client_gone",
        Outcome::ClientViolation(_) => "client_protocol_error",
        Outcome::BackendViolation(_) => "backend_protocol_error",
        Outcome::ClientTooBig => "client_too_big",
        Outcome::BackendTooBig => "backend_too_big",
        Outcome::ClientRateExceeded => "client_rate_exceeded",
        Outcome::ClientIdle => "client_idle",
        Outcome::DurationLimit => "duration_limit",
        Outcome::Shutdown => "shutdown",
        Outcome::BackendRemoved => "backend_removed",
        Outcome::CloseTimeout => "close_timeout",
        Outcome::TokenExpired => "token_expired",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsLabels {
    pub pool: String,
    /// The `resolve` backend's address as written.
    pub backend: String,
    pub result: String,
}
