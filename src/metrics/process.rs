//! The process figures Prometheus' client libraries conventionally export, read from
//! /proc/self: resident memory, open file descriptors, CPU time.

/// One reading; `None` where /proc could not be read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Process {
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

impl Process {
    pub(crate) fn read() -> Process {
        let page = crate::resources::page_size();
        let tck = rustix::param::clock_ticks_per_second();
        let statm = std::fs::read_to_string("/proc/self/statm").ok();
        let resident_bytes = statm
            .as_deref()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|pages| pages * page);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        // Fields after the command name (which may hold spaces) in parentheses.
        let fields: Vec<&str> = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let num = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        let tck = tck.max(1) as f64;
        // utime and stime are fields 14 and 15 of stat(5); starttime is 22.
        let cpu_seconds = match (num(11), num(12)) {
            (Some(u), Some(s)) => Some((u + s) / tck),
            _ => None,
        };
        let start_time_seconds = num(19).and_then(|ticks| Some(boot_time()? + ticks / tck));
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("Max open files"))?;
                line.split_whitespace().nth(3)?.parse().ok()
            });
        Process {
            resident_bytes,
            open_fds,
            cpu_seconds,
            max_fds,
            start_time_seconds,
        }
    }
}

fn boot_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let p = super::Process::read();
        assert!(p.resident_bytes.unwrap() > 1 << 20);
        assert!(p.open_fds.unwrap() >= 3);
        assert!(p.cpu_seconds.unwrap() >= 0.0);
        assert!(p.max_fds.unwrap() > 0);
        assert!(p.start_time_seconds.unwrap() > 1.6e9);
    }
}
