//! Scrape-time families of the current generation's backends: health, passive
//! ejection and live sessions, per pool and backend; each pool's panic mode; and
//! wsgate's own scheduling delay (lag.rs). Does not own: connect times, failures and
//! checks (event metrics, metrics/) or the per-route live sessions (metrics/).

use crate::metrics::{Kind, Samples};
use crate::runtime::Generation;

/// Each backend's health and live sessions.
pub(super) fn state(s: &mut Samples, g: &Generation) {
    let mut up = Vec::new();
    let mut sessions = Vec::new();
    let mut ejected = Vec::new();
    let mut panic = Vec::new();
    for pool in &g.pools {
        let l = vec![("pool", pool.name.clone())];
        panic.push((l, if pool.panicking() { 1.0 } else { 0.0 }));
        for b in &pool.backends {
            let l = vec![
                ("pool", pool.name.clone()),
                ("backend", b.id.address.clone()),
            ];
            up.push((l.clone(), if b.is_up() { 1.0 } else { 0.0 }));
            ejected.push((l.clone(), if b.is_ejected() { 1.0 } else { 0.0 }));
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
    s.family(
        "wsgate_backend_ejected",
        "1 if passive checks hold the backend ejected, else 0",
        Kind::Gauge,
        None,
    )
    .extend(ejected);
    s.family(
        "wsgate_pool_panic",
        "1 if the pool balances over all its backends, too few being pickable (panic_threshold)",
        Kind::Gauge,
        None,
    )
    .extend(panic);
    s.family(
        "wsgate_scheduler_lag_seconds",
        "wsgate's own scheduling delay, the largest of the last 1-2 s (timeouts above 0.1 s do not count against backends)",
        Kind::Gauge,
        None,
    )
    .extend([(Vec::new(), crate::lag::recent().as_secs_f64())]);
}
