//! The `echo` mode: all connections open first, then each sends its messages keeping
//! at most `--window` unanswered, timing every round trip; then the close handshakes.
//! Owns: `run_echo` and the per-connection loop (`echo_conn`).
//! Does not own: connecting (client.rs) or the /proc readings (procstat.rs).

use crate::Error;
use crate::args::Args;
use crate::client::{Client, Ws, close, open_many, text_payload};
use crate::procstat::snap;
use crate::report::{cpu_ms_per_mb, percentile, report_errors};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

/// One connection's echo loop: a sender keeping `window` messages in flight and a
/// receiver timing each echo (echoes come back in order).
async fn echo_conn(
    ws: Ws,
    messages: u64,
    size: usize,
    window: usize,
    text: bool,
) -> Result<(Ws, Vec<u64>), Error> {
    let (mut tx, mut rx) = ws.split();
    let sent_at: Arc<Mutex<VecDeque<Instant>>> = Arc::new(Mutex::new(VecDeque::new()));
    let credits = Arc::new(Semaphore::new(window));
    let message = if text {
        Message::Text(text_payload(size).into())
    } else {
        Message::Binary(vec![0xa5u8; size].into())
    };
    let sender = {
        let (sent_at, credits) = (sent_at.clone(), credits.clone());
        async move {
            let mut sent = 0u64;
            while sent < messages {
                credits.acquire().await?.forget();
                let mut batch = 1u64;
                // Take whatever else the window allows right now, then flush once.
                while sent + batch < messages {
                    match credits.try_acquire() {
                        Ok(p) => {
                            p.forget();
                            batch += 1;
                        }
                        Err(_) => break,
                    }
                }
                for _ in 0..batch {
                    sent_at.lock().unwrap().push_back(Instant::now());
                    tx.feed(message.clone()).await?;
                }
                tx.flush().await?;
                sent += batch;
            }
            Ok::<_, Error>(tx)
        }
    };
    let receiver = async {
        let mut lat = Vec::with_capacity(messages as usize);
        while (lat.len() as u64) < messages {
            match rx.next().await {
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    if m.is_text() != text || m.len() != size {
                        return Err::<_, Error>(
                            format!("echo of {} bytes, sent {size}", m.len()).into(),
                        );
                    }
                    let t0 = sent_at
                        .lock()
                        .unwrap()
                        .pop_front()
                        .ok_or("echo of a message never sent")?;
                    lat.push(t0.elapsed().as_micros() as u64);
                    credits.add_permits(1);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(m)) => return Err(format!("unexpected message: {m:?}").into()),
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

pub(crate) async fn run_echo(a: &Args, client: Arc<Client>) -> Result<bool, Error> {
    let (conns, errs) = open_many(&client, a.conns, a.concurrency, None).await;
    report_errors(&errs);
    let opened = conns.len();
    let (start_tx, start_rx) = watch::channel(false);
    let (close_tx, close_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut set = tokio::task::JoinSet::new();
    for ws in conns {
        let (mut start_rx, mut close_rx, done_tx) =
            (start_rx.clone(), close_rx.clone(), done_tx.clone());
        let (m, s, w, t) = (a.messages, a.size, a.window, a.text);
        set.spawn(async move {
            let _ = start_rx.wait_for(|v| *v).await;
            let r = echo_conn(ws, m, s, w, t).await;
            let _ = done_tx.send(());
            match r {
                Ok((ws, lat)) => {
                    let _ = close_rx.wait_for(|v| *v).await;
                    close(ws).await;
                    Ok(lat)
                }
                Err(e) => Err(e),
            }
        });
    }
    drop(done_tx);
    let s0 = snap(a);
    let t0 = Instant::now();
    start_tx.send_replace(true);
    for _ in 0..opened {
        if done_rx.recv().await.is_none() {
            break;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let s1 = snap(a);
    let (proxy_cpu, client_cpu, foreign) = s0.delta(s1);
    let (sys, cs) = s0.kernel(s1);
    close_tx.send_replace(true);
    let mut lat = Vec::new();
    let mut fails = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(l)) => lat.extend(l),
            Ok(Err(e)) => fails.push(e.to_string()),
            Err(e) => fails.push(e.to_string()),
        }
    }
    report_errors(&fails);
    lat.sort_unstable();
    let msgs = lat.len() as u64;
    println!(
        "echo: {opened}/{} connections, {msgs} round trips of {} B (window {}) in {wall:.3} s: \
         {:.0} msgs/s, {:.1} MB/s each way; latency p50 {} us, p99 {} us, max {} us; \
         proxy CPU {proxy_cpu:.2} s ({:.2} us/msg); client CPU {client_cpu:.2} s; \
         other load {:.2} cores",
        a.conns,
        a.size,
        a.window,
        msgs as f64 / wall,
        msgs as f64 * a.size as f64 / wall / 1e6,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(0),
        proxy_cpu * 1e6 / msgs.max(1) as f64,
        foreign / wall,
    );
    let errors = errs.len() + fails.len();
    println!(
        "RESULT mode=echo conns={opened} errors={errors} msgs={msgs} size={} window={} wall_s={wall:.4} \
         msgs_per_s={:.1} mb_per_s={:.2} p50_us={} p99_us={} max_us={} proxy_cpu_s={proxy_cpu:.3} \
         cpu_us_per_msg={:.3} cpu_ms_per_mb={:.4} p999_us={} client_cpu_s={client_cpu:.3} \
         foreign_cores={:.3} sys_us_per_msg={:.3} ctxsw_per_msg={:.3}",
        a.size,
        a.window,
        msgs as f64 / wall,
        msgs as f64 * a.size as f64 / wall / 1e6,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(0),
        proxy_cpu * 1e6 / msgs.max(1) as f64,
        cpu_ms_per_mb(proxy_cpu, msgs, a.size),
        percentile(&lat, 99.9),
        foreign / wall,
        sys * 1e6 / msgs.max(1) as f64,
        cs / msgs.max(1) as f64,
    );
    Ok(errors == 0)
}
