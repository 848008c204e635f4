//! Scrape-time families of the process: memory, file descriptors, CPU time, start
//! time; a figure the platform does not give is left out. Does not own: reading
//! them (metrics/process.rs).

use crate::metrics::{Kind, Process, Samples};
use prometheus_client::registry::Unit;

/// The process figures that could be read.
pub(super) fn figures(s: &mut Samples) {
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
}
