//! One backend and its health: the single place that decides whether it may be picked.
//!
//! Owns: the address and weight, the live-session count (for least_conn), and the
//! health state fed by active checks (rise/fall, HAProxy's semantics) and passive
//! checks (`max_fails` within `fail_timeout` -> down for `fail_timeout`, nginx's
//! semantics), the drain flag, and slow start. `Backend::pickable` is what balancing
//! asks; a backend that is down, failed passively or draining is never picked.
//! State changes are logged once per transition.
//! Does not own: running the active checks (health.rs) or choosing among backends.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub struct Backend {
    pub addr: std::net::SocketAddr,
    pub weight: u32,
    /// Stable identity for hashing: the address as written in the config.
    pub(crate) seed: u64,
    pub(crate) pool: String,
    active: AtomicUsize,
    /// Mirrors `health.usable(now)` for the lock-free fast path; refreshed on change.
    up: AtomicBool,
    drain: AtomicBool,
    health: Mutex<Health>,
    passive: Option<Passive>,
    slow_start: Duration,
}

/// nginx-style passive checking.
#[derive(Debug, Clone, Copy)]
pub struct Passive {
    pub max_fails: u32,
    pub fail_timeout: Duration,
}

#[derive(Debug)]
struct Health {
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
}

impl Backend {
    pub fn new(pool: &str, name: &str, addr: std::net::SocketAddr, weight: u32) -> Backend {
        Backend {
            addr,
            weight,
            seed: crate::balance::fmix64(crate::balance::fnv1a(name.as_bytes())),
            pool: pool.to_string(),
            active: AtomicUsize::new(0),
            up: AtomicBool::new(true),
            drain: AtomicBool::new(false),
            health: Mutex::new(Health {
                active_up: true,
                ok_streak: 0,
                fail_streak: 0,
                fails: 0,
                window_start: None,
                down_until: None,
                up_since: None,
            }),
            passive: None,
            slow_start: Duration::ZERO,
        }
    }

    pub fn with_passive(mut self, p: Option<Passive>) -> Backend {
        self.passive = p.filter(|p| p.max_fails > 0);
        self
    }

    pub fn with_slow_start(mut self, d: Duration) -> Backend {
        self.slow_start = d;
        self
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
            tracing::info!(pool = %self.pool, backend = %self.addr, "backend {}", if on { "draining: no new sessions" } else { "no longer draining" });
        }
    }

    pub fn draining(&self) -> bool {
        self.drain.load(Ordering::Relaxed)
    }

    /// The weight to balance with now: ramps up during slow start.
    pub fn effective_weight(&self) -> u32 {
        if self.slow_start.is_zero() {
            return self.weight;
        }
        let h = self.lock();
        match h.up_since {
            Some(t) => {
                let frac = t.elapsed().as_secs_f64() / self.slow_start.as_secs_f64();
                if frac >= 1.0 {
                    self.weight
                } else {
                    ((f64::from(self.weight) * frac).ceil() as u32).max(1)
                }
            }
            None => self.weight,
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
            tracing::warn!(pool = %self.pool, backend = %self.addr, "backend is {}", if usable { "UP" } else { "DOWN" });
        }
        usable
    }

    /// An active check's result; `rise`/`fall` consecutive results change state.
    pub fn record_check(&self, ok: bool, rise: u32, fall: u32, why: &str) {
        let mut h = self.lock();
        if ok {
            h.fail_streak = 0;
            h.ok_streak = h.ok_streak.saturating_add(1);
            if !h.active_up && h.ok_streak >= rise {
                h.active_up = true;
                // Active checks decide: a passing check also clears a passive mark.
                h.down_until = None;
            }
        } else {
            h.ok_streak = 0;
            h.fail_streak = h.fail_streak.saturating_add(1);
            if h.active_up && h.fail_streak >= fall {
                h.active_up = false;
                tracing::warn!(pool = %self.pool, backend = %self.addr, "health check failed {fall} times: {why}");
            }
        }
        self.refresh(&mut h, Instant::now());
    }

    /// A real connection or upgrade to this backend failed.
    /// `active_checks`: whether active checks run (then they bring it back).
    pub fn record_failure(&self, active_checks: bool) {
        let Some(p) = self.passive else { return };
        let now = Instant::now();
        let mut h = self.lock();
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
            tracing::warn!(pool = %self.pool, backend = %self.addr, "{} failure(s) within {:?}: marked down for {:?}", h.fails, p.fail_timeout, p.fail_timeout);
        }
        self.refresh(&mut h, now);
    }

    /// A real connection succeeded: the failure window starts over.
    pub fn record_success(&self) {
        if self.passive.is_none() {
            return;
        }
        let mut h = self.lock();
        if h.fails > 0 && h.down_until.is_none() {
            h.fails = 0;
            h.window_start = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backend {
        Backend::new("p", "x", "127.0.0.1:1".parse().unwrap(), 4)
    }

    #[tokio::test(start_paused = true)]
    async fn rise_and_fall() {
        let b = b();
        b.record_check(false, 2, 3, "x");
        b.record_check(false, 2, 3, "x");
        assert!(b.pickable());
        b.record_check(false, 2, 3, "x");
        assert!(!b.pickable());
        b.record_check(true, 2, 3, "");
        assert!(!b.pickable());
        b.record_check(true, 2, 3, "");
        assert!(b.pickable());
    }

    #[tokio::test(start_paused = true)]
    async fn passive_marks_down_for_fail_timeout() {
        let b = b().with_passive(Some(Passive {
            max_fails: 2,
            fail_timeout: Duration::from_secs(10),
        }));
        b.record_failure(false);
        assert!(b.pickable());
        b.record_failure(false);
        assert!(!b.pickable());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.pickable());
    }

    #[tokio::test(start_paused = true)]
    async fn passive_with_active_checks_waits_for_rise() {
        let b = b().with_passive(Some(Passive {
            max_fails: 1,
            fail_timeout: Duration::from_secs(1),
        }));
        b.record_failure(true);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!b.pickable(), "active checks decide after a passive mark");
        b.record_check(true, 1, 1, "");
        assert!(b.pickable());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_and_slow_start() {
        let b = b().with_slow_start(Duration::from_secs(10));
        b.set_drain(true);
        assert!(!b.pickable());
        assert!(b.is_up());
        b.set_drain(false);
        b.record_check(false, 1, 1, "x");
        b.record_check(true, 1, 1, "");
        assert_eq!(b.effective_weight(), 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.effective_weight(), 2);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.effective_weight(), 4);
    }
}
