//! Checking `[[route]]`s: the pool or weighted pools each names, its header, cookie
//! and query conditions, and that no two routes match the same requests.
//!
//! Owns: those checks and the default route names (`pool`, `pool#2`, ...). Does not
//! own: the `Route` it builds (mod.rs), `[route.auth]` (auth.rs), the merge of
//! `[route.limits]` over `[limits]` (limits.rs) or the other tables (validate.rs).

use super::finding::{Finding, KeyPath, Place};
use super::schema::{self, File};
use super::types::is_token;
use super::{MatchOn, MatchValue, Route, RouteMatch, SessionLimits, Target};
use std::collections::HashSet;
use std::path::Path;

pub(super) fn routes(
    file: &File,
    source: &Path,
    place: Place<'_>,
    out: &mut Vec<Finding>,
) -> Vec<Route> {
    if file.routes.is_empty() {
        out.push((
            KeyPath::root("route"),
            "at least one [[route]] is required".into(),
        ));
    }
    let mut seen: Vec<(_, usize)> = Vec::new();
    let mut names = HashSet::new();
    let mut checked = Vec::new();
    for (i, r) in file.routes.iter().enumerate() {
        let at = |k: &str| KeyPath::root("route").index(i).key(k);
        let name = match &r.name {
            Some(n) => {
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic()) {
                    out.push((at("name"), "must be a word without spaces".into()));
                } else if !names.insert(n.clone()) {
                    let first = file.routes.iter().position(|r| r.name.as_ref() == Some(n));
                    let first = first.map_or(i, |f| f);
                    let at_first = place(&KeyPath::root("route").index(first).key("name"));
                    out.push((
                        at("name"),
                        format!(
                            "duplicate route name {n:?}: route[{first}] at {at_first} has it too"
                        ),
                    ));
                }
                n.clone()
            }
            None => default_route_name(file, i, &mut names),
        };
        let targets = targets(file, r, i, out);
        if !r.path_prefix.starts_with('/') {
            out.push((at("path_prefix"), "must start with '/'".into()));
        }
        let matches = route_matches(r, i, out);
        let identity = (r.host.clone(), r.path_prefix.clone(), matches.clone());
        if let Some((_, first)) = seen.iter().find(|(id, _)| *id == identity) {
            out.push((at("path_prefix"), same_requests(file, *first, place)));
        } else {
            seen.push((identity, i));
        }
        if r.allowed_origins.is_none() && r.allow_missing_origin {
            out.push((
                at("allow_missing_origin"),
                "only meaningful together with allowed_origins".into(),
            ));
        }
        if let Some(c) = &r.split_cookie {
            if r.pools.is_none() {
                out.push((
                    at("split_cookie"),
                    "only meaningful together with pools".into(),
                ));
            } else if !is_token(c) {
                out.push((at("split_cookie"), format!("{c:?} is not a cookie name")));
            }
        }
        let auth = r
            .auth
            .as_ref()
            .and_then(|a| super::auth::check(i, a, source, out));
        if let Some(targets) = targets {
            checked.push(Route {
                name,
                host: r.host.clone(),
                path_prefix: r.path_prefix.clone(),
                matches,
                targets,
                split_cookie: r.split_cookie.clone(),
                http: r.http,
                max_request_body_bytes: r.max_request_body_bytes,
                allowed_origins: r.allowed_origins.clone(),
                allow_missing_origin: r.allow_missing_origin,
                limits: SessionLimits::resolve(&file.limits, r.limits.as_ref()),
                auth,
                index: i,
            });
        }
    }
    checked
}

/// The pool a route's default name comes from: `pool`, else the first of `pools`.
fn first_pool(r: &schema::Route) -> &str {
    match (&r.pool, &r.pools) {
        (Some(p), _) => p,
        (None, Some(list)) => list.first().map_or("route", |w| w.pool.as_str()),
        (None, None) => "route",
    }
}

/// A route without `name`: its (first) pool's name, or `pool#2`, `pool#3`... for the
/// second and later routes to the same pool (skipping names other routes took).
/// The message of a route that matches the same requests as route `first`: which
/// one that is, and where.
fn same_requests(file: &File, first: usize, place: Place<'_>) -> String {
    let path = KeyPath::root("route").index(first);
    let which = match &file.routes[first].name {
        Some(n) => format!("route {n:?}"),
        None => path.to_string(),
    };
    format!(
        "{which} at {} already has this host, path_prefix and match conditions",
        place(&path)
    )
}

fn default_route_name(file: &File, i: usize, names: &mut HashSet<String>) -> String {
    let pool = first_pool(&file.routes[i]);
    let nth = file.routes[..i]
        .iter()
        .filter(|r| first_pool(r) == pool)
        .count()
        + 1;
    let taken = |n: &str| file.routes.iter().any(|r| r.name.as_deref() == Some(n));
    let mut k = nth;
    loop {
        let n = if k == 1 {
            pool.to_string()
        } else {
            format!("{pool}#{k}")
        };
        if !taken(&n) && names.insert(n.clone()) {
            return n;
        }
        k += 1;
    }
}

/// A route's pools: `pool`, or `pools` with weights. `None` if they are not usable.
fn targets(
    file: &File,
    r: &schema::Route,
    i: usize,
    out: &mut Vec<Finding>,
) -> Option<Vec<Target>> {
    let at = |k: &str| KeyPath::root("route").index(i).key(k);
    let find = |name: &str| file.pools.iter().position(|p| p.name == name);
    match (&r.pool, &r.pools) {
        (Some(_), Some(_)) => {
            out.push((at("pools"), "set either pool or pools, not both".into()));
            None
        }
        (None, None) => {
            out.push((
                at("pool"),
                "a route needs pool = \"name\" or pools = [{ pool = \"name\", weight = N }, ...]"
                    .into(),
            ));
            None
        }
        (Some(name), None) => match find(name) {
            Some(pool) => Some(vec![Target { pool, weight: 1 }]),
            None => {
                out.push((at("pool"), format!("no [[pool]] is named {name:?}")));
                None
            }
        },
        (None, Some(list)) => {
            let mut targets = Vec::new();
            let mut ok = true;
            for (j, w) in list.iter().enumerate() {
                let at = |k: &str| at("pools").index(j).key(k);
                if w.weight > 10_000 {
                    out.push((at("weight"), "must be between 0 and 10000".into()));
                    ok = false;
                }
                match find(&w.pool) {
                    Some(pool) if targets.iter().any(|t: &Target| t.pool == pool) => {
                        out.push((at("pool"), format!("pool {:?} is listed twice", w.pool)));
                        ok = false;
                    }
                    Some(pool) => targets.push(Target {
                        pool,
                        weight: w.weight,
                    }),
                    None => {
                        out.push((at("pool"), format!("no [[pool]] is named {:?}", w.pool)));
                        ok = false;
                    }
                }
            }
            if list.is_empty() || list.iter().all(|w| w.weight == 0) {
                out.push((
                    at("pools"),
                    "needs at least one pool with a weight above 0".into(),
                ));
                ok = false;
            }
            ok.then_some(targets)
        }
    }
}

/// `match_header`, `match_cookie` and `match_query`, checked.
fn route_matches(r: &schema::Route, i: usize, out: &mut Vec<Finding>) -> Vec<RouteMatch> {
    let mut matches = Vec::new();
    for (key, spec) in [
        ("match_header", &r.match_header),
        ("match_cookie", &r.match_cookie),
        ("match_query", &r.match_query),
    ] {
        let Some(spec) = spec else { continue };
        let at = |k: &str| KeyPath::root("route").index(i).key(key).key(k);
        let value = match (&spec.value, &spec.prefix) {
            (Some(v), None) => MatchValue::Exact(v.clone()),
            (None, Some(p)) => MatchValue::Prefix(p.clone()),
            _ => {
                out.push((
                    at("value"),
                    "set exactly one of value (exact match) or prefix".into(),
                ));
                continue;
            }
        };
        let on = match key {
            "match_header" => {
                let lower = spec.name.to_ascii_lowercase();
                if !is_token(&lower) {
                    out.push((at("name"), format!("{:?} is not a header name", spec.name)));
                    continue;
                }
                if [
                    "host",
                    "connection",
                    "upgrade",
                    "transfer-encoding",
                    "content-length",
                ]
                .contains(&lower.as_str())
                {
                    out.push((
                        at("name"),
                        format!("{lower:?} cannot be matched (use host or a header of your own)"),
                    ));
                    continue;
                }
                MatchOn::Header(lower)
            }
            "match_cookie" => {
                if !is_token(&spec.name) {
                    out.push((at("name"), format!("{:?} is not a cookie name", spec.name)));
                    continue;
                }
                MatchOn::Cookie(spec.name.clone())
            }
            _ => {
                if spec.name.is_empty() {
                    out.push((at("name"), "must not be empty".into()));
                    continue;
                }
                MatchOn::Query(spec.name.clone())
            }
        };
        matches.push(RouteMatch { on, value });
    }
    matches
}
