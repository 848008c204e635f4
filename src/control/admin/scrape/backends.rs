//! Scrape-time families of the current generation's backends: health and live
//! sessions, per pool and backend. Does not own: connect times, failures and
//! checks (event metrics, metrics/) or the per-route live sessions (metrics/).

use crate::metrics::{Kind, Samples};
use crate::runtime::Generation;

/// Each backend's health and live sessions.
pub(super) fn state(s: &mut Samples, g: &Generation) {
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
}
