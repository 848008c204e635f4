//! The file as written: serde types for every table and key of the TOML file
//! (`conf/wsgate.toml` documents each one); `[route.auth]` is in auth.rs here.
//! Unknown keys are errors everywhere. Imports no check module: they import it.
//!
//! Owns: key names, their types and their defaults. Values with a syntax of their
//! own (durations, CIDRs, host and Origin patterns, cipher suites) are checked types
//! already (types.rs), so a bad one is reported at its line and column by serde.
//! Does not own: `[limits]` and `[pool.health]` (limits.rs, health.rs), cross-key
//! checks or name resolution (validate.rs and the check modules).

mod auth;

pub use auth::{AuthFile, AuthKind, JwtAlg, SecretEncoding, StringOrList, TokenSource};

use super::duration::Dur;
use super::health::HealthConf;
use super::limits::{Limits, RouteLimits};
use super::types::{Cidr, HeaderKey, HostMatch, OriginPattern, SuiteName, TlsVersion};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A whole configuration file, parsed but not yet checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub limits: Limits,
    /// `None` when the file has no `[admin]` table (the default address, best effort).
    pub admin: Option<Admin>,
    #[serde(rename = "listener", default)]
    pub listeners: Vec<Listener>,
    #[serde(rename = "pool", default)]
    pub pools: Vec<Pool>,
    #[serde(rename = "route", default)]
    pub routes: Vec<Route>,
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
    /// At shutdown, live sessions are sent their Close at random times spread over this.
    pub drain_spread: Dur,
    /// Shutdown ends here at the latest, whatever is still open.
    pub shutdown_timeout: Dur,
    /// Where `run` writes its process id (and `wsgate reload` finds it).
    pub pid_file: Option<PathBuf>,
    /// tokio worker threads (read at start only). Absent: one per core.
    pub workers: Option<usize>,
    /// Between two requests on a kept-alive client connection, how long it may idle.
    pub keepalive_timeout: Dur,
    /// Longest gap between two reads of a proxied request's body (then 408).
    pub request_body_timeout: Dur,
    /// The key of the sticky-cookie hash (`balance = "cookie"`); absent: a fixed key.
    pub cookie_secret_file: Option<PathBuf>,
    /// "text" or "json" (one object per line); read at start.
    pub log_format: LogFormat,
    /// At shutdown: how long to stay not-ready (`/readyz` 503) while still
    /// accepting, before the listeners close and the drain begins.
    pub shutdown_grace: Dur,
    /// `IP:PORT` of the DNS server `resolve` backends are looked up with
    /// (absent: the servers of /etc/resolv.conf).
    pub resolver: Option<SocketAddr>,
}

/// How log lines (the access log included) are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The admin interface: `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// `ip:port` of the plain-HTTP admin listener; "" turns it off.
    pub address: String,
    /// Clients allowed to use it; others get 403.
    pub allow: Vec<Cidr>,
}

/// The admin listener's default address.
pub const ADMIN_ADDRESS: &str = "127.0.0.1:9090";

impl Default for Admin {
    fn default() -> Self {
        Admin {
            address: ADMIN_ADDRESS.into(),
            allow: default_admin_allow(),
        }
    }
}

/// Loopback only.
pub fn default_admin_allow() -> Vec<Cidr> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect()
}

impl Default for Server {
    fn default() -> Self {
        Server {
            log_level: "info".into(),
            tls_handshake_timeout: Dur::secs(10),
            header_read_timeout: Dur::secs(10),
            max_header_bytes: 16 * 1024,
            close_timeout: Dur::secs(5),
            drain_spread: Dur::secs(10),
            shutdown_timeout: Dur::secs(30),
            pid_file: None,
            workers: None,
            keepalive_timeout: Dur::secs(60),
            request_body_timeout: Dur::secs(60),
            cookie_secret_file: None,
            log_format: LogFormat::Text,
            shutdown_grace: Dur::secs(0),
            resolver: None,
        }
    }
}

/// One `[[listener.certificate]]`: a full chain and its key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `client_auth`: whether a client must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// A client without a certificate is served (a certificate it does present must verify).
    Optional,
    /// The handshake fails without a certificate that verifies.
    #[default]
    Required,
}

/// One `[[listener]]`: an address, TLS or plain TCP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Identity across reloads, the socket-activation name and the metrics label.
    pub name: Option<String>,
    pub address: SocketAddr,
    #[serde(default = "yes")]
    pub tls: bool,
    /// The default certificate (the first one); more in `[[listener.certificate]]`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// More certificates, chosen by SNI.
    #[serde(rename = "certificate", default)]
    pub certificates: Vec<CertificateFile>,
    /// Refuse handshakes for names no certificate has.
    #[serde(default)]
    pub strict_sni: bool,
    /// Stateless TLS session tickets (default true).
    pub session_tickets: Option<bool>,
    /// CA certificates that client certificates must chain to (turns client auth on).
    pub client_ca: Option<PathBuf>,
    pub client_auth: Option<ClientAuth>,
    /// Where the verified client subject goes (default `X-Client-Subject`).
    pub client_subject_header: Option<HeaderKey>,
    pub min_version: Option<TlsVersion>,
    pub cipher_suites: Option<Vec<SuiteName>>,
    /// SO_REUSEPORT, so another wsgate can bind the same address (upgrades, scale-out).
    #[serde(default)]
    pub reuse_port: bool,
    /// Expect a PROXY protocol header (v1 or v2) before TLS on every connection.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Who may send one (required, non-empty, with `proxy_protocol`).
    pub trusted_proxies: Option<Vec<Cidr>>,
}

fn yes() -> bool {
    true
}

/// `balance`: how a pool picks a client's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    IpHash,
    LeastConn,
    /// A cookie names the client's backend; clients without one get round robin.
    Cookie,
}

/// What a route does with requests that are not WebSocket upgrades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpMode {
    /// 426 Upgrade Required (405, 505 ...), one request per connection.
    #[default]
    Refuse,
    /// Reverse-proxied to the route's pool, with keep-alive.
    Proxy,
}

/// What happens to the live sessions of a backend a reload removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRemoved {
    /// They run on until they end by themselves.
    #[default]
    Keep,
    /// Close 1012 (service restart), spread over `removed_close_spread`.
    Close,
}

/// One `[[pool]]` of interchangeable backends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: String,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    #[serde(default = "default_upgrade_timeout")]
    pub upgrade_timeout: Dur,
    pub host_header: Option<String>,
    #[serde(default = "two")]
    pub retries: u32,
    #[serde(default = "default_upstream_deadline")]
    pub upstream_deadline: Dur,
    /// Passive checks, outlier detection (Envoy's semantics): this many failures in
    /// a row eject a backend (0: passive checks off).
    /// `None` (not written): 5, unless `max_fails`/`fail_timeout` are (config/outlier.rs).
    pub consecutive_failures: Option<u32>,
    /// The first ejection's length; the nth in a row lasts n times this (default 30 s).
    pub base_ejection_time: Option<Dur>,
    /// The longest ejection (default 300 s).
    pub max_ejection_time: Option<Dur>,
    /// The share of the pool passive checks may eject at once (at least one backend
    /// while above 0).
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u32,
    /// Below this share of pickable backends the pool balances over all of them.
    #[serde(default = "default_panic_threshold")]
    pub panic_threshold: u32,
    /// Passive checks, nginx's semantics; set (either key) they replace the three
    /// outlier keys above. `None`: not written.
    pub max_fails: Option<u32>,
    pub fail_timeout: Option<Dur>,
    #[serde(default = "zero")]
    pub slow_start: Dur,
    #[serde(default)]
    pub on_backend_removed: OnRemoved,
    #[serde(default = "default_removed_spread")]
    pub removed_close_spread: Dur,
    pub health: Option<HealthConf>,
    /// TLS to the backends (and their health checks).
    #[serde(default)]
    pub tls: bool,
    /// CA certificates backends are verified against (default: the system's roots).
    pub tls_ca: Option<PathBuf>,
    /// SNI and verified name (default: each backend's host as written).
    pub tls_server_name: Option<String>,
    /// Write a PROXY protocol header on every backend connection.
    pub send_proxy_protocol: Option<ProxyVersion>,
    /// The cookie that names a client's backend, with `balance = "cookie"`.
    pub sticky_cookie: Option<String>,
    /// Plain HTTP: the backend's response head must start within this once the
    /// request is sent, and its body may pause no longer.
    #[serde(default = "default_response_timeout")]
    pub response_timeout: Dur,
    /// Plain HTTP: idle connections kept open per backend for reuse (0 = none).
    #[serde(default = "default_keepalive")]
    pub keepalive: usize,
    /// Plain HTTP: how long an idle backend connection is kept.
    #[serde(default = "default_backend_keepalive_timeout")]
    pub keepalive_timeout: Dur,
    /// Local addresses backend connections are made from, in turn (IP literals).
    #[serde(default)]
    pub source_addresses: Vec<std::net::IpAddr>,
    #[serde(rename = "backend", default)]
    pub backends: Vec<Backend>,
}

/// `send_proxy_protocol`: "v1" (text) or "v2" (binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyVersion {
    V1,
    V2,
}

fn default_response_timeout() -> Dur {
    Dur::secs(60)
}
fn default_keepalive() -> usize {
    32
}
fn default_backend_keepalive_timeout() -> Dur {
    Dur::secs(4)
}

fn two() -> u32 {
    2
}
fn one() -> u32 {
    1
}
fn default_max_ejection_percent() -> u32 {
    10
}
fn default_panic_threshold() -> u32 {
    50
}
fn default_upstream_deadline() -> Dur {
    Dur::secs(15)
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
fn default_removed_spread() -> Dur {
    Dur::secs(30)
}

/// One `[[pool.backend]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// `ip:port` or `host:port`; host names are resolved when the file is loaded,
    /// unless `resolve` is set.
    pub address: String,
    /// Re-resolve `address` (a host name) on this interval; every address it
    /// returns is a backend of the pool (DNS service discovery).
    pub resolve: Option<Dur>,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub drain: bool,
    pub health: Option<HealthConf>,
}

/// One `[[route]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The metrics and log label (default: the pool's name, `pool#2`... when
    /// several routes use one pool).
    pub name: Option<String>,
    pub host: Option<HostMatch>,
    #[serde(default = "slash")]
    pub path_prefix: String,
    /// Also match on a request header, a cookie or a query parameter.
    pub match_header: Option<MatchSpec>,
    pub match_cookie: Option<MatchSpec>,
    pub match_query: Option<MatchSpec>,
    /// One pool, or several with weights (`pools`); exactly one of the two.
    pub pool: Option<String>,
    pub pools: Option<Vec<WeightedPool>>,
    /// With `pools`: the cookie whose value keeps a client on one pool (else its IP).
    pub split_cookie: Option<String>,
    pub allowed_origins: Option<Vec<OriginPattern>>,
    #[serde(default)]
    pub allow_missing_origin: bool,
    /// What non-upgrade requests get: 426 (`refuse`) or proxied (`proxy`).
    #[serde(default)]
    pub http: HttpMode,
    /// Largest proxied request body (0 = no limit).
    #[serde(default = "default_max_body")]
    pub max_request_body_bytes: u64,
    pub limits: Option<RouteLimits>,
    /// `[route.auth]`: a token the upgrade must carry.
    pub auth: Option<AuthFile>,
}

fn default_max_body() -> u64 {
    1 << 20
}

/// `match_header`, `match_cookie`, `match_query`: a name and `value` (exact) or
/// `prefix` (starts with).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    pub name: String,
    pub value: Option<String>,
    pub prefix: Option<String>,
}

/// One entry of a route's `pools`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedPool {
    pub pool: String,
    pub weight: u32,
}

fn slash() -> String {
    "/".into()
}
