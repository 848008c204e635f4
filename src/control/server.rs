//! Starting, reloading and stopping a proxy from a validated `Config`.
//!
//! Owns: the listening sockets and their accept loops (bound before a generation
//! that needs them is published, so a bad address fails the start or the reload
//! and nothing changes), socket activation's inherited sockets, the once-a-second
//! housekeeping task (admission state, idle backend connections), the reload sequence (build, bind, publish, stop removed listeners), the
//! shutdown sequence (not ready, stop accepting, drain spread over `drain_spread`,
//! exit by `shutdown_timeout`), and the handle (`Running`) a caller uses for all of
//! it. Does not own: what a generation is (runtime/) or signals (main.rs).

use crate::accept::admission::Admission;
use crate::accept::listen;
use crate::census::FORCED_CLOSE;
use crate::config::{Config, KeyPath, Problem};
use crate::control::activation::{self, ActivationError, Inherited};
use crate::control::admin::Admin;
use crate::control::admin::reload::{Outcome, ReloadLog};
use crate::control::discovery::{self, Discovery};
use crate::runtime::{BuildError, Generation, Runtime};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why a config could not be started or reloaded. Each names file, line and key.
/// `Display` says what failed; `source()` gives the cause beneath (print with
/// `errors::ErrorChain` to show it).
#[derive(Debug)]
pub enum ServeError {
    /// A certificate or key cannot be served.
    Build(BuildError),
    /// A listener's address cannot be bound.
    Bind {
        problem: Box<Problem>,
        source: std::io::Error,
    },
    /// `LISTEN_FDS` is unusable.
    Activation(ActivationError),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Build(e) => write!(f, "{e}"),
            ServeError::Bind { problem, .. } => write!(f, "{problem}"),
            ServeError::Activation(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Shown as they are: their causes come next.
            ServeError::Build(e) => e.source(),
            ServeError::Bind { source, .. } => Some(source),
            ServeError::Activation(e) => e.source(),
        }
    }
}

/// Why a reload left the running generation in place.
#[derive(Debug)]
pub enum ReloadError {
    /// The file could not be read or is not valid.
    Config(crate::config::ConfigError),
    /// It is valid but cannot be served.
    Serve(ServeError),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // One log line, however many problems.
            ReloadError::Config(e) => f.write_str(&e.one_line()),
            ReloadError::Serve(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Shown as they are: their causes come next.
            ReloadError::Config(e) => e.source(),
            ReloadError::Serve(e) => e.source(),
        }
    }
}

impl From<BuildError> for ServeError {
    fn from(e: BuildError) -> Self {
        ServeError::Build(e)
    }
}

/// One listening socket and its accept loop.
#[derive(Debug)]
struct Bound {
    name: Arc<str>,
    /// As configured (port 0 stays 0 here) and as bound.
    configured: SocketAddr,
    local: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What a successful reload changed.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub generation: u64,
    pub listeners_added: Vec<SocketAddr>,
    pub listeners_removed: Vec<SocketAddr>,
    pub warnings: Vec<String>,
}

/// A running proxy.
pub struct Running {
    rt: Arc<Runtime>,
    /// DNS discovery; its lock is the publish lock, held by a reload and by a DNS
    /// update from building their generation to publishing it.
    dns: Arc<Discovery>,
    bound: Vec<Bound>,
    inherited: Vec<Inherited>,
    prune: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// The admin listener (`None`: turned off, or the default address was taken).
    admin: Option<Admin>,
    /// Each reload attempt and its outcome (the admin listener's `/reload`).
    reloads: Arc<ReloadLog>,
}

/// Binds the admin listener `cfg` asks for. `Ok(None)` when it is off, or when the
/// implicit default address cannot be bound (a warning: a second instance during a
/// binary upgrade, say); an explicit `[admin] address` that cannot be bound is an error.
fn bind_admin(cfg: &Config) -> Result<Option<(SocketAddr, TcpListener)>, ServeError> {
    let Some(addr) = cfg.admin.address else {
        return Ok(None);
    };
    match Admin::bind(addr) {
        Ok(l) => Ok(Some((addr, l))),
        Err(source) if cfg.admin.explicit => Err(ServeError::Bind {
            problem: Box::new(cfg.problem(
                &KeyPath::root("admin").key("address"),
                &format!("cannot listen on {addr}"),
            )),
            source,
        }),
        Err(e) => {
            tracing::warn!(
                "admin interface not started: cannot listen on {addr} (the default; set [admin] address): {e}"
            );
            Ok(None)
        }
    }
}

/// A socket for listener `l`: an inherited one if systemd passed it, else our own.
fn open_listener(
    cfg: &Config,
    index: usize,
    inherited: &mut Vec<Inherited>,
) -> Result<TcpListener, ServeError> {
    let l = &cfg.listeners[index];
    let bind_err = |source: std::io::Error| ServeError::Bind {
        problem: Box::new(cfg.problem(
            &KeyPath::root("listener").index(index).key("address"),
            &format!("cannot listen on {}", l.address),
        )),
        source,
    };
    match activation::claim(inherited, &l.name, l.address) {
        Some(s) => {
            tracing::info!(listener = %l.name, "using the socket systemd passed for {}", s.addr);
            TcpListener::from_std(s.listener).map_err(bind_err)
        }
        None => listen::bind(l.address, l.reuse_port).map_err(bind_err),
    }
}

impl Running {
    fn spawn_loop(&mut self, name: Arc<str>, configured: SocketAddr, listener: TcpListener) {
        let local = listener.local_addr().unwrap_or(configured);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(listen::accept_loop(
            listener,
            name.clone(),
            self.rt.clone(),
            rx,
        ));
        self.bound.push(Bound {
            name,
            configured,
            local,
            stop,
            task,
        });
    }

    /// The bound addresses, in the current config's listener order (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let g = self.rt.current();
        g.listeners
            .iter()
            .filter_map(|l| self.local_addr(&l.name))
            .collect()
    }

    /// The bound address of the listener called `name`.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|b| &*b.name == name)
            .map(|b| b.local)
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    pub fn generation(&self) -> Arc<Generation> {
        self.rt.current()
    }

    pub fn live_sessions(&self) -> usize {
        self.rt.census.live()
    }

    /// Admitted client connections still open (sessions included).
    pub fn open_connections(&self) -> usize {
        self.rt.census.open_connections()
    }

    /// A pool of the current generation by name: its backends' health, drain flags
    /// and session counts.
    pub fn pool(&self, name: &str) -> Option<Arc<crate::backends::balance::Pool>> {
        self.rt.current().pool(name).cloned()
    }

    /// The admin listener's bound address, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local)
    }

    fn serve_admin(&mut self, bound: Option<(SocketAddr, TcpListener)>) {
        if let Some((addr, l)) = bound {
            let a = Admin::serve(addr, l, self.rt.clone(), self.reloads.clone());
            tracing::info!(
                "admin interface on http://{}/ (metrics at /metrics)",
                a.local
            );
            self.admin = Some(a);
        }
    }

    /// Admission control state, for tests and metrics.
    pub fn admission(&self) -> &Admission {
        &self.rt.admission
    }

    /// Replaces the running config with `cfg`: certificates and keys are loaded and
    /// new listeners bound first; if anything fails, nothing changes. Established
    /// sessions are untouched (unless their backend was removed from a pool with
    /// `on_backend_removed = "close"`).
    pub async fn reload(&mut self, cfg: &Config) -> Result<Reloaded, ServeError> {
        // The publish lock: no DNS update comes between this build and its publish.
        let rt = self.rt.clone();
        let mut lock = self.dns.lock().await;
        let found = lock.lookup_all(cfg, &rt.metrics).await;
        let next = self.rt.prepare(&found.expand(cfg))?;
        let keep = |b: &Bound| {
            cfg.listeners
                .iter()
                .any(|l| *l.name == *b.name && l.address == b.configured)
        };
        let mut fresh = Vec::new();
        for (i, l) in cfg.listeners.iter().enumerate() {
            if self
                .bound
                .iter()
                .any(|b| *b.name == *l.name && b.configured == l.address)
            {
                continue;
            }
            // On error the sockets bound so far are dropped: nothing changed.
            fresh.push((i, open_listener(cfg, i, &mut self.inherited)?));
        }
        let running_admin = self.admin.as_ref().map(|a| a.configured);
        let admin_moves = running_admin != cfg.admin.address;
        let admin = if admin_moves && cfg.admin.address.is_some() {
            bind_admin(cfg)?
        } else {
            None
        };
        let warnings = next.warnings.clone();
        self.rt.publish(next);
        lock.commit(cfg, found);
        let generation = self.rt.current().id;
        if admin_moves {
            if let Some(old) = self.admin.take() {
                tracing::info!("admin interface no longer on {}", old.local);
                old.stop().await;
            }
            self.serve_admin(admin);
        }
        let mut listeners_added = Vec::new();
        for (i, listener) in fresh {
            let l = &cfg.listeners[i];
            self.spawn_loop(l.name.as_str().into(), l.address, listener);
            if let Some(b) = self.bound.last() {
                tracing::info!(listener = %l.name, "listening on {}", b.local);
                listeners_added.push(b.local);
            }
        }
        let (kept, gone): (Vec<Bound>, Vec<Bound>) =
            std::mem::take(&mut self.bound).into_iter().partition(keep);
        self.bound = kept;
        let mut listeners_removed = Vec::new();
        for b in gone {
            tracing::info!(listener = %b.name, "no longer listening on {} (its sessions continue)", b.local);
            let _ = b.stop.send(true);
            let _ = b.task.await;
            listeners_removed.push(b.local);
        }
        Ok(Reloaded {
            generation,
            listeners_added,
            listeners_removed,
            warnings,
        })
    }

    /// Re-reads `path` (config, certificates, keys) and reloads it; the outcome is
    /// counted and recorded as the next reload attempt (`reload_log`). On failure
    /// the running generation stays in place, untouched.
    pub async fn reload_file(
        &mut self,
        path: &std::path::Path,
    ) -> Result<(Reloaded, Config), ReloadError> {
        // Begun before the file is read: see admin/reload.rs.
        let seq = self.reloads.begin();
        let result = match Config::load(path) {
            Err(e) => Err(ReloadError::Config(e)),
            Ok(cfg) => match self.reload(&cfg).await {
                Ok(r) => Ok((r, cfg)),
                Err(e) => Err(ReloadError::Serve(e)),
            },
        };
        self.rt.reloads.record(result.is_ok());
        let outcome = match &result {
            Ok((r, _)) => Outcome::Loaded {
                generation: r.generation,
                warnings: r.warnings.clone(),
            },
            Err(e) => Outcome::Refused {
                serving: self.rt.current().id,
                reason: crate::errors::ErrorChain(e).to_string(),
            },
        };
        self.reloads.finish(seq, outcome);
        result
    }

    /// The reload attempts of this process and how each ended.
    pub fn reload_log(&self) -> &Arc<ReloadLog> {
        &self.reloads
    }

    /// Stops accepting on every listener (readiness first: not ready) and stops
    /// the health checks; live sessions are left to finish on their own.
    pub async fn stop_accepting(&mut self) {
        self.rt.set_ready(false);
        for b in &self.bound {
            let _ = b.stop.send(true);
        }
        for b in self.bound.drain(..) {
            let _ = b.task.await;
        }
        self.rt.current().stop_checks(true);
        if let Some((stop, task)) = self.prune.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }

    /// Asks every live session to close: Close 1001 "server shutting down" to the
    /// client and the backend, each at a random moment within `spread`; each close
    /// handshake is then bounded by `close_timeout`.
    pub fn close_sessions(&self, spread: Duration) {
        self.rt.drain(spread);
    }

    /// Resolves when no session is live.
    pub async fn wait_sessions_done(&self) {
        self.rt.census.wait_sessions_done().await
    }

    /// The whole shutdown: not ready (and, for `shutdown_grace`, still accepting),
    /// stop accepting, drain over the config's `drain_spread`, and wait until every
    /// connection is closed or `shutdown_timeout` has passed (then the stop is
    /// forced: `shutdown_until`). Returns the connections that did not close by
    /// themselves in time. The admin listener answers throughout.
    pub async fn shutdown(self) -> usize {
        let s = self.shutdown_until(std::future::pending()).await;
        s.forced + s.cut + s.unfinished
    }

    /// `shutdown`, forced early when `force` resolves (a second signal, say). A
    /// forced stop asks every live session to end at once (Close 1001 both ways),
    /// gives their closes `census::FORCED_CLOSE` and their tasks a moment more to
    /// write their access lines, and cuts every other connection.
    pub async fn shutdown_until(mut self, force: impl Future<Output = ()>) -> Stopped {
        let g = self.rt.current();
        self.rt.set_ready(false);
        let mut force = std::pin::pin!(force);
        let grace = g.config.server.shutdown_grace.get();
        let mut why = None;
        if !grace.is_zero() {
            tracing::info!("not ready; still accepting for shutdown_grace ({grace:?})");
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = force.as_mut() => why = Some(StopCause::Signal),
            }
        }
        self.stop_accepting().await;
        self.close_sessions(g.drain_spread());
        if why.is_none() {
            let limit = g.shutdown_timeout();
            let census = &self.rt.census;
            // A session's connection closes just before it stops counting as live.
            let done = async { tokio::join!(census.wait_idle(), census.wait_sessions_done()) };
            why = tokio::select! {
                r = tokio::time::timeout(limit, done) => match r {
                    Ok(_) => None,
                    Err(_) => Some(StopCause::Timeout(limit)),
                },
                () = force.as_mut() => Some(StopCause::Signal),
            };
        }
        match why {
            None => self.stopped(StopCause::Drained),
            Some(why) => self.force_stop(why).await,
        }
    }

    /// The forced stop (see `shutdown_until`).
    async fn force_stop(&self, why: StopCause) -> Stopped {
        let census = &self.rt.census;
        let live = census.live();
        tracing::warn!(
            "{why}: forcing the stop: Close 1001 to {live} live sessions (at most {FORCED_CLOSE:?} each), cutting {} other connections",
            census.open_connections().saturating_sub(live)
        );
        census.force();
        let wait = FORCED_CLOSE + Duration::from_secs(1);
        let _ = tokio::time::timeout(wait, census.wait_sessions_done()).await;
        self.stopped(why)
    }

    fn stopped(&self, why: StopCause) -> Stopped {
        let census = &self.rt.census;
        let stops = census.stops();
        let unfinished = census.live();
        Stopped {
            why,
            drained: stops.drained,
            forced: stops.forced,
            cut: census.open_connections().saturating_sub(unfinished),
            unfinished,
        }
    }
}

/// Why a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// Every connection closed within `shutdown_timeout`.
    Drained,
    /// `shutdown_timeout` (this long) passed first.
    Timeout(Duration),
    /// A second SIGTERM or SIGINT came first.
    Signal,
}

impl fmt::Display for StopCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopCause::Drained => f.write_str("drain complete"),
            StopCause::Timeout(d) => write!(f, "shutdown_timeout ({d:?}) passed"),
            StopCause::Signal => f.write_str("second signal"),
        }
    }
}

/// How a shutdown ended: its `Display` is the process's last log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub why: StopCause,
    /// Sessions that ended in the drain.
    pub drained: usize,
    /// Sessions closed by the forced stop.
    pub forced: usize,
    /// Other connections (handshakes, plain HTTP) still open at the end: cut.
    pub cut: usize,
    /// Sessions whose task had not finished by the end (their access line is lost).
    pub unfinished: usize,
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stopped ({}): {} sessions drained, {} sessions forced, {} connections cut",
            self.why, self.drained, self.forced, self.cut
        )?;
        if self.unfinished > 0 {
            write!(f, ", {} sessions still open", self.unfinished)?;
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for b in &self.bound {
            let _ = b.stop.send(true);
        }
        if let Some((stop, _)) = &self.prune {
            let _ = stop.send(true);
        }
        self.rt.current().stop_checks(true);
    }
}

/// Once a second: drops rate-limit state of IPs whose buckets have refilled, so a
/// flood of distinct addresses cannot grow memory without bound, and closes idle
/// backend connections past their pool's `keepalive_timeout`.
async fn prune_admission(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                rt.admission.prune();
                rt.sweep_idle();
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Before serving: looks up every `resolve` backend and, if any, publishes the
/// generation with what was found (nothing is accepted under generation 1 then).
async fn discover_first(rt: &Runtime, dns: &Discovery, cfg: &Config) -> Result<(), ServeError> {
    let mut lock = dns.lock().await;
    let found = lock.lookup_all(cfg, &rt.metrics).await;
    if cfg.pools.iter().any(|p| !p.discover.is_empty()) {
        let next = rt.prepare_keeping_files(&found.expand(cfg))?;
        rt.publish(next);
    }
    lock.commit(cfg, found);
    Ok(())
}

/// Warns about each pool whose backend address cannot take `max_connections`
/// connections from the ephemeral port range (backends/connect.rs `port_shortfall`).
fn warn_port_shortfall(g: &crate::runtime::Generation) {
    let Some(range) = crate::backends::socket::local_port_range() else {
        return;
    };
    for p in &g.pools {
        let addrs = p.backends.iter().map(|b| b.addr);
        let max = g.effective.max_connections.value;
        let sources = &p.conf.source_addresses;
        if let Some(w) =
            crate::backends::socket::port_shortfall(&p.name, addrs, sources, max, range)
        {
            tracing::warn!("{w}");
        }
    }
}

/// Builds generation 1, binds every listener (or takes systemd's sockets), and
/// starts serving. Readiness is reported once every listener is bound.
pub async fn start(cfg: &Config) -> Result<Running, ServeError> {
    let rt = Arc::new(Runtime::new(cfg)?);
    let dns = Arc::new(Discovery::new(cfg.clone()));
    discover_first(&rt, &dns, cfg).await?;
    let mut inherited = activation::take().map_err(ServeError::Activation)?;
    let mut sockets = Vec::new();
    for i in 0..cfg.listeners.len() {
        sockets.push(open_listener(cfg, i, &mut inherited)?);
    }
    for w in &rt.current().warnings {
        tracing::warn!("{w}");
    }
    for s in &inherited {
        tracing::warn!(
            "systemd passed a socket for {} ({}) that no [[listener]] uses",
            s.addr,
            s.name
        );
    }
    let g = rt.current();
    tracing::info!("{}; {}", g.effective.max_connections, g.effective.overload);
    warn_port_shortfall(&g);
    let admin = bind_admin(cfg)?;
    let (stop, rx) = watch::channel(false);
    tokio::spawn(rt.overload.clone().watch_memory(rx.clone()));
    tokio::spawn(discovery::run(rt.clone(), dns.clone(), rx.clone()));
    let prune = tokio::spawn(prune_admission(rt.clone(), rx));
    let mut running = Running {
        rt,
        dns,
        bound: Vec::new(),
        inherited,
        prune: Some((stop, prune)),
        admin: None,
        reloads: Arc::new(ReloadLog::default()),
    };
    running.serve_admin(admin);
    for (l, socket) in cfg.listeners.iter().zip(sockets) {
        running.spawn_loop(l.name.as_str().into(), l.address, socket);
        if let Some(b) = running.bound.last() {
            let kind = if l.tls.is_some() { "TLS" } else { "plain TCP" };
            tracing::info!(listener = %l.name, "listening on {} ({kind})", b.local);
        }
    }
    running.rt.set_ready(true);
    Ok(running)
}
