//! The `rate` mode (open loop): a pacer thread schedules message k at start + k/rate
//! on connection k mod conns; each connection sends what is due and times every echo
//! from its scheduled send time, so stalls are counted, not hidden.
//! Owns: `run_rate`, the pacer (`pace`, `fine_timer_slack`) and the per-connection
//! loop (`rate_conn`).
//! Does not own: connecting (client.rs) or the /proc readings (procstat.rs).

use crate::Error;
use crate::args::Args;
use crate::client::{Client, Ws, close, open_many};
use crate::procstat::snap;
use crate::report::{cpu_ms_per_mb, percentile, report_errors};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_tungstenite::tungstenite::Message;

/// Lowers this thread's timer slack to 1 ns so that its sleeps end within a few
/// microseconds of their deadline (the default slack is 50 us).
fn fine_timer_slack() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes the calling thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// The pacer (its own thread): message k is due at `t0 + k / rate` and is handed, with
/// its due time, to connection `k mod conns`. Returns how late each hand-over was, us.
fn pace(t0: Instant, rate: f64, total: u64, conns: Vec<UnboundedSender<Instant>>) -> Vec<u64> {
    fine_timer_slack();
    let due = |k: u64| t0 + Duration::from_secs_f64(k as f64 / rate);
    let mut lag = Vec::with_capacity(total as usize);
    let mut k = 0u64;
    while k < total {
        let now = Instant::now();
        let next = due(k);
        if next > now {
            std::thread::sleep(next - now);
            continue;
        }
        while k < total && due(k) <= now {
            lag.push(now.saturating_duration_since(due(k)).as_micros() as u64);
            // A connection that failed has dropped its receiver: its messages are lost
            // and its task reports the error.
            let _ = conns[(k % conns.len() as u64) as usize].send(due(k));
            k += 1;
        }
    }
    lag
}

/// One connection of the open-loop run: sends a message whenever the pacer says (all
/// that are due, then one flush), and times each echo from its *scheduled* send time.
async fn rate_conn(
    ws: Ws,
    mut due_rx: UnboundedReceiver<Instant>,
    expected: u64,
    size: usize,
) -> Result<(Ws, Vec<u64>), Error> {
    let (mut tx, mut rx) = ws.split();
    let sent_at: Arc<Mutex<VecDeque<Instant>>> = Arc::new(Mutex::new(VecDeque::new()));
    let payload: tokio_tungstenite::tungstenite::Bytes = vec![0xa5u8; size].into();
    let sender = {
        let sent_at = sent_at.clone();
        async move {
            while let Some(due) = due_rx.recv().await {
                sent_at.lock().unwrap().push_back(due);
                tx.feed(Message::Binary(payload.clone())).await?;
                while let Ok(due) = due_rx.try_recv() {
                    sent_at.lock().unwrap().push_back(due);
                    tx.feed(Message::Binary(payload.clone())).await?;
                }
                tx.flush().await?;
            }
            Ok::<_, Error>(tx)
        }
    };
    let receiver = async {
        let mut lat = Vec::with_capacity(expected as usize);
        while (lat.len() as u64) < expected {
            match rx.next().await {
                Some(Ok(Message::Binary(b))) if b.len() == size => {
                    let due = sent_at
                        .lock()
                        .unwrap()
                        .pop_front()
                        .ok_or("echo of a message never sent")?;
                    lat.push(due.elapsed().as_micros() as u64);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(m)) => return Err::<_, Error>(format!("unexpected message: {m:?}").into()),
                Some(Err(e)) => return Err(e.into()),
                None => return Err("connection ended early".into()),
            }
        }
        Ok(lat)
    };
    let (tx, lat) = tokio::try_join!(sender, receiver)?;
    let ws = tx.reunite(rx).map_err(|_| "reunite")?;
    Ok((ws, lat))
}

pub(crate) async fn run_rate(a: &Args, client: Arc<Client>) -> Result<bool, Error> {
    let (conns, errs) = open_many(&client, a.conns, a.concurrency, None).await;
    report_errors(&errs);
    let opened = conns.len();
    if opened == 0 {
        return Err("no connection opened".into());
    }
    let total = (a.rate * a.duration).round() as u64;
    let mut set = tokio::task::JoinSet::new();
    let mut senders = Vec::with_capacity(opened);
    for (i, ws) in conns.into_iter().enumerate() {
        let (due_tx, due_rx) = unbounded_channel();
        senders.push(due_tx);
        let n = opened as u64;
        let expected = total / n + u64::from((i as u64) < total % n);
        let size = a.size;
        set.spawn(async move {
            let (ws, lat) = rate_conn(ws, due_rx, expected, size).await?;
            close(ws).await;
            Ok::<_, Error>(lat)
        });
    }
    let s0 = snap(a);
    // Start a little ahead so that every connection task is waiting on its channel.
    let t0 = Instant::now() + Duration::from_millis(20);
    let rate = a.rate;
    let pacer = tokio::task::spawn_blocking(move || pace(t0, rate, total, senders));
    let mut lat = Vec::with_capacity(total as usize);
    let mut fails = Vec::new();
    let mut last_echo = t0;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(l)) => {
                last_echo = last_echo.max(Instant::now());
                lat.extend(l)
            }
            Ok(Err(e)) => fails.push(e.to_string()),
            Err(e) => fails.push(e.to_string()),
        }
    }
    let wall = last_echo
        .saturating_duration_since(t0)
        .as_secs_f64()
        .max(1e-9);
    let s1 = snap(a);
    let (proxy_cpu, client_cpu, foreign) = s0.delta(s1);
    let (sys, cs) = s0.kernel(s1);
    let (wait, runs) = s0.run_queue(s1);
    let mut lag = pacer.await.map_err(|e| format!("pacer: {e}"))?;
    report_errors(&fails);
    lat.sort_unstable();
    lag.sort_unstable();
    let msgs = lat.len() as u64;
    let (p50, p99, p999) = (
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&lat, 99.9),
    );
    println!(
        "rate: {opened}/{} connections, {msgs}/{total} round trips of {} B at {:.0} msgs/s scheduled \
         ({:.0} achieved) over {:.1} s; latency from scheduled send p50 {p50} us, p99 {p99} us, \
         p99.9 {p999} us, max {} us; pacer lag p99 {} us; proxy CPU {proxy_cpu:.2} s \
         ({:.2} us/msg); client CPU {client_cpu:.2} s; other load {:.2} cores",
        a.conns,
        a.size,
        a.rate,
        msgs as f64 / wall,
        a.duration,
        lat.last().copied().unwrap_or(0),
        percentile(&lag, 99.0),
        proxy_cpu * 1e6 / msgs.max(1) as f64,
        foreign / wall,
    );
    let errors = errs.len() + fails.len() + usize::from(msgs != total);
    println!(
        "RESULT mode=rate conns={opened} errors={errors} msgs={msgs} scheduled={total} size={} \
         rate={} wall_s={wall:.4} msgs_per_s={:.1} p50_us={p50} p99_us={p99} p999_us={p999} \
         max_us={} lag_p99_us={} proxy_cpu_s={proxy_cpu:.3} cpu_us_per_msg={:.3} \
         cpu_ms_per_mb={:.4} client_cpu_s={client_cpu:.3} foreign_cores={:.3} \
         sys_us_per_msg={:.3} ctxsw_per_msg={:.3} runq_us_per_msg={:.3} runq_us_per_run={:.3}",
        a.size,
        a.rate,
        msgs as f64 / wall,
        lat.last().copied().unwrap_or(0),
        percentile(&lag, 99.0),
        proxy_cpu * 1e6 / msgs.max(1) as f64,
        cpu_ms_per_mb(proxy_cpu, msgs, a.size),
        foreign / wall,
        sys * 1e6 / msgs.max(1) as f64,
        cs / msgs.max(1) as f64,
        wait * 1e6 / msgs.max(1) as f64,
        wait * 1e6 / runs.max(1.0),
    );
    Ok(errors == 0)
}
