//! The `handshake` mode: new connections at a bounded concurrency, each timed from
//! TCP connect to the end of the upgrade, then closed; with `--resume`, a priming
//! phase first and a count of the resumed handshakes.
//! Owns: `run_handshake`.
//! Does not own: connecting or the TLS configuration (client.rs), or the /proc
//! readings (procstat.rs).

use crate::Error;
use crate::args::Args;
use crate::client::{Client, close, open_many};
use crate::procstat::snap;
use crate::report::{percentile, report_errors};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::Semaphore;

pub(crate) async fn run_handshake(a: &Args, client: Arc<Client>) -> Result<bool, Error> {
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let resumed = Arc::new(AtomicU64::new(0));
    if a.resume {
        // Prime the ticket store: one full handshake per concurrent slot, not measured.
        let (_conns, errs) = open_many(&client, a.concurrency, a.concurrency, None).await;
        report_errors(&errs);
    }
    let s0 = snap(a);
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..a.count {
        let (client, sem, resumed) = (client.clone(), sem.clone(), resumed.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            let t = Instant::now();
            let (ws, was_resumed) = client.connect_kind().await?;
            let us = t.elapsed().as_micros() as u64;
            close(ws).await;
            if was_resumed {
                resumed.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, Error>(us)
        });
    }
    let (mut lat, mut errs) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(us)) => lat.push(us),
            Ok(Err(e)) => errs.push(e.to_string()),
            Err(e) => errs.push(e.to_string()),
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let s1 = snap(a);
    let (cpu, client_cpu, foreign) = s0.delta(s1);
    let (sys, cs) = s0.kernel(s1);
    report_errors(&errs);
    lat.sort_unstable();
    let n = lat.len();
    println!(
        "handshake: {n}/{} connections (TCP+TLS+upgrade, then close), {} at a time, in {wall:.3} s: \
         {:.0} conns/s; setup p50 {} us, p99 {} us; proxy CPU {cpu:.2} s ({:.1} us/conn); \
         client CPU {client_cpu:.2} s; other load {:.2} cores; {} resumed",
        a.count,
        a.concurrency,
        n as f64 / wall,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        cpu * 1e6 / n.max(1) as f64,
        foreign / wall,
        resumed.load(Ordering::Relaxed),
    );
    println!(
        "RESULT mode=handshake conns={n} errors={} wall_s={wall:.4} conns_per_s={:.1} p50_us={} \
         p99_us={} proxy_cpu_s={cpu:.3} cpu_us_per_conn={:.2} client_cpu_s={client_cpu:.3} \
         foreign_cores={:.3} resumed={} sys_us_per_conn={:.2} ctxsw_per_conn={:.3}",
        errs.len(),
        n as f64 / wall,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        cpu * 1e6 / n.max(1) as f64,
        foreign / wall,
        resumed.load(Ordering::Relaxed),
        sys * 1e6 / n.max(1) as f64,
        cs / n.max(1) as f64,
    );
    Ok(errs.is_empty())
}
