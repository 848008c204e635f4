//! Starting and stopping a proxy from a validated `Config`.
//!
//! Owns: turning the config into runtime objects (TLS acceptors, router, pools),
//! binding every listener before serving any (so a bad address fails the start),
//! and the handle a caller (main, the demo, tests) uses to stop it.

use crate::admission::Admission;
use crate::config::{Config, SessionLimits};
use crate::listen::{self, ConnSettings};
use crate::proxy::Shared;
use crate::relay::RelayConfig;
use crate::route::Router;
use crate::session::Sessions;
use crate::tls::{self, TlsError};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

#[derive(Debug)]
pub enum StartError {
    Tls(TlsError),
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Tls(e) => write!(f, "{e}"),
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Loads every listener's certificate and key; returns the warnings.
/// This is what `wsgate check` runs besides parsing the config.
pub fn check_tls(cfg: &Config) -> Result<Vec<String>, StartError> {
    let mut warnings = Vec::new();
    for l in cfg.listeners.iter().filter(|l| l.tls) {
        let loaded = tls::load_listener(l, |p| cfg.resolve_path(p)).map_err(StartError::Tls)?;
        warnings.extend(loaded.warnings);
    }
    Ok(warnings)
}

/// A running proxy.
pub struct Running {
    addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Running {
    /// The bound addresses, in listener order (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn live_sessions(&self) -> usize {
        self.shared.sessions.live()
    }

    /// Admitted client connections still open (sessions included).
    pub fn open_connections(&self) -> usize {
        self.shared.admission.open()
    }

    /// A pool by name: its backends' health, drain flags and session counts.
    pub fn pool(&self, name: &str) -> Option<&crate::balance::Pool> {
        self.shared.pools.iter().find(|p| p.name == name)
    }

    /// Admission control state, for tests and metrics.
    pub fn admission(&self) -> &Admission {
        &self.shared.admission
    }

    /// Stops accepting; live sessions are left to finish on their own.
    pub async fn stop_accepting(&mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    /// Asks every live session to close: Close 1001 "server shutting down" to the
    /// client and the backend; each close handshake is bounded by `close_timeout`.
    pub fn close_sessions(&self) {
        self.shared.sessions.close_all();
    }

    /// Resolves when no session is live.
    pub async fn wait_sessions_done(&self) {
        self.shared.sessions.wait_idle().await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Drops rate-limit state of IPs whose buckets have refilled, once a second, so a
/// flood of distinct addresses cannot grow memory without bound.
async fn prune_admission(admission: Arc<Admission>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => admission.prune(),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Binds every listener and starts serving.
pub async fn start(cfg: &Config) -> Result<Running, StartError> {
    let shared = Arc::new(Shared {
        router: Router::new(cfg),
        pools: cfg
            .pools
            .iter()
            .map(crate::balance::Pool::from_config)
            .collect(),
        route_relay: cfg
            .routes
            .iter()
            .map(|r| RelayConfig {
                buffer: 16 * 1024,
                close_timeout: cfg.server.close_timeout.get(),
                extensions: Default::default(), // per session, from the backend's 101
                limits: SessionLimits::resolve(&cfg.limits, r.limits.as_ref()),
            })
            .collect(),
        sessions: Sessions::default(),
        admission: Arc::new(Admission::new(&cfg.limits)),
        slots: Arc::new(Semaphore::new(cfg.limits.max_connections)),
        conn: ConnSettings {
            tls_handshake_timeout: cfg.server.tls_handshake_timeout.get(),
            header_read_timeout: cfg.server.header_read_timeout.get(),
            max_header_bytes: cfg.server.max_header_bytes,
        },
    });
    let mut bound = Vec::new();
    for l in &cfg.listeners {
        let acceptor = if l.tls {
            let loaded = tls::load_listener(l, |p| cfg.resolve_path(p)).map_err(StartError::Tls)?;
            Some(TlsAcceptor::from(loaded.config))
        } else {
            None
        };
        let listener = listen::bind(l.address).map_err(|source| StartError::Bind {
            addr: l.address,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: l.address,
            source,
        })?;
        bound.push((listener, acceptor, addr));
    }
    let (stop, stop_rx) = watch::channel(false);
    let mut addrs = Vec::new();
    let mut tasks = crate::health::spawn(&shared.pools, &stop_rx);
    tasks.push(tokio::spawn(prune_admission(
        shared.admission.clone(),
        stop_rx.clone(),
    )));
    for (listener, acceptor, addr) in bound {
        tracing::info!(
            "listening on {addr} ({})",
            if acceptor.is_some() {
                "TLS"
            } else {
                "plain TCP"
            }
        );
        addrs.push(addr);
        tasks.push(tokio::spawn(listen::accept_loop(
            listener,
            acceptor,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    Ok(Running {
        addrs,
        stop,
        tasks,
        shared,
    })
}
