//! What the operating system gives this process: open files and memory.
//!
//! Owns: raising the soft open-file limit to the hard one at start, the
//! `max_connections` derived from it (two descriptors per session, plus a
//! reserve), reading the resident set size, and the memory limit of the cgroup the
//! process runs in (cgroup v2 `memory.max`, as systemd's `MemoryMax=` and
//! Kubernetes limits set it). Linux only; elsewhere each reading says "unknown".
//! Does not own: acting on any of it (admission.rs, overload.rs).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept back from sessions: stdio, the runtime's own (epoll, eventfd,
/// timers), the notify socket, logs and the admin listener.
const BASE_RESERVE: u64 = 32;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as nginx's
/// `worker_rlimit_nofile` and Go's runtime do) and returns the soft limit now (the
/// old one if the kernel refused).
pub fn raise_nofile() -> u64 {
    // `None` is the kernel's RLIM_INFINITY.
    let lim = getrlimit(Resource::Nofile);
    let (soft, hard) = (
        lim.current.unwrap_or(u64::MAX),
        lim.maximum.unwrap_or(u64::MAX),
    );
    if soft < hard {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return hard;
        }
    }
    soft
}

/// The soft `RLIMIT_NOFILE` (`None` from the kernel means unlimited).
pub fn nofile() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// How `max_connections` was arrived at, for the start-up log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimit {
    pub value: usize,
    /// `Some((nofile, reserve))` when derived from the open-file limit.
    pub derived: Option<(u64, u64)>,
}

impl std::fmt::Display for ConnectionLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.derived {
            None => write!(f, "max_connections = {} (configured)", self.value),
            Some((nofile, reserve)) => write!(
                f,
                "max_connections = {} (from the open-file limit {nofile}: 2 per session, {reserve} kept back)",
                self.value
            ),
        }
    }
}

/// `configured`, or what the open-file limit allows: each session holds a client
/// and a backend descriptor; `extra` more are kept back (one per health-checked
/// backend and per listener), so accepting pauses before the process would hit EMFILE.
pub fn connection_limit(configured: Option<usize>, extra: u64) -> ConnectionLimit {
    if let Some(value) = configured {
        return ConnectionLimit {
            value,
            derived: None,
        };
    }
    let nofile = nofile();
    let reserve = BASE_RESERVE + extra;
    let value = (nofile.saturating_sub(reserve) / 2).clamp(1, 1 << 30) as usize;
    ConnectionLimit {
        value,
        derived: Some((nofile, reserve)),
    }
}

/// The resident set size, in bytes.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// The size of a memory page, in bytes.
pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// The memory limit of this process's cgroup (v2), if one is set.
pub fn cgroup_memory_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let file = format!("/sys/fs/cgroup{}/memory.max", path.trim_end_matches('/'));
    let max = std::fs::read_to_string(file).ok()?;
    max.trim().parse().ok() // "max" (no limit) does not parse
}

/// Open file descriptors of this process.
pub fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_limit_leaves_room_for_two_descriptors_per_session() {
        let l = connection_limit(None, 8);
        let (nofile, reserve) = l.derived.unwrap();
        assert_eq!(reserve, BASE_RESERVE + 8);
        assert!(l.value as u64 * 2 + reserve <= nofile);
        assert_eq!(connection_limit(Some(5), 8).value, 5);
        assert!(rss_bytes().unwrap() > 0);
        assert!(open_fds().unwrap() >= 3);
    }
}
