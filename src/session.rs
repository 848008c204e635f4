//! Live connections and sessions. hyper forgets a connection once it is upgraded, so
//! wsgate counts them itself: each admitted connection holds an `Open` guard, each
//! running relay a `Live` guard.
//!
//! Owns: the process-wide counts, waiting until they reach zero, and the drain
//! signal that asks every live (and future) session to close at shutdown, each at
//! its own random moment within the drain spread. Does not own: per-backend counts
//! (balance.rs `Lease`) or what a session does when asked (relay).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Shutdown began at `start`; sessions close at random moments within `spread`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    pub start: Instant,
    pub spread: Duration,
}

impl Drain {
    /// A moment within the spread, drawn afresh for each session.
    pub fn moment(&self) -> Instant {
        self.start + self.spread.mul_f64(rand::random::<f64>())
    }
}

#[derive(Debug)]
pub struct Sessions {
    inner: Arc<Inner>,
    drain: watch::Sender<Option<Drain>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            inner: Arc::default(),
            drain: watch::channel(None).0,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    live: AtomicUsize,
    open: AtomicUsize,
    /// Notified when either count reaches zero.
    zero: Notify,
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

impl Sessions {
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

    /// Resolves once no session is live.
    pub async fn wait_sessions_done(&self) {
        self.wait_zero(|| self.live()).await
    }

    /// Resolves once no client connection is open (handshakes included).
    pub async fn wait_idle(&self) {
        self.wait_zero(|| self.open_connections()).await
    }

    /// Asks every live (and future) session to close, spread over `spread`.
    pub fn drain(&self, spread: Duration) {
        self.drain.send_if_modified(|d| {
            d.get_or_insert(Drain {
                start: Instant::now(),
                spread,
            });
            true
        });
    }

    pub fn draining(&self) -> bool {
        self.drain.borrow().is_some()
    }

    /// Resolves when `drain` has been called.
    pub fn drained(&self) -> impl Future<Output = Drain> + Send + use<> {
        let mut rx = self.drain.subscribe();
        async move {
            match rx.wait_for(Option::is_some).await.ok().and_then(|d| *d) {
                Some(d) => d,
                None => std::future::pending().await,
            }
        }
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
    async fn drain_moments_fall_within_the_spread() {
        let s = Sessions::default();
        s.drain(Duration::from_secs(10));
        let d = s.drained().await;
        let moments: Vec<Duration> = (0..1000).map(|_| d.moment() - d.start).collect();
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
