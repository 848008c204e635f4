//! Routing: which `[[route]]` (and so which pools, limits and Origin policy) a
//! request gets, and which of a route's pools a client belongs to.
//!
//! Owns: host, path-prefix, header, cookie and query matching and their precedence
//! (`Router`), the split of clients among a route's weighted pools
//! (`Route::pools_for`), and the `Route` a session keeps. Beside the router: `origin`
//! (the route's Origin policy) and `auth` (its JWT check).
//! Does not own: balancing inside a pool (backends/balance.rs).

pub(crate) mod auth;
pub(crate) mod origin;

use crate::backends::balance::{Pool, hash_key, rendezvous_score};
use crate::backends::hash::{fmix64, fnv1a};
use crate::config::{self, HostMatch, HttpMode, MatchOn, RouteMatch};
use crate::relay::RelayConfig;
use crate::route::auth::Jwt;
use crate::route::origin::OriginPolicy;
use hyper::header::{HeaderMap, HeaderName};
use std::net::IpAddr;
use std::sync::Arc;

/// What routing looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// The Host header value (port and case are normalized here).
    pub host: &'a str,
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl<'a> Lookup<'a> {
    /// A lookup for `path_and_query` (split at the first `?`).
    pub fn new(host: &'a str, path_and_query: &'a str, headers: &'a HeaderMap) -> Lookup<'a> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        Lookup {
            host,
            path,
            query,
            headers,
        }
    }
}

/// One of a route's pools, with its share of the clients.
#[derive(Debug)]
pub struct Target {
    pub pool: Arc<Pool>,
    pub weight: u32,
    seed: u64,
}

/// One route, ready for matching. It holds its pools and relay settings directly,
/// so a session that took a route keeps exactly that route's pools and limits for
/// its whole life, whatever reloads happen meanwhile.
#[derive(Debug)]
pub struct Route {
    /// The label of its metrics and log lines.
    pub name: Arc<str>,
    host: Option<HostMatch>,
    prefix: String,
    matches: Vec<RouteMatch>,
    /// One, or several with weights (at least one above 0).
    pub targets: Vec<Target>,
    split_cookie: Option<String>,
    /// What non-upgrade requests get.
    pub http: HttpMode,
    pub max_request_body_bytes: u64,
    pub origin: OriginPolicy,
    /// The relay settings of its sessions (limits, close timeout).
    pub relay: RelayConfig,
    /// `[route.auth]`: the token its upgrades must carry (keys loaded with the generation).
    pub auth: Option<Arc<Jwt>>,
    /// Position in the config file, for logs.
    pub index: usize,
}

impl Route {
    /// `pools` are the generation's pools, in config order.
    pub fn new(conf: &config::Route, pools: &[Arc<Pool>], relay: RelayConfig) -> Route {
        Route {
            name: conf.name.as_str().into(),
            host: conf.host.clone(),
            prefix: conf.path_prefix.clone(),
            matches: conf.matches.clone(),
            targets: conf
                .targets
                .iter()
                .map(|t| {
                    let pool = pools[t.pool].clone();
                    let seed = fmix64(fnv1a(pool.name.as_bytes()));
                    Target {
                        pool,
                        weight: t.weight,
                        seed,
                    }
                })
                .collect(),
            split_cookie: conf.split_cookie.clone(),
            http: conf.http,
            max_request_body_bytes: conf.max_request_body_bytes,
            origin: OriginPolicy::new(conf.allowed_origins.clone(), conf.allow_missing_origin),
            relay,
            auth: None,
            index: conf.index,
        }
    }

    fn rank(&self) -> (u8, usize, usize, usize) {
        let host = match &self.host {
            Some(HostMatch::Exact(_)) => (0, 0),
            Some(HostMatch::Suffix(s)) => (1, usize::MAX - s.len()),
            None => (2, 0),
        };
        (
            host.0,
            host.1,
            usize::MAX - self.prefix.len(),
            usize::MAX - self.matches.len(),
        )
    }

    fn accepts(&self, host: &str, q: &Lookup<'_>) -> bool {
        self.host.as_ref().is_none_or(|m| m.matches(host))
            && q.path.starts_with(self.prefix.as_str())
            && self.matches.iter().all(|m| condition_holds(m, q))
    }

    /// The route's pools for this client, best first: the one pool of a single-pool
    /// route; else by weighted rendezvous on the client's key (pools of weight 0
    /// are left out). Callers take the first that has a pickable backend, so a
    /// client whose pool is down lands on its next-best pool. A client keeps its pool
    /// across reconnects, and a reload that changes the weights moves only the
    /// clients the new weights require.
    pub fn pools_for(&self, ip: IpAddr, headers: &HeaderMap) -> Vec<&Arc<Pool>> {
        if let [only] = self.targets.as_slice() {
            return vec![&only.pool];
        }
        let key = self.client_key(ip, headers);
        let mut scored: Vec<(f64, &Arc<Pool>)> = self
            .targets
            .iter()
            .filter(|t| t.weight > 0)
            .map(|t| (rendezvous_score(key, t.seed, t.weight), &t.pool))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().map(|(_, p)| p).collect()
    }

    /// The pool this client goes to: its best pool that has a pickable backend (or
    /// its best pool, if none has: that pool's answer is then 503).
    pub fn pool_for(&self, ip: IpAddr, headers: &HeaderMap) -> &Arc<Pool> {
        let order = self.pools_for(ip, headers);
        order
            .iter()
            .find(|p| p.backends.iter().any(|b| b.pickable()))
            .or(order.first())
            .copied()
            .unwrap_or(&self.targets[0].pool)
    }

    /// What keeps a client on one pool: its `split_cookie`'s value, else its IP (IPv6
    /// by /64).
    fn client_key(&self, ip: IpAddr, headers: &HeaderMap) -> u64 {
        match self
            .split_cookie
            .as_deref()
            .and_then(|c| crate::backends::cookie::get(headers, c))
        {
            Some(v) => fmix64(fnv1a(v.as_bytes()) ^ (0xc0 << 56)),
            None => hash_key(ip),
        }
    }
}

fn condition_holds(m: &RouteMatch, q: &Lookup<'_>) -> bool {
    match &m.on {
        MatchOn::Header(name) => HeaderName::from_bytes(name.as_bytes()).is_ok_and(|n| {
            q.headers
                .get_all(n)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| m.value.matches(v))
        }),
        MatchOn::Cookie(name) => crate::backends::cookie::pairs(q.headers)
            .filter(|(n, _)| n == name)
            .any(|(_, v)| m.value.matches(v)),
        MatchOn::Query(name) => q.query.is_some_and(|qs| {
            qs.split('&')
                .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                .filter(|(k, _)| percent_decode(k) == *name)
                .any(|(_, v)| m.value.matches(&percent_decode(v)))
        }),
    }
}

/// Decodes `%XX` escapes and `+` (a space in query strings); bad escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |i: usize| b.get(i).and_then(|c| (*c as char).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            (b'+', ..) => out.push(b' '),
            (c, ..) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The routes of a generation, in precedence order: the most specific host wins
/// first (exact, then the longest `*.` wildcard, then routes without `host`), then
/// the longest `path_prefix` (a plain string prefix, as in nginx), then the route
/// with more match conditions, then the earlier one in the file.
#[derive(Debug)]
pub struct Router {
    /// Sorted by precedence: the first match wins.
    routes: Vec<Arc<Route>>,
}

impl Router {
    pub fn new(mut routes: Vec<Route>) -> Router {
        // Stable: routes that rank the same keep their order in the file.
        routes.sort_by_key(Route::rank);
        Router {
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn route(&self, q: &Lookup<'_>) -> Option<&Arc<Route>> {
        let host = normalize_host(q.host);
        self.routes.iter().find(|r| r.accepts(&host, q))
    }

    /// Every route, in precedence order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

/// Lower-cases a Host header value and strips its port (keeping IPv6 brackets).
pub(crate) fn normalize_host(host: &str) -> String {
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
    use hyper::header::HeaderValue;

    fn router_with(pools: &str, routes: &str) -> (Router, Vec<Arc<Pool>>) {
        let text =
            format!("[[listener]]\naddress = \"127.0.0.1:0\"\ntls = false\n{pools}\n{routes}");
        let cfg = config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let pools: Vec<Arc<Pool>> = cfg
            .pools
            .iter()
            .map(|p| Arc::new(Pool::build(p, |_| None)))
            .collect();
        let relay = RelayConfig {
            buffer: 1024,
            close_timeout: std::time::Duration::from_secs(1),
            limits: config::SessionLimits::unlimited(),
        };
        let routes = cfg
            .routes
            .iter()
            .map(|r| Route::new(r, &pools, relay.clone()))
            .collect();
        (Router::new(routes), pools)
    }

    const ONE_POOL: &str = "[[pool]]\nname = \"p\"\n[[pool.backend]]\naddress = \"127.0.0.1:1\"\n";

    fn router(routes: &str) -> Router {
        router_with(ONE_POOL, routes).0
    }

    fn idx(r: &Router, host: &str, target: &str, headers: &HeaderMap) -> Option<usize> {
        r.route(&Lookup::new(host, target, headers))
            .map(|r| r.index)
    }

    #[test]
    fn precedence_host_then_longest_prefix() {
        let r = router(
            "[[route]]\npool = \"p\"\n[[route]]\npath_prefix = \"/chat\"\npool = \"p\"\n\
             [[route]]\nhost = \"*.example.com\"\npool = \"p\"\n[[route]]\nhost = \"a.example.com\"\npath_prefix = \"/x\"\npool = \"p\"\n",
        );
        let h = HeaderMap::new();
        assert_eq!(idx(&r, "other", "/", &h), Some(0));
        assert_eq!(idx(&r, "other", "/chat/room", &h), Some(1));
        assert_eq!(idx(&r, "B.Example.com:8443", "/chat", &h), Some(2));
        assert_eq!(idx(&r, "a.example.com", "/x/1", &h), Some(3));
        assert_eq!(idx(&r, "a.example.com", "/y", &h), Some(2));
        assert_eq!(idx(&r, "example.com", "/chat", &h), Some(1));
        // The query is not part of the path.
        assert_eq!(idx(&r, "other", "/?/chat", &h), Some(0));
    }

    #[test]
    fn no_match_is_none() {
        let r = router("[[route]]\nhost = \"a.com\"\npool = \"p\"\n");
        let h = HeaderMap::new();
        assert!(idx(&r, "b.com", "/", &h).is_none());
        assert!(idx(&r, "A.COM", "/", &h).is_some());
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("Example.COM:443"), "example.com");
        assert_eq!(normalize_host("[::1]:8443"), "[::1]");
        assert_eq!(normalize_host("example.com."), "example.com");
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn header_cookie_and_query_conditions() {
        let r = router(
            "[[route]]\npool = \"p\"\n\
             [[route]]\npool = \"p\"\nmatch_header = { name = \"X-Canary\", value = \"true\" }\n\
             [[route]]\npool = \"p\"\nmatch_cookie = { name = \"beta\", prefix = \"yes\" }\n\
             [[route]]\npool = \"p\"\nmatch_query = { name = \"v\", value = \"two words\" }\n\
             [[route]]\npool = \"p\"\nmatch_header = { name = \"x-canary\", value = \"true\" }\nmatch_query = { name = \"v\", prefix = \"\" }\n",
        );
        let none = HeaderMap::new();
        assert_eq!(idx(&r, "h", "/", &none), Some(0));
        let canary = headers(&[("x-canary", "false"), ("x-canary", "true")]);
        assert_eq!(idx(&r, "h", "/", &canary), Some(1), "any occurrence");
        assert_eq!(
            idx(&r, "h", "/", &headers(&[("x-canary", "True")])),
            Some(0)
        );
        assert_eq!(
            idx(
                &r,
                "h",
                "/",
                &headers(&[("cookie", "a=1; beta=yes-please")])
            ),
            Some(2)
        );
        assert_eq!(
            idx(&r, "h", "/", &headers(&[("cookie", "beta=no")])),
            Some(0)
        );
        assert_eq!(idx(&r, "h", "/p?a=1&v=two%20words", &none), Some(3));
        assert_eq!(idx(&r, "h", "/p?v=two+words", &none), Some(3));
        assert_eq!(idx(&r, "h", "/p?v=two", &none), Some(0));
        // Two conditions beat one; both must hold.
        assert_eq!(idx(&r, "h", "/?v", &canary), Some(4));
        assert_eq!(idx(&r, "h", "/?w", &canary), Some(1));
    }

    #[test]
    fn conditions_rank_after_host_and_prefix() {
        let r = router(
            "[[route]]\npath_prefix = \"/api\"\npool = \"p\"\n\
             [[route]]\npool = \"p\"\nmatch_header = { name = \"x-canary\", value = \"1\" }\n",
        );
        let h = headers(&[("x-canary", "1")]);
        assert_eq!(idx(&r, "h", "/api/x", &h), Some(0), "longer prefix first");
        assert_eq!(idx(&r, "h", "/other", &h), Some(1));
    }

    const TWO_POOLS: &str = "[[pool]]\nname = \"v1\"\n[[pool.backend]]\naddress = \"127.0.0.1:1\"\n\
                             [[pool]]\nname = \"v2\"\n[[pool.backend]]\naddress = \"127.0.0.1:2\"\n";

    fn split(w1: u32, w2: u32, extra: &str) -> Router {
        router_with(
            TWO_POOLS,
            &format!(
                "[[route]]\npools = [{{ pool = \"v1\", weight = {w1} }}, {{ pool = \"v2\", weight = {w2} }}]\n{extra}"
            ),
        )
        .0
    }

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 + 0x100 + i))
    }

    fn pool_of(r: &Router, ip: IpAddr, h: &HeaderMap) -> String {
        r.routes()[0].pools_for(ip, h)[0].name.clone()
    }

    #[test]
    fn weighted_split_is_sticky_and_moves_only_what_the_weights_require() {
        let h = HeaderMap::new();
        let r95 = split(95, 5, "");
        let before: Vec<String> = (0..2000).map(|i| pool_of(&r95, ip(i), &h)).collect();
        let v2 = before.iter().filter(|p| *p == "v2").count();
        assert!((70..=130).contains(&v2), "{v2} of 2000 on v2 at 5 %");
        // The same again: a client keeps its pool.
        let again: Vec<String> = (0..2000).map(|i| pool_of(&r95, ip(i), &h)).collect();
        assert_eq!(before, again);
        // A reload to 90/10: v2 gains about 100 clients and loses none.
        let r90 = split(90, 10, "");
        let after: Vec<String> = (0..2000).map(|i| pool_of(&r90, ip(i), &h)).collect();
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b == "v2" {
                assert_eq!(a, "v2", "a v2 client moved back to v1");
            } else if a == "v2" {
                moved += 1;
            }
        }
        let v2_after = after.iter().filter(|p| *p == "v2").count();
        assert!((150..=250).contains(&v2_after), "{v2_after} on v2 at 10 %");
        assert_eq!(moved, v2_after - v2, "only v1 -> v2 moves");
        // Weight 0: nobody new, and it is not even a fallback.
        let r0 = split(100, 0, "");
        assert!((0..200).all(|i| r0.routes()[0].pools_for(ip(i), &h).len() == 1));
    }

    #[test]
    fn split_cookie_keys_clients_behind_one_ip() {
        let r = split(50, 50, "split_cookie = \"uid\"\n");
        let one = ip(7);
        let mut seen = std::collections::HashSet::new();
        for i in 0..40 {
            let mut h = HeaderMap::new();
            h.insert(
                "cookie",
                HeaderValue::from_str(&format!("uid=user{i}")).unwrap(),
            );
            let p = pool_of(&r, one, &h);
            assert_eq!(
                p,
                pool_of(&r, ip(99), &h),
                "the cookie, not the IP, decides"
            );
            seen.insert(p);
        }
        assert_eq!(seen.len(), 2, "clients behind one IP split by their cookie");
    }
}
