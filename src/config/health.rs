//! `[pool.health]` (active checks): its keys as written, a backend's overrides of
//! them, the merged `Check` a backend runs and its checks.
//!
//! Owns: those keys, their defaults and problems. Does not own: the other pool keys
//! (passive checks, failover: schema/ and validate.rs) or running checks (backends/).

use super::Dur;
use serde::Deserialize;

/// What an active check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// The TCP connect succeeds.
    #[default]
    Tcp,
    /// `GET path` answers `expect_status`.
    Http,
    /// A full upgrade to `path` with a correct Sec-WebSocket-Accept, then a clean close.
    Websocket,
}

/// `[pool.health]`, or a backend's `[pool.backend.health]` override (any subset).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConf {
    pub kind: Option<CheckKind>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    /// Consecutive successes that bring a down backend up.
    pub rise: Option<u32>,
    /// Consecutive failures that take an up backend down.
    pub fall: Option<u32>,
    /// Request path for http and websocket checks.
    pub path: Option<String>,
    /// Host header for http and websocket checks (default: the backend address).
    pub host: Option<String>,
    /// Status an http check expects.
    pub expect_status: Option<u16>,
}

/// A backend's effective active-check settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub interval: Dur,
    pub timeout: Dur,
    pub rise: u32,
    pub fall: u32,
    pub path: String,
    pub host: Option<String>,
    pub expect_status: u16,
}

impl Check {
    /// The pool's settings with a backend's overrides applied.
    pub fn resolve(pool: &HealthConf, backend: Option<&HealthConf>) -> Check {
        let b = backend.cloned().unwrap_or_default();
        Check {
            kind: b.kind.or(pool.kind).unwrap_or_default(),
            interval: b.interval.or(pool.interval).unwrap_or(Dur::secs(2)),
            timeout: b.timeout.or(pool.timeout).unwrap_or(Dur::secs(1)),
            rise: b.rise.or(pool.rise).unwrap_or(2),
            fall: b.fall.or(pool.fall).unwrap_or(3),
            path: b
                .path
                .or_else(|| pool.path.clone())
                .unwrap_or_else(|| "/".into()),
            host: b.host.or_else(|| pool.host.clone()),
            expect_status: b.expect_status.or(pool.expect_status).unwrap_or(200),
        }
    }

    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.interval.get().is_zero() {
            out.push(("interval", "must be greater than zero".into()));
        }
        if self.timeout.get().is_zero() || self.timeout > self.interval {
            out.push((
                "timeout",
                "must be greater than zero and at most interval".into(),
            ));
        }
        if self.rise == 0 {
            out.push(("rise", "must be at least 1".into()));
        }
        if self.fall == 0 {
            out.push(("fall", "must be at least 1".into()));
        }
        if !self.path.starts_with('/') {
            out.push(("path", "must start with '/'".into()));
        }
        if !(100..=599).contains(&self.expect_status) {
            out.push(("expect_status", "must be an HTTP status (100-599)".into()));
        }
        out
    }
}
