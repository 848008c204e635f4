//! Routing: which `[[route]]` (and so which pool and Origin policy) a request gets.
//!
//! Owns: host and path-prefix matching and their precedence. The most specific host
//! wins first (exact, then the longest `*.` wildcard, then routes without `host`),
//! then the longest `path_prefix` (a plain string prefix, as in nginx). Does not own
//! pools or balancing: a route only names its pool by index.

use crate::config::Config;
use crate::origin::OriginPolicy;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// `chat.example.com`
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: one or more labels in front.
    Suffix(String),
}

impl HostMatch {
    pub fn parse(s: &str) -> Result<HostMatch, String> {
        let lower = s.trim().to_ascii_lowercase();
        let bad = || {
            format!("{s:?} is not a host name (\"chat.example.com\" or \"*.example.com\", no port)")
        };
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower.clone()),
        };
        let ok = !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || b == b'-'
                    || b == b'.'
                    || b == b'['
                    || b == b']'
                    || b == b':'
            })
            && (!name.contains(':') || name.starts_with('['));
        if !ok {
            return Err(bad());
        }
        Ok(if wild {
            HostMatch::Suffix(format!(".{name}"))
        } else {
            HostMatch::Exact(name)
        })
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }

    fn rank(m: &Option<HostMatch>) -> (u8, usize) {
        match m {
            Some(HostMatch::Exact(_)) => (0, 0),
            Some(HostMatch::Suffix(s)) => (1, usize::MAX - s.len()),
            None => (2, 0),
        }
    }
}

/// One route, ready for matching.
#[derive(Debug)]
pub struct Route {
    host: Option<HostMatch>,
    prefix: String,
    /// Index into the pools, in config order.
    pub pool: usize,
    pub origin: OriginPolicy,
    /// Position in the config file, for logs.
    pub index: usize,
}

#[derive(Debug)]
pub struct Router {
    /// Sorted by precedence: the first match wins.
    routes: Vec<Route>,
}

impl Router {
    pub fn new(cfg: &Config) -> Router {
        let mut routes: Vec<Route> = cfg
            .routes
            .iter()
            .enumerate()
            .map(|(index, r)| Route {
                host: r.host.as_deref().and_then(|h| HostMatch::parse(h).ok()),
                prefix: r.path_prefix.clone(),
                pool: cfg.pools.iter().position(|p| p.name == r.pool).unwrap_or(0),
                origin: OriginPolicy::from_config(
                    r.allowed_origins.as_deref(),
                    r.allow_missing_origin,
                ),
                index,
            })
            .collect();
        routes.sort_by_key(|r| (HostMatch::rank(&r.host), usize::MAX - r.prefix.len()));
        Router { routes }
    }

    /// `host` is the Host header value (port and case are normalized here).
    pub fn route(&self, host: &str, path: &str) -> Option<&Route> {
        let host = normalize_host(host);
        self.routes.iter().find(|r| {
            r.host.as_ref().is_none_or(|m| m.matches(&host)) && path.starts_with(r.prefix.as_str())
        })
    }
}

/// Lower-cases a Host header value and strips its port (keeping IPv6 brackets).
pub fn normalize_host(host: &str) -> String {
    let h = host.trim();
    let no_port = if h.starts_with('[') {
        h.find(']').map_or(h, |e| &h[..=e])
    } else {
        h.rsplit_once(':').map_or(h, |(name, _)| name)
    };
    no_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &str) -> Router {
        let text = format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = false\n[[pool]]\nname = \"p\"\n[[pool.backend]]\naddress = \"127.0.0.1:1\"\n{routes}"
        );
        Router::new(&Config::parse(&text, std::path::Path::new("t.toml")).unwrap())
    }

    #[test]
    fn precedence_host_then_longest_prefix() {
        let r = router(
            "[[route]]\npool = \"p\"\n[[route]]\npath_prefix = \"/chat\"\npool = \"p\"\n\
             [[route]]\nhost = \"*.example.com\"\npool = \"p\"\n[[route]]\nhost = \"a.example.com\"\npath_prefix = \"/x\"\npool = \"p\"\n",
        );
        let idx = |h: &str, p: &str| r.route(h, p).map(|r| r.index);
        assert_eq!(idx("other", "/"), Some(0));
        assert_eq!(idx("other", "/chat/room"), Some(1));
        assert_eq!(idx("B.Example.com:8443", "/chat"), Some(2));
        assert_eq!(idx("a.example.com", "/x/1"), Some(3));
        assert_eq!(idx("a.example.com", "/y"), Some(2));
        assert_eq!(idx("example.com", "/chat"), Some(1));
    }

    #[test]
    fn no_match_is_none() {
        let r = router("[[route]]\nhost = \"a.com\"\npool = \"p\"\n");
        assert!(r.route("b.com", "/").is_none());
        assert!(r.route("A.COM", "/").is_some());
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("Example.COM:443"), "example.com");
        assert_eq!(normalize_host("[::1]:8443"), "[::1]");
        assert_eq!(normalize_host("example.com."), "example.com");
    }
}
