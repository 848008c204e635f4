//! Readings of /proc: the CPU time (user and kernel), context switches and run-queue
//! waits of the proxy's processes, wsbench's own CPU, the backend's, the whole
//! machine's, and the proxy's RSS; `Snap` takes them all at once and subtracts.
//! Owns: `Snap`, `snap`, `pids_rss_kib` and the /proc parsing behind them.
//! Does not own: when the snapshots are taken or how the figures are reported (the
//! mode modules).

use crate::args::Args;

/// Busy CPU seconds of the whole machine (all cores), from /proc/stat.
fn machine_busy(clk_tck: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return f64::NAN;
    };
    let Some(line) = stat.lines().next() else {
        return f64::NAN;
    };
    // cpu user nice system idle iowait irq softirq steal ...
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() < 8 {
        return f64::NAN;
    }
    (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / clk_tck
}

/// CPU snapshot: the proxy, wsbench itself, the other known processes (the backend),
/// and the whole machine; the rest is "foreign" load that only adds noise.
#[derive(Clone, Copy)]
pub(crate) struct Snap {
    proxy: f64,
    /// The proxy's stime alone (kernel work done for it), seconds.
    proxy_sys: f64,
    /// The proxy's context switches (voluntary + involuntary, its live threads).
    proxy_cs: f64,
    /// Time the proxy's live threads spent runnable but waiting for a CPU, seconds,
    /// and how many times they were put on one (/proc/PID/task/*/schedstat).
    proxy_wait: f64,
    proxy_runs: f64,
    client: f64,
    also: f64,
    machine: f64,
}

pub(crate) fn snap(a: &Args) -> Snap {
    Snap {
        proxy: pids_cpu(a),
        proxy_sys: sum_pids(a, |p| stat_field(p, 12).map(|t| t / a.clk_tck)),
        proxy_cs: sum_pids(a, context_switches),
        proxy_wait: sum_pids(a, |p| sched_stat(p, 1).map(|ns| ns / 1e9)),
        proxy_runs: sum_pids(a, |p| sched_stat(p, 2)),
        client: self_cpu(a.clk_tck),
        also: a
            .also_pids
            .iter()
            .map(|&p| cpu_seconds(p, a.clk_tck).unwrap_or(0.0))
            .sum(),
        machine: machine_busy(a.clk_tck),
    }
}

impl Snap {
    /// (proxy kernel CPU seconds, proxy context switches) between two snapshots.
    pub(crate) fn kernel(self, later: Snap) -> (f64, f64) {
        (
            later.proxy_sys - self.proxy_sys,
            later.proxy_cs - self.proxy_cs,
        )
    }

    /// (seconds the proxy's threads waited for a CPU, times they were run) between
    /// two snapshots: how much of a latency tail is the machine's scheduler.
    pub(crate) fn run_queue(self, later: Snap) -> (f64, f64) {
        (
            later.proxy_wait - self.proxy_wait,
            later.proxy_runs - self.proxy_runs,
        )
    }

    /// (proxy, client, foreign) CPU seconds between two snapshots.
    pub(crate) fn delta(self, later: Snap) -> (f64, f64, f64) {
        let proxy = later.proxy - self.proxy;
        let client = later.client - self.client;
        let also = later.also - self.also;
        let proxy_known = if proxy.is_nan() { 0.0 } else { proxy };
        let foreign = (later.machine - self.machine) - proxy_known - client - also;
        (proxy, client, foreign.max(0.0))
    }
}

/// Field `i` (0 = state, 11 = utime, 12 = stime) of /proc/PID/stat, counting from
/// after the command name (which may hold spaces). utime and stime cover all the
/// process's threads, live and exited.
fn stat_field(pid: u32, i: usize) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(i)?.parse().ok()
}

/// utime+stime of a process (all its threads, live and exited), in seconds.
fn cpu_seconds(pid: u32, clk_tck: f64) -> Option<f64> {
    Some((stat_field(pid, 11)? + stat_field(pid, 12)?) / clk_tck)
}

/// `figure` of each live thread's /proc/PID/task/TID/`file`, summed over the threads.
fn sum_threads(pid: u32, file: &str, figure: impl Fn(&str) -> Option<f64>) -> Option<f64> {
    let mut n = 0.0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        n += figure(&std::fs::read_to_string(t.ok()?.path().join(file)).ok()?)?;
    }
    Some(n)
}

/// Context switches (voluntary + involuntary) of a process's live threads.
fn context_switches(pid: u32) -> Option<f64> {
    sum_threads(pid, "status", |status| {
        let mut n = 0.0;
        for l in status.lines() {
            if l.starts_with("voluntary_ctxt_switches:")
                || l.starts_with("nonvoluntary_ctxt_switches:")
            {
                n += l.split_whitespace().nth(1)?.parse::<f64>().ok()?;
            }
        }
        Some(n)
    })
}

/// Field `i` of /proc/PID/task/*/schedstat summed over a process's live threads:
/// 0 = ns on a CPU, 1 = ns runnable and waiting for one, 2 = times run.
fn sched_stat(pid: u32, i: usize) -> Option<f64> {
    sum_threads(pid, "schedstat", |stat| {
        stat.split_whitespace().nth(i)?.parse().ok()
    })
}

/// A per-process figure summed over the watched processes (NaN without --pids or if
/// one is gone).
fn sum_pids(a: &Args, f: impl Fn(u32) -> Option<f64>) -> f64 {
    if a.pids.is_empty() {
        return f64::NAN;
    }
    a.pids.iter().map(|&p| f(p).unwrap_or(f64::NAN)).sum()
}

fn self_cpu(clk_tck: f64) -> f64 {
    cpu_seconds(std::process::id(), clk_tck).unwrap_or(f64::NAN)
}

/// Summed CPU seconds of the watched processes (NaN without --pids or if one is gone).
fn pids_cpu(a: &Args) -> f64 {
    sum_pids(a, |p| cpu_seconds(p, a.clk_tck))
}

/// Summed VmRSS of the watched processes, KiB.
pub(crate) fn pids_rss_kib(a: &Args) -> f64 {
    if a.pids.is_empty() {
        return f64::NAN;
    }
    a.pids
        .iter()
        .map(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|v| v.parse::<f64>().ok())
                })
                .unwrap_or(f64::NAN)
        })
        .sum()
}
