//! The metrics read from the runtime at scrape time: admission refusals, open
//! connections, backend state and sessions, reloads, the configuration generation,
//! certificate expiry, the drain, readiness, and the process.

use crate::metrics::{Kind, Process, Samples};
use crate::runtime::Runtime;
use prometheus_client::registry::Unit;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn derived(rt: &Runtime) -> Samples {
    let mut s = Samples::default();
    let c = &rt.admission.counters;
    s.family(
        "wsgate_connections_refused",
        "Connections refused by admission control before TLS, by reason",
        Kind::Counter,
        None,
    )
    .extend([
        (
            vec![("reason", "max_connections_per_ip".to_string())],
            c.too_many_from_ip.load(Ordering::Relaxed) as f64,
        ),
        (
            vec![("reason", "connect_rate".to_string())],
            c.connect_rate.load(Ordering::Relaxed) as f64,
        ),
        (
            vec![("reason", "untrusted_proxy".to_string())],
            c.untrusted_proxy.load(Ordering::Relaxed) as f64,
        ),
        (
            vec![("reason", "proxy_header".to_string())],
            c.proxy_header.load(Ordering::Relaxed) as f64,
        ),
    ]);
    s.single(
        "wsgate_accept_errors",
        "accept(2) failures (EMFILE and the like); accepting pauses after each",
        Kind::Counter,
        None,
        c.accept_errors.load(Ordering::Relaxed) as f64,
    );
    let g = rt.current();
    let o = &rt.overload.counters;
    s.family(
        "wsgate_overload_episodes",
        "Episodes of overload protection: accepting paced by max_connect_rate, or paused above max_memory",
        Kind::Counter,
        None,
    )
    .extend([
        (
            vec![("kind", "connect_rate".to_string())],
            o.rate_episodes.load(Ordering::Relaxed) as f64,
        ),
        (
            vec![("kind", "memory".to_string())],
            o.memory_episodes.load(Ordering::Relaxed) as f64,
        ),
    ]);
    s.single(
        "wsgate_accepts_paced",
        "Accepted connections that waited for a max_connect_rate token",
        Kind::Counter,
        None,
        o.paced.load(Ordering::Relaxed) as f64,
    );
    s.single(
        "wsgate_accepting_paused",
        "1 while accepting is paused above max_memory, else 0",
        Kind::Gauge,
        None,
        if rt.overload.memory_paused() {
            1.0
        } else {
            0.0
        },
    );
    s.single(
        "wsgate_max_connections",
        "The connection limit in effect (configured, or derived from RLIMIT_NOFILE)",
        Kind::Gauge,
        None,
        g.effective.max_connections.value as f64,
    );
    s.single(
        "wsgate_connections_open",
        "Admitted client connections open (sessions included)",
        Kind::Gauge,
        None,
        rt.census.open_connections() as f64,
    );
    let mut up = Vec::new();
    let mut sessions = Vec::new();
    for pool in &g.pools {
        for b in &pool.backends {
            let l = vec![
                ("pool", pool.name.clone()),
                ("backend", b.id.address.clone()),
            ];
            up.push((l.clone(), if b.is_up() { 1.0 } else { 0.0 }));
            sessions.push((l, b.active() as f64));
        }
    }
    s.family(
        "wsgate_backend_up",
        "1 if the backend is healthy (active and passive checks), else 0",
        Kind::Gauge,
        None,
    )
    .extend(up);
    s.family(
        "wsgate_backend_sessions",
        "Live sessions on the backend (handshakes in progress included)",
        Kind::Gauge,
        None,
    )
    .extend(sessions);
    let r = &rt.reloads;
    s.family(
        "wsgate_config_reloads",
        "Configuration reloads by result",
        Kind::Counter,
        None,
    )
    .extend([
        (
            vec![("result", "success".to_string())],
            r.succeeded.load(Ordering::Relaxed) as f64,
        ),
        (
            vec![("result", "failure".to_string())],
            r.failed.load(Ordering::Relaxed) as f64,
        ),
    ]);
    s.single(
        "wsgate_config_last_reload_success_timestamp_seconds",
        "When the configuration was last loaded successfully (start or reload), Unix time",
        Kind::Gauge,
        None,
        r.last_success.load(Ordering::Relaxed) as f64,
    );
    s.single(
        "wsgate_config_generation",
        "The configuration generation in effect (1 at start, +1 per reload attempt that built one)",
        Kind::Gauge,
        None,
        g.id as f64,
    );
    s.family(
        "wsgate_tls_certificate_expiry_timestamp_seconds",
        "When each leaf certificate served on the listener expires, Unix time \
         (certificate: its place in the listener's list from 1, name: its first DNS name)",
        Kind::Gauge,
        None,
    )
    .extend(g.listeners.iter().flat_map(|l| {
        l.certs.iter().enumerate().map(|(i, c)| {
            let labels = vec![
                ("listener", l.name.to_string()),
                ("certificate", (i + 1).to_string()),
                ("name", c.names.first().cloned().unwrap_or_default()),
            ];
            (labels, unix(c.not_after))
        })
    }));
    s.single(
        "wsgate_draining_sessions",
        "Live sessions wsgate has asked to end (shutdown drain, removed backends)",
        Kind::Gauge,
        None,
        rt.draining_sessions() as f64,
    );
    s.single(
        "wsgate_ready",
        "1 while /readyz answers 200",
        Kind::Gauge,
        None,
        if rt.is_ready() { 1.0 } else { 0.0 },
    );
    let p = Process::read();
    let mut opt = |name, help, kind, unit: Option<Unit>, v: Option<f64>| {
        if let Some(v) = v {
            s.single(name, help, kind, unit, v);
        }
    };
    opt(
        "process_resident_memory_bytes",
        "Resident memory size",
        Kind::Gauge,
        None,
        p.resident_bytes.map(|v| v as f64),
    );
    opt(
        "process_open_fds",
        "Open file descriptors",
        Kind::Gauge,
        None,
        p.open_fds.map(|v| v as f64),
    );
    opt(
        "process_max_fds",
        "Limit on open file descriptors",
        Kind::Gauge,
        None,
        p.max_fds.map(|v| v as f64),
    );
    opt(
        "process_cpu_seconds",
        "User and system CPU time",
        Kind::Counter,
        None,
        p.cpu_seconds,
    );
    opt(
        "process_start_time_seconds",
        "Process start, Unix time",
        Kind::Gauge,
        None,
        p.start_time_seconds,
    );
    s
}
