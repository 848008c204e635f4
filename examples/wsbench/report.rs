//! Figures shared by the modes' result lines: percentiles, proxy CPU per MB, and the
//! summary of failed connections on stderr.
//! Owns: `percentile`, `cpu_ms_per_mb`, `report_errors`.
//! Does not own: the result lines themselves (each mode prints its own).

pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Proxy CPU milliseconds per MB (1e6 bytes) of payload carried each way.
pub(crate) fn cpu_ms_per_mb(proxy_cpu_s: f64, msgs: u64, size: usize) -> f64 {
    let mb = msgs as f64 * size as f64 / 1e6;
    if mb > 0.0 {
        proxy_cpu_s * 1e3 / mb
    } else {
        f64::NAN
    }
}

pub(crate) fn report_errors(errs: &[String]) {
    if !errs.is_empty() {
        let mut uniq: Vec<&String> = errs.iter().collect();
        uniq.sort();
        uniq.dedup();
        eprintln!(
            "wsbench: {} connection(s) failed; distinct errors:",
            errs.len()
        );
        for e in uniq.iter().take(5) {
            eprintln!("  {e}");
        }
    }
}
