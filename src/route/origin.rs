//! The per-route Origin allowlist: exact origins and `scheme://*.domain` wildcards.
//!
//! Owns: matching an `Origin` header against a route's checked patterns
//! (config/types.rs parses them). Comparison is on (scheme, host, port) with default
//! ports filled in, case-insensitive, so `https://A.example.com` and
//! `https://a.example.com:443` are the same origin.

use crate::config::types::{Origin, OriginPattern};

/// A route's whole Origin policy.
#[derive(Debug, Clone)]
pub enum OriginPolicy {
    /// `allowed_origins` absent: Origin is not looked at.
    Unchecked,
    Allowlist {
        patterns: Vec<OriginPattern>,
        allow_missing: bool,
    },
}

/// Why an Origin was refused (answered with 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRefusal {
    Missing,
    NotAllowed(String),
}

impl OriginPolicy {
    pub fn new(list: Option<Vec<OriginPattern>>, allow_missing: bool) -> OriginPolicy {
        match list {
            None => OriginPolicy::Unchecked,
            Some(patterns) => OriginPolicy::Allowlist {
                patterns,
                allow_missing,
            },
        }
    }

    pub fn check(&self, origin: Option<&[u8]>) -> Result<(), OriginRefusal> {
        let OriginPolicy::Allowlist {
            patterns,
            allow_missing,
        } = self
        else {
            return Ok(());
        };
        let Some(raw) = origin else {
            return if *allow_missing {
                Ok(())
            } else {
                Err(OriginRefusal::Missing)
            };
        };
        let text = String::from_utf8_lossy(raw);
        if patterns.contains(&OriginPattern::Any) {
            return Ok(());
        }
        match Origin::parse(&text) {
            Some(o) if patterns.iter().any(|p| p.matches(&o)) => Ok(()),
            _ => Err(OriginRefusal::NotAllowed(text.into_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &[&str], missing: bool) -> OriginPolicy {
        let v = list.iter().map(|s| s.parse().unwrap()).collect();
        OriginPolicy::new(Some(v), missing)
    }

    #[test]
    fn exact_and_wildcard() {
        let p = policy(
            &["https://chat.example.com", "https://*.example.org"],
            false,
        );
        assert!(p.check(Some(b"https://chat.example.com")).is_ok());
        assert!(p.check(Some(b"HTTPS://Chat.Example.com:443")).is_ok());
        assert!(p.check(Some(b"https://chat.example.com:8443")).is_err());
        assert!(p.check(Some(b"http://chat.example.com")).is_err());
        assert!(p.check(Some(b"https://a.example.org")).is_ok());
        assert!(p.check(Some(b"https://a.b.example.org")).is_ok());
        assert!(p.check(Some(b"https://example.org")).is_err());
        assert!(p.check(Some(b"https://evilexample.org")).is_err());
        assert!(p.check(Some(b"https://example.org.evil.com")).is_err());
        assert!(p.check(Some(b"null")).is_err());
        assert_eq!(p.check(None), Err(OriginRefusal::Missing));
        assert!(policy(&["https://x.com"], true).check(None).is_ok());
        assert!(
            OriginPolicy::Unchecked
                .check(Some(b"https://anything"))
                .is_ok()
        );
    }
}
