//! The configuration schema: one TOML file, every key documented in `conf/wsgate.toml`.
//!
//! Owns: the serde types (unknown keys are errors everywhere), defaults, and the
//! semantic checks that serde cannot express (`validate.rs`). Loading and turning
//! errors into `file:line:column: key: message` lives in `load.rs`.
//! Does not own: building runtime objects (TLS configs, routers, pools); those
//! modules take a validated `Config` and cannot fail on anything checked here.

mod duration;
mod health;
mod limits;
mod load;
mod validate;

pub use duration::Dur;
pub use health::{Check, CheckKind, HealthConf};
pub use limits::{Limits, OnExceed, RouteLimits, SessionLimits};
pub use load::{ConfigError, KeyPath, Seg};

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A whole, validated configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub limits: Limits,
    #[serde(rename = "listener", default)]
    pub listeners: Vec<Listener>,
    #[serde(rename = "pool", default)]
    pub pools: Vec<Pool>,
    #[serde(rename = "route", default)]
    pub routes: Vec<Route>,
    /// The file this was read from; relative cert/key paths resolve against its folder.
    #[serde(skip)]
    pub source: PathBuf,
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

    /// Resolves a path from the file against the folder the file lives in.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.source.parent() {
            Some(dir) => dir.join(p),
            None => p.to_path_buf(),
        }
    }
}

/// Process-wide settings: `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// tracing filter, e.g. "info" or "wsgate=debug"; `RUST_LOG` overrides it.
    pub log_level: String,
    /// A TLS handshake that has not finished by then is dropped.
    pub tls_handshake_timeout: Dur,
    /// The whole upgrade request head must arrive within this (then 408).
    pub header_read_timeout: Dur,
    /// Largest request head accepted (then 431).
    pub max_header_bytes: usize,
    /// How long a close handshake may take once one side has started it.
    pub close_timeout: Dur,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            log_level: "info".into(),
            tls_handshake_timeout: Dur::secs(10),
            header_read_timeout: Dur::secs(10),
            max_header_bytes: 16 * 1024,
            close_timeout: Dur::secs(5),
        }
    }
}

/// One `[[listener]]`: an address, TLS or plain TCP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub address: SocketAddr,
    #[serde(default = "yes")]
    pub tls: bool,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub min_version: Option<TlsVersion>,
    pub cipher_suites: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// One `[[pool]]` of interchangeable backends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: String,
    #[serde(default)]
    pub balance: Balance,
    /// TCP connect to a backend must finish within this.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// The backend must answer the forwarded upgrade within this.
    #[serde(default = "default_upgrade_timeout")]
    pub upgrade_timeout: Dur,
    /// Replaces the client's Host header toward the backends when set.
    pub host_header: Option<String>,
    /// Further backends tried when connecting or upgrading fails.
    #[serde(default = "two")]
    pub retries: u32,
    /// All attempts of one request must finish within this.
    #[serde(default = "default_upstream_deadline")]
    pub upstream_deadline: Dur,
    /// Passive checks: this many failures within `fail_timeout` take a backend down
    /// for `fail_timeout` (nginx's semantics). 0 turns passive checks off.
    #[serde(default = "one")]
    pub max_fails: u32,
    #[serde(default = "default_fail_timeout")]
    pub fail_timeout: Dur,
    /// Ramp a recovered backend's weight up over this long ("0s": off).
    #[serde(default = "zero")]
    pub slow_start: Dur,
    /// Active checks; absent means none.
    pub health: Option<HealthConf>,
    #[serde(rename = "backend", default)]
    pub backends: Vec<BackendConf>,
}

fn two() -> u32 {
    2
}
fn default_upstream_deadline() -> Dur {
    Dur::secs(15)
}
fn default_fail_timeout() -> Dur {
    Dur::secs(10)
}
fn zero() -> Dur {
    Dur::secs(0)
}

fn default_connect_timeout() -> Dur {
    Dur::secs(5)
}
fn default_upgrade_timeout() -> Dur {
    Dur::secs(10)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    IpHash,
    LeastConn,
}

/// One `[[pool.backend]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConf {
    /// `ip:port` or `host:port`; host names are resolved once, at load.
    pub address: String,
    #[serde(default = "one")]
    pub weight: u32,
    /// No new sessions go to a draining backend; its live sessions are untouched.
    #[serde(default)]
    pub drain: bool,
    /// Overrides of the pool's `[pool.health]` for this backend.
    pub health: Option<HealthConf>,
    /// Filled in by validation: the first address `address` resolved to.
    #[serde(skip)]
    pub resolved: Option<SocketAddr>,
}

fn one() -> u32 {
    1
}

/// One `[[route]]`: which requests go to which pool, and who may open them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Exact host (case-insensitive, port ignored) or `*.example.com`.
    pub host: Option<String>,
    /// Path prefix; the longest matching one wins. Default "/".
    #[serde(default = "slash")]
    pub path_prefix: String,
    pub pool: String,
    /// Allowed `Origin` values; absent means Origin is not checked.
    pub allowed_origins: Option<Vec<String>>,
    /// With `allowed_origins`, whether a request without Origin is let through.
    #[serde(default)]
    pub allow_missing_origin: bool,
    /// Per-route overrides of the session keys of `[limits]`.
    pub limits: Option<RouteLimits>,
}

fn slash() -> String {
    "/".into()
}
