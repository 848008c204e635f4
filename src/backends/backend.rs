//! One backend and its health: the single place that decides whether it may be picked.
//!
//! Owns: the backend's identity (`BackendId`), its live-session count, its health
//! state (active rise/fall, passive ejections, drain, slow start), the schedule of its
//! active probes, its idle keep-alive connections (`http::idle`), and the signal that
//! asks its sessions to end. A `Backend` outlives generations (kept by identity).
//! Does not own: running the active checks (health.rs), choosing among backends or
//! whether an ejection is allowed at all (balance.rs).

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

/// One backend of a pool. A reload that keeps it (same `BackendId`) keeps this
/// object, so its health, failure history, slow-start ramp and session count carry
/// over, while `apply` takes the new weight, drain flag and settings. State changes
/// are logged once.
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
    /// Whether the pool runs active checks (then they bring an ejected backend back).
    active_checks: bool,
    /// The active-check verdict (true when no active checks run).
    active_up: bool,
    ok_streak: u32,
    fail_streak: u32,
    /// Passive failures counted: in a row (outlier detection), or in the current
    /// window (nginx), which began at `window_start`.
    fails: u32,
    window_start: Option<Instant>,
    /// Passively ejected until then.
    down_until: Option<Instant>,
    /// Passively ejected in a pool with active checks: until they pass `rise` times
    /// (kept apart from `active_up`, which is the active checks' own verdict).
    await_rise: bool,
    /// Ejections in a row (outlier detection's multiplier; it decays by one for each
    /// `base_ejection_time` spent in), and when the last one ended.
    ejections: u32,
    returned_at: Option<Instant>,
    /// When a real connection to it last succeeded.
    last_success: Option<Instant>,
    /// An ejection was due but the pool's `max_ejection_percent` refused it (logged once).
    held_in: bool,
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
    /// Passively ejected (outlier detection or max_fails) right now.
    pub ejected: bool,
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
                active_checks: false,
                active_up: true,
                ok_streak: 0,
                fail_streak: 0,
                fails: 0,
                window_start: None,
                down_until: None,
                await_rise: false,
                ejections: 0,
                returned_at: None,
                last_success: None,
                held_in: false,
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
        h.active_checks = pool.active_checks;
        if conf.check.is_none() {
            h.active_up = true;
            h.await_rise = false;
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

    /// Whether new sessions may go here: healthy (not down by active checks, not
    /// passively ejected) and not draining. This is what balancing asks (unless the
    /// pool panics: balance.rs).
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
            if !h.await_rise {
                h.fails = 0;
                h.window_start = None;
                h.returned_at = Some(now);
            }
        }
        let usable = h.active_up && h.down_until.is_none() && !h.await_rise;
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

    /// An active check's result; `rise`/`fall` consecutive results change state
    /// (HAProxy's semantics).
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
            if h.ok_streak >= rise {
                h.active_up = true;
                // Active checks decide: passing them also ends a passive ejection.
                if h.await_rise {
                    h.await_rise = false;
                    h.down_until = None;
                    h.fails = 0;
                    h.window_start = None;
                    h.returned_at = Some(Instant::now());
                }
            }
        }
        self.refresh(&mut h, Instant::now());
    }

    /// Whether passive checks hold it ejected now.
    pub fn is_ejected(&self) -> bool {
        let mut h = self.lock();
        self.refresh(&mut h, Instant::now());
        h.down_until.is_some() || h.await_rise
    }

    /// Whether its pool may pick it in panic mode: not draining or removed, and not
    /// down by active checks (passive ejections yield to panic; active checks do not).
    pub fn panic_pickable(&self) -> bool {
        !self.draining() && !self.is_removed() && self.lock().active_up
    }

    /// A real connection or upgrade to this backend, attempted since `started`,
    /// failed. `may_eject`: whether the pool allows one more ejection now
    /// (`max_ejection_percent`, balance.rs; a refused one is logged once). Returns
    /// whether it was ejected now.
    ///
    /// Passive checks (config `Passive`) are either outlier detection (Envoy's:
    /// `consecutive_failures` in a row eject for `base_ejection_time` times the
    /// ejections in a row, at most `max_ejection_time`) or nginx's (`max_fails`
    /// within `fail_timeout` eject for `fail_timeout`). A failure of an attempt that
    /// began before the backend's last success does not count toward
    /// `consecutive_failures`: the backend answered meanwhile, so it is slow, not dead.
    pub(crate) fn record_failure(&self, started: Instant, may_eject: bool) -> bool {
        let now = Instant::now();
        let mut h = self.lock();
        self.refresh(&mut h, now);
        let Some(p) = h.passive else { return false };
        if h.down_until.is_some() || h.await_rise {
            return false;
        }
        let time = match p {
            Passive::Consecutive {
                failures,
                base,
                max,
            } => {
                if h.last_success.is_some_and(|s| s > started) {
                    // It answered another attempt since this one began: slow, not dead.
                    return false;
                }
                h.fails = h.fails.saturating_add(1);
                if h.fails < failures {
                    return false;
                }
                if !may_eject {
                    return self.hold_in(&mut h);
                }
                if let Some(back) = h.returned_at {
                    let healthy = now.duration_since(back).as_nanos() / base.as_nanos().max(1);
                    h.ejections = h
                        .ejections
                        .saturating_sub(u32::try_from(healthy).unwrap_or(u32::MAX));
                }
                h.ejections = h.ejections.saturating_add(1);
                base.saturating_mul(h.ejections).min(max)
            }
            Passive::Window {
                max_fails,
                fail_timeout,
            } => {
                if h.window_start
                    .is_none_or(|s| now.duration_since(s) >= fail_timeout)
                {
                    h.window_start = Some(now);
                    h.fails = 0;
                }
                h.fails = h.fails.saturating_add(1);
                if h.fails < max_fails {
                    return false;
                }
                if !may_eject {
                    return self.hold_in(&mut h);
                }
                h.ejections = h.ejections.saturating_add(1);
                fail_timeout
            }
        };
        h.down_until = Some(now + time);
        h.held_in = false;
        if h.active_checks {
            h.await_rise = true;
            h.ok_streak = 0;
        }
        let how = match p {
            Passive::Consecutive { .. } => format!("{} failures in a row", h.fails),
            Passive::Window { fail_timeout, .. } => {
                format!("{} failure(s) within {fail_timeout:?}", h.fails)
            }
        };
        tracing::warn!(pool = %self.id.pool, backend = %self.addr, "{how}: ejected for {time:?} (ejection {} in a row){}", h.ejections, if h.active_checks { ", then until active checks pass" } else { "" });
        self.refresh(&mut h, now);
        true
    }

    /// An ejection was due and the pool refused it: the backend stays in.
    fn hold_in(&self, h: &mut Health) -> bool {
        if !h.held_in {
            h.held_in = true;
            tracing::warn!(pool = %self.id.pool, backend = %self.addr, "{} failures: not ejected, the pool's max_ejection_percent allows no more ejections", h.fails);
        }
        false
    }

    /// A real connection succeeded: the failure count starts over.
    pub fn record_success(&self) {
        let mut h = self.lock();
        h.last_success = Some(Instant::now());
        if h.fails > 0 && h.down_until.is_none() && !h.await_rise {
            h.fails = 0;
            h.window_start = None;
            h.held_in = false;
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
            ejected: h.down_until.is_some() || h.await_rise,
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
        b.record_failure(Instant::now(), true);
        assert!(b.pickable());
        b.record_failure(Instant::now(), true);
        assert!(!b.pickable());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.pickable());
    }

    #[tokio::test(start_paused = true)]
    async fn passive_with_active_checks_waits_for_rise() {
        let b = b("max_fails = 1\nfail_timeout = \"1s\"\n[pool.health]\nkind = \"tcp\"");
        b.record_failure(Instant::now(), true);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!b.pickable(), "active checks decide after a passive mark");
        b.record_check(Ok(()), 1, 1);
        assert!(b.pickable());
    }

    /// Fails `n` attempts that each began now; returns whether the last ejected it.
    fn fail(b: &Backend, n: u32) -> bool {
        (0..n)
            .map(|_| b.record_failure(Instant::now(), true))
            .last()
            .unwrap_or(false)
    }

    #[tokio::test(start_paused = true)]
    async fn outlier_defaults_eject_after_five_in_a_row() {
        let b = b("");
        assert!(!fail(&b, 4));
        b.record_success();
        assert!(!fail(&b, 4), "a success starts the count over");
        assert!(b.pickable());
        assert!(fail(&b, 1), "the fifth in a row");
        assert!(!b.pickable() && b.is_ejected());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!b.pickable());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.pickable(), "back after base_ejection_time");
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_grows_with_repeats_up_to_the_max_and_decays() {
        let b = b(
            "consecutive_failures = 1\nbase_ejection_time = \"10s\"\nmax_ejection_time = \"25s\"",
        );
        async fn out_for(b: &Backend) -> Duration {
            let t0 = Instant::now();
            while !b.pickable() {
                tokio::time::advance(Duration::from_secs(1)).await;
            }
            t0.elapsed()
        }
        let b = &b;
        assert!(fail(b, 1));
        assert_eq!(out_for(b).await, Duration::from_secs(10));
        assert!(fail(b, 1));
        assert_eq!(out_for(b).await, Duration::from_secs(20), "second in a row");
        assert!(fail(b, 1));
        assert_eq!(
            out_for(b).await,
            Duration::from_secs(25),
            "capped at the max"
        );
        // 20 s in (two base times): the multiplier drops from 3 to 1, so the next is 2.
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(fail(b, 1));
        assert_eq!(out_for(b).await, Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_that_began_before_the_last_success_is_slow_not_dead() {
        let b = b("consecutive_failures = 2");
        let early = Instant::now();
        tokio::time::advance(Duration::from_millis(5)).await;
        b.record_success();
        for _ in 0..10 {
            assert!(!b.record_failure(early, true));
        }
        assert!(
            b.pickable(),
            "timeouts of attempts in flight while it answered"
        );
        assert!(fail(&b, 2), "attempts begun after its last answer count");
    }

    #[tokio::test(start_paused = true)]
    async fn nginx_keys_keep_their_meaning_and_any_failure_counts() {
        let b = b("max_fails = 1\nfail_timeout = \"2s\"");
        let early = Instant::now();
        b.record_success();
        assert!(b.record_failure(early, true), "one failure ejects");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.pickable());
        assert!(fail(&b, 1));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.pickable(), "no growth: always fail_timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_ejection_keeps_it_in_and_a_later_one_may_happen() {
        let b = b("consecutive_failures = 2");
        assert!(!b.record_failure(Instant::now(), false));
        assert!(!b.record_failure(Instant::now(), false));
        assert!(!b.record_failure(Instant::now(), false));
        assert!(b.pickable());
        assert!(b.record_failure(Instant::now(), true), "allowed now");
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
