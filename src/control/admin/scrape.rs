//! The metrics read from the runtime at scrape time, one module per subject, in the
//! order they are exposed: connections (admission refusals, overload, open
//! connections), backends (state and sessions), the configuration (reloads,
//! generation), certificates (expiry), the lifecycle (drain, readiness), and the
//! process.
//!
//! Owns: the order of those families in `/metrics` (`derived`). Does not own: the
//! event counters and histograms, the live sessions' families (metrics/), or what
//! each subject's values are (runtime, admission, overload, backends).

mod backends;
mod certificates;
mod config;
mod connections;
mod process;

use crate::metrics::{Kind, Samples};
use crate::runtime::Runtime;
use std::time::SystemTime;

pub(super) fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Every family built from the runtime for one scrape.
pub(super) fn derived(rt: &Runtime) -> Samples {
    let mut s = Samples::default();
    let g = rt.current();
    connections::admission(&mut s, rt);
    connections::overload(&mut s, rt);
    connections::open(&mut s, rt, &g);
    backends::state(&mut s, &g);
    config::reloads(&mut s, rt, &g);
    certificates::expiry(&mut s, &g);
    lifecycle(&mut s, rt);
    process::figures(&mut s);
    s
}

/// The drain and readiness.
fn lifecycle(s: &mut Samples, rt: &Runtime) {
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
}
