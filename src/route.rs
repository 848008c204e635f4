//! Routing: which `[[route]]` (and so which pool, limits and Origin policy) a
//! request gets.
//!
//! Owns: host and path-prefix matching and their precedence. The most specific host
//! wins first (exact, then the longest `*.` wildcard, then routes without `host`),
//! then the longest `path_prefix` (a plain string prefix, as in nginx). A `Route`
//! holds its pool and its relay settings directly, so a session that took a route
//! keeps exactly that route's pool and limits for its whole life, whatever reloads
//! happen meanwhile. Does not own pools or balancing (balance.rs).

use crate::balance::Pool;
use crate::config::{self, HostMatch};
use crate::origin::OriginPolicy;
use crate::relay::RelayConfig;
use std::sync::Arc;

/// One route, ready for matching.
#[derive(Debug)]
pub struct Route {
    /// The label of its metrics and log lines.
    pub name: Arc<str>,
    host: Option<HostMatch>,
    prefix: String,
    pub pool: Arc<Pool>,
    pub origin: OriginPolicy,
    /// The relay settings of its sessions (limits, close timeout).
    pub relay: RelayConfig,
    /// Position in the config file, for logs.
    pub index: usize,
}

impl Route {
    pub fn new(conf: &config::Route, pool: Arc<Pool>, relay: RelayConfig) -> Route {
        Route {
            name: conf.name.as_str().into(),
            host: conf.host.clone(),
            prefix: conf.path_prefix.clone(),
            pool,
            origin: OriginPolicy::new(conf.allowed_origins.clone(), conf.allow_missing_origin),
            relay,
            index: conf.index,
        }
    }

    fn rank(&self) -> (u8, usize, usize) {
        let host = match &self.host {
            Some(HostMatch::Exact(_)) => (0, 0),
            Some(HostMatch::Suffix(s)) => (1, usize::MAX - s.len()),
            None => (2, 0),
        };
        (host.0, host.1, usize::MAX - self.prefix.len())
    }
}

#[derive(Debug)]
pub struct Router {
    /// Sorted by precedence: the first match wins.
    routes: Vec<Arc<Route>>,
}

impl Router {
    pub fn new(mut routes: Vec<Route>) -> Router {
        routes.sort_by_key(Route::rank);
        Router {
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    /// `host` is the Host header value (port and case are normalized here).
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        let host = normalize_host(host);
        self.routes.iter().find(|r| {
            r.host.as_ref().is_none_or(|m| m.matches(&host)) && path.starts_with(r.prefix.as_str())
        })
    }

    /// Every route, in precedence order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
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
        let cfg = config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let pool = Arc::new(Pool::build(&cfg.pools[0], |_| None));
        let relay = RelayConfig {
            buffer: 1024,
            close_timeout: std::time::Duration::from_secs(1),
            extensions: Default::default(),
            limits: config::SessionLimits::unlimited(),
        };
        Router::new(
            cfg.routes
                .iter()
                .map(|r| Route::new(r, pool.clone(), relay.clone()))
                .collect(),
        )
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
