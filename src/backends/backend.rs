//! One backend and its health: the single place that decides whether it may be picked.
//!
//! Owns: the backend's identity (pool name, address as written, resolved address),
//! its live-session count (for least_conn), the health state fed by active checks
//! (rise/fall, HAProxy's semantics) and passive checks (`max_fails` within
//! `fail_timeout` -> down for `fail_timeout`, nginx's semantics), the drain flag,
//! slow start, the schedule of its active probes, its idle keep-alive connections for
//! proxied HTTP (`http::idle`), and the signal that asks its
//! sessions to end (shutdown, or a reload that removed it). `Backend::pickable` is what balancing asks; a backend that is down,
//! failed passively or draining is never picked. State changes are logged once.
//!
//! A `Backend` outlives generations: a reload that keeps it (same identity) keeps
//! this object, so its health, failure history, slow-start ramp and session count
//! carry over, while `apply` takes the new weight, drain flag and settings.
//! Does not own: running the active checks (health.rs) or choosing among backends.

use crate::backends::probe::ProbeError;
use crate::census::{Ending, StopReason};
use crate::config::{self, Passive};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;

/// What makes two backends of two generations the same backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendId {
    pub pool: String,
    /// As written in the config.
    pub address: String,
    /// What it resolved to: a name that now resolves elsewhere is another backend.
    pub addr: SocketAddr,
}

#[derive(Debug)]
pub struct Backend {
    pub id: BackendId,
    pub addr: SocketAddr,
    /// Stable hashing identity: the address as written, so every instance agrees.
    pub(crate) seed: u64,
    weight: AtomicU32,
    slow_start_ms: AtomicU64,
    active: AtomicUsize,
    /// Mirrors `health.usable(now)` for the lock-free fast path; refreshed on change.
    up: AtomicBool,
    drain: AtomicBool,
    health: Mutex<Health>,
    schedule: Mutex<Schedule>,
    /// wsgate asks this backend's sessions to end; the first request holds.
    ending: watch::Sender<Option<Ending>>,
    /// A reload removed it (so it is never reused by a later one).
    removed: AtomicBool,
    /// Keep-alive connections for proxied HTTP, ready for the next request.
    pub idle: crate::http::idle::Idle,
}

#[derive(Debug)]
struct Health {
    passive: Option<Passive>,
    /// The active-check verdict (true when no active checks run).
    active_up: bool,
    ok_streak: u32,
    fail_streak: u32,
    /// Passive failures in the current window, and when the window began.
    fails: u32,
    window_start: Option<Instant>,
    /// Passively marked down until then.
    down_until: Option<Instant>,
    /// When it last became usable (for slow start).
    up_since: Option<Instant>,
    /// Wall-clock time of the last state change and of the last active check.
    changed_at: Option<SystemTime>,
    last_check: Option<(SystemTime, CheckResult)>,
}

/// When the next active probe is due, and whether one is running: shared by the
/// checker tasks of successive generations, so a reload neither skips nor doubles one.
#[derive(Debug, Default)]
struct Schedule {
    next: Option<Instant>,
    in_flight: bool,
}

/// What the status page and metrics read of a backend.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub up: bool,
    pub draining: bool,
    pub slow_start: bool,
    pub sessions: usize,
    pub changed_at: Option<SystemTime>,
    pub last_check: Option<(SystemTime, CheckResult)>,
}

/// An active check's verdict as kept for the status page: shared, since snapshots
/// are copies.
pub type CheckResult = Result<(), Arc<ProbeError>>;

impl Backend {
    /// A backend as `conf` describes it, in pool `pool`; it starts healthy.
    pub fn new(pool: &config::Pool, conf: &config::Backend) -> Backend {
        let b = Backend {
            id: BackendId {
                pool: pool.name.clone(),
                address: conf.address.clone(),
                addr: conf.addr,
            },
            addr: conf.addr,
            seed: crate::backends::hash::fmix64(crate::backends::hash::fnv1a(
                conf.address.as_bytes(),
            )),
            weight: AtomicU32::new(conf.weight),
            slow_start_ms: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            up: AtomicBool::new(true),
            drain: AtomicBool::new(false),
            health: Mutex::new(Health {
                passive: None,
                active_up: true,
                ok_streak: 0,
                fail_streak: 0,
                fails: 0,
                window_start: None,
                down_until: None,
                up_since: None,
                changed_at: None,
                last_check: None,
            }),
            schedule: Mutex::new(Schedule::default()),
            ending: watch::channel(None).0,
            removed: AtomicBool::new(false),
            idle: Default::default(),
        };
        b.apply(pool, conf);
        b
    }

    /// Takes the settings a (new) config gives this backend: weight, drain flag,
    /// passive checks and slow start. Health state and sessions stay as they are,
    /// except that a backend no longer under active checks loses their verdict.
    pub fn apply(&self, pool: &config::Pool, conf: &config::Backend) {
        self.weight.store(conf.weight, Ordering::Relaxed);
        self.idle.configure(pool.keepalive, pool.keepalive_timeout);
        self.slow_start_ms
            .store(pool.slow_start.as_millis() as u64, Ordering::Relaxed);
        self.set_drain(conf.drain);
        let mut h = self.lock();
        h.passive = pool.passive;
        if conf.check.is_none() {
            h.active_up = true;
            h.ok_streak = 0;
            h.fail_streak = 0;
            *self.schedule.lock().unwrap_or_else(|e| e.into_inner()) = Schedule::default();
        }
        self.refresh(&mut h, Instant::now());
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Live sessions (including ones still being set up) on this backend.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    pub(crate) fn enter(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn leave(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether new sessions may go here: healthy and not draining.
    pub fn pickable(&self) -> bool {
        if self.drain.load(Ordering::Relaxed) {
            return false;
        }
        if self.up.load(Ordering::Relaxed) {
            return true;
        }
        // Down: a passive mark may have expired since it was set.
        let mut h = self.lock();
        self.refresh(&mut h, Instant::now())
    }

    /// Whether it is healthy (draining or not).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed) || {
            let mut h = self.lock();
            self.refresh(&mut h, Instant::now())
        }
    }

    pub fn set_drain(&self, on: bool) {
        if self.drain.swap(on, Ordering::Relaxed) != on {
            tracing::info!(pool = %self.id.pool, backend = %self.addr, "backend {}", if on { "draining: no new sessions" } else { "no longer draining" });
        }
    }

    pub fn draining(&self) -> bool {
        self.drain.load(Ordering::Relaxed)
    }

    /// The weight to balance with now: ramps up during slow start.
    pub fn effective_weight(&self) -> u32 {
        let weight = self.weight();
        let ramp = self.slow_start_ms.load(Ordering::Relaxed);
        if ramp == 0 {
            return weight;
        }
        let h = self.lock();
        match h.up_since {
            Some(t) => {
                let frac = t.elapsed().as_millis() as f64 / ramp as f64;
                if frac >= 1.0 {
                    weight
                } else {
                    ((f64::from(weight) * frac).ceil() as u32).max(1)
                }
            }
            None => weight,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Recomputes usability, logs a transition, and publishes it to `up`.
    fn refresh(&self, h: &mut Health, now: Instant) -> bool {
        if h.down_until.is_some_and(|t| now >= t) {
            h.down_until = None;
            h.fails = 0;
            h.window_start = None;
        }
        let usable = h.active_up && h.down_until.is_none();
        let was = self.up.swap(usable, Ordering::Relaxed);
        if was != usable {
            if usable {
                h.up_since = Some(now);
            }
            h.changed_at = Some(SystemTime::now());
            tracing::warn!(pool = %self.id.pool, backend = %self.addr, "backend is {}", if usable { "UP" } else { "DOWN" });
        }
        usable
    }

    /// An active check's result; `rise`/`fall` consecutive results change state.
    pub fn record_check(&self, result: Result<(), ProbeError>, rise: u32, fall: u32) {
        let mut h = self.lock();
        let result = result.map_err(Arc::new);
        h.last_check = Some((SystemTime::now(), result.clone()));
        if let Err(why) = &result {
            h.ok_streak = 0;
            h.fail_streak = h.fail_streak.saturating_add(1);
            if h.active_up && h.fail_streak >= fall {
                h.active_up = false;
                let why = crate::errors::ErrorChain(&**why);
                tracing::warn!(pool = %self.id.pool, backend = %self.addr, "health check failed {fall} times: {why}");
            }
        } else {
            h.fail_streak = 0;
            h.ok_streak = h.ok_streak.saturating_add(1);
            if !h.active_up && h.ok_streak >= rise {
                h.active_up = true;
                // Active checks decide: a passing check also clears a passive mark.
                h.down_until = None;
            }
        }
        self.refresh(&mut h, Instant::now());
    }

    /// A real connection or upgrade to this backend failed.
    /// `active_checks`: whether active checks run (then they bring it back).
    pub fn record_failure(&self, active_checks: bool) {
        let now = Instant::now();
        let mut h = self.lock();
        let Some(p) = h.passive else { return };
        if h.window_start
            .is_none_or(|s| now.duration_since(s) >= p.fail_timeout)
        {
            h.window_start = Some(now);
            h.fails = 0;
        }
        h.fails += 1;
        if h.fails >= p.max_fails && h.down_until.is_none() {
            h.down_until = Some(now + p.fail_timeout);
            if active_checks {
                h.active_up = false;
                h.ok_streak = 0;
            }
            tracing::warn!(pool = %self.id.pool, backend = %self.addr, "{} failure(s) within {:?}: marked down for {:?}", h.fails, p.fail_timeout, p.fail_timeout);
        }
        self.refresh(&mut h, now);
    }

    /// A real connection succeeded: the failure window starts over.
    pub fn record_success(&self) {
        let mut h = self.lock();
        if h.fails > 0 && h.down_until.is_none() {
            h.fails = 0;
            h.window_start = None;
        }
    }

    /// When the next probe is due: the shared schedule, or `first` if none is set yet.
    /// A shorter `interval` than the schedule's brings the next probe forward.
    pub(crate) fn next_probe(&self, first: Instant, interval: Duration) -> Instant {
        let mut s = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
        let cap = Instant::now() + interval;
        let next = s.next.map_or(first, |n| n.min(cap));
        s.next = Some(next);
        next
    }

    /// Claims the probe due now, so exactly one checker runs it; the next is due
    /// `interval` later. `false` if it is not due or another checker has it.
    pub(crate) fn claim_probe(&self, now: Instant, interval: Duration) -> bool {
        let mut s = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
        if s.in_flight || s.next.is_some_and(|n| now < n) {
            return false;
        }
        s.in_flight = true;
        s.next = Some(now + interval);
        true
    }

    pub(crate) fn probe_done(&self) {
        self.schedule
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .in_flight = false;
    }

    /// A reload removed this backend from its pool.
    pub fn mark_removed(&self) {
        self.removed.store(true, Ordering::Relaxed);
        self.idle.clear();
    }

    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    /// Asks this backend's live (and future) sessions to end as `e` says. A request
    /// already made holds: a session keeps the moment it drew.
    pub fn end_sessions(&self, e: Ending) {
        self.ending.send_if_modified(|cur| {
            if cur.is_some() {
                return false;
            }
            *cur = Some(e);
            true
        });
    }

    /// Whether its sessions have been asked to end.
    pub fn is_ending(&self) -> bool {
        self.ending.borrow().is_some()
    }

    /// Resolves, for one session, with why and when it is to end: the moment is drawn
    /// in the request's spread when the request arrives.
    pub fn session_end(&self) -> impl Future<Output = (StopReason, Instant)> + Send + use<> {
        let mut rx = self.ending.subscribe();
        async move {
            match rx.wait_for(Option::is_some).await.ok().and_then(|e| *e) {
                Some(e) => (e.why, e.moment()),
                None => std::future::pending().await,
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let up = self.is_up();
        let h = self.lock();
        let ramp = Duration::from_millis(self.slow_start_ms.load(Ordering::Relaxed));
        Snapshot {
            up,
            draining: self.draining(),
            slow_start: up && !ramp.is_zero() && h.up_since.is_some_and(|t| t.elapsed() < ramp),
            sessions: self.active(),
            changed_at: h.changed_at,
            last_check: h.last_check.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> config::Config {
        config::Config::parse(
            &format!(
                "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = false\n[[route]]\npool = \"p\"\n\
                 [[pool]]\nname = \"p\"\n{text}\n[[pool.backend]]\naddress = \"127.0.0.1:1\"\nweight = 4\n"
            ),
            std::path::Path::new("t.toml"),
        )
        .unwrap()
    }

    /// A failed active check.
    fn failed() -> ProbeError {
        ProbeError::Timeout(Duration::from_secs(1))
    }

    fn b(text: &str) -> Backend {
        let c = conf(text);
        Backend::new(&c.pools[0], &c.pools[0].backends[0])
    }

    #[tokio::test(start_paused = true)]
    async fn rise_and_fall() {
        let b = b("");
        b.record_check(Err(failed()), 2, 3);
        b.record_check(Err(failed()), 2, 3);
        assert!(b.pickable());
        b.record_check(Err(failed()), 2, 3);
        assert!(!b.pickable());
        b.record_check(Ok(()), 2, 3);
        assert!(!b.pickable());
        b.record_check(Ok(()), 2, 3);
        assert!(b.pickable());
    }

    #[tokio::test(start_paused = true)]
    async fn passive_marks_down_for_fail_timeout() {
        let b = b("max_fails = 2\nfail_timeout = \"10s\"");
        b.record_failure(false);
        assert!(b.pickable());
        b.record_failure(false);
        assert!(!b.pickable());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.pickable());
    }

    #[tokio::test(start_paused = true)]
    async fn passive_with_active_checks_waits_for_rise() {
        let b = b("max_fails = 1\nfail_timeout = \"1s\"\n[pool.health]\nkind = \"tcp\"");
        b.record_failure(true);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!b.pickable(), "active checks decide after a passive mark");
        b.record_check(Ok(()), 1, 1);
        assert!(b.pickable());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_and_slow_start() {
        let b = b("slow_start = \"10s\"");
        b.set_drain(true);
        assert!(!b.pickable());
        assert!(b.is_up());
        b.set_drain(false);
        b.record_check(Err(failed()), 1, 1);
        b.record_check(Ok(()), 1, 1);
        assert_eq!(b.effective_weight(), 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.effective_weight(), 2);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.effective_weight(), 4);
    }

    /// `apply` takes the new settings and keeps the health state.
    #[tokio::test(start_paused = true)]
    async fn apply_keeps_health_and_takes_settings() {
        let c = conf("[pool.health]\nkind = \"tcp\"");
        let b = Backend::new(&c.pools[0], &c.pools[0].backends[0]);
        b.record_check(Err(failed()), 1, 1);
        assert!(!b.is_up());
        let mut newer = c.pools[0].clone();
        newer.backends[0].weight = 9;
        newer.backends[0].drain = true;
        b.apply(&newer, &newer.backends[0]);
        assert_eq!(b.weight(), 9);
        assert!(b.draining());
        assert!(!b.is_up(), "a down backend stays down across a reload");
        // Without active checks any more, their verdict no longer holds it down.
        newer.backends[0].check = None;
        b.apply(&newer, &newer.backends[0]);
        assert!(b.is_up());
    }

    /// Two checkers of one backend (old and new generation) share one schedule.
    #[tokio::test(start_paused = true)]
    async fn one_probe_per_interval_whatever_the_checkers() {
        let b = b("");
        let i = Duration::from_secs(1);
        let t0 = Instant::now();
        assert_eq!(b.next_probe(t0, i), t0);
        assert!(b.claim_probe(t0, i));
        assert!(!b.claim_probe(t0, i), "in flight");
        b.probe_done();
        assert!(!b.claim_probe(t0, i), "not due yet");
        assert_eq!(
            b.next_probe(t0, i),
            t0 + i,
            "a second checker sees the same schedule"
        );
        assert!(b.claim_probe(t0 + i, i));
    }
}
