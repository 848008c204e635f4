//! The `idle` mode: open sessions (one echo round trip each), hold them, close them,
//! reading the proxy's RSS before, while and after.
//! Owns: `run_idle`.
//! Does not own: connecting (client.rs) or the /proc readings (procstat.rs).

use crate::Error;
use crate::args::Args;
use crate::client::{Client, close, open_many};
use crate::procstat::pids_rss_kib;
use crate::report::report_errors;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) async fn run_idle(a: &Args, client: Arc<Client>) -> Result<bool, Error> {
    let rss0 = pids_rss_kib(a);
    let t0 = Instant::now();
    let (conns, errs) = open_many(&client, a.conns, a.concurrency, Some(16)).await;
    let open_s = t0.elapsed().as_secs_f64();
    report_errors(&errs);
    let n = conns.len();
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let rss1 = pids_rss_kib(a);
    let per = (rss1 - rss0) / n.max(1) as f64;
    // Close them all (bounded concurrency is not needed: closing is cheap).
    let mut set = tokio::task::JoinSet::new();
    for ws in conns {
        set.spawn(close(ws));
    }
    while set.join_next().await.is_some() {}
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss2 = pids_rss_kib(a);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rss5 = pids_rss_kib(a);
    println!(
        "idle: {n}/{} sessions open in {open_s:.2} s; proxy RSS {rss0:.0} KiB before, \
         {rss1:.0} KiB holding them ({per:.2} KiB/session), {rss2:.0} KiB 1 s and {rss5:.0} KiB \
         5 s after closing",
        a.conns
    );
    println!(
        "RESULT mode=idle conns={n} errors={} open_s={open_s:.3} rss_before_kib={rss0:.0} \
         rss_held_kib={rss1:.0} rss_after_close_kib={rss2:.0} rss_after_5s_kib={rss5:.0} \
         kib_per_session={per:.3}",
        errs.len()
    );
    Ok(errs.is_empty())
}
