//! Building a generation from a checked config: every file it names is read here
//! (certificates and keys, CA bundles, JWT keys), or kept from the current generation
//! for a DNS update, and listeners keep their TLS session-ticket keys across reloads
//! (tls/tickets.rs). A failure is a `BuildError` located in the file; its
//! `Display` is the located line (what failed), its `source()` the error beneath
//! (print it with `errors::ErrorChain` to show every cause).
//! Does not own: publishing (mod.rs) or what a generation's parts do at run time.

use super::{Effective, Generation, ListenerGen, RELAY_BUFFER};
use crate::backends::backend::{Backend, BackendId};
use crate::backends::balance::Pool;
use crate::config::{Config, KeyPath, Problem};
use crate::conn::ConnSettings;
use crate::relay::RelayConfig;
use crate::route::auth::Jwt;
use crate::route::{Route, Router};
use crate::tls::{self, TicketKeys, upstream::UpstreamTls};
use hyper::header::HeaderName;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio_rustls::TlsAcceptor;
/// A config that cannot be served: a certificate, key, CA bundle or JWT key problem,
/// located in the file. `problem` says what failed (the error's own message);
/// `source()` is that error, whose own `source()` is the cause beneath.
#[derive(Debug)]
pub struct BuildError {
    pub problem: Box<Problem>,
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.problem)
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // `problem` already says what `source` says: go on from its cause.
        self.source.source()
    }
}

impl BuildError {
    fn at(
        cfg: &Config,
        key: &KeyPath,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> BuildError {
        BuildError {
            problem: Box::new(cfg.problem(key, &source.to_string())),
            source: Box::new(source),
        }
    }
}

/// Loads every file the config names (certificates and keys, CA bundles, JWT keys)
/// as a start or reload would; returns the warnings. What `wsgate check` runs
/// besides parsing.
pub fn check_files(cfg: &Config) -> Result<Vec<String>, BuildError> {
    let mut warnings = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        if let Some(t) = &l.tls {
            warnings.extend(load_tls(cfg, i, t, None)?.warnings);
        }
    }
    for (i, p) in cfg.pools.iter().enumerate() {
        load_pool_tls(cfg, i, p)?;
    }
    for r in &cfg.routes {
        if let Some(a) = &r.auth {
            warnings.extend(load_auth(cfg, a)?.1);
        }
    }
    Ok(warnings)
}

/// The certificate checks alone (kept for callers of the older name).
pub fn check_tls(cfg: &Config) -> Result<Vec<String>, BuildError> {
    check_files(cfg)
}

/// Listener `index`'s TLS; with `tickets`, its session-ticket keys (kept across
/// reloads), without (`wsgate check`) only loaded and checked.
fn load_tls(
    cfg: &Config,
    index: usize,
    t: &crate::config::ListenerTls,
    tickets: Option<&TicketKeys>,
) -> Result<tls::Loaded, BuildError> {
    let at = KeyPath::root("listener").index(index);
    let ticketer = match tickets {
        Some(k) => k
            .for_listener(&cfg.listeners[index].name, t)
            .map_err(|e| BuildError::at(cfg, &at.clone().key("session_tickets"), e))?,
        None => None,
    };
    tls::load_listener(t, &at, ticketer).map_err(|e| BuildError::at(cfg, &e.at, *e.error))
}

fn load_pool_tls(
    cfg: &Config,
    index: usize,
    p: &crate::config::Pool,
) -> Result<Option<Arc<UpstreamTls>>, BuildError> {
    let Some(t) = &p.tls else { return Ok(None) };
    let key = if t.ca.is_some() { "tls_ca" } else { "tls" };
    UpstreamTls::load(t)
        .map(|u| Some(Arc::new(u)))
        .map_err(|e| BuildError::at(cfg, &KeyPath::root("pool").index(index).key(key), e))
}

fn load_auth(
    cfg: &Config,
    a: &crate::config::JwtConf,
) -> Result<(Arc<Jwt>, Vec<String>), BuildError> {
    Jwt::load(a)
        .map(|(j, w)| (Arc::new(j), w))
        .map_err(|e| BuildError::at(cfg, &a.at.clone().key(a.keys.key()), e))
}

/// The generation `cfg` describes. With `keep` (a DNS update: only the backends
/// differ), the listeners, pool TLS settings and JWT keys are taken from that
/// generation instead of being loaded again.
pub(super) fn build(
    cfg: &Config,
    id: u64,
    keep: Option<&Generation>,
    tickets: &TicketKeys,
    mut reuse: impl FnMut(&BackendId) -> Option<Arc<Backend>>,
) -> Result<Generation, BuildError> {
    let (listeners, mut warnings, mut identity_headers) = match keep {
        Some(g) => (
            g.listeners.clone(),
            g.warnings.clone(),
            g.identity_headers.clone(),
        ),
        None => build_listeners(cfg, tickets)?,
    };
    let mut pools: Vec<Arc<Pool>> = Vec::with_capacity(cfg.pools.len());
    for (i, p) in cfg.pools.iter().enumerate() {
        let tls = match keep {
            Some(g) => g
                .pools
                .iter()
                .find(|k| k.name == p.name)
                .and_then(|k| k.tls.clone()),
            None => load_pool_tls(cfg, i, p)?,
        };
        pools.push(Arc::new(Pool::build(p, &mut reuse).with_tls(tls)));
    }
    let mut auths = Vec::with_capacity(cfg.routes.len());
    for (i, r) in cfg.routes.iter().enumerate() {
        let auth = match (&r.auth, keep) {
            (Some(_), Some(g)) => g
                .router
                .routes()
                .iter()
                .find(|k| k.index == i)
                .and_then(|k| k.auth.clone()),
            (Some(a), None) => {
                let (jwt, w) = load_auth(cfg, a)?;
                warnings.extend(w);
                identity_headers.extend(a.forward_claims.iter().map(|(_, h)| h.clone()));
                Some(jwt)
            }
            (None, _) => None,
        };
        auths.push(auth);
    }
    identity_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    identity_headers.dedup();
    let close_timeout = cfg.server.close_timeout.get();
    let routes = cfg
        .routes
        .iter()
        .zip(auths)
        .map(|(r, auth)| {
            let relay = RelayConfig {
                buffer: RELAY_BUFFER,
                close_timeout,
                limits: r.limits.clone(),
            };
            let mut route = Route::new(r, &pools, relay);
            route.auth = auth;
            route
        })
        .collect();
    Ok(Generation {
        id,
        loaded_at: SystemTime::now(),
        config: cfg.clone(),
        router: Router::new(routes),
        pools,
        listeners,
        conn: ConnSettings {
            tls_handshake_timeout: cfg.server.tls_handshake_timeout.get(),
            header_read_timeout: cfg.server.header_read_timeout.get(),
            keepalive_timeout: cfg.server.keepalive_timeout.get(),
            request_body_timeout: cfg.server.request_body_timeout.get(),
            max_header_bytes: cfg.server.max_header_bytes,
        },
        identity_headers,
        warnings,
        effective: Effective::resolve(cfg),
        checkers: Mutex::new(None),
    })
}

/// Every listener of `cfg`, its certificates and keys loaded; the warnings, and the
/// client-certificate subject headers.
type Listeners = (Vec<ListenerGen>, Vec<String>, Vec<HeaderName>);

fn build_listeners(cfg: &Config, tickets: &TicketKeys) -> Result<Listeners, BuildError> {
    let mut warnings = Vec::new();
    let mut listeners = Vec::new();
    let mut identity_headers: Vec<HeaderName> = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let (tls, certs, subject) = match &l.tls {
            None => (None, Vec::new(), None),
            Some(t) => {
                let loaded = load_tls(cfg, i, t, Some(tickets))?;
                warnings.extend(loaded.warnings);
                let subject = t.client_certs.as_ref().map(|c| c.subject_header.clone());
                (
                    Some(TlsAcceptor::from(loaded.config)),
                    loaded.certs,
                    subject,
                )
            }
        };
        identity_headers.extend(subject.clone());
        listeners.push(ListenerGen {
            name: l.name.as_str().into(),
            address: l.address,
            reuse_port: l.reuse_port,
            proxy_protocol: l.proxy_protocol.as_deref().map(Arc::from),
            tls,
            certs,
            client_subject_header: subject,
        });
    }
    Ok((listeners, warnings, identity_headers))
}
