//! From a parsed `File` to a checked `Config`: the checks serde cannot express (each
//! finding is a key path and one message) and the conversions that go with them.
//! Backend host names are resolved here, once per load, so the runtime never resolves.
//!
//! Owns: the coordination (every table checked, findings gathered) and the checks of
//! `[server]`, `[admin]`, `[[listener]]` and `[[pool]]`. Calls the check modules
//! (tls.rs, routes.rs and, through it, auth.rs; limits.rs for `[limits]`); none of
//! them imports this module. Does not own: the schema, or locating findings (load.rs).

use super::finding::{Finding, InvalidValue, KeyPath, Place, resolve_path};
use super::schema::{self, File, OnRemoved};
use super::types::is_token;
use super::{
    Admin, Backend, BackendRemoved, Balance, Check, Config, Discover, Listener, Pool, Secret,
    SessionLimits, Sticky,
};
use std::collections::HashSet;
use std::net::ToSocketAddrs;
use std::path::Path;
use std::time::Duration;

pub(super) fn validate(
    file: File,
    source: &Path,
    text: &str,
    place: Place<'_>,
) -> Result<Config, Vec<Finding>> {
    let mut out = Vec::new();
    let secret = server(&file.server, source, &mut out);
    limits(&file, &mut out);
    let admin = admin(file.admin.as_ref(), &mut out);
    let listeners = listeners(&file.listeners, source, &mut out);
    let pools = pools(&file.pools, source, &secret, &mut out);
    let routes = super::routes::routes(&file, source, place, &mut out);
    if !out.is_empty() {
        return Err(out);
    }
    Ok(Config {
        server: file.server,
        limits: file.limits,
        admin,
        listeners,
        pools,
        routes,
        source: source.to_path_buf(),
        text: text.into(),
    })
}

/// The key sticky cookies are hashed with when `cookie_secret_file` is not set: the
/// values are then opaque (no address in them) but not secret.
const DEFAULT_COOKIE_KEY: &[u8] = b"wsgate sticky cookie v1";

/// Checks `[server]`; returns the sticky-cookie key.
fn server(s: &schema::Server, source: &Path, out: &mut Vec<Finding>) -> Secret {
    let at = |k: &str| KeyPath::root("server").key(k);
    if tracing_subscriber::EnvFilter::try_new(&s.log_level).is_err() {
        out.push((
            at("log_level"),
            format!(
                "invalid log filter {:?} (try \"info\" or \"wsgate=debug\")",
                s.log_level
            ),
        ));
    }
    for (k, d) in [
        ("tls_handshake_timeout", s.tls_handshake_timeout),
        ("header_read_timeout", s.header_read_timeout),
        ("close_timeout", s.close_timeout),
        ("shutdown_timeout", s.shutdown_timeout),
        ("keepalive_timeout", s.keepalive_timeout),
        ("request_body_timeout", s.request_body_timeout),
    ] {
        if d.get().is_zero() {
            out.push((at(k), "must be greater than zero".into()));
        }
    }
    if s.shutdown_timeout <= s.drain_spread {
        out.push((
            at("shutdown_timeout"),
            format!(
                "must be longer than drain_spread ({:?}), or some sessions never get their Close",
                s.drain_spread.get()
            ),
        ));
    }
    if !(1024..=1024 * 1024).contains(&s.max_header_bytes) {
        out.push((
            at("max_header_bytes"),
            "must be between 1024 and 1048576".into(),
        ));
    }
    if s.workers.is_some_and(|w| !(1..=1024).contains(&w)) {
        out.push((at("workers"), "must be between 1 and 1024".into()));
    }
    if let Some(r) = s.resolver
        && (r.port() == 0 || r.ip().is_unspecified())
    {
        out.push((
            at("resolver"),
            format!("{r} is not a DNS server address (IP:PORT, e.g. \"10.0.0.2:53\")"),
        ));
    }
    if s.pid_file.as_ref().is_some_and(|p| !p.is_absolute()) {
        out.push((at("pid_file"), "must be an absolute path".into()));
    }
    let Some(file) = &s.cookie_secret_file else {
        return Secret(DEFAULT_COOKIE_KEY.into());
    };
    let path = resolve_path(source, file);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.trim_ascii().len() >= 16 => Secret(bytes.trim_ascii().into()),
        Ok(_) => {
            out.push((
                at("cookie_secret_file"),
                format!(
                    "{} must hold at least 16 bytes of secret (e.g. head -c 32 /dev/urandom | base64)",
                    path.display()
                ),
            ));
            Secret(DEFAULT_COOKIE_KEY.into())
        }
        Err(e) => {
            out.push((
                at("cookie_secret_file"),
                format!("cannot read {}: {e}", path.display()),
            ));
            Secret(DEFAULT_COOKIE_KEY.into())
        }
    }
}

fn admin(a: Option<&schema::Admin>, out: &mut Vec<Finding>) -> Admin {
    let explicit = a.is_some();
    let a = a.cloned().unwrap_or_default();
    let address = if a.address.is_empty() {
        None
    } else {
        match a.address.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                out.push((
                    KeyPath::root("admin").key("address"),
                    format!(
                        "{:?} is not an ip:port such as \"127.0.0.1:9090\" (\"\" turns it off)",
                        a.address
                    ),
                ));
                None
            }
        }
    };
    Admin {
        address,
        allow: a.allow,
        explicit,
    }
}

fn limits(file: &File, out: &mut Vec<Finding>) {
    let l = &file.limits;
    for (k, m) in l.problems() {
        out.push((KeyPath::root("limits").key(k), m));
    }
    for (i, r) in file.routes.iter().enumerate() {
        if r.limits.is_some() {
            for (k, m) in SessionLimits::resolve(l, r.limits.as_ref()).problems() {
                out.push((KeyPath::root("route").index(i).key("limits").key(k), m));
            }
        }
    }
}

fn listeners(ls: &[schema::Listener], source: &Path, out: &mut Vec<Finding>) -> Vec<Listener> {
    if ls.is_empty() {
        out.push((
            KeyPath::root("listener"),
            "at least one [[listener]] is required".into(),
        ));
    }
    let mut seen = HashSet::new();
    let mut names = HashSet::new();
    let mut checked = Vec::new();
    for (i, l) in ls.iter().enumerate() {
        let at = |k: &str| KeyPath::root("listener").index(i).key(k);
        if l.address.port() != 0 && !seen.insert(l.address) {
            out.push((
                at("address"),
                format!("duplicate listener address {}", l.address),
            ));
        }
        let name = match &l.name {
            Some(n) if n.is_empty() || n.contains(|c: char| c.is_whitespace() || c == ':') => {
                out.push((at("name"), "must be a word without spaces or ':'".into()));
                n.clone()
            }
            Some(n) => {
                if !names.insert(n.clone()) {
                    out.push((at("name"), format!("duplicate listener name {n:?}")));
                }
                n.clone()
            }
            None => {
                // The address; repeated port-0 addresses get "#2", "#3", ...
                let base = l.address.to_string();
                let mut n = base.clone();
                let mut k = 1;
                while !names.insert(n.clone()) {
                    k += 1;
                    n = format!("{base}#{k}");
                }
                n
            }
        };
        let tls = if l.tls {
            super::tls::listener(i, l, source, out)
        } else {
            super::tls::plain_listener(i, l, out);
            None
        };
        let proxy_protocol = match (l.proxy_protocol, &l.trusted_proxies) {
            (true, Some(t)) if !t.is_empty() => Some(t.clone()),
            (true, Some(_)) => {
                out.push((
                    at("trusted_proxies"),
                    "must not be empty: list the load balancers' addresses".into(),
                ));
                None
            }
            (true, None) => {
                out.push((
                    at("proxy_protocol"),
                    "needs `trusted_proxies` (the CIDRs of the load balancers allowed to send the header)".into(),
                ));
                None
            }
            (false, Some(_)) => {
                out.push((
                    at("trusted_proxies"),
                    "only allowed when proxy_protocol = true".into(),
                ));
                None
            }
            (false, None) => None,
        };
        checked.push(Listener {
            name,
            address: l.address,
            reuse_port: l.reuse_port,
            proxy_protocol,
            tls,
        });
    }
    checked
}

fn pools(ps: &[schema::Pool], source: &Path, secret: &Secret, out: &mut Vec<Finding>) -> Vec<Pool> {
    if ps.is_empty() {
        out.push((
            KeyPath::root("pool"),
            "at least one [[pool]] is required".into(),
        ));
    }
    let mut names = HashSet::new();
    let mut checked = Vec::new();
    for (i, p) in ps.iter().enumerate() {
        let at = || KeyPath::root("pool").index(i);
        if p.name.is_empty() {
            out.push((at().key("name"), "must not be empty".into()));
        } else if !names.insert(p.name.clone()) {
            out.push((
                at().key("name"),
                format!("duplicate pool name {:?}", p.name),
            ));
        }
        pool_values(i, p, out);
        let sticky = sticky(i, p, secret, out);
        if p.backends.is_empty() {
            out.push((
                at().key("backend"),
                format!("pool {:?} has no backends", p.name),
            ));
        }
        let (backends, discover) = backends(i, p, out);
        let sources =
            super::source::check(i, &p.source_addresses, &backends, !discover.is_empty(), out);
        let tls = super::tls::pool(i, p, source, out);
        let (passive, outlier) = super::outlier::passive(i, p, out);
        checked.push(Pool {
            name: p.name.clone(),
            balance: p.balance,
            connect_timeout: p.connect_timeout.get(),
            upgrade_timeout: p.upgrade_timeout.get(),
            host_header: p.host_header.clone(),
            retries: p.retries,
            upstream_deadline: p.upstream_deadline.get(),
            passive,
            outlier,
            slow_start: p.slow_start.get(),
            on_backend_removed: match p.on_backend_removed {
                OnRemoved::Keep => BackendRemoved::Keep,
                OnRemoved::Close => BackendRemoved::Close {
                    spread: p.removed_close_spread.get(),
                },
            },
            send_proxy_protocol: p.send_proxy_protocol,
            active_checks: p.health.is_some(),
            tls,
            sticky,
            response_timeout: p.response_timeout.get(),
            keepalive: p.keepalive,
            keepalive_timeout: p.keepalive_timeout.get(),
            source_addresses: sources,
            backends,
            discover,
        });
    }
    checked
}

/// The values of pool `i` that are checked one by one: timeouts, host_header,
/// retries and keep-alive (passive checks: outlier.rs).
fn pool_values(i: usize, p: &schema::Pool, out: &mut Vec<Finding>) {
    let at = || KeyPath::root("pool").index(i);
    for (k, d) in [
        ("connect_timeout", p.connect_timeout),
        ("upgrade_timeout", p.upgrade_timeout),
        ("upstream_deadline", p.upstream_deadline),
    ] {
        if d.get().is_zero() {
            out.push((at().key(k), "must be greater than zero".into()));
        }
    }
    if let Some(h) = &p.host_header
        && (h.is_empty()
            || h.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()))
    {
        out.push((
            at().key("host_header"),
            "must be a host name, optionally with :port".into(),
        ));
    }
    if p.retries > 16 {
        out.push((at().key("retries"), "must be at most 16".into()));
    }
    if p.response_timeout.get().is_zero() {
        out.push((
            at().key("response_timeout"),
            "must be greater than zero".into(),
        ));
    }
    if p.keepalive > 10_000 {
        out.push((at().key("keepalive"), "must be at most 10000".into()));
    }
    if p.keepalive > 0 && p.keepalive_timeout.get().is_zero() {
        out.push((
            at().key("keepalive_timeout"),
            "must be greater than zero when keepalive > 0".into(),
        ));
    }
}

/// `sticky_cookie`, with `balance = "cookie"`: the cookie and the key it is hashed with.
fn sticky(i: usize, p: &schema::Pool, secret: &Secret, out: &mut Vec<Finding>) -> Option<Sticky> {
    let at = || KeyPath::root("pool").index(i);
    match (&p.sticky_cookie, p.balance) {
        (Some(_), b) if b != Balance::Cookie => {
            out.push((
                at().key("sticky_cookie"),
                "only meaningful with balance = \"cookie\"".into(),
            ));
            None
        }
        (Some(c), _) if !is_token(c) => {
            out.push((
                at().key("sticky_cookie"),
                format!("{c:?} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)"),
            ));
            None
        }
        (name, Balance::Cookie) => Some(Sticky {
            cookie: name.clone().unwrap_or_else(|| "wsgate_srv".into()),
            key: secret.clone(),
        }),
        _ => None,
    }
}

/// The shortest `resolve` interval accepted.
const MIN_RESOLVE: Duration = Duration::from_millis(100);

fn backends(i: usize, p: &schema::Pool, out: &mut Vec<Finding>) -> (Vec<Backend>, Vec<Discover>) {
    let at = |j: usize, k: &str| {
        KeyPath::root("pool")
            .index(i)
            .key("backend")
            .index(j)
            .key(k)
    };
    let mut addrs = HashSet::new();
    let mut names = HashSet::new();
    let mut checked = Vec::new();
    let mut discover = Vec::new();
    for (j, b) in p.backends.iter().enumerate() {
        if b.health.is_some() && p.health.is_none() {
            out.push((
                at(j, "health"),
                "a backend health override needs [pool.health]".into(),
            ));
        }
        let check = p
            .health
            .as_ref()
            .map(|h| Check::resolve(h, b.health.as_ref()));
        if let Some(c) = &check {
            for (k, m) in c.problems() {
                let path = if b.health.is_some() {
                    at(j, "health").key(k)
                } else {
                    KeyPath::root("pool").index(i).key("health").key(k)
                };
                if !out.iter().any(|(seen, _)| *seen == path) {
                    out.push((path, m));
                }
            }
        }
        if !(1..=10_000).contains(&b.weight) {
            out.push((at(j, "weight"), "must be between 1 and 10000".into()));
        }
        if let Some(every) = b.resolve {
            match host_port(&b.address) {
                Err(e) => out.push((at(j, "address"), e.to_string())),
                Ok(_) if every.get() < MIN_RESOLVE => out.push((
                    at(j, "resolve"),
                    format!("must be at least {MIN_RESOLVE:?}"),
                )),
                Ok(_) if !names.insert(b.address.to_ascii_lowercase()) => out.push((
                    at(j, "address"),
                    format!("{:?} is already resolved in this pool", b.address),
                )),
                Ok((host, port)) => discover.push(Discover {
                    address: b.address.clone(),
                    host,
                    port,
                    every: every.get(),
                    weight: b.weight,
                    drain: b.drain,
                    check,
                }),
            }
            continue;
        }
        match b.address.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(addr)) => {
                if !addrs.insert(addr) {
                    out.push((
                        at(j, "address"),
                        format!("duplicate backend {addr} in this pool"),
                    ));
                }
                checked.push(Backend {
                    address: b.address.clone(),
                    addr,
                    weight: b.weight,
                    drain: b.drain,
                    check,
                });
            }
            Ok(None) => out.push((
                at(j, "address"),
                format!("{:?} resolved to no address", b.address),
            )),
            Err(e) => out.push((
                at(j, "address"),
                format!("{:?} is not a usable host:port ({e})", b.address),
            )),
        }
    }
    (checked, discover)
}

/// A `resolve` backend's address: a DNS name and a port (not an IP address: there
/// is nothing to look up).
fn host_port(address: &str) -> Result<(String, u16), InvalidValue> {
    let bad = |why: &str| InvalidValue::new(format!("{address:?} {why}"));
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| bad("needs a port (host:port)"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("has no valid port (1-65535)"))?;
    let host = host.trim_end_matches('.');
    if host.parse::<std::net::IpAddr>().is_ok()
        || host.starts_with('[')
        || address.parse::<std::net::SocketAddr>().is_ok()
    {
        return Err(bad(
            "is an IP address: resolve is for host names (drop resolve, or give a name)",
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(bad(
            "is not a host name such as \"chat.default.svc.cluster.local:9000\"",
        ));
    }
    Ok((host.to_ascii_lowercase(), port))
}
