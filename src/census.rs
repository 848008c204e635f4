//! Live connections and sessions: each admitted connection holds an `Open` guard,
//! each running relay a `Live` guard.
//!
//! Owns: the process-wide counts, waiting until they reach zero, the signal that
//! tells kept-alive HTTP connections to close (shutdown), and the shape of
//! wsgate's own request to end sessions (`Ending`: why, from when, spread over how
//! long; each session draws its own moment in the spread). The request reaches a
//! session through its backend (backend.rs), so a session waits on one signal
//! whatever the reason. Does not own: per-backend counts (balance.rs `Lease`) or what
//! a session does when asked (relay).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// After a forced stop, how long a session may still take to send its Close and
/// hear the answer (instead of its `close_timeout`).
pub(crate) const FORCED_CLOSE: Duration = Duration::from_millis(500);

/// Why wsgate itself ends sessions that are going well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// wsgate is shutting down (Close 1001).
    Shutdown,
    /// A reload removed the session's backend (Close 1012 to the client).
    BackendRemoved,
    /// The client's token expired (`enforce_expiry`): Close 1008 to the client.
    TokenExpired,
}

/// wsgate asks sessions to end: from `start`, each at a random moment within `spread`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    pub why: StopReason,
    pub start: Instant,
    pub spread: Duration,
}

impl Ending {
    pub fn now(why: StopReason, spread: Duration) -> Ending {
        Ending {
            why,
            start: Instant::now(),
            spread,
        }
    }

    /// A moment within the spread, drawn afresh for each session.
    pub fn moment(&self) -> Instant {
        self.start + self.spread.mul_f64(rand::random::<f64>())
    }
}

#[derive(Debug, Default)]
pub struct Census {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    live: AtomicUsize,
    open: AtomicUsize,
    /// Notified when either count reaches zero.
    zero: Notify,
    /// true once shutdown began: keep-alive connections close when idle.
    closing: watch::Sender<bool>,
    /// Mirrors `closing` for the count at each session's end.
    draining: AtomicBool,
    /// true once the stop is forced: live sessions end now, closes cut short.
    forced: watch::Sender<bool>,
    forcing: AtomicBool,
    /// Sessions that ended after the drain began, before the forced stop.
    drained: AtomicUsize,
    /// Sessions that ended after the forced stop.
    forced_ended: AtomicUsize,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            live: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            zero: Notify::new(),
            closing: watch::channel(false).0,
            draining: AtomicBool::new(false),
            forced: watch::channel(false).0,
            forcing: AtomicBool::new(false),
            drained: AtomicUsize::new(0),
            forced_ended: AtomicUsize::new(0),
        }
    }
}

/// Counts as one live session until dropped.
#[derive(Debug)]
pub struct Live {
    inner: Arc<Inner>,
}

/// How the sessions of a shutdown have ended so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stops {
    /// Ended in the drain (after it began, before any forced stop).
    pub drained: usize,
    /// Ended after the stop was forced.
    pub forced: usize,
}

/// Resolves once wsgate forces the stop (see `Census::forced`).
pub(crate) type ForcedSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Waits for a forced stop; `None` stands for a session that is never forced.
#[derive(Debug)]
pub struct Forced(watch::Receiver<bool>);

impl Forced {
    /// Resolves once the stop is forced (never, if the census is gone).
    pub async fn wait(mut self) {
        if self.0.wait_for(|f| *f).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// `wait`, boxed: the relay arms it only once a session is closing.
    pub fn boxed(self) -> ForcedSignal {
        Box::pin(self.wait())
    }
}

/// Counts as one open client connection (any stage) until dropped.
#[derive(Debug)]
pub struct Open {
    inner: Arc<Inner>,
}

impl Census {
    pub fn enter(&self) -> Live {
        self.inner.live.fetch_add(1, Ordering::Relaxed);
        Live {
            inner: self.inner.clone(),
        }
    }

    pub fn open(&self) -> Open {
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        Open {
            inner: self.inner.clone(),
        }
    }

    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::Relaxed)
    }

    /// Admitted client connections still open, sessions included.
    pub fn open_connections(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    async fn wait_zero(&self, count: impl Fn() -> usize) {
        loop {
            let notified = self.inner.zero.notified();
            if count() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Shutdown: kept-alive connections close now if idle, else after their response.
    /// Sessions that end from now on count as drained (`stops`).
    pub fn close_idle(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
        self.inner.closing.send_replace(true);
    }

    /// The forced stop: every live session (and any that starts) is asked to end at
    /// once (Close 1001), and a close under way is cut short after `FORCED_CLOSE`.
    /// Sessions that end from now on count as forced.
    pub fn force(&self) {
        self.close_idle();
        self.inner.forcing.store(true, Ordering::Relaxed);
        self.inner.forced.send_replace(true);
    }

    /// Resolves once the stop is forced.
    pub fn forced(&self) -> Forced {
        Forced(self.inner.forced.subscribe())
    }

    /// How the sessions of the shutdown have ended so far.
    pub fn stops(&self) -> Stops {
        Stops {
            drained: self.inner.drained.load(Ordering::Relaxed),
            forced: self.inner.forced_ended.load(Ordering::Relaxed),
        }
    }

    /// A session's stop signal: `end` (wsgate's request to end it, and the moment it
    /// drew) is waited for up to that moment here, so a forced stop overtakes it:
    /// then the session ends at once with `StopReason::Shutdown`.
    pub fn stop_signal(
        &self,
        end: impl Future<Output = (StopReason, Instant)> + Send + 'static,
    ) -> impl Future<Output = (StopReason, Instant)> + Send + 'static {
        let forced = self.forced();
        async move {
            let at_moment = async move {
                let (why, at) = end.await;
                tokio::time::sleep_until(at).await;
                (why, at)
            };
            tokio::select! {
                r = at_moment => r,
                () = forced.wait() => (StopReason::Shutdown, Instant::now()),
            }
        }
    }

    /// Turns true when kept-alive connections are to close.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Resolves once no session is live.
    pub async fn wait_sessions_done(&self) {
        self.wait_zero(|| self.live()).await
    }

    /// Resolves once no client connection is open (handshakes included).
    pub async fn wait_idle(&self) {
        self.wait_zero(|| self.open_connections()).await
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // Counted before the live count falls, so a waiter for zero sees it.
        if self.inner.forcing.load(Ordering::Relaxed) {
            self.inner.forced_ended.fetch_add(1, Ordering::Relaxed);
        } else if self.inner.draining.load(Ordering::Relaxed) {
            self.inner.drained.fetch_add(1, Ordering::Relaxed);
        }
        if self.inner.live.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.inner.zero.notify_waiters();
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.inner.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.inner.zero.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn moments_fall_within_the_spread() {
        let e = Ending::now(StopReason::Shutdown, Duration::from_secs(10));
        let moments: Vec<Duration> = (0..1000).map(|_| e.moment() - e.start).collect();
        assert!(moments.iter().all(|m| *m <= Duration::from_secs(10)));
        let early = moments
            .iter()
            .filter(|m| **m < Duration::from_secs(5))
            .count();
        assert!(
            (400..600).contains(&early),
            "{early} of 1000 in the first half"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_forced_stop_overtakes_a_drawn_moment() {
        let c = Census::default();
        let end = async {
            (
                StopReason::BackendRemoved,
                Instant::now() + Duration::from_secs(60),
            )
        };
        let signal = tokio::spawn(c.stop_signal(end));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!signal.is_finished());
        let t = Instant::now();
        c.force();
        let (why, at) = signal.await.unwrap();
        assert_eq!(why, StopReason::Shutdown);
        assert_eq!(at, t);
    }

    #[test]
    fn sessions_count_as_drained_or_forced_by_when_they_end() {
        let c = Census::default();
        let (before, drained, forced) = (c.enter(), c.enter(), c.enter());
        drop(before);
        c.close_idle();
        drop(drained);
        c.force();
        drop(forced);
        assert_eq!(
            c.stops(),
            Stops {
                drained: 1,
                forced: 1
            }
        );
        assert_eq!(c.live(), 0);
    }
}
