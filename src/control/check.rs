//! `wsgate check`: a config checked as far as it can be without serving it.
//!
//! Owns: the summary line `check` ends with (what the config defines, and the
//! earliest expiry of its listeners' certificates). Does not own: the checks
//! themselves (config/ reads and validates the file; runtime/ `check_files` and
//! `check_tls` load every file a generation would).

use crate::config::{Config, KeyPath};
use crate::runtime::BuildError;

pub use crate::runtime::{check_files, check_tls};

/// What `wsgate check` reports of a valid config: what it defines, and when the
/// first of its listeners' certificates expires.
#[derive(Debug, Clone, Default)]
pub struct CheckSummary {
    pub listeners: usize,
    pub routes: usize,
    pub pools: usize,
    /// Backends written in the pools (`resolve` names are counted apart).
    pub backends: usize,
    pub dns_names: usize,
    /// Certificates the listeners serve.
    pub certificates: usize,
    pub earliest_expiry: Option<std::time::SystemTime>,
    /// From `check_files`.
    pub warnings: Vec<String>,
}

/// `check_files`, then the counts and the earliest certificate expiry.
pub fn check_summary(cfg: &Config) -> Result<CheckSummary, BuildError> {
    let warnings = check_files(cfg)?;
    let mut expiries = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        if let Some(t) = &l.tls {
            // Loaded once more for the expiry dates (check_files keeps none); it
            // just loaded, so a failure here is the same one it would have reported.
            let at = KeyPath::root("listener").index(i);
            let loaded = crate::tls::load_listener(t, &at, None).map_err(|e| BuildError {
                problem: Box::new(cfg.problem(&e.at, &e.error.to_string())),
                source: e.error,
            })?;
            expiries.extend(loaded.certs.iter().map(|c| c.not_after));
        }
    }
    Ok(CheckSummary {
        listeners: cfg.listeners.len(),
        routes: cfg.routes.len(),
        pools: cfg.pools.len(),
        backends: cfg.pools.iter().map(|p| p.backends.len()).sum(),
        dns_names: cfg.pools.iter().map(|p| p.discover.len()).sum(),
        certificates: expiries.len(),
        earliest_expiry: expiries.into_iter().min(),
        warnings,
    })
}

impl CheckSummary {
    /// One line, e.g. `OK: 2 listeners, 3 routes, 2 pools, 4 backends, 3 certificates
    /// (earliest expiry 2027-03-01, in 83 days)`.
    pub fn line(&self, now: std::time::SystemTime) -> String {
        fn n(count: usize, one: &str) -> String {
            if count == 1 {
                format!("1 {one}")
            } else {
                format!("{count} {one}s")
            }
        }
        let mut s = format!(
            "OK: {}, {}, {}, {}",
            n(self.listeners, "listener"),
            n(self.routes, "route"),
            n(self.pools, "pool"),
            n(self.backends, "backend"),
        );
        if self.dns_names > 0 {
            s += &format!(" (and {} resolved by DNS)", n(self.dns_names, "name"));
        }
        s += &format!(", {}", n(self.certificates, "certificate"));
        if let Some(t) = self.earliest_expiry {
            let date = crate::control::admin::rfc3339(t);
            let days = t.duration_since(now).map_or(0, |d| d.as_secs() / 86_400);
            let days = usize::try_from(days).unwrap_or(usize::MAX);
            s += &format!(
                " (earliest expiry {}, in {})",
                date.get(..10).unwrap_or(&date),
                n(days, "day")
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn the_check_summary_line() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_083_200); // 2026-12-01
        let s = CheckSummary {
            listeners: 2,
            routes: 3,
            pools: 2,
            backends: 4,
            certificates: 3,
            earliest_expiry: Some(now + Duration::from_secs(83 * 86_400 + 3600)),
            ..CheckSummary::default()
        };
        assert_eq!(
            s.line(now),
            "OK: 2 listeners, 3 routes, 2 pools, 4 backends, 3 certificates (earliest expiry 2027-02-22, in 83 days)"
        );
        let plain = CheckSummary {
            listeners: 1,
            routes: 1,
            pools: 1,
            backends: 1,
            dns_names: 1,
            ..CheckSummary::default()
        };
        assert_eq!(
            plain.line(SystemTime::now()),
            "OK: 1 listener, 1 route, 1 pool, 1 backend (and 1 name resolved by DNS), 0 certificates"
        );
    }
}
