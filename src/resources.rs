//! What the operating system gives this process: open files and memory.
//!
//! Owns: raising the soft open-file limit to the hard one at start, the
//! `max_connections` derived from it (two descriptors per session, plus a
//! reserve), reading the resident set size, and the memory limit of the cgroup the
//! process runs in (cgroup v2 `memory.max`, as systemd's `MemoryMax=` and
//! Kubernetes limits set it). Linux only; elsewhere each reading says "unknown".
//! Does not own: acting on any of it (admission.rs, overload.rs).

use std::io;

/// Descriptors kept back from sessions: stdio, the runtime's own (epoll, eventfd,
/// timers), the notify socket, logs and the admin listener.
const BASE_RESERVE: u64 = 32;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as nginx's
/// `worker_rlimit_nofile` and Go's runtime do) and returns the soft limit now.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    Ok(lim.rlim_cur)
}

/// The soft `RLIMIT_NOFILE`.
pub fn nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur
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
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok().filter(|p| *p > 0)?)
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
