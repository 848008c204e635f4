//! The swap point: a **generation** (`Generation`) is everything built from one
//! checked config, published atomically; `Runtime` is what lives as long as the
//! process. What each holds and how a reload swaps them: ARCHITECTURE.md.
//!
//! Owns: building a generation without touching anything live (`Runtime::prepare`,
//! which reads every file), publishing it (`Runtime::publish`), and the registry that
//! reconciles backends by identity across generations.
//! Does not own: sockets and accept loops (server.rs, listen.rs) or signals (main.rs).

mod build;

use build::build;
pub use build::{BuildError, check_files, check_tls};

use crate::accept::admission::{Admission, Slots};
use crate::accept::overload::{self, Overload};
use crate::backends::backend::Backend;
use crate::backends::balance::Pool;
use crate::backends::health::Checkers;
use crate::census::{Census, Ending, StopReason};
use crate::config::{BackendRemoved, Config, Limits};
use crate::conn::ConnSettings;
use crate::metrics::Metrics;
use crate::resources::{self, ConnectionLimit};
use crate::route::Router;
use crate::tls;
use arc_swap::ArcSwap;
use hyper::header::HeaderName;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;

/// Bytes of relay buffer per direction of a session.
const RELAY_BUFFER: usize = 16 * 1024;

/// One listener as a generation serves it.
#[derive(Clone)]
pub struct ListenerGen {
    pub name: Arc<str>,
    pub address: SocketAddr,
    pub reuse_port: bool,
    /// `Some(trusted_proxies)`: a PROXY protocol header comes first.
    pub proxy_protocol: Option<Arc<[crate::config::Cidr]>>,
    /// `None` for plain TCP.
    pub tls: Option<TlsAcceptor>,
    /// Every certificate served (names, expiry), in config order; empty for plain TCP.
    pub certs: Vec<tls::Served>,
    /// The header a verified client certificate's subject is forwarded in.
    pub client_subject_header: Option<HeaderName>,
}

impl ListenerGen {
    /// When each served certificate's leaf expires, in config order (for metrics).
    pub fn cert_expiry(&self) -> impl Iterator<Item = SystemTime> + '_ {
        self.certs.iter().map(|c| c.not_after)
    }
}

impl fmt::Debug for ListenerGen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerGen")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Everything built from one config.
#[derive(Debug)]
pub struct Generation {
    pub id: u64,
    pub loaded_at: SystemTime,
    pub config: Config,
    pub router: Router,
    pub pools: Vec<Arc<Pool>>,
    pub listeners: Vec<ListenerGen>,
    pub conn: ConnSettings,
    /// Every header wsgate sets from a JWT claim or a client certificate, on any
    /// route or listener: removed from every client request, so none is spoofed.
    pub identity_headers: Vec<HeaderName>,
    /// Non-fatal findings while building (e.g. a likely missing intermediate).
    pub warnings: Vec<String>,
    /// The limits this config comes to on this machine (open files, cores, cgroup).
    pub effective: Effective,
    checkers: Mutex<Option<Checkers>>,
}

/// Limits the config leaves to the machine, resolved when the generation is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effective {
    pub max_connections: ConnectionLimit,
    pub overload: overload::Settings,
}

impl Effective {
    fn resolve(cfg: &Config) -> Effective {
        let workers = tokio::runtime::Handle::try_current()
            .map(|h| h.metrics().num_workers())
            .unwrap_or(1);
        // One descriptor kept back per listener and per backend (its health probe).
        let extra = cfg.listeners.len() + cfg.pools.iter().map(|p| p.backends.len()).sum::<usize>();
        Effective {
            max_connections: resources::connection_limit(cfg.limits.max_connections, extra as u64),
            overload: overload::Settings::resolve(&cfg.limits, workers),
        }
    }
}

impl Generation {
    pub fn listener(&self, name: &str) -> Option<&ListenerGen> {
        self.listeners.iter().find(|l| &*l.name == name)
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|p| p.name == name)
    }

    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// Every (route name, backend address as written) a session of this generation
    /// can run on: the backends of each route's pools that get clients (weight
    /// above 0, or the route's only pool). The labels of `wsgate_sessions_active`.
    pub fn session_pairs(&self) -> BTreeSet<(&str, &str)> {
        let mut pairs = BTreeSet::new();
        for route in self.router.routes() {
            let only = route.targets.len() == 1;
            for t in route.targets.iter().filter(|t| only || t.weight > 0) {
                for b in &t.pool.backends {
                    pairs.insert((&*route.name, b.id.address.as_str()));
                }
            }
        }
        pairs
    }

    fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.pools.iter().flat_map(|p| p.backends.iter())
    }

    /// Stops this generation's health checks; `now` also cuts probes in flight.
    pub fn stop_checks(&self, now: bool) {
        if let Some(c) = self
            .checkers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if now {
                c.abort();
            } else {
                c.retire();
            }
        }
    }
}

/// What lives as long as the process.
pub struct Runtime {
    pub admission: Arc<Admission>,
    pub overload: Arc<Overload>,
    pub slots: Arc<Slots>,
    pub census: Census,
    pub metrics: Arc<Metrics>,
    current: ArcSwap<Generation>,
    /// Every backend still alive (in the current generation, or kept by a session),
    /// removed ones included: shutdown reaches their sessions through it.
    registry: Mutex<Vec<Weak<Backend>>>,
    next_id: AtomicU64,
    /// Every listener bound and not shutting down.
    ready: AtomicBool,
    pub reloads: ReloadStats,
    /// Each TLS listener's session-ticket keys, kept across generations.
    tickets: tls::TicketKeys,
}

/// Reload outcomes, for logs, systemd STATUS and metrics.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// Unix time of the last successful reload (or of the start).
    pub last_success: AtomicU64,
}

impl ReloadStats {
    pub fn record(&self, ok: bool) {
        if ok {
            self.succeeded.fetch_add(1, Ordering::Relaxed);
            self.last_success.store(unix_now(), Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("generation", &self.current.load().id)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// The process state and generation 1, its health checks started.
    pub fn new(cfg: &Config) -> Result<Runtime, BuildError> {
        let tickets = tls::TicketKeys::default();
        let first = build(cfg, 1, None, &tickets, |_| None)?;
        let rt = Runtime {
            admission: Arc::new(Admission::new(&cfg.limits)),
            overload: Arc::new(Overload::new(first.effective.overload)),
            slots: Slots::new(first.effective.max_connections.value),
            census: Census::default(),
            metrics: Arc::new(Metrics::new()),
            current: ArcSwap::from_pointee(first),
            registry: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(2),
            ready: AtomicBool::new(false),
            reloads: ReloadStats::default(),
            tickets,
        };
        rt.reloads.last_success.store(unix_now(), Ordering::Relaxed);
        let g = rt.current();
        rt.metrics.configure_sessions(g.id, g.session_pairs());
        rt.start(&g);
        Ok(rt)
    }

    /// The generation new connections are accepted under.
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Builds the next generation from `cfg`; nothing live changes until `publish`
    /// (which numbers it). Certificates, keys, CA bundles and JWT keys are read here,
    /// so a reload re-reads them and a bad one fails it. Backends whose identity is
    /// alive are reused (settings applied at publish), so their health, failure
    /// history, slow start and session counts carry over.
    pub fn prepare(&self, cfg: &Config) -> Result<Generation, BuildError> {
        self.prepare_with(cfg, None)
    }

    /// `prepare` for a DNS update: `cfg` differs from the current generation's only
    /// in its backends, so the listeners, pool TLS settings and JWT keys are kept
    /// (no file is read).
    pub fn prepare_keeping_files(&self, cfg: &Config) -> Result<Generation, BuildError> {
        self.prepare_with(cfg, Some(&self.current()))
    }

    fn prepare_with(
        &self,
        cfg: &Config,
        keep: Option<&Generation>,
    ) -> Result<Generation, BuildError> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        build(cfg, 0, keep, &self.tickets, |bid| {
            registry
                .iter()
                .filter_map(Weak::upgrade)
                .find(|b| b.id == *bid && !b.is_removed())
        })
    }

    /// Makes `next` the current generation and retires the previous one, whose
    /// connections and sessions carry on with what they took. Backends take their new
    /// settings, admission and overload their new limits, the new generation's health
    /// checks start and the old one's stop, backends the config dropped are
    /// signalled, and metrics learn the route × backend pairs that keep a
    /// live-session series. Returns the previous.
    pub fn publish(&self, mut next: Generation) -> Arc<Generation> {
        next.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let next = Arc::new(next);
        for pool in &next.pools {
            for (b, conf) in pool.backends.iter().zip(&pool.conf.backends) {
                b.apply(&pool.conf, conf);
            }
        }
        self.admission.configure(next.limits());
        self.overload.configure(next.effective.overload);
        self.slots.resize(next.effective.max_connections.value);
        let old = self.current.swap(next.clone());
        self.metrics
            .configure_sessions(next.id, next.session_pairs());
        if old.effective != next.effective {
            tracing::info!(
                "{}; {}",
                next.effective.max_connections,
                next.effective.overload
            );
        }
        for pool in &next.pools {
            pool.drop_idle_opened_before(old.pool(&pool.name).map(|p| &**p));
        }
        old.stop_checks(false);
        self.start(&next);
        log_added(&old, &next);
        self.remove_dropped(&old, &next);
        tracing::info!(
            "configuration generation {} in effect ({} listeners, {} routes, {} pools)",
            next.id,
            next.listeners.len(),
            next.router.routes().len(),
            next.pools.len()
        );
        old
    }

    /// Starts the health checks of `g` and records its backends.
    fn start(&self, g: &Generation) {
        *g.checkers.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Checkers::spawn(&g.pools, &self.metrics));
        let mut reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|w| w.strong_count() > 0);
        for b in g.backends() {
            if !reg.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(b))) {
                reg.push(Arc::downgrade(b));
            }
        }
    }

    /// Backends of `old` that `next` no longer has (each logged, with its live
    /// sessions: the status page lists it as `removed` until they end): their sessions follow the
    /// `on_backend_removed` policy (of the pool in `next`, or in `old` if it is gone).
    fn remove_dropped(&self, old: &Generation, next: &Generation) {
        for pool in &old.pools {
            let policy = next
                .pool(&pool.name)
                .map_or(pool.conf.on_backend_removed, |p| p.conf.on_backend_removed);
            for b in &pool.backends {
                if next.backends().any(|n| Arc::ptr_eq(n, b)) {
                    continue;
                }
                tracing::info!(pool = %pool.name, backend = %b.addr, sessions = b.active(), "backend removed");
                b.mark_removed();
                if let BackendRemoved::Close { spread } = policy {
                    b.end_sessions(Ending::now(StopReason::BackendRemoved, spread));
                }
            }
        }
    }

    /// Shutdown: every live and future session closes with 1001, each at a random
    /// moment within `spread` (sessions of a backend a reload already removed keep
    /// the moment they drew); idle keep-alive connections close at once, busy ones
    /// after their response.
    pub fn drain(&self, spread: Duration) {
        self.set_ready(false);
        self.census.close_idle();
        let ending = Ending::now(StopReason::Shutdown, spread);
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        for b in reg.iter().filter_map(Weak::upgrade) {
            b.end_sessions(ending);
        }
    }

    /// Closes every backend's idle keep-alive connections that are past their pool's
    /// `keepalive_timeout` (removed backends have none left).
    pub fn sweep_idle(&self) {
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        for b in reg.iter().filter_map(Weak::upgrade) {
            b.idle.sweep();
        }
    }

    /// Every backend still alive: the current generation's, and removed ones that
    /// sessions still hold.
    pub fn live_backends(&self) -> Vec<Arc<Backend>> {
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        reg.iter().filter_map(Weak::upgrade).collect()
    }

    /// Live sessions wsgate has asked to end (shutdown drain, removed backends).
    pub fn draining_sessions(&self) -> usize {
        self.live_backends()
            .iter()
            .filter(|b| b.is_ending())
            .map(|b| b.active())
            .sum()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Every listener bound, and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Logs each backend of `next` that `old` did not have (the mirror of `remove_dropped`'s line).
fn log_added(old: &Generation, next: &Generation) {
    for pool in &next.pools {
        for b in &pool.backends {
            if !old.backends().any(|o| Arc::ptr_eq(o, b)) {
                tracing::info!(pool = %pool.name, backend = %b.addr, "backend added");
            }
        }
    }
}

impl Generation {
    /// The drain settings of this config.
    pub fn drain_spread(&self) -> Duration {
        self.config.server.drain_spread.get()
    }

    pub fn shutdown_timeout(&self) -> Duration {
        self.config.server.shutdown_timeout.get()
    }
}
