//! Overload protection for the sessions already open: when a reconnect storm
//! arrives, the accept loops pace instead of letting TLS handshakes take every core
//! and every byte of memory.
//!
//! Owns: the global connect-rate bucket (`max_connect_rate`) and the resident-memory
//! watermark (`max_memory`), both waited on by `Overload::wait_turn`, their resolution
//! from the config and the machine (`Settings::resolve`), their counters, and one log
//! line per episode. Does not own: per-IP limits and `max_connections`
//! (admission.rs), or reading the process's memory (resources.rs).

use crate::config::{Limits, MemoryLimit};
use crate::relay::bucket::Bucket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep, sleep_until};

/// Accepting resumes once resident memory is this far under the watermark.
const MEMORY_MARGIN: f64 = 0.10;
/// How often resident memory is read while a watermark is set.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// New connections per second per worker thread when `max_connect_rate` is absent:
/// a full TLS handshake costs about 0.4 ms of CPU here (benches/RESULTS.md), so this
/// leaves over half of each core to the sessions already open.
pub const DEFAULT_RATE_PER_WORKER: f64 = 1000.0;

/// Overload settings as one config resolves them on this machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Connections per second (None: off) and the bucket's size.
    pub rate: Option<(f64, u32)>,
    /// Resident-memory watermark in bytes (None: off).
    pub memory: Option<u64>,
}

impl Settings {
    /// `workers`: tokio worker threads; the cgroup limit is read here.
    pub fn resolve(l: &Limits, workers: usize) -> Settings {
        let rate = l
            .max_connect_rate
            .unwrap_or(DEFAULT_RATE_PER_WORKER * workers.max(1) as f64);
        let burst = l
            .max_connect_burst
            .unwrap_or_else(|| rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
        let memory = match l.max_memory {
            Some(MemoryLimit::Off) => None,
            Some(MemoryLimit::Bytes(b)) => Some(b),
            Some(MemoryLimit::OfCgroup(p)) => {
                crate::resources::cgroup_memory_limit().map(|m| (m as f64 * p / 100.0) as u64)
            }
            None => crate::resources::cgroup_memory_limit().map(|m| m / 10 * 9),
        };
        Settings {
            rate: (rate > 0.0).then_some((rate, burst.max(1))),
            memory,
        }
    }
}

impl std::fmt::Display for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rate {
            Some((r, b)) => write!(f, "max_connect_rate = {r}/s (burst {b})")?,
            None => write!(f, "max_connect_rate off")?,
        }
        match self.memory {
            Some(m) => write!(f, ", max_memory = {} MiB", m >> 20),
            None => write!(f, ", max_memory off"),
        }
    }
}

/// What overload protection did, for logs and metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Accepts that waited for a connect-rate token.
    pub paced: AtomicU64,
    /// Episodes of pacing by rate, and of pausing for memory.
    pub rate_episodes: AtomicU64,
    pub memory_episodes: AtomicU64,
}

#[derive(Debug)]
struct RateState {
    settings: Option<(f64, u32)>,
    bucket: Option<Bucket>,
    /// Pacing started then, with this many waits since.
    episode: Option<(Instant, u64)>,
    last_wait: Option<Instant>,
}

#[derive(Debug)]
pub struct Overload {
    rate: Mutex<RateState>,
    watermark: watch::Sender<Option<u64>>,
    memory_high: AtomicBool,
    memory_ok: Notify,
    pub counters: Counters,
}

impl Overload {
    pub fn new(s: Settings) -> Overload {
        let o = Overload {
            rate: Mutex::new(RateState {
                settings: None,
                bucket: None,
                episode: None,
                last_wait: None,
            }),
            watermark: watch::channel(None).0,
            memory_high: AtomicBool::new(false),
            memory_ok: Notify::new(),
            counters: Counters::default(),
        };
        o.configure(s);
        o
    }

    /// Takes a (reloaded) config's settings; an unchanged rate keeps its bucket.
    pub fn configure(&self, s: Settings) {
        let mut r = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        if r.settings != s.rate {
            r.settings = s.rate;
            r.bucket = s.rate.and_then(|(rate, burst)| Bucket::new(rate, burst));
        }
        drop(r);
        self.watermark.send_replace(s.memory);
        if s.memory.is_none() && self.memory_high.swap(false, Ordering::AcqRel) {
            self.memory_ok.notify_waiters();
        }
    }

    /// Waits until one more connection may be accepted: memory under the watermark
    /// and a token in the connect-rate bucket (all clients and listeners together;
    /// the kernel queues the rest). Above the watermark accepting pauses until memory
    /// is back under it minus `MEMORY_MARGIN`. An episode of pacing or pausing is
    /// logged when it starts, and when it ends with what it did. Cancel-safe.
    pub async fn wait_turn(&self) {
        self.wait_memory().await;
        self.wait_rate().await;
    }

    /// Waits while resident memory is above the watermark.
    pub async fn wait_memory(&self) {
        while self.memory_high.load(Ordering::Acquire) {
            let ok = self.memory_ok.notified();
            if !self.memory_high.load(Ordering::Acquire) {
                break;
            }
            ok.await;
        }
    }

    async fn wait_rate(&self) {
        loop {
            let wait = {
                let mut r = self.rate.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let took = match r.bucket.as_mut() {
                    None => Ok(()),
                    Some(b) => b.take(now),
                };
                match took {
                    Ok(()) => {
                        self.end_rate_episode(&mut r, now);
                        None
                    }
                    Err(at) => {
                        self.counters.paced.fetch_add(1, Ordering::Relaxed);
                        let (_, waits) = r.episode.get_or_insert_with(|| {
                            self.counters.rate_episodes.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("new connections above max_connect_rate: pacing accepts (the kernel queues the rest)");
                            (now, 0)
                        });
                        *waits += 1;
                        r.last_wait = Some(now);
                        Some(at)
                    }
                }
            };
            match wait {
                None => return,
                Some(at) => sleep_until(at).await,
            }
        }
    }

    /// An episode ends after a second without waiting.
    fn end_rate_episode(&self, r: &mut RateState, now: Instant) {
        if let (Some((start, waits)), Some(last)) = (r.episode, r.last_wait)
            && now.duration_since(last) >= Duration::from_secs(1)
        {
            tracing::warn!(
                "connect rate back under max_connect_rate: {waits} accepts waited over {:?}",
                last.duration_since(start)
            );
            r.episode = None;
        }
    }

    /// Reads resident memory while a watermark is set, pausing accepts above it and
    /// resuming below the watermark minus the margin. Runs until `stop`.
    pub async fn watch_memory(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut watermark = self.watermark.subscribe();
        let mut since: Option<(Instant, u64)> = None;
        loop {
            let limit = *watermark.borrow_and_update();
            if let (Some(limit), Some(rss)) = (limit, crate::resources::rss_bytes()) {
                let high = self.memory_high.load(Ordering::Acquire);
                if !high && rss > limit {
                    self.memory_high.store(true, Ordering::Release);
                    self.counters
                        .memory_episodes
                        .fetch_add(1, Ordering::Relaxed);
                    since = Some((Instant::now(), rss));
                    tracing::warn!(
                        "resident memory {} MiB above max_memory ({} MiB): accepting paused",
                        rss >> 20,
                        limit >> 20
                    );
                } else if high && (rss as f64) < limit as f64 * (1.0 - MEMORY_MARGIN) {
                    self.memory_high.store(false, Ordering::Release);
                    self.memory_ok.notify_waiters();
                    let (t, peak) = since.take().unwrap_or((Instant::now(), rss));
                    tracing::warn!(
                        "resident memory {} MiB (from {} MiB): accepting again after {:?}",
                        rss >> 20,
                        peak >> 20,
                        t.elapsed()
                    );
                } else if let Some((_, peak)) = since.as_mut() {
                    *peak = (*peak).max(rss);
                }
            }
            tokio::select! {
                _ = sleep(SAMPLE_EVERY), if limit.is_some() => {}
                _ = watermark.changed() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    pub fn memory_paused(&self) -> bool {
        self.memory_high.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn accepts_are_paced_at_the_rate() {
        let o = Overload::new(Settings {
            rate: Some((10.0, 2)),
            memory: None,
        });
        let t0 = Instant::now();
        for _ in 0..12 {
            o.wait_turn().await;
        }
        // 2 at once, then one per 100 ms.
        assert_eq!(t0.elapsed(), Duration::from_millis(1000));
        assert_eq!(o.counters.rate_episodes.load(Ordering::Relaxed), 1);
        assert_eq!(o.counters.paced.load(Ordering::Relaxed), 10);
        o.configure(Settings {
            rate: None,
            memory: None,
        });
        let t1 = Instant::now();
        for _ in 0..100 {
            o.wait_turn().await;
        }
        assert_eq!(t1.elapsed(), Duration::ZERO, "off after a reload");
    }

    #[test]
    fn defaults_follow_the_workers() {
        let s = Settings::resolve(&Limits::default(), 4);
        assert_eq!(s.rate, Some((4000.0, 4000)));
        let off = Limits {
            max_connect_rate: Some(0.0),
            max_memory: Some(MemoryLimit::Bytes(1 << 30)),
            ..Limits::default()
        };
        let s = Settings::resolve(&off, 4);
        assert_eq!(s.rate, None);
        assert_eq!(s.memory, Some(1 << 30));
    }
}
