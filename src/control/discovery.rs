//! DNS service discovery: the backends a `resolve` entry's name currently resolves to.
//!
//! Owns: the DNS client (hickory, no cache: each lookup asks the server; the servers
//! of /etc/resolv.conf or `[server] resolver`), the last good address set of every
//! `resolve` backend and its lookup schedule, the task that re-resolves each entry on
//! its interval and publishes a generation when a set changed, and the publish lock
//! (`Discovery::lock`). How a DNS update becomes a generation: ARCHITECTURE.md.
//! Does not own: building and publishing generations (runtime/), reload (server.rs).

use crate::config::{Config, Discover, Pool};
use crate::metrics::{DnsLabels, Metrics};
use crate::runtime::Runtime;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard, watch};
use tokio::time::Instant;

/// A `resolve` entry: its pool's name and its address as written.
pub type Key = (String, String);

/// How long one query may take, and how often it is tried.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPTS: usize = 2;

/// The address sets found, by entry.
#[derive(Debug, Clone, Default)]
pub struct Found {
    sets: HashMap<Key, Vec<SocketAddr>>,
}

impl Found {
    /// `cfg` with every entry's set.
    pub fn expand(&self, cfg: &Config) -> Config {
        cfg.with_discovered(|p, d| self.sets.get(&key(p, d)).map_or(&[][..], |v| v.as_slice()))
    }
}

fn key(p: &Pool, d: &Discover) -> Key {
    (p.name.clone(), d.address.clone())
}

/// The outcome of one lookup.
#[derive(Debug)]
enum Resolved {
    Addrs(Vec<SocketAddr>),
    Empty,
    Failed(DnsError),
}

/// Why a lookup failed (an empty answer is not a failure). Cloned to every lookup
/// of a round when the client itself cannot be set up.
#[derive(Debug, Clone)]
pub enum DnsError {
    /// No `[server] resolver`, and /etc/resolv.conf cannot be used.
    SystemSettings(NetError),
    /// The resolver cannot be built from its settings.
    Setup(NetError),
    /// The query failed: timeout, SERVFAIL, refused...
    Lookup { host: String, source: NetError },
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsError::SystemSettings(_) => f.write_str("cannot read the system's DNS settings"),
            DnsError::Setup(_) => f.write_str("cannot set up the DNS client"),
            DnsError::Lookup { host, .. } => write!(f, "no answer for {host}"),
        }
    }
}

impl std::error::Error for DnsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DnsError::SystemSettings(e)
            | DnsError::Setup(e)
            | DnsError::Lookup { source: e, .. } => Some(e),
        }
    }
}

/// Discovery state; its lock is the publish lock: a reload and a DNS update each
/// hold it from building their generation to publishing it, so neither is lost or
/// overtaken by the other. A reload re-resolves every entry itself
/// (`Locked::lookup_all`) and then becomes the base the DNS updates build on
/// (`Locked::commit`).
#[derive(Debug)]
pub struct Discovery {
    state: Mutex<State>,
    /// Wakes the task when a reload changed the schedule.
    changed: watch::Sender<()>,
}

#[derive(Debug)]
struct State {
    /// The config as loaded (no discovered backends).
    base: Config,
    found: Found,
    /// Entries whose last lookup failed (logged once per episode).
    failing: BTreeSet<Key>,
    next: HashMap<Key, Instant>,
    client: DnsClient,
}

/// The DNS client for one `[server] resolver` setting.
struct DnsClient {
    server: Option<SocketAddr>,
    resolver: Option<TokioResolver>,
}

impl std::fmt::Debug for DnsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsClient")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl DnsClient {
    fn new(server: Option<SocketAddr>) -> DnsClient {
        DnsClient {
            server,
            resolver: None,
        }
    }

    /// The resolver, built on first use (so a config without `resolve` never reads
    /// /etc/resolv.conf).
    fn get(&mut self) -> Result<TokioResolver, DnsError> {
        if let Some(r) = &self.resolver {
            return Ok(r.clone());
        }
        let provider = TokioRuntimeProvider::default();
        let mut builder = match self.server {
            Some(addr) => {
                let conn = |mut c: ConnectionConfig| {
                    c.port = addr.port();
                    c
                };
                let ns = NameServerConfig::new(
                    addr.ip(),
                    true,
                    vec![conn(ConnectionConfig::udp()), conn(ConnectionConfig::tcp())],
                );
                Resolver::builder_with_config(ResolverConfig::from_name_servers(vec![ns]), provider)
            }
            None => Resolver::builder(provider).map_err(DnsError::SystemSettings)?,
        };
        let o = builder.options_mut();
        o.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        o.cache_size = 0;
        o.positive_max_ttl = Some(Duration::ZERO);
        o.negative_max_ttl = Some(Duration::ZERO);
        o.timeout = QUERY_TIMEOUT;
        o.attempts = ATTEMPTS;
        let r = builder.build().map_err(DnsError::Setup)?;
        self.resolver = Some(r.clone());
        Ok(r)
    }
}

/// Looks `d` up once.
async fn lookup(resolver: Result<TokioResolver, DnsError>, d: Discover) -> Resolved {
    let r = match resolver {
        Ok(r) => r,
        Err(e) => return Resolved::Failed(e),
    };
    match r.lookup_ip(d.host.as_str()).await {
        Ok(found) => {
            let mut addrs: Vec<SocketAddr> =
                found.iter().map(|ip| SocketAddr::new(ip, d.port)).collect();
            addrs.sort();
            addrs.dedup();
            if addrs.is_empty() {
                Resolved::Empty
            } else {
                Resolved::Addrs(addrs)
            }
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Resolved::Empty,
        Err(source) => Resolved::Failed(DnsError::Lookup {
            host: d.host.clone(),
            source,
        }),
    }
}

impl Discovery {
    /// Nothing found yet: `server::start` looks every entry up before it serves.
    pub fn new(base: Config) -> Discovery {
        let client = DnsClient::new(base.server.resolver);
        let mut st = State {
            base,
            found: Found::default(),
            failing: BTreeSet::new(),
            next: HashMap::new(),
            client,
        };
        st.schedule();
        Discovery {
            state: Mutex::new(st),
            changed: watch::channel(()).0,
        }
    }

    /// Takes the publish lock.
    pub async fn lock(&self) -> Locked<'_> {
        Locked {
            st: self.state.lock().await,
            changed: &self.changed,
        }
    }

    /// The addresses each entry resolves to now, by (pool, address as written).
    pub async fn sets(&self) -> Vec<(Key, Vec<SocketAddr>)> {
        let st = self.state.lock().await;
        let mut v: Vec<_> = st
            .found
            .sets
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        v.sort();
        v
    }
}

/// The publish lock, held.
pub struct Locked<'a> {
    st: MutexGuard<'a, State>,
    changed: &'a watch::Sender<()>,
}

impl Locked<'_> {
    /// A reload: looks up every entry of `cfg` (with `cfg`'s resolver); an entry that
    /// fails keeps the set it had, if it existed before.
    pub async fn lookup_all(&mut self, cfg: &Config, metrics: &Metrics) -> Found {
        if cfg.server.resolver != self.st.client.server {
            self.st.client = DnsClient::new(cfg.server.resolver);
        }
        let st = &mut *self.st;
        lookup_all(cfg, &mut st.client, &st.found, &mut st.failing, metrics).await
    }

    /// The reload that looked up `found` published: `cfg` is the new base.
    pub fn commit(mut self, cfg: &Config, found: Found) {
        self.st.base = cfg.clone();
        self.st.found = found;
        let keys: Vec<Key> = entries(cfg).map(|(p, d)| key(p, d)).collect();
        self.st.failing.retain(|k| keys.contains(k));
        self.st.schedule();
        self.changed.send_replace(());
    }
}

fn entries(cfg: &Config) -> impl Iterator<Item = (&Pool, &Discover)> {
    cfg.pools
        .iter()
        .flat_map(|p| p.discover.iter().map(move |d| (p, d)))
}

/// Looks up every entry of `cfg` concurrently; failures keep `last`'s set.
async fn lookup_all(
    cfg: &Config,
    client: &mut DnsClient,
    last: &Found,
    failing: &mut BTreeSet<Key>,
    metrics: &Metrics,
) -> Found {
    let jobs: Vec<(Key, Discover)> = entries(cfg).map(|(p, d)| (key(p, d), d.clone())).collect();
    if jobs.is_empty() {
        return Found::default();
    }
    let resolver = client.get();
    let answers = futures_util::future::join_all(
        jobs.iter()
            .map(|(_, d)| lookup(resolver.clone(), d.clone())),
    )
    .await;
    let mut found = Found::default();
    for ((k, _), a) in jobs.into_iter().zip(answers) {
        let set = settle(&k, a, last.sets.get(&k), failing, metrics);
        found.sets.insert(k, set);
    }
    found
}

/// The set an entry has after answer `a`: the answer, or the last good set. A
/// failed lookup (timeout, SERVFAIL, refused) and an empty answer (NXDOMAIN, no
/// A/AAAA record) both keep the last good set: DNS never empties a pool, health
/// checks take dead backends out. Logs the start (a warning) and end of a failure
/// episode, and counts the lookup in
/// `wsgate_dns_lookups_total{pool, backend, result = ok | empty | failed}`.
fn settle(
    k: &Key,
    a: Resolved,
    last: Option<&Vec<SocketAddr>>,
    failing: &mut BTreeSet<Key>,
    metrics: &Metrics,
) -> Vec<SocketAddr> {
    let (pool, name) = (&k.0, &k.1);
    let result = match &a {
        Resolved::Addrs(_) => "ok",
        Resolved::Empty => "empty",
        Resolved::Failed(_) => "failed",
    };
    metrics
        .dns_lookups
        .get_or_create(&DnsLabels {
            pool: pool.clone(),
            backend: name.clone(),
            result: result.into(),
        })
        .inc();
    let kept = last.cloned().unwrap_or_default();
    match a {
        Resolved::Addrs(addrs) => {
            if failing.remove(k) {
                tracing::info!(pool = %pool, backend = %name, "DNS lookup succeeds again: {} address(es)", addrs.len());
            }
            addrs
        }
        Resolved::Empty | Resolved::Failed(_) => {
            if failing.insert(k.clone()) {
                let why = match a {
                    Resolved::Failed(e) => format!("failed ({})", crate::errors::ErrorChain(&e)),
                    _ => "returned no address".to_string(),
                };
                tracing::warn!(pool = %pool, backend = %name, "DNS lookup {why}; keeping the last {} address(es) (logged once until it succeeds again)", kept.len());
            }
            kept
        }
    }
}

impl State {
    /// Every entry of the base is next due one interval from now.
    fn schedule(&mut self) {
        let now = Instant::now();
        self.next = entries(&self.base)
            .map(|(p, d)| (key(p, d), now + d.every))
            .collect();
    }
}

/// Re-resolves each entry on its interval and publishes a generation when a set
/// changed, until `stop`.
pub async fn run(rt: Arc<Runtime>, dns: Arc<Discovery>, mut stop: watch::Receiver<bool>) {
    let mut changed = dns.changed.subscribe();
    loop {
        let due = dns.state.lock().await.next.values().min().copied();
        tokio::select! {
            _ = async {
                match due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = changed.changed() => continue,
            _ = stop.wait_for(|s| *s) => return,
        }
        update(&rt, &dns).await;
    }
}

/// One round: looks up the entries due (without the lock, so a reload is not held
/// up by a slow DNS server), then, under the lock, applies the answers unless a
/// reload came in between, and publishes if a set changed. The generation is the
/// base config with the sets found (`Config::with_discovered`), so backends are
/// reconciled by identity as on a reload; it keeps the running generation's TLS
/// settings (a DNS update reads no file).
async fn update(rt: &Runtime, dns: &Discovery) {
    let now = Instant::now();
    let (jobs, resolver, server) = {
        let mut st = dns.state.lock().await;
        let jobs: Vec<(Key, Discover)> = entries(&st.base)
            .filter(|(p, d)| st.next.get(&key(p, d)).is_some_and(|t| *t <= now))
            .map(|(p, d)| (key(p, d), d.clone()))
            .collect();
        for (k, d) in &jobs {
            st.next.insert(k.clone(), now + d.every);
        }
        if jobs.is_empty() {
            return;
        }
        (jobs, st.client.get(), st.client.server)
    };
    let answers = futures_util::future::join_all(
        jobs.iter()
            .map(|(_, d)| lookup(resolver.clone(), d.clone())),
    )
    .await;
    let mut st = dns.state.lock().await;
    let st = &mut *st;
    let mut changed = Vec::new();
    for ((k, d), a) in jobs.into_iter().zip(answers) {
        // A reload in between looked everything up itself, maybe elsewhere.
        let current = entries(&st.base).any(|(p, e)| key(p, e) == k && *e == d);
        if !current || st.client.server != server {
            continue;
        }
        let set = settle(&k, a, st.found.sets.get(&k), &mut st.failing, &rt.metrics);
        if st.found.sets.get(&k) != Some(&set) {
            tracing::info!(pool = %k.0, backend = %k.1, "DNS: now {} address(es): {}", set.len(), list(&set));
            changed.push(k.clone());
            st.found.sets.insert(k, set);
        }
    }
    if changed.is_empty() {
        return;
    }
    match rt.prepare_keeping_files(&st.found.expand(&st.base)) {
        Ok(next) => {
            rt.publish(next);
        }
        Err(e) => tracing::warn!("DNS update not applied: {}", crate::errors::ErrorChain(&e)),
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
