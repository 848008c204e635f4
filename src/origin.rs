//! The per-route Origin allowlist: exact origins and `scheme://*.domain` wildcards.
//!
//! Owns: parsing allowlist entries and matching an `Origin` header against them.
//! Comparison is on (scheme, host, port) with default ports filled in, case-insensitive,
//! so `https://A.example.com` and `https://a.example.com:443` are the same origin.

/// One parsed allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: any origin (including `null`); useful to state intent explicitly.
    Any,
    /// `https://chat.example.com[:port]`
    Exact(Origin),
    /// `https://*.example.com[:port]`: one or more labels before `example.com`.
    Subdomains {
        scheme: String,
        suffix: String,
        port: u16,
    },
}

/// A serialized origin, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parses an `Origin` header value; `None` for `null` or anything malformed.
    pub fn parse(v: &str) -> Option<Origin> {
        let (scheme, rest) = v.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" | "ws" => 80,
            "https" | "wss" => 443,
            _ => return None,
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return None;
        }
        let (host, port) = split_port(rest, default_port)?;
        if host.is_empty() {
            return None;
        }
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

fn split_port(hostport: &str, default_port: u16) -> Option<(&str, u16)> {
    if hostport.starts_with('[') {
        let end = hostport.find(']')?;
        let host = &hostport[..=end];
        return match &hostport[end + 1..] {
            "" => Some((host, default_port)),
            p => Some((host, p.strip_prefix(':')?.parse().ok()?)),
        };
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h, p.parse().ok()?)),
        None => Some((hostport, default_port)),
    }
}

impl OriginPattern {
    pub fn parse(s: &str) -> Result<OriginPattern, String> {
        if s == "*" {
            return Ok(OriginPattern::Any);
        }
        let bad = || {
            format!(
                "{s:?} is not an origin like \"https://chat.example.com\" or \"https://*.example.com\""
            )
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
        if let Some(suffix) = rest.strip_prefix("*.") {
            let o = Origin::parse(&format!("{scheme}://{suffix}")).ok_or_else(bad)?;
            if !o.host.contains('.') && o.host != "localhost" {
                return Err(format!(
                    "{s:?}: a wildcard must be under a domain with at least two labels"
                ));
            }
            return Ok(OriginPattern::Subdomains {
                scheme: o.scheme,
                suffix: o.host,
                port: o.port,
            });
        }
        if rest.contains('*') {
            return Err(format!(
                "{s:?}: '*' is only allowed as the first label (\"https://*.example.com\")"
            ));
        }
        Origin::parse(s).map(OriginPattern::Exact).ok_or_else(bad)
    }

    pub fn matches(&self, o: &Origin) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(e) => e == o,
            OriginPattern::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                *scheme == o.scheme
                    && *port == o.port
                    && o.host.len() > suffix.len() + 1
                    && o.host.ends_with(suffix.as_str())
                    && o.host.as_bytes()[o.host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

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
    pub fn from_config(list: Option<&[String]>, allow_missing: bool) -> OriginPolicy {
        match list {
            None => OriginPolicy::Unchecked,
            Some(list) => OriginPolicy::Allowlist {
                // validated at load: every entry parses
                patterns: list
                    .iter()
                    .filter_map(|s| OriginPattern::parse(s).ok())
                    .collect(),
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
        let v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        OriginPolicy::from_config(Some(&v), missing)
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

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "chat.example.com",
            "https://",
            "https://a.*.com",
            "ftp://x.com",
            "https://*.com",
            "https://x.com/path",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
