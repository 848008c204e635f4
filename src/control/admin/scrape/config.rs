//! Scrape-time families of the configuration: reloads by result, the last
//! successful load, the generation in effect. Does not own: certificate expiry
//! (certificates.rs) or what a reload does (runtime, control/server.rs).

use crate::metrics::{Kind, Samples};
use crate::runtime::{Generation, Runtime};
use std::sync::atomic::Ordering;

/// Reloads, the last success, and the generation.
pub(super) fn reloads(s: &mut Samples, rt: &Runtime, g: &Generation) {
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
}
