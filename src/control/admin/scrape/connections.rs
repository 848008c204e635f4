//! Scrape-time families of client connections: admission refusals and accept
//! errors, overload protection, the connection limit and the connections open.
//! Does not own: the admitted-connection and handshake counters (metrics/).

use crate::metrics::{Kind, Samples};
use crate::runtime::{Generation, Runtime};
use std::sync::atomic::Ordering;

/// Connections refused before TLS, by reason, and accept(2) failures.
pub(super) fn admission(s: &mut Samples, rt: &Runtime) {
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
}

/// Overload protection: its episodes, the paced accepts, the memory pause.
pub(super) fn overload(s: &mut Samples, rt: &Runtime) {
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
}

/// The connection limit in effect and the connections open.
pub(super) fn open(s: &mut Samples, rt: &Runtime, g: &Generation) {
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
}
