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

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

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
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            live: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            zero: Notify::new(),
            closing: watch::channel(false).0,
        }
    }
}

/// Counts as one live session until dropped.
#[derive(Debug)]
pub struct Live {
    inner: Arc<Inner>,
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
    pub fn close_idle(&self) {
        self.inner.closing.send_replace(true);
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
}
