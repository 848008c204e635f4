//! Semantic checks serde cannot express: each finding is a key path and one message.
//! Backend host names are resolved here, once, so the runtime never resolves.

use super::{Check, Config, KeyPath, SessionLimits};
use std::collections::HashSet;
use std::net::ToSocketAddrs;

type Finding = (KeyPath, String);

pub(super) fn validate(cfg: &mut Config) -> Vec<Finding> {
    let mut out = Vec::new();
    server(cfg, &mut out);
    limits(cfg, &mut out);
    listeners(cfg, &mut out);
    pools(cfg, &mut out);
    routes(cfg, &mut out);
    out
}

fn server(cfg: &Config, out: &mut Vec<Finding>) {
    let s = &cfg.server;
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
    ] {
        if d.get().is_zero() {
            out.push((at(k), "must be greater than zero".into()));
        }
    }
    if !(1024..=1024 * 1024).contains(&s.max_header_bytes) {
        out.push((
            at("max_header_bytes"),
            "must be between 1024 and 1048576".into(),
        ));
    }
}

fn limits(cfg: &Config, out: &mut Vec<Finding>) {
    let l = &cfg.limits;
    let at = |k: &str| KeyPath::root("limits").key(k);
    if l.max_connections == 0 {
        out.push((at("max_connections"), "must be at least 1".into()));
    }
    if l.max_connections_per_ip == 0 {
        out.push((at("max_connections_per_ip"), "must be at least 1".into()));
    }
    if !l.connect_rate.is_finite() || l.connect_rate <= 0.0 || l.connect_rate > 1e6 {
        out.push((
            at("connect_rate"),
            "must be a number of connections per second, > 0".into(),
        ));
    }
    if l.connect_burst == 0 {
        out.push((at("connect_burst"), "must be at least 1".into()));
    }
    if !(1..=128).contains(&l.ipv6_prefix) {
        out.push((at("ipv6_prefix"), "must be between 1 and 128".into()));
    }
    for (i, c) in l.exempt.iter().enumerate() {
        if let Err(e) = crate::admission::Cidr::parse(c) {
            out.push((KeyPath::root("limits").key("exempt").index(i), e));
        }
    }
    for (k, m) in SessionLimits::resolve(l, None).problems() {
        out.push((at(k), m));
    }
    for (i, r) in cfg.routes.iter().enumerate() {
        if r.limits.is_some() {
            for (k, m) in SessionLimits::resolve(l, r.limits.as_ref()).problems() {
                out.push((KeyPath::root("route").index(i).key("limits").key(k), m));
            }
        }
    }
}

fn listeners(cfg: &Config, out: &mut Vec<Finding>) {
    if cfg.listeners.is_empty() {
        out.push((
            KeyPath::root("listener"),
            "at least one [[listener]] is required".into(),
        ));
    }
    let mut seen = HashSet::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let at = |k: &str| KeyPath::root("listener").index(i).key(k);
        if l.address.port() != 0 && !seen.insert(l.address) {
            out.push((
                at("address"),
                format!("duplicate listener address {}", l.address),
            ));
        }
        if l.tls {
            if l.cert.is_none() {
                out.push((
                    at("cert"),
                    "a TLS listener needs `cert` (a full chain PEM file)".into(),
                ));
            }
            if l.key.is_none() {
                out.push((
                    at("key"),
                    "a TLS listener needs `key` (a PEM private key file)".into(),
                ));
            }
            if let Some(names) = &l.cipher_suites
                && let Err(e) = crate::tls::check_cipher_suites(names, l.min_version)
            {
                out.push((at("cipher_suites"), e));
            }
        } else {
            for (k, set) in [
                ("cert", l.cert.is_some()),
                ("key", l.key.is_some()),
                ("min_version", l.min_version.is_some()),
                ("cipher_suites", l.cipher_suites.is_some()),
            ] {
                if set {
                    out.push((at(k), "only allowed when tls = true".into()));
                }
            }
        }
    }
}

fn pools(cfg: &mut Config, out: &mut Vec<Finding>) {
    if cfg.pools.is_empty() {
        out.push((
            KeyPath::root("pool"),
            "at least one [[pool]] is required".into(),
        ));
    }
    let mut names = HashSet::new();
    for (i, p) in cfg.pools.iter_mut().enumerate() {
        let at = || KeyPath::root("pool").index(i);
        if p.name.is_empty() {
            out.push((at().key("name"), "must not be empty".into()));
        } else if !names.insert(p.name.clone()) {
            out.push((
                at().key("name"),
                format!("duplicate pool name {:?}", p.name),
            ));
        }
        for (k, d) in [
            ("connect_timeout", p.connect_timeout),
            ("upgrade_timeout", p.upgrade_timeout),
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
        if p.upstream_deadline.get().is_zero() {
            out.push((
                at().key("upstream_deadline"),
                "must be greater than zero".into(),
            ));
        }
        if p.max_fails > 0 && p.fail_timeout.get().is_zero() {
            out.push((
                at().key("fail_timeout"),
                "must be greater than zero when max_fails > 0".into(),
            ));
        }
        if p.retries > 16 {
            out.push((at().key("retries"), "must be at most 16".into()));
        }
        let pool_health = p.health.clone();
        for (j, b) in p.backends.iter().enumerate() {
            if b.health.is_some() && pool_health.is_none() {
                out.push((
                    at().key("backend").index(j).key("health"),
                    "a backend health override needs [pool.health]".into(),
                ));
            }
            if let Some(h) = &pool_health {
                for (k, m) in Check::resolve(h, b.health.as_ref()).problems() {
                    let path = if b.health.is_some() {
                        at().key("backend").index(j).key("health").key(k)
                    } else {
                        at().key("health").key(k)
                    };
                    if !out.iter().any(|(seen, _)| *seen == path) {
                        out.push((path, m));
                    }
                }
            }
        }
        if p.backends.is_empty() {
            out.push((
                at().key("backend"),
                format!("pool {:?} has no backends", p.name),
            ));
        }
        let mut addrs = HashSet::new();
        for (j, b) in p.backends.iter_mut().enumerate() {
            let at = |k: &str| {
                KeyPath::root("pool")
                    .index(i)
                    .key("backend")
                    .index(j)
                    .key(k)
            };
            if !(1..=10_000).contains(&b.weight) {
                out.push((at("weight"), "must be between 1 and 10000".into()));
            }
            match b.address.to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(a)) => {
                    b.resolved = Some(a);
                    if !addrs.insert(a) {
                        out.push((at("address"), format!("duplicate backend {a} in this pool")));
                    }
                }
                Ok(None) => out.push((
                    at("address"),
                    format!("{:?} resolved to no address", b.address),
                )),
                Err(e) => out.push((
                    at("address"),
                    format!("{:?} is not a usable host:port ({e})", b.address),
                )),
            }
        }
    }
}

fn routes(cfg: &Config, out: &mut Vec<Finding>) {
    if cfg.routes.is_empty() {
        out.push((
            KeyPath::root("route"),
            "at least one [[route]] is required".into(),
        ));
    }
    let pools: HashSet<&str> = cfg.pools.iter().map(|p| p.name.as_str()).collect();
    let mut seen = HashSet::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let at = |k: &str| KeyPath::root("route").index(i).key(k);
        if !pools.contains(r.pool.as_str()) {
            out.push((at("pool"), format!("no [[pool]] is named {:?}", r.pool)));
        }
        if !r.path_prefix.starts_with('/') {
            out.push((at("path_prefix"), "must start with '/'".into()));
        }
        let host = match &r.host {
            Some(h) => match crate::route::HostMatch::parse(h) {
                Ok(m) => Some(m),
                Err(e) => {
                    out.push((at("host"), e));
                    None
                }
            },
            None => None,
        };
        if !seen.insert((host, r.path_prefix.clone())) {
            out.push((
                at("path_prefix"),
                "another route already has this host and path_prefix".into(),
            ));
        }
        if let Some(origins) = &r.allowed_origins {
            for (j, o) in origins.iter().enumerate() {
                if let Err(e) = crate::origin::OriginPattern::parse(o) {
                    out.push((
                        KeyPath::root("route")
                            .index(i)
                            .key("allowed_origins")
                            .index(j),
                        e,
                    ));
                }
            }
        } else if r.allow_missing_origin {
            out.push((
                at("allow_missing_origin"),
                "only meaningful together with allowed_origins".into(),
            ));
        }
    }
}
