//! `[limits]`: admission control and per-session limits, and `[route.limits]`
//! overrides. Connection-level keys are decided before TLS, when no route is known
//! yet, so only session-level keys may be overridden per route.

use super::Dur;
use super::types::{Cidr, MemoryLimit};
use serde::Deserialize;

/// `[limits]`. A value of 0 (or "0s") turns a session limit off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent client connections, all IPs together; at the limit accept pauses.
    /// Absent: derived from the open-file limit (two descriptors per session).
    pub max_connections: Option<usize>,
    /// Concurrent connections from one client IP (IPv6: one prefix).
    pub max_connections_per_ip: usize,
    /// New connections per second per client IP (token bucket refill rate).
    pub connect_rate: f64,
    /// Token bucket size: new connections one IP may open at once.
    pub connect_burst: u32,
    /// IPv6 clients are keyed by this prefix length.
    pub ipv6_prefix: u8,
    /// CIDRs exempt from the per-IP limits (not from max_connections).
    pub exempt: Vec<Cidr>,
    /// New connections per second, all clients together (a token bucket the accept
    /// loop waits on). Absent: 1000 per worker thread. 0 turns it off.
    pub max_connect_rate: Option<f64>,
    /// That bucket's size. Absent: one second's worth.
    pub max_connect_burst: Option<u32>,
    /// Resident memory above which accepting pauses. Absent: 90 % of the cgroup's
    /// memory limit if there is one, else none.
    pub max_memory: Option<MemoryLimit>,
    pub message_rate: f64,
    pub message_burst: u32,
    pub on_exceed: OnExceed,
    pub max_message_bytes: u64,
    pub max_frame_bytes: u64,
    pub backend_max_message_bytes: u64,
    pub backend_max_frame_bytes: u64,
    /// Check that the client's text messages are UTF-8 (1007 if not).
    pub validate_utf8: bool,
    /// Check that the backend's text messages are UTF-8.
    pub backend_validate_utf8: bool,
    pub ping_interval: Dur,
    pub idle_timeout: Dur,
    pub max_session_duration: Dur,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: None,
            max_connections_per_ip: 256,
            connect_rate: 20.0,
            connect_burst: 100,
            ipv6_prefix: 64,
            exempt: Vec::new(),
            max_connect_rate: None,
            max_connect_burst: None,
            max_memory: None,
            message_rate: 100.0,
            message_burst: 200,
            on_exceed: OnExceed::Throttle,
            max_message_bytes: 16 << 20,
            max_frame_bytes: 16 << 20,
            backend_max_message_bytes: 0,
            backend_max_frame_bytes: 0,
            validate_utf8: true,
            backend_validate_utf8: true,
            ping_interval: Dur::secs(30),
            idle_timeout: Dur::secs(90),
            max_session_duration: Dur::secs(0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExceed {
    /// Stop reading from the client until a token is available (TCP backpressure).
    #[default]
    Throttle,
    /// Close 1008 to the client, 1001 to the backend.
    Close,
}

/// `[route.limits]`: the session keys of `[limits]`, each optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimits {
    pub message_rate: Option<f64>,
    pub message_burst: Option<u32>,
    pub on_exceed: Option<OnExceed>,
    pub max_message_bytes: Option<u64>,
    pub max_frame_bytes: Option<u64>,
    pub backend_max_message_bytes: Option<u64>,
    pub backend_max_frame_bytes: Option<u64>,
    pub validate_utf8: Option<bool>,
    pub backend_validate_utf8: Option<bool>,
    pub ping_interval: Option<Dur>,
    pub idle_timeout: Option<Dur>,
    pub max_session_duration: Option<Dur>,
}

/// The limits one session runs under: `[limits]` with its route's overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionLimits {
    pub message_rate: f64,
    pub message_burst: u32,
    pub on_exceed: OnExceed,
    pub max_message_bytes: u64,
    pub max_frame_bytes: u64,
    pub backend_max_message_bytes: u64,
    pub backend_max_frame_bytes: u64,
    pub validate_utf8: bool,
    pub backend_validate_utf8: bool,
    pub ping_interval: Dur,
    pub idle_timeout: Dur,
    pub max_session_duration: Dur,
}

impl SessionLimits {
    pub fn resolve(d: &Limits, r: Option<&RouteLimits>) -> SessionLimits {
        let r = r.cloned().unwrap_or_default();
        SessionLimits {
            message_rate: r.message_rate.unwrap_or(d.message_rate),
            message_burst: r.message_burst.unwrap_or(d.message_burst),
            on_exceed: r.on_exceed.unwrap_or(d.on_exceed),
            max_message_bytes: r.max_message_bytes.unwrap_or(d.max_message_bytes),
            max_frame_bytes: r.max_frame_bytes.unwrap_or(d.max_frame_bytes),
            backend_max_message_bytes: r
                .backend_max_message_bytes
                .unwrap_or(d.backend_max_message_bytes),
            backend_max_frame_bytes: r
                .backend_max_frame_bytes
                .unwrap_or(d.backend_max_frame_bytes),
            validate_utf8: r.validate_utf8.unwrap_or(d.validate_utf8),
            backend_validate_utf8: r.backend_validate_utf8.unwrap_or(d.backend_validate_utf8),
            ping_interval: r.ping_interval.unwrap_or(d.ping_interval),
            idle_timeout: r.idle_timeout.unwrap_or(d.idle_timeout),
            max_session_duration: r.max_session_duration.unwrap_or(d.max_session_duration),
        }
    }

    /// No limit at all (for tools and tests that want a bare relay); UTF-8 is still
    /// checked, as by default.
    pub fn unlimited() -> SessionLimits {
        SessionLimits {
            message_rate: 0.0,
            message_burst: 1,
            on_exceed: OnExceed::Throttle,
            max_message_bytes: 0,
            max_frame_bytes: 0,
            backend_max_message_bytes: 0,
            backend_max_frame_bytes: 0,
            validate_utf8: true,
            backend_validate_utf8: true,
            ping_interval: Dur::secs(0),
            idle_timeout: Dur::secs(0),
            max_session_duration: Dur::secs(0),
        }
    }

    /// Semantic problems as (key, message), checked for `[limits]` and each override.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !self.message_rate.is_finite() || self.message_rate < 0.0 {
            out.push((
                "message_rate",
                "must be a number of messages per second >= 0 (0 = off)".into(),
            ));
        }
        if self.message_burst == 0 {
            out.push(("message_burst", "must be at least 1".into()));
        }
        let (p, i) = (self.ping_interval.get(), self.idle_timeout.get());
        if !p.is_zero() && !i.is_zero() && i <= p {
            out.push((
                "idle_timeout",
                format!("must be longer than ping_interval ({p:?}) so a ping can be answered"),
            ));
        }
        out
    }
}
