//! wsgate's own scheduling delay: how late a task of ours wakes up.
//!
//! Owns: one small task per process (`ensure`) that sleeps `TICK` and records how
//! much later than asked it woke, and `recent()`/`overloaded()`: above `OVERLOADED`
//! wsgate is the slow one, so passive checks do not count a connect or upgrade
//! timeout against the backend (backends/balance.rs). A leaf: it imports nothing of
//! wsgate, so every layer may read it.
//! Does not own: what to do about overload (accept/overload.rs sheds load).

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the task wakes.
const TICK: Duration = Duration::from_millis(50);
/// Ticks per window: `recent` covers the current window and the one before.
const WINDOW: u32 = 20;
/// Above this delay a timeout is wsgate's, not the backend's.
pub(crate) const OVERLOADED: Duration = Duration::from_millis(100);

struct Lag {
    /// Microseconds since `BASE`: when the task last woke (0: never).
    last_wake: AtomicU64,
    /// The largest delay (µs) of the current and of the previous window.
    current: AtomicU64,
    previous: AtomicU64,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

static LAG: Lag = Lag::new();
static BASE: OnceLock<Instant> = OnceLock::new();

impl Lag {
    const fn new() -> Lag {
        Lag {
            last_wake: AtomicU64::new(0),
            current: AtomicU64::new(0),
            previous: AtomicU64::new(0),
            task: Mutex::new(None),
        }
    }

    fn ensure(&'static self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        self.last_wake.store(micros_now(), Ordering::Relaxed);
        *task = Some(handle.spawn(self.measure()));
    }

    async fn measure(&self) {
        let mut n = 0u32;
        loop {
            let asked = Instant::now();
            tokio::time::sleep(TICK).await;
            let late = asked.elapsed().saturating_sub(TICK);
            let late = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
            self.last_wake.store(micros_now(), Ordering::Relaxed);
            n += 1;
            if n.is_multiple_of(WINDOW) {
                self.previous.store(
                    self.current.swap(late, Ordering::Relaxed),
                    Ordering::Relaxed,
                );
            } else {
                self.current.fetch_max(late, Ordering::Relaxed);
            }
        }
    }

    fn recent(&self) -> Duration {
        let last = self.last_wake.load(Ordering::Relaxed);
        if last == 0 {
            return Duration::ZERO;
        }
        // The task may itself be starved right now: its overdue tick counts too.
        let overdue = Duration::from_micros(micros_now().saturating_sub(last)).saturating_sub(TICK);
        let peak = self
            .current
            .load(Ordering::Relaxed)
            .max(self.previous.load(Ordering::Relaxed));
        overdue.max(Duration::from_micros(peak))
    }
}

fn micros_now() -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Starts the measuring task on the current tokio runtime unless one is running
/// (the first pool built inside a runtime calls it; it starts again if that runtime
/// went away). Outside a runtime it does nothing. Cost: one timer wake-up per `TICK`.
pub(crate) fn ensure() {
    LAG.ensure();
}

/// The largest scheduling delay of the last one to two seconds (or of the tick
/// overdue now, if the task itself has not run yet); zero when the task does not run.
pub(crate) fn recent() -> Duration {
    LAG.recent()
}

/// Whether wsgate itself is too slow right now for a timeout to be the backend's fault.
pub(crate) fn overloaded() -> bool {
    recent() > OVERLOADED
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime whose only worker is blocked is measured as late.
    #[test]
    fn a_blocked_runtime_is_seen_late() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        static OWN: Lag = Lag::new();
        rt.block_on(async {
            assert_eq!(OWN.recent(), Duration::ZERO, "not started");
            OWN.ensure();
            tokio::time::sleep(TICK * 3).await;
            // Block the only thread: its next wake-up is late by about this much.
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                OWN.recent() > OVERLOADED,
                "overdue tick counted: {:?}",
                OWN.recent()
            );
            tokio::time::sleep(TICK * 2).await;
            assert!(
                OWN.recent() > OVERLOADED,
                "recorded late wake: {:?}",
                OWN.recent()
            );
        });
    }
}
