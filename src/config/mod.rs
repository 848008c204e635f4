//! The configuration: one TOML file, every key documented in `conf/wsgate.toml`.
//!
//! Owns: the file's schema (`schema/`, serde, unknown keys are errors), checked
//! value types (`types.rs`, `duration.rs`), and the validated `Config` this module
//! exports. A `Config` can only be made by `Config::load` or `Config::parse`, which
//! run every check (`validate.rs` and the check modules, backend names resolved)
//! and report each problem as `file:line:column: key: message` (`load.rs`). So the
//! runtime takes a `Config` and cannot meet a value that was not checked.
//! Does not own: building runtime objects (TLS configs, routers, pools: runtime/).
//! Nothing here imports the runtime.

pub mod auth;
mod duration;
mod finding;
mod health;
mod limits;
mod load;
mod outlier;
mod routes;
pub mod schema;
mod source;
pub mod tls;
pub mod types;
mod validate;

pub use auth::{JwtConf, KeySource};
pub use duration::Dur;
pub use finding::{InvalidValue, KeyPath, Seg};
pub use health::{Check, CheckKind, HealthConf};
pub use limits::{Limits, OnExceed, RouteLimits, SessionLimits};
pub use load::{ConfigError, Problem};
pub use schema::{Balance, HttpMode, LogFormat, OnRemoved, ProxyVersion, Server, TokenSource};
pub use tls::{CertPair, ClientCerts, ListenerTls, PoolTls};
pub use types::{
    Cidr, HeaderKey, HostMatch, MatchOn, MatchValue, MemoryLimit, OriginPattern, RouteMatch,
    Secret, SuiteName, TlsVersion,
};

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A whole configuration that passed every check.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub limits: Limits,
    pub admin: Admin,
    pub listeners: Vec<Listener>,
    pub pools: Vec<Pool>,
    pub routes: Vec<Route>,
    /// The file this was read from.
    pub source: PathBuf,
    /// Its text, to locate problems found after loading (certificates, binds).
    text: Arc<str>,
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        load::load_file(path)
    }

    /// Parses and validates configuration text; `source` names it in errors
    /// and anchors relative paths.
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
        load::parse_str(text, source)
    }

    /// A problem with `key` found after loading, located in this config's file.
    pub fn problem(&self, key: &KeyPath, message: &str) -> Problem {
        load::Located {
            text: &self.text,
            file: &self.source,
        }
        .at_path(key, message)
    }

    /// This config with the addresses discovery found: `found(pool, entry)` is the
    /// current set of one `resolve` backend. Each address becomes a backend after the
    /// pool's fixed ones; one the pool already has is not added twice.
    pub fn with_discovered<'a>(
        &self,
        mut found: impl FnMut(&Pool, &Discover) -> &'a [SocketAddr],
    ) -> Config {
        let mut out = self.clone();
        for pool in &mut out.pools {
            for d in &pool.discover {
                for addr in found(pool, d) {
                    if !pool.backends.iter().any(|b| b.addr == *addr) {
                        pool.backends.push(d.backend(*addr));
                    }
                }
            }
        }
        out
    }

    /// The position of a listener by name.
    pub fn listener_index(&self, name: &str) -> Option<usize> {
        self.listeners.iter().position(|l| l.name == name)
    }
}

/// `[admin]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// `None`: turned off (`address = ""`).
    pub address: Option<SocketAddr>,
    pub allow: Vec<Cidr>,
    /// Whether the file has an `[admin]` table: then a bind failure is fatal;
    /// the implicit default is best effort (a warning).
    pub explicit: bool,
}

/// One `[[listener]]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// Unique in the file: `name`, or the address (with `#n` for repeated port-0 ones).
    pub name: String,
    pub address: SocketAddr,
    pub reuse_port: bool,
    /// `Some(trusted_proxies)` when the listener expects a PROXY protocol header
    /// (checked non-empty).
    pub proxy_protocol: Option<Vec<Cidr>>,
    /// `None` for a plain-TCP listener.
    pub tls: Option<ListenerTls>,
}

/// `balance = "cookie"`: the cookie's name and the key its values are hashed with.
#[derive(Debug, Clone, PartialEq)]
pub struct Sticky {
    pub cookie: String,
    pub key: Secret,
}

/// Passive checks: how failures of real connections and upgrades eject a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passive {
    /// Outlier detection (Envoy's): `failures` in a row (a success starts the count
    /// over; a failure of an attempt that began before the backend's last success
    /// does not count: the backend is slow, not dead) eject it for
    /// `base` x the number of ejections in a row, at most `max`.
    Consecutive {
        failures: u32,
        base: Duration,
        max: Duration,
    },
    /// nginx's, when `max_fails` or `fail_timeout` is written: `max_fails` failures
    /// within `fail_timeout` eject it for `fail_timeout`.
    Window {
        max_fails: u32,
        fail_timeout: Duration,
    },
}

/// What bounds passive checks in one pool, whichever `Passive` it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlier {
    /// 0..=100: the share of the pool's backends (draining ones left out) passive
    /// checks may hold ejected at once; above 0, at least one (even a pool's only one).
    pub max_ejection_percent: u32,
    /// 0..=100: with fewer pickable backends than this share, the pool balances
    /// over all of them but the draining ones (panic mode). 0: never.
    pub panic_threshold: u32,
}

/// What a reload does to the sessions of a backend it removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendRemoved {
    Keep,
    /// Close 1012 to each, at a random moment within `spread`.
    Close {
        spread: Duration,
    },
}

/// One `[[pool]]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub balance: Balance,
    pub connect_timeout: Duration,
    pub upgrade_timeout: Duration,
    pub host_header: Option<String>,
    pub retries: u32,
    pub upstream_deadline: Duration,
    /// `None` when `consecutive_failures = 0` (or `max_fails = 0`).
    pub passive: Option<Passive>,
    pub outlier: Outlier,
    pub slow_start: Duration,
    pub on_backend_removed: BackendRemoved,
    /// The PROXY protocol header written on every backend connection.
    pub send_proxy_protocol: Option<ProxyVersion>,
    /// Whether `[pool.health]` is set (then every backend has a `check`).
    pub active_checks: bool,
    /// TLS to the backends (and their health checks); `None`: plain TCP.
    pub tls: Option<PoolTls>,
    /// With `balance = "cookie"`.
    pub sticky: Option<Sticky>,
    /// Plain HTTP: the wait for a response head once the request is sent, and the
    /// longest pause within its body.
    pub response_timeout: Duration,
    /// Plain HTTP: idle connections kept per backend, and for how long.
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    /// The local addresses backend connections are made from (empty: the kernel's
    /// choice); each backend uses those of its own family.
    pub source_addresses: Vec<IpAddr>,
    /// The backends with a fixed address, in file order; a generation's pools also
    /// hold the addresses `discover` found (`Config::with_discovered`).
    pub backends: Vec<Backend>,
    /// The `resolve` backends: names looked up again and again (discovery.rs).
    pub discover: Vec<Discover>,
}

/// A `[[pool.backend]]` with `resolve`: every address its name resolves to is a
/// backend of the pool with these settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Discover {
    /// As written (`host:port`): with the pool's name, the identity of the entry.
    pub address: String,
    pub host: String,
    pub port: u16,
    /// How often the name is looked up again.
    pub every: Duration,
    pub weight: u32,
    pub drain: bool,
    pub check: Option<Check>,
}

impl Discover {
    /// The backend `addr` (one address the name resolved to) is. Its `address`,
    /// the label of its metrics and part of its identity, is `host:port@addr`.
    pub fn backend(&self, addr: SocketAddr) -> Backend {
        Backend {
            address: format!("{}@{addr}", self.address),
            addr,
            weight: self.weight,
            drain: self.drain,
            check: self.check.clone(),
        }
    }
}

/// One `[[pool.backend]]`, checked and resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// As written: with the pool's name and `addr`, the backend's identity across reloads.
    pub address: String,
    /// What `address` resolved to when the file was loaded.
    pub addr: SocketAddr,
    pub weight: u32,
    pub drain: bool,
    /// The pool's `[pool.health]` with this backend's overrides.
    pub check: Option<Check>,
}

/// One pool of a route, with its share of the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Index into `Config::pools` (checked to exist).
    pub pool: usize,
    /// 0..=10000; a single-pool route has one target of weight 1.
    pub weight: u32,
}

/// One `[[route]]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Unique; the label of its metrics and log lines.
    pub name: String,
    pub host: Option<HostMatch>,
    pub path_prefix: String,
    /// Header, cookie and query conditions; all must hold.
    pub matches: Vec<RouteMatch>,
    /// At least one, and at least one with a weight above 0.
    pub targets: Vec<Target>,
    /// The cookie that keys a client's pool choice (else its IP).
    pub split_cookie: Option<String>,
    pub http: HttpMode,
    /// 0: no limit.
    pub max_request_body_bytes: u64,
    /// `None`: Origin is not checked.
    pub allowed_origins: Option<Vec<OriginPattern>>,
    pub allow_missing_origin: bool,
    /// `[limits]` with this route's overrides applied.
    pub limits: SessionLimits,
    /// `[route.auth]`: the token the upgrade must carry.
    pub auth: Option<JwtConf>,
    /// Position in the file, for logs.
    pub index: usize,
}
